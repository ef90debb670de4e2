//! Shadow mirroring: a copy of a stable-served request goes to the candidate under a
//! bounded semaphore, and its answer is compared with the live one after the live
//! response has been sent. Nothing here is awaited by the live path.
//!
//! The copies, their answers and the comparisons run on their own thread at a low CPU
//! priority ([`shadow_runtime`]), with connection pools of their own, and start once no
//! live request is in flight (or after 10 ms, see `Deferred`): when the CPU is short, the
//! live path gets it and mirrors pile up against `max_in_flight`, beyond which they are
//! dropped and counted.
//!
//! With `shadow.calibrate`, a share of the mirrored requests is also copied to the stable
//! itself: how often the stable disagrees with its own answer is the noise floor, which the
//! `shadow_agreement` gate does not blame on the candidate.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http_body_util::{BodyExt, Limited};
use serde_json::json;
use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit};
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
        Some(_) => DEFERRED.submit(work),
        None => drop(tokio::spawn(work)),
    }
    Some(tx)
}

/// A mirror's whole work, boxed once.
type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The longest a batch of mirrors waits for the live side to go quiet.
const MAX_DEFER: Duration = Duration::from_millis(10);

/// At most this many mirrors run at once on the shadow thread; the rest of a batch waits
/// (still holding its `max_in_flight` place). Without it, a large `max_in_flight` and a
/// backlog let one batch open hundreds of candidate connections at the same moment.
const MAX_RUNNING: usize = 512;

/// Mirrors waiting for the shadow thread, which starts them once no live request is in
/// flight (or after [`MAX_DEFER`], so that a saturated proxy still compares).
///
/// Handing each mirror to the shadow thread as it comes woke that thread once for the
/// mirror and again for its live answer: two futex calls on the live thread per request,
/// and on a busy CPU the shadow thread's work cut in between live requests. Queued here,
/// the thread is woken once per batch, and by the time it starts a mirror the live answer
/// is usually complete, so delivering it wakes no one.
struct Deferred {
    jobs: Mutex<Vec<Job>>,
    /// A batch has begun (the queue was empty).
    arrived: Notify,
    /// The last live request in flight has finished while the shadow thread waited.
    quiet: Notify,
    /// Live requests in flight while mirroring is on ([`LiveRequest`]).
    live: AtomicUsize,
    /// The shadow thread waits for `quiet`.
    waiting: AtomicBool,
}

static DEFERRED: Deferred = Deferred::new();

impl Deferred {
    const fn new() -> Self {
        Deferred {
            jobs: Mutex::new(Vec::new()),
            arrived: Notify::const_new(),
            quiet: Notify::const_new(),
            live: AtomicUsize::new(0),
            waiting: AtomicBool::new(false),
        }
    }

    fn live_started(&self) {
        self.live.fetch_add(1, Ordering::SeqCst);
    }

    fn live_finished(&self) {
        if self.live.fetch_sub(1, Ordering::SeqCst) == 1 && self.waiting.load(Ordering::SeqCst) {
            self.quiet.notify_one();
        }
    }

    fn submit(&self, job: Job) {
        let first = {
            let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            jobs.push(job);
            jobs.len() == 1
        };
        if first {
            self.arrived.notify_one();
        }
    }

    /// The shadow thread's loop: waits for a batch, then for the live side to be quiet,
    /// then starts the batch's mirrors.
    async fn run(&'static self) {
        let running = Arc::new(tokio::sync::Semaphore::new(MAX_RUNNING));
        loop {
            self.arrived.notified().await;
            if self.live.load(Ordering::SeqCst) > 0 {
                self.waiting.store(true, Ordering::SeqCst);
                // Checked again after announcing the wait: a live request finishing in
                // between saw `waiting` false and notified no one.
                if self.live.load(Ordering::SeqCst) > 0 {
                    let _ = tokio::time::timeout(MAX_DEFER, self.quiet.notified()).await;
                }
                self.waiting.store(false, Ordering::SeqCst);
            }
            let jobs = std::mem::take(&mut *self.jobs.lock().unwrap_or_else(|e| e.into_inner()));
            for job in jobs {
                let Ok(slot) = running.clone().acquire_owned().await else {
                    return; // never closed
                };
                drop(tokio::spawn(async move {
                    job.await;
                    drop(slot);
                    // Step aside after each mirror: a live request waiting for this CPU
                    // runs now, not at the end of the shadow thread's time slice, which at
                    // saturation holds several mirrors' work.
                    std::thread::yield_now();
                }));
            }
        }
    }
}

/// Marks one live request in flight while mirroring is on, until dropped.
pub struct LiveRequest(());

impl LiveRequest {
    pub fn start() -> Self {
        DEFERRED.live_started();
        LiveRequest(())
    }
}

impl Drop for LiveRequest {
    fn drop(&mut self) {
        DEFERRED.live_finished();
    }
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
                            rt.block_on(DEFERRED.run());
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// A deferred queue of its own, its loop running; jobs count into the returned counter.
    fn queue() -> (&'static Deferred, Arc<AtomicU32>) {
        let d: &'static Deferred = Box::leak(Box::new(Deferred::new()));
        tokio::spawn(d.run());
        (d, Arc::new(AtomicU32::new(0)))
    }

    fn job(done: &Arc<AtomicU32>) -> Job {
        let done = done.clone();
        Box::pin(async move {
            done.fetch_add(1, Ordering::SeqCst);
        })
    }

    /// Lets the loop and its jobs run without time passing.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn mirrors_start_once_no_live_request_is_in_flight() {
        let (d, done) = queue();
        d.live_started();
        d.live_started();
        d.submit(job(&done));
        d.submit(job(&done));
        settle().await;
        assert_eq!(
            done.load(Ordering::SeqCst),
            0,
            "started beside live requests"
        );
        d.live_finished();
        settle().await;
        assert_eq!(
            done.load(Ordering::SeqCst),
            0,
            "one live request still in flight"
        );
        d.live_finished();
        settle().await;
        assert_eq!(done.load(Ordering::SeqCst), 2);
        // Quiet already: the next one starts at once.
        d.submit(job(&done));
        settle().await;
        assert_eq!(done.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_proxy_never_quiet_still_starts_its_mirrors_after_max_defer() {
        let (d, done) = queue();
        d.live_started();
        let submitted = Instant::now();
        d.submit(job(&done));
        while done.load(Ordering::SeqCst) == 0 {
            assert!(
                submitted.elapsed() < Duration::from_secs(1),
                "never started"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let waited = submitted.elapsed();
        assert!(
            waited >= MAX_DEFER && waited <= MAX_DEFER + Duration::from_millis(2),
            "{waited:?}"
        );
    }
}
