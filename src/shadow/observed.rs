//! Sampled exchanges on their way to the route's observers: a bounded queue into a
//! low-priority thread of their own, where [`Observers::observe`] runs once the answer
//! has gone to the client.
//!
//! The queue holds at most [`MAX_QUEUED`] exchanges and [`MAX_QUEUED_BYTES`] of their
//! bodies; beyond either, an exchange is dropped and counted
//! (`switchyard_monitor_samples_total{result="dropped"}`), never waited for.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::HeaderValue;
use http::uri::PathAndQuery;
use tokio::time::Instant;

use super::runtime;
use super::tap::Captured;
use crate::observe::{Answered, Observers, Seen, MAX_BODY};
use crate::upstream::body::TeeCopy;

/// Exchanges waiting for the observers at most.
pub const MAX_QUEUED: usize = 1024;

/// Body bytes (request and answer) waiting for the observers at most: 64 MiB.
pub const MAX_QUEUED_BYTES: usize = 64 << 20;

static QUEUED_BYTES: AtomicUsize = AtomicUsize::new(0);

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
        }
    }
}

/// A request id as the observers, the capture, the feedback store and the diffs record it:
/// its bytes read as UTF-8, as a label's `request_id` would write it (`café` sent as
/// UTF-8 is `"café"`); bytes that are not UTF-8 (which no JSON string can name) become
/// U+FFFD, so ids that differ only there are recorded alike, and their labels are then
/// ambiguous, never scored against the wrong answer.
pub fn id_text(id: &HeaderValue) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(id.as_bytes())
}

/// An answer as the observers read it.
pub fn answered(c: &Captured) -> Answered<'_> {
    Answered {
        status: c.status,
        body: &c.body,
        truncated: c.truncated,
    }
}

/// Queues an exchange whose answer has ended for its observers (with the mirror's answer
/// when it was mirrored: its backend, and the answer if one came), or drops and counts it
/// when the queue is full.
pub fn submit(
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
        Some(tx) if queued_bytes + bytes <= MAX_QUEUED_BYTES => {
            tx.try_send(job).map_err(|e| match e {
                TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
            })
        }
        _ => Err(job),
    };
    if let Err(job) = sent {
        QUEUED_BYTES.fetch_sub(job.bytes, Ordering::Relaxed);
        job.pending.observers.drop_one();
    }
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
            let (tx, rx) = mpsc::sync_channel::<Job>(MAX_QUEUED);
            let started = std::thread::Builder::new()
                .name("switchyard-observe".into())
                .spawn(move || {
                    runtime::lower_priority();
                    for job in rx {
                        let bytes = job.bytes;
                        job.run();
                        QUEUED_BYTES.fetch_sub(bytes, Ordering::Relaxed);
                    }
                });
            match started {
                Ok(_) => Some(tx),
                Err(e) => {
                    tracing::warn!(target: "switchyard::observe", "no observer thread: {e}");
                    None
                }
            }
        })
        .as_ref()
}
