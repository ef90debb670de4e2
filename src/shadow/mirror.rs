//! The mirror job: a copy of a stable-served request goes to the candidate, and its
//! answer is compared with the live one once the live answer has gone to the client.
//!
//! With `shadow.calibrate`, a share of the mirrored requests is also copied to the stable
//! itself: how often the stable disagrees with its own answer is the noise floor, which the
//! `shadow_agreement` gate does not blame on the candidate.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::admission::Reservation;
use super::observed::Captured;
use super::observed::{self, Pending};
use super::runtime;
use crate::compare::{self, Comparison, Outcome};
use crate::snapshot::{Backend, Route};
use crate::telemetry::share::Client;
use crate::telemetry::window::{ShadowOutcome, Window};
use crate::telemetry::{self, metrics};
use crate::upstream::{Failure, Head, Lane, UpstreamBody};

/// Marks a mirrored request, so a model server can tell shadow traffic apart.
pub(crate) static X_SWITCHYARD_SHADOW: HeaderName = HeaderName::from_static("x-switchyard-shadow");

/// How long a shadow waits for the live answer to finish streaming before giving up.
const LIVE_WAIT: Duration = Duration::from_secs(60);

/// One mirrored request: everything the job needs, handed over by the live path.
pub(crate) struct Mirror {
    /// Its place among the mirrors in flight.
    pub place: Reservation,
    /// A place for a calibration copy to the stable itself, when this request is calibrated.
    pub calibration: Option<Reservation>,
    /// The route (of the snapshot) the live request was routed with.
    pub route: Arc<Route>,
    /// The request as it went upstream.
    pub head: Head,
    pub body: Bytes,
    pub request_id: HeaderValue,
    /// Who sent it, for the candidate's share bound (`None` when unbounded).
    pub client: Option<Client>,
    /// The largest answer read for the comparison (`limits.max_body`).
    pub cap: usize,
    /// When the request was sampled: it goes to the route's observers with both answers.
    pub observe: Option<Box<Pending>>,
}

/// What the job sent: an answer read in full (up to `max_body`), or why there is none.
type Copy = Result<Captured, Failure>;

impl Mirror {
    /// Starts the job on the shadow runtime; returns where the live answer is to be
    /// delivered, or `None` when the snapshot has no candidate.
    pub(crate) fn spawn(self) -> Option<oneshot::Sender<Captured>> {
        let candidate = self.route.candidate.clone()?;
        let (tx, live) = oneshot::channel::<Captured>();
        // Boxed once here: spawning moves a task's future several times (into the task
        // cell, through its stages), and this one holds two whole upstream exchanges.
        runtime::submit(Box::pin(self.run(candidate, live)));
        Some(tx)
    }

    /// The whole job: send the copies, wait for the live answer, compare, record.
    async fn run(self, candidate: Arc<Backend>, live: oneshot::Receiver<Captured>) {
        let Mirror {
            place,
            calibration,
            route: snap,
            mut head,
            body,
            request_id,
            client,
            cap,
            mut observe,
        } = self;
        head.headers
            .insert(X_SWITCHYARD_SHADOW.clone(), HeaderValue::from_static("1"));
        // Only a calibration copy needs a second head; the candidate's copy takes the first.
        let calibration = calibration.map(|place| (place, head.clone(), body.clone()));
        let to_candidate = async {
            let (latency, result) = send_copy(&candidate, head, body, cap).await;
            drop(place);
            // Judged as a sample of the candidate's: the client within its share there.
            let judged = candidate.judges(client, Instant::now());
            account(&candidate, &snap, latency, &result, judged);
            (result, judged)
        };
        let to_stable = async {
            let (place, head, body) = calibration?;
            // Boxed: inline, this rare second exchange doubled every mirror task's size.
            let (_, result) = Box::pin(send_copy(&snap.stable, head, body, cap)).await;
            drop(place);
            Some(result)
        };
        let ((shadow, judged), again) = tokio::join!(to_candidate, to_stable);

        let live = tokio::time::timeout(LIVE_WAIT, live)
            .await
            .ok()
            .and_then(Result::ok);
        let comparison = judge(&snap, live.as_ref(), &shadow);
        tally(
            &snap,
            candidate.window_if(judged),
            live.as_ref(),
            &shadow,
            comparison.as_ref(),
        );
        if let (Some(c), Some(live), Ok(shadow)) = (&comparison, &live, &shadow) {
            if c.outcome == Outcome::Disagree {
                snap.diffs
                    .push(diff_record(&snap, &request_id, c, live, shadow));
            }
        }
        if let Some(again) = again {
            calibrate(&snap, live.as_ref(), &again);
        }
        if let Some(p) = &mut observe {
            p.shadow_judged = judged;
        }
        if let (Some(pending), Some(live)) = (observe, live) {
            let copy = (candidate.name.clone(), shadow.ok());
            observed::submit(pending, live, Some(copy));
        }
    }
}

/// Sends one copy and reads its answer (up to `max_body`); returns the backend's latency
/// too: for an answer, the time from its request written to its head received as the
/// kernel saw them ([`BackendLatency`]), never a wait of the shadow thread's; `None` when
/// that could not be measured. For a failure, the time it took.
///
/// [`BackendLatency`]: crate::upstream::pool::BackendLatency
async fn send_copy(
    backend: &Backend,
    head: Head,
    body: Bytes,
    max_body: usize,
) -> (Option<Duration>, Copy) {
    let started = Instant::now();
    let sent = backend
        .upstream
        .send(Lane::Shadow, head, UpstreamBody::buffered(body));
    let resp = match sent.await {
        Ok(resp) => resp,
        Err(failure) => return (Some(started.elapsed()), Err(failure)),
    };
    let latency = resp.body().latency().map(|l| l.0);
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (body, truncated) = match Limited::new(resp.into_body(), max_body).collect().await {
        Ok(c) => (c.to_bytes(), false),
        // Too large to compare: not the backend's fault.
        Err(e) if e.is::<LengthLimitError>() => (Bytes::new(), true),
        // Cut off by the backend: its error.
        Err(e) => return (latency, Err(Failure::Truncated(e))),
    };
    (
        latency,
        Ok(Captured {
            status,
            content_type,
            body,
            truncated,
            ended: Instant::now(),
        }),
    )
}

/// A mirrored answer counts as a candidate sample: its window (when `judged`; without a
/// latency when none was measured cleanly, and marked as a mirrored copy, so the history
/// tells it from users' requests), metrics and the tripwire.
fn account(
    candidate: &Backend,
    snap: &Route,
    latency: Option<Duration>,
    result: &Copy,
    judged: bool,
) {
    let outcome = match result {
        Ok(c) => telemetry::Outcome::Answered(c.status),
        Err(failure) => match failure.outcome() {
            Some(outcome) => outcome,
            None => return,
        },
    };
    let now = Instant::now();
    let window = candidate.window_if(judged);
    telemetry::record(
        window,
        &candidate.metrics,
        snap.tripwire.as_deref(),
        now,
        // A mirror's answer reaches no client: its metric is the backend's latency too.
        telemetry::Took {
            seen: latency,
            backend: latency,
        },
        outcome,
    );
    if let Some(window) = window {
        window.record_mirrored(now);
    }
}

/// Counts the mirror's outcome and its comparison, in the metrics and the candidate's
/// window (`None` when the sample is not judged).
fn tally(
    snap: &Route,
    window: Option<&Window>,
    live: Option<&Captured>,
    shadow: &Copy,
    comparison: Option<&Comparison>,
) {
    metrics::shadow_request(
        &snap.name,
        match (live, shadow) {
            (Some(_), Ok(_)) => "compared",
            (_, Err(_)) => "error",
            // The shadow answered but the live answer never completed (its client went
            // away, or the live request failed): nothing to compare, and not the shadow's fault.
            (None, Ok(_)) => "abandoned",
        },
    );
    if let Err(failure) = shadow {
        tracing::debug!(target: "switchyard::shadow", error = %failure, "shadow request failed");
    }
    let outcome = comparison.map_or(Outcome::Incomparable, |c| c.outcome);
    metrics::shadow_comparison(&snap.name, outcome.as_str());
    if let Some(window) = window {
        window.record_shadow(Instant::now(), outcome.into());
    }
    for o in comparison.iter().flat_map(|c| &c.outputs) {
        metrics::shadow_output(&snap.name, &o.name, o.agree);
    }
}

/// The noise floor: the stable compared with itself on the same request. Its tally lives
/// in the stable's window, where the `shadow_agreement` gate reads it.
fn calibrate(snap: &Route, live: Option<&Captured>, again: &Copy) {
    let outcome = judge(snap, live, again).map_or(Outcome::Incomparable, |c| c.outcome);
    metrics::shadow_calibration(&snap.name, outcome.as_str());
    snap.stable
        .window
        .record_shadow(Instant::now(), outcome.into());
}

/// A disagreement as `/api/v1/shadow/diffs` shows it, both bodies redacted.
fn diff_record(
    snap: &Route,
    request_id: &HeaderValue,
    c: &Comparison,
    live: &Captured,
    shadow: &Captured,
) -> serde_json::Value {
    json!({
        "at": telemetry::now_rfc3339(),
        "request_id": observed::id_text(request_id),
        "outcome": c.outcome,
        "protocol": c.protocol,
        "reason": c.reason,
        "differences": c.differences,
        "differences_total": c.differences_total,
        "outputs": c.outputs,
        "live": { "status": live.status, "body": compare::redact(&snap.compare, &live.body) },
        "shadow": { "status": shadow.status, "body": compare::redact(&snap.compare, &shadow.body) },
    })
}

/// Compares the live answer with a copy's; `None` when either is missing (live request
/// failed or its client went away, or the copy failed), which counts as incomparable.
fn judge(snap: &Route, live: Option<&Captured>, copy: &Copy) -> Option<Comparison> {
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
