//! Shadow mirroring: a copy of a stable-served request goes to the candidate under a
//! bounded semaphore, and its answer is compared with the live one after the live
//! response has been sent. Nothing here is awaited by the live path.
//!
//! The copies, their answers and the comparisons run on their own thread at a low CPU
//! priority ([`shadow_runtime`]), with connection pools of their own: when the CPU is
//! short, the live path gets it and mirrors pile up against `max_in_flight`, where they
//! are dropped and counted, never queued.
//!
//! With `shadow.calibrate`, a share of the mirrored requests is also copied to the stable
//! itself: how often the stable disagrees with its own answer is the noise floor, which the
//! `shadow_agreement` gate does not blame on the candidate.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http_body_util::{BodyExt, Limited};
use serde_json::json;
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::body::{Captured, UpstreamBody};
use super::forward::{self, Failure, Head};
use super::headers::X_SWITCHYARD_SHADOW;
use crate::compare::{self, Outcome};
use crate::snapshot::{Backend, Shared, Snapshot};
use crate::telemetry::metrics;
use crate::telemetry::window::ShadowOutcome;

/// How long a shadow waits for the live answer to finish streaming before giving up.
const LIVE_WAIT: Duration = Duration::from_secs(60);

/// A place among the mirrors in flight, taken before the body is buffered so a mirror
/// that would be dropped costs the live request nothing.
pub struct Reservation {
    _permit: OwnedSemaphorePermit,
}

/// Takes a place for one mirror, or counts it dropped when `max_in_flight` are in flight.
pub fn reserve(shared: &Shared) -> Option<Reservation> {
    let place = take_place(shared);
    if place.is_none() {
        metrics::shadow_request("dropped");
    }
    place
}

/// Takes a place for one calibration copy (to the stable itself) from the same
/// `max_in_flight`; a full semaphore skips calibration for this request (counted).
pub fn reserve_calibration(shared: &Shared) -> Option<Reservation> {
    let place = take_place(shared);
    if place.is_none() {
        metrics::shadow_calibration("dropped");
    }
    place
}

fn take_place(shared: &Shared) -> Option<Reservation> {
    let permit = shared
        .shadow
        .in_flight
        .load_full()
        .try_acquire_owned()
        .ok()?;
    Some(Reservation { _permit: permit })
}

/// Starts mirroring `head` + `body` to the candidate, and, when `calibration` holds a place,
/// a second copy to the stable itself (the noise floor); returns where the live answer is to
/// be delivered, or `None` when there is no candidate.
pub fn spawn(
    place: Reservation,
    calibration: Option<Reservation>,
    shared: &Shared,
    snap: &Arc<Snapshot>,
    head: &Head,
    body: Bytes,
    request_id: HeaderValue,
) -> Option<oneshot::Sender<Captured>> {
    let candidate = snap.candidate.clone()?;
    let (tx, live_rx) = oneshot::channel::<Captured>();
    let mut head = head.clone();
    head.headers
        .insert(X_SWITCHYARD_SHADOW.clone(), HeaderValue::from_static("1"));
    let snap = snap.clone();
    let shadow_state = shared.shadow.clone();
    let work = async move {
        // Only a calibration copy needs a second head (cloned here, on the shadow thread);
        // the candidate's copy takes the first.
        let calibration = calibration.map(|place| (place, head.clone(), body.clone()));
        let to_candidate = async {
            let (latency, result) = send_copy(&candidate, head, body, snap.max_body).await;
            drop(place);
            account(&candidate, &snap, latency, &result);
            result
        };
        let to_stable = async {
            let (place, head, body) = calibration?;
            // Boxed: inline, this rare second exchange doubled every mirror task's size.
            let (_, result) = Box::pin(send_copy(&snap.stable, head, body, snap.max_body)).await;
            drop(place);
            Some(result)
        };
        let (shadow, calibration) = tokio::join!(to_candidate, to_stable);

        let live = tokio::time::timeout(LIVE_WAIT, live_rx)
            .await
            .ok()
            .and_then(Result::ok);
        let comparison = judge(&snap, live.as_ref(), &shadow);
        let outcome = comparison
            .as_ref()
            .map_or(Outcome::Incomparable, |c| c.outcome);
        metrics::shadow_request(match (&live, &shadow) {
            (Some(_), Ok(_)) => "compared",
            (_, Err(_)) => "error",
            // The shadow answered but the live answer never completed (its client went
            // away, or the live request failed): nothing to compare, and not the shadow's fault.
            (None, Ok(_)) => "abandoned",
        });
        if let Err(failure) = &shadow {
            tracing::debug!(target: "switchyard::shadow", error = %failure, "shadow request failed");
        }
        metrics::shadow_comparison(outcome.as_str());
        candidate
            .window
            .record_shadow(Instant::now(), outcome.into());
        if let Some(c) = &comparison {
            for o in &c.outputs {
                metrics::shadow_output(&shadow_state.output_label(&o.name), o.agree);
            }
        }
        if let (Some(c), Some(live), Ok(shadow)) = (&comparison, &live, &shadow) {
            if c.outcome == Outcome::Disagree {
                shadow_state.push_diff(json!({
                    "at": crate::rollout::now_rfc3339(),
                    "request_id": request_id.to_str().unwrap_or(""),
                    "outcome": c.outcome,
                    "protocol": c.protocol,
                    "reason": c.reason,
                    "differences": c.differences,
                    "differences_total": c.differences_total,
                    "outputs": c.outputs,
                    "live": { "status": live.status, "body": compare::redact(&snap.compare, &live.body) },
                    "shadow": { "status": shadow.status, "body": compare::redact(&snap.compare, &shadow.body) },
                }));
            }
        }

        // The noise floor: the stable compared with itself on the same request. Its tally
        // lives in the stable's window, where the shadow_agreement gate reads it.
        if let Some(again) = calibration {
            let outcome =
                judge(&snap, live.as_ref(), &again).map_or(Outcome::Incomparable, |c| c.outcome);
            metrics::shadow_calibration(outcome.as_str());
            snap.stable
                .window
                .record_shadow(Instant::now(), outcome.into());
        }
    };
    // Boxed once here: spawning moves a task's future several times (into the task cell,
    // through its stages), and this one holds two whole upstream exchanges.
    let work = Box::pin(work);
    match shadow_runtime() {
        Some(rt) => drop(rt.spawn(async move {
            work.await;
            // Step aside after each mirror: a live request waiting for this CPU runs now,
            // not at the end of the shadow thread's time slice, which at saturation holds
            // several mirrors' work.
            std::thread::yield_now();
        })),
        None => drop(tokio::spawn(work)),
    }
    Some(tx)
}

/// The runtime shadow work runs on: one thread, started on first use, at a low CPU
/// priority ([`lower_priority`]), so that on a busy CPU the live path is served first. `None` if the
/// thread could not be started (then shadow work shares the caller's runtime).
pub fn shadow_runtime() -> Option<&'static tokio::runtime::Handle> {
    static HANDLE: OnceLock<Option<tokio::runtime::Handle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            let started = std::thread::Builder::new()
                .name("switchyard-shadow".into())
                .spawn(move || {
                    lower_priority();
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => {
                            let _ = tx.send(Some(rt.handle().clone()));
                            rt.block_on(std::future::pending::<()>());
                        }
                        Err(e) => {
                            tracing::warn!(target: "switchyard::shadow", "no shadow runtime: {e}");
                            let _ = tx.send(None);
                        }
                    }
                });
            match started {
                Ok(_) => rx.recv().ok().flatten(),
                Err(e) => {
                    tracing::warn!(target: "switchyard::shadow", "no shadow thread: {e}");
                    None
                }
            }
        })
        .as_ref()
}

/// Lowers the calling thread's CPU priority (on Linux, SCHED_OTHER at nice 9: about an
/// eighth of a CPU against each busy normal thread). Low enough that live requests are
/// served first on a saturated CPU; not the lowest, and not `SCHED_IDLE`, because on a
/// machine kept busy by something else (a model server beside the proxy) shadow work
/// would starve, and a `shadow_agreement` gate without samples holds a rollout forever.
fn lower_priority() {
    use thread_priority::{set_current_thread_priority, ThreadPriority, ThreadPriorityValue};
    let low = ThreadPriorityValue::try_from(SHADOW_PRIORITY).map(ThreadPriority::Crossplatform);
    let set = low
        .map_err(|e| e.to_string())
        .and_then(|p| set_current_thread_priority(p).map_err(|e| format!("{e:?}")));
    if let Err(e) = set {
        tracing::warn!(target: "switchyard::shadow", "could not lower the shadow thread's priority: {e}");
    }
}

/// The shadow thread's priority on thread-priority's 0–99 scale (25 is nice 9 on Linux).
const SHADOW_PRIORITY: u8 = 25;

/// Sends one copy and reads its answer (up to `max_body`); returns the time to the answer's head too.
async fn send_copy(
    backend: &Backend,
    head: Head,
    body: Bytes,
    max_body: usize,
) -> (Duration, Result<Captured, Failure>) {
    let started = Instant::now();
    let sent = forward::send_on(
        &backend.shadow_pool,
        backend,
        head,
        UpstreamBody::buffered(body),
    );
    let resp = match sent.await {
        Ok(resp) => resp,
        Err(failure) => return (started.elapsed(), Err(failure)),
    };
    let latency = started.elapsed();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (body, truncated) = match Limited::new(resp.into_body(), max_body).collect().await {
        Ok(c) => (c.to_bytes(), false),
        Err(_) => (Bytes::new(), true),
    };
    (
        latency,
        Ok(Captured {
            status,
            content_type,
            body,
            truncated,
        }),
    )
}

/// A mirrored answer counts as a candidate sample: its window, metrics and the tripwire.
fn account(
    candidate: &Backend,
    snap: &Snapshot,
    latency: Duration,
    result: &Result<Captured, Failure>,
) {
    let error = match result {
        Ok(c) => {
            candidate.metrics.latency(latency);
            let error = c.status >= 500;
            if error {
                candidate.metrics.error(metrics::ErrorKind::Status);
            }
            error
        }
        Err(failure) => {
            if let Some(kind) = failure.kind() {
                candidate.metrics.error(kind);
            }
            true
        }
    };
    candidate.window.record(Instant::now(), latency, error);
    if let Some(t) = &snap.tripwire {
        if error {
            t.failure()
        } else {
            t.success()
        }
    }
}

/// Compares the live answer with a copy's; `None` when either is missing (live request
/// failed or its client went away, or the copy failed), which counts as incomparable.
fn judge(
    snap: &Snapshot,
    live: Option<&Captured>,
    copy: &Result<Captured, Failure>,
) -> Option<compare::Comparison> {
    let (Some(live), Ok(copy)) = (live, copy) else {
        return None;
    };
    Some(compare::compare(
        &snap.compare,
        &compare::Response {
            status: live.status,
            content_type: live.content_type.as_deref(),
            body: &live.body,
            truncated: live.truncated,
        },
        &compare::Response {
            status: copy.status,
            content_type: copy.content_type.as_deref(),
            body: &copy.body,
            truncated: copy.truncated,
        },
    ))
}

impl From<Outcome> for ShadowOutcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Agree => ShadowOutcome::Agree,
            Outcome::Disagree => ShadowOutcome::Disagree,
            Outcome::Incomparable => ShadowOutcome::Incomparable,
        }
    }
}
