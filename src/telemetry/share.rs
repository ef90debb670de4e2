//! How much of a backend's window one client may fill: no single client moves a gate.
//!
//! Gates read a backend's [`Window`](super::window::Window), the monitor's output windows
//! and the labels' scores. A client who sends far more than anyone else (a sticky user
//! who landed on the candidate, one address flooding the data plane) would otherwise
//! make those figures theirs: three hundred requests that all predict one class are
//! enough to fail `output_drift` on a healthy candidate. So every sample a gate reads is
//! first admitted here, per route and backend: a client's sample is **judged** while
//!
//! ```text
//! the backend's judged samples in the recent span < floor, or
//! the client's judged samples in the span < max_share × the backend's judged samples
//! ```
//!
//! and is otherwise served as usual but left out of what the gates read (counted in
//! `switchyard_samples_left_out_total` by the backend that admits it). Once a window
//! holds `floor` samples (the analysis' `min_samples`, so the gates can decide at all)
//! no client holds more than `max_share` of it, however much it sends. A backend with fewer callers than `1 / max_share`
//! (one address in front of it, a load balancer, and no sticky key) is judged on about
//! `min_samples` samples per span: name a sticky key, or raise `max_client_share`
//! (`1` bounds nothing).
//!
//! A client is its sticky key when the request carries one, else its address.
//!
//! # Memory and cost
//!
//! Per-client counts are kept in a count-min sketch ([`ROWS`] × [`WIDTH`] counters) per
//! time slot, [`SLOTS`] slots each a third of the span: 64 KiB per route and backend,
//! fixed at construction, whatever the number of clients. A count can only be
//! overestimated, by at most `e / WIDTH` (0.27 %) of the span's samples with probability
//! `1 − e^-ROWS` (98 %), so a client near its bound may be left out a little early,
//! never late. Admission is lock-free: a few dozen relaxed atomic loads and at most
//! `ROWS + 1` increments, no allocation. Hash seeds are drawn per process, so a client
//! cannot choose keys that collide with another's.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Rows of the count-min sketch: independent hashes, the estimate is their minimum.
const ROWS: usize = 4;
/// Counters per row.
const WIDTH: usize = 1024;
/// Time slots kept: the span in thirds, plus the one being filled.
const SLOTS: usize = 4;
/// Slot epoch marker: being zeroed for a new epoch.
const RESETTING: u64 = u64::MAX;

/// A client as the shares count it: a hash of its sticky key or address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client(u64);

impl Client {
    /// The client of a key (a sticky key, or an address as text).
    pub fn of(key: &[u8]) -> Client {
        Client(xxhash_rust::xxh3::xxh3_64_with_seed(key, *KEY_SEED))
    }
}

/// Per-process seed of client hashes.
static KEY_SEED: std::sync::LazyLock<u64> = std::sync::LazyLock::new(rand::random);

/// The bound on one client's share of a backend's windows, with the counts it needs.
pub struct Shares {
    /// `max_share` in parts per 2^16 (65 536 means no bound: nothing is counted).
    max_share: u32,
    /// Judged samples a client may always have (`min_samples`).
    floor: u32,
    origin: Instant,
    slot_nanos: u64,
    slots: Box<[Slot]>,
}

/// One time slot: its epoch, the backend's judged samples in it, and each client's.
struct Slot {
    epoch: AtomicU64,
    total: AtomicU32,
    counts: Box<[AtomicU32]>,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            epoch: AtomicU64::new(0),
            total: AtomicU32::new(0),
            counts: (0..ROWS * WIDTH).map(|_| AtomicU32::new(0)).collect(),
        }
    }
}

/// Where a client's counter is in row `row`.
fn cell(client: Client, row: usize) -> usize {
    // Each row takes its own 10 bits of a 64-bit remix of the hash.
    let mixed = client
        .0
        .rotate_left(16 * row as u32)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    row * WIDTH + (mixed >> 54) as usize % WIDTH
}

impl Shares {
    /// The bound for windows over `span`: once the backend has `floor` judged samples, a
    /// client's stay below `max_share` of them. A `max_share` of 1 or more bounds nothing
    /// (and costs nothing).
    pub fn new(span: Duration, max_share: f64, floor: u64) -> Shares {
        Shares::with_origin(Instant::now(), span, max_share, floor)
    }

    /// As [`Shares::new`], slots counted from `origin`.
    pub fn with_origin(origin: Instant, span: Duration, max_share: f64, floor: u64) -> Shares {
        // NaN bounds nothing either (validation refuses it).
        let unbounded = max_share >= 1.0 || max_share.is_nan();
        let slot = (span / 3).max(Duration::from_millis(1));
        Shares {
            max_share: if unbounded {
                1 << 16
            } else {
                (max_share.max(0.0) * 65_536.0) as u32
            },
            floor: u32::try_from(floor).unwrap_or(u32::MAX),
            origin,
            slot_nanos: u64::try_from(slot.as_nanos()).unwrap_or(u64::MAX),
            slots: if unbounded {
                Box::new([])
            } else {
                (0..SLOTS).map(|_| Slot::new()).collect()
            },
        }
    }

    /// Whether a share is bounded at all.
    pub fn bounded(&self) -> bool {
        !self.slots.is_empty()
    }

    /// Counts one sample of `client` at `now`; true when the gates are to read it.
    pub fn admit(&self, client: Client, now: Instant) -> bool {
        if !self.bounded() {
            return true;
        }
        let epoch = self.epoch_of(now);
        let Some(slot) = self.claim(epoch) else {
            return true; // being zeroed by another: judged, not counted
        };
        let (judged, total) = self.counts(client, epoch);
        // judged ≥ max_share × total, in parts per 2^16 (no sum of counters reaches 2^40).
        let over = judged << 16 >= u64::from(self.max_share) * total;
        if total >= u64::from(self.floor) && over {
            return false;
        }
        slot.total.fetch_add(1, Ordering::Relaxed);
        for row in 0..ROWS {
            slot.counts[cell(client, row)].fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// `client`'s judged samples and all judged samples over the slots of the span ending
    /// in `epoch`.
    fn counts(&self, client: Client, epoch: u64) -> (u64, u64) {
        let mut rows = [0u64; ROWS];
        let mut total = 0u64;
        for e in epoch.saturating_sub(SLOTS as u64 - 1)..=epoch {
            let slot = &self.slots[(e % SLOTS as u64) as usize];
            if slot.epoch.load(Ordering::Acquire) != e {
                continue;
            }
            total += u64::from(slot.total.load(Ordering::Relaxed));
            for (row, n) in rows.iter_mut().enumerate() {
                *n += u64::from(slot.counts[cell(client, row)].load(Ordering::Relaxed));
            }
        }
        (rows.into_iter().min().unwrap_or(0), total)
    }

    /// The slot of `epoch`, zeroed first when it still holds an older one; `None` while
    /// another is zeroing it, or when it already holds a newer one.
    fn claim(&self, epoch: u64) -> Option<&Slot> {
        let slot = &self.slots[(epoch % SLOTS as u64) as usize];
        let held = slot.epoch.load(Ordering::Acquire);
        if held == epoch {
            return Some(slot);
        }
        if held == RESETTING || held > epoch {
            return None;
        }
        slot.epoch
            .compare_exchange(held, RESETTING, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        slot.total.store(0, Ordering::Relaxed);
        for c in slot.counts.iter() {
            c.store(0, Ordering::Relaxed);
        }
        slot.epoch.store(epoch, Ordering::Release);
        Some(slot)
    }

    /// The epoch of `now`: its slot's number since `origin`, from 1 (0 marks a slot never used).
    fn epoch_of(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        let n = u64::try_from(since / u128::from(self.slot_nanos)).unwrap_or(u64::MAX - 2);
        n.min(RESETTING - 2) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn judged(shares: &Shares, client: Client, n: usize, at: Instant) -> usize {
        (0..n).filter(|_| shares.admit(client, at)).count()
    }

    #[test]
    fn a_client_alone_fills_the_window_up_to_the_floor() {
        let t0 = Instant::now();
        let shares = Shares::with_origin(t0, MINUTE, 0.1, 50);
        let alone = Client::of(b"127.0.0.1");
        assert_eq!(judged(&shares, alone, 1_000, t0), 50);
    }

    #[test]
    fn a_flooding_client_holds_at_most_its_share_among_many() {
        let t0 = Instant::now();
        let shares = Shares::with_origin(t0, MINUTE, 0.1, 50);
        let mut honest = 0;
        let mut flood = 0;
        // 2 000 users with one request each, and one client sending 600 among them.
        for i in 0..2_000u32 {
            if shares.admit(Client::of(format!("user-{i}").as_bytes()), t0) {
                honest += 1;
            }
            if i % 10 < 3 && shares.admit(Client::of(b"attacker"), t0) {
                flood += 1;
            }
        }
        assert_eq!(honest, 2_000, "no honest user is over its share");
        let share = flood as f64 / (honest + flood) as f64;
        assert!(
            share <= 0.1,
            "the flood holds {share:.3} of the judged samples"
        );
        assert!(share >= 0.09, "and no less than its share: {share:.3}");
    }

    #[test]
    fn a_clients_count_leaves_with_the_span() {
        let t0 = Instant::now();
        let shares = Shares::with_origin(t0, MINUTE, 0.1, 10);
        let c = Client::of(b"k");
        assert_eq!(judged(&shares, c, 100, t0), 10);
        assert_eq!(
            judged(&shares, c, 10, t0 + MINUTE / 2),
            0,
            "still in the span"
        );
        // Others fill the window: the client may hold a tenth of it.
        for i in 0..170 {
            assert!(shares.admit(Client::of(format!("o{i}").as_bytes()), t0 + MINUTE / 2));
        }
        assert_eq!(judged(&shares, c, 100, t0 + MINUTE / 2), 9, "19 of 189");
        // Four slots of 20 s later every count of t0 is gone.
        assert_eq!(judged(&shares, c, 100, t0 + MINUTE * 2), 10);
    }

    #[test]
    fn a_share_of_one_bounds_nothing() {
        let t0 = Instant::now();
        let shares = Shares::with_origin(t0, MINUTE, 1.0, 0);
        assert!(!shares.bounded());
        assert_eq!(judged(&shares, Client::of(b"k"), 1_000, t0), 1_000);
    }

    #[test]
    fn any_instant_is_admitted_without_panic() {
        let t0 = Instant::now();
        let shares = Shares::with_origin(t0 + MINUTE, Duration::ZERO, 0.5, 0);
        let c = Client::of(b"k");
        shares.admit(c, t0);
        shares.admit(c, t0 + Duration::from_secs(u32::MAX as u64));
        shares.admit(c, t0);
    }
}
