//! Paired outcomes: both models scored on the same labelled requests.

use serde::Serialize;

/// Both models' answers to the same requests scored against the same labels, counted by how they differ.
///
/// From `pairs` labelled requests that both the stable and the candidate
/// answered (a mirrored request's two answers), `stable_only` had only the
/// stable's answer right and `candidate_only` only the candidate's; the
/// others had both right or both wrong. The stable's accuracy minus the
/// candidate's is `(stable_only - candidate_only) / pairs`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pairs {
    pub pairs: u64,
    pub stable_only: u64,
    pub candidate_only: u64,
}

impl Pairs {
    /// One labelled request both models answered, by whether each got it right.
    pub fn of(stable_right: bool, candidate_right: bool) -> Pairs {
        Pairs {
            pairs: 1,
            stable_only: u64::from(stable_right && !candidate_right),
            candidate_only: u64::from(candidate_right && !stable_right),
        }
    }

    /// The pairs counted since `earlier` was read from the same running count (each count
    /// at least 0, should the count have started anew).
    ///
    /// ```
    /// use switchyard::telemetry::Pairs;
    /// let start = Pairs { pairs: 10, stable_only: 2, candidate_only: 1 };
    /// let now = Pairs { pairs: 50, stable_only: 9, candidate_only: 1 };
    /// assert_eq!(now.since(start), Pairs { pairs: 40, stable_only: 7, candidate_only: 0 });
    /// ```
    pub fn since(self, earlier: Pairs) -> Pairs {
        Pairs {
            pairs: self.pairs.saturating_sub(earlier.pairs),
            stable_only: self.stable_only.saturating_sub(earlier.stable_only),
            candidate_only: self.candidate_only.saturating_sub(earlier.candidate_only),
        }
    }
}
