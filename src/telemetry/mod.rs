//! What the proxy measures: per-backend sliding windows for the analysis, the
//! fast-rollback tripwire, the recent shadow disagreements, and Prometheus metrics.
//!
//! The live path and the shadow side record an exchange's outcome through one function,
//! [`record`], so a mirrored answer counts for the candidate exactly as a live one does.

pub mod diffs;
pub mod metrics;
mod pairs;
pub mod share;
pub mod tripwire;
pub mod window;

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use metrics::{BackendMetrics, ErrorKind};
pub use pairs::Pairs;
pub use tripwire::{Trip, Tripwire};
use window::Window;

/// What one exchange with a backend came to, as far as the backend is to blame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The backend answered with this status (5xx counts as a failure).
    Answered(u16),
    /// The exchange failed for this reason.
    Failed(ErrorKind),
}

/// How long one exchange with a backend took, as two clocks saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Took {
    /// From the request's arrival to its answer's head, as its client waited
    /// (`switchyard_request_duration_seconds`); `None` leaves the metric alone.
    pub seen: Option<Duration>,
    /// The backend's own latency, what the gates read: from the request written to the
    /// answer received, timed by the kernel, never a wait in switchyard. `None` when it
    /// could not be measured cleanly: the window counts the request without a latency.
    pub backend: Option<Duration>,
}

/// Records one outcome of a backend at `now`: its latency ([`Took`]) and error
/// metrics, its window (`None` when the sample is not judged: its client is over its
/// [share](share::Shares)), and the rollout's tripwire when the backend is the
/// candidate. Returns whether the outcome counts as a failure of the backend.
///
/// Failures that are the client's (a body over the limit) are not outcomes of the
/// backend: callers do not record them.
pub fn record(
    window: Option<&Window>,
    metrics: &BackendMetrics,
    tripwire: Option<&Tripwire>,
    now: Instant,
    took: Took,
    outcome: Outcome,
) -> bool {
    let failed = match outcome {
        Outcome::Answered(status) => {
            if let Some(seen) = took.seen {
                metrics.latency(seen);
            }
            let failed = status >= 500;
            if failed {
                metrics.error(ErrorKind::Status);
            }
            failed
        }
        Outcome::Failed(kind) => {
            metrics.error(kind);
            true
        }
    };
    match (window, took.backend) {
        (Some(window), Some(latency)) => window.record(now, latency, failed),
        (Some(window), None) => window.record_untimed(now, failed),
        (None, _) => {}
    }
    if let Some(t) = tripwire {
        if failed {
            t.failure();
        } else {
            t.success();
        }
    }
    failed
}

/// Records that a backend cut off an answer whose head was already recorded: an error of
/// kind `truncated` in its metrics and window, and a failure for the tripwire.
pub fn record_truncated(
    window: Option<&Window>,
    metrics: &BackendMetrics,
    tripwire: Option<&Tripwire>,
    now: Instant,
) {
    metrics.error(ErrorKind::Truncated);
    if let Some(window) = window {
        window.record_error(now);
    }
    if let Some(t) = tripwire {
        t.failure();
    }
}

/// Wall-clock now as RFC 3339 (UTC, milliseconds), for events and records.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}
