//! A backend's failures in the log, at `warn`: at most one line a second for each kind,
//! each line saying how many of that kind were held back since the one before.
//!
//! A backend that goes down fails every request sent to it; a line for each would flood
//! the log at the request rate, and the metrics already count them all. One line a second
//! per backend and kind says what is failing, with a request id to follow.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use http::HeaderValue;
use tokio::time::Instant;

use crate::telemetry::metrics::ErrorKind;

/// At most one line per kind this often.
pub(crate) const EVERY: Duration = Duration::from_secs(1);

/// Where one backend's failures are held back or let through to the log.
#[derive(Debug)]
pub struct ErrorLog {
    /// What the gates' times count from.
    epoch: Instant,
    /// One per [`ErrorKind`], by discriminant.
    gates: [Gate; ErrorKind::ALL.len()],
}

/// The log of one kind of failure.
#[derive(Debug, Default)]
struct Gate {
    /// When the next line may be written, in milliseconds since the epoch.
    next: AtomicU64,
    /// Failures held back since the last line.
    held: AtomicU64,
}

/// One failure, as its line says it.
pub struct Failed<'a> {
    pub kind: ErrorKind,
    pub backend: &'a str,
    /// The route the request took (`x-switchyard-route`).
    pub route: &'a HeaderValue,
    /// `None` where the request's id is not at hand (an answer cut off mid-body).
    pub request_id: Option<&'a HeaderValue>,
    /// What went wrong.
    pub what: &'a dyn fmt::Display,
}

impl Default for ErrorLog {
    fn default() -> Self {
        Self::new()
    }
}

impl ErrorLog {
    pub fn new() -> Self {
        ErrorLog {
            epoch: Instant::now(),
            gates: Default::default(),
        }
    }

    /// Whether a failure of `kind` at `now` gets a line: `Some` with how many were held
    /// back since the last line, or `None` when it is held back itself. Lock-free: the
    /// failing requests of a backend that is down all come here at once.
    pub fn admit(&self, kind: ErrorKind, now: Instant) -> Option<u64> {
        let gate = &self.gates[kind as usize];
        let at = u64::try_from(now.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX);
        let next = gate.next.load(Relaxed);
        let due = at.saturating_add(EVERY.as_millis() as u64);
        if at >= next
            && gate
                .next
                .compare_exchange(next, due, Relaxed, Relaxed)
                .is_ok()
        {
            return Some(gate.held.swap(0, Relaxed));
        }
        gate.held.fetch_add(1, Relaxed);
        None
    }

    /// Writes `failed` to the log at `warn`, unless it is held back.
    pub fn warn(&self, failed: Failed<'_>) {
        let Some(held_back) = self.admit(failed.kind, Instant::now()) else {
            return;
        };
        let text = |v: &HeaderValue| v.to_str().unwrap_or("").to_owned();
        tracing::warn!(
            target: "switchyard::upstream",
            backend = failed.backend,
            route = %text(failed.route),
            kind = failed.kind.as_str(),
            request_id = %failed
                .request_id
                .map(|v| String::from_utf8_lossy(v.as_bytes()))
                .unwrap_or_default(),
            held_back,
            "{}",
            failed.what,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn one_line_a_second_per_kind_with_the_count_held_back() {
        let log = ErrorLog::new();
        let t = log.epoch;
        let lines: Vec<Option<u64>> = [0, 1, 500, 999, 1000, 1001, 1999, 2000, 5000]
            .into_iter()
            .map(|ms| log.admit(ErrorKind::Timeout, t + ms * MS))
            .collect();
        assert_eq!(
            lines,
            [
                Some(0),
                None,
                None,
                None,
                Some(3),
                None,
                None,
                Some(2),
                Some(0)
            ]
        );
    }

    #[test]
    fn each_kind_has_its_own_second() {
        let log = ErrorLog::new();
        let t = log.epoch;
        assert_eq!(log.admit(ErrorKind::Saturated, t), Some(0));
        assert_eq!(log.admit(ErrorKind::Saturated, t + MS), None);
        assert_eq!(log.admit(ErrorKind::Connect, t + MS), Some(0));
        assert_eq!(log.admit(ErrorKind::Status, t + 2 * MS), Some(0));
        assert_eq!(log.admit(ErrorKind::Saturated, t + EVERY), Some(1));
    }

    #[test]
    fn of_many_threads_at_once_one_writes_the_line() {
        let log = ErrorLog::new();
        let t = log.epoch + 10 * EVERY;
        let written: usize = std::thread::scope(|s| {
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..1000)
                            .filter(|_| log.admit(ErrorKind::Protocol, t).is_some())
                            .count()
                    })
                })
                .collect();
            threads.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(written, 1);
        let later = log.admit(ErrorKind::Protocol, t + EVERY);
        assert_eq!(later, Some(7999), "every other one is counted as held back");
    }
}
