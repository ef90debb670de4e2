//! The live window figures that `GET /api/v1/status` shows under `window`: what the
//! analysis sees of the stable and the candidate right now.

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::rollout::analysis::above_floor;
use crate::snapshot::{Backend, Route};
use crate::telemetry::window::Summary;

/// The stable's and the candidate's sliding windows, over the analysis window's span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowFigures {
    /// The span the figures cover, in seconds.
    pub span_s: f64,
    pub stable: Option<BackendFigures>,
    /// `null` without a candidate.
    pub candidate: Option<BackendFigures>,
    /// With `shadow.calibrate`: how often the stable disagrees with itself.
    pub noise_floor: Option<NoiseFloor>,
}

/// One backend's figures in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendFigures {
    pub backend: String,
    pub requests: u64,
    pub errors: u64,
    /// `null` when the backend served nothing.
    pub error_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub shadow: ShadowTally,
}

/// Shadow comparisons in the window: the candidate against the stable, or (on the
/// stable's side, with `shadow.calibrate`) the stable against itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowTally {
    pub agree: u64,
    pub disagree: u64,
    pub incomparable: u64,
    /// `agree / (agree + disagree)`; `null` when nothing was compared.
    pub agreement: Option<f64>,
}

impl ShadowTally {
    /// Every comparison, whatever its outcome.
    pub fn total(&self) -> u64 {
        self.agree + self.disagree + self.incomparable
    }
}

/// The stable's disagreement with itself, and the candidate's agreement with it credited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseFloor {
    pub self_agree: u64,
    pub self_disagree: u64,
    /// The share of self-comparisons that disagreed.
    pub disagreement: Option<f64>,
    candidate_agreement_above_floor: Option<f64>,
}

// === built from the live windows ===

impl WindowFigures {
    /// The figures of a route's stable and candidate at `now`, over its analysis window.
    pub fn of(snap: &Route, now: Instant) -> WindowFigures {
        let stable = snap.stable.window.summary(now, snap.window);
        let candidate = snap
            .candidate
            .as_deref()
            .map(|c| (c, c.window.summary(now, snap.window)));
        // With `shadow.calibrate`, the stable's shadow tally is the stable compared with itself.
        let noise_floor = (snap.calibrate_bp > 0).then(|| {
            let floor = stable.shadow_agreement().map(|a| 1.0 - a);
            NoiseFloor {
                self_agree: stable.shadow_agree,
                self_disagree: stable.shadow_disagree,
                disagreement: floor,
                candidate_agreement_above_floor: candidate
                    .as_ref()
                    .and_then(|(_, c)| c.shadow_agreement())
                    .zip(floor)
                    .map(|(a, f)| above_floor(a, f)),
            }
        });
        WindowFigures {
            span_s: snap.window.as_secs_f64(),
            stable: Some(BackendFigures::of(&snap.stable, &stable)),
            candidate: candidate.map(|(b, s)| BackendFigures::of(b, &s)),
            noise_floor,
        }
    }
}

impl BackendFigures {
    fn of(backend: &Backend, s: &Summary) -> BackendFigures {
        let ms = |q: f64| s.quantile(q).map(|d| d.as_secs_f64() * 1e3);
        BackendFigures {
            backend: backend.name.to_string(),
            requests: s.requests,
            errors: s.errors,
            error_rate: s.error_rate(),
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            shadow: ShadowTally {
                agree: s.shadow_agree,
                disagree: s.shadow_disagree,
                incomparable: s.shadow_incomparable,
                agreement: s.shadow_agreement(),
            },
        }
    }
}
