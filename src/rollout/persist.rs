//! The persisted rollout state: survives restarts, consulted only for the same revision.
//!
//! Each route's state is one record of the [`Store`](crate::store::Store), read on its
//! own and consulted only for its own route and revision. A record that cannot be read or
//! makes no sense is never trusted nor overwritten: it is put aside and the route it
//! leaves in doubt starts safe ([`Rollout::safe`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::machine::{Event, Phase, Plan, Rollout};
use crate::store::Record;

/// One route's record, read on its own: its state, or why it makes no sense (an unknown
/// phase, a field of the wrong type...).
#[derive(Debug)]
pub struct Entry {
    pub route: String,
    pub state: Result<Persisted, String>,
}

impl Entry {
    /// Reads the state a store's record holds.
    pub fn of(record: &Record) -> Entry {
        let state = serde_json::from_slice::<Value>(&record.data)
            .map_err(|e| format!("not JSON: {e}"))
            .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()));
        Entry {
            route: record.route.clone(),
            state,
        }
    }
}

/// What became of a route's entry of the state file ([`Persisted::restore_into`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// The rollout is where the entry says.
    Restored,
    /// The entry is for another revision (the config changed while stopped): the
    /// rollout starts at step 0, as a fresh one.
    OtherRevision,
    /// The entry is for this revision but makes no sense (why: a step beyond the plan, a
    /// phase the plan cannot be in); the rollout is left as it was.
    Nonsense(String),
}

/// One route's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Persisted {
    pub route: String,
    /// The plan's revision, hex.
    pub revision: String,
    /// The plan's stable and candidate ([`Plan::pair`]), hex: a finished rollout is
    /// restored under a plan of the same pair whatever its steps. Empty in files written
    /// before it was kept.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pair: String,
    pub phase: Phase,
    pub step: usize,
    /// Wall-clock start of the current step (ms since the epoch), shifted by time paused.
    step_started_ms: u64,
    #[serde(default)]
    paused_at_ms: Option<u64>,
    #[serde(default)]
    promoted_at_ms: Option<u64>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub events: Vec<Event>,
    /// Paused on the stable since a state file could not be used ([`Rollout::safe`]).
    #[serde(default)]
    pub safe: bool,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The wall-clock time of a tokio instant (now ± the difference).
fn wall(at: Instant, now: Instant, wall_now: SystemTime) -> u64 {
    let w = if at <= now {
        wall_now - (now - at)
    } else {
        wall_now + (at - now)
    };
    unix_ms(w)
}

/// The tokio instant of a wall-clock time (never later than `now`).
fn instant(ms: u64, now: Instant, wall_now: SystemTime) -> Instant {
    let ago = unix_ms(wall_now).saturating_sub(ms);
    now.checked_sub(Duration::from_millis(ago)).unwrap_or(now)
}

pub fn revision_hex(revision: u64) -> String {
    format!("{revision:016x}")
}

impl Persisted {
    /// This state as a store's record: its JSON.
    pub fn record(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a state is always JSON")
    }

    /// The state of `rollout` as of now.
    pub fn of(route: &str, r: &Rollout, now: Instant) -> Persisted {
        let wall_now = SystemTime::now();
        Persisted {
            route: route.to_string(),
            revision: revision_hex(r.plan.revision),
            pair: revision_hex(r.plan.pair),
            phase: r.phase,
            step: r.step,
            step_started_ms: wall(r.step_started, now, wall_now),
            paused_at_ms: r.paused_at.map(|p| wall(p, now, wall_now)),
            promoted_at_ms: r.promoted_at.map(|p| wall(p, now, wall_now)),
            reason: r.reason.clone(),
            events: r.events.iter().cloned().collect(),
            safe: r.safe,
        }
    }

    /// Whether `other` is this state, its times within a second of each other (a state
    /// restored and taken again may differ by a millisecond of clock drift).
    pub fn same_as(&self, other: &Persisted) -> bool {
        let near = |a: u64, b: u64| a.abs_diff(b) < 1000;
        let near_opt = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => near(a, b),
            (a, b) => a == b,
        };
        let timeless = |p: &Persisted| Persisted {
            step_started_ms: 0,
            paused_at_ms: None,
            promoted_at_ms: None,
            ..p.clone()
        };
        near(self.step_started_ms, other.step_started_ms)
            && near_opt(self.paused_at_ms, other.paused_at_ms)
            && near_opt(self.promoted_at_ms, other.promoted_at_ms)
            && timeless(self) == timeless(other)
    }

    /// Applies this state to a fresh rollout of the same route and revision; nothing is
    /// changed unless the answer is [`Restore::Restored`].
    ///
    /// A promoted or rolled-back rollout is restored under a plan of another revision too,
    /// when its stable and candidate are the same ([`Plan::pair`]): its steps were edited
    /// while switchyard was down, which sends nobody back.
    pub fn restore_into(&self, route: &str, r: &mut Rollout, now: Instant) -> Restore {
        let same_revision = self.revision == revision_hex(r.plan.revision);
        let finished = matches!(self.phase, Phase::Promoted | Phase::RolledBack);
        let same_pair = !self.pair.is_empty() && self.pair == revision_hex(r.plan.pair);
        if self.route != route || !(same_revision || finished && same_pair) {
            return Restore::OtherRevision;
        }
        let steps = r.plan.steps.len();
        let step = match self.phase {
            _ if same_revision => self.step,
            Phase::Promoted => steps.saturating_sub(1),
            _ => self.step.min(steps.saturating_sub(1)),
        };
        let entry = Persisted {
            step,
            ..self.clone()
        };
        if let Err(why) = entry.check(&r.plan) {
            return Restore::Nonsense(why);
        }
        let wall_now = SystemTime::now();
        r.phase = self.phase;
        r.step = step;
        r.step_started = instant(self.step_started_ms, now, wall_now);
        r.paused_at = self.paused_at_ms.map(|p| instant(p, now, wall_now));
        r.promoted_at = self.promoted_at_ms.map(|p| instant(p, now, wall_now));
        r.reason = self.reason.clone();
        r.events = self.events.iter().cloned().collect();
        r.safe = self.safe;
        Restore::Restored
    }

    /// Whether a rollout of `plan` can be in this state: a route without a candidate is
    /// idle and only it; the step is one of the plan's; only a paused rollout is safe.
    fn check(&self, plan: &Plan) -> Result<(), String> {
        let idle = plan.candidate.is_none();
        if idle != (self.phase == Phase::Idle) {
            let which = if idle { "without" } else { "with" };
            return Err(format!(
                "phase {} for a rollout {which} a candidate",
                self.phase.as_str()
            ));
        }
        let steps = plan.steps.len();
        if self.step >= steps.max(1) {
            let s = if steps == 1 { "" } else { "s" };
            return Err(format!("step {} of a plan of {steps} step{s}", self.step));
        }
        if self.safe && self.phase != Phase::Paused {
            return Err(format!("safe while {}", self.phase.as_str()));
        }
        Ok(())
    }
}
