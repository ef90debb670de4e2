//! Ground truth that arrives later: predictions remembered by request id, joined with
//! the labels posted for them, scored per route and backend over a sliding window.
//!
//! The observer [`remember_exchange`](Feedback::remember_exchange)s what each backend
//! predicted (a [`Predicted`] class or value, read from the answer served and from the
//! mirror's, when the request was mirrored); `POST /api/v1/feedback` hands the body to
//! [`join_body`](Feedback::join_body), which reads it as a stream ([`read_labels`]) and
//! answers [`Joined`] `{matched, unmatched, ambiguous, waiting}`; the gates and the
//! monitor read [`score`](Feedback::score): live accuracy (classes: the share of labels
//! equal to the predicted class) and mean absolute error (values: the mean of `|label -
//! predicted|`), over the labels joined in a recent span. A labelled request both the
//! stable and the candidate answered (the stable served it, the candidate answered its
//! mirrored copy) is also counted as a pair, by which of the two got its class right
//! ([`pairs`](Feedback::pairs)): the paired `accuracy.max_drop` test reads it.
//!
//! A prediction waits at most [`Settings::retain`] and at most [`Settings::max_pending`]
//! wait (the oldest is forgotten first). A label for a forgotten prediction is *late*; one
//! for a request id not remembered (yet) *waits* up to [`WAIT_MS`] for its prediction (the
//! observers remember it after the answer, so a quick label can overtake it), at most
//! [`MAX_WAITING`] at once, and is *unknown* if none comes; late and unknown labels are
//! unmatched and counted, never errors. A prediction is labelled once: it is taken when
//! its label comes.
//!
//! A request id is bound to the first exchange that used it: another exchange with that
//! id (a client resending it) does not replace the prediction, and the label for that id
//! is *ambiguous*: counted, never scored. A mirror's answer is part of its exchange, not
//! a second use.
//!
//! Time is passed in (`tokio::time::Instant`), so tests drive it with a fixed clock or
//! paused time.
//!
//! # Memory
//!
//! Bounded by `max_pending`, and fixed per prediction: request ids are kept as 64-bit
//! hashes (seeded at random per store) and classes as hashes of their names, so neither
//! the id nor the class string is stored. A waiting prediction is a 24-byte table item
//! (id hash; class hash or value; route and backend index and flags; sequence number)
//! and a 24-byte place in the arrival order (with room for a quarter more, left by
//! labelled predictions until they are compacted away); a mirrored exchange takes two. A
//! forgotten one leaves its id hash and index (16 bytes) for as many forgotten ids as may
//! wait, to tell a late label from an unknown one (and a replayed id from a new one).
//! With the hash tables' power-of-two growth, a full store measures 120 to 160 bytes per
//! `max_pending` (152 at the default 100 000: about 15 MB) and can never exceed 270;
//! [`Feedback::size_in_bytes`] reports it. Labels waiting for their prediction add at
//! most [`MAX_WAITING`] × about 80 bytes (330 KiB). Each route and backend adds its
//! window: 61 buckets of 40 bytes (2.4 KiB); each (route, stable, candidate) whose
//! answers to the same request were labelled adds a window of pairs, 61 buckets of 32
//! bytes (1.9 KiB, and 24 bytes of totals), at most [`MAX_KEYS`] of them (pairs beyond are not counted, each
//! answer is still scored on its own). Two ids hashing alike (odds about 1 in 10⁹
//! with 100 000 waiting) would join a label to the wrong prediction.
//!
//! # Example
//!
//! ```
//! use switchyard::feedback::{Feedback, Predicted, Settings};
//! use tokio::time::{Duration, Instant};
//!
//! let t0 = Instant::now();
//! let store = Feedback::with_origin(Settings::default(), t0);
//! store.remember("req-1", "iris", "blue", Predicted::Class("setosa".into()), t0);
//! store.remember("req-2", "iris", "blue", Predicted::Class("virginica".into()), t0);
//! store.remember("req-3", "iris", "blue", Predicted::Class("setosa".into()), t0);
//! // A second exchange with the id req-3 (a client resending it).
//! store.remember("req-3", "iris", "blue", Predicted::Class("virginica".into()), t0);
//!
//! let body = br#"{"feedback": [
//!     {"request_id": "req-1", "label": "setosa"},
//!     {"request_id": "req-2", "label": "versicolor"},
//!     {"request_id": "req-3", "label": "virginica"},
//!     {"request_id": "req-9", "label": "setosa"}]}"#;
//! let joined = store.join_body(body, t0 + Duration::from_secs(5)).unwrap();
//! assert_eq!((joined.matched, joined.ambiguous, joined.waiting), (2, 1, 1));
//!
//! let score = store.score("iris", "blue", t0 + Duration::from_secs(5), Duration::from_secs(60));
//! assert_eq!(score.accuracy(), Some(0.5));
//! ```

mod early;
mod label;
mod pending;
mod score;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tokio::time::{Duration, Instant};

use crate::telemetry::Pairs;
use early::Early;
pub use early::{MAX_WAITING, WAIT_MS};
use label::Truth;
pub use label::{parse_labels, read_labels, Label, LabelValue, Predicted, CHUNK};
use pending::{Flags, Guess, Missing, Pending};
pub use score::Score;
use score::{Ring, Tally, Verdict};

/// What a feedback store is configured with: the `feedback:` keys and the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// A prediction is remembered this long for its label.
    pub retain: Duration,
    /// At most this many predictions are remembered; the oldest is forgotten first.
    pub max_pending: usize,
    /// The longest span [`Feedback::score`] answers (the analysis window).
    pub window: Duration,
    /// The largest feedback body read (`feedback.max_body`).
    pub max_body: usize,
}

/// `feedback.max_body` unless configured: 4 MiB.
pub const DEFAULT_MAX_BODY: usize = crate::config::DEFAULT_FEEDBACK_MAX_BODY as usize;

impl Default for Settings {
    /// One hour, 100 000 predictions, a one-minute window, 4 MiB bodies.
    fn default() -> Settings {
        Settings {
            retain: Duration::from_secs(3600),
            max_pending: 100_000,
            window: Duration::from_secs(60),
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// The answer to a feedback post: labels joined to a prediction, those joined to none
/// (late or unknown), those whose request id was seen on more than one exchange (never
/// scored), and those waiting a short while for a prediction not remembered yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Joined {
    pub matched: u64,
    pub unmatched: u64,
    pub ambiguous: u64,
    pub waiting: u64,
}

impl Joined {
    fn add(&mut self, other: Joined) {
        self.matched += other.matched;
        self.unmatched += other.unmatched;
        self.ambiguous += other.ambiguous;
        self.waiting += other.waiting;
    }
}

/// The store's counters since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Predictions waiting for their label now.
    pub pending: usize,
    /// Labels joined to a prediction.
    pub matched: u64,
    /// Labels joined to none: `late` ones, those for ids never remembered, and those that
    /// waited for their prediction in vain.
    pub unmatched: u64,
    /// Labels for request ids seen on more than one exchange: never scored.
    pub ambiguous: u64,
    /// Labels waiting now for a prediction not remembered yet.
    pub waiting: usize,
    /// Exchanges that came with a request id seen on an earlier one (the first keeps the id).
    pub reused: u64,
    /// Labels for a prediction forgotten before they came.
    pub late: u64,
    /// Predictions forgotten unlabelled after `retain`.
    pub expired: u64,
    /// Predictions forgotten unlabelled because `max_pending` were waiting.
    pub evicted: u64,
    /// Predictions not remembered: too many distinct routes and backends.
    pub refused: u64,
}

/// One route and backend's label counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendCounts {
    pub route: Arc<str>,
    pub backend: Arc<str>,
    /// Labels joined to its predictions.
    pub matched: u64,
    /// Of those, labels joined to its answers as a mirror.
    pub mirrored: u64,
    /// Of those, labels that could not be compared with the prediction.
    pub unscored: u64,
    /// Labels for its predictions whose request id was seen on more than one exchange.
    pub ambiguous: u64,
    /// Labels for its predictions that came after they were forgotten.
    pub late: u64,
}

/// At most this many distinct (route, backend) pairs are tracked, and as many windows of
/// paired answers (a route's stable and candidate).
pub const MAX_KEYS: usize = 4096;

/// Labels joined per hold of the lock, so a large batch lets predictions in between.
const JOIN_CHUNK: usize = CHUNK;

/// The feedback store: share it as `Arc<Feedback>`; every method takes `&self`.
pub struct Feedback {
    origin: Instant,
    /// Seeds the hashes of request ids and class names.
    seed: u64,
    /// `feedback.max_body`.
    max_body: AtomicUsize,
    inner: Mutex<Inner>,
}

struct Inner {
    pending: Pending,
    /// (route, backend) → index in `keys`.
    index: HashMap<Arc<str>, HashMap<Arc<str>, u32>>,
    keys: Vec<Key>,
    /// (served key, mirror key) → the labelled requests both answered.
    pairs: HashMap<(u32, u32), Paired>,
    shape: (u64, usize),
    early: Early,
    matched: u64,
    late: u64,
    unknown: u64,
    ambiguous: u64,
    reused: u64,
    refused: u64,
    /// Labels that waited in vain as far as the metrics have been told.
    reported: u64,
}

/// A stable and a candidate's labelled requests both answered: in a window, and since
/// the store began counting them.
struct Paired {
    ring: Ring<Pairs>,
    total: Pairs,
}

/// One route and backend: its window and counts.
struct Key {
    route: Arc<str>,
    backend: Arc<str>,
    ring: Ring,
    /// Every verdict since the store began, for a test longer than the window.
    total: Score,
    matched: u64,
    mirrored: u64,
    unscored: u64,
    ambiguous: u64,
    late: u64,
}

// === impl Feedback ===

impl Feedback {
    /// Creates a store whose clock starts now.
    pub fn new(settings: Settings) -> Feedback {
        Feedback::with_origin(settings, Instant::now())
    }

    /// Creates a store whose clock starts at `origin` (instants before it count as it).
    pub fn with_origin(settings: Settings, origin: Instant) -> Feedback {
        let retain_ms = u64::try_from(settings.retain.as_millis()).unwrap_or(u64::MAX);
        Feedback {
            origin,
            seed: rand::random(),
            max_body: AtomicUsize::new(settings.max_body),
            inner: Mutex::new(Inner {
                pending: Pending::new(settings.max_pending, retain_ms),
                index: HashMap::new(),
                keys: Vec::new(),
                pairs: HashMap::new(),
                shape: score::shape(settings.window),
                early: Early::new(MAX_WAITING.min(settings.max_pending.max(1))),
                matched: 0,
                late: 0,
                unknown: 0,
                ambiguous: 0,
                reused: 0,
                refused: 0,
                reported: 0,
            }),
        }
    }

    /// The largest feedback body read (`feedback.max_body`).
    pub fn max_body(&self) -> usize {
        self.max_body.load(Ordering::Relaxed)
    }

    /// Sets the largest feedback body read (a reloaded `feedback.max_body`).
    pub fn set_max_body(&self, max_body: usize) {
        self.max_body.store(max_body, Ordering::Relaxed);
    }

    /// Remembers what `backend` predicted for the request `request_id` on `route`, at
    /// `now`, for the label that may come later: one exchange, served by `backend`. An
    /// empty id is not remembered. See [`remember_exchange`](Feedback::remember_exchange).
    pub fn remember(
        &self,
        request_id: &str,
        route: &str,
        backend: &str,
        predicted: Predicted,
        now: Instant,
    ) {
        self.remember_exchange(request_id, route, (backend, predicted), None, now);
    }

    /// Remembers one exchange's predictions, at `now`: the `served` backend's and, when the
    /// request was mirrored, the `mirror`'s (so a label scores both, on the very same
    /// request). An empty id is not remembered.
    ///
    /// A request id is bound to the first exchange that used it: an exchange with an id
    /// whose prediction waits (or was forgotten unlabelled lately) does not replace it,
    /// and makes the label for that id `ambiguous`, never scored. So a client that resends
    /// another's id cannot put its own answer in place of the one the label is for. A label
    /// that came before the prediction (and still waits) is joined at once.
    pub fn remember_exchange(
        &self,
        request_id: &str,
        route: &str,
        served: (&str, Predicted),
        mirror: Option<(&str, Predicted)>,
        now: Instant,
    ) {
        if request_id.is_empty() {
            return;
        }
        let served_guess = self.guess(served.1);
        let mirror_guess = mirror.map(|(b, p)| (b, self.guess(p)));
        let id = self.hash(request_id);
        let at_ms = self.ms(now);
        let mut inner = self.lock();
        let Some(key) = inner.key(route, served.0) else {
            inner.refused += 1;
            return;
        };
        let mirror = mirror_guess.and_then(|(b, g)| match inner.key(route, b) {
            Some(k) => Some((k, g)),
            None => {
                inner.refused += 1;
                None
            }
        });
        inner.pending.expire(at_ms);
        if inner.pending.seen(id) {
            // Seen before: the first exchange keeps the id, and its label is ambiguous.
            inner.reused += 1;
            let waits = inner.pending.mark_ambiguous(id);
            let mirror_waits = inner.pending.mark_ambiguous(mirror_id(id));
            if !waits && !mirror_waits {
                // Forgotten already: what waits under the id now is ambiguous too, so a
                // label for it is never scored against this exchange.
                let ambiguous = Flags {
                    ambiguous: true,
                    ..Flags::default()
                };
                inner
                    .pending
                    .insert(id, key, served_guess, at_ms, ambiguous);
            }
            return;
        }
        if let Some(truth) = inner.early.take(id, at_ms) {
            inner.matched += 1;
            let verdict = truth.judge(served_guess);
            inner.scored(key, at_ms, verdict, false);
            if let Some((k, g)) = mirror {
                let mirrored = truth.judge(g);
                inner.scored(k, at_ms, mirrored, true);
                inner.paired((key, k), at_ms, (verdict, mirrored));
            }
            return;
        }
        inner
            .pending
            .insert(id, key, served_guess, at_ms, Flags::default());
        if let Some((k, g)) = mirror {
            let flags = Flags {
                mirror: true,
                ..Flags::default()
            };
            inner.pending.insert(mirror_id(id), k, g, at_ms, flags);
        }
    }

    /// Joins labels to the predictions they are for, at `now`: each matched one is
    /// scored in its backend's window (and its mirror's) and its prediction forgotten; one
    /// for an id seen on several exchanges is counted `ambiguous`; one for an id not
    /// remembered (yet) waits up to [`WAIT_MS`] for its prediction, while there is room.
    pub fn join(&self, labels: &[Label<'_>], now: Instant) -> Joined {
        let now_ms = self.ms(now);
        let mut joined = Joined::default();
        for chunk in labels.chunks(JOIN_CHUNK) {
            let mut inner = self.lock();
            for label in chunk {
                let id = self.hash(&label.request_id);
                let served = inner.pending.take(id, now_ms);
                let mirror = inner.pending.take_also(mirror_id(id));
                let (first, second) = match (served, mirror) {
                    (Ok(e), m) => (e, m),
                    (Err(_), Some(m)) => (m, None),
                    (Err(missing), None) => {
                        let truth = Truth::of(&label.label, |s| self.hash(s));
                        let parked = matches!(missing, Missing::Unknown)
                            && !label.request_id.is_empty()
                            && inner.early.park(id, truth, now_ms);
                        if parked {
                            joined.waiting += 1;
                        } else {
                            inner.missed(missing);
                            joined.unmatched += 1;
                        }
                        continue;
                    }
                };
                if first.ambiguous() {
                    inner.ambiguous += 1;
                    if let Some(k) = inner.keys.get_mut(first.key() as usize) {
                        k.ambiguous += 1;
                    }
                    joined.ambiguous += 1;
                    continue;
                }
                let truth = Truth::of(&label.label, |s| self.hash(s));
                inner.matched += 1;
                let verdict = truth.judge(first.guess());
                inner.scored(first.key(), now_ms, verdict, first.mirror());
                if let Some(m) = second {
                    // Both answers of the exchange: the served one first, then the mirror's.
                    let mirrored = truth.judge(m.guess());
                    inner.scored(m.key(), now_ms, mirrored, m.mirror());
                    inner.paired((first.key(), m.key()), now_ms, (verdict, mirrored));
                }
                joined.matched += 1;
            }
        }
        joined
    }

    /// Reads a feedback body ([`read_labels`]) and joins its labels at `now`, a chunk at
    /// a time; a body that is not one label or a batch is refused whole (checked before
    /// any label is joined), with the reason for the client.
    ///
    /// Beyond the body, it holds one chunk of labels (see [`read_labels`]): at most the
    /// body's size again, plus 64 KiB.
    pub fn join_body(&self, body: &[u8], now: Instant) -> Result<Joined, String> {
        read_labels(body, |_| {})?;
        let mut joined = Joined::default();
        read_labels(body, |chunk| joined.add(self.join(chunk, now)))?;
        Ok(joined)
    }

    /// The verdicts of the labels `route`'s `backend` got within `span` before `now` (a
    /// span longer than the window is cut to it; the window slides one bucket, 1/60 of it
    /// in whole seconds, at a time).
    pub fn score(&self, route: &str, backend: &str, now: Instant, span: Duration) -> Score {
        let now_ms = self.ms(now);
        let span_ms = u64::try_from(span.as_millis()).unwrap_or(u64::MAX);
        let inner = self.lock();
        inner
            .find(route, backend)
            .and_then(|k| inner.keys.get(k as usize))
            .map_or_else(Score::default, |k| k.ring.sum(now_ms, span_ms))
    }

    /// The labelled requests of `route` within `span` before `now` that both `stable`
    /// and `candidate` answered (the stable served them, the candidate answered their
    /// mirrored copies), counted by which got the class right, for the paired
    /// `accuracy.max_drop` test. Class labels only: value labels, labels that cannot be
    /// compared, `ambiguous` ids and requests only one of them answered are not pairs.
    /// The span is cut to the window as for [`score`](Feedback::score).
    ///
    /// ```
    /// use switchyard::feedback::{Feedback, Predicted, Settings};
    /// use tokio::time::{Duration, Instant};
    ///
    /// let t0 = Instant::now();
    /// let store = Feedback::with_origin(Settings::default(), t0);
    /// let class = |c: &str| Predicted::Class(c.into());
    /// store.remember_exchange("r1", "iris", ("blue", class("a")), Some(("green", class("b"))), t0);
    /// store.remember_exchange("r2", "iris", ("blue", class("a")), Some(("green", class("a"))), t0);
    /// store.remember("r3", "iris", "blue", class("a"), t0);
    /// let body = br#"{"feedback": [{"request_id": "r1", "label": "a"},
    ///     {"request_id": "r2", "label": "a"}, {"request_id": "r3", "label": "a"}]}"#;
    /// store.join_body(body, t0).unwrap();
    ///
    /// let p = store.pairs("iris", "blue", "green", t0, Duration::from_secs(60));
    /// assert_eq!((p.pairs, p.stable_only, p.candidate_only), (2, 1, 0));
    /// ```
    pub fn pairs(
        &self,
        route: &str,
        stable: &str,
        candidate: &str,
        now: Instant,
        span: Duration,
    ) -> Pairs {
        let now_ms = self.ms(now);
        let span_ms = u64::try_from(span.as_millis()).unwrap_or(u64::MAX);
        let inner = self.lock();
        inner
            .find(route, stable)
            .zip(inner.find(route, candidate))
            .and_then(|keys| inner.pairs.get(&keys))
            .map_or_else(Pairs::default, |p| p.ring.sum(now_ms, span_ms))
    }

    /// The verdicts of every label `route`'s `backend` got since the store began (not
    /// cut to the window): read it when a test begins and later, and take the difference
    /// ([`Score::since`]), to judge a step longer than the window on one growing sample.
    pub fn score_total(&self, route: &str, backend: &str) -> Score {
        let inner = self.lock();
        inner
            .find(route, backend)
            .and_then(|k| inner.keys.get(k as usize))
            .map_or_else(Score::default, |k| k.total)
    }

    /// As [`pairs`](Feedback::pairs), counted since the store began (not cut to the
    /// window, nor emptied when it is reshaped): read it when a test begins and later, and
    /// take the difference ([`Pairs::since`]), to judge a step longer than the window on
    /// one growing sample. A store made anew (new `retain` or `max_pending`) counts from 0.
    pub fn pairs_total(&self, route: &str, stable: &str, candidate: &str) -> Pairs {
        let inner = self.lock();
        inner
            .find(route, stable)
            .zip(inner.find(route, candidate))
            .and_then(|keys| inner.pairs.get(&keys))
            .map_or_else(Pairs::default, |p| p.total)
    }

    /// Reshapes the windows for a new analysis window; the verdicts so far are dropped
    /// if its shape changes, the waiting predictions kept.
    pub fn set_window(&self, window: Duration) {
        let shape = score::shape(window);
        let mut inner = self.lock();
        if inner.shape != shape {
            inner.shape = shape;
            for k in &mut inner.keys {
                k.ring = Ring::new(shape);
            }
            for p in inner.pairs.values_mut() {
                p.ring = Ring::new(shape);
            }
        }
    }

    /// Forgets, at `now`, the predictions older than `retain` (done by every other call
    /// too; this is for a periodic tick when no traffic comes).
    pub fn expire(&self, now: Instant) {
        let now_ms = self.ms(now);
        let mut inner = self.lock();
        inner.pending.expire(now_ms);
        inner.early.expire(now_ms);
    }

    /// Labels that waited for their prediction in vain since the last call: for the
    /// `unmatched` count of the metrics, which a post counts when it is answered.
    pub fn take_unreported(&self) -> u64 {
        let mut inner = self.lock();
        let expired = inner.early.expired;
        expired.saturating_sub(std::mem::replace(&mut inner.reported, expired))
    }

    /// The store's counters.
    pub fn counts(&self) -> Counts {
        let inner = self.lock();
        Counts {
            pending: inner.pending.len(),
            matched: inner.matched,
            unmatched: inner.late + inner.unknown + inner.early.expired,
            ambiguous: inner.ambiguous,
            waiting: inner.early.len(),
            reused: inner.reused,
            late: inner.late,
            expired: inner.pending.expired,
            evicted: inner.pending.evicted,
            refused: inner.refused,
        }
    }

    /// Every route and backend's label counts, in the order first seen.
    pub fn backend_counts(&self) -> Vec<BackendCounts> {
        let inner = self.lock();
        inner
            .keys
            .iter()
            .map(|k| BackendCounts {
                route: k.route.clone(),
                backend: k.backend.clone(),
                matched: k.matched,
                mirrored: k.mirrored,
                unscored: k.unscored,
                ambiguous: k.ambiguous,
                late: k.late,
            })
            .collect()
    }

    /// The memory the store holds on the heap, in bytes (its tables' capacities, the
    /// windows, and the names of routes and backends).
    pub fn size_in_bytes(&self) -> usize {
        let inner = self.lock();
        let keys: usize = inner
            .keys
            .iter()
            .map(|k| {
                std::mem::size_of::<Key>() + k.ring.heap_bytes() + k.route.len() + k.backend.len()
            })
            .sum();
        let pair = std::mem::size_of::<((u32, u32), Paired)>();
        let pairs: usize = inner
            .pairs
            .values()
            .map(|p| p.ring.heap_bytes())
            .sum::<usize>()
            + inner.pairs.capacity() * (pair + 1);
        std::mem::size_of::<Feedback>()
            + inner.pending.heap_bytes()
            + inner.early.heap_bytes()
            + keys
            + pairs
    }

    /// What a prediction says, as the store keeps it.
    fn guess(&self, predicted: Predicted) -> Guess {
        match predicted {
            Predicted::Class(name) => Guess::Class(self.hash(&name)),
            Predicted::Value(v) => Guess::Value(v),
        }
    }

    fn hash(&self, s: &str) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(s.as_bytes(), self.seed)
    }

    /// `now` in milliseconds since the origin.
    fn ms(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin);
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where the mirror's prediction of the exchange with request id hash `id` waits.
fn mirror_id(id: u64) -> u64 {
    id.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15
}

impl Inner {
    /// The index of (`route`, `backend`), added if new; `None` beyond [`MAX_KEYS`].
    fn key(&mut self, route: &str, backend: &str) -> Option<u32> {
        if let Some(k) = self.find(route, backend) {
            return Some(k);
        }
        if self.keys.len() >= MAX_KEYS {
            return None;
        }
        let k = u32::try_from(self.keys.len()).ok()?;
        let route: Arc<str> = self
            .index
            .get_key_value(route)
            .map_or_else(|| route.into(), |(r, _)| r.clone());
        let backend: Arc<str> = backend.into();
        self.keys.push(Key {
            route: route.clone(),
            backend: backend.clone(),
            ring: Ring::new(self.shape),
            total: Score::default(),
            matched: 0,
            mirrored: 0,
            unscored: 0,
            ambiguous: 0,
            late: 0,
        });
        self.index.entry(route).or_default().insert(backend, k);
        Some(k)
    }

    fn find(&self, route: &str, backend: &str) -> Option<u32> {
        self.index.get(route)?.get(backend).copied()
    }

    /// Counts a matched label's verdict for its prediction's route and backend (a
    /// `mirror`'s answer or the one served).
    fn scored(&mut self, key: u32, now_ms: u64, verdict: Verdict, mirror: bool) {
        let Some(k) = self.keys.get_mut(key as usize) else {
            return;
        };
        k.matched += 1;
        if mirror {
            k.mirrored += 1;
        }
        match verdict {
            Verdict::Unscored => k.unscored += 1,
            v => {
                k.ring.add(now_ms, v);
                k.total.count(v);
            }
        }
    }

    /// Counts one labelled request both backends answered, the `served` one's verdict and
    /// the `mirror`'s, in their window of pairs (made on the first pair of class verdicts,
    /// while fewer than [`MAX_KEYS`] are kept).
    fn paired(&mut self, (served, mirror): (u32, u32), now_ms: u64, verdicts: (Verdict, Verdict)) {
        let classed = |v: Verdict| matches!(v, Verdict::Correct | Verdict::Wrong);
        if !(classed(verdicts.0) && classed(verdicts.1)) {
            return;
        }
        let room = self.pairs.len() < MAX_KEYS;
        let shape = self.shape;
        let paired = match self.pairs.entry((served, mirror)) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) if room => v.insert(Paired {
                ring: Ring::new(shape),
                total: Pairs::default(),
            }),
            std::collections::hash_map::Entry::Vacant(_) => return,
        };
        let one = Pairs::of(
            verdicts.0 == Verdict::Correct,
            verdicts.1 == Verdict::Correct,
        );
        paired.ring.add_pairs(now_ms, one);
        paired.total.merge(&one);
    }

    /// Counts a label that matched no waiting prediction.
    fn missed(&mut self, missing: Missing) {
        match missing {
            Missing::Late(key) => {
                self.late += 1;
                if let Some(k) = self.keys.get_mut(key as usize) {
                    k.late += 1;
                }
            }
            Missing::Unknown => self.unknown += 1,
        }
    }
}
