//! One route's record counts, shared by the senders and the writer.

use std::sync::atomic::{AtomicU64, Ordering};

/// One route's record counts: what `switchyard_capture_records_total{route,result}` exports.
///
/// The wiring keeps one per route (across reloads, so the counters never go back) and
/// hands it to [`Capture::route`](crate::capture::Capture::route).
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(super) written: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) error: AtomicU64,
}

/// The figures of a [`Counts`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CountsSnapshot {
    /// Records appended to a file.
    pub written: u64,
    /// Records not queued: the queue was full (in records or bytes) or the writer gone.
    pub dropped: u64,
    /// Records queued but not written: the directory or the disk failed.
    pub error: u64,
}

impl Counts {
    /// Reads the three counters.
    pub(crate) fn snapshot(&self) -> CountsSnapshot {
        CountsSnapshot {
            written: self.written.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            error: self.error.load(Ordering::Relaxed),
        }
    }

    pub(super) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
