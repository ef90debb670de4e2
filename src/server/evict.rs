//! Closing idle admin connections to admit new ones, so that holding admin connections
//! without using them buys nothing.
//!
//! Only the admin listener tracks its connections this way (the data plane's
//! `max_connections` refuses beyond the limit, as it always has, and pays nothing for
//! this). Each admin connection has a [`Slot`]: whether it is serving a request (from
//! its head being handed to the service until hyper has taken the answer's last byte),
//! since when it has not been, and the signal that closes it. When the listener is full,
//! the accept loop's [`Evictor`] flags the connection that has been idle longest,
//! whatever its address, and the new one is admitted in its place.
//!
//! "Idle" is every state but serving: no byte received yet, a request head begun but not
//! complete, between requests, parked, and an answer computed but not taken by a client
//! that reads nothing (admin answers are whole bodies, handed to hyper at once). A
//! flagged HTTP/1 connection closes at once if it is idle (an HTTP/2 one sends `GOAWAY`
//! and is closed within a second); one whose next request began in the instant between
//! the choice and the signal finishes that answer and then closes (`connection: close`).
//! A connection serving a request is never chosen: a slow request body is bounded by
//! the control's body timeout, an answer being computed by the controller's reply.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use super::activity::Activity;

/// One admin connection as the eviction sees it.
#[derive(Debug)]
pub(crate) struct Slot {
    /// What its service reports: requests in flight, when the last answer was done.
    pub(crate) activity: Arc<Activity>,
    evicted: AtomicBool,
    wake: Notify,
}

impl Slot {
    pub(crate) fn new() -> Self {
        Slot {
            activity: Arc::new(Activity::new()),
            evicted: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// Whether the connection has been asked to close.
    pub(crate) fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    /// Asks the connection to close.
    pub(crate) fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.wake.notify_waiters();
    }

    /// Returns once the connection has been asked to close.
    pub(crate) async fn evicted(&self) {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            // Registered before the flag is read: an eviction in between still wakes it.
            notified.as_mut().enable();
            if self.is_evicted() {
                return;
            }
            notified.await;
        }
    }
}

/// Returns once `slot`, if there is one, has been asked to close; never without one.
pub(crate) async fn evicted(slot: Option<&Slot>) {
    match slot {
        Some(s) => s.evicted().await,
        None => std::future::pending().await,
    }
}

/// The admin listener's open connections, owned by its accept loop.
#[derive(Debug, Default)]
pub(crate) struct Evictor {
    slots: Vec<Arc<Slot>>,
}

impl Evictor {
    /// Tracks a connection just admitted.
    pub(crate) fn track(&mut self) -> Arc<Slot> {
        // Closed connections are forgotten here and at each eviction, so the list stays
        // within about twice the connections open.
        if self.slots.len() == self.slots.capacity() {
            self.forget_closed();
        }
        let slot = Arc::new(Slot::new());
        self.slots.push(slot.clone());
        slot
    }

    /// Asks the connection idle longest (not serving a request, not asked already) to
    /// close; `false` when every open connection is serving one.
    pub(crate) fn evict_idlest(&mut self) -> bool {
        self.forget_closed();
        let idlest = self
            .slots
            .iter()
            .filter(|s| !s.activity.serving())
            .min_by_key(|s| s.activity.idle_since());
        match idlest {
            Some(slot) => {
                slot.evict();
                true
            }
            None => false,
        }
    }

    /// Drops the slots of connections that have ended (only this list holds them) or
    /// have been asked to close.
    fn forget_closed(&mut self) {
        self.slots
            .retain(|s| Arc::strong_count(s) > 1 && !s.is_evicted());
    }

    /// When each tracked connection became idle (`None`: serving), oldest first.
    #[cfg(test)]
    fn idle(&self) -> Vec<Option<tokio::time::Instant>> {
        self.slots
            .iter()
            .map(|s| (!s.activity.serving()).then(|| s.activity.idle_since()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_connection_idle_longest_is_evicted_and_a_serving_one_never() {
        let mut evictor = Evictor::default();
        let serving = evictor.track();
        serving.activity.begin();
        tokio::time::advance(Duration::from_secs(1)).await;
        let older = evictor.track();
        tokio::time::advance(Duration::from_secs(1)).await;
        let newer = evictor.track();
        // The older one answers a request: idle since its answer, after the newer one.
        older.activity.begin();
        tokio::time::advance(Duration::from_secs(1)).await;
        older.activity.done();
        assert_eq!(evictor.idle().len(), 3);

        assert!(evictor.evict_idlest());
        assert!(
            newer.is_evicted(),
            "idle since it was accepted, the longest"
        );
        assert!(!older.is_evicted() && !serving.is_evicted());
        assert!(evictor.evict_idlest());
        assert!(older.is_evicted());
        assert!(
            !evictor.evict_idlest(),
            "only a connection serving a request is left"
        );
        assert!(!serving.is_evicted());
        // Once its answer is done it may go.
        serving.activity.done();
        assert!(evictor.evict_idlest());
        assert!(serving.is_evicted());
    }

    #[tokio::test(start_paused = true)]
    async fn closed_connections_are_forgotten() {
        let mut evictor = Evictor::default();
        for _ in 0..100 {
            drop(evictor.track());
        }
        let open = evictor.track();
        assert!(evictor.slots.len() <= 2 * 64, "{}", evictor.slots.len());
        assert!(evictor.evict_idlest());
        assert!(open.is_evicted());
        assert!(
            !evictor.evict_idlest(),
            "an evicted connection is not chosen again"
        );
        assert!(evictor.slots.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_eviction_wakes_the_connection_whenever_it_waits() {
        let slot = Arc::new(Slot::new());
        let waiting = tokio::spawn({
            let slot = slot.clone();
            async move { slot.evicted().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        slot.evict();
        waiting.await.unwrap();
        // Asked before it waits: it returns at once.
        slot.evicted().await;
    }
}
