//! Drift: each feature's recent window against a reference, and a candidate's outputs
//! against the stable's.
//!
//! A [`Reference`] says what "no drift" looks like: per numeric feature the
//! edges of about [`BINS`] quantile bins that never split a value (see
//! [`numeric_bins`]) and the
//! reference's share in each; per categorical feature the shares of its
//! [`TOP_CATEGORIES`] most frequent values and of everything else (`other`).
//! It is built from the first requests of one backend (see [`Builder`]) or
//! loaded from a JSON file (see the docs on [`Reference`]).
//!
//! Each backend counts its recent values over the reference's bins, exactly
//! (not from a sketch), in a ring of time buckets ([`Window`]) so the
//! window slides. Then:
//!
//! - numeric features: `PSI = Σ (q − p) · ln(q / p)` over the bins, `p` the
//!   reference's share and `q` the window's, each share raised to at least
//!   [`EPSILON`] (10⁻⁴) so an empty bin counts as rare rather than
//!   impossible;
//! - categorical features: the Jensen-Shannon distance, `sqrt(½ KL(p‖m) +
//!   ½ KL(q‖m))` with `m = (p + q) / 2` and base-2 logarithms, in `[0, 1]`;
//! - what sampling alone adds to either figure on average is taken off
//!   ([`by_chance`]), so two samples of one distribution read about 0 whatever
//!   their size;
//! - a level from the thresholds: `alert` from `alert` up, `warn` from
//!   `warn` up, else `ok`; no figure and the level `insufficient` below
//!   [`MIN_COUNT`] values (or the analysis' `min_samples`, when larger).
//!
//! Missing values are not binned: missingness is counted on its own.

use super::stats::{self, Read, TopK};
use crate::config::{FeatureKind as Kind, Thresholds};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio::time::{Duration, Instant};

/// Quantile bins per numeric feature in a built reference.
pub const BINS: usize = 10;
/// Values a built reference keeps per categorical feature (the rest is `other`).
const TOP_CATEGORIES: usize = 20;
/// Smallest share PSI uses for a bin, so an empty bin does not make it infinite.
pub const EPSILON: f64 = 1e-4;
/// Values kept per numeric feature while a reference is built (a uniform sample beyond).
pub const RESERVOIR: usize = 1024;
/// The reference file format this code writes and reads.
const FORMAT_VERSION: u32 = 1;
/// The largest reference file read. A built reference of 256 features takes about 200 KiB.
pub const MAX_REFERENCE_BYTES: u64 = 16 << 20;
/// The most features a reference may hold: what `monitor.max_features` can name at most
/// is far less.
pub const MAX_REFERENCE_FEATURES: usize = 4096;
/// The most bins (edges, or categories) one feature or output of a reference may have.
pub const MAX_REFERENCE_BINS: usize = 1024;

// === impl Reference ===

/// What "no drift" looks like, per feature and for the outputs; also the reference file.
///
/// The file is this type as JSON:
///
/// ```
/// let file = r#"{
///   "version": 1,
///   "requests": 1000,
///   "features": {
///     "petal_length": { "kind": "numeric", "edges": [1.4, 1.5, 4.2], "shares": [0.3, 0.1, 0.3, 0.3] },
///     "country": { "kind": "categorical", "shares": { "FR": 0.6, "DE": 0.3 }, "other": 0.1 }
///   },
///   "outputs": {
///     "label": { "kind": "categorical", "shares": { "0": 0.34, "1": 0.33, "2": 0.33 }, "other": 0.0 }
///   }
/// }"#;
/// let reference = switchyard::monitor::Reference::from_json(file.as_bytes()).unwrap();
/// assert_eq!(reference.features.len(), 2);
/// ```
///
/// A numeric feature's `edges` are ascending; bin 0 holds values `≤ edges[0]`,
/// bin `i` values in `(edges[i-1], edges[i]]`, the last bin values above the
/// last edge, so `shares` has one more entry than `edges`. Shares are
/// fractions that add up to 1 (within 1 %; they are scaled to 1 on load).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    /// Format version: 1.
    pub version: u32,
    /// How many requests it was built from (information only).
    #[serde(default)]
    pub requests: u64,
    /// Per feature, by the name reports use.
    #[serde(default)]
    pub features: BTreeMap<String, Bins>,
    /// The outputs: `label` (class mix) and `score`.
    #[serde(default)]
    pub outputs: OutputBins,
}

/// The reference's bins for the outputs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputBins {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Bins>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<Bins>,
}

/// One feature's reference distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Bins {
    /// Quantile bins: `edges.len() + 1` shares.
    Numeric { edges: Vec<f64>, shares: Vec<f64> },
    /// Shares of the most frequent values, and of all others.
    Categorical {
        shares: BTreeMap<String, f64>,
        other: f64,
    },
}

impl Bins {
    /// The kind of feature these bins are for.
    pub fn kind(&self) -> Kind {
        match self {
            Bins::Numeric { .. } => Kind::Numeric,
            Bins::Categorical { .. } => Kind::Categorical,
        }
    }

    /// How many bins (a categorical's `other` included).
    pub fn len(&self) -> usize {
        match self {
            Bins::Numeric { shares, .. } => shares.len(),
            Bins::Categorical { shares, .. } => shares.len() + 1,
        }
    }

    /// Tells whether there are no bins (never, for validated bins).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The reference's shares in bin order (a categorical's values in name order, then `other`).
    pub fn shares(&self) -> Vec<f64> {
        match self {
            Bins::Numeric { shares, .. } => shares.clone(),
            Bins::Categorical { shares, other } => {
                shares.values().copied().chain([*other]).collect()
            }
        }
    }

    /// The bin a value falls in; `None` for a missing value, an infinity or a value of the
    /// other kind (as the statistics count them: not binned).
    pub(crate) fn bin(&self, read: &Read<'_>) -> Option<usize> {
        match self {
            Bins::Numeric { edges, .. } => match read {
                Read::Number(f) if f.is_finite() => Some(edges.partition_point(|e| e < f)),
                _ => None,
            },
            Bins::Categorical { shares, .. } => {
                let c = stats::category(read)?;
                Some(shares.keys().position(|k| *k == *c).unwrap_or(shares.len()))
            }
        }
    }

    /// Checks the shape and scales the shares to add up to 1.
    fn validate(&mut self) -> Result<(), String> {
        let bins = match self {
            Bins::Numeric { edges, .. } => edges.len(),
            Bins::Categorical { shares, .. } => shares.len(),
        };
        if bins > MAX_REFERENCE_BINS {
            return Err(format!(
                "{bins} bins, more than the {MAX_REFERENCE_BINS} a feature may have"
            ));
        }
        let shares: Vec<&mut f64> = match self {
            Bins::Numeric { edges, shares } => {
                if edges.iter().any(|e| !e.is_finite()) || edges.windows(2).any(|w| w[0] >= w[1]) {
                    return Err("edges must be finite and strictly ascending".into());
                }
                if shares.len() != edges.len() + 1 {
                    return Err(format!(
                        "{} edges need {} shares, not {}",
                        edges.len(),
                        edges.len() + 1,
                        shares.len()
                    ));
                }
                shares.iter_mut().collect()
            }
            Bins::Categorical { shares, other } => {
                shares.values_mut().chain(std::iter::once(other)).collect()
            }
        };
        if shares.iter().any(|s| !s.is_finite() || **s < 0.0) {
            return Err("shares must be finite and not negative".into());
        }
        let sum: f64 = shares.iter().map(|s| **s).sum();
        if (sum - 1.0).abs() > 0.01 {
            return Err(format!("shares add up to {sum}, not 1"));
        }
        shares.into_iter().for_each(|s| *s /= sum);
        Ok(())
    }
}

impl Reference {
    /// Reads a reference file's JSON, checking every feature's bins.
    pub fn from_json(json: &[u8]) -> Result<Reference, String> {
        let mut r: Reference = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        if r.features.len() > MAX_REFERENCE_FEATURES {
            return Err(format!(
                "{} features, more than the {MAX_REFERENCE_FEATURES} a reference may hold",
                r.features.len()
            ));
        }
        if r.version != FORMAT_VERSION {
            return Err(format!(
                "version {} is not supported (only {FORMAT_VERSION})",
                r.version
            ));
        }
        let outputs = [
            ("outputs.label", &mut r.outputs.label),
            ("outputs.score", &mut r.outputs.score),
        ];
        for (name, bins) in outputs {
            if let Some(b) = bins {
                b.validate().map_err(|e| format!("{name}: {e}"))?;
            }
        }
        for (name, bins) in &mut r.features {
            bins.validate()
                .map_err(|e| format!("features.{name}: {e}"))?;
        }
        Ok(r)
    }

    /// Reads a reference file.
    pub fn load(path: &std::path::Path) -> Result<Reference, String> {
        use std::io::Read;
        let cannot = |e: std::io::Error| format!("{}: {e}", path.display());
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_REFERENCE_BYTES + 1).read_to_end(&mut bytes))
            .map_err(cannot)?;
        if bytes.len() as u64 > MAX_REFERENCE_BYTES {
            return Err(format!(
                "{}: larger than {} MiB, the limit for a reference file: not read",
                path.display(),
                MAX_REFERENCE_BYTES >> 20
            ));
        }
        Reference::from_json(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The reference as the JSON of its file.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

// === impl Builder ===

/// Builds a [`Reference`] from the first requests of one backend.
#[derive(Debug)]
pub(crate) struct Builder {
    /// The backend whose requests are taken.
    pub(crate) backend: Box<str>,
    /// How many requests to take.
    pub(crate) target: u64,
    /// How many were taken.
    pub(crate) requests: u64,
    features: Vec<Collect>,
    label: TopK,
    score: Reservoir,
    rng: SmallRng,
}

/// What a builder keeps of one feature.
#[derive(Debug, Default)]
enum Collect {
    #[default]
    Empty,
    Numbers(Reservoir),
    Categories(TopK),
}

/// A uniform sample of at most [`RESERVOIR`] numbers (Algorithm R).
#[derive(Debug, Default)]
struct Reservoir {
    values: Vec<f64>,
    seen: u64,
}

impl Reservoir {
    fn add(&mut self, v: f64, rng: &mut SmallRng) {
        self.seen += 1;
        if self.values.len() < RESERVOIR {
            self.values.push(v);
        } else {
            let j = rng.random_range(0..self.seen);
            if let Some(slot) = self.values.get_mut(j as usize) {
                *slot = v;
            }
        }
    }
}

impl Builder {
    /// Starts a reference from the next `target` requests of `backend`.
    pub(crate) fn new(backend: &str, target: u64) -> Builder {
        Builder {
            backend: backend.into(),
            target,
            requests: 0,
            features: Vec::new(),
            label: TopK::default(),
            score: Reservoir::default(),
            rng: SmallRng::seed_from_u64(0x5eed),
        }
    }

    /// Keeps one value of feature `ix` (of kind `kind`).
    pub(crate) fn feature(&mut self, ix: u32, kind: Option<Kind>, read: &Read<'_>) {
        let ix = ix as usize;
        if self.features.len() <= ix {
            self.features.resize_with(ix + 1, Collect::default);
        }
        match (kind, &mut self.features[ix]) {
            (Some(Kind::Numeric), c) => {
                if let Read::Number(f) = read {
                    if f.is_finite() {
                        if !matches!(c, Collect::Numbers(_)) {
                            *c = Collect::Numbers(Reservoir::default());
                        }
                        if let Collect::Numbers(r) = c {
                            r.add(*f, &mut self.rng);
                        }
                    }
                }
            }
            (Some(Kind::Categorical), c) => {
                if let Some(v) = stats::category(read) {
                    if !matches!(c, Collect::Categories(_)) {
                        *c = Collect::Categories(TopK::default());
                    }
                    if let Collect::Categories(t) = c {
                        t.add(&v);
                    }
                }
            }
            (None, _) => {}
        }
    }

    /// Keeps one predicted row.
    pub(crate) fn prediction(&mut self, p: &crate::wire::Prediction) {
        if let Some(l) = &p.label {
            self.label.add(l);
        }
        if let Some(s) = p.score.filter(|s| s.is_finite()) {
            self.score.add(s, &mut self.rng);
        }
    }

    /// Tells whether enough requests were taken.
    pub(crate) fn done(&self) -> bool {
        self.requests >= self.target
    }

    /// The reference, with features named by `name(ix)`; features without values are left out.
    pub(crate) fn finish<'n>(self, name: impl Fn(usize) -> &'n str) -> Reference {
        let mut features = BTreeMap::new();
        for (ix, c) in self.features.into_iter().enumerate() {
            let bins = match c {
                Collect::Empty => None,
                Collect::Numbers(mut r) => numeric_bins(&mut r.values),
                Collect::Categories(t) => categorical_bins(&t),
            };
            if let Some(b) = bins {
                features.insert(name(ix).to_owned(), b);
            }
        }
        let mut scores = self.score.values;
        Reference {
            version: FORMAT_VERSION,
            requests: self.requests,
            features,
            outputs: OutputBins {
                label: categorical_bins(&self.label),
                score: numeric_bins(&mut scores),
            },
        }
    }
}

/// About [`BINS`] quantile bins of a sample, with the sample's exact share in each.
///
/// Bins never split a value: each closes once it holds a tenth of the sample, at the gap
/// after a distinct value, its edge halfway to the next distinct value. So a value that
/// holds a large share (a score with few distinct values, a 0/1 flag) stays whole in one
/// bin, and a model whose answers differ from these by less than half the gap to the next
/// value (a retrained model, float noise) lands in the same bins. A last bin holding less
/// than half a tenth joins the one before it, so every bin holds at least a twentieth of
/// the sample (no bin so thin that a few values make it look drifted); a sample with few
/// distinct values gets fewer bins.
pub(crate) fn numeric_bins(values: &mut [f64]) -> Option<Bins> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let target = n.div_ceil(BINS);
    let mut edges = Vec::new();
    let mut counts: Vec<u64> = Vec::new();
    let (mut i, mut in_bin) = (0, 0);
    while i < n {
        let v = values[i];
        // Every copy of `v` (`-0.0` and `0.0` alike) goes in this bin.
        let run = values[i..].partition_point(|x| *x <= v).max(1);
        i += run;
        in_bin += run;
        if in_bin >= target && i < n {
            edges.push(between(v, values[i]));
            counts.push(in_bin as u64);
            in_bin = 0;
        }
    }
    counts.push(in_bin as u64);
    if counts.len() > 1 && in_bin * 2 < target {
        edges.pop();
        let last = counts.pop().unwrap_or(0);
        if let Some(c) = counts.last_mut() {
            *c += last;
        }
    }
    Some(Bins::Numeric {
        edges,
        shares: shares(&counts),
    })
}

/// An edge between two distinct values `a < b`: halfway, or `a` itself where halfway
/// rounds onto `b` (neighbouring floats) or overflows.
fn between(a: f64, b: f64) -> f64 {
    let mid = a / 2.0 + b / 2.0;
    if a <= mid && mid < b {
        mid
    } else {
        a
    }
}

/// The shares of a categorical sample's [`TOP_CATEGORIES`] most frequent values, and `other`.
fn categorical_bins(top: &TopK) -> Option<Bins> {
    let total = top.total();
    if total == 0 {
        return None;
    }
    let shares: BTreeMap<String, f64> = top
        .top(TOP_CATEGORIES)
        .into_iter()
        .map(|t| (t.value, t.count as f64 / total as f64))
        .collect();
    let other = (1.0 - shares.values().sum::<f64>()).max(0.0);
    Some(Bins::Categorical { shares, other })
}

// === figures ===

/// Counts as shares of their total (all zero when the total is).
pub fn shares(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .map(|&c| {
            if total == 0 {
                0.0
            } else {
                c as f64 / total as f64
            }
        })
        .collect()
}

/// Population stability index of `actual` shares against `expected` ones, each share raised
/// to at least [`EPSILON`].
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    expected
        .iter()
        .zip(actual)
        .map(|(&p, &q)| {
            let (p, q) = (p.max(EPSILON), q.max(EPSILON));
            (q - p) * (q / p).ln()
        })
        .sum()
}

/// Jensen-Shannon divergence of two share vectors, in bits, in `[0, 1]`.
fn js_divergence(p: &[f64], q: &[f64]) -> f64 {
    let kl_to_mid = |a: f64, m: f64| if a > 0.0 { a * (a / m).log2() } else { 0.0 };
    let divergence: f64 = p
        .iter()
        .zip(q)
        .map(|(&a, &b)| {
            let m = (a + b) / 2.0;
            0.5 * kl_to_mid(a, m) + 0.5 * kl_to_mid(b, m)
        })
        .sum();
    divergence.clamp(0.0, 1.0)
}

/// What sampling alone adds, on average, to the PSI (or the Jensen-Shannon divergence, in
/// bits) of two samples of one distribution over `bins` bins: `n_actual` values on one
/// side, `n_expected` on the other (`None`: exact shares, a reference).
///
/// Both figures are, to second order, a χ² statistic: with `p` the true shares and
/// `p̂`, `q̂` the two samples' shares, `(q̂ − p̂) · ln(q̂ / p̂) ≈ (q̂ − p̂)² / p`, and the
/// JS divergence is `Σ (q̂ − p̂)² / 8m` nats, `m = (p̂ + q̂) / 2 ≈ p`. With no drift
/// `E[(q̂ᵢ − p̂ᵢ)²] = pᵢ (1 − pᵢ) (1/n_actual + 1/n_expected)`, so summed over the bins
/// (the `(1 − pᵢ)` summing to `bins − 1`):
///
/// - `E[PSI] ≈ (bins − 1) · (1/n_actual + 1/n_expected)`;
/// - `E[JS divergence] ≈ (bins − 1) · (1/n_actual + 1/n_expected) / (8 · ln 2)` bits.
///
/// At 90 answers a side and 10 bins the PSI of two identical models is 0.2 on average:
/// a figure that is not corrected for it fails good candidates at the default `max`.
fn by_chance(metric: Metric, bins: usize, n_actual: u64, n_expected: Option<u64>) -> f64 {
    let inverse = |n: u64| if n == 0 { 0.0 } else { 1.0 / n as f64 };
    let scale = inverse(n_actual) + n_expected.map_or(0.0, inverse);
    let chi2 = bins.saturating_sub(1) as f64 * scale;
    match metric {
        Metric::Psi => chi2,
        Metric::Js => chi2 / (8.0 * std::f64::consts::LN_2),
    }
}

/// Which figure a drift is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Population stability index (numeric).
    Psi,
    /// Jensen-Shannon distance (categorical).
    Js,
}

/// How far a distribution has moved, against the thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Too few values for a figure (fewer than [`Drift::needed`]): no level at all.
    Insufficient,
    Ok,
    Warn,
    Alert,
}

impl Thresholds {
    /// The level of a figure.
    pub fn level(&self, value: f64) -> Level {
        if value >= self.alert {
            Level::Alert
        } else if value >= self.warn {
            Level::Warn
        } else {
            Level::Ok
        }
    }
}

/// Fewest values a side a drift figure (and so a level, a gauge, an `output_drift`
/// verdict) is given from: 200 for a feature's window, and for each of the stable's and
/// the candidate's answers.
///
/// The figures have the average that sampling alone gives them taken off ([`by_chance`]),
/// but not their spread: with no drift at all, a 10-bin PSI over `n` values against a
/// reference is spread like `χ²₉ / n`, so at 42 values one window in six still reads over
/// 0.2 once corrected. At 200 values a no-drift window stays under `warn` (0.1) in more
/// than 99 % of windows for a numeric feature against its reference and under `alert`
/// (0.2) for the output drift of two identical models; `docs/monitoring.md` has the
/// measured shares at several sizes. A count rather than a corrected figure alone,
/// because a figure that is small only because it rests on little cannot tell a good
/// candidate from one not yet measured: below the count the figure is not given, the
/// level is `insufficient`, and the `output_drift` gate is inconclusive.
pub const MIN_COUNT: u64 = 200;

/// Values a categorical figure needs per category beyond the first, when that is more than
/// [`MIN_COUNT`]: the JS distance of many categories spreads more (a square root of a χ²
/// with a degree per category), so a feature of 20 values and `other` needs 600.
const MIN_PER_CATEGORY: u64 = 30;

/// One drift figure: what was measured, how far, its level, over how many values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Drift {
    pub metric: Metric,
    /// The figure, with what sampling alone adds on average taken off and floored at 0
    /// (PSI: `raw − by_chance`; JS distance: `sqrt(raw² − by_chance)`); `None` below
    /// `needed` values.
    pub value: Option<f64>,
    /// The plain PSI or JS distance of the shares, as the formulas give it; `None`
    /// below `needed` values.
    pub raw: Option<f64>,
    /// `insufficient` below `needed` values.
    pub level: Level,
    /// Values in the window the figure was computed on (the smaller side for output drift).
    pub samples: u64,
    /// Values needed a side before a figure is given ([`MIN_COUNT`], or the analysis'
    /// `min_samples` when larger; for the JS distance at least [`MIN_PER_CATEGORY`] per
    /// category beyond the first).
    pub needed: u64,
    /// Why there is no figure, when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl Drift {
    /// No figure: `samples` values, `needed` wanted, and why.
    pub(crate) fn insufficient(
        metric: Metric,
        samples: u64,
        needed: u64,
        reason: &'static str,
    ) -> Drift {
        Drift {
            metric,
            value: None,
            raw: None,
            level: Level::Insufficient,
            samples,
            needed,
            reason: Some(reason),
        }
    }

    /// Compares `actual` counts with `expected` ones on the same bins (`expected_n`: how
    /// many values the expected side is a sample of; `None` for exact shares, a
    /// reference), the metric chosen by `kind`; insufficient below `needed` values.
    pub(crate) fn of(
        kind: Kind,
        expected: &[f64],
        expected_n: Option<u64>,
        actual: &[u64],
        thresholds: &Thresholds,
        needed: u64,
    ) -> Drift {
        let metric = match kind {
            Kind::Numeric => Metric::Psi,
            Kind::Categorical => Metric::Js,
        };
        let needed = match metric {
            Metric::Psi => needed.max(1),
            Metric::Js => needed
                .max(1)
                .max(MIN_PER_CATEGORY.saturating_mul(expected.len().saturating_sub(1) as u64)),
        };
        let samples: u64 = actual.iter().sum();
        if samples < needed {
            return Drift::insufficient(metric, samples, needed, "too few values in the window");
        }
        Drift {
            needed,
            ..Drift::figure(metric, expected, expected_n, actual, thresholds)
        }
    }

    /// The figure of `actual` counts against `expected` shares, however few the counts.
    pub(crate) fn figure(
        metric: Metric,
        expected: &[f64],
        expected_n: Option<u64>,
        actual: &[u64],
        thresholds: &Thresholds,
    ) -> Drift {
        let samples: u64 = actual.iter().sum();
        let q = shares(actual);
        // Bins where either side has anything: those a sample of one distribution fills.
        let bins = expected
            .iter()
            .zip(actual)
            .filter(|(&p, &c)| p > 0.0 || c > 0)
            .count();
        let chance = by_chance(metric, bins, samples, expected_n);
        let (raw, value) = match metric {
            Metric::Psi => {
                let raw = psi(expected, &q);
                (raw, (raw - chance).max(0.0))
            }
            Metric::Js => {
                let divergence = js_divergence(expected, &q);
                (divergence.sqrt(), (divergence - chance).max(0.0).sqrt())
            }
        };
        Drift {
            metric,
            value: Some(value),
            raw: Some(raw),
            level: thresholds.level(value),
            samples,
            needed: 0,
            reason: None,
        }
    }
}

// === impl Window ===

/// Recent counts over a fixed set of bins, in a ring of time buckets.
///
/// Bucket `k` covers `[origin + k·bucket, origin + (k+1)·bucket)`; the window
/// is the current bucket and the `slots − 1` before it, so it spans between
/// `(slots − 1)·bucket` and `slots·bucket`. Memory: `slots × width` 4-byte
/// counters and `slots` epochs.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    origin: Instant,
    bucket_nanos: u64,
    epochs: Vec<u64>,
    width: usize,
    counts: Vec<u32>,
}

/// A slot never written.
const EMPTY: u64 = u64::MAX;

impl Window {
    /// A window of `span` in buckets of `bucket` (at least one), over `width` bins.
    pub(crate) fn new(origin: Instant, span: Duration, bucket: Duration, width: usize) -> Window {
        let bucket_nanos = (bucket.as_nanos() as u64).max(1);
        let slots = (span.as_nanos() as u64).div_ceil(bucket_nanos).max(1) as usize;
        Window {
            origin,
            bucket_nanos,
            epochs: vec![EMPTY; slots],
            width,
            counts: vec![0; slots * width],
        }
    }

    fn epoch(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_nanos() as u64 / self.bucket_nanos
    }

    /// The counters of the time bucket holding `now`, emptied first when the bucket is new;
    /// `None` when `now` is older than the ring (outside every window).
    pub(crate) fn bucket(&mut self, now: Instant) -> Option<&mut [u32]> {
        let epoch = self.epoch(now);
        let slot = (epoch % self.epochs.len() as u64) as usize;
        let row = &mut self.counts[slot * self.width..(slot + 1) * self.width];
        if self.epochs[slot] != epoch {
            if self.epochs[slot] != EMPTY && self.epochs[slot] > epoch {
                return None;
            }
            row.fill(0);
            self.epochs[slot] = epoch;
        }
        Some(row)
    }

    /// Empties bins `range` in every time bucket (the other bins keep their counts).
    pub(crate) fn clear(&mut self, range: std::ops::Range<usize>) {
        for row in self.counts.chunks_mut(self.width.max(1)) {
            if let Some(bins) = row.get_mut(range.clone()) {
                bins.fill(0);
            }
        }
    }

    /// The counts of bins `range` over the window ending at `now`.
    pub(crate) fn totals(&self, now: Instant, range: std::ops::Range<usize>) -> Vec<u64> {
        let epoch = self.epoch(now);
        let oldest = epoch.saturating_sub(self.epochs.len() as u64 - 1);
        let mut out = vec![0u64; range.len()];
        for (slot, &e) in self.epochs.iter().enumerate() {
            if e == EMPTY || e < oldest || e > epoch {
                continue;
            }
            let row = &self.counts[slot * self.width..(slot + 1) * self.width];
            for (o, &c) in out.iter_mut().zip(&row[range.clone()]) {
                *o += u64::from(c);
            }
        }
        out
    }
}

// === impl Layout ===

/// A reference laid out for counting: each feature's and output's bins at an offset in
/// every backend's [`Window`], and the features of the route's schema linked by name.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    requests: u64,
    /// Reference features, in name order, then `label` and `score` when present.
    names: Vec<String>,
    bins: Vec<Bins>,
    expected: Vec<Vec<f64>>,
    offsets: Vec<usize>,
    features: usize,
    label: Option<usize>,
    score: Option<usize>,
    /// Bins in all: the windows' width.
    pub(crate) width: usize,
    /// Schema feature index → entry, for the features linked so far.
    by_feature: Vec<Option<u32>>,
}

impl Layout {
    /// Lays a reference out.
    pub(crate) fn new(reference: Reference) -> Layout {
        let mut names = Vec::new();
        let mut bins = Vec::new();
        for (name, b) in reference.features {
            names.push(name);
            bins.push(b);
        }
        let features = names.len();
        let mut push = |name: &str, b: Option<Bins>| {
            b.map(|b| {
                names.push(name.to_owned());
                bins.push(b);
                names.len() - 1
            })
        };
        let label = push("label", reference.outputs.label);
        let score = push("score", reference.outputs.score);
        let mut offsets = Vec::with_capacity(bins.len());
        let mut width = 0;
        for b in &bins {
            offsets.push(width);
            width += b.len();
        }
        Layout {
            requests: reference.requests,
            expected: bins.iter().map(Bins::shares).collect(),
            names,
            bins,
            offsets,
            features,
            label,
            score,
            width,
            by_feature: Vec::new(),
        }
    }

    /// How many requests the reference was built from.
    pub(crate) fn requests(&self) -> u64 {
        self.requests
    }

    /// The reference's feature names, in name order.
    pub(crate) fn feature_names(&self) -> &[String] {
        &self.names[..self.features]
    }

    /// Links the schema's features named since the last call to their reference entries.
    pub(crate) fn link<'n>(&mut self, names: impl ExactSizeIterator<Item = &'n str>) {
        let known = self.by_feature.len();
        if names.len() <= known {
            return;
        }
        for name in names.skip(known) {
            let entry = self.names[..self.features]
                .binary_search_by(|n| n.as_str().cmp(name))
                .ok();
            self.by_feature.push(entry.map(|e| e as u32));
        }
    }

    /// Forgets every link: the schema's features are named anew (a new rollout).
    pub(crate) fn unlink(&mut self) {
        self.by_feature.clear();
    }

    /// The window position of a feature's value: `None` when the feature has no
    /// reference or the value no bin.
    pub(crate) fn feature_bin(&self, ix: u32, read: &Read<'_>) -> Option<usize> {
        let entry = (*self.by_feature.get(ix as usize)?)? as usize;
        Some(self.offsets[entry] + self.bins[entry].bin(read)?)
    }

    /// The window positions of a prediction's label and score.
    pub(crate) fn output_bins(
        &self,
        label: Option<&str>,
        score: Option<f64>,
    ) -> [Option<usize>; 2] {
        let at = |entry: Option<usize>, read: Option<Read<'_>>| {
            let e = entry?;
            Some(self.offsets[e] + self.bins[e].bin(&read?)?)
        };
        [
            at(self.label, label.map(|l| Read::Text(l.into()))),
            at(self.score, score.map(Read::Number)),
        ]
    }

    /// A feature's drift in `window` (insufficient below `needed` values); `None` without
    /// a reference entry.
    pub(crate) fn feature_drift(
        &self,
        ix: usize,
        window: &Window,
        now: Instant,
        thresholds: &Thresholds,
        needed: u64,
    ) -> Option<Drift> {
        let entry = (*self.by_feature.get(ix)?)? as usize;
        let counts = window.totals(now, self.range(entry));
        let kind = self.bins[entry].kind();
        // The reference is a sample too: of about one value a request (a built numeric
        // feature keeps at most `RESERVOIR`); a file that does not say is taken as exact.
        let reference_n = match kind {
            Kind::Numeric => self.requests.min(RESERVOIR as u64),
            Kind::Categorical => self.requests,
        };
        Some(Drift::of(
            kind,
            &self.expected[entry],
            (reference_n > 0).then_some(reference_n),
            &counts,
            thresholds,
            needed,
        ))
    }

    /// The label (`0`) or score (`1`) counts of a window; `None` without that output's bins.
    pub(crate) fn output_counts(
        &self,
        which: usize,
        window: &Window,
        now: Instant,
    ) -> Option<(Kind, Vec<u64>)> {
        let entry = [self.label, self.score][which]?;
        Some((
            self.bins[entry].kind(),
            window.totals(now, self.range(entry)),
        ))
    }

    /// The window positions of the outputs' bins (label, then score): one range, as they
    /// come after every feature's.
    pub(crate) fn outputs(&self) -> std::ops::Range<usize> {
        self.offsets
            .get(self.features)
            .copied()
            .unwrap_or(self.width)..self.width
    }

    fn range(&self, entry: usize) -> std::ops::Range<usize> {
        self.offsets[entry]..self.offsets[entry] + self.bins[entry].len()
    }

    /// The laid-out reference, as its file holds it.
    pub(crate) fn reference(&self) -> Reference {
        let pick = |e: Option<usize>| e.map(|e| self.bins[e].clone());
        Reference {
            version: FORMAT_VERSION,
            requests: self.requests,
            features: self.names[..self.features]
                .iter()
                .cloned()
                .zip(self.bins[..self.features].iter().cloned())
                .collect(),
            outputs: OutputBins {
                label: pick(self.label),
                score: pick(self.score),
            },
        }
    }
}
