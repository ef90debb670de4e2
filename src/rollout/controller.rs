//! The controller: the one task that owns the rollout and writes the snapshot.
//!
//! Config reloads and admin commands arrive here as [`Msg`]s, fast-fail trips as
//! [`Trip`]s from the data plane's tripwire, analysis ticks as timer deadlines. After each
//! change the controller builds the next [`Snapshot`], publishes it with one `store`,
//! publishes the status, and persists the rollout state.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, Instant};

use super::analysis::{self, Verdict};
use super::persist::{self, Persisted};
use super::status::{AnalysisStatus, ConfigStatus, Status};
use super::{since, NotAllowed, Phase, Plan, Rollout, Trigger};
use crate::config::{Config, Hold, Problems};
use crate::snapshot::{Backends, Builder, Routing, Snapshot, DEFAULT_ROUTE};
use crate::telemetry::{metrics, Trip, Tripwire};

/// An operator's control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Promote { full: bool },
    Pause { reason: Option<String> },
    Resume,
    Rollback { reason: Option<String> },
    Retry,
}

/// A message to the controller.
pub enum Msg {
    Control {
        action: Action,
        reply: oneshot::Sender<Result<Arc<Status>, ControlError>>,
    },
    /// A config file was read again: a valid config to apply, or why it was rejected.
    Reload {
        result: Result<Box<Config>, Problems>,
        reply: Option<oneshot::Sender<Result<u64, Problems>>>,
    },
}

/// Where the controller publishes: the routing snapshot the data plane reads, and the
/// status the admin API shows. The controller is the only writer of both.
#[derive(Clone)]
pub struct Published {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub status: Arc<ArcSwap<Status>>,
}

/// Why a control did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
    #[error("the controller has stopped")]
    Stopped,
}

/// A handle to send controls and reloads to the controller.
#[derive(Clone)]
pub struct Control {
    tx: mpsc::Sender<Msg>,
}

impl Control {
    /// Applies `action` and answers with the new status.
    pub async fn send(&self, action: Action) -> Result<Arc<Status>, ControlError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Control { action, reply })
            .await
            .map_err(|_| ControlError::Stopped)?;
        rx.await.map_err(|_| ControlError::Stopped)?
    }

    /// Offers a re-read config; answers with the new generation, or the problems.
    pub async fn reload(&self, result: Result<Config, Problems>) -> Result<u64, Problems> {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Reload {
            result: result.map(Box::new),
            reply: Some(reply),
        };
        let stopped = || {
            Problems(vec![crate::config::Problem {
                path: String::new(),
                line: None,
                message: "the controller has stopped".into(),
            }])
        };
        self.tx.send(msg).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

/// The settings read once at start (listeners, admin token, client timeouts) that differ
/// between `old` and `new`, by their config path.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.listen != new.listen {
        changed.push("listen");
    }
    if old.admin.listen != new.admin.listen {
        changed.push("admin.listen");
    }
    if old.admin.token_env != new.admin.token_env {
        changed.push("admin.token_env");
    }
    if old.limits.header_timeout != new.limits.header_timeout {
        changed.push("limits.header_timeout");
    }
    if old.limits.idle_timeout != new.limits.idle_timeout {
        changed.push("limits.idle_timeout");
    }
    changed
}

/// How long a promotion is watched when no `analysis.after_promotion` says.
const DEFAULT_AFTER_PROMOTION: std::time::Duration = std::time::Duration::from_secs(300);

/// Capacity of the controller's queue of controls and reloads.
const QUEUE: usize = 1024;

/// Capacity of the trips queue; tripwires on the request path only `try_send`, and one
/// trip per rollout is all that counts.
const TRIPS: usize = 16;

/// The rollout controller.
pub struct Controller {
    config: Config,
    config_path: Option<PathBuf>,
    generation: u64,
    last_error: Option<String>,
    rollout: Rollout,
    /// Changes with every new rollout and every retry, so a stale trip is ignored.
    rollout_id: u64,
    tripwire: Option<Arc<Tripwire>>,
    next_eval: Option<Instant>,
    backends: Backends,
    /// What the current config fixes in every snapshot.
    builder: Builder,
    published: Published,
    rx: mpsc::Receiver<Msg>,
    /// Given to each tripwire; read by [`Controller::run`].
    trip_tx: mpsc::Sender<Trip>,
    trips: mpsc::Receiver<Trip>,
}

impl Controller {
    /// Builds the controller from a validated config, restoring the persisted state of
    /// the same revision, and publishes the first snapshot and status.
    pub fn new(config: Config, config_path: Option<PathBuf>) -> (Controller, Control) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (trip_tx, trips) = mpsc::channel(TRIPS);
        let now = Instant::now();
        let mut backends = Backends::default();
        backends.sync(&config);
        let builder = Builder::new(&config, &backends, None);
        let mut rollout = Rollout::new(Plan::from_config(&config), now);
        restore(&config, &mut rollout, now);
        let generation = 1;
        let rollout_id = 1;
        let tripwire = arm(&config, &rollout, now, None, rollout_id, &trip_tx);
        let first = builder.build(generation, routing(&rollout, &tripwire));
        let mut c = Controller {
            config,
            config_path,
            generation,
            last_error: None,
            rollout,
            rollout_id,
            tripwire,
            next_eval: None,
            backends,
            builder,
            published: Published {
                snapshot: Arc::new(ArcSwap::from_pointee(first)),
                status: Arc::new(ArcSwap::from_pointee(Status::empty())),
            },
            rx,
            trip_tx,
            trips,
        };
        c.schedule_eval(now);
        c.report(now, true);
        (c, Control { tx })
    }

    /// Where this controller publishes its snapshots and status.
    pub fn published(&self) -> Published {
        self.published.clone()
    }

    /// Runs until `shutdown` flips to true (or every sender is gone).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    None => break,
                },
                Some(trip) = self.trips.recv() => self.trip(trip),
                _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    self.tick(Instant::now());
                }
                _ = shutdown.changed() => break,
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        let now = Instant::now();
        match msg {
            Msg::Control { action, reply } => {
                let result = self.control(action, now);
                let answer = result.map(|()| self.published.status.load_full());
                let _ = reply.send(answer.map_err(ControlError::from));
            }
            Msg::Reload { result, reply } => {
                let answer = match result {
                    Ok(config) => {
                        self.apply(*config, now);
                        Ok(self.generation)
                    }
                    Err(problems) => {
                        tracing::error!(target: "switchyard::config", "config rejected, the previous one keeps serving:\n{problems}");
                        metrics::config_reload("rejected");
                        self.last_error = Some(problems.to_string());
                        self.publish(false);
                        Err(problems)
                    }
                };
                if let Some(reply) = reply {
                    let _ = reply.send(answer);
                }
            }
        }
    }

    /// A tripwire saw too many consecutive candidate failures: roll back at once, unless
    /// the trip belongs to a rollout that has since been replaced.
    fn trip(&mut self, Trip { rollout, failures }: Trip) {
        if rollout != self.rollout_id {
            return;
        }
        let reason =
            format!("{failures} consecutive candidate failures (fast_rollback.consecutive_errors)");
        if self.rollout.rollback(reason, Trigger::Fast).is_ok() {
            metrics::rollback(Trigger::Fast.as_str());
            self.publish(true);
        }
    }

    fn control(&mut self, action: Action, now: Instant) -> Result<(), NotAllowed> {
        let r = &mut self.rollout;
        match action {
            Action::Promote { full } => r.promote(full, now)?,
            Action::Pause { reason } => r.pause(reason, now)?,
            Action::Resume => r.resume(now)?,
            Action::Rollback { reason } => {
                let reason = reason.unwrap_or_else(|| "manual rollback".to_string());
                r.rollback(reason, Trigger::Manual)?;
                metrics::rollback(Trigger::Manual.as_str());
            }
            Action::Retry => {
                r.retry(now)?;
                self.rollout_id += 1;
                self.schedule_eval(now);
            }
        }
        self.publish(true);
        Ok(())
    }

    /// Applies a valid config: a new revision starts a new rollout; anything else keeps it.
    fn apply(&mut self, config: Config, now: Instant) {
        for what in restart_only_changes(&self.config, &config) {
            tracing::warn!(target: "switchyard::config", "{what} changed in the config file; it takes effect only at the next start (the running value stays)");
        }
        let plan = Plan::from_config(&config);
        self.backends.sync(&config);
        self.builder = Builder::new(&config, &self.backends, Some(&self.builder));
        self.generation += 1;
        self.last_error = None;
        metrics::config_reload("applied");
        if plan.revision != self.rollout.plan.revision {
            let old = self.rollout.plan.revision;
            let mut events = std::mem::take(&mut self.rollout.events);
            self.rollout = Rollout::new(plan, now);
            events.extend(self.rollout.events.drain(..));
            self.rollout.events = events;
            let msg = format!(
                "config generation {} changed the rollout (revision {} → {}): a new rollout starts at step 0",
                self.generation,
                persist::revision_hex(old),
                persist::revision_hex(self.rollout.plan.revision)
            );
            self.rollout.event("reload", msg);
            self.rollout_id += 1;
            self.config = config;
            self.schedule_eval(now);
        } else {
            tracing::info!(target: "switchyard::config", generation = self.generation, "config applied; the rollout goes on where it is");
            self.config = config;
            if self.next_eval.is_none() {
                self.schedule_eval(now);
            }
        }
        self.publish(true);
    }

    fn schedule_eval(&mut self, now: Instant) {
        self.next_eval = self
            .config
            .rollout
            .analysis
            .as_ref()
            .map(|a| now + a.interval.0);
    }

    /// Whether analysis runs in the current phase.
    fn analysing(&self, now: Instant) -> bool {
        let Some(a) = &self.config.rollout.analysis else {
            return false;
        };
        match self.rollout.phase {
            Phase::Progressing | Phase::Paused => true,
            Phase::Promoted => self
                .rollout
                .promoted_at
                .is_some_and(|p| since(now, p) < a.after_promotion.0),
            Phase::Idle | Phase::RolledBack => false,
        }
    }

    fn after_promotion(&self) -> std::time::Duration {
        after_promotion(&self.config)
    }

    fn protecting(&self, now: Instant) -> bool {
        protecting(&self.config, &self.rollout, now)
    }

    fn next_deadline(&self) -> Option<Instant> {
        let now = Instant::now();
        if self.rollout.phase == Phase::Promoted && self.tripwire.is_some() {
            // Wake when the post-promotion watch ends, to disarm the tripwire.
            let end = self.rollout.promoted_at.map(|p| p + self.after_promotion());
            let eval = self.next_eval.filter(|_| self.analysing(now));
            return match (eval, end) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let eval = self.next_eval.filter(|_| self.analysing(now));
        // A hold that has ended while the step still waits for a passing evaluation is
        // not a deadline (it would wake the task in a busy loop): the next evaluation is.
        let waits_for_pass = self.config.rollout.analysis.is_some()
            && self.rollout.step_verdict != Some(Verdict::Pass);
        let hold = self
            .rollout
            .hold_deadline()
            .filter(|&h| h > now || !waits_for_pass);
        match (eval, hold) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs what is due at `now`: an evaluation, a step whose hold has ended.
    pub fn tick(&mut self, now: Instant) {
        let mut changed = false;
        if self.analysing(now) && self.next_eval.is_some_and(|t| t <= now) {
            changed |= self.evaluate(now);
            self.schedule_eval(now);
        }
        if self.rollout.phase == Phase::Progressing && self.rollout.hold_elapsed(now) {
            let analysed = self.config.rollout.analysis.is_some();
            if !analysed {
                self.rollout.advance(now, "hold elapsed");
                changed = true;
            } else if self.rollout.step_verdict == Some(Verdict::Pass) {
                self.rollout.advance(now, "hold elapsed, analysis passed");
                changed = true;
            }
        }
        if self.rollout.phase == Phase::Promoted
            && !self.protecting(now)
            && (self.next_eval.is_some() || self.tripwire.is_some())
        {
            self.next_eval = None;
            self.rollout.event(
                "analysis",
                "post-promotion watch finished: the promotion stands".into(),
            );
            changed = true;
        }
        self.publish(changed);
    }

    /// One evaluation of the gates; true when it rolled the rollout back.
    fn evaluate(&mut self, now: Instant) -> bool {
        let Some(a) = self.config.rollout.analysis.clone() else {
            return false;
        };
        let (Some(candidate), Some(stable)) = (
            self.rollout
                .plan
                .candidate
                .as_ref()
                .and_then(|c| self.backends.get(c)),
            self.backends.get(&self.rollout.plan.stable),
        ) else {
            return false;
        };
        let span = a.window.0.min(since(now, self.rollout.started));
        let c = candidate.window.summary(now, span);
        let s = stable.window.summary(now, span);
        let result = analysis::evaluate(
            &a.gates,
            a.min_samples,
            &c,
            &s,
            analysis::Scope {
                mirroring: self.rollout.mirror() > 0.0,
                calibrating: self.config.shadow.calibrate.is_some(),
                absolute_only: self.rollout.phase == Phase::Promoted,
            },
        );
        for g in &result.gates {
            metrics::gate(g.gate.as_str(), g.value, g.threshold);
        }
        metrics::evaluation(result.verdict.as_str());
        let verdict = result.verdict;
        match verdict {
            Verdict::Fail => self.rollout.failures += 1,
            Verdict::Pass => self.rollout.failures = 0,
            Verdict::Inconclusive => {}
        }
        let failing = result.failing();
        self.rollout.step_verdict = Some(verdict);
        self.rollout.last_analysis = Some(result);
        if verdict == Verdict::Fail && self.rollout.failures >= a.failure_limit {
            let reason = format!(
                "analysis failed {} time{} in a row: {failing}",
                self.rollout.failures,
                if self.rollout.failures == 1 { "" } else { "s" }
            );
            if self.rollout.rollback(reason, Trigger::Auto).is_ok() {
                metrics::rollback(Trigger::Auto.as_str());
                return true;
            }
        }
        false
    }

    /// Builds and stores the next snapshot, then the status; persists the state when asked.
    fn publish(&mut self, persist: bool) {
        let now = Instant::now();
        self.tripwire = arm(
            &self.config,
            &self.rollout,
            now,
            self.tripwire.as_ref(),
            self.rollout_id,
            &self.trip_tx,
        );
        let next = self
            .builder
            .build(self.generation, routing(&self.rollout, &self.tripwire));
        self.published.snapshot.store(Arc::new(next));
        self.report(now, persist);
    }

    /// Publishes the status and the rollout metrics; persists the state when asked.
    fn report(&self, now: Instant, persist: bool) {
        let r = &self.rollout;
        self.published.status.store(Arc::new(self.status(now)));
        metrics::rollout(
            r.phase.as_str(),
            &Phase::ALL,
            r.step,
            r.weight(),
            r.mirror(),
            self.generation,
        );
        if persist {
            if let Some(path) = &self.config.state.path {
                let p = Persisted::of(DEFAULT_ROUTE, r, now);
                if let Err(e) = persist::save(path, &p) {
                    tracing::error!(path = %path.display(), error = %e, "cannot persist the rollout state");
                }
            }
        }
    }

    fn status(&self, now: Instant) -> Status {
        let r = &self.rollout;
        let hold = r.current().and_then(|s| s.hold);
        let in_step = matches!(r.phase, Phase::Progressing | Phase::Paused);
        let hold_remaining_s = match hold {
            Some(Hold::For(d)) if in_step => {
                let at = r.paused_at.unwrap_or(now);
                Some(d.0.saturating_sub(since(at, r.step_started)).as_secs_f64())
            }
            _ => None,
        };
        let analysis = self.config.rollout.analysis.as_ref();
        Status {
            phase: r.phase.as_str().into(),
            strategy: r.plan.strategy.as_str().into(),
            route: DEFAULT_ROUTE.into(),
            stable: r.plan.stable.clone(),
            candidate: r.plan.candidate.clone(),
            step: r.step,
            steps: r.plan.steps.len(),
            weight: r.weight(),
            mirror: r.mirror(),
            reason: r.reason.clone(),
            hold_remaining_s,
            manual_hold: in_step && hold == Some(Hold::Manual),
            revision: persist::revision_hex(r.plan.revision),
            config: ConfigStatus {
                generation: self.generation,
                last_error: self.last_error.clone(),
                path: self.config_path.as_ref().map(|p| p.display().to_string()),
            },
            analysis: AnalysisStatus {
                enabled: analysis.is_some(),
                last: r.last_analysis.clone(),
                failures: r.failures,
                failure_limit: analysis.map_or(0, |a| a.failure_limit),
            },
            events: r.events.iter().cloned().collect(),
        }
    }
}

/// Restores the persisted state of `config`'s state file into `rollout` when it is of the
/// same revision, and says in an event what became of it.
fn restore(config: &Config, rollout: &mut Rollout, now: Instant) {
    let Some(path) = &config.state.path else {
        return;
    };
    let Some(saved) = persist::load(path) else {
        return;
    };
    let msg = if saved.restore_into(DEFAULT_ROUTE, rollout, now) {
        format!(
            "restored from {}: {} at step {}",
            path.display(),
            rollout.phase.as_str(),
            rollout.step
        )
    } else {
        format!(
            "state in {} is for another revision; starting at step 0",
            path.display()
        )
    };
    rollout.event("restored", msg);
}

/// The fast-rollback tripwire for the rollout as it is now: `None` when off or no longer
/// protecting; the `current` one while it still fits (same rollout, same threshold), so its
/// count of consecutive failures goes on.
fn arm(
    config: &Config,
    rollout: &Rollout,
    now: Instant,
    current: Option<&Arc<Tripwire>>,
    rollout_id: u64,
    trips: &mpsc::Sender<Trip>,
) -> Option<Arc<Tripwire>> {
    let f = config.rollout.fast_rollback.as_ref()?;
    if !protecting(config, rollout, now) {
        return None;
    }
    match current {
        Some(t) if t.rollout() == rollout_id && t.threshold() == f.consecutive_errors => {
            Some(t.clone())
        }
        _ => Some(Arc::new(Tripwire::new(
            f.consecutive_errors,
            rollout_id,
            trips.clone(),
        ))),
    }
}

/// What the rollout decides of the next snapshot.
fn routing(rollout: &Rollout, tripwire: &Option<Arc<Tripwire>>) -> Routing {
    Routing {
        weight: rollout.weight(),
        mirror: rollout.mirror(),
        tripwire: tripwire.clone(),
    }
}

/// How long after promotion the candidate stays watched (analysis and fast rollback).
fn after_promotion(config: &Config) -> std::time::Duration {
    config
        .rollout
        .analysis
        .as_ref()
        .map_or(DEFAULT_AFTER_PROMOTION, |a| a.after_promotion.0)
}

/// Whether a failing candidate is still rolled back: before promotion, and for
/// `after_promotion` after it (then the promotion stands and the old stable may go).
fn protecting(config: &Config, rollout: &Rollout, now: Instant) -> bool {
    match rollout.phase {
        Phase::Progressing | Phase::Paused => true,
        Phase::Promoted => rollout
            .promoted_at
            .is_some_and(|p| since(now, p) < after_promotion(config)),
        Phase::Idle | Phase::RolledBack => false,
    }
}

#[cfg(test)]
mod tests {
    use super::restart_only_changes;
    use crate::config::parse;

    #[test]
    fn settings_read_only_at_start_are_named_when_a_reload_changes_them() {
        let base = "listen: 127.0.0.1:8080\nadmin: { listen: 127.0.0.1:9901 }\nlimits: { header_timeout: 10s }\nbackends: { blue: { url: 'http://127.0.0.1:1' } }\nrollout: { stable: blue }\n";
        let old = parse(base).unwrap();
        let same_but_limits =
            parse(&base.replace("header_timeout: 10s", "header_timeout: 10s, max_body: 1MiB"))
                .unwrap();
        assert!(restart_only_changes(&old, &same_but_limits).is_empty());
        let moved = parse(&base.replace("127.0.0.1:8080", "127.0.0.1:8081").replace(
            "header_timeout: 10s",
            "header_timeout: 1m, idle_timeout: 2m",
        ))
        .unwrap();
        assert_eq!(
            restart_only_changes(&old, &moved),
            ["listen", "limits.header_timeout", "limits.idle_timeout"]
        );
    }
}
