//! Everything since the step began, read bucket by bucket from windows that forget.
//!
//! The relative gates decide on confidence sequences, valid over one growing sample: all
//! the candidate's (and the stable's) requests since the step began, never a sliding
//! window whose samples leave as well as arrive. The backends' windows keep only the
//! recent span; at each evaluation [`StepSums`] adds the buckets completed since the last
//! one ([`Window::completed`]) to a running [`Summary`], so it keeps a step's whole sample
//! in the size of one summary (counts and a fixed histogram, mergeable across replicas),
//! whatever the step's length. A new step, retry or promotion starts the sums anew.

use std::sync::Arc;

use tokio::time::Instant;

use crate::telemetry::window::{Summary, Window};

/// What a running sum belongs to: the rollout (its id), its step, and whether it is
/// promoted. Another key starts the sums anew.
pub type StepKey = (u64, usize, bool);

/// The candidate's and the stable's summaries since the step began.
#[derive(Default)]
pub struct StepSums {
    key: Option<StepKey>,
    candidate: Side,
    stable: Side,
}

/// One backend's running sum: the window read last, the next bucket to read, the sum.
#[derive(Default)]
struct Side {
    window: Option<Arc<Window>>,
    next: u64,
    sum: Summary,
}

impl StepSums {
    /// Adds what the candidate's and the stable's windows completed since the last read
    /// (or since `started`, the step's start, for a new step) and returns both sums.
    pub fn read(
        &mut self,
        key: StepKey,
        started: Instant,
        (candidate, stable): (&Arc<Window>, &Arc<Window>),
        now: Instant,
    ) -> (&Summary, &Summary) {
        if self.key != Some(key) {
            *self = StepSums {
                key: Some(key),
                ..StepSums::default()
            };
        }
        self.candidate.read(candidate, started, now);
        self.stable.read(stable, started, now);
        (&self.candidate.sum, &self.stable.sum)
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
                sums.read((1, 0, false), t0, (&c, &s), at);
            }
        }
        let (cs, ss) = sums.read((1, 0, false), t0, (&c, &s), t0 + Duration::from_secs(61));
        assert_eq!((cs.requests, cs.errors, ss.requests), (60, 6, 540));
    }

    #[test]
    fn a_new_step_starts_anew_and_a_new_window_is_read_from_the_step_start() {
        let t0 = Instant::now();
        let (c, s) = (window(t0), window(t0));
        let mut sums = StepSums::default();
        c.record(t0, Duration::from_millis(5), true);
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(sums.read((1, 0, false), t0, (&c, &s), t1).0.requests, 1);
        // Step 1 begins at t1: what came before is not its sample.
        c.record(t1, Duration::from_millis(5), false);
        let t2 = t1 + Duration::from_secs(2);
        let (cs, _) = sums.read((1, 1, false), t1, (&c, &s), t2);
        assert_eq!((cs.requests, cs.errors), (1, 0));
        // A reload made the candidate's window anew: its samples add to the sum.
        let fresh = window(t2);
        fresh.record(t2, Duration::from_millis(5), false);
        let (cs, _) = sums.read((1, 1, false), t1, (&fresh, &s), t2 + Duration::from_secs(2));
        assert_eq!(cs.requests, 2);
    }
}
