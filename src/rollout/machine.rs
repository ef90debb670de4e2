//! The rollout's plan and its pure state machine: phases, steps, events and the moves
//! between them (no I/O, time passed in).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use tokio::time::{Duration, Instant};

use super::analysis::{self, Analysis};
use crate::config::{Config, Hold, Route, Strategy};
use crate::telemetry::now_rfc3339;

/// The phase of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Idle,
    Progressing,
    Paused,
    Promoted,
    RolledBack,
}

impl Phase {
    pub const ALL: [&'static str; 5] = ["idle", "progressing", "paused", "promoted", "rolled_back"];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Progressing => "progressing",
            Phase::Paused => "paused",
            Phase::Promoted => "promoted",
            Phase::RolledBack => "rolled_back",
        }
    }
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub weight: f64,
    pub mirror: f64,
    /// `None`: the step may pass at once (after its analysis, if any).
    pub hold: Option<Hold>,
}

/// What the rollout walks, derived from the config. Its [`revision`](Plan::revision) is its identity.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub stable: String,
    pub candidate: Option<String>,
    pub strategy: Strategy,
    pub steps: Vec<Step>,
    /// Hash of stable, candidate (and its URL), strategy and steps.
    pub revision: u64,
    /// Hash of stable, candidate and the candidate's URL: what a finished rollout
    /// (promoted or rolled back) is, whatever its steps. A reload that keeps it keeps the
    /// finished rollout as it is: no reload sends users back to a model unless the
    /// operator names it again.
    pub pair: u64,
}

impl Plan {
    /// The plan of one `route` of `config` (whose backends give the candidate's URL).
    pub fn of(route: &Route, config: &Config) -> Plan {
        let r = &route.rollout;
        let steps = match r.strategy {
            Strategy::Canary => r
                .steps
                .iter()
                .map(|s| Step {
                    weight: s.weight,
                    mirror: s.mirror.unwrap_or(route.shadow.mirror),
                    hold: s.hold,
                })
                .collect(),
            // Blue-green is one step at weight 0 (preview and mirroring only) whose
            // passing is the atomic switch to 100 %.
            Strategy::BlueGreen => vec![Step {
                weight: 0.0,
                mirror: route.shadow.mirror,
                hold: Some(
                    r.blue_green
                        .as_ref()
                        .and_then(|b| b.auto_promote_after)
                        .map(Hold::For)
                        .unwrap_or(Hold::Manual),
                ),
            }],
        };
        let candidate_url = r
            .candidate
            .as_ref()
            .and_then(|c| config.backends.get(c))
            .map(|b| b.url.as_str())
            .unwrap_or("");
        let pair = format!(
            "{}|{}|{}",
            r.stable,
            r.candidate.as_deref().unwrap_or(""),
            candidate_url
        );
        let mut identity = format!("{pair}|{}", r.strategy.as_str());
        for s in &steps {
            let hold = s.hold.map(|h| h.to_string()).unwrap_or_default();
            identity.push_str(&format!("|{}:{}:{}", s.weight, s.mirror, hold));
        }
        Plan {
            stable: r.stable.clone(),
            candidate: r.candidate.clone(),
            strategy: r.strategy,
            steps,
            revision: xxhash_rust::xxh3::xxh3_64(identity.as_bytes()),
            pair: xxhash_rust::xxh3::xxh3_64(pair.as_bytes()),
        }
    }
}

/// One entry of the rollout's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339 UTC.
    pub at: String,
    /// `start`, `step`, `promoted`, `paused`, `resumed`, `rollback`, `retry`, `reload`,
    /// `restored`, `analysis`, `state` (the state file could not be used at start).
    pub kind: String,
    pub message: String,
}

/// How many events a rollout keeps.
pub const EVENTS_KEPT: usize = 200;

/// Why a rollback happened, as the `trigger` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Analysis failed `failure_limit` times.
    Auto,
    /// The data plane saw `consecutive_errors` candidate failures in a row.
    Fast,
    /// An operator asked.
    Manual,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Auto => "auto",
            Trigger::Fast => "fast",
            Trigger::Manual => "manual",
        }
    }
}

/// A control that the current phase does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} while the rollout is {phase}")]
pub struct NotAllowed {
    pub action: &'static str,
    pub phase: &'static str,
}

/// The rollout state machine. Pure: time comes in as arguments.
#[derive(Debug, Clone)]
pub struct Rollout {
    pub plan: Plan,
    pub phase: Phase,
    pub step: usize,
    /// When the current step started (shifted forward by time spent paused).
    pub step_started: Instant,
    pub paused_at: Option<Instant>,
    pub promoted_at: Option<Instant>,
    /// Why the last rollback or pause happened.
    pub reason: Option<String>,
    /// Consecutive failed evaluations.
    pub failures: u32,
    pub last_analysis: Option<Analysis>,
    /// Verdict of the last evaluation made during the current step (a step passes on a fresh pass).
    pub step_verdict: Option<analysis::Verdict>,
    /// When this rollout (or its retry) started: analysis never looks further back.
    pub started: Instant,
    pub events: VecDeque<Event>,
    /// Paused on the stable ([`Rollout::safe`]): while set, [`weight`](Rollout::weight)
    /// and [`mirror`](Rollout::mirror) are 0 whatever the step says. `resume`, `promote`
    /// and `rollback` clear it.
    pub safe: bool,
}

impl Rollout {
    /// A new rollout at step 0 (or idle without a candidate).
    pub fn new(plan: Plan, now: Instant) -> Rollout {
        let phase = if plan.candidate.is_some() {
            Phase::Progressing
        } else {
            Phase::Idle
        };
        let mut r = Rollout {
            plan,
            phase,
            step: 0,
            step_started: now,
            paused_at: None,
            promoted_at: None,
            reason: None,
            failures: 0,
            last_analysis: None,
            step_verdict: None,
            started: now,
            events: VecDeque::new(),
            safe: false,
        };
        let msg = match &r.plan.candidate {
            Some(c) => format!(
                "rollout of {c} started ({}, {} step{}): {}",
                r.plan.strategy.as_str(),
                r.plan.steps.len(),
                if r.plan.steps.len() == 1 { "" } else { "s" },
                r.describe_step()
            ),
            None => format!("no candidate: all traffic to {}", r.plan.stable),
        };
        r.event("start", msg);
        r
    }

    /// A rollout that starts safe, because what it was before cannot be known (its state
    /// file could not be used, for `reason`): paused at step 0 with all traffic on the
    /// stable and no mirroring, until an operator resumes (the rollout goes on from step 0
    /// with its normal weights), promotes or rolls back. Unlike an operator's pause, which
    /// keeps the split, nothing reaches the candidate. Without a candidate it is idle.
    ///
    /// ```
    /// use switchyard::config::Strategy;
    /// use switchyard::rollout::{Phase, Plan, Rollout, Step};
    ///
    /// let plan = Plan {
    ///     stable: "blue".into(),
    ///     candidate: Some("green".into()),
    ///     strategy: Strategy::Canary,
    ///     steps: vec![Step { weight: 10.0, mirror: 50.0, hold: None }],
    ///     revision: 1,
    ///     pair: 1,
    /// };
    /// let now = tokio::time::Instant::now();
    /// let mut r = Rollout::safe(plan, "state file unreadable".into(), now);
    /// assert_eq!((r.phase, r.weight(), r.mirror()), (Phase::Paused, 0.0, 0.0));
    /// r.resume(now).unwrap();
    /// assert_eq!((r.phase, r.step, r.weight(), r.mirror()), (Phase::Progressing, 0, 10.0, 50.0));
    /// ```
    pub fn safe(plan: Plan, reason: String, now: Instant) -> Rollout {
        let mut r = Rollout::new(plan, now);
        let msg = if r.phase == Phase::Idle {
            format!("{reason}; no candidate: all traffic to {}", r.plan.stable)
        } else {
            r.phase = Phase::Paused;
            r.paused_at = Some(now);
            r.safe = true;
            r.reason = Some(reason.clone());
            format!(
                "{reason}; paused at step 0 with all traffic to {}, mirroring off: \
                 `resume` goes on from step 0, or `promote`, or `rollback`",
                r.plan.stable
            )
        };
        r.event("state", msg);
        r
    }

    /// Percentage of user traffic the candidate serves now.
    pub fn weight(&self) -> f64 {
        if self.safe {
            return 0.0;
        }
        match self.phase {
            Phase::Progressing | Phase::Paused => self.current().map_or(0.0, |s| s.weight),
            Phase::Promoted => 100.0,
            Phase::Idle | Phase::RolledBack => 0.0,
        }
    }

    /// Percentage of stable-served requests mirrored to the candidate now.
    pub fn mirror(&self) -> f64 {
        if self.safe {
            return 0.0;
        }
        match self.phase {
            Phase::Progressing | Phase::Paused => self.current().map_or(0.0, |s| s.mirror),
            _ => 0.0,
        }
    }

    /// Whether the rollout has ended: promoted or rolled back.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Promoted | Phase::RolledBack)
    }

    /// Takes a new plan of the same stable and candidate while finished: the phase stays,
    /// the step is the new plan's last one a promoted rollout passed (the nearest one a
    /// rolled-back rollout can name).
    pub fn adopt(&mut self, plan: Plan) {
        let last = plan.steps.len().saturating_sub(1);
        self.step = match self.phase {
            Phase::Promoted => last,
            _ => self.step.min(last),
        };
        self.plan = plan;
    }

    pub fn current(&self) -> Option<&Step> {
        self.plan.steps.get(self.step)
    }

    /// True when the current step's hold has elapsed (never for `manual`).
    pub fn hold_elapsed(&self, now: Instant) -> bool {
        match self.current().and_then(|s| s.hold) {
            None => true,
            Some(Hold::Manual) => false,
            Some(Hold::For(d)) => now >= self.step_started + d.0,
        }
    }

    /// When the current step's hold ends, if it ends by time.
    pub fn hold_deadline(&self) -> Option<Instant> {
        if self.phase != Phase::Progressing {
            return None;
        }
        match self.current().and_then(|s| s.hold) {
            None => Some(self.step_started),
            Some(Hold::Manual) => None,
            Some(Hold::For(d)) => Some(self.step_started + d.0),
        }
    }

    /// Passes the current step: the next one starts, or the rollout is promoted.
    pub fn advance(&mut self, now: Instant, why: &str) {
        self.failures = 0;
        self.step_verdict = None;
        if self.step + 1 >= self.plan.steps.len() {
            self.promote_fully(now, why);
        } else {
            self.step += 1;
            self.step_started = now;
            if self.paused_at.is_some() {
                self.paused_at = Some(now);
            }
            let msg = format!("step {} ({why}): {}", self.step, self.describe_step());
            self.event("step", msg);
        }
    }

    fn promote_fully(&mut self, now: Instant, why: &str) {
        self.phase = Phase::Promoted;
        self.paused_at = None;
        self.promoted_at = Some(now);
        self.failures = 0;
        let cand = self.plan.candidate.clone().unwrap_or_default();
        self.event(
            "promoted",
            format!(
                "{cand} promoted ({why}): 100 % of traffic, {} kept warm",
                self.plan.stable
            ),
        );
    }

    /// `switchyard promote`: passes the current hold; `full` skips to 100 %. From a safe
    /// start it stays paused, at the next step's split.
    pub fn promote(&mut self, full: bool, now: Instant) -> Result<(), NotAllowed> {
        self.allow("promote", &[Phase::Progressing, Phase::Paused])?;
        self.safe = false;
        if full {
            self.promote_fully(now, "manual promote --full");
        } else {
            self.advance(now, "manual promote");
        }
        Ok(())
    }

    /// `switchyard pause`: the split stays, progression stops.
    pub fn pause(&mut self, reason: Option<String>, now: Instant) -> Result<(), NotAllowed> {
        self.allow("pause", &[Phase::Progressing])?;
        self.phase = Phase::Paused;
        self.paused_at = Some(now);
        let msg = match &reason {
            Some(r) => format!("paused at step {}: {r}", self.step),
            None => format!("paused at step {}", self.step),
        };
        self.reason = reason;
        self.event("paused", msg);
        Ok(())
    }

    /// `switchyard resume`: the hold goes on where it stopped (from a safe start: step 0
    /// from its beginning, at its split).
    pub fn resume(&mut self, now: Instant) -> Result<(), NotAllowed> {
        self.allow("resume", &[Phase::Paused])?;
        self.safe = false;
        if let Some(p) = self.paused_at.take() {
            self.step_started += now.saturating_duration_since(p);
        }
        self.phase = Phase::Progressing;
        self.reason = None;
        self.event("resumed", format!("resumed at step {}", self.step));
        Ok(())
    }

    /// All traffic to stable, mirroring off.
    pub fn rollback(&mut self, reason: String, trigger: Trigger) -> Result<(), NotAllowed> {
        self.allow(
            "rollback",
            &[Phase::Progressing, Phase::Paused, Phase::Promoted],
        )?;
        self.phase = Phase::RolledBack;
        self.paused_at = None;
        self.safe = false;
        self.event(
            "rollback",
            format!(
                "rolled back to {} ({}): {reason}",
                self.plan.stable,
                trigger.as_str()
            ),
        );
        self.reason = Some(reason);
        Ok(())
    }

    /// `switchyard retry`: the same rollout from step 0.
    pub fn retry(&mut self, now: Instant) -> Result<(), NotAllowed> {
        self.allow("retry", &[Phase::RolledBack])?;
        self.phase = Phase::Progressing;
        self.step = 0;
        self.step_started = now;
        self.promoted_at = None;
        self.failures = 0;
        self.reason = None;
        self.last_analysis = None;
        self.step_verdict = None;
        self.started = now;
        let msg = format!("retry from step 0: {}", self.describe_step());
        self.event("retry", msg);
        Ok(())
    }

    fn allow(&self, action: &'static str, phases: &[Phase]) -> Result<(), NotAllowed> {
        if phases.contains(&self.phase) {
            Ok(())
        } else {
            Err(NotAllowed {
                action,
                phase: self.phase.as_str(),
            })
        }
    }

    /// Appends an event, dropping the oldest beyond [`EVENTS_KEPT`].
    pub fn event(&mut self, kind: &str, message: String) {
        tracing::info!(target: "switchyard::rollout", kind, "{message}");
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(Event {
            at: now_rfc3339(),
            kind: kind.to_string(),
            message,
        });
    }

    fn describe_step(&self) -> String {
        match self.current() {
            Some(s) => {
                let hold = match s.hold {
                    Some(h) => format!(", hold {h}"),
                    None => String::new(),
                };
                let mirror = if s.mirror > 0.0 {
                    format!(", mirror {}%", s.mirror)
                } else {
                    String::new()
                };
                format!("weight {}%{mirror}{hold}", s.weight)
            }
            None => String::new(),
        }
    }
}

/// Time since `earlier`, zero when the clock went backwards.
pub(crate) fn since(now: Instant, earlier: Instant) -> Duration {
    now.saturating_duration_since(earlier)
}
