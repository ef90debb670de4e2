//! The forward and observe phases: the request goes to its backend within the backend's
//! timeout, the outcome is recorded, and a failed candidate request is sent once more to
//! the stable when `fallback_to_stable` is on.

use std::sync::Arc;

use http::Response;
use tokio::time::Instant;

use super::body::Prepared;
use super::respond::Source;
use crate::snapshot::{Backend, Snapshot};
use crate::telemetry::{self, metrics, Outcome};
use crate::upstream::{Failure, Head, PooledBody, UpstreamBody};

/// What the forward phase came to: whose answer (or failure) the client gets, and it.
pub struct Forwarded {
    pub source: Source,
    pub result: Result<Response<PooledBody>, Failure>,
}

/// A request ready to go upstream: where, what, and by when.
pub struct Outbound {
    pub backend: Arc<Backend>,
    /// `backend` is the candidate.
    pub is_candidate: bool,
    pub head: Head,
    pub body: Prepared,
    /// A failure of the candidate is sent again to the stable (the body is buffered).
    pub fallback: bool,
    /// When the request arrived: latency counts from here.
    pub started: Instant,
    /// By when the client's body must have arrived.
    pub deadline: Instant,
}

/// Sends the request to its backend and records the outcome; on a candidate's failure
/// with `fallback`, sends the buffered request again to the stable, whose answer then counts.
pub async fn forward(snap: &Snapshot, out: Outbound) -> Forwarded {
    let Outbound {
        backend,
        is_candidate,
        head,
        body,
        fallback,
        started,
        deadline,
    } = out;
    let retry = match &body {
        Prepared::Buffered(b) if fallback => Some((head.clone(), b.clone())),
        _ => None,
    };
    let result = backend
        .upstream
        .send_live(head, body.into_upstream(snap.max_body, deadline))
        .await;
    let failed = observe(snap, &backend, is_candidate, started, &result);
    match retry {
        Some((head, bytes)) if failed => {
            metrics::fallback(&backend.name);
            let stable = snap.stable.clone();
            let again = Instant::now();
            let result = stable
                .upstream
                .send_live(head, UpstreamBody::buffered(bytes))
                .await;
            observe(snap, &stable, false, again, &result);
            Forwarded {
                source: Source {
                    backend: stable,
                    tripwire: None,
                },
                result,
            }
        }
        _ => Forwarded {
            source: Source {
                tripwire: is_candidate.then(|| snap.tripwire.clone()).flatten(),
                backend,
            },
            result,
        },
    }
}

/// Records one upstream outcome; true when it counts as a failure of `backend`.
fn observe(
    snap: &Snapshot,
    backend: &Backend,
    is_candidate: bool,
    started: Instant,
    result: &Result<Response<PooledBody>, Failure>,
) -> bool {
    let outcome = match result {
        Ok(resp) => Outcome::Answered(resp.status().as_u16()),
        Err(f) => match f.outcome() {
            Some(outcome) => outcome,
            // The client's fault (body too large) says nothing about the backend.
            None => return false,
        },
    };
    let now = Instant::now();
    let tripwire = if is_candidate {
        snap.tripwire.as_deref()
    } else {
        None
    };
    telemetry::record(
        &backend.window,
        &backend.metrics,
        tripwire,
        now,
        now - started,
        outcome,
    )
}
