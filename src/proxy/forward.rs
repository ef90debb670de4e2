//! The forward and observe phases: the request goes to its backend within the backend's
//! timeout, the outcome is recorded, and a failed candidate request is sent once more to
//! the stable when `fallback_to_stable` is on.
//!
//! The request's own send is awaited in `Proxy::serve` itself, not in a function of this
//! module: a nested future would be built, then copied whole into the request's future.

use std::sync::Arc;

use http::Response;
use tokio::time::Instant;

use bytes::Bytes;

use super::body::Prepared;
use super::respond::Source;
use crate::snapshot::{Backend, Route};
use crate::telemetry::{self, Outcome};
use crate::upstream::{Failure, Head, PooledBody, UpstreamBody};

/// What is kept of a request to send it again to the stable (fallback).
pub struct Retry {
    head: Head,
    body: Bytes,
}

/// A copy of the request for a fallback, when `fallback` is on and the body is buffered.
pub fn retry_copy(body: &Prepared, head: &Head, fallback: bool) -> Option<Retry> {
    match body {
        Prepared::Buffered(b) if fallback => Some(Retry {
            head: head.clone(),
            body: b.clone(),
        }),
        _ => None,
    }
}

/// Whose answer the client gets: `backend`'s, and the tripwire when it is the candidate.
pub fn source(snap: &Route, backend: Arc<Backend>, is_candidate: bool) -> Source {
    Source {
        tripwire: is_candidate.then(|| snap.tripwire.clone()).flatten(),
        backend,
    }
}

/// The candidate `failed` failed: counts the fallback, sends the copy to the stable and
/// records its outcome; the stable's answer is the one the client gets.
pub async fn fall_back(
    snap: &Route,
    failed: &Backend,
    retry: Retry,
) -> (Source, Result<Response<PooledBody>, Failure>) {
    failed.metrics.fallback();
    let stable = snap.stable.clone();
    let again = Instant::now();
    let result = stable
        .upstream
        .send_live(retry.head, UpstreamBody::buffered(retry.body))
        .await;
    observe(snap, &stable, false, again, &result);
    (source(snap, stable, false), result)
}

/// Records one upstream outcome; true when it counts as a failure of `backend`.
pub fn observe(
    snap: &Route,
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
