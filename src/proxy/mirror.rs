//! Shadow mirroring: a copy of a stable-served request goes to the candidate under a
//! bounded semaphore, and its answer is compared with the live one after the live
//! response has been sent. Nothing here is awaited by the live path.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http_body_util::{BodyExt, Limited};
use serde_json::json;
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::body::{Captured, UpstreamBody};
use super::forward::{self, Head};
use super::headers::X_SWITCHYARD_SHADOW;
use crate::compare::{self, Outcome};
use crate::snapshot::{Shared, Snapshot};
use crate::telemetry::metrics;
use crate::telemetry::window::ShadowOutcome;

/// How long a shadow waits for the live answer to finish streaming before giving up.
const LIVE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// A place among the mirrors in flight, taken before the body is buffered so a mirror
/// that would be dropped costs the live request nothing.
pub struct Reservation(OwnedSemaphorePermit);

/// Takes a place for one mirror, or counts it dropped when `max_in_flight` are in flight.
pub fn reserve(shared: &Shared) -> Option<Reservation> {
    match shared.shadow.in_flight.load_full().try_acquire_owned() {
        Ok(permit) => Some(Reservation(permit)),
        Err(_) => {
            metrics::shadow_request("dropped");
            None
        }
    }
}

/// Starts mirroring `head` + `body` to the candidate; returns where the live answer is to
/// be delivered, or `None` when there is no candidate.
pub fn spawn(
    place: Reservation,
    shared: &Shared,
    snap: &Arc<Snapshot>,
    head: &Head,
    body: Bytes,
    request_id: HeaderValue,
) -> Option<oneshot::Sender<Captured>> {
    let candidate = snap.candidate.clone()?;
    let Reservation(permit) = place;
    let (tx, live_rx) = oneshot::channel::<Captured>();
    let mut head = head.clone();
    head.headers
        .insert(X_SWITCHYARD_SHADOW.clone(), HeaderValue::from_static("1"));
    let snap = snap.clone();
    let shadow_state = shared.shadow.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        let result = forward::send(&candidate, head, UpstreamBody::buffered(body)).await;
        let shadow = match result {
            Ok(resp) => {
                let status = resp.status();
                let content_type = resp
                    .headers()
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let latency = started.elapsed();
                let collected = Limited::new(resp.into_body(), snap.max_body)
                    .collect()
                    .await;
                let error = status.is_server_error();
                candidate.window.record(Instant::now(), latency, error);
                candidate.metrics.latency(latency);
                if error {
                    candidate.metrics.error(metrics::ErrorKind::Status);
                }
                if let Some(t) = &snap.tripwire {
                    if error {
                        t.failure()
                    } else {
                        t.success()
                    }
                }
                match collected {
                    Ok(c) => Ok(Captured {
                        status: status.as_u16(),
                        content_type,
                        body: c.to_bytes(),
                        truncated: false,
                    }),
                    Err(_) => Ok(Captured {
                        status: status.as_u16(),
                        content_type,
                        body: Bytes::new(),
                        truncated: true,
                    }),
                }
            }
            Err(failure) => {
                candidate
                    .window
                    .record(Instant::now(), started.elapsed(), true);
                if let Some(kind) = failure.kind() {
                    candidate.metrics.error(kind);
                }
                if let Some(t) = &snap.tripwire {
                    t.failure();
                }
                Err(failure)
            }
        };
        drop(permit);

        let live = tokio::time::timeout(LIVE_WAIT, live_rx).await;
        let (outcome, record) = match (live, shadow) {
            (Ok(Ok(live)), Ok(shadow)) => {
                metrics::shadow_request("compared");
                let c = compare::compare(
                    &snap.compare,
                    &compare::Response {
                        status: live.status,
                        content_type: live.content_type.as_deref(),
                        body: &live.body,
                        truncated: live.truncated,
                    },
                    &compare::Response {
                        status: shadow.status,
                        content_type: shadow.content_type.as_deref(),
                        body: &shadow.body,
                        truncated: shadow.truncated,
                    },
                );
                let record = (c.outcome == Outcome::Disagree).then(|| {
                    json!({
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
                    })
                });
                (c.outcome, record)
            }
            (_, Err(failure)) => {
                metrics::shadow_request("error");
                tracing::debug!(target: "switchyard::shadow", error = %failure, "shadow request failed");
                (Outcome::Incomparable, None)
            }
            (_, Ok(_)) => {
                // The live request failed or its client went away: nothing to compare with.
                metrics::shadow_request("error");
                (Outcome::Incomparable, None)
            }
        };
        metrics::shadow_comparison(outcome.as_str());
        candidate.window.record_shadow(
            Instant::now(),
            match outcome {
                Outcome::Agree => ShadowOutcome::Agree,
                Outcome::Disagree => ShadowOutcome::Disagree,
                Outcome::Incomparable => ShadowOutcome::Incomparable,
            },
        );
        if let Some(r) = record {
            shadow_state.push_diff(r);
        }
    });
    Some(tx)
}
