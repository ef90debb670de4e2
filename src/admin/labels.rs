//! `POST /api/v1/feedback` off the data plane: a label batch is read and joined on a
//! thread of its own, never on the runtime that serves requests.
//!
//! At most [`MAX_PARSING`] posts are read and joined at once (per admin API, by its
//! [`Turns`]); a further post waits up
//! to [`ADMIT_WAIT`] for its turn (before its body is read), then is answered 503. Each
//! admitted body is read up to `feedback.max_body` within [`READ_TIMEOUT`], then parsed
//! and joined on a fresh thread at the observers' low CPU priority, while the admin
//! task awaits the result. So the labels' memory is bounded by [`MAX_PARSING`] posts of
//! at most three times `feedback.max_body` each (the body, and at most its size again
//! of unescaped strings while a chunk is joined: see
//! [`read_labels`](crate::feedback::read_labels)), 24 MiB at the default 4 MiB.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::feedback::{Feedback, Joined};

/// Feedback posts read and joined at once, at most.
pub const MAX_PARSING: usize = 2;

/// How long a post waits for its turn before it is answered 503.
const ADMIT_WAIT: Duration = Duration::from_secs(10);

/// How long an admitted post's body may take to arrive before it is answered 408.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Bodies being parsed and joined now, on their threads (in the whole process).
static PARSING: AtomicUsize = AtomicUsize::new(0);

/// How many feedback bodies are being parsed and joined at this moment (off the runtime).
pub fn parsing() -> usize {
    PARSING.load(Ordering::SeqCst)
}

/// Why a post was not joined.
#[derive(Debug)]
pub enum Refused {
    /// No turn came within [`ADMIT_WAIT`]: 503.
    Busy,
    /// The body is over `feedback.max_body`: 413.
    TooLarge(usize),
    /// The body did not arrive within [`READ_TIMEOUT`]: 408.
    Slow,
    /// The body could not be read: 400.
    Unreadable(String),
    /// The body is not a label or a batch of labels: 400 with the reason.
    Invalid(String),
    /// The thread that joins could not start, or failed: 503.
    Failed(String),
}

/// The turns of one admin API's feedback posts: [`MAX_PARSING`] at once.
#[derive(Clone)]
pub struct Turns(Arc<Semaphore>);

impl Default for Turns {
    fn default() -> Turns {
        Turns(Arc::new(Semaphore::new(MAX_PARSING)))
    }
}

/// A turn to read and join one post.
pub struct Turn(#[allow(dead_code)] OwnedSemaphorePermit);

impl Turns {
    /// Waits for a turn, at most [`ADMIT_WAIT`].
    pub async fn admit(&self) -> Result<Turn, Refused> {
        match tokio::time::timeout(ADMIT_WAIT, self.0.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Turn(permit)),
            _ => Err(Refused::Busy),
        }
    }
}

/// Reads a post's body, at most `max` bytes, within [`READ_TIMEOUT`].
pub async fn read(body: Incoming, max: usize) -> Result<Bytes, Refused> {
    let read = Limited::new(body, max).collect();
    match tokio::time::timeout(READ_TIMEOUT, read).await {
        Err(_) => Err(Refused::Slow),
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(Refused::TooLarge(max)),
        Ok(Err(e)) => Err(Refused::Unreadable(e.to_string())),
    }
}

/// Parses `body` and joins its labels with `store` at `now`, on a thread of its own at a
/// low CPU priority; `turn` is given back when it is done (even if the caller went away).
pub async fn join(
    store: Arc<Feedback>,
    body: Bytes,
    now: Instant,
    turn: Turn,
) -> Result<Joined, Refused> {
    let (tx, rx) = oneshot::channel();
    let started = std::thread::Builder::new()
        .name("switchyard-labels".into())
        .spawn(move || {
            crate::shadow::runtime::lower_priority();
            PARSING.fetch_add(1, Ordering::SeqCst);
            let joined = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                store.join_body(&body, now)
            }));
            PARSING.fetch_sub(1, Ordering::SeqCst);
            drop(body);
            drop(turn);
            let _ = tx.send(joined);
        });
    if let Err(e) = started {
        return Err(Refused::Failed(format!(
            "no thread to read the labels: {e}"
        )));
    }
    match rx.await {
        Ok(Ok(Ok(joined))) => Ok(joined),
        Ok(Ok(Err(msg))) => Err(Refused::Invalid(msg)),
        Ok(Err(_)) | Err(_) => Err(Refused::Failed("reading the labels failed".into())),
    }
}
