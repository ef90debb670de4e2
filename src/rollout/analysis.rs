//! Analysis gates: each evaluation reads the candidate's (and the stable's) window and
//! gives every configured gate pass / fail / inconclusive / skipped.
//!
//! ```
//! use switchyard::config::{ErrorRateGate, GatesConfig};
//! use switchyard::rollout::analysis::{evaluate, Step, Verdict};
//! use switchyard::telemetry::window::Window;
//! use tokio::time::{Duration, Instant};
//!
//! let now = Instant::now();
//! let w = Window::new(Duration::from_secs(1), 61);
//! for i in 0..100 { w.record(now, Duration::from_millis(5), i % 10 == 0); }
//! let gates = GatesConfig { error_rate: Some(ErrorRateGate { max: 0.05 }), ..Default::default() };
//! let stable = w.summary(now, Duration::from_secs(60));
//! let a = evaluate(&gates, 50, &stable, &stable, Step::default());
//! assert_eq!(a.verdict, Verdict::Fail); // 10 % errors > 5 %
//! ```

use serde::Serialize;

use crate::config::GatesConfig;
use crate::telemetry::window::Summary;

/// The outcome of one evaluation as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    /// Too few samples: hold, never pass, never fail.
    Inconclusive,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// The outcome of one gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GateOutcome {
    Pass,
    Fail,
    Inconclusive,
    /// The gate cannot apply to this step; it neither holds nor fails.
    Skipped,
}

/// One gate's figure, threshold and outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateResult {
    /// `error_rate`, `latency_p99`, `latency_p99_ratio` or `shadow_agreement`.
    pub gate: &'static str,
    /// The measured figure (ratio, or seconds for latency), when there was one.
    pub value: Option<f64>,
    pub threshold: f64,
    /// `max` or `min`: which side of the threshold passes.
    pub bound: &'static str,
    pub outcome: GateOutcome,
    /// A sentence for people.
    pub detail: String,
}

/// One evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    /// RFC 3339.
    pub at: String,
    pub verdict: Verdict,
    pub gates: Vec<GateResult>,
    /// Candidate samples in the window.
    pub samples: u64,
    pub stable_samples: u64,
    pub min_samples: u64,
}

impl Analysis {
    /// The failing gates as one line, for a rollback reason.
    pub fn failing(&self) -> String {
        self.gates
            .iter()
            .filter(|g| g.outcome == GateOutcome::Fail)
            .map(|g| g.detail.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Shadow agreement with the noise floor credited: the candidate is not blamed for the
/// share `floor` of requests on which the stable disagrees with itself (at most 100 %).
pub fn above_floor(agreement: f64, floor: f64) -> f64 {
    (agreement + floor).min(1.0)
}

/// What the current step does, as far as the gates care.
#[derive(Debug, Clone, Copy, Default)]
pub struct Step {
    /// The step mirrors traffic (else `shadow_agreement` is skipped).
    pub mirroring: bool,
    /// `shadow.calibrate` is on: the stable's window holds its comparisons with itself,
    /// the noise floor that `shadow_agreement` does not blame on the candidate.
    pub calibrating: bool,
    /// After promotion: relative gates are skipped.
    pub absolute_only: bool,
}

/// Evaluates `gates` on the candidate's and the stable's window summaries.
pub fn evaluate(
    gates: &GatesConfig,
    min_samples: u64,
    candidate: &Summary,
    stable: &Summary,
    step: Step,
) -> Analysis {
    let Step {
        mirroring,
        calibrating,
        absolute_only,
    } = step;
    let enough = candidate.requests >= min_samples;
    let few = |what: &str, n: u64| format!("{n} {what} in the window, {min_samples} needed");
    let mut out = Vec::new();

    if let Some(g) = &gates.error_rate {
        let value = candidate.error_rate();
        let (outcome, detail) = match value {
            Some(v) if enough => {
                let ok = v <= g.max;
                (
                    pass_fail(ok),
                    format!(
                        "error rate {:.2}% {} max {:.2}% ({} of {})",
                        v * 100.0,
                        if ok { "≤" } else { ">" },
                        g.max * 100.0,
                        candidate.errors,
                        candidate.requests
                    ),
                )
            }
            _ => (
                GateOutcome::Inconclusive,
                few("samples", candidate.requests),
            ),
        };
        out.push(GateResult {
            gate: "error_rate",
            value,
            threshold: g.max,
            bound: "max",
            outcome,
            detail,
        });
    }

    if let Some(g) = &gates.latency_p99 {
        let p99 = candidate.quantile(0.99).map(|d| d.as_secs_f64());
        if let Some(max) = g.max {
            let max_s = max.0.as_secs_f64();
            let (outcome, detail) = match p99 {
                Some(v) if enough => {
                    let ok = v <= max_s;
                    (
                        pass_fail(ok),
                        format!(
                            "p99 {} {} max {}",
                            ms(v),
                            if ok { "≤" } else { ">" },
                            ms(max_s)
                        ),
                    )
                }
                _ => (
                    GateOutcome::Inconclusive,
                    few("samples", candidate.requests),
                ),
            };
            out.push(GateResult {
                gate: "latency_p99",
                value: p99,
                threshold: max_s,
                bound: "max",
                outcome,
                detail,
            });
        }
        if let Some(ratio) = g.max_ratio {
            let stable_p99 = stable.quantile(0.99).map(|d| d.as_secs_f64());
            let (value, outcome, detail) = match (p99, stable_p99) {
                _ if absolute_only => (
                    None,
                    GateOutcome::Skipped,
                    "relative gate not applied after promotion".to_string(),
                ),
                (_, None) => (
                    None,
                    GateOutcome::Skipped,
                    "the stable served nothing in the window".to_string(),
                ),
                (Some(c), Some(s)) if enough => {
                    let r = if s > 0.0 { c / s } else { 1.0 };
                    let ok = r <= ratio;
                    (
                        Some(r),
                        pass_fail(ok),
                        format!(
                            "p99 {} is {r:.2}× stable's {} ({} max {ratio}×)",
                            ms(c),
                            ms(s),
                            if ok { "≤" } else { ">" }
                        ),
                    )
                }
                _ => (
                    None,
                    GateOutcome::Inconclusive,
                    few("samples", candidate.requests),
                ),
            };
            out.push(GateResult {
                gate: "latency_p99_ratio",
                value,
                threshold: ratio,
                bound: "max",
                outcome,
                detail,
            });
        }
    }

    if let Some(g) = &gates.shadow_agreement {
        let compared = candidate.shadow_agree + candidate.shadow_disagree;
        let raw = candidate.shadow_agreement();
        // The noise floor: how often the stable disagrees with itself. Only a measured
        // floor (min_samples self-comparisons) is credited; until then the raw figure counts.
        let self_compared = stable.shadow_agree + stable.shadow_disagree;
        let floor = match stable.shadow_agreement() {
            Some(a) if calibrating && self_compared >= min_samples => Some(1.0 - a),
            _ => None,
        };
        let value = raw.map(|v| floor.map_or(v, |f| above_floor(v, f)));
        let (outcome, detail) = if !mirroring {
            (
                GateOutcome::Skipped,
                "this step mirrors nothing".to_string(),
            )
        } else {
            match (value, raw) {
                (Some(v), Some(r)) if compared >= min_samples => {
                    let ok = v >= g.min;
                    let how = match floor {
                        Some(f) => format!(
                            "{:.2}% agreed ({} of {} compared) + noise floor {:.2}% (the stable disagreed with itself in {} of {})",
                            r * 100.0,
                            candidate.shadow_agree,
                            compared,
                            f * 100.0,
                            stable.shadow_disagree,
                            self_compared
                        ),
                        None if calibrating => format!(
                            "{:.2}% agreed ({} of {} compared); noise floor not measured yet ({} of {} self-comparisons), not credited",
                            r * 100.0,
                            candidate.shadow_agree,
                            compared,
                            self_compared,
                            min_samples
                        ),
                        None => format!(
                            "{} of {} compared",
                            candidate.shadow_agree, compared
                        ),
                    };
                    (
                        pass_fail(ok),
                        format!(
                            "shadow agreement {:.2}% {} min {:.2}% ({how})",
                            v * 100.0,
                            if ok { "≥" } else { "<" },
                            g.min * 100.0,
                        ),
                    )
                }
                _ => (
                    GateOutcome::Inconclusive,
                    few("compared shadow answers", compared),
                ),
            }
        };
        out.push(GateResult {
            gate: "shadow_agreement",
            value,
            threshold: g.min,
            bound: "min",
            outcome,
            detail,
        });
    }

    let verdict = if out.iter().any(|g| g.outcome == GateOutcome::Fail) {
        Verdict::Fail
    } else if !enough || out.iter().any(|g| g.outcome == GateOutcome::Inconclusive) {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    };
    Analysis {
        at: super::now_rfc3339(),
        verdict,
        gates: out,
        samples: candidate.requests,
        stable_samples: stable.requests,
        min_samples,
    }
}

fn pass_fail(ok: bool) -> GateOutcome {
    if ok {
        GateOutcome::Pass
    } else {
        GateOutcome::Fail
    }
}

fn ms(seconds: f64) -> String {
    format!("{:.1}ms", seconds * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgreementGate;
    use crate::telemetry::window::{ShadowOutcome, Window};
    use tokio::time::{Duration, Instant};

    /// A summary with `requests` samples and the given shadow tally.
    fn summary(now: Instant, requests: u64, agree: u64, disagree: u64) -> Summary {
        let w = Window::new(Duration::from_secs(1), 61);
        for _ in 0..requests {
            w.record(now, Duration::from_millis(5), false);
        }
        for _ in 0..agree {
            w.record_shadow(now, ShadowOutcome::Agree);
        }
        for _ in 0..disagree {
            w.record_shadow(now, ShadowOutcome::Disagree);
        }
        w.summary(now, Duration::from_secs(60))
    }

    fn agreement(candidate: &Summary, stable: &Summary, calibrating: bool) -> GateResult {
        let gates = GatesConfig {
            shadow_agreement: Some(AgreementGate { min: 0.9 }),
            ..Default::default()
        };
        let step = Step {
            mirroring: true,
            calibrating,
            absolute_only: false,
        };
        evaluate(&gates, 100, candidate, stable, step).gates[0].clone()
    }

    #[test]
    fn the_noise_floor_is_credited_only_once_measured() {
        let now = Instant::now();
        // The candidate agrees on 85 %; the stable disagrees with itself on 10 %.
        let candidate = summary(now, 200, 170, 30);
        let measured = summary(now, 0, 180, 20);
        let g = agreement(&candidate, &measured, true);
        assert_eq!(g.outcome, GateOutcome::Pass, "{}", g.detail);
        assert!((g.value.unwrap() - 0.95).abs() < 1e-9, "{:?}", g.value);

        // Too few self-comparisons: the raw figure counts, and the detail says why.
        let unmeasured = summary(now, 0, 45, 5);
        let g = agreement(&candidate, &unmeasured, true);
        assert_eq!(g.outcome, GateOutcome::Fail, "{}", g.detail);
        assert!((g.value.unwrap() - 0.85).abs() < 1e-9);
        assert!(g.detail.contains("not measured yet"), "{}", g.detail);

        // Calibration off: a stable tally is not a noise floor.
        let g = agreement(&candidate, &measured, false);
        assert_eq!(g.outcome, GateOutcome::Fail, "{}", g.detail);

        // The credit never lifts agreement above 100 %.
        let perfect = summary(now, 200, 200, 0);
        let g = agreement(&perfect, &measured, true);
        assert_eq!(g.value, Some(1.0));
    }
}
