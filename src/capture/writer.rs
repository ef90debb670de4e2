//! The writer thread: takes records off the queue, renders them and appends them to the
//! files, and counts what became of each.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::counts::Counts;
use super::files::{Failure, Files};
use super::record::{self, Queued};
use crate::wire::pointer::Pattern;

/// What goes through the queue.
pub(super) enum Msg {
    Record(Box<Queued>),
    /// Answered once everything queued before it is done.
    #[cfg(test)]
    Flush(std::sync::mpsc::Sender<()>),
}

/// After a failed create or write, the disk is left alone this long; records that come
/// meanwhile are counted as errors without a try, so a full disk costs no system call
/// per record.
pub(super) const RETRY_AFTER: Duration = Duration::from_secs(1);

/// At most this many distinct errors are remembered (and logged once each).
const MAX_LOGGED: usize = 64;

/// A line buffer grown past this (by a large record) is given back after use.
const LINE_KEEP: usize = 1 << 20;

/// The writer's state, owned by its thread.
pub(super) struct Writer {
    rx: Receiver<Msg>,
    files: Files,
    redact: Vec<Pattern>,
    /// The queue's byte budget, given back as records are taken off.
    queued: Arc<AtomicUsize>,
    /// Set after a failure: until then records are counted as errors untried.
    pause_until: Option<Instant>,
    /// Errors already logged, each by its kind, so that each is logged once.
    logged: HashSet<String>,
    /// The line being rendered, reused from record to record.
    line: Vec<u8>,
}

/// Starts the writer thread; if it cannot be started, says so, and the queue's receiver
/// goes with the writer, so every record is counted as dropped.
pub(super) fn spawn(writer: Writer) {
    let started = std::thread::Builder::new()
        .name("switchyard-capture".into())
        .spawn(move || {
            lower_priority();
            writer.run();
        });
    if let Err(e) = started {
        tracing::warn!(target: "switchyard::capture", "no capture writer thread, records are dropped: {e}");
    }
}

impl Writer {
    pub(super) fn new(
        rx: Receiver<Msg>,
        files: Files,
        redact: Vec<Pattern>,
        queued: Arc<AtomicUsize>,
    ) -> Writer {
        Writer {
            rx,
            files,
            redact,
            queued,
            pause_until: None,
            logged: HashSet::new(),
            line: Vec::new(),
        }
    }

    /// Writes records as they come until every sender is gone.
    pub(super) fn run(mut self) {
        while let Ok(msg) = self.rx.recv() {
            match msg {
                Msg::Record(q) => self.write(&q),
                #[cfg(test)]
                Msg::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    /// Renders one record and appends it, counting it as written or as an error.
    fn write(&mut self, q: &Queued) {
        self.queued.fetch_sub(q.weight, Ordering::Relaxed);
        let now = Instant::now();
        if self.pause_until.is_some_and(|t| now < t) {
            return Counts::add(&q.counts.error);
        }
        self.pause_until = None;
        self.line.clear();
        if let Err(e) = record::render(q, &self.redact, &mut self.line) {
            self.log("rendering a record", &e.to_string());
            return Counts::add(&q.counts.error);
        }
        match self.files.append(&self.line) {
            Ok(()) => Counts::add(&q.counts.written),
            Err(f) => {
                Counts::add(&q.counts.error);
                self.log_failure(&f);
                self.pause_until = Some(now + RETRY_AFTER);
            }
        }
        for w in std::mem::take(&mut self.files.warnings) {
            self.log_failure(&w);
        }
        if self.line.capacity() > LINE_KEEP {
            self.line = Vec::new();
        }
    }

    fn log_failure(&mut self, f: &Failure) {
        self.log(&f.kind(), &f.to_string());
    }

    /// Logs `message` unless an error of the same `kind` was logged before.
    fn log(&mut self, kind: &str, message: &str) {
        if self.logged.len() >= MAX_LOGGED || self.logged.contains(kind) {
            return;
        }
        self.logged.insert(kind.to_owned());
        tracing::warn!(target: "switchyard::capture", "capture records not written: {message}");
    }
}

/// Lowers the writer thread's CPU priority to the shadow thread's (nice 9 on Linux), so
/// that on a busy CPU the live path is served first and the queue takes the shortfall.
fn lower_priority() {
    use thread_priority::{set_current_thread_priority, ThreadPriority, ThreadPriorityValue};
    let low = ThreadPriorityValue::try_from(WRITER_PRIORITY).map(ThreadPriority::Crossplatform);
    let set = low
        .map_err(|e| e.to_string())
        .and_then(|p| set_current_thread_priority(p).map_err(|e| format!("{e:?}")));
    if let Err(e) = set {
        tracing::debug!(target: "switchyard::capture", "could not lower the capture writer's priority: {e}");
    }
}

/// The writer's priority on thread-priority's 0–99 scale (25 is nice 9 on Linux).
const WRITER_PRIORITY: u8 = 25;
