//! The labels' verdicts over a sliding window: a ring of time buckets per route and
//! backend (and per stable and candidate that both answered labelled requests), shaped
//! like the analysis windows (at most 61 buckets of whole seconds).

use std::time::Duration;

use serde::Serialize;

use crate::telemetry::Pairs;

/// Labels' verdicts over a span, for one route and backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Score {
    /// Labels of class predictions.
    pub classified: u64,
    /// Of those, labels equal to the predicted class.
    pub correct: u64,
    /// Labels of value predictions.
    pub valued: u64,
    /// The sum of `|label - predicted|` over those.
    pub abs_error: f64,
}

impl Score {
    /// Counts one label's verdict.
    pub(super) fn count(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Correct => {
                self.classified += 1;
                self.correct += 1;
            }
            Verdict::Wrong => self.classified += 1,
            Verdict::Off(e) => {
                self.valued += 1;
                self.abs_error += e;
            }
            Verdict::Unscored => {}
        }
    }

    /// What grew from `earlier` to this (never below 0: a store made anew counts from 0).
    pub fn since(self, earlier: Score) -> Score {
        Score {
            classified: self.classified.saturating_sub(earlier.classified),
            correct: self.correct.saturating_sub(earlier.correct),
            valued: self.valued.saturating_sub(earlier.valued),
            abs_error: (self.abs_error - earlier.abs_error).max(0.0),
        }
    }

    /// The share of class labels equal to the predicted class; `None` without any.
    pub fn accuracy(&self) -> Option<f64> {
        (self.classified > 0).then(|| self.correct as f64 / self.classified as f64)
    }

    /// The mean absolute error of value predictions; `None` without any labels for them.
    pub fn mean_absolute_error(&self) -> Option<f64> {
        (self.valued > 0).then(|| self.abs_error / self.valued as f64)
    }

    /// How many labels were scored (for a gate's "too few samples").
    pub fn labels(&self) -> u64 {
        self.classified + self.valued
    }
}

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

/// What a time bucket sums: one backend's verdicts ([`Score`]) or two backends' verdicts on the same requests ([`Pairs`]).
pub(super) trait Tally: Copy + Default {
    /// Adds `other`'s sums to these.
    fn merge(&mut self, other: &Self);
}

impl Tally for Score {
    fn merge(&mut self, other: &Score) {
        self.classified += other.classified;
        self.correct += other.correct;
        self.valued += other.valued;
        self.abs_error += other.abs_error;
    }
}

impl Tally for Pairs {
    fn merge(&mut self, other: &Pairs) {
        self.pairs = self.pairs.saturating_add(other.pairs);
        self.stable_only = self.stable_only.saturating_add(other.stable_only);
        self.candidate_only = self.candidate_only.saturating_add(other.candidate_only);
    }
}

/// Slot epoch of a bucket never written.
const EMPTY: u64 = u64::MAX;

/// One time bucket's sums.
#[derive(Debug, Clone, Copy)]
struct Bucket<T> {
    epoch: u64,
    sums: T,
}

/// A ring of time buckets: bucket `k` covers `[k·width, (k+1)·width)` ms after the
/// store's origin and lives in slot `k % slots`.
pub(super) struct Ring<T = Score> {
    width_ms: u64,
    slots: Box<[Bucket<T>]>,
}

/// The bucket width and count for a window: whole seconds, at most 61 buckets (as the
/// analysis windows are shaped), so the window slides by one bucket at a time.
pub(super) fn shape(window: Duration) -> (u64, usize) {
    let secs = window.as_secs().max(1);
    let width = secs.div_ceil(60).max(1);
    let n = secs.div_ceil(width) as usize + 1;
    (width * 1000, n.max(2))
}

impl<T: Tally> Ring<T> {
    pub(super) fn new((width_ms, n): (u64, usize)) -> Ring<T> {
        let empty = Bucket {
            epoch: EMPTY,
            sums: T::default(),
        };
        Ring {
            width_ms: width_ms.max(1),
            slots: vec![empty; n.max(1)].into_boxed_slice(),
        }
    }

    /// The sums of the bucket holding `now_ms`, emptied first if it held an older one;
    /// `None` when it already holds a newer one (`now_ms` is older than the ring reaches).
    fn at(&mut self, now_ms: u64) -> Option<&mut T> {
        let epoch = now_ms / self.width_ms;
        let n = self.slots.len() as u64;
        let slot = &mut self.slots[(epoch % n) as usize];
        if slot.epoch != epoch {
            if slot.epoch != EMPTY && slot.epoch > epoch {
                return None;
            }
            *slot = Bucket {
                epoch,
                sums: T::default(),
            };
        }
        Some(&mut slot.sums)
    }

    /// Sums the buckets within `span_ms` before `now_ms`: the bucket holding `now_ms`,
    /// the one holding `now_ms - span_ms` and those between (a span longer than the ring
    /// reaches is cut to it).
    pub(super) fn sum(&self, now_ms: u64, span_ms: u64) -> T {
        let newest = now_ms / self.width_ms;
        let reach = self.slots.len() as u64 - 1;
        let oldest =
            (now_ms.saturating_sub(span_ms) / self.width_ms).max(newest.saturating_sub(reach));
        let n = self.slots.len() as u64;
        let mut sum = T::default();
        for epoch in oldest..=newest {
            let b = &self.slots[(epoch % n) as usize];
            if b.epoch == epoch {
                sum.merge(&b.sums);
            }
        }
        sum
    }

    /// The heap it holds, in bytes.
    pub(super) fn heap_bytes(&self) -> usize {
        std::mem::size_of_val::<[Bucket<T>]>(&self.slots)
    }
}

impl Ring<Score> {
    /// Counts a verdict at `now_ms`; one older than the ring reaches is left out.
    pub(super) fn add(&mut self, now_ms: u64, verdict: Verdict) {
        if let Some(s) = self.at(now_ms) {
            s.count(verdict);
        }
    }
}

impl Ring<Pairs> {
    /// Counts, at `now_ms`, labelled requests both backends answered (see [`Pairs::of`]);
    /// those older than the ring reaches are left out.
    pub(super) fn add_pairs(&mut self, now_ms: u64, pairs: Pairs) {
        if let Some(p) = self.at(now_ms) {
            p.merge(&pairs);
        }
    }
}
