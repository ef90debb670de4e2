//! A client's fault is the client's: uploads that break off, are malformed or trickle,
//! aimed at a candidate with fallback off, never count against it or move the rollout.
//!
//! Metrics are process-wide, and these tests assert that the candidate's error series
//! stay at zero: their route has a name of its own, whose series no other test touches.

use crate::support;

use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use support::config::{step, Analysis, TestConfig};
use support::recorder::{exchange, status_of, Recorder};
use support::ProxyHarness;

/// A POST head to the candidate (by the override header) declaring `len` body bytes.
fn head_to_candidate(len: usize) -> String {
    format!(
        "POST /v2/models/m/infer HTTP/1.1\r\nhost: x\r\nx-switchyard-route: green\r\n\
         content-type: application/json\r\ncontent-length: {len}\r\n\r\n"
    )
}

/// A canary at weight 0 whose candidate only the override header reaches, without
/// fallback, guarded by a fast rollback after 3 failures and an error-rate gate. Its route
/// is named for these tests: the recorder is process-wide, and other tests count errors
/// at `green` on the default route.
fn guarded(candidate_url: &str) -> TestConfig {
    TestConfig::new()
        .routed(ROUTE, "m")
        .steps([step(0.0).manual(), step(100.0)])
        .fast_rollback(3)
        .analysis(Analysis::new("1s", "30s", 1, 1))
        .gate_error_rate(0.01)
        .backend_url("green", candidate_url)
}

/// Waits for the analysis to evaluate once more from now: with `failure_limit: 1`, that
/// evaluation would roll back on a single error counted against the candidate.
async fn after_the_next_evaluation(h: &ProxyHarness) {
    let last = h.status().await["analysis"]["last"]["at"].clone();
    h.wait_status("the next evaluation", |s| {
        let at = &s["analysis"]["last"]["at"];
        !at.is_null() && *at != last
    })
    .await;
}

/// The route of these tests, and the `route` label of their series.
const ROUTE: &str = "attribution";

/// Asserts that nothing was counted against the candidate and the rollout did not move.
async fn assert_candidate_unharmed(h: &ProxyHarness, what: &str) {
    let s = h.status().await;
    assert_eq!(s["phase"], "progressing", "{what}: {s}");
    assert_eq!(s["step"], 0, "{what}: {s}");
    let errors = &s["window"]["candidate"]["errors"];
    assert_eq!(errors, &Value::from(0), "{what}: {}", s["window"]);
    for kind in [
        "connect",
        "timeout",
        "protocol",
        "status",
        "truncated",
        "saturated",
    ] {
        let series =
            format!("switchyard_upstream_errors_total{{backend=\"green\",kind=\"{kind}\",route=\"{ROUTE}\"}}");
        assert_eq!(h.metric(&series).await, 0.0, "{what}: {series}");
    }
}

#[tokio::test]
async fn aborted_uploads_at_the_candidate_count_against_nobody() {
    let green = Recorder::start().await;
    let h = ProxyHarness::start(&guarded(&green.url())).await;
    let before = h
        .metric("switchyard_client_errors_total{reason=\"body_aborted\"}")
        .await;
    for _ in 0..5 {
        let mut stream = TcpStream::connect(h.data_addr()).await.unwrap();
        let mut bytes = head_to_candidate(1000).into_bytes();
        bytes.extend_from_slice(&[b' '; 100]);
        stream.write_all(&bytes).await.unwrap();
        drop(stream); // gone, 900 bytes short
    }
    h.wait_metric(
        "switchyard_client_errors_total{reason=\"body_aborted\"}",
        before + 5.0,
    )
    .await;
    after_the_next_evaluation(&h).await;
    assert_eq!(green.complete(), 0, "no whole request reached the backend");
    assert_candidate_unharmed(&h, "aborted uploads").await;
}

#[tokio::test]
async fn malformed_uploads_at_the_candidate_get_400_and_count_against_nobody() {
    let green = Recorder::start().await;
    let h = ProxyHarness::start(&guarded(&green.url())).await;
    for _ in 0..5 {
        let req = "POST /v2/models/m/infer HTTP/1.1\r\nhost: x\r\nx-switchyard-route: green\r\n\
                   transfer-encoding: chunked\r\n\r\n5\r\n{\"in\"\r\nzz\r\n";
        let answer = exchange(h.data_addr(), req.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(status_of(&answer), 400, "{answer}");
    }
    after_the_next_evaluation(&h).await;
    assert_eq!(green.complete(), 0, "no whole request reached the backend");
    assert_candidate_unharmed(&h, "malformed uploads").await;
}

#[tokio::test]
async fn trickled_uploads_get_408_and_count_against_nobody() {
    let green = Recorder::start().await;
    // The body deadline, then the backend's own timeout, each running out first.
    let cases = [
        ("body_timeout", guarded(&green.url()).body_timeout("300ms")),
        (
            "backend timeout",
            guarded(&green.url()).backend_timeout("green", "300ms"),
        ),
    ];
    for (name, config) in cases {
        let h = ProxyHarness::start(&config).await;
        for _ in 0..4 {
            let mut bytes = head_to_candidate(1000).into_bytes();
            bytes.extend_from_slice(&[b' '; 10]);
            let answer = exchange(h.data_addr(), &bytes, Duration::from_secs(5)).await;
            assert_eq!(status_of(&answer), 408, "{name}: {answer}");
        }
        after_the_next_evaluation(&h).await;
        assert_candidate_unharmed(&h, name).await;
    }
    assert_eq!(green.complete(), 0, "no whole request reached the backend");
}
