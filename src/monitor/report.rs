//! The monitor's figures as the admin API (`GET /api/v1/monitor`), the metrics and the
//! `output_drift` gate read them.

use super::drift::Window;
use super::drift::{self, Drift, Layout};
use super::features::Feature;
use super::route::{Backend, Monitor, Samples};
use super::stats::Missing;
use super::stats::{BackendStats, FeatureStats, OutputStats, Quantiles, TopValue, TOP_SHOWN};
use crate::config::FeatureKind as Kind;
use crate::wire::Protocol;
use serde::Serialize;
use tokio::time::Instant;

/// Everything one route's monitor knows.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The configured protocol.
    pub protocol: Protocol,
    pub samples: Samples,
    /// Values of features beyond `max_features`, not kept.
    pub untracked_values: u64,
    pub reference: ReferenceStatus,
    pub backends: Vec<BackendReport>,
    /// The candidate's outputs against the stable's, when both were named.
    pub output_drift: Option<OutputDrift>,
    /// What keeps data drift from being measured although a reference is in use (a
    /// reference whose features share no name with the requests', one of no features).
    pub warnings: Vec<String>,
}

/// Whether a reference is in use, and one being built.
#[derive(Debug, Clone, Serialize)]
pub struct ReferenceStatus {
    /// A reference is in use: drift figures can be computed.
    pub in_use: bool,
    /// How many requests the reference in use was built from.
    pub requests: u64,
    /// A reference being built.
    pub building: Option<Building>,
}

/// A reference being built from a backend's first requests.
#[derive(Debug, Clone, Serialize)]
pub struct Building {
    pub backend: String,
    pub requests: u64,
    pub target: u64,
}

/// What one backend saw.
#[derive(Debug, Clone, Serialize)]
pub struct BackendReport {
    pub backend: String,
    /// Requests observed.
    pub requests: u64,
    /// Requests whose body could not be read.
    pub unparsed: u64,
    /// Rows per request.
    pub rows: Option<Quantiles>,
    /// Request body sizes, bytes.
    pub request_bytes: Option<Quantiles>,
    /// Answer body sizes, bytes.
    pub answer_bytes: Option<Quantiles>,
    pub features: Vec<FeatureReport>,
    pub outputs: OutputReport,
}

/// One feature at one backend.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureReport {
    pub name: String,
    /// `None` until a usable value was seen.
    pub kind: Option<Kind>,
    /// Values kept.
    pub count: u64,
    pub missing: Missing,
    /// Values of the wrong kind.
    pub invalid: u64,
    /// Numeric features: the distribution.
    pub quantiles: Option<Quantiles>,
    /// Categorical features: the most frequent values.
    pub top: Vec<TopValue>,
    /// Against the reference, over the drift window (`insufficient`, with its count,
    /// below the values a figure needs); `None` without a reference entry.
    pub drift: Option<Drift>,
    /// Its values are under a `redact` pointer: counted, but no quantiles, top values
    /// or drift are shown.
    pub redacted: bool,
}

/// One backend's answers.
#[derive(Debug, Clone, Serialize)]
pub struct OutputReport {
    pub answers: u64,
    pub failed: u64,
    pub truncated: u64,
    pub unparseable: u64,
    /// Answers with no prediction.
    pub empty: u64,
    /// Predictions (rows).
    pub rows: u64,
    /// Null predictions.
    pub null: u64,
    /// The class mix (OpenAI: finish reasons).
    pub labels: Vec<TopValue>,
    /// The scores (OpenAI: completion lengths in characters).
    pub scores: Option<Quantiles>,
    /// Rows (or OpenAI choice indexes) beyond what an answer can give, not read.
    pub over_cap: u64,
    /// A `redact` pointer reaches the predictions: labels and scores counted, not shown.
    pub redacted: bool,
}

/// A candidate's outputs against the stable's over the same window.
#[derive(Debug, Clone, Serialize)]
pub struct OutputDrift {
    pub stable: String,
    pub candidate: String,
    /// Compared on the answers both gave to the same mirrored requests (else on each
    /// one's own traffic over the window).
    pub paired: bool,
    /// Label mix: Jensen-Shannon distance; `None` without label bins in the reference.
    pub label: Option<Drift>,
    /// Scores: PSI on the reference's score bins, the stable's shares as expected; `None`
    /// without score bins in the reference.
    pub score: Option<Drift>,
}

impl OutputDrift {
    /// The larger of the two figures (what the `output_drift` gate compares with its `max`);
    /// `None` when neither had enough values (the gate is then inconclusive).
    pub fn value(&self) -> Option<f64> {
        [self.label, self.score]
            .into_iter()
            .flatten()
            .filter_map(|d| d.value)
            .reduce(f64::max)
    }
}

impl Monitor {
    /// Everything the monitor knows at `now`; `pair` names the (stable, candidate) whose
    /// outputs are compared.
    pub fn report(&self, now: Instant, pair: Option<(&str, &str)>) -> Report {
        let building = self.builder.as_ref().map(|b| Building {
            backend: b.backend.to_string(),
            requests: b.requests,
            target: b.target,
        });
        Report {
            protocol: self.settings.protocol,
            samples: self.samples,
            untracked_values: self.schema.untracked,
            reference: ReferenceStatus {
                in_use: self.layout.is_some(),
                requests: self.layout.as_ref().map_or(0, Layout::requests),
                building,
            },
            backends: self
                .backends
                .iter()
                .map(|b| self.backend_report(b, now))
                .collect(),
            output_drift: pair.and_then(|(s, c)| self.output_drift(s, c, now)),
            warnings: self.warnings().into_iter().map(|(_, w)| w).collect(),
        }
    }

    fn backend_report(&self, b: &Backend, now: Instant) -> BackendReport {
        let s: &BackendStats = &b.stats;
        let features = self
            .schema
            .features
            .iter()
            .enumerate()
            .map(|(ix, f)| {
                let drift = match (&self.layout, &b.window) {
                    (Some(l), Some(w)) => {
                        l.feature_drift(ix, w, now, &self.settings.drift, self.drift_needed())
                    }
                    _ => None,
                };
                feature_report(f, s.features.get(ix), drift)
            })
            .collect();
        BackendReport {
            backend: b.name.to_string(),
            requests: s.requests,
            unparsed: s.unparsed,
            rows: s.rows.summary(),
            request_bytes: s.request_bytes.summary(),
            answer_bytes: s.answer_bytes.summary(),
            features,
            outputs: output_report(&s.outputs),
        }
    }

    /// Values a side a drift figure needs: [`drift::MIN_COUNT`], or the analysis'
    /// `min_samples` when larger.
    fn drift_needed(&self) -> u64 {
        self.settings.min_samples.max(drift::MIN_COUNT)
    }

    /// The candidate's outputs against the stable's over the drift window ending at `now`;
    /// `None` without a reference or when either backend has not been seen. Each figure
    /// needs [`drift_needed`](Monitor::drift_needed) values on each side (else it is
    /// insufficient, and says which side is short).
    pub fn output_drift(&self, stable: &str, candidate: &str, now: Instant) -> Option<OutputDrift> {
        let layout = self.layout.as_ref()?;
        let window = |name: &str| {
            self.backends
                .iter()
                .find(|b| *b.name == *name)
                .and_then(|b| b.window.as_ref())
        };
        let min = self.drift_needed();
        // The answers to mirrored requests, both models on the same requests, once each
        // side has enough of them; else each one's own traffic.
        let paired = |name: &str| {
            self.backends
                .iter()
                .find(|b| *b.name == *name)
                .and_then(|b| b.paired.as_ref())
        };
        let enough = |w: &Window| {
            layout
                .output_counts(0, w, now)
                .or_else(|| layout.output_counts(1, w, now))
                .is_some_and(|(_, c)| c.iter().sum::<u64>() >= min)
        };
        let pair = match (paired(stable), paired(candidate)) {
            (Some(s), Some(c)) if enough(s) && enough(c) => Some((s, c)),
            _ => None,
        };
        let (sw, cw) = match pair {
            Some(p) => p,
            None => (window(stable)?, window(candidate)?),
        };
        let figure = |which| {
            let (kind, expected) = layout.output_counts(which, sw, now)?;
            let (_, actual) = layout.output_counts(which, cw, now)?;
            let stable_n: u64 = expected.iter().sum();
            let candidate_n: u64 = actual.iter().sum();
            let d = Drift::of(
                kind,
                &drift::shares(&expected),
                Some(stable_n),
                &actual,
                &self.settings.drift,
                min,
            );
            let short =
                |side| Drift::insufficient(d.metric, candidate_n.min(stable_n), d.needed, side);
            Some(if stable_n < d.needed {
                short("too few stable answers in the window")
            } else if candidate_n < d.needed {
                short("too few candidate answers in the window")
            } else {
                Drift {
                    samples: candidate_n.min(stable_n),
                    ..d
                }
            })
        };
        Some(OutputDrift {
            stable: stable.to_owned(),
            candidate: candidate.to_owned(),
            paired: pair.is_some(),
            label: figure(0),
            score: figure(1),
        })
    }
}

fn feature_report(f: &Feature, s: Option<&FeatureStats>, drift: Option<Drift>) -> FeatureReport {
    let empty = FeatureStats::default();
    let s = s.unwrap_or(&empty);
    FeatureReport {
        name: f.name.to_string(),
        kind: f.kind,
        count: s.count,
        missing: s.missing,
        invalid: s.invalid,
        quantiles: s.sketch().and_then(|k| k.summary()),
        top: s.top().map_or_else(Vec::new, |t| t.top(TOP_SHOWN)),
        drift: drift.filter(|_| !f.redacted),
        redacted: f.redacted,
    }
}

fn output_report(o: &OutputStats) -> OutputReport {
    OutputReport {
        answers: o.answers,
        failed: o.failed,
        truncated: o.truncated,
        unparseable: o.unparseable,
        empty: o.empty,
        rows: o.rows,
        null: o.null,
        labels: o.labels.top(TOP_SHOWN),
        scores: o.scores.summary(),
        over_cap: o.over_cap,
        redacted: o.redacted,
    }
}
