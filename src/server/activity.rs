//! What a connection's service and socket report: requests begun and in flight, and when
//! the last answer was done. HTTP/1 serving parks a quiet session on it; the admin
//! listener's eviction picks the connection idle longest by it.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// What the connection's service and socket report to [`serve`]'s timer (and, on the
/// admin listener, to the eviction's `Evictor`).
#[derive(Debug)]
pub(crate) struct Activity {
    /// What `last_done` counts from.
    pub(super) epoch: Instant,
    /// Requests begun on the connection (wrapping).
    pub(super) requests: AtomicU32,
    /// Requests whose response hyper has not finished with (its body not dropped yet).
    pub(super) in_flight: AtomicU32,
    /// When the last response was finished, in nanoseconds since `epoch`.
    pub(super) last_done: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            requests: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            last_done: AtomicU64::new(0),
        }
    }

    /// When the last response was finished (when the connection was accepted, before
    /// its first).
    pub(super) fn done_at(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.last_done.load(Relaxed))
    }

    /// Whether a request is being served: its head handed to the service, its answer
    /// not yet taken whole by hyper.
    pub(crate) fn serving(&self) -> bool {
        self.in_flight.load(Relaxed) > 0
    }

    /// Since when no request has been served (meaningful while none is).
    pub(crate) fn idle_since(&self) -> Instant {
        self.done_at()
    }

    /// Marks a request begun, as the service does.
    #[cfg(test)]
    pub(crate) fn begin(&self) {
        self.requests.fetch_add(1, Relaxed);
        self.in_flight.fetch_add(1, Relaxed);
    }

    /// Marks a request's answer done, as dropping its body does.
    #[cfg(test)]
    pub(crate) fn done(self: &Arc<Self>) {
        drop(InFlight(self.clone()));
    }

    /// Tells whether a session that started when `begun` requests had begun has been quiet
    /// for `park_after`, or else when to look again.
    pub(super) fn quiet(&self, begun: u32, park_after: Duration) -> Quiet {
        let now = Instant::now();
        if self.in_flight.load(Relaxed) > 0 || self.requests.load(Relaxed) == begun {
            // Busy, or no request begun on this hyper connection yet.
            Quiet::Until(now + park_after)
        } else if now >= self.done_at() + park_after {
            // Served, and quiet since.
            Quiet::Enough
        } else {
            Quiet::Until(self.done_at() + park_after)
        }
    }
}

/// Whether a session has been quiet long enough to park.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Quiet {
    /// Quiet for `park_after` since its last response: park it.
    Enough,
    /// Not yet: look again then.
    Until(Instant),
}

/// One request in flight, until dropped.
#[derive(Debug)]
pub(super) struct InFlight(pub(super) Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        let since = a.epoch.elapsed().as_nanos();
        a.last_done
            .store(u64::try_from(since).unwrap_or(u64::MAX), Relaxed);
        a.in_flight.fetch_sub(1, Relaxed);
    }
}
