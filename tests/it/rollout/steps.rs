//! Steps and their holds, with no analysis: timers, manual holds, pause.

use switchyard::rollout::Action;

use super::harness::{kinds, ControllerHarness};
use crate::support::config::{step, TestConfig};

#[tokio::test(start_paused = true)]
async fn canary_walks_its_steps_on_hold_timers_to_promotion() {
    let h = ControllerHarness::start(&TestConfig::new().steps([
        step(0.0).mirror(100.0).hold("10s"),
        step(5.0).hold("10s"),
        step(25.0).hold("20s"),
        step(50.0).hold("30s"),
        step(100.0),
    ]));

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
        let s = h.status_at(t).await;
        assert_eq!(s.phase, "progressing", "at {t}s");
        assert_eq!((s.step, s.steps), (step, 5), "at {t}s");
        assert_eq!(s.weight, weight, "at {t}s");
        assert_eq!(s.mirror, mirror, "at {t}s");
        assert_eq!(h.weight_bp(), (weight * 100.0) as u32, "at {t}s");
        assert_eq!(h.mirror_bp(), (mirror * 100.0) as u32, "at {t}s");
    }

    let s = h.status_at(70.5).await;
    assert_eq!(s.phase, "promoted");
    assert_eq!(s.weight, 100.0);
    assert_eq!(s.mirror, 0.0);
    assert_eq!(h.weight_bp(), 10_000);
    assert_eq!(h.mirror_bp(), 0);
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
    assert_eq!(h.status_at(3600.0).await.phase, "promoted");
    assert_eq!(h.status().events.len(), 6);
}

#[tokio::test(start_paused = true)]
async fn manual_hold_waits_for_promote() {
    let h = ControllerHarness::start(&TestConfig::new().steps([
        step(10.0).manual(),
        step(20.0).manual(),
        step(50.0).manual(),
        step(100.0),
    ]));

    let s = h.status_at(24.0 * 3600.0).await;
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
    assert_eq!(h.weight_bp(), 2_000);
    assert_eq!(kinds(&s), ["start", "step"]);
    assert!(
        s.events[1].message.contains("manual promote"),
        "{:?}",
        s.events[1]
    );

    // The next manual step waits again.
    assert_eq!(h.status_at(48.0 * 3600.0).await.step, 1);

    let s = h.send(Action::Promote { full: true }).await.unwrap();
    assert_eq!((s.phase.as_str(), s.weight), ("promoted", 100.0));
    assert!(!s.manual_hold);
    assert_eq!(h.weight_bp(), 10_000);
    assert_eq!(kinds(&s), ["start", "step", "promoted"]);
    assert!(s.events[2].message.contains("--full"), "{:?}", s.events[2]);
}

#[tokio::test(start_paused = true)]
async fn manual_hold_on_the_last_step_waits_whatever_its_weight() {
    let h = ControllerHarness::start(
        &TestConfig::new().steps([step(50.0).hold("10s"), step(100.0).manual()]),
    );
    let s = h.status_at(3600.0).await;
    assert_eq!(
        (s.phase.as_str(), s.step, s.weight),
        ("progressing", 1, 100.0)
    );
    let s = h.send(Action::Promote { full: false }).await.unwrap();
    assert_eq!(s.phase, "promoted");
}

#[tokio::test(start_paused = true)]
async fn pause_freezes_the_split_and_the_hold() {
    let h = ControllerHarness::start(&TestConfig::new().steps([
        step(10.0).hold("30s"),
        step(40.0).hold("30s"),
        step(100.0),
    ]));

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
    let s = h.status_at(600.0).await;
    assert_eq!((s.phase.as_str(), s.step, s.weight), ("paused", 0, 10.0));
    assert_eq!(s.hold_remaining_s, Some(20.0));
    assert_eq!(h.weight_bp(), 1_000);
    assert_eq!(kinds(&s), ["start", "paused"]);

    // Resumed at 600 s with 20 s of the hold left: the step passes at 620 s, not before.
    let s = h.send(Action::Resume).await.unwrap();
    assert_eq!((s.phase.as_str(), s.step), ("progressing", 0));
    assert_eq!(h.status_at(619.5).await.step, 0);
    let s = h.status_at(620.5).await;
    assert_eq!(
        (s.phase.as_str(), s.step, s.weight),
        ("progressing", 1, 40.0)
    );
    assert_eq!(h.weight_bp(), 4_000);
    let s = h.status_at(650.5).await;
    assert_eq!(s.phase, "promoted");
    assert_eq!(
        kinds(&s),
        ["start", "paused", "resumed", "step", "step", "promoted"]
    );
}
