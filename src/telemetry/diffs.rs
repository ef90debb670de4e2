//! The recent disagreements between live and shadow answers, newest first, for
//! `/api/v1/shadow/diffs`: a bounded ring that outlives snapshots.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

/// How many recent disagreements `/api/v1/shadow/diffs` keeps.
pub const DIFFS_KEPT: usize = 100;

/// The ring of recent disagreements, each already redacted.
pub struct Diffs {
    ring: Mutex<VecDeque<Arc<serde_json::Value>>>,
}

impl Default for Diffs {
    fn default() -> Self {
        Diffs {
            ring: Mutex::new(VecDeque::with_capacity(DIFFS_KEPT)),
        }
    }
}

impl Diffs {
    /// Keeps one disagreement, dropping the oldest beyond [`DIFFS_KEPT`].
    pub fn push(&self, diff: serde_json::Value) {
        let mut d = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        if d.len() == DIFFS_KEPT {
            d.pop_back();
        }
        d.push_front(Arc::new(diff));
    }

    /// The most recent disagreements, newest first.
    pub fn recent(&self, limit: usize) -> Vec<Arc<serde_json::Value>> {
        let d = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        d.iter().take(limit).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_first_and_at_most_diffs_kept() {
        let diffs = Diffs::default();
        for i in 0..DIFFS_KEPT + 5 {
            diffs.push(serde_json::json!(i));
        }
        let recent = diffs.recent(usize::MAX);
        assert_eq!(recent.len(), DIFFS_KEPT);
        assert_eq!(*recent[0], serde_json::json!(DIFFS_KEPT + 4));
        assert_eq!(*recent[DIFFS_KEPT - 1], serde_json::json!(5));
        assert_eq!(diffs.recent(3).len(), 3);
    }
}
