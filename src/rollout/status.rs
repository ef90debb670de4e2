//! The rollout status as `/api/v1/status` and `switchyard status` show it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::analysis::Analysis;
use super::machine::Event;

/// A published view of the rollout; the controller replaces it after every change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// `idle`, `progressing`, `paused`, `promoted` or `rolled_back`.
    pub phase: String,
    pub strategy: String,
    pub route: String,
    pub stable: String,
    pub candidate: Option<String>,
    pub step: usize,
    pub steps: usize,
    pub weight: f64,
    pub mirror: f64,
    pub reason: Option<String>,
    /// Seconds left in the current hold; `null` for manual or none.
    pub hold_remaining_s: Option<f64>,
    /// True when the current step waits for `promote`.
    pub manual_hold: bool,
    pub revision: String,
    pub config: ConfigStatus,
    /// The state file as the controller last wrote it (absent from older admin APIs).
    #[serde(default)]
    pub state: StateStatus,
    pub analysis: AnalysisStatus,
    pub events: Vec<Event>,
}

/// The config file as the controller last read it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigStatus {
    pub generation: u64,
    pub last_error: Option<String>,
    pub path: Option<String>,
}

/// The state file as the controller last wrote it: where, when, and why the last write
/// failed. A rollout change that could not be written is in force all the same, but a
/// restart would not find it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateStatus {
    /// `state.path`; `null` when the state is kept in memory only.
    pub path: Option<String>,
    /// Why the last write failed; `null` once a write succeeds.
    pub last_error: Option<String>,
    /// When the state was last written (RFC 3339 UTC); `null` before the first write.
    pub last_written: Option<String>,
}

/// The analysis as the rollout last ran it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AnalysisStatus {
    /// Whether an `analysis` block is configured.
    pub enabled: bool,
    pub last: Option<Analysis>,
    /// Consecutive failed evaluations.
    pub failures: u32,
    pub failure_limit: u32,
}

impl Status {
    /// The status before anything is loaded.
    pub fn empty() -> Status {
        Status {
            phase: "idle".into(),
            strategy: "canary".into(),
            route: crate::snapshot::DEFAULT_ROUTE.into(),
            stable: String::new(),
            candidate: None,
            step: 0,
            steps: 0,
            weight: 0.0,
            mirror: 0.0,
            reason: None,
            hold_remaining_s: None,
            manual_hold: false,
            revision: String::new(),
            config: ConfigStatus::default(),
            state: StateStatus::default(),
            analysis: AnalysisStatus::default(),
            events: Vec::new(),
        }
    }
}

/// Every route's status, in route order, as the controller last published it.
#[derive(Debug, Clone, Default)]
pub struct Statuses {
    pub routes: Vec<Arc<Status>>,
}

impl Statuses {
    /// The status of the route named `name`.
    pub fn route(&self, name: &str) -> Option<&Arc<Status>> {
        self.routes.iter().find(|s| s.route == name)
    }

    /// The status of the route the unscoped paths address ([`unscoped`]).
    pub fn unscoped(&self) -> Option<&Arc<Status>> {
        let names: Vec<&str> = self.routes.iter().map(|s| s.route.as_str()).collect();
        unscoped(&names).map(|i| &self.routes[i])
    }

    /// The route names, in order.
    pub fn names(&self) -> Vec<String> {
        self.routes.iter().map(|s| s.route.clone()).collect()
    }
}

/// Which of the routes `names` (in order) a control or status without a route addresses:
/// the route named `default`, else the only route; `None` when there are several and none
/// is `default`.
///
/// ```
/// use switchyard::rollout::status::unscoped;
/// assert_eq!(unscoped(&["iris", "default"]), Some(1));
/// assert_eq!(unscoped(&["iris"]), Some(0));
/// assert_eq!(unscoped(&["iris", "chat"]), None);
/// ```
pub fn unscoped(names: &[&str]) -> Option<usize> {
    names
        .iter()
        .position(|n| *n == crate::config::DEFAULT_ROUTE)
        .or((names.len() == 1).then_some(0))
}
