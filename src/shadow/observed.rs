//! Sampled exchanges on their way to the route's observers: a bounded queue into a
//! low-priority thread of their own, where [`Observers::observe`] runs once the answer
//! has gone to the client.
//!
//! The queue holds at most [`MAX_QUEUED`] exchanges and [`MAX_QUEUED_BYTES`] of their
//! bodies; beyond either, an exchange is dropped and counted
//! (`switchyard_monitor_samples_total{result="dropped"}`), never waited for.
//!
//! # Faults
//!
//! Nothing an exchange holds may end the thread: a panic while one exchange is
//! observed is caught, counted (`switchyard_observer_panics_total`), logged with
//! its request id (the first one, then at most one line every [`LOG_EVERY`] with
//! how many came since), and the thread goes on with the next exchange. A thread
//! that ended all the same, that could not start, or that has exchanges waiting
//! and has finished none for [`STUCK_AFTER`], makes `/readyz` answer 503 with
//! the reason ([`health`]).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::HeaderValue;
use http::uri::PathAndQuery;
use tokio::time::Instant;

use super::runtime;
use crate::observe::{Answered, Observers, Seen, MAX_BODY};
use crate::upstream::body::TeeCopy;

/// The live answer as captured for a comparison or the observers.
#[derive(Debug)]
pub struct Captured {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
    /// The body exceeded the cap, or the client went away before its end.
    pub truncated: bool,
    /// When the answer ended (or was given up).
    pub ended: Instant,
}

/// Exchanges waiting for the observers at most.
pub(crate) const MAX_QUEUED: usize = 1024;

/// Body bytes (request and answer) waiting for the observers at most: 64 MiB.
pub(crate) const MAX_QUEUED_BYTES: usize = 64 << 20;

/// The observer thread has had exchanges waiting and finished none for this long: it is
/// stuck, and `/readyz` says so. Observing one exchange takes milliseconds.
pub(crate) const STUCK_AFTER: Duration = Duration::from_secs(30);

/// After the first, observer panics are logged at most once in this span (with how many
/// there were since), so a flood of poisonous requests cannot flood the log.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(60);

static QUEUED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Exchanges queued and not yet finished (the one being observed included).
static WAITING: AtomicUsize = AtomicUsize::new(0);
/// When the thread last finished an exchange, or an exchange was queued to an idle one:
/// milliseconds since [`epoch`].
static PROGRESS: AtomicU64 = AtomicU64::new(0);
/// Panics caught while observing an exchange, since the start.
static PANICS: AtomicU64 = AtomicU64::new(0);
/// The observer thread's state: one of the `THREAD_*` values.
static THREAD: AtomicU8 = AtomicU8::new(THREAD_NONE);
const THREAD_NONE: u8 = 0;
const THREAD_RUNNING: u8 = 1;
const THREAD_ENDED: u8 = 2;
const THREAD_FAILED: u8 = 3;

/// The observer thread's name (its panics are the ones caught and logged here).
const THREAD_NAME: &str = "switchyard-observe";

/// A sampled request, as the live path hands it over before its answer.
pub struct Pending {
    pub observers: Arc<Observers>,
    /// Its draw ([`Observers::roll`]).
    pub draw: u32,
    pub request_id: HeaderValue,
    pub path: PathAndQuery,
    /// When it arrived, on the wall clock (for the capture) and the monotonic one.
    pub at: SystemTime,
    pub started: Instant,
    pub request: RequestCopy,
    /// The backend that answered (set when the answer's head is in).
    pub backend: Arc<str>,
    /// Whether the gates read this exchange (its client within its share of the backend's
    /// window), and the mirror's answer to it (of the candidate's).
    pub judged: bool,
    pub shadow_judged: bool,
}

/// The request body as the observers get it: the buffered bytes, or the copy made as it
/// streamed upstream.
pub enum RequestCopy {
    Buffered(Bytes),
    Teed(TeeCopy),
}

impl RequestCopy {
    /// The bytes copied, and whether they fall short of the whole body (over the cap, or
    /// the body never ended).
    pub fn take(&self) -> (Bytes, bool) {
        match self {
            RequestCopy::Buffered(b) if b.len() > MAX_BODY => (Bytes::new(), true),
            RequestCopy::Buffered(b) => (b.clone(), false),
            RequestCopy::Teed(copy) => {
                let mut c = copy.lock().unwrap_or_else(|e| e.into_inner());
                let whole = c.complete;
                (std::mem::take(&mut c.bytes).freeze(), !whole)
            }
        }
    }

    /// Its size so far.
    fn len(&self) -> usize {
        match self {
            RequestCopy::Buffered(b) => b.len(),
            RequestCopy::Teed(copy) => copy.lock().map_or(0, |c| c.bytes.len()),
        }
    }
}

impl Pending {
    /// The exchange as the observers read it: the request (from [`RequestCopy::take`]),
    /// its id as text ([`id_text`] of its `request_id`) and the live `answer`.
    pub fn seen<'a>(
        &'a self,
        request_id: &'a str,
        (request, request_truncated): &'a (Bytes, bool),
        answer: &'a Captured,
        shadow: Option<(&'a Arc<str>, Option<Answered<'a>>)>,
    ) -> Seen<'a> {
        Seen {
            draw: self.draw,
            request_id,
            path: self.path.path(),
            at: self.at,
            latency: answer.ended.saturating_duration_since(self.started),
            request,
            request_truncated: *request_truncated,
            backend: &self.backend,
            answer: answered(answer),
            shadow,
            judged: self.judged,
            shadow_judged: self.shadow_judged,
        }
    }
}

/// A request id as the observers, the capture, the feedback store and the diffs record it:
/// its bytes read as UTF-8, as a label's `request_id` would write it (`café` sent as
/// UTF-8 is `"café"`); bytes that are not UTF-8 (which no JSON string can name) become
/// U+FFFD, so ids that differ only there are recorded alike, and their labels are then
/// ambiguous, never scored against the wrong answer.
pub(crate) fn id_text(id: &HeaderValue) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(id.as_bytes())
}

/// An answer as the observers read it.
pub(crate) fn answered(c: &Captured) -> Answered<'_> {
    Answered {
        status: c.status,
        body: &c.body,
        truncated: c.truncated,
    }
}

/// Queues an exchange whose answer has ended for its observers (with the mirror's answer
/// when it was mirrored: its backend, and the answer if one came), or drops and counts it
/// when the queue is full.
pub(crate) fn submit(
    pending: Box<Pending>,
    answer: Captured,
    shadow: Option<(Arc<str>, Option<Captured>)>,
) {
    let answer = capped(answer);
    let shadow = shadow.map(|(backend, copy)| (backend, copy.map(capped)));
    let shadow_bytes = shadow
        .as_ref()
        .and_then(|(_, c)| c.as_ref())
        .map_or(0, |c| c.body.len());
    let bytes = pending.request.len() + answer.body.len() + shadow_bytes;
    let queued_bytes = QUEUED_BYTES.fetch_add(bytes, Ordering::Relaxed);
    let job = Job {
        pending,
        answer,
        shadow,
        bytes,
    };
    let sent = match queue() {
        Some(tx) if queued_bytes.saturating_add(bytes) <= MAX_QUEUED_BYTES => {
            // Counted before it is sent, so the thread never finishes one not counted.
            if WAITING.fetch_add(1, Ordering::AcqRel) == 0 {
                PROGRESS.store(now_ms(), Ordering::Release);
            }
            tx.try_send(job).map_err(|e| {
                WAITING.fetch_sub(1, Ordering::AcqRel);
                match e {
                    TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
                }
            })
        }
        _ => Err(job),
    };
    if let Err(job) = sent {
        QUEUED_BYTES.fetch_sub(job.bytes, Ordering::Relaxed);
        job.pending.observers.drop_one();
    }
}

/// Whether the observers can take exchanges: `Err` says why not (the thread ended, could
/// not start, or is stuck). What `/readyz` reads.
pub(crate) fn health() -> Result<(), String> {
    verdict(
        THREAD.load(Ordering::Acquire),
        WAITING.load(Ordering::Acquire),
        PROGRESS.load(Ordering::Acquire),
        now_ms(),
    )
}

/// The health of a thread in `state` with `waiting` exchanges, which last made progress
/// at `progress` (ms), at `now` (ms).
fn verdict(state: u8, waiting: usize, progress: u64, now: u64) -> Result<(), String> {
    match state {
        THREAD_ENDED => {
            return Err("the observer thread has ended: exchanges are no longer observed".into())
        }
        THREAD_FAILED => {
            return Err("the observer thread could not start: exchanges are not observed".into())
        }
        _ => {}
    }
    let idle = Duration::from_millis(now.saturating_sub(progress));
    if waiting > 0 && idle >= STUCK_AFTER {
        return Err(format!(
            "the observer thread is stuck: {waiting} exchanges waiting, none finished for {}s",
            idle.as_secs()
        ));
    }
    Ok(())
}

/// Panics caught while observing an exchange since the start
/// (`switchyard_observer_panics_total`).
pub(crate) fn panics() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

/// Milliseconds since the first call: the observer thread's clock.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(std::time::Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// An answer as the observers take it: one over [`MAX_BODY`] (a mirror reads up to
/// `limits.max_body` for its comparison) is kept by its status only, as truncated.
fn capped(mut c: Captured) -> Captured {
    if c.body.len() > MAX_BODY {
        c.body = Bytes::new();
        c.truncated = true;
    }
    c
}

/// One exchange on its way to the observers.
struct Job {
    pending: Box<Pending>,
    answer: Captured,
    shadow: Option<(Arc<str>, Option<Captured>)>,
    /// Its bodies' bytes, counted against [`MAX_QUEUED_BYTES`].
    bytes: usize,
}

impl Job {
    /// Hands the exchange to the route's observers; a panic on the way is caught,
    /// counted and logged (see the module docs), and the thread goes on.
    fn run_caught(self) {
        let request_id = self.pending.request_id.clone();
        OBSERVING.with(|o| o.set(true));
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| self.run()));
        OBSERVING.with(|o| o.set(false));
        if let Err(payload) = outcome {
            caught(&request_id, payload.as_ref());
        }
    }

    /// Hands the exchange to the route's observers.
    fn run(self) {
        let request = self.pending.request.take();
        let shadow = self
            .shadow
            .as_ref()
            .map(|(backend, copy)| (backend, copy.as_ref().map(answered)));
        let id = id_text(&self.pending.request_id);
        let seen = self.pending.seen(&id, &request, &self.answer, shadow);
        self.pending.observers.observe(&seen);
    }
}

/// The queue into the observers' thread, started on first use; `None` if the thread
/// could not be started (then every exchange is dropped and counted).
///
/// A thread of its own, not the shadow runtime: parsing bodies there would delay the
/// mirrors' own exchanges, whose timings are the candidate's latency samples, and make a
/// healthy candidate look slow. It runs at the shadow side's low priority, so on a
/// saturated CPU the live path is served first and the queue takes the shortfall.
fn queue() -> Option<&'static SyncSender<Job>> {
    static QUEUE: OnceLock<Option<SyncSender<Job>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            quiet_panics();
            let (tx, rx) = mpsc::sync_channel::<Job>(MAX_QUEUED);
            let started = std::thread::Builder::new()
                .name(THREAD_NAME.into())
                .spawn(move || {
                    let _ended = Ended;
                    runtime::lower_priority();
                    for job in rx {
                        let bytes = job.bytes;
                        job.run_caught();
                        QUEUED_BYTES.fetch_sub(bytes, Ordering::Relaxed);
                        PROGRESS.store(now_ms(), Ordering::Release);
                        WAITING.fetch_sub(1, Ordering::AcqRel);
                    }
                });
            match started {
                Ok(_) => {
                    THREAD.store(THREAD_RUNNING, Ordering::Release);
                    Some(tx)
                }
                Err(e) => {
                    THREAD.store(THREAD_FAILED, Ordering::Release);
                    tracing::warn!(target: "switchyard::observe", "no observer thread: {e}");
                    None
                }
            }
        })
        .as_ref()
}

/// Marks the observer thread ended when it ends, however it ends.
struct Ended;

impl Drop for Ended {
    fn drop(&mut self) {
        THREAD.store(THREAD_ENDED, Ordering::Release);
        tracing::error!(target: "switchyard::observe", "the observer thread has ended: exchanges are no longer observed");
    }
}

thread_local! {
    /// This thread is observing an exchange: a panic here is caught and logged by
    /// [`caught`], not printed by the panic hook.
    static OBSERVING: Cell<bool> = const { Cell::new(false) };
    /// The last caught panic's message and location, as the panic hook saw them.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that keeps the observer thread's caught panics out of
/// stderr (they are logged, rate-limited, by [`caught`]); every other panic goes to the
/// hook that was there before.
fn quiet_panics() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if OBSERVING.with(Cell::get) && std::thread::current().name() == Some(THREAD_NAME) {
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
            } else {
                previous(info);
            }
        }));
    });
}

/// Counts a panic caught while observing the exchange `request_id`, and logs it: the
/// first one, then at most one every [`LOG_EVERY`] with how many came since.
fn caught(request_id: &HeaderValue, payload: &(dyn Any + Send)) {
    static LOGGED: AtomicU64 = AtomicU64::new(0);
    static SINCE: AtomicU64 = AtomicU64::new(0);
    let n = PANICS.fetch_add(1, Ordering::Relaxed) + 1;
    let since = SINCE.fetch_add(1, Ordering::Relaxed) + 1;
    let what = LAST_PANIC
        .with(|p| p.borrow_mut().take())
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned());
    let now = now_ms();
    let last = LOGGED.load(Ordering::Relaxed);
    let every = LOG_EVERY.as_millis() as u64;
    if n > 1 && now.saturating_sub(last) < every {
        return;
    }
    LOGGED.store(now, Ordering::Relaxed);
    SINCE.store(0, Ordering::Relaxed);
    let request_id = String::from_utf8_lossy(request_id.as_bytes());
    tracing::error!(
        target: "switchyard::observe",
        request_id = %request_id,
        panics = n,
        since_last_logged = since,
        "observing an exchange panicked (caught; the observers go on): {what}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::observe::{Hub, PANIC_FOR_TESTS};

    /// The observers of a route that monitors every request.
    fn observers() -> Arc<Observers> {
        let yaml = "backends: { blue: { url: 'http://127.0.0.1:1' } }\n\
                    rollout: { stable: blue }\n\
                    monitor: { sample: 100 }\n";
        let config = config::parse(yaml).unwrap();
        let hub = Hub::new(&config, None);
        hub.observers(&config.routes()[0]).unwrap()
    }

    fn pending(observers: &Arc<Observers>, request_id: &str) -> Box<Pending> {
        let body = r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1.5,2.5]}]}"#;
        Box::new(Pending {
            observers: observers.clone(),
            draw: 0,
            request_id: HeaderValue::from_str(request_id).unwrap(),
            path: PathAndQuery::from_static("/v2/models/m/infer"),
            at: SystemTime::now(),
            started: Instant::now(),
            request: RequestCopy::Buffered(Bytes::from_static(body.as_bytes())),
            backend: "blue".into(),
            judged: true,
            shadow_judged: true,
        })
    }

    fn answer() -> Captured {
        Captured {
            status: 200,
            content_type: Some("application/json".into()),
            body: Bytes::from_static(
                br#"{"outputs":[{"name":"y","shape":[1],"datatype":"INT64","data":[1]}]}"#,
            ),
            truncated: false,
            ended: Instant::now(),
        }
    }

    #[test]
    fn a_panic_while_observing_is_caught_counted_and_the_next_exchange_observed() {
        let o = observers();
        let before = panics();
        submit(pending(&o, PANIC_FOR_TESTS), answer(), None);
        submit(pending(&o, "after-the-panic"), answer(), None);
        // The observer thread is a real thread: wait for it, bounded.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let parsed = || {
            o.monitor()
                .map_or(0, |m| m.report(Instant::now(), None).samples.parsed)
        };
        while parsed() < 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(parsed(), 1, "the exchange after the panic was observed");
        assert_eq!(panics() - before, 1, "the panic was counted");
        assert_eq!(THREAD.load(Ordering::Acquire), THREAD_RUNNING);
        assert_eq!(health(), Ok(()));
    }

    #[test]
    fn an_ended_or_stuck_observer_thread_is_unhealthy() {
        let stuck = STUCK_AFTER.as_millis() as u64;
        assert_eq!(verdict(THREAD_NONE, 0, 0, 10 * stuck), Ok(()));
        assert_eq!(
            verdict(THREAD_RUNNING, 0, 0, 10 * stuck),
            Ok(()),
            "idle, nothing waiting"
        );
        assert_eq!(verdict(THREAD_RUNNING, 3, 1_000, 1_000 + stuck - 1), Ok(()));
        let e = verdict(THREAD_RUNNING, 3, 1_000, 1_000 + stuck).unwrap_err();
        assert!(
            e.contains("stuck") && e.contains("3 exchanges waiting"),
            "{e}"
        );
        let e = verdict(THREAD_ENDED, 0, 0, 0).unwrap_err();
        assert!(e.contains("ended"), "{e}");
        let e = verdict(THREAD_FAILED, 0, 0, 0).unwrap_err();
        assert!(e.contains("could not start"), "{e}");
    }
}
