//! Blue-green: no users on the candidate, then one switch to 100 %, watched after promotion.

use switchyard::rollout::analysis::Verdict;
use switchyard::rollout::Action;

use super::harness::{kinds, verdict, ControllerHarness, Traffic};
use crate::support::config::{Analysis, TestConfig};

/// Promotes on its own after 30 s, gated on errors until 2 minutes after the promotion.
fn auto_promoting() -> TestConfig {
    TestConfig::new()
        .blue_green(Some("30s"))
        .analysis(Analysis::every_10s().after_promotion("2m"))
        .gate_error_rate(0.01)
}

fn healthy(t: &Traffic) {
    t.candidate(5, 0, 20);
}

#[tokio::test(start_paused = true)]
async fn blue_green_promotes_after_its_hold_and_rolls_back_on_post_promotion_failure() {
    let h = ControllerHarness::start(&auto_promoting());
    let s = h.status();
    assert_eq!(s.strategy, "blue-green");
    assert_eq!((s.phase.as_str(), s.step, s.steps), ("progressing", 0, 1));
    assert_eq!(s.weight, 0.0);
    assert_eq!(h.weight_bp(), 0);

    // Healthy previews (override header) and mirrors: promoted at 30 s in one switch.
    h.until(0.5).await;
    h.drive_until(29.5, healthy).await;
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.weight), ("progressing", 0.0));
    assert_eq!(verdict(&s), Verdict::Pass);
    h.drive_until(30.5, healthy).await;
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.weight), ("promoted", 100.0));
    assert_eq!(h.weight_bp(), 10_000);
    assert_eq!(s.events.last().unwrap().kind, "promoted");

    // Errors after promotion, within after_promotion: rolled back to blue.
    h.drive_until(60.5, |t| t.candidate(20, 10, 20)).await;
    let s = h.assert_rolled_back("auto", "error rate");
    assert_eq!(h.route().stable.name.as_ref(), "blue");
    assert_eq!(kinds(&s), ["start", "promoted", "rollback"]);
}

#[tokio::test(start_paused = true)]
async fn blue_green_promotion_stands_after_the_post_promotion_window() {
    let h = ControllerHarness::start(&auto_promoting());
    h.until(0.5).await;
    h.drive_until(30.5, healthy).await;
    assert_eq!(h.status().phase, "promoted");
    // Past after_promotion (2 m) the gates stop: errors no longer roll back.
    h.drive_until(160.5, healthy).await;
    let s = h.status();
    assert_eq!(s.events.last().unwrap().kind, "analysis");
    h.drive_until(300.5, |t| t.candidate(20, 20, 20)).await;
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.weight), ("promoted", 100.0));
}

#[tokio::test(start_paused = true)]
async fn blue_green_without_auto_promote_waits_for_promote() {
    let h = ControllerHarness::start(&TestConfig::new().blue_green(None));
    let s = h.status_at(3600.0).await;
    assert_eq!(
        (s.phase.as_str(), s.step, s.steps, s.weight),
        ("progressing", 0, 1, 0.0)
    );
    assert!(s.manual_hold);
    let s = h.send(Action::Promote { full: false }).await.unwrap();
    assert_eq!((s.phase.as_str(), s.weight), ("promoted", 100.0));
    assert_eq!(h.weight_bp(), 10_000);
    // The old stable stays configured: rollback is one switch back.
    let s = h.send(Action::Rollback { reason: None }).await.unwrap();
    assert_eq!((s.phase.as_str(), s.weight), ("rolled_back", 0.0));
    assert_eq!(h.weight_bp(), 0);
}
