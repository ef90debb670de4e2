//! The live window figures that `GET /api/v1/status` shows under `window`: what the
//! analysis sees of the stable and the candidate right now.

use serde::{Deserialize, Serialize};

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
    pub candidate_agreement_above_floor: Option<f64>,
}
