//! Everything since the step began, read bucket by bucket from windows that forget.
//!
//! The relative gates decide on confidence sequences, valid over one growing sample: all
//! the candidate's (and the stable's) requests since the step began, never a sliding
//! window whose samples leave as well as arrive. The backends' windows keep only the
//! recent span; at each evaluation [`StepSums`] adds the buckets completed since the last
//! one ([`Window::completed`]) to a running [`Summary`], so it keeps a step's whole sample
//! in the size of one summary (counts and a fixed histogram, mergeable across replicas),
//! whatever the step's length. A new step, retry or promotion starts the sums anew.
//!
//! Counters that only grow (the user requests the split sent each backend, the labels'
//! verdicts, the labelled pairs) are read the same way: as their growth since the step began.

use std::sync::Arc;

use tokio::time::Instant;

use crate::feedback::Score;
use crate::telemetry::window::{Summary, Window};
use crate::telemetry::Pairs;

/// What a running sum belongs to: the rollout (its id), its step, and whether it is
/// promoted. Another key starts the sums anew.
pub type StepKey = (u64, usize, bool);

/// The candidate's and the stable's summaries since the step began.
#[derive(Default)]
pub struct StepSums {
    key: Option<StepKey>,
    candidate: Side,
    stable: Side,
    /// The counters when the step's first evaluation read them.
    counted: Counters,
}

/// Counters that only grow, read whole.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    /// User requests the split sent to the candidate and to the stable.
    pub served: (u64, u64),
    /// The label verdicts of the candidate's and of the stable's predictions.
    pub labels: (Score, Score),
    /// Labelled requests both answered, by who got them right.
    pub pairs: Pairs,
}

impl Counters {
    /// What grew from `earlier` to this (never below 0: a counter that began anew counts from 0).
    fn since(self, earlier: Counters) -> Counters {
        Counters {
            served: (
                self.served.0.saturating_sub(earlier.served.0),
                self.served.1.saturating_sub(earlier.served.1),
            ),
            pairs: self.pairs.since(earlier.pairs),
            labels: (
                self.labels.0.since(earlier.labels.0),
                self.labels.1.since(earlier.labels.1),
            ),
        }
    }
}

/// A step's sample so far: both backends' summaries, and what the counters grew.
pub struct SoFar<'a> {
    pub candidate: &'a Summary,
    pub stable: &'a Summary,
    pub counted: Counters,
}

/// One backend's running sum: the window read last, the next bucket to read, the sum.
#[derive(Default)]
struct Side {
    window: Option<Arc<Window>>,
    next: u64,
    sum: Summary,
}

impl StepSums {
    /// Starts the sums of the step `key` with the `counters` as they are now, unless they
    /// are of that step already (the controller calls it as soon as a step's routing is
    /// published, so the counters count from its first request).
    pub fn begin(&mut self, key: StepKey, counters: Counters) {
        if self.key != Some(key) {
            *self = StepSums {
                key: Some(key),
                counted: counters,
                ..StepSums::default()
            };
        }
    }

    /// Counts the user requests the split sends each side anew from `served` (read now),
    /// the other sums going on: after a rollout paused for a skewed split is resumed,
    /// `sample_ratio` judges the split as it is from then on, not the skew it paused for.
    pub fn recount_served(&mut self, served: (u64, u64)) {
        self.counted.served = served;
    }

    /// Adds what the candidate's and the stable's windows completed since the last read
    /// (or since `started`, the step's start, for a new step) and returns both sums, with
    /// what the `counters` read now grew since the step's first read.
    pub fn read(
        &mut self,
        key: StepKey,
        started: Instant,
        (candidate, stable): (&Arc<Window>, &Arc<Window>),
        counters: Counters,
        now: Instant,
    ) -> SoFar<'_> {
        self.begin(key, counters);
        self.candidate.read(candidate, started, now);
        self.stable.read(stable, started, now);
        SoFar {
            candidate: &self.candidate.sum,
            stable: &self.stable.sum,
            counted: counters.since(self.counted),
        }
    }
}

impl Side {
    /// Adds the buckets of `window` completed since the last read; a window not read
    /// before (a new step, or one a reload made anew) is read from `started` on.
    fn read(&mut self, window: &Arc<Window>, started: Instant, now: Instant) {
        let from = match &self.window {
            Some(w) if Arc::ptr_eq(w, window) => self.next,
            _ => window.epoch(started),
        };
        let (completed, next) = window.completed(from, now);
        self.sum.merge(&completed);
        self.next = next;
        if !self.window.as_ref().is_some_and(|w| Arc::ptr_eq(w, window)) {
            self.window = Some(window.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Duration;

    fn window(t0: Instant) -> Arc<Window> {
        Arc::new(Window::with_origin(t0, Duration::from_secs(1), 6))
    }

    #[test]
    fn a_step_longer_than_the_window_keeps_every_sample_once() {
        let t0 = Instant::now();
        let (c, s) = (window(t0), window(t0));
        let mut sums = StepSums::default();
        // 60 s of one candidate and nine stable requests a second, read every 3 s: the
        // windows keep 5 s, the step's sums keep it all.
        for second in 0..60u64 {
            let at = t0 + Duration::from_secs(second) + Duration::from_millis(500);
            c.record(at, Duration::from_millis(5), second % 10 == 0);
            for _ in 0..9 {
                s.record(at, Duration::from_millis(5), false);
            }
            if second % 3 == 2 {
                sums.read((1, 0, false), t0, (&c, &s), Counters::default(), at);
            }
        }
        let so_far = sums.read(
            (1, 0, false),
            t0,
            (&c, &s),
            Counters::default(),
            t0 + Duration::from_secs(61),
        );
        let (cs, ss) = (so_far.candidate, so_far.stable);
        assert_eq!((cs.requests, cs.errors, ss.requests), (60, 6, 540));
    }

    #[test]
    fn a_new_step_starts_anew_and_a_new_window_is_read_from_the_step_start() {
        let t0 = Instant::now();
        let (c, s) = (window(t0), window(t0));
        let mut sums = StepSums::default();
        c.record(t0, Duration::from_millis(5), true);
        let t1 = t0 + Duration::from_secs(2);
        let served = |c, s| Counters {
            served: (c, s),
            ..Counters::default()
        };
        let so_far = sums.read((1, 0, false), t0, (&c, &s), served(10, 90), t1);
        assert_eq!(so_far.candidate.requests, 1);
        assert_eq!(
            so_far.counted.served,
            (0, 0),
            "counted from the step's first read"
        );
        // Step 1 begins at t1: what came before is not its sample.
        c.record(t1, Duration::from_millis(5), false);
        let t2 = t1 + Duration::from_secs(2);
        let so_far = sums.read((1, 1, false), t1, (&c, &s), served(15, 100), t2);
        assert_eq!((so_far.candidate.requests, so_far.candidate.errors), (1, 0));
        assert_eq!(so_far.counted.served, (0, 0), "a new step counts anew");
        // A reload made the candidate's window anew: its samples add to the sum.
        let fresh = window(t2);
        fresh.record(t2, Duration::from_millis(5), false);
        let so_far = sums.read(
            (1, 1, false),
            t1,
            (&fresh, &s),
            served(20, 150),
            t2 + Duration::from_secs(2),
        );
        assert_eq!(so_far.candidate.requests, 2);
        assert_eq!(so_far.counted.served, (5, 50));
    }
}
