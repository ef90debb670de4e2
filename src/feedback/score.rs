//! The labels' verdicts over a sliding window: a ring of time buckets per route and
//! backend, shaped like the analysis windows (at most 61 buckets of whole seconds).

use std::time::Duration;

use super::Score;

/// What one matched label says about its prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Verdict {
    /// The label is the predicted class.
    Correct,
    /// The label is another class.
    Wrong,
    /// A numeric label, this far from the predicted value.
    Off(f64),
    /// The label cannot be compared with the prediction (an object for a class, a word
    /// for a value, a value that is not finite).
    Unscored,
}

/// Slot epoch of a bucket never written.
const EMPTY: u64 = u64::MAX;

/// One time bucket's sums.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    epoch: u64,
    score: Score,
}

/// A ring of time buckets: bucket `k` covers `[k·width, (k+1)·width)` ms after the
/// store's origin and lives in slot `k % slots`.
pub(super) struct Ring {
    width_ms: u64,
    slots: Box<[Bucket]>,
}

/// The bucket width and count for a window: whole seconds, at most 61 buckets (as the
/// analysis windows are shaped), so the window slides by one bucket at a time.
pub(super) fn shape(window: Duration) -> (u64, usize) {
    let secs = window.as_secs().max(1);
    let width = secs.div_ceil(60).max(1);
    let n = secs.div_ceil(width) as usize + 1;
    (width * 1000, n.max(2))
}

impl Ring {
    pub(super) fn new((width_ms, n): (u64, usize)) -> Ring {
        let empty = Bucket {
            epoch: EMPTY,
            score: Score::default(),
        };
        Ring {
            width_ms: width_ms.max(1),
            slots: vec![empty; n.max(1)].into_boxed_slice(),
        }
    }

    /// Counts a verdict at `now_ms`; one older than the ring reaches is left out.
    pub(super) fn add(&mut self, now_ms: u64, verdict: Verdict) {
        let epoch = now_ms / self.width_ms;
        let n = self.slots.len() as u64;
        let slot = &mut self.slots[(epoch % n) as usize];
        if slot.epoch != epoch {
            if slot.epoch != EMPTY && slot.epoch > epoch {
                return;
            }
            *slot = Bucket {
                epoch,
                score: Score::default(),
            };
        }
        let s = &mut slot.score;
        match verdict {
            Verdict::Correct => {
                s.classified += 1;
                s.correct += 1;
            }
            Verdict::Wrong => s.classified += 1,
            Verdict::Off(e) => {
                s.valued += 1;
                s.abs_error += e;
            }
            Verdict::Unscored => {}
        }
    }

    /// Sums the buckets within `span_ms` before `now_ms`: the bucket holding `now_ms`,
    /// the one holding `now_ms - span_ms` and those between (a span longer than the ring
    /// reaches is cut to it).
    pub(super) fn score(&self, now_ms: u64, span_ms: u64) -> Score {
        let newest = now_ms / self.width_ms;
        let reach = self.slots.len() as u64 - 1;
        let oldest =
            (now_ms.saturating_sub(span_ms) / self.width_ms).max(newest.saturating_sub(reach));
        let n = self.slots.len() as u64;
        let mut sum = Score::default();
        for epoch in oldest..=newest {
            let b = &self.slots[(epoch % n) as usize];
            if b.epoch == epoch {
                sum.classified += b.score.classified;
                sum.correct += b.score.correct;
                sum.valued += b.score.valued;
                sum.abs_error += b.score.abs_error;
            }
        }
        sum
    }

    /// The heap it holds, in bytes.
    pub(super) fn heap_bytes(&self) -> usize {
        std::mem::size_of_val::<[Bucket]>(&self.slots)
    }
}
