//! Fast rollback: consecutive candidate failures trip a rollback at once, without waiting
//! for an evaluation.

use std::sync::Arc;

use switchyard::rollout::Action;
use tokio::time::Duration;

use super::harness::{settle, ControllerHarness};
use crate::support::config::{step, Analysis, TestConfig};

#[tokio::test(start_paused = true)]
async fn fast_rollback_trips_at_once_on_consecutive_failures() {
    let h = ControllerHarness::start(
        &TestConfig::new()
            .steps([step(20.0).hold("10m")])
            .analysis(Analysis::every_10s())
            .gate_error_rate(0.01)
            .fast_rollback(3),
    );
    let trip = h.tripwire().expect("fast_rollback arms a tripwire");

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
    let s = h.assert_rolled_back("fast", "3 consecutive candidate failures");
    assert!(h.elapsed() < Duration::from_secs(1));
    assert!(s.analysis.last.is_none());
    assert!(h.tripwire().is_none());

    // A retry arms a fresh tripwire; the old one no longer counts.
    let s = h.send(Action::Retry).await.unwrap();
    assert_eq!(s.phase, "progressing");
    let fresh = h.tripwire().expect("armed again");
    assert!(!Arc::ptr_eq(&fresh, &trip));
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
}

#[tokio::test(start_paused = true)]
async fn fast_rollback_also_protects_a_paused_rollout() {
    let h = ControllerHarness::start(
        &TestConfig::new()
            .steps([step(20.0).hold("10m")])
            .fast_rollback(2),
    );
    h.send(Action::Pause { reason: None }).await.unwrap();
    let trip = h.tripwire().unwrap();
    trip.failure();
    trip.failure();
    settle().await;
    assert_eq!(h.status().phase, "rolled_back");
}

#[tokio::test(start_paused = true)]
async fn fast_rollback_watches_a_promotion_for_after_promotion_then_disarms() {
    let h = ControllerHarness::start(&TestConfig::new().steps([step(100.0)]).fast_rollback(2));
    settle().await;
    assert_eq!(h.status().phase, "promoted");
    // Within the post-promotion watch (5 minutes without an analysis block) it still trips.
    assert!(h.tripwire().is_some());
    tokio::time::sleep(Duration::from_secs(301)).await;
    settle().await;
    let s = h.status();
    assert_eq!(s.phase, "promoted");
    assert!(h.tripwire().is_none(), "still armed after the watch ended");
    assert_eq!(s.events.last().unwrap().kind, "analysis");
}
