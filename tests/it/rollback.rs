//! Automatic protection in the data plane: fallback to stable and fast rollback.

use crate::support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use http::{Method, StatusCode};
use support::config::TestConfig;
use support::{has_event, ProxyHarness, INFER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_that_starts_failing_is_rolled_back_and_no_user_sees_it() {
    let h = ProxyHarness::start(
        &TestConfig::canary(50.0)
            .fast_rollback(5)
            .fallback_to_stable(),
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok_blue, ok_green) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (client, url, stop) = (h.client.clone(), h.url("/v2/models/m/infer"), stop.clone());
        let (ok_blue, ok_green) = (ok_blue.clone(), ok_green.clone());
        workers.spawn(async move {
            let mut bad = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let a = support::send(&client, Method::POST, &url, &[], INFER.into()).await;
                match (a.status, a.variant()) {
                    (StatusCode::OK, "blue") => ok_blue.fetch_add(1, Ordering::Relaxed),
                    (StatusCode::OK, "green") => ok_green.fetch_add(1, Ordering::Relaxed),
                    _ => {
                        bad.push((a.status, a.variant().to_string()));
                        0
                    }
                };
            }
            bad
        });
    }
    // Healthy first: both variants serve.
    while ok_green.load(Ordering::Relaxed) < 50 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    h.green.behavior().set_error_rate(1.0);
    let s = h
        .wait_status("fast rollback", |s| s["phase"] == "rolled_back")
        .await;
    let green_after = ok_green.load(Ordering::Relaxed);
    // Keep the load on a little longer: everything must now be blue.
    let blue_then = ok_blue.load(Ordering::Relaxed);
    while ok_blue.load(Ordering::Relaxed) < blue_then + 100 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    while let Some(bad) = workers.join_next().await {
        failures.extend(bad.unwrap());
    }
    assert!(failures.is_empty(), "users saw failures: {failures:?}");
    assert_eq!(
        ok_green.load(Ordering::Relaxed),
        green_after,
        "green served after the rollback"
    );
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.contains("consecutive candidate failures"),
        "{reason}"
    );
    assert!(has_event(&s, "rollback", "(fast)"), "{:#}", s["events"]);
    let text = h.metrics_text().await;
    assert!(
        text.contains("switchyard_rollbacks_total{trigger=\"fast\",route=\"default\"}"),
        "{text}"
    );
    assert!(
        text.contains("switchyard_fallbacks_total{backend=\"green\",route=\"default\"}"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_serves_from_stable_and_still_counts_against_the_candidate() {
    let h = ProxyHarness::start(&TestConfig::canary(100.0).fallback_to_stable()).await;
    h.green.behavior().set_error_rate(1.0);
    for _ in 0..20 {
        let a = h.send(Method::POST, "/v2/models/m/infer", &[], INFER).await;
        assert_eq!((a.status, a.variant()), (StatusCode::OK, "blue"));
        assert_eq!(
            a.json()["outputs"][0]["name"],
            "probabilities",
            "the body reached blue intact"
        );
    }
    assert_eq!(
        h.green.behavior().hits(),
        20,
        "each request tried the candidate first"
    );
    assert_eq!(h.blue.behavior().hits(), 20);
    // Each failure counts against green in its window, where the analysis reads it.
    let w = &h.status().await["window"]["candidate"];
    assert_eq!(
        (w["requests"].as_u64(), w["errors"].as_u64()),
        (Some(20), Some(20)),
        "{w}"
    );
    let text = h.metrics_text().await;
    assert!(
        text.contains(
            "switchyard_upstream_errors_total{backend=\"green\",kind=\"status\",route=\"default\"}"
        ),
        "{text}"
    );
    // Without fast_rollback nothing rolled back: the analysis would decide.
    assert_eq!(h.status().await["phase"], "progressing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fallback_the_candidate_failure_reaches_the_client_and_names_it() {
    let h = ProxyHarness::start(&TestConfig::canary(100.0)).await;
    h.green.behavior().set_error_rate(1.0);
    let a = h.send(Method::POST, "/v2/models/m/infer", &[], INFER).await;
    assert_eq!(
        (a.status, a.variant()),
        (StatusCode::INTERNAL_SERVER_ERROR, "green")
    );
    h.green.stop();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let a = h.send(Method::POST, "/v2/models/m/infer", &[], INFER).await;
    assert_eq!((a.status, a.variant()), (StatusCode::BAD_GATEWAY, "green"));
}
