//! A rollout controller running on its own, on paused time: the only place these tests
//! touch how the library builds a controller and where it publishes.

use std::sync::Arc;

use switchyard::config::Problems;
use switchyard::rollout::analysis::{GateOutcome, GateResult, Verdict};
use switchyard::rollout::controller::Controller;
use switchyard::rollout::controller::Published;
use switchyard::rollout::{Action, Control, ControlError, NotAllowed, Status};
use switchyard::snapshot::{Route, Snapshot};
use switchyard::telemetry::window::{ShadowOutcome, Window};
use switchyard::telemetry::Tripwire;
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Duration, Instant};

use crate::support::config::{step, TestConfig};

/// A running controller, stopped when dropped.
pub struct ControllerHarness {
    control: Control,
    published: Published,
    stop: watch::Sender<bool>,
    /// When the controller was built: the rollout's time zero.
    t0: Instant,
}

impl ControllerHarness {
    /// Builds the controller on `config` and runs it.
    pub fn start(config: &TestConfig) -> ControllerHarness {
        let t0 = Instant::now();
        let (controller, control) = Controller::new(config.parse(), None);
        let published = controller.published();
        let (stop, stop_rx) = watch::channel(false);
        // Detached: it ends by itself once `stop` flips, when the harness is dropped.
        tokio::spawn(controller.run(stop_rx));
        ControllerHarness {
            control,
            published,
            stop,
            t0,
        }
    }

    // --- what the controller published ---

    /// The status of the config's one route.
    pub fn status(&self) -> Arc<Status> {
        let statuses = self.published.status.load_full();
        statuses.unscoped().expect("one route").clone()
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.published.snapshot.load_full()
    }

    /// The config's one route, as the snapshot has it now.
    pub fn route(&self) -> Arc<Route> {
        self.snapshot().routes[0].clone()
    }

    /// The candidate's share of users, in basis points.
    pub fn weight_bp(&self) -> u32 {
        self.route().weight_bp
    }

    /// The share of stable-served requests mirrored to the candidate, in basis points.
    pub fn mirror_bp(&self) -> u32 {
        self.route().mirror_bp
    }

    /// The fast-rollback tripwire the data plane would report candidate answers to.
    pub fn tripwire(&self) -> Option<Arc<Tripwire>> {
        self.route().tripwire.clone()
    }

    /// How many more mirrored requests may start now.
    pub fn mirror_slots_available(&self) -> usize {
        self.route().shadow_slots.available_permits()
    }

    // --- what a test sends ---

    pub async fn send(&self, action: Action) -> Result<Arc<Status>, ControlError> {
        self.control.send(action).await
    }

    /// Reloads with `config`; the new generation, or the problems.
    pub async fn reload(&self, config: &TestConfig) -> Result<u64, Problems> {
        self.control.reload(Ok(config.parse())).await
    }

    /// Reports a config file that failed to load with `problems`.
    pub async fn reload_rejected(&self, problems: Problems) -> Result<u64, Problems> {
        self.control.reload(Err(problems)).await
    }

    // --- the clock ---

    /// How long ago the rollout started.
    pub fn elapsed(&self) -> Duration {
        Instant::now() - self.t0
    }

    /// Sleeps (on the paused clock) until `secs` after the rollout started.
    pub async fn until(&self, secs: f64) {
        sleep_until(self.t0 + Duration::from_secs_f64(secs)).await;
    }

    /// The status `secs` after the rollout started (sleeping until then on the paused clock).
    pub async fn status_at(&self, secs: f64) -> Arc<Status> {
        self.until(secs).await;
        self.status()
    }

    /// Asserts that everyone is back on the stable, mirroring off, after a rollback by
    /// `trigger` (`manual`, `auto` or `fast`) for a reason that says `why`; the status.
    pub fn assert_rolled_back(&self, trigger: &str, why: &str) -> Arc<Status> {
        let s = self.status();
        assert_eq!(s.phase, "rolled_back", "{:#?}", s.events);
        assert_eq!((s.weight, s.mirror), (0.0, 0.0));
        assert_eq!((self.weight_bp(), self.mirror_bp()), (0, 0));
        let reason = s.reason.as_deref().expect("a rollback has a reason");
        assert!(reason.contains(why), "{reason}");
        let last = s.events.last().unwrap();
        assert_eq!(last.kind, "rollback");
        assert!(last.message.contains(&format!("({trigger})")), "{last:?}");
        assert!(last.message.contains(reason), "{last:?}");
        s
    }

    /// The current instant's traffic recorder.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            snap: self.route(),
            now: Instant::now(),
            second: self.elapsed().as_secs(),
        }
    }

    /// Calls `each` once per simulated second (at the current instant), advancing the clock
    /// one second at a time, until `secs` after the rollout started.
    pub async fn drive_until(&self, secs: f64, mut each: impl FnMut(&Traffic)) {
        let end = self.t0 + Duration::from_secs_f64(secs);
        while Instant::now() + Duration::from_secs(1) <= end {
            each(&self.traffic());
            sleep(Duration::from_secs(1)).await;
        }
        sleep_until(end).await;
    }
}

impl Drop for ControllerHarness {
    fn drop(&mut self) {
        // The task may already have ended (a test that panicked after a stop): nothing to do.
        let _ = self.stop.send(true);
    }
}

/// Lets the controller handle what was sent to it without moving the clock by more than a millisecond.
pub async fn settle() {
    sleep(Duration::from_millis(1)).await;
}

/// Samples recorded at one instant into the backends' windows, as the data plane would.
pub struct Traffic {
    snap: Arc<Route>,
    now: Instant,
    second: u64,
}

impl Traffic {
    /// Whole seconds since the rollout started.
    pub fn second(&self) -> u64 {
        self.second
    }

    /// Whether the current step mirrors anything.
    pub fn mirroring(&self) -> bool {
        self.snap.mirror_bp > 0
    }

    fn candidate_window(&self) -> &Window {
        let c = self.snap.candidate.as_ref();
        &c.expect("a candidate is configured").window
    }

    /// `n` candidate requests: `errors` of them errors, all taking `latency_ms`.
    pub fn candidate(&self, n: u32, errors: u32, latency_ms: u64) {
        let latency = Duration::from_millis(latency_ms);
        let window = self.candidate_window();
        (0..n).for_each(|i| window.record(self.now, latency, i < errors));
    }

    /// `n` stable requests, all fine, taking `latency_ms`.
    pub fn stable(&self, n: u32, latency_ms: u64) {
        let latency = Duration::from_millis(latency_ms);
        let window = &self.snap.stable.window;
        (0..n).for_each(|_| window.record(self.now, latency, false));
    }

    /// User requests the split sent: `candidate` to the candidate, `stable` to the stable
    /// (what `sample_ratio` reads; the windows are recorded apart).
    pub fn served(&self, candidate: u32, stable: u32) {
        let c = self
            .snap
            .candidate
            .as_ref()
            .expect("a candidate is configured");
        (0..candidate).for_each(|_| c.count_served());
        (0..stable).for_each(|_| self.snap.stable.count_served());
    }

    /// `n` shadow comparisons on the candidate, `agree` of them agreeing.
    pub fn shadow(&self, n: u32, agree: u32) {
        let window = self.candidate_window();
        for i in 0..n {
            let outcome = if i < agree {
                ShadowOutcome::Agree
            } else {
                ShadowOutcome::Disagree
            };
            window.record_shadow(self.now, outcome);
        }
    }
}

// === reading a status ===

/// The kinds of the status's events, oldest first.
pub fn kinds(status: &Status) -> Vec<&str> {
    status.events.iter().map(|e| e.kind.as_str()).collect()
}

/// The last evaluation's result for gate `name`.
pub fn gate<'a>(status: &'a Status, name: &str) -> &'a GateResult {
    let last = status
        .analysis
        .last
        .as_ref()
        .expect("an evaluation has happened");
    last.gates
        .iter()
        .find(|g| g.gate == name)
        .unwrap_or_else(|| panic!("gate {name} in {:?}", last.gates))
}

/// Asserts the outcome of each of `gates` in the last evaluation; `case` names the test case.
pub fn assert_outcomes(status: &Status, gates: &[(&str, GateOutcome)], case: &str) {
    for (name, outcome) in gates {
        assert_eq!(gate(status, name).outcome, *outcome, "{case}: {name}");
    }
}

/// The last evaluation's verdict.
pub fn verdict(status: &Status) -> Verdict {
    status
        .analysis
        .last
        .as_ref()
        .expect("an evaluation has happened")
        .verdict
}

/// Asserts that `result` is the 409 of the phase table for `action` in `phase`.
pub fn assert_not_allowed(result: Result<Arc<Status>, ControlError>, action: &str, phase: &str) {
    match result {
        Err(ControlError::NotAllowed(NotAllowed {
            action: a,
            phase: p,
        })) => {
            assert_eq!((a, p), (action, phase));
        }
        Err(e) => panic!("{action} in {phase}: expected NotAllowed, got {e}"),
        Ok(s) => panic!(
            "{action} in {phase}: expected NotAllowed, got phase {}",
            s.phase
        ),
    }
}

// === configs more than one topic uses ===

/// 10 % and 30 % on 10 s holds, then 60 % until a promote, then 100 %: at 25 s the
/// rollout waits at step 2.
pub fn timed_then_manual() -> TestConfig {
    TestConfig::new().steps([
        step(10.0).hold("10s"),
        step(30.0).hold("10s"),
        step(60.0).manual(),
        step(100.0),
    ])
}
