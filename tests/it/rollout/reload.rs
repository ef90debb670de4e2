//! Reloads: a new revision starts a new rollout, anything else keeps it where it is; a
//! rejected file changes nothing.

use switchyard::config::{Problem, Problems};
use switchyard::rollout::Action;

use super::harness::{kinds, timed_then_manual, ControllerHarness};
use crate::support::config::{step, TestConfig};

#[tokio::test(start_paused = true)]
async fn reload_keeps_the_rollout_unless_the_revision_changes() {
    let h = ControllerHarness::start(&timed_then_manual());
    let s = h.status_at(25.0).await;
    assert_eq!((s.step, s.config.generation), (2, 1));
    let revision = s.revision.clone();
    let events = s.events.len();

    // Only limits change: same rollout, next generation.
    assert_eq!(h.reload(&timed_then_manual().max_body("1MiB")).await, Ok(2));
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
    assert_eq!(h.weight_bp(), 6_000);

    // A rejected file: everything stays, the reason is shown.
    let problems = Problems(vec![Problem {
        path: "rollout.steps[0].weight".into(),
        line: Some(7),
        message: "must be between 0 and 100, got 120".into(),
    }]);
    assert_eq!(h.reload_rejected(problems.clone()).await, Err(problems));
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.step), ("progressing", 2));
    assert_eq!(s.config.generation, 2);
    let err = s.config.last_error.as_deref().unwrap();
    assert!(err.contains("rollout.steps[0].weight (line 7)"), "{err}");
    assert!(err.contains("got 120"), "{err}");
    assert_eq!(h.snapshot().generation, 2);
    assert_eq!(h.snapshot().max_body, 1 << 20);

    // New steps: a new rollout at step 0, and the error is cleared.
    let changed = TestConfig::new().steps([step(5.0).hold("10s"), step(100.0)]);
    assert_eq!(h.reload(&changed).await, Ok(3));
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.step, s.steps), ("progressing", 0, 2));
    assert_eq!(s.weight, 5.0);
    assert_eq!(s.config.generation, 3);
    assert_eq!(s.config.last_error, None);
    assert_ne!(s.revision, revision);
    assert_eq!(h.weight_bp(), 500);
    let last = s.events.last().unwrap();
    assert_eq!(last.kind, "reload");
    assert!(last.message.contains("step 0"), "{last:?}");
    // The old timeline is kept before the new one.
    assert_eq!(kinds(&s)[..3], ["start", "step", "step"]);

    // The new rollout runs its own holds from the reload on.
    assert_eq!(h.status_at(34.5).await.step, 0);
    assert_eq!(h.status_at(35.5).await.phase, "promoted");
}

#[tokio::test(start_paused = true)]
async fn reload_applies_a_new_mirror_bound() {
    let h = ControllerHarness::start(&TestConfig::shadow().max_in_flight(4));
    assert_eq!(h.mirror_slots_available(), 4);
    h.reload(&TestConfig::shadow().max_in_flight(16))
        .await
        .unwrap();
    assert_eq!(h.mirror_slots_available(), 16);
}

#[tokio::test(start_paused = true)]
async fn reload_of_a_rolled_back_rollout_with_new_steps_starts_over() {
    let h = ControllerHarness::start(&timed_then_manual());
    h.send(Action::Rollback { reason: None }).await.unwrap();
    // Same revision: still rolled back.
    h.reload(&timed_then_manual()).await.unwrap();
    assert_eq!(h.status().phase, "rolled_back");
    // New candidate URL: a new revision.
    let next = timed_then_manual().backend_url("green", "http://127.0.0.1:18003");
    h.reload(&next).await.unwrap();
    let s = h.status();
    assert_eq!(
        (s.phase.as_str(), s.step, s.weight),
        ("progressing", 0, 10.0)
    );
    assert_eq!(s.reason, None);
}

/// `timed_then_manual` with its first hold doubled: the same stable and candidate.
fn hold_edited() -> TestConfig {
    TestConfig::new().steps([
        step(10.0).hold("20s"),
        step(30.0).hold("10s"),
        step(60.0).manual(),
        step(100.0),
    ])
}

#[tokio::test(start_paused = true)]
async fn a_promotion_sticks_when_a_reload_only_edits_the_steps() {
    let h = ControllerHarness::start(&timed_then_manual());
    h.send(Action::Promote { full: true }).await.unwrap();
    assert_eq!(h.status().phase, "promoted");
    let revision = h.status().revision.clone();

    // A hold edited after the promotion: every user stays on the new model.
    h.reload(&hold_edited()).await.unwrap();
    let s = h.status();
    assert_eq!(
        (s.phase.as_str(), s.weight, s.step, s.steps),
        ("promoted", 100.0, 3, 4)
    );
    assert_eq!(h.weight_bp(), 10_000);
    assert_ne!(s.revision, revision, "the new steps are the plan now");
    let last = s.events.last().unwrap();
    assert_eq!(last.kind, "reload");
    assert!(last.message.contains("stays promoted"), "{}", last.message);
    assert!(
        last.message
            .contains("set `stable: green` and remove `candidate`"),
        "{}",
        last.message
    );

    // Naming another candidate is a new rollout.
    let other = hold_edited().backend_url("green", "http://127.0.0.1:18003");
    h.reload(&other).await.unwrap();
    let s = h.status();
    assert_eq!(
        (s.phase.as_str(), s.step, s.weight),
        ("progressing", 0, 10.0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_rollback_sticks_when_a_reload_only_edits_the_steps() {
    let h = ControllerHarness::start(&timed_then_manual());
    h.send(Action::Rollback {
        reason: Some("bad".into()),
    })
    .await
    .unwrap();
    h.reload(&hold_edited()).await.unwrap();
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.weight), ("rolled_back", 0.0));
    assert_eq!(s.reason.as_deref(), Some("bad"));
    assert_eq!(h.weight_bp(), 0);
}
