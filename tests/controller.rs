//! The rollout controller on paused tokio time: steps and holds, controls and the phase
//! table, analysis gates, automatic and fast rollback, reloads and persisted state.
//!
//! No network: samples are recorded straight into the backends' windows, as the data
//! plane would, while the clock is advanced (it never sleeps for real).

use std::sync::Arc;

use switchyard::config::{self, Config, Problem, Problems};
use switchyard::rollout::analysis::{GateOutcome, GateResult, Verdict};
use switchyard::rollout::controller::Controller;
use switchyard::rollout::controller::Published;
use switchyard::rollout::{Action, Control, ControlError, NotAllowed, Status};
use switchyard::snapshot::Snapshot;
use switchyard::telemetry::window::ShadowOutcome;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, Duration, Instant};

// === harness ===

/// A config with backends `blue` (stable) and `green` (candidate); `rollout` is the rest
/// of the `rollout:` block (indented by two spaces), `extra` more top-level YAML.
fn yaml(rollout: &str, extra: &str) -> String {
    format!(
        "backends:\n  blue: {{ url: 'http://127.0.0.1:18001' }}\n  green: {{ url: 'http://127.0.0.1:18002' }}\n\
         rollout:\n  stable: blue\n  candidate: green\n{rollout}\n{extra}\n"
    )
}

/// A config with no state file.
fn cfg(rollout: &str) -> Config {
    cfg_with(rollout, "state: { path: null }")
}

fn cfg_with(rollout: &str, extra: &str) -> Config {
    let text = yaml(rollout, extra);
    config::parse(&text).unwrap_or_else(|e| panic!("test config is invalid:\n{e}\n---\n{text}"))
}

/// A running controller.
struct Harness {
    control: Control,
    published: Published,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// When the controller was built: the rollout's time zero.
    t0: Instant,
}

fn start(config: Config) -> Harness {
    let t0 = Instant::now();
    let (controller, control) = Controller::new(config, None);
    let published = controller.published();
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(controller.run(stop_rx));
    Harness {
        control,
        published,
        stop,
        task,
        t0,
    }
}

impl Harness {
    fn status(&self) -> Arc<Status> {
        self.published.status.load_full()
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.published.snapshot.load_full()
    }

    /// Sleeps (on the paused clock) until `secs` after the rollout started.
    async fn until(&self, secs: f64) {
        sleep_until(self.t0 + Duration::from_secs_f64(secs)).await;
    }

    /// Calls `each` once per simulated second (at the current instant), advancing the clock
    /// one second at a time, until `secs` after the rollout started.
    async fn drive_until(&self, secs: f64, mut each: impl FnMut(&Snapshot, Instant)) {
        let end = self.t0 + Duration::from_secs_f64(secs);
        while Instant::now() + Duration::from_secs(1) <= end {
            let snap = self.snapshot();
            each(&snap, Instant::now());
            sleep(Duration::from_secs(1)).await;
        }
        sleep_until(end).await;
    }

    async fn send(&self, action: Action) -> Result<Arc<Status>, ControlError> {
        self.control.send(action).await
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
    }
}

/// Lets the controller handle what was sent to it without moving the clock by more than a millisecond.
async fn settle() {
    sleep(Duration::from_millis(1)).await;
}

/// Records `n` candidate requests at `now`: `errors` of them errors, all with `latency`.
fn candidate(snap: &Snapshot, now: Instant, n: u32, errors: u32, latency_ms: u64) {
    let c = snap.candidate.as_ref().expect("a candidate is configured");
    for i in 0..n {
        c.window
            .record(now, Duration::from_millis(latency_ms), i < errors);
    }
}

/// Records `n` stable requests at `now`, all fine, with `latency`.
fn stable(snap: &Snapshot, now: Instant, n: u32, latency_ms: u64) {
    for _ in 0..n {
        snap.stable
            .window
            .record(now, Duration::from_millis(latency_ms), false);
    }
}

/// Records `n` shadow comparisons on the candidate, `agree` of them agreeing.
fn shadow(snap: &Snapshot, now: Instant, n: u32, agree: u32) {
    let c = snap.candidate.as_ref().expect("a candidate is configured");
    for i in 0..n {
        let outcome = if i < agree {
            ShadowOutcome::Agree
        } else {
            ShadowOutcome::Disagree
        };
        c.window.record_shadow(now, outcome);
    }
}

fn kinds(status: &Status) -> Vec<&str> {
    status.events.iter().map(|e| e.kind.as_str()).collect()
}

fn gate<'a>(status: &'a Status, name: &str) -> &'a GateResult {
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

fn verdict(status: &Status) -> Verdict {
    status
        .analysis
        .last
        .as_ref()
        .expect("an evaluation has happened")
        .verdict
}

/// Asserts that `result` is the 409 of the phase table for `action` in `phase`.
fn assert_not_allowed(result: Result<Arc<Status>, ControlError>, action: &str, phase: &str) {
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

const ANALYSIS: &str = "  analysis:
    interval: 10s
    window: 30s
    min_samples: 20
    failure_limit: 3";

// === steps and holds, no analysis ===

#[tokio::test(start_paused = true)]
async fn canary_walks_its_steps_on_hold_timers_to_promotion() {
    let h = start(cfg("  steps:
    - { weight: 0, mirror: 100, hold: 10s }
    - { weight: 5, hold: 10s }
    - { weight: 25, hold: 20s }
    - { weight: 50, hold: 30s }
    - { weight: 100 }"));

    // (time, step, weight, mirror): steps start at 0, 10, 20, 40; promotion at 70.
    let expected = [
        (5.0, 0, 0.0, 100.0),
        (9.5, 0, 0.0, 100.0),
        (10.5, 1, 5.0, 0.0),
        (19.5, 1, 5.0, 0.0),
        (20.5, 2, 25.0, 0.0),
        (39.5, 2, 25.0, 0.0),
        (40.5, 3, 50.0, 0.0),
        (69.5, 3, 50.0, 0.0),
    ];
    for (t, step, weight, mirror) in expected {
        h.until(t).await;
        let s = h.status();
        assert_eq!(s.phase, "progressing", "at {t}s");
        assert_eq!((s.step, s.steps), (step, 5), "at {t}s");
        assert_eq!(s.weight, weight, "at {t}s");
        assert_eq!(s.mirror, mirror, "at {t}s");
        let snap = h.snapshot();
        assert_eq!(snap.weight_bp, (weight * 100.0) as u32, "at {t}s");
        assert_eq!(snap.mirror_bp, (mirror * 100.0) as u32, "at {t}s");
    }

    h.until(70.5).await;
    let s = h.status();
    assert_eq!(s.phase, "promoted");
    assert_eq!(s.weight, 100.0);
    assert_eq!(s.mirror, 0.0);
    assert_eq!(h.snapshot().weight_bp, 10_000);
    assert_eq!(h.snapshot().mirror_bp, 0);
    assert_eq!(
        kinds(&s),
        ["start", "step", "step", "step", "step", "promoted"]
    );
    let steps: Vec<_> = s
        .events
        .iter()
        .filter(|e| e.kind == "step")
        .map(|e| e.message.as_str())
        .collect();
    for (msg, (n, w)) in steps.iter().zip([(1, 5), (2, 25), (3, 50), (4, 100)]) {
        assert!(msg.starts_with(&format!("step {n} ")), "{msg}");
        assert!(msg.contains(&format!("weight {w}%")), "{msg}");
    }

    // Promoted stays promoted.
    h.until(3600.0).await;
    assert_eq!(h.status().phase, "promoted");
    assert_eq!(h.status().events.len(), 6);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn manual_hold_waits_for_promote() {
    let h = start(cfg("  steps:
    - { weight: 10, hold: manual }
    - { weight: 20, hold: manual }
    - { weight: 50, hold: manual }
    - { weight: 100 }"));

    h.until(24.0 * 3600.0).await;
    let s = h.status();
    assert_eq!(
        (s.phase.as_str(), s.step, s.weight),
        ("progressing", 0, 10.0)
    );
    assert!(s.manual_hold);
    assert_eq!(s.hold_remaining_s, None);
    assert_eq!(kinds(&s), ["start"]);

    let s = h.send(Action::Promote { full: false }).await.unwrap();
    assert_eq!(
        (s.phase.as_str(), s.step, s.weight),
        ("progressing", 1, 20.0)
    );
    assert_eq!(h.snapshot().weight_bp, 2_000);
    assert_eq!(kinds(&s), ["start", "step"]);
    assert!(
        s.events[1].message.contains("manual promote"),
        "{:?}",
        s.events[1]
    );

    // The next manual step waits again.
    h.until(48.0 * 3600.0).await;
    assert_eq!(h.status().step, 1);

    let s = h.send(Action::Promote { full: true }).await.unwrap();
    assert_eq!((s.phase.as_str(), s.weight), ("promoted", 100.0));
    assert!(!s.manual_hold);
    assert_eq!(h.snapshot().weight_bp, 10_000);
    assert_eq!(kinds(&s), ["start", "step", "promoted"]);
    assert!(s.events[2].message.contains("--full"), "{:?}", s.events[2]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn manual_hold_on_the_last_step_waits_whatever_its_weight() {
    let h = start(cfg("  steps:
    - { weight: 50, hold: 10s }
    - { weight: 100, hold: manual }"));
    h.until(3600.0).await;
    let s = h.status();
    assert_eq!(
        (s.phase.as_str(), s.step, s.weight),
        ("progressing", 1, 100.0)
    );
    let s = h.send(Action::Promote { full: false }).await.unwrap();
    assert_eq!(s.phase, "promoted");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn pause_freezes_the_split_and_the_hold() {
    let h = start(cfg("  steps:
    - { weight: 10, hold: 30s }
    - { weight: 40, hold: 30s }
    - { weight: 100 }"));

    h.until(10.0).await;
    let s = h
        .send(Action::Pause {
            reason: Some("looking at dashboards".into()),
        })
        .await
        .unwrap();
    assert_eq!((s.phase.as_str(), s.step, s.weight), ("paused", 0, 10.0));
    assert_eq!(s.reason.as_deref(), Some("looking at dashboards"));
    assert_eq!(s.hold_remaining_s, Some(20.0));

    // Long past the hold: nothing moves, the split stays.
    h.until(600.0).await;
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.step, s.weight), ("paused", 0, 10.0));
    assert_eq!(s.hold_remaining_s, Some(20.0));
    assert_eq!(h.snapshot().weight_bp, 1_000);
    assert_eq!(kinds(&s), ["start", "paused"]);

    // Resumed at 600 s with 20 s of the hold left: the step passes at 620 s, not before.
    let s = h.send(Action::Resume).await.unwrap();
    assert_eq!((s.phase.as_str(), s.step), ("progressing", 0));
    h.until(619.5).await;
    assert_eq!(h.status().step, 0);
    h.until(620.5).await;
    let s = h.status();
    assert_eq!(
        (s.phase.as_str(), s.step, s.weight),
        ("progressing", 1, 40.0)
    );
    assert_eq!(h.snapshot().weight_bp, 4_000);
    h.until(650.5).await;
    let s = h.status();
    assert_eq!(s.phase, "promoted");
    assert_eq!(
        kinds(&s),
        ["start", "paused", "resumed", "step", "step", "promoted"]
    );
    h.stop().await;
}

// === the phase table ===

#[tokio::test(start_paused = true)]
async fn controls_outside_their_phases_are_refused_and_change_nothing() {
    let h = start(cfg("  steps:
    - { weight: 10, hold: manual }
    - { weight: 100 }"));

    // Refuses `action` in the current phase and checks nothing changed.
    async fn refused(h: &Harness, action: Action, name: &str, phase: &str) {
        let before = h.status();
        let bp = h.snapshot().weight_bp;
        assert_eq!(before.phase, phase);
        assert_not_allowed(h.send(action).await, name, phase);
        let after = h.status();
        assert_eq!(after.phase, before.phase);
        assert_eq!(after.step, before.step);
        assert_eq!(after.weight, before.weight);
        assert_eq!(after.reason, before.reason);
        assert_eq!(after.events, before.events);
        assert_eq!(h.snapshot().weight_bp, bp);
    }

    // progressing: resume and retry are refused.
    refused(&h, Action::Resume, "resume", "progressing").await;
    refused(&h, Action::Retry, "retry", "progressing").await;

    // paused: pause and retry are refused.
    h.send(Action::Pause { reason: None }).await.unwrap();
    refused(&h, Action::Pause { reason: None }, "pause", "paused").await;
    refused(&h, Action::Retry, "retry", "paused").await;
    h.send(Action::Resume).await.unwrap();

    // promoted: promote, pause, resume, retry are refused.
    h.send(Action::Promote { full: true }).await.unwrap();
    refused(&h, Action::Promote { full: false }, "promote", "promoted").await;
    refused(&h, Action::Promote { full: true }, "promote", "promoted").await;
    refused(&h, Action::Pause { reason: None }, "pause", "promoted").await;
    refused(&h, Action::Resume, "resume", "promoted").await;
    refused(&h, Action::Retry, "retry", "promoted").await;

    // rolled_back: everything but retry is refused.
    h.send(Action::Rollback { reason: None }).await.unwrap();
    refused(
        &h,
        Action::Promote { full: false },
        "promote",
        "rolled_back",
    )
    .await;
    refused(&h, Action::Pause { reason: None }, "pause", "rolled_back").await;
    refused(&h, Action::Resume, "resume", "rolled_back").await;
    refused(
        &h,
        Action::Rollback {
            reason: Some("again".into()),
        },
        "rollback",
        "rolled_back",
    )
    .await;
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn without_a_candidate_the_phase_is_idle_and_controls_are_refused() {
    let text = "backends:\n  blue: { url: 'http://127.0.0.1:18001' }\nrollout:\n  stable: blue\nstate: { path: null }\n";
    let h = start(config::parse(text).unwrap());
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.weight), ("idle", 0.0));
    assert_eq!(h.snapshot().weight_bp, 0);
    assert!(h.snapshot().candidate.is_none());
    assert_not_allowed(
        h.send(Action::Promote { full: true }).await,
        "promote",
        "idle",
    );
    assert_not_allowed(
        h.send(Action::Pause { reason: None }).await,
        "pause",
        "idle",
    );
    assert_not_allowed(h.send(Action::Resume).await, "resume", "idle");
    assert_not_allowed(
        h.send(Action::Rollback { reason: None }).await,
        "rollback",
        "idle",
    );
    assert_not_allowed(h.send(Action::Retry).await, "retry", "idle");
    assert_eq!(h.status().phase, "idle");
    h.stop().await;
}

// === rollback and retry ===

#[tokio::test(start_paused = true)]
async fn rollback_sends_everything_to_stable_and_retry_starts_over() {
    let h = start(cfg("  steps:
    - { weight: 0, mirror: 100, hold: 10s }
    - { weight: 30, mirror: 50, hold: 10s }
    - { weight: 100 }"));
    h.until(10.5).await;
    let s = h.status();
    assert_eq!((s.step, s.weight, s.mirror), (1, 30.0, 50.0));

    let s = h
        .send(Action::Rollback {
            reason: Some("bad answers in the demo".into()),
        })
        .await
        .unwrap();
    assert_eq!(s.phase, "rolled_back");
    assert_eq!((s.weight, s.mirror), (0.0, 0.0));
    assert_eq!(s.reason.as_deref(), Some("bad answers in the demo"));
    let snap = h.snapshot();
    assert_eq!((snap.weight_bp, snap.mirror_bp), (0, 0));
    let last = s.events.last().unwrap();
    assert_eq!(last.kind, "rollback");
    assert!(last.message.contains("bad answers in the demo"), "{last:?}");
    assert!(last.message.contains("manual"), "{last:?}");

    // Rolled back stays rolled back, reason kept.
    h.until(3600.0).await;
    let s = h.status();
    assert_eq!(s.phase, "rolled_back");
    assert_eq!(s.reason.as_deref(), Some("bad answers in the demo"));
    assert_eq!(h.snapshot().weight_bp, 0);

    let s = h.send(Action::Retry).await.unwrap();
    assert_eq!((s.phase.as_str(), s.step), ("progressing", 0));
    assert_eq!((s.weight, s.mirror), (0.0, 100.0));
    assert_eq!(s.reason, None);
    assert_eq!(s.events.last().unwrap().kind, "retry");
    assert_eq!(h.snapshot().mirror_bp, 10_000);

    // The retried rollout walks its holds again from the retry on.
    h.until(3610.5).await;
    assert_eq!(h.status().step, 1);
    h.until(3620.5).await;
    assert_eq!(h.status().phase, "promoted");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn rollback_without_a_reason_says_manual_rollback() {
    let h = start(cfg("  steps:
    - { weight: 10, hold: manual }"));
    let s = h.send(Action::Rollback { reason: None }).await.unwrap();
    assert_eq!(s.phase, "rolled_back");
    assert_eq!(s.reason.as_deref(), Some("manual rollback"));
    h.stop().await;
}

// === analysis ===

#[tokio::test(start_paused = true)]
async fn too_little_traffic_is_inconclusive_and_holds_forever() {
    let h = start(cfg(&format!(
        "  steps:
    - {{ weight: 10, hold: 20s }}
    - {{ weight: 100 }}
{ANALYSIS}
    gates:
      error_rate: {{ max: 0.01 }}
      latency_p99: {{ max: 300ms, max_ratio: 1.5 }}"
    )));

    // Under min_samples (20 in a 30 s window), every candidate request failing and slow.
    h.until(0.5).await;
    h.drive_until(600.5, |snap, now| {
        if (now - h.t0).as_secs() % 3 == 0 {
            candidate(snap, now, 1, 1, 900);
            stable(snap, now, 5, 20);
        }
    })
    .await;

    let s = h.status();
    assert_eq!(
        (s.phase.as_str(), s.step, s.weight),
        ("progressing", 0, 10.0)
    );
    assert_eq!(s.analysis.failures, 0);
    assert_eq!(kinds(&s), ["start"]);
    let last = s.analysis.last.as_ref().unwrap();
    assert_eq!(last.verdict, Verdict::Inconclusive);
    assert!(last.samples < 20 && last.samples > 0, "{last:?}");
    assert_eq!(last.min_samples, 20);
    let names: Vec<_> = last.gates.iter().map(|g| g.gate).collect();
    assert_eq!(names, ["error_rate", "latency_p99", "latency_p99_ratio"]);
    for g in &last.gates {
        assert_eq!(g.outcome, GateOutcome::Inconclusive, "{g:?}");
        assert_eq!(g.bound, "max");
        assert!(g.detail.contains("20 needed"), "{g:?}");
    }
    // The figures and thresholds are shown all the same.
    let e = gate(&s, "error_rate");
    assert_eq!((e.value, e.threshold), (Some(1.0), 0.01));
    let l = gate(&s, "latency_p99");
    assert_eq!(l.threshold, 0.3);
    let p99 = l.value.unwrap();
    assert!((p99 - 0.9).abs() < 0.02, "{p99}");
    assert_eq!(gate(&s, "latency_p99_ratio").threshold, 1.5);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn healthy_candidate_with_analysis_walks_to_promotion() {
    let h = start(cfg(&format!(
        "  steps:
    - {{ weight: 0, mirror: 100, hold: 20s }}
    - {{ weight: 10, hold: 20s }}
    - {{ weight: 50, hold: 20s }}
    - {{ weight: 100 }}
{ANALYSIS}
    gates:
      error_rate: {{ max: 0.01 }}
      latency_p99: {{ max: 300ms, max_ratio: 1.5 }}
      shadow_agreement: {{ min: 0.95 }}"
    )));

    h.until(0.5).await;
    let mut seen = Vec::new();
    for _ in 0..120 {
        let snap = h.snapshot();
        let now = Instant::now();
        candidate(&snap, now, 10, 0, 22);
        stable(&snap, now, 10, 20);
        if snap.mirror_bp > 0 {
            shadow(&snap, now, 10, 10);
        }
        let s = h.status();
        if seen.last() != Some(&(s.phase.clone(), s.step)) {
            seen.push((s.phase.clone(), s.step));
        }
        if s.phase == "promoted" {
            break;
        }
        sleep(Duration::from_secs(1)).await;
    }
    let s = h.status();
    assert_eq!(s.phase, "promoted", "{:#?}", s.events);
    assert_eq!(s.weight, 100.0);
    assert_eq!(h.snapshot().weight_bp, 10_000);
    assert_eq!(
        seen,
        [
            ("progressing".to_string(), 0),
            ("progressing".to_string(), 1),
            ("progressing".to_string(), 2),
            ("progressing".to_string(), 3),
            ("promoted".to_string(), 3),
        ]
    );
    assert_eq!(
        kinds(&s)[..5],
        ["start", "step", "step", "step", "promoted"]
    );
    assert!(
        s.events[1].message.contains("analysis passed"),
        "{:?}",
        s.events[1]
    );
    assert_eq!(s.analysis.failures, 0);
    assert_eq!(verdict(&s), Verdict::Pass);
    // Holds of 20 s with evaluations every 10 s: steps at 20, 40, 60, promotion at the next pass.
    assert!(
        Instant::now() - h.t0 <= Duration::from_secs(71),
        "{:?}",
        Instant::now() - h.t0
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn erroring_candidate_is_rolled_back_after_failure_limit_evaluations() {
    let h = start(cfg(&format!(
        "  steps:
    - {{ weight: 20, hold: 10m }}
    - {{ weight: 100 }}
{ANALYSIS}
    gates:
      error_rate: {{ max: 0.01 }}"
    )));

    h.until(0.5).await;
    // 20 % errors; evaluations at 10, 20, 30 s.
    let errors = |snap: &Snapshot, now: Instant| candidate(snap, now, 10, 2, 20);
    h.drive_until(10.5, errors).await;
    let s = h.status();
    assert_eq!(s.phase, "progressing");
    assert_eq!(s.analysis.failures, 1);
    assert_eq!(verdict(&s), Verdict::Fail);
    let e = gate(&s, "error_rate");
    assert_eq!(e.outcome, GateOutcome::Fail);
    assert_eq!(e.threshold, 0.01);
    assert!((e.value.unwrap() - 0.2).abs() < 1e-9, "{e:?}");

    h.drive_until(20.5, errors).await;
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.analysis.failures), ("progressing", 2));
    assert_eq!(h.snapshot().weight_bp, 2_000);

    h.drive_until(30.5, errors).await;
    let s = h.status();
    assert_eq!(s.phase, "rolled_back");
    assert_eq!((s.weight, s.mirror), (0.0, 0.0));
    assert_eq!(h.snapshot().weight_bp, 0);
    assert_eq!(s.analysis.failures, 3);
    let reason = s.reason.as_deref().unwrap();
    assert!(reason.contains("3 times in a row"), "{reason}");
    assert!(reason.contains("error rate 20.00%"), "{reason}");
    assert!(reason.contains("max 1.00%"), "{reason}");
    let last = s.events.last().unwrap();
    assert_eq!(last.kind, "rollback");
    assert!(last.message.contains("(auto)"), "{last:?}");
    assert!(last.message.contains("error rate"), "{last:?}");

    // After the rollback, analysis stops: the verdict stays as it was.
    h.drive_until(120.0, errors).await;
    let after = h.status();
    assert_eq!(after.phase, "rolled_back");
    assert_eq!(after.analysis.last, s.analysis.last);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_pass_in_between_resets_the_failure_count() {
    let h = start(cfg("  steps:
    - { weight: 20, hold: 10m }
  analysis:
    interval: 10s
    window: 10s
    min_samples: 20
    failure_limit: 3
    gates:
      error_rate: { max: 0.05 }"));
    h.until(0.5).await;
    let failing = |snap: &Snapshot, now: Instant| candidate(snap, now, 10, 1, 20);
    let healthy = |snap: &Snapshot, now: Instant| candidate(snap, now, 10, 0, 20);
    // Fail at 10 and 20 s (10 % errors), pass at 30 s, fail at 40 and 50 s: never 3 in a row.
    h.drive_until(20.5, failing).await;
    assert_eq!(h.status().analysis.failures, 2);
    h.drive_until(30.5, healthy).await;
    let s = h.status();
    assert_eq!(verdict(&s), Verdict::Pass);
    assert_eq!((s.phase.as_str(), s.analysis.failures), ("progressing", 0));
    h.drive_until(50.5, failing).await;
    let s = h.status();
    assert_eq!(verdict(&s), Verdict::Fail);
    assert_eq!((s.phase.as_str(), s.analysis.failures), ("progressing", 2));
    assert_eq!(s.analysis.failure_limit, 3);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn latency_regression_relative_to_stable_rolls_back() {
    let h = start(cfg(&format!(
        "  steps:
    - {{ weight: 20, hold: 10m }}
{ANALYSIS}
    gates:
      latency_p99: {{ max: 300ms, max_ratio: 1.5 }}"
    )));
    h.until(0.5).await;
    // Candidate 60 ms, stable 20 ms: 3× stable, under the absolute 300 ms.
    let slow = |snap: &Snapshot, now: Instant| {
        candidate(snap, now, 10, 0, 60);
        stable(snap, now, 40, 20);
    };
    h.drive_until(10.5, slow).await;
    let s = h.status();
    assert_eq!(gate(&s, "latency_p99").outcome, GateOutcome::Pass);
    let ratio = gate(&s, "latency_p99_ratio");
    assert_eq!(ratio.outcome, GateOutcome::Fail);
    assert_eq!(ratio.threshold, 1.5);
    let r = ratio.value.unwrap();
    assert!((r - 3.0).abs() < 0.1, "{ratio:?}");

    h.drive_until(30.5, slow).await;
    let s = h.status();
    assert_eq!(s.phase, "rolled_back");
    assert_eq!(h.snapshot().weight_bp, 0);
    let reason = s.reason.as_deref().unwrap();
    assert!(reason.contains("stable's"), "{reason}");
    assert!(reason.contains("max 1.5×"), "{reason}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn ratio_gate_is_skipped_when_the_stable_served_nothing() {
    let h = start(cfg(&format!(
        "  steps:
    - {{ weight: 100, hold: 15s }}
{ANALYSIS}
    gates:
      latency_p99: {{ max: 300ms, max_ratio: 1.5 }}"
    )));
    h.until(0.5).await;
    // Only the candidate serves (weight 100); it is fast in absolute terms.
    h.drive_until(10.5, |snap, now| candidate(snap, now, 10, 0, 60))
        .await;
    let s = h.status();
    let ratio = gate(&s, "latency_p99_ratio");
    assert_eq!(ratio.outcome, GateOutcome::Skipped, "{ratio:?}");
    assert_eq!(ratio.value, None);
    assert!(ratio.detail.contains("stable served nothing"), "{ratio:?}");
    assert_eq!(gate(&s, "latency_p99").outcome, GateOutcome::Pass);
    assert_eq!(verdict(&s), Verdict::Pass);
    assert_eq!(s.analysis.last.as_ref().unwrap().stable_samples, 0);
    // Skipped does not hold: the step passes at the first pass after its hold.
    h.drive_until(20.5, |snap, now| candidate(snap, now, 10, 0, 60))
        .await;
    assert_eq!(h.status().phase, "promoted");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn absolute_latency_still_applies_when_the_ratio_is_skipped() {
    let h = start(cfg(&format!(
        "  steps:
    - {{ weight: 100, hold: 10m }}
{ANALYSIS}
    gates:
      latency_p99: {{ max: 300ms, max_ratio: 1.5 }}"
    )));
    h.until(0.5).await;
    h.drive_until(30.5, |snap, now| candidate(snap, now, 10, 0, 500))
        .await;
    let s = h.status();
    assert_eq!(s.phase, "rolled_back");
    let reason = s.reason.as_deref().unwrap();
    assert!(reason.contains("max 300.0ms"), "{reason}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn shadow_agreement_is_skipped_without_mirroring() {
    let h = start(cfg(&format!(
        "  steps:
    - {{ weight: 10, mirror: 0, hold: 15s }}
    - {{ weight: 100 }}
{ANALYSIS}
    gates:
      error_rate: {{ max: 0.01 }}
      shadow_agreement: {{ min: 0.98 }}"
    )));
    h.until(0.5).await;
    // Even recorded disagreements do not count on a step that mirrors nothing.
    let traffic = |snap: &Snapshot, now: Instant| {
        candidate(snap, now, 10, 0, 20);
        shadow(snap, now, 10, 1);
    };
    h.drive_until(10.5, traffic).await;
    let s = h.status();
    let g = gate(&s, "shadow_agreement");
    assert_eq!(g.outcome, GateOutcome::Skipped, "{g:?}");
    assert_eq!(g.threshold, 0.98);
    assert_eq!(g.bound, "min");
    assert_eq!(verdict(&s), Verdict::Pass);
    h.drive_until(20.5, traffic).await;
    assert_eq!(h.status().phase, "promoted");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn low_shadow_agreement_on_a_mirror_step_rolls_back() {
    let h = start(cfg(&format!(
        "  steps:
    - {{ weight: 0, mirror: 100, hold: 10m }}
    - {{ weight: 100 }}
{ANALYSIS}
    gates:
      error_rate: {{ max: 0.01 }}
      shadow_agreement: {{ min: 0.98 }}"
    )));
    h.until(0.5).await;
    // Mirrored answers: healthy, but only 80 % agree with the stable's.
    let traffic = |snap: &Snapshot, now: Instant| {
        candidate(snap, now, 10, 0, 20);
        stable(snap, now, 10, 20);
        shadow(snap, now, 10, 8);
    };
    h.drive_until(10.5, traffic).await;
    let s = h.status();
    assert_eq!(gate(&s, "error_rate").outcome, GateOutcome::Pass);
    let g = gate(&s, "shadow_agreement");
    assert_eq!(g.outcome, GateOutcome::Fail, "{g:?}");
    assert!((g.value.unwrap() - 0.8).abs() < 1e-9, "{g:?}");
    assert_eq!(s.analysis.failures, 1);

    h.drive_until(30.5, traffic).await;
    let s = h.status();
    assert_eq!(s.phase, "rolled_back");
    assert_eq!((s.weight, s.mirror), (0.0, 0.0));
    assert_eq!(h.snapshot().mirror_bp, 0);
    let reason = s.reason.as_deref().unwrap();
    assert!(reason.contains("shadow agreement 80.00%"), "{reason}");
    h.stop().await;
}

// === blue-green ===

const BLUE_GREEN: &str = "  strategy: blue-green
  blue_green: { auto_promote_after: 30s }
  analysis:
    interval: 10s
    window: 30s
    min_samples: 20
    failure_limit: 3
    after_promotion: 2m
    gates:
      error_rate: { max: 0.01 }";

#[tokio::test(start_paused = true)]
async fn blue_green_promotes_after_its_hold_and_rolls_back_on_post_promotion_failure() {
    let h = start(cfg(BLUE_GREEN));
    let s = h.status();
    assert_eq!(s.strategy, "blue-green");
    assert_eq!((s.phase.as_str(), s.step, s.steps), ("progressing", 0, 1));
    assert_eq!(s.weight, 0.0);
    assert_eq!(h.snapshot().weight_bp, 0);

    // Healthy previews (override header) and mirrors: promoted at 30 s in one switch.
    h.until(0.5).await;
    let healthy = |snap: &Snapshot, now: Instant| candidate(snap, now, 5, 0, 20);
    h.drive_until(29.5, healthy).await;
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.weight), ("progressing", 0.0));
    assert_eq!(verdict(&s), Verdict::Pass);
    h.drive_until(30.5, healthy).await;
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.weight), ("promoted", 100.0));
    assert_eq!(h.snapshot().weight_bp, 10_000);
    assert_eq!(s.events.last().unwrap().kind, "promoted");

    // Errors after promotion, within after_promotion: rolled back to blue.
    h.drive_until(60.5, |snap, now| candidate(snap, now, 20, 10, 20))
        .await;
    let s = h.status();
    assert_eq!(s.phase, "rolled_back", "{:#?}", s.events);
    assert_eq!(s.weight, 0.0);
    assert_eq!(h.snapshot().weight_bp, 0);
    assert_eq!(h.snapshot().stable.name.as_ref(), "blue");
    assert!(
        s.reason.as_deref().unwrap().contains("error rate"),
        "{:?}",
        s.reason
    );
    assert_eq!(kinds(&s), ["start", "promoted", "rollback"]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn blue_green_promotion_stands_after_the_post_promotion_window() {
    let h = start(cfg(BLUE_GREEN));
    h.until(0.5).await;
    h.drive_until(30.5, |snap, now| candidate(snap, now, 5, 0, 20))
        .await;
    assert_eq!(h.status().phase, "promoted");
    // Past after_promotion (2 m) the gates stop: errors no longer roll back.
    h.drive_until(160.5, |snap, now| candidate(snap, now, 5, 0, 20))
        .await;
    let s = h.status();
    assert_eq!(s.events.last().unwrap().kind, "analysis");
    h.drive_until(300.5, |snap, now| candidate(snap, now, 20, 20, 20))
        .await;
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.weight), ("promoted", 100.0));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn blue_green_without_auto_promote_waits_for_promote() {
    let h = start(cfg("  strategy: blue-green"));
    h.until(3600.0).await;
    let s = h.status();
    assert_eq!(
        (s.phase.as_str(), s.step, s.steps, s.weight),
        ("progressing", 0, 1, 0.0)
    );
    assert!(s.manual_hold);
    let s = h.send(Action::Promote { full: false }).await.unwrap();
    assert_eq!((s.phase.as_str(), s.weight), ("promoted", 100.0));
    assert_eq!(h.snapshot().weight_bp, 10_000);
    // The old stable stays configured: rollback is one switch back.
    let s = h.send(Action::Rollback { reason: None }).await.unwrap();
    assert_eq!((s.phase.as_str(), s.weight), ("rolled_back", 0.0));
    assert_eq!(h.snapshot().weight_bp, 0);
    h.stop().await;
}

// === protection ===

#[tokio::test(start_paused = true)]
async fn pause_does_not_stop_automatic_rollback() {
    let h = start(cfg(&format!(
        "  steps:
    - {{ weight: 20, hold: 10s }}
    - {{ weight: 100 }}
{ANALYSIS}
    gates:
      error_rate: {{ max: 0.01 }}"
    )));
    h.until(0.5).await;
    let s = h.send(Action::Pause { reason: None }).await.unwrap();
    assert_eq!(s.phase, "paused");
    h.drive_until(30.5, |snap, now| candidate(snap, now, 10, 5, 20))
        .await;
    let s = h.status();
    assert_eq!(s.phase, "rolled_back");
    assert_eq!(h.snapshot().weight_bp, 0);
    assert!(
        s.reason.as_deref().unwrap().contains("error rate"),
        "{:?}",
        s.reason
    );
    assert_eq!(kinds(&s), ["start", "paused", "rollback"]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn paused_healthy_candidate_is_evaluated_but_does_not_advance() {
    let h = start(cfg(&format!(
        "  steps:
    - {{ weight: 20, hold: 10s }}
    - {{ weight: 100 }}
{ANALYSIS}
    gates:
      error_rate: {{ max: 0.01 }}"
    )));
    h.until(0.5).await;
    h.send(Action::Pause { reason: None }).await.unwrap();
    h.drive_until(60.5, |snap, now| candidate(snap, now, 10, 0, 20))
        .await;
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.step), ("paused", 0));
    assert_eq!(verdict(&s), Verdict::Pass);
    // Resumed with 9.5 s of hold left: step 1 at 70 s, which passes on its own first pass at 80 s.
    h.send(Action::Resume).await.unwrap();
    h.drive_until(69.5, |snap, now| candidate(snap, now, 10, 0, 20))
        .await;
    assert_eq!(h.status().step, 0);
    h.drive_until(70.5, |snap, now| candidate(snap, now, 10, 0, 20))
        .await;
    let s = h.status();
    assert_eq!(
        (s.phase.as_str(), s.step, s.weight),
        ("progressing", 1, 100.0)
    );
    h.drive_until(80.5, |snap, now| candidate(snap, now, 10, 0, 20))
        .await;
    assert_eq!(h.status().phase, "promoted");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn fast_rollback_trips_at_once_on_consecutive_failures() {
    let h = start(cfg(&format!(
        "  steps:
    - {{ weight: 20, hold: 10m }}
{ANALYSIS}
    gates:
      error_rate: {{ max: 0.01 }}
  fast_rollback: {{ consecutive_errors: 3 }}"
    )));
    let snap = h.snapshot();
    let trip = snap
        .tripwire
        .as_ref()
        .expect("fast_rollback arms a tripwire");

    // Two failures, a success, two failures: never three in a row.
    trip.failure();
    trip.failure();
    trip.success();
    trip.failure();
    trip.failure();
    settle().await;
    assert_eq!(h.status().phase, "progressing");

    // The third in a row rolls back without waiting for an evaluation.
    trip.failure();
    settle().await;
    let s = h.status();
    assert!(Instant::now() - h.t0 < Duration::from_secs(1));
    assert!(s.analysis.last.is_none());
    assert_eq!(s.phase, "rolled_back");
    assert_eq!(h.snapshot().weight_bp, 0);
    assert!(h.snapshot().tripwire.is_none());
    let reason = s.reason.as_deref().unwrap();
    assert!(
        reason.contains("3 consecutive candidate failures"),
        "{reason}"
    );
    let last = s.events.last().unwrap();
    assert_eq!(last.kind, "rollback");
    assert!(last.message.contains("(fast)"), "{last:?}");

    // A retry arms a fresh tripwire; the old one no longer counts.
    let s = h.send(Action::Retry).await.unwrap();
    assert_eq!(s.phase, "progressing");
    let fresh = h.snapshot().tripwire.clone().expect("armed again");
    assert!(!Arc::ptr_eq(&fresh, trip));
    for _ in 0..5 {
        trip.failure();
    }
    settle().await;
    assert_eq!(h.status().phase, "progressing");
    fresh.failure();
    fresh.failure();
    fresh.failure();
    settle().await;
    assert_eq!(h.status().phase, "rolled_back");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn fast_rollback_also_protects_a_paused_rollout() {
    let h = start(cfg("  steps:
    - { weight: 20, hold: 10m }
  fast_rollback: { consecutive_errors: 2 }"));
    h.send(Action::Pause { reason: None }).await.unwrap();
    let snap = h.snapshot();
    let trip = snap.tripwire.as_ref().unwrap();
    trip.failure();
    trip.failure();
    settle().await;
    assert_eq!(h.status().phase, "rolled_back");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn fast_rollback_watches_a_promotion_for_after_promotion_then_disarms() {
    let h = start(cfg("  steps:
    - { weight: 100 }
  fast_rollback: { consecutive_errors: 2 }"));
    settle().await;
    assert_eq!(h.status().phase, "promoted");
    // Within the post-promotion watch (5 minutes without an analysis block) it still trips.
    assert!(h.snapshot().tripwire.is_some());
    tokio::time::sleep(Duration::from_secs(301)).await;
    settle().await;
    let s = h.status();
    assert_eq!(s.phase, "promoted");
    assert!(
        h.snapshot().tripwire.is_none(),
        "still armed after the watch ended"
    );
    assert_eq!(s.events.last().unwrap().kind, "analysis");
    h.stop().await;
}

// === reload ===

const RELOAD_STEPS: &str = "  steps:
    - { weight: 10, hold: 10s }
    - { weight: 30, hold: 10s }
    - { weight: 60, hold: manual }
    - { weight: 100 }";

#[tokio::test(start_paused = true)]
async fn reload_keeps_the_rollout_unless_the_revision_changes() {
    let h = start(cfg(RELOAD_STEPS));
    h.until(25.0).await;
    let s = h.status();
    assert_eq!((s.step, s.config.generation), (2, 1));
    let revision = s.revision.clone();
    let events = s.events.len();

    // Only limits change: same rollout, next generation.
    let same = cfg_with(
        RELOAD_STEPS,
        "state: { path: null }\nlimits: { max_body: 1MiB }",
    );
    assert_eq!(h.control.reload(Ok(same)).await, Ok(2));
    let s = h.status();
    assert_eq!(
        (s.phase.as_str(), s.step, s.weight),
        ("progressing", 2, 60.0)
    );
    assert_eq!(s.config.generation, 2);
    assert_eq!(s.config.last_error, None);
    assert_eq!(s.revision, revision);
    assert_eq!(s.events.len(), events);
    let snap = h.snapshot();
    assert_eq!((snap.generation, snap.max_body), (2, 1 << 20));
    assert_eq!(snap.weight_bp, 6_000);

    // A rejected file: everything stays, the reason is shown.
    let problems = Problems(vec![Problem {
        path: "rollout.steps[0].weight".into(),
        line: Some(7),
        message: "must be between 0 and 100, got 120".into(),
    }]);
    assert_eq!(h.control.reload(Err(problems.clone())).await, Err(problems));
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.step), ("progressing", 2));
    assert_eq!(s.config.generation, 2);
    let err = s.config.last_error.as_deref().unwrap();
    assert!(err.contains("rollout.steps[0].weight (line 7)"), "{err}");
    assert!(err.contains("got 120"), "{err}");
    assert_eq!(h.snapshot().generation, 2);
    assert_eq!(h.snapshot().max_body, 1 << 20);

    // New steps: a new rollout at step 0, and the error is cleared.
    let changed = cfg("  steps:
    - { weight: 5, hold: 10s }
    - { weight: 100 }");
    assert_eq!(h.control.reload(Ok(changed)).await, Ok(3));
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.step, s.steps), ("progressing", 0, 2));
    assert_eq!(s.weight, 5.0);
    assert_eq!(s.config.generation, 3);
    assert_eq!(s.config.last_error, None);
    assert_ne!(s.revision, revision);
    assert_eq!(h.snapshot().weight_bp, 500);
    let last = s.events.last().unwrap();
    assert_eq!(last.kind, "reload");
    assert!(last.message.contains("step 0"), "{last:?}");
    // The old timeline is kept before the new one.
    assert_eq!(kinds(&s)[..3], ["start", "step", "step"]);

    // The new rollout runs its own holds from the reload on.
    h.until(34.5).await;
    assert_eq!(h.status().step, 0);
    h.until(35.5).await;
    assert_eq!(h.status().phase, "promoted");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reload_applies_a_new_mirror_bound() {
    let steps = "  steps:\n    - { weight: 0, mirror: 100, hold: manual }\n    - { weight: 100 }";
    let h = start(cfg_with(
        steps,
        "state: { path: null }\nshadow: { max_in_flight: 4 }",
    ));
    assert_eq!(h.snapshot().shadow_slots.available_permits(), 4);
    h.control
        .reload(Ok(cfg_with(
            steps,
            "state: { path: null }\nshadow: { max_in_flight: 16 }",
        )))
        .await
        .unwrap();
    assert_eq!(h.snapshot().shadow_slots.available_permits(), 16);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reload_of_a_rolled_back_rollout_with_new_steps_starts_over() {
    let h = start(cfg(RELOAD_STEPS));
    h.send(Action::Rollback { reason: None }).await.unwrap();
    // Same revision: still rolled back.
    h.control.reload(Ok(cfg(RELOAD_STEPS))).await.unwrap();
    assert_eq!(h.status().phase, "rolled_back");
    // New candidate URL: a new revision.
    let mut next = cfg(RELOAD_STEPS);
    next.backends.get_mut("green").unwrap().url = "http://127.0.0.1:18003".into();
    h.control.reload(Ok(next)).await.unwrap();
    let s = h.status();
    assert_eq!(
        (s.phase.as_str(), s.step, s.weight),
        ("progressing", 0, 10.0)
    );
    assert_eq!(s.reason, None);
    h.stop().await;
}

// === persisted state ===

#[tokio::test(start_paused = true)]
async fn state_survives_a_restart_of_the_same_revision_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("rollout.json");
    let extra = format!("state: {{ path: '{}' }}", path.display());
    let config = cfg_with(RELOAD_STEPS, &extra);

    let h = start(config.clone());
    h.until(25.0).await;
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.step), ("progressing", 2));
    h.stop().await;
    assert!(path.exists());

    // Same config: same phase and step, the timeline kept and a `restored` event.
    let h = start(config.clone());
    let s = h.status();
    assert_eq!(
        (s.phase.as_str(), s.step, s.weight),
        ("progressing", 2, 60.0)
    );
    assert_eq!(h.snapshot().weight_bp, 6_000);
    assert_eq!(kinds(&s), ["start", "step", "step", "restored"]);
    // Promote and restart again: promoted survives too.
    h.send(Action::Promote { full: true }).await.unwrap();
    h.stop().await;
    let h = start(config.clone());
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.weight), ("promoted", 100.0));
    h.stop().await;

    // Changed steps: a new revision, the state file is not consulted.
    let changed = cfg_with(
        "  steps:
    - { weight: 10, hold: 10s }
    - { weight: 30, hold: 20s }
    - { weight: 60, hold: manual }
    - { weight: 100 }",
        &extra,
    );
    let h = start(changed);
    let s = h.status();
    assert_eq!(
        (s.phase.as_str(), s.step, s.weight),
        ("progressing", 0, 10.0)
    );
    let last = s.events.last().unwrap();
    assert_eq!(last.kind, "restored");
    assert!(last.message.contains("another revision"), "{last:?}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn rolled_back_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollout.json");
    let config = cfg_with(
        RELOAD_STEPS,
        &format!("state: {{ path: '{}' }}", path.display()),
    );
    let h = start(config.clone());
    h.send(Action::Rollback {
        reason: Some("p99 too high".into()),
    })
    .await
    .unwrap();
    h.stop().await;

    let h = start(config);
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.weight), ("rolled_back", 0.0));
    assert_eq!(s.reason.as_deref(), Some("p99 too high"));
    assert_eq!(h.snapshot().weight_bp, 0);
    let s = h.send(Action::Retry).await.unwrap();
    assert_eq!((s.phase.as_str(), s.step), ("progressing", 0));
    h.stop().await;
}
