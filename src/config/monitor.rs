//! The `monitor:` block: what the monitor reads and how it judges drift.
//!
//! These are the settings as written (and the few a route fills in); the monitor reads
//! them, and builds its feature schema from [`FeatureSpec`]s already checked here.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tokio::time::Duration;

use crate::wire::pointer::Pattern;
use crate::wire::Protocol;

/// The `monitor:` settings of a route.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// Percent of requests observed (the live path's sampling decision; default 10).
    pub sample: f64,
    /// How exchanges are read (default `auto`).
    pub protocol: Protocol,
    /// The features to read; empty: every V2 input column or V1 instance key/column.
    pub features: Vec<FeatureSpec>,
    /// The most features named; values of further ones are counted, not kept (default 256).
    pub max_features: usize,
    /// What "no drift" looks like.
    pub reference: ReferenceSettings,
    /// Drift levels (default warn 0.1, alert 0.2).
    pub drift: Thresholds,
    /// The drift window's span: the rollout's analysis window (default 60 s).
    #[serde(skip)]
    pub window: Duration,
    /// The drift window's time bucket, the step it slides by (default 10 s).
    #[serde(skip)]
    pub bucket: Duration,
    /// The analysis' fewest samples (default 100): a drift figure needs this many values
    /// a side, or the monitor's `MIN_COUNT` when that is more.
    #[serde(skip)]
    pub min_samples: u64,
    /// The route's `redact` pointers (the capture's and the comparison's): values under
    /// them are counted, never shown (see the monitor's features).
    #[serde(skip)]
    pub redact: Vec<String>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            sample: 10.0,
            protocol: Protocol::Auto,
            features: Vec::new(),
            max_features: 256,
            reference: ReferenceSettings::default(),
            drift: Thresholds::default(),
            window: Duration::from_secs(60),
            bucket: Duration::from_secs(10),
            min_samples: 100,
            redact: Vec::new(),
        }
    }
}

/// Where the reference comes from: a backend's first requests, or a file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReferenceSettings {
    /// `stable`: the stable's first `requests` sampled requests (the default without `file`).
    pub from: Option<ReferenceFrom>,
    /// How many requests a built reference takes (default 1000).
    pub requests: u64,
    /// A reference file (the monitor's `Reference`).
    pub file: Option<PathBuf>,
}

impl Default for ReferenceSettings {
    fn default() -> Self {
        ReferenceSettings {
            from: None,
            requests: 1000,
            file: None,
        }
    }
}

/// Whose requests a built reference takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReferenceFrom {
    /// The route's stable backend.
    Stable,
}

impl MonitorConfig {
    /// Checks the settings, returning every problem joined by `; `.
    pub fn validate(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        if !(0.0..=100.0).contains(&self.sample) {
            errors.push(format!(
                "sample: {} is not a percentage (0 to 100)",
                self.sample
            ));
        }
        if self.max_features == 0 {
            errors.push("max_features: must be at least 1".to_owned());
        }
        let d = self.drift;
        if !(d.warn.is_finite() && d.alert.is_finite() && 0.0 <= d.warn && d.warn <= d.alert) {
            errors.push(format!(
                "drift: warn ({}) and alert ({}) must be numbers with 0 <= warn <= alert",
                d.warn, d.alert
            ));
        }
        let r = &self.reference;
        if r.from.is_some() && r.file.is_some() {
            errors.push("reference: give from or file, not both".to_owned());
        }
        if r.requests == 0 {
            errors.push("reference.requests: must be at least 1".to_owned());
        }
        if self.bucket.is_zero() || self.window < self.bucket {
            errors.push("the drift window must hold at least one non-empty bucket".to_owned());
        }
        if self.protocol == Protocol::Bytes {
            errors.push(
                "protocol: bytes is for comparing answers; the monitor reads auto, v2, v1, openai or json"
                    .to_owned(),
            );
        }
        errors.extend(check_features(&self.features, self.max_features));
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// One configured feature: a V2 input tensor's column, or a pointer into the request.
///
/// Without `kind`, a feature is numeric when its first value is a number and
/// categorical otherwise.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// The name reports and the reference use.
    pub name: String,
    /// A V2 input tensor, by name (with `column`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// The tensor's column (0 when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// A JSON pointer into the request (`*` matches every element or member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// Numeric or categorical; inferred from the first value when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FeatureKind>,
}

/// Whether a feature's values are numbers (quantiles, PSI) or categories (top values, JS distance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureKind {
    /// Numbers: a quantile sketch, PSI on the reference's quantile bins.
    Numeric,
    /// Categories: the most frequent values, Jensen-Shannon distance on the reference's shares.
    Categorical,
}

impl FeatureKind {
    /// Returns the lowercase name used in configuration and reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            FeatureKind::Numeric => "numeric",
            FeatureKind::Categorical => "categorical",
        }
    }
}

/// Drift thresholds (`drift: { warn: 0.1, alert: 0.2 }`), for PSI and JS distance alike.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    #[serde(default = "default_warn")]
    pub warn: f64,
    #[serde(default = "default_alert")]
    pub alert: f64,
}

fn default_warn() -> f64 {
    0.1
}
fn default_alert() -> f64 {
    0.2
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            warn: default_warn(),
            alert: default_alert(),
        }
    }
}

/// Checks a list of configured features against `max` (`max_features`): every problem,
/// each naming the feature.
pub fn check_features(specs: &[FeatureSpec], max: usize) -> Vec<String> {
    let mut errors = Vec::new();
    if specs.len() > max {
        errors.push(format!(
            "features: {} configured, more than max_features ({max})",
            specs.len()
        ));
    }
    for (i, spec) in specs.iter().enumerate() {
        let twice = specs[..i].iter().any(|f| f.name == spec.name);
        if let Err(e) = spec.check(twice) {
            errors.push(format!("features[{i}] ({}): {e}", spec.name));
        }
    }
    errors
}

impl FeatureSpec {
    /// Checks one feature: a name (not given `twice`), and either an input (and column)
    /// or a pointer that parses.
    fn check(&self, twice: bool) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("name must not be empty".into());
        }
        if twice {
            return Err("name given twice".into());
        }
        match (&self.input, &self.pointer) {
            (Some(_), None) => Ok(()),
            (None, Some(_)) if self.column.is_some() => {
                Err("column goes with input, not pointer".into())
            }
            (None, Some(p)) => Pattern::parse(p).map(drop),
            _ => Err("give either input (and column) or pointer".into()),
        }
    }
}
