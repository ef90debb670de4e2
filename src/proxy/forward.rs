//! The forward and record phases: the request goes to its backend within the backend's
//! timeout, the outcome is recorded, and a failed candidate request is sent once more to
//! the stable when `fallback_to_stable` is on.
//!
//! The request's own send is awaited in `Proxy::serve` itself, not in a function of this
//! module: a nested future would be built, then copied whole into the request's future.

use std::sync::Arc;

use http::header::HeaderValue;
use http::Response;
use tokio::time::Instant;

use bytes::Bytes;

use super::body::Prepared;
use super::respond::Source;
use crate::snapshot::{Backend, Route};
use crate::telemetry::metrics::ErrorKind;
use crate::telemetry::share::Client;
use crate::telemetry::{self, Outcome, Took};
use crate::upstream::errors::Failed;
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

/// Whose answer the client gets: `backend`'s, the tripwire when it is the candidate, and
/// whether the gates read it.
pub fn source(snap: &Route, backend: Arc<Backend>, is_candidate: bool, judged: bool) -> Source {
    Source {
        tripwire: is_candidate.then(|| snap.tripwire.clone()).flatten(),
        backend,
        judged,
    }
}

/// The candidate `failed` failed: counts the fallback, sends the copy to the stable and
/// records its outcome; the stable's answer is the one the client gets.
pub async fn fall_back(
    snap: &Route,
    failed: &Backend,
    retry: Retry,
    (request_id, client): (&HeaderValue, Option<Client>),
) -> (Source, Result<Response<PooledBody>, Failure>) {
    failed.metrics.fallback();
    let stable = snap.stable.clone();
    let again = Instant::now();
    let result = stable
        .upstream
        .send_live(retry.head, UpstreamBody::buffered(retry.body))
        .await;
    let judged = stable.judges(client, again);
    if record(snap, &stable, (false, judged), again, &result) {
        log_failure(&stable, &result, request_id);
    }
    (source(snap, stable, false, judged), result)
}

/// Writes a failure of `backend` (one that [`record`] counted) to the log, unless
/// another of its kind was written less than a second ago.
pub fn log_failure(
    backend: &Backend,
    result: &Result<Response<PooledBody>, Failure>,
    request_id: &HeaderValue,
) {
    let (kind, what): (ErrorKind, &dyn std::fmt::Display) = match result {
        Ok(resp) => (ErrorKind::Status, &resp.status()),
        Err(failure) => match failure.kind() {
            Some(kind) => (kind, failure),
            None => return,
        },
    };
    backend.upstream.errors.warn(Failed {
        kind,
        backend: &backend.name,
        route: &backend.route,
        request_id: Some(request_id),
        what,
    });
}

/// Records one upstream outcome (in `backend`'s window when `judged`); true when it counts
/// as a failure of `backend`.
///
/// The metric has the time since `started`, as the client waited; the window the
/// backend's own latency ([`BackendLatency`], timed by the kernel), so a busy or flooded
/// switchyard slows neither the stable's nor the candidate's figures. An answer without
/// one (no kernel stamp) counts without a latency; a failure counts with its time since
/// `started` (a timeout's is the backend's timeout).
///
/// [`BackendLatency`]: crate::upstream::pool::BackendLatency
pub fn record(
    snap: &Route,
    backend: &Backend,
    (is_candidate, judged): (bool, bool),
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
    let seen = now - started;
    let backend_latency = match result {
        Ok(resp) => resp.body().latency().map(|l| l.0),
        Err(_) => Some(seen),
    };
    let took = Took {
        seen: Some(seen),
        backend: backend_latency,
    };
    let tripwire = if is_candidate {
        snap.tripwire.as_deref()
    } else {
        None
    };
    telemetry::record(
        backend.window_if(judged),
        &backend.metrics,
        tripwire,
        now,
        took,
        outcome,
    )
}
