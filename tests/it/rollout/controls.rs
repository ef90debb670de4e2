//! Controls and the phase table: what each phase allows, rollback and retry.

use switchyard::rollout::Action;

use super::harness::{assert_not_allowed, ControllerHarness};
use crate::support::config::{step, TestConfig};

/// Refuses `action` in the current phase, `phase`, and checks nothing changed.
async fn refused(h: &ControllerHarness, action: Action, name: &str, phase: &str) {
    let before = h.status();
    let bp = h.weight_bp();
    assert_eq!(before.phase, phase);
    assert_not_allowed(h.send(action).await, name, phase);
    let after = h.status();
    assert_eq!(after.phase, before.phase);
    assert_eq!(after.step, before.step);
    assert_eq!(after.weight, before.weight);
    assert_eq!(after.reason, before.reason);
    assert_eq!(after.events, before.events);
    assert_eq!(h.weight_bp(), bp);
}

#[tokio::test(start_paused = true)]
async fn controls_outside_their_phases_are_refused_and_change_nothing() {
    let h = ControllerHarness::start(&TestConfig::canary(10.0));

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
}

#[tokio::test(start_paused = true)]
async fn without_a_candidate_the_phase_is_idle_and_controls_are_refused() {
    let h = ControllerHarness::start(&TestConfig::stable_only());
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.weight), ("idle", 0.0));
    assert_eq!(h.weight_bp(), 0);
    assert!(h.route().candidate.is_none());
    let every_control = [
        (Action::Promote { full: true }, "promote"),
        (Action::Pause { reason: None }, "pause"),
        (Action::Resume, "resume"),
        (Action::Rollback { reason: None }, "rollback"),
        (Action::Retry, "retry"),
    ];
    for (action, name) in every_control {
        assert_not_allowed(h.send(action).await, name, "idle");
    }
    assert_eq!(h.status().phase, "idle");
}

#[tokio::test(start_paused = true)]
async fn rollback_sends_everything_to_stable_and_retry_starts_over() {
    let h = ControllerHarness::start(&TestConfig::new().steps([
        step(0.0).mirror(100.0).hold("10s"),
        step(30.0).mirror(50.0).hold("10s"),
        step(100.0),
    ]));
    let s = h.status_at(10.5).await;
    assert_eq!((s.step, s.weight, s.mirror), (1, 30.0, 50.0));

    let reason = "bad answers in the demo";
    let answer = h
        .send(Action::Rollback {
            reason: Some(reason.into()),
        })
        .await
        .unwrap();
    let s = h.assert_rolled_back("manual", reason);
    assert_eq!(
        answer.phase, "rolled_back",
        "the answer comes after the rollback"
    );
    assert_eq!(s.reason.as_deref(), Some(reason));

    // Rolled back stays rolled back, reason kept.
    let s = h.status_at(3600.0).await;
    assert_eq!(s.phase, "rolled_back");
    assert_eq!(s.reason.as_deref(), Some("bad answers in the demo"));
    assert_eq!(h.weight_bp(), 0);

    let s = h.send(Action::Retry).await.unwrap();
    assert_eq!((s.phase.as_str(), s.step), ("progressing", 0));
    assert_eq!((s.weight, s.mirror), (0.0, 100.0));
    assert_eq!(s.reason, None);
    assert_eq!(s.events.last().unwrap().kind, "retry");
    assert_eq!(h.mirror_bp(), 10_000);

    // The retried rollout walks its holds again from the retry on.
    assert_eq!(h.status_at(3610.5).await.step, 1);
    assert_eq!(h.status_at(3620.5).await.phase, "promoted");
}

#[tokio::test(start_paused = true)]
async fn rollback_without_a_reason_says_manual_rollback() {
    let h = ControllerHarness::start(&TestConfig::new().steps([step(10.0).manual()]));
    let s = h.send(Action::Rollback { reason: None }).await.unwrap();
    assert_eq!(s.phase, "rolled_back");
    assert_eq!(s.reason.as_deref(), Some("manual rollback"));
}
