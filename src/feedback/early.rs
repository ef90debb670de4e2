//! Labels that came before their prediction: the observers remember a prediction once
//! the answer has gone to the client, off the live path, so a label posted at once can
//! overtake it. Such a label waits here a short bounded time ([`WAIT_MS`]), at most
//! [`MAX_WAITING`] of them, and is joined when its prediction is remembered.

use std::collections::{HashMap, VecDeque};
use std::mem::size_of;

use super::label::Truth;

/// How long a label waits for its prediction, in milliseconds.
pub const WAIT_MS: u64 = 2_000;

/// At most this many labels wait at once; beyond it, a label for an unknown id is
/// unmatched at once.
pub const MAX_WAITING: usize = 4096;

/// The labels waiting for their prediction, by the hash of their request id.
pub(super) struct Early {
    labels: HashMap<u64, Waiting>,
    /// Ids in the order they came, with when; an item whose label was joined stays
    /// until it reaches the front or a compaction drops it.
    order: VecDeque<(u64, u64)>,
    cap: usize,
    /// Labels that waited in vain.
    pub(super) expired: u64,
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    truth: Truth,
    at_ms: u64,
}

impl Early {
    /// A buffer for at most `cap` waiting labels.
    pub(super) fn new(cap: usize) -> Early {
        Early {
            labels: HashMap::new(),
            order: VecDeque::new(),
            cap,
            expired: 0,
        }
    }

    /// How many labels wait.
    pub(super) fn len(&self) -> usize {
        self.labels.len()
    }

    /// Lets the label for `id` wait from `now_ms`; `false` when it cannot (the buffer is
    /// full, or a label for `id` waits already).
    pub(super) fn park(&mut self, id: u64, truth: Truth, now_ms: u64) -> bool {
        self.expire(now_ms);
        if self.labels.len() >= self.cap || self.labels.contains_key(&id) {
            return false;
        }
        self.labels.insert(
            id,
            Waiting {
                truth,
                at_ms: now_ms,
            },
        );
        self.order.push_back((id, now_ms));
        if self.order.len() > 2 * self.cap + 64 {
            let labels = &self.labels;
            self.order
                .retain(|(id, at)| labels.get(id).is_some_and(|w| w.at_ms == *at));
        }
        true
    }

    /// The label waiting for `id`, taken, unless it waited too long before `now_ms`.
    pub(super) fn take(&mut self, id: u64, now_ms: u64) -> Option<Truth> {
        if self.labels.is_empty() {
            return None;
        }
        self.expire(now_ms);
        self.labels.remove(&id).map(|w| w.truth)
    }

    /// Drops the labels that have waited [`WAIT_MS`] or longer at `now_ms`.
    pub(super) fn expire(&mut self, now_ms: u64) {
        while let Some(&(id, at)) = self.order.front() {
            if now_ms.saturating_sub(at) < WAIT_MS {
                break;
            }
            self.order.pop_front();
            if self.labels.get(&id).is_some_and(|w| w.at_ms == at) {
                self.labels.remove(&id);
                self.expired += 1;
            }
        }
    }

    /// The heap this holds, in bytes (from its tables' capacities).
    pub(super) fn heap_bytes(&self) -> usize {
        let buckets = match self.labels.capacity() {
            0 => 0,
            cap => (cap * 8 / 7).next_power_of_two(),
        };
        buckets * (size_of::<(u64, Waiting)>() + 1)
            + self.order.capacity() * size_of::<(u64, u64)>()
    }
}
