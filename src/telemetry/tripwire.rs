//! The fast-rollback tripwire: counts consecutive candidate failures on the request path
//! and tells the controller once, at the threshold, without ever waiting.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use tokio::sync::mpsc;

/// The tripwire's message to the controller: rollout `rollout` saw `failures`
/// consecutive candidate failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trip {
    pub rollout: u64,
    pub failures: u32,
}

/// Counts consecutive candidate failures and trips the controller once at the threshold.
pub struct Tripwire {
    threshold: u32,
    consecutive: AtomicU32,
    tripped: AtomicBool,
    rollout: u64,
    tx: mpsc::Sender<Trip>,
}

impl Tripwire {
    /// A tripwire for rollout `rollout` that trips after `threshold` failures in a row.
    pub fn new(threshold: u32, rollout: u64, tx: mpsc::Sender<Trip>) -> Self {
        Self {
            threshold,
            consecutive: AtomicU32::new(0),
            tripped: AtomicBool::new(false),
            rollout,
            tx,
        }
    }

    /// The rollout this tripwire belongs to.
    pub fn rollout(&self) -> u64 {
        self.rollout
    }

    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// A candidate request failed.
    pub fn failure(&self) {
        let n = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= self.threshold && !self.tripped.swap(true, Ordering::AcqRel) {
            // Never blocks the request: the channel is bounded and a full one means the
            // controller has trips to read already; the next failure retries.
            let trip = Trip {
                rollout: self.rollout,
                failures: n,
            };
            if self.tx.try_send(trip).is_err() {
                self.tripped.store(false, Ordering::Release);
            }
        }
    }

    /// A candidate request succeeded: the run of failures is broken.
    pub fn success(&self) {
        if self.consecutive.load(Ordering::Relaxed) != 0 {
            self.consecutive.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_once_at_the_threshold_and_a_success_breaks_the_run() {
        let (tx, mut rx) = mpsc::channel(4);
        let t = Tripwire::new(3, 7, tx);
        t.failure();
        t.failure();
        t.success();
        t.failure();
        t.failure();
        assert!(
            rx.try_recv().is_err(),
            "a success in between resets the count"
        );
        t.failure();
        assert_eq!(
            rx.try_recv().ok(),
            Some(Trip {
                rollout: 7,
                failures: 3
            })
        );
        t.failure();
        assert!(rx.try_recv().is_err(), "trips once");
    }
}
