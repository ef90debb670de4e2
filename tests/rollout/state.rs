//! Persisted state: a restart of the same revision resumes where the rollout was.

use switchyard::rollout::Action;

use crate::harness::{kinds, timed_then_manual, ControllerHarness};
use crate::support::config::{step, TestConfig};

#[tokio::test(start_paused = true)]
async fn state_survives_a_restart_of_the_same_revision_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("rollout.json");
    let config = timed_then_manual().state_path(&path);

    let h = ControllerHarness::start(&config);
    let s = h.status_at(25.0).await;
    assert_eq!((s.phase.as_str(), s.step), ("progressing", 2));
    drop(h);
    assert!(path.exists());

    // Same config: same phase and step, the timeline kept and a `restored` event.
    let h = ControllerHarness::start(&config);
    let s = h.status();
    assert_eq!(
        (s.phase.as_str(), s.step, s.weight),
        ("progressing", 2, 60.0)
    );
    assert_eq!(h.weight_bp(), 6_000);
    assert_eq!(kinds(&s), ["start", "step", "step", "restored"]);
    // Promote and restart again: promoted survives too.
    h.send(Action::Promote { full: true }).await.unwrap();
    drop(h);
    let h = ControllerHarness::start(&config);
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.weight), ("promoted", 100.0));
    drop(h);

    // Changed steps: a new revision, the state file is not consulted.
    let changed = TestConfig::new()
        .steps([
            step(10.0).hold("10s"),
            step(30.0).hold("20s"),
            step(60.0).manual(),
            step(100.0),
        ])
        .state_path(&path);
    let h = ControllerHarness::start(&changed);
    let s = h.status();
    assert_eq!(
        (s.phase.as_str(), s.step, s.weight),
        ("progressing", 0, 10.0)
    );
    let last = s.events.last().unwrap();
    assert_eq!(last.kind, "restored");
    assert!(last.message.contains("another revision"), "{last:?}");
}

#[tokio::test(start_paused = true)]
async fn rolled_back_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = timed_then_manual().state_path(&dir.path().join("rollout.json"));
    let h = ControllerHarness::start(&config);
    h.send(Action::Rollback {
        reason: Some("p99 too high".into()),
    })
    .await
    .unwrap();
    drop(h);

    let h = ControllerHarness::start(&config);
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.weight), ("rolled_back", 0.0));
    assert_eq!(s.reason.as_deref(), Some("p99 too high"));
    assert_eq!(h.weight_bp(), 0);
    let s = h.send(Action::Retry).await.unwrap();
    assert_eq!((s.phase.as_str(), s.step), ("progressing", 0));
}
