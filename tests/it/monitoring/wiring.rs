//! The tap reaches every observer: monitor figures, capture records, labels joined.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::monitor_when;
use crate::support::config::TestConfig;
use crate::support::{eventually, ProxyHarness};

/// Three features a row; the row's values depend on `i`.
fn infer_body(i: usize) -> String {
    let x = i as f64 / 10.0;
    format!(
        r#"{{"inputs":[{{"name":"x","shape":[1,3],"datatype":"FP32","data":[{x},{},7.654321]}}]}}"#,
        x * 2.0
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sampled_exchange_reaches_monitor_capture_and_feedback() {
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::stable_only()
        .monitor(json!({ "sample": 100 }))
        .capture(json!({ "path": dir.path(), "sample": 100, "redact": ["/inputs/*/data"] }))
        .feedback(json!({ "retain": "1h" }));
    let h = ProxyHarness::start(&config).await;
    for i in 0..40 {
        let id = format!("req-{i}");
        let a = h
            .send(
                Method::POST,
                "/v2/models/m/infer",
                &[("content-type", "application/json"), ("x-request-id", &id)],
                &infer_body(i),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK);
    }
    let monitor = eventually("40 parsed samples", Duration::from_millis(20), || async {
        let m = h
            .admin(Method::GET, "/api/v1/monitor", None, "")
            .await
            .json();
        match m["samples"]["parsed"].as_u64() {
            Some(40) => Ok(m),
            _ => Err(format!("{m:#}")),
        }
    })
    .await;
    let blue = &monitor["backends"][0];
    assert_eq!(blue["backend"], "blue");
    assert_eq!(blue["features"].as_array().unwrap().len(), 3, "{blue:#}");

    // Labels: the first 20 requests, as whatever blue predicted for them; an id never
    // seen waits a moment for its prediction.
    let labels: Vec<Value> = (0..20)
        .map(|i| json!({ "request_id": format!("req-{i}"), "label": "wrong" }))
        .chain([json!({ "request_id": "never-seen", "label": 1 })])
        .collect();
    let joined = h
        .admin(
            Method::POST,
            "/api/v1/feedback",
            None,
            &json!({ "feedback": labels }).to_string(),
        )
        .await;
    assert_eq!(joined.status, StatusCode::OK, "{:?}", joined.body);
    // The unknown id's label waits a moment for a prediction that never comes.
    assert_eq!(
        joined.json(),
        json!({ "matched": 20, "unmatched": 0, "ambiguous": 0, "waiting": 1 })
    );

    let captured = eventually("40 capture records", Duration::from_millis(20), || async {
        let text: String = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
            .collect();
        match text.lines().count() {
            40 => Ok(text),
            n => Err(format!("{n} records")),
        }
    })
    .await;
    let first: Value = serde_json::from_str(captured.lines().next().unwrap()).unwrap();
    assert_eq!(first["backend"], "blue");
    assert_eq!(
        first["request"]["inputs"][0]["data"], "[redacted]",
        "{first:#}"
    );
    assert!(
        !captured.contains("7.654321"),
        "a redacted value was written"
    );

    let metrics = h.admin(Method::GET, "/metrics", None, "").await;
    let text = String::from_utf8_lossy(&metrics.body);
    for name in [
        "switchyard_monitor_samples_total",
        "switchyard_capture_records_total",
        "switchyard_feedback_total",
        "switchyard_accuracy",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_a_mebibyte_are_answered_but_not_observed() {
    let config = TestConfig::stable_only()
        .max_body("4MiB")
        .monitor(json!({ "sample": 100 }));
    let h = ProxyHarness::start(&config).await;
    // A V2 request of 1.5 MiB: an image's pixels are no features to watch.
    let values = vec!["0.5"; 1 << 18].join(",");
    let large = format!(
        r#"{{"inputs":[{{"name":"x","shape":[1,{}],"datatype":"FP32","data":[{values}]}}]}}"#,
        1 << 18
    );
    assert!(large.len() > 1 << 20);
    let headers = [("content-type", "application/json")];
    let a = h
        .send(Method::POST, "/v2/models/m/infer", &headers, &large)
        .await;
    assert_eq!(a.status, StatusCode::OK, "answered all the same");
    let a = h
        .send(Method::POST, "/v2/models/m/infer", &headers, &infer_body(1))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let samples = monitor_when(&h, "the small request observed", |n| n >= 1).await;
    // The large one, answered first, would have been queued first.
    let largest = samples["backends"][0]["request_bytes"]["max"]
        .as_f64()
        .unwrap();
    assert!(largest < 1000.0, "the large body was read: {largest} bytes");
    let counted = &samples["samples"];
    assert_eq!(counted["parsed"], 1, "{counted}");
    assert_eq!(counted["unparseable"], 0, "{counted}");
}
