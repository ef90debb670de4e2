//! The prediction log: sampled requests and their answers, redacted, appended to JSON
//! Lines files off the live path.
//!
//! A [`Capture`] is one log (one `capture:` setting, one directory). Each route that
//! records into it gets a [`RouteCapture`], whose [`try_send`](RouteCapture::try_send)
//! puts a [`Record`] on a bounded queue and returns at once: when the queue is full (in
//! records or in bytes) the record is dropped and counted, never waited for. A writer
//! thread of its own takes records off the queue, renders each as one JSON object (bodies
//! parsed, every `redact` pointer replaced by `"[redacted]"`, a body that is not JSON
//! shown by its size only), and appends it to the current file, rotating by size and
//! deleting the oldest files beyond `keep`.
//!
//! The writer is a plain thread, not a tokio task: file writes block, and on a runtime
//! worker they would stall every request that worker serves (`tokio::fs` only moves each
//! call to the blocking pool, one hand-off per write). A thread of its own blocks on the
//! disk alone, parks on the queue when there is nothing to write, needs no runtime (the
//! caller may be the shadow runtime or any thread), and runs at a lower CPU priority, like
//! the shadow thread, so that on a saturated CPU the live path is served first and the
//! queue, not the live path, takes the shortfall.
//!
//! Failures are the log's, never a request's: an unwritable directory or a full disk
//! turns records into `error` counts (logged once per distinct error), and the writer
//! tries the disk again a second later. Nothing here panics on bad input or bad disks.
//!
//! # Memory
//!
//! The queue holds at most [`Settings::queue`] records (default 1 024) and at most
//! [`Settings::queue_bytes`] of body bytes (default 16 MiB, counted from the bodies'
//! sizes plus [`RECORD_OVERHEAD`](record::RECORD_OVERHEAD) per record); the writer holds one record and its
//! rendered line at a time.
//!
//! How a route sends a record and what is written: `src/capture/tests.rs`, from
//! `records_are_written_one_json_object_a_line` on.

mod counts;
mod files;
mod record;
mod writer;

pub(crate) use counts::{Counts, CountsSnapshot};
use record::Queued;
#[cfg(test)]
use record::RECORD_OVERHEAD;
pub(crate) use record::{Body, Record, Shadow};
use writer::Msg;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;

use crate::wire::pointer::{self, Pattern};

/// What a capture log is configured with: the `capture:` keys, plus the queue's bounds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    /// The directory the files are written in (created when missing).
    pub path: PathBuf,
    /// JSON pointers (`*` matches any key or index) whose values are replaced by
    /// `"[redacted]"` in requests and responses before anything is written.
    pub redact: Vec<String>,
    /// A file that would grow past this many bytes is closed and the next one begun
    /// (a single record larger than this gets a file of its own).
    pub max_file: u64,
    /// At most this many files are kept, the one being written included; older ones are
    /// deleted (at least 1).
    pub keep: usize,
    /// At most this many records wait for the writer; more are dropped and counted.
    pub queue: usize,
    /// At most this many bytes of records wait for the writer; more are dropped and counted.
    pub queue_bytes: usize,
}

/// Default [`Settings::max_file`]: 64 MiB.
pub(crate) const DEFAULT_MAX_FILE: u64 = 64 << 20;
/// Default [`Settings::keep`].
pub(crate) const DEFAULT_KEEP: usize = 10;
/// Default [`Settings::queue`].
pub(crate) const DEFAULT_QUEUE: usize = 1024;
/// Default [`Settings::queue_bytes`]: 16 MiB.
pub(crate) const DEFAULT_QUEUE_BYTES: usize = 16 << 20;
impl Settings {
    /// Settings for a log in `path` with the defaults: nothing redacted, 64 MiB files, 10 kept.
    pub(crate) fn new(path: impl Into<PathBuf>) -> Settings {
        Settings {
            path: path.into(),
            redact: Vec::new(),
            max_file: DEFAULT_MAX_FILE,
            keep: DEFAULT_KEEP,
            queue: DEFAULT_QUEUE,
            queue_bytes: DEFAULT_QUEUE_BYTES,
        }
    }

    /// Checks the redact pointers, one message per bad entry (`redact[i]: ...`), for the
    /// config's validation.
    pub(crate) fn check(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        pointer::check("redact", &self.redact, &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// A capture log: the queue into its writer thread. Dropping it (and every
/// [`RouteCapture`]) lets the writer finish what is queued and end.
pub(crate) struct Capture {
    queue: Queue,
}

/// What a sender holds: the queue and its byte budget.
#[derive(Clone)]
struct Queue {
    tx: SyncSender<Msg>,
    /// Bytes of records queued and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
    max_bytes: usize,
}

/// A redact pointer that does not parse: the log is not started, since it could write
/// what the pointer was meant to hide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("capture redact pointers: {}", .0.join("; "))]
pub(crate) struct InvalidRedact(pub Vec<String>);

impl Capture {
    /// Starts a log: compiles the redact pointers and starts the writer thread.
    ///
    /// The directory is created (and checked) by the writer, so a bad path never fails
    /// here: its records are counted as errors. If the thread cannot be started, the
    /// failure is logged and every record is counted as dropped.
    pub(crate) fn start(settings: Settings) -> Result<Capture, InvalidRedact> {
        let (capture, writer) = Capture::unstarted(settings)?;
        writer::spawn(writer);
        Ok(capture)
    }

    /// The queue and the writer that drains it, not yet running.
    fn unstarted(settings: Settings) -> Result<(Capture, writer::Writer), InvalidRedact> {
        settings.check().map_err(InvalidRedact)?;
        let redact: Vec<Pattern> = pointer::compile(&settings.redact);
        let (tx, rx) = mpsc::sync_channel(settings.queue.max(1));
        let queued = Arc::new(AtomicUsize::new(0));
        let files = files::Files::new(&settings.path, settings.max_file, settings.keep);
        let writer = writer::Writer::new(rx, files, redact, queued.clone());
        let queue = Queue {
            tx,
            queued,
            max_bytes: settings.queue_bytes,
        };
        Ok((Capture { queue }, writer))
    }

    /// The sender for one route, counting into `counts`.
    pub(crate) fn route(&self, name: impl Into<Arc<str>>, counts: Arc<Counts>) -> RouteCapture {
        RouteCapture {
            queue: self.queue.clone(),
            route: name.into(),
            counts,
        }
    }

    /// Waits until every record queued before this call is written (or counted as an
    /// error), for tests. Blocks the calling thread: not for a runtime worker.
    #[cfg(test)]
    pub(crate) fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        if self.queue.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.recv();
        }
    }
}

/// One route's way into a [`Capture`]: cheap to clone, and safe to call from any thread.
#[derive(Clone)]
pub struct RouteCapture {
    queue: Queue,
    route: Arc<str>,
    counts: Arc<Counts>,
}

impl RouteCapture {
    /// Queues a record for the writer and returns at once; `false` when it was dropped
    /// (queue full in records or bytes, or the writer gone), which is counted.
    ///
    /// Never blocks, never touches the disk, never panics.
    pub fn try_send(&self, record: Record) -> bool {
        let weight = record.weight();
        let before = self.queue.queued.fetch_add(weight, Ordering::Relaxed);
        if before.saturating_add(weight) > self.queue.max_bytes {
            self.queue.queued.fetch_sub(weight, Ordering::Relaxed);
            Counts::add(&self.counts.dropped);
            return false;
        }
        let queued = Box::new(Queued {
            record,
            route: self.route.clone(),
            counts: self.counts.clone(),
            weight,
        });
        match self.queue.tx.try_send(Msg::Record(queued)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.queue.queued.fetch_sub(weight, Ordering::Relaxed);
                Counts::add(&self.counts.dropped);
                false
            }
        }
    }

    /// The route's counts.
    pub fn counts(&self) -> CountsSnapshot {
        self.counts.snapshot()
    }

    /// The route this sender records for.
    pub fn route_name(&self) -> &str {
        &self.route
    }
}
