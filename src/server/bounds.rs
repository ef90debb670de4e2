//! The client limits a listener enforces as connections come and go: how many it keeps
//! open (`limits.max_connections`), how long a client may take no answer bytes
//! (`limits.send_timeout`) and how long shutdown waits (`limits.drain_timeout`).
//!
//! The config watcher updates them when a reload is applied ([`Bounds::reload`]); each
//! is read when it is needed: the connection count on each accept, the send timeout when
//! a connection starts, the drain timeout at shutdown.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Limits;

/// How many admin connections (API, `/metrics`, dashboard) are open at once at most:
/// far more than scrapers, dashboards and the CLI use, few enough that a client
/// flooding the admin port holds little. A full admin listener closes its idlest
/// connection to admit a new one (`server::evict`), so for a moment one more is open.
pub(super) const ADMIN_MAX_CONNECTIONS: usize = 256;

/// How long an admin keep-alive connection may wait for its next request: longer than
/// the dashboard's 2 s poll, short enough that idle connections do not pile up.
pub(super) const ADMIN_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// How many requests one HTTP/2 admin connection carries at once: the CLI and the
/// dashboard send a few; more only multiplies what one connection can make the admin do.
pub(super) const ADMIN_MAX_STREAMS: u32 = 16;

/// How long shutdown waits for admin calls.
pub(super) const ADMIN_DRAIN: Duration = Duration::from_secs(2);

/// The limits of one listener, as the config in force says.
#[derive(Debug)]
pub(crate) struct Bounds {
    /// Connections open now, each held by a [`Permit`].
    open: AtomicUsize,
    max_connections: AtomicUsize,
    /// In nanoseconds.
    send_timeout: AtomicU64,
    /// In nanoseconds.
    drain_timeout: AtomicU64,
    /// Whether `max_connections` and `drain_timeout` follow the config (the data plane),
    /// or are the admin listener's own.
    follows_config: bool,
}

/// One connection counted against its listener's `max_connections`, until dropped.
#[derive(Debug)]
pub(crate) struct Permit(Arc<Bounds>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Bounds {
    /// The data plane's bounds: all three from `limits`.
    pub(crate) fn data(limits: &Limits) -> Arc<Self> {
        Arc::new(Bounds {
            open: AtomicUsize::new(0),
            max_connections: AtomicUsize::new(limits.max_connections),
            send_timeout: AtomicU64::new(nanos(limits.send_timeout.0)),
            drain_timeout: AtomicU64::new(nanos(limits.drain_timeout.0)),
            follows_config: true,
        })
    }

    /// The admin listener's bounds: [`ADMIN_MAX_CONNECTIONS`], [`ADMIN_DRAIN`], and the
    /// send timeout of `limits`.
    pub(crate) fn admin(limits: &Limits) -> Arc<Self> {
        Arc::new(Bounds {
            open: AtomicUsize::new(0),
            max_connections: AtomicUsize::new(ADMIN_MAX_CONNECTIONS),
            send_timeout: AtomicU64::new(nanos(limits.send_timeout.0)),
            drain_timeout: AtomicU64::new(nanos(ADMIN_DRAIN)),
            follows_config: false,
        })
    }

    /// Takes the limits of a config just applied. Connections already open stay open,
    /// even beyond a lower `max_connections`, and keep the send timeout they started with.
    pub(crate) fn reload(&self, limits: &Limits) {
        self.send_timeout
            .store(nanos(limits.send_timeout.0), Ordering::Relaxed);
        if self.follows_config {
            self.max_connections
                .store(limits.max_connections, Ordering::Relaxed);
            self.drain_timeout
                .store(nanos(limits.drain_timeout.0), Ordering::Relaxed);
        }
    }

    /// Counts a new connection in, or `None` when `max_connections` are open already.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Permit> {
        let max = self.max_connections.load(Ordering::Relaxed);
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        let permit = Permit(self.clone());
        (before < max).then_some(permit)
    }

    /// Counts in a connection admitted in place of one just told to close
    /// ([`evict`](crate::server::evict)): even beyond `max_connections`, until that one has closed.
    pub(crate) fn admit_in_place(self: &Arc<Self>) -> Permit {
        self.open.fetch_add(1, Ordering::AcqRel);
        Permit(self.clone())
    }

    /// How long a client may take no answer bytes.
    pub(crate) fn send_timeout(&self) -> Duration {
        Duration::from_nanos(self.send_timeout.load(Ordering::Relaxed))
    }

    /// How long shutdown waits for in-flight requests.
    pub(crate) fn drain_timeout(&self) -> Duration {
        Duration::from_nanos(self.drain_timeout.load(Ordering::Relaxed))
    }

    /// Connections open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dur;

    fn limits(max_connections: usize) -> Limits {
        Limits {
            max_connections,
            ..Limits::default()
        }
    }

    #[test]
    fn connections_beyond_the_maximum_are_refused_until_one_closes() {
        let bounds = Bounds::data(&limits(2));
        let first = bounds.admit().expect("1 of 2");
        let _second = bounds.admit().expect("2 of 2");
        assert!(bounds.admit().is_none(), "3 of 2");
        assert_eq!(bounds.open(), 2, "a refusal holds nothing");
        drop(first);
        assert!(bounds.admit().is_some(), "one closed: room again");
    }

    #[test]
    fn a_reload_moves_the_data_planes_bounds_and_only_the_admins_send_timeout() {
        let data = Bounds::data(&limits(1));
        let admin = Bounds::admin(&limits(1));
        let _held = data.admit().unwrap();
        let next = Limits {
            send_timeout: Dur::from_secs(5),
            drain_timeout: Dur::from_secs(3),
            ..limits(2)
        };
        data.reload(&next);
        admin.reload(&next);
        assert!(data.admit().is_some(), "max_connections raised to 2");
        assert_eq!(data.send_timeout(), Duration::from_secs(5));
        assert_eq!(data.drain_timeout(), Duration::from_secs(3));
        assert_eq!(admin.send_timeout(), Duration::from_secs(5));
        assert_eq!(admin.drain_timeout(), ADMIN_DRAIN);
        assert_eq!(
            admin.max_connections.load(Ordering::Relaxed),
            ADMIN_MAX_CONNECTIONS
        );
    }
}
