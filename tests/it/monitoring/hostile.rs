//! What flows through cannot blind the observers, crash the proxy or leak what is
//! redacted: a request whose declared shape overflows, a candidate whose answer names a
//! huge choice index, and a card number under a `redact` pointer, each tried as an
//! attacker would, through the proxy.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::config::TestConfig;
use crate::support::recorder::Recorder;
use crate::support::{eventually, ProxyHarness};

/// A V2 request whose shape multiplies to 1 in 64 bits (12297829382473034411 × 3 wraps),
/// with one value: believed, it reads a column past the row.
const POISONOUS: &str =
    r#"{"inputs":[{"name":"x","shape":[12297829382473034411,3],"datatype":"FP32","data":[1.0]}]}"#;

/// A V2 request of one row of three features summing to `sum`.
fn row(sum: f64) -> String {
    json!({ "inputs": [{ "name": "x", "shape": [1, 3], "datatype": "FP32", "data": [sum, 0.0, 0.0] }] })
        .to_string()
}

/// `GET path` on the admin API; it must answer 200.
async fn admin_get(h: &ProxyHarness, path: &str) -> Value {
    let a = h.admin(Method::GET, path, None, "").await;
    assert_eq!(a.status, StatusCode::OK, "{path}: {:?}", a.body);
    a.json()
}

/// Waits (bounded) until the route's monitor satisfies `done`; returns its report.
async fn wait_monitor(h: &ProxyHarness, route: &str, done: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/api/v1/routes/{route}/monitor");
    eventually("the monitor", Duration::from_millis(20), || async {
        let m = admin_get(h, &path).await;
        if done(&m) {
            Ok(m)
        } else {
            Err(format!("{m:#}"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_an_overflowing_shape_blinds_no_observer() {
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::stable_only()
        .routed("poison", "m")
        .monitor(json!({ "sample": 100 }))
        .capture(json!({ "path": dir.path(), "sample": 100 }))
        .feedback(json!({ "retain": "1h" }));
    let h = ProxyHarness::start(&config).await;
    let headers = |id: &'static str| [("content-type", "application/json"), ("x-request-id", id)];
    // Whatever the model makes of it, the request is observed first.
    h.send(
        Method::POST,
        "/v2/models/m/infer",
        &headers("poison-0"),
        POISONOUS,
    )
    .await;
    let n = 20;
    let ids: Vec<String> = (0..n).map(|i| format!("after-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let a = h
            .send(
                Method::POST,
                "/v2/models/m/infer",
                &[("content-type", "application/json"), ("x-request-id", id)],
                &row(i as f64 - 10.0),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    }

    // Monitoring: every later exchange parsed, the poisonous one read by its nesting.
    let m = wait_monitor(&h, "poison", |m| m["samples"]["parsed"] == n + 1).await;
    let blue = &m["backends"][0];
    assert_eq!(blue["requests"], n + 1, "{blue:#}");
    let names: Vec<&str> = blue["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["x[0]", "x[1]", "x[2]"]);
    // Capture: a record for each.
    let c = wait_monitor(&h, "poison", |m| m["capture"]["written"] == n + 1).await;
    assert_eq!(c["capture"]["dropped"], 0, "{:#}", c["capture"]);
    // Feedback: the later exchanges' predictions were remembered.
    let labels: Vec<Value> = ids
        .iter()
        .map(|id| json!({ "request_id": id, "label": 1 }))
        .collect();
    let joined = h
        .admin(
            Method::POST,
            "/api/v1/routes/poison/feedback",
            None,
            &json!({ "feedback": labels }).to_string(),
        )
        .await;
    assert_eq!(joined.status, StatusCode::OK, "{:?}", joined.body);
    assert_eq!(joined.json()["matched"], n, "{:?}", joined.body);

    // Nothing panicked, and the observers are ready.
    let metrics = h.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "switchyard_observer_panics_total 0"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("observer_panics"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let ready = h.admin(Method::GET, "/readyz", None, "").await;
    assert_eq!(ready.status, StatusCode::OK, "{:?}", ready.body);
}

/// A candidate's chat answer whose choices name indexes far beyond the choices it holds:
/// 2·10⁷ (640 MB of rows, once believed) and 2³²−1 (137 GB: an allocation abort).
const HOSTILE_ANSWER: &str = r#"{"id":"c1","object":"chat.completion","choices":[{"index":20000000,"message":{"role":"assistant","content":"a"},"finish_reason":"stop"},{"index":4294967295,"message":{"role":"assistant","content":"b"},"finish_reason":"stop"}]}"#;
const PLAIN_ANSWER: &str = r#"{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"fine"},"finish_reason":"stop"}]}"#;

/// This process's peak resident memory so far, in MiB (Linux).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kib / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_answer_with_huge_choice_indexes_crashes_nothing() {
    let blue = Recorder::answering(PLAIN_ANSWER, "application/json").await;
    let green = Recorder::answering(HOSTILE_ANSWER, "application/json").await;
    let config = TestConfig::shadow()
        .backend_url("blue", &blue.url())
        .backend_url("green", &green.url())
        .monitor(json!({ "sample": 100 }));
    let h = ProxyHarness::start(&config).await;
    let before = peak_rss_mib();
    let n = 10;
    let chat =
        json!({ "model": "m", "messages": [{ "role": "user", "content": "hi" }] }).to_string();
    for _ in 0..n {
        let a = h
            .send(
                Method::POST,
                "/v1/chat/completions",
                &[("content-type", "application/json")],
                &chat,
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        assert_eq!(a.json()["choices"][0]["message"]["content"], "fine");
    }
    // Every mirrored answer was read, and every hostile choice counted, not kept.
    let m = eventually(
        "the candidate's answers",
        Duration::from_millis(20),
        || async {
            let m = admin_get(&h, "/api/v1/monitor").await;
            let green = m["backends"]
                .as_array()
                .and_then(|b| b.iter().find(|b| b["backend"] == "green"))
                .cloned();
            match green {
                Some(g) if g["outputs"]["answers"] == n => Ok(g),
                _ => Err(format!("{m:#}")),
            }
        },
    )
    .await;
    let outputs = &m["outputs"];
    assert_eq!(outputs["over_cap"], 2 * n, "{outputs:#}");
    assert_eq!(outputs["rows"], 0, "{outputs:#}");
    assert_eq!(outputs["empty"], n, "{outputs:#}");
    // The process is alive (this test runs in it) and kept nothing of the size the
    // indexes named: 640 MB a row vector, were they believed.
    let grown = peak_rss_mib() - before;
    assert!(grown < 256.0, "peak memory grew by {grown:.0} MiB");
    let live = h
        .send(Method::POST, "/v1/chat/completions", &[], &chat)
        .await;
    assert_eq!(live.status, StatusCode::OK);
}

/// A card number, sent in every request under a redacted pointer and echoed in every
/// answer under another.
const CARD: &str = "4111111111111111";
const BLUE_ANSWER: &str = r#"{"predictions":[{"label":1,"card":"4111111111111111"}]}"#;
const GREEN_ANSWER: &str = r#"{"predictions":[{"label":0,"card":"4111111111111111"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redacted_value_is_in_no_admin_answer() {
    let dir = tempfile::tempdir().unwrap();
    let blue = Recorder::answering(BLUE_ANSWER, "application/json").await;
    let green = Recorder::answering(GREEN_ANSWER, "application/json").await;
    let config = TestConfig::shadow()
        .routed("cards", "m")
        .backend_url("blue", &blue.url())
        .backend_url("green", &green.url())
        .monitor(json!({ "sample": 100, "reference": { "requests": 5 } }))
        .capture(json!({
            "path": dir.path(),
            "sample": 100,
            "redact": ["/instances/*/card", "/predictions/*/card"],
        }));
    let h = ProxyHarness::start(&config).await;
    let n = 30;
    for i in 0..n {
        let country = ["FR", "DE"][i % 2];
        let body = json!({ "instances": [{ "card": CARD, "country": country, "amount": i }] });
        let a = h
            .send(
                Method::POST,
                "/v1/models/m:predict",
                &[("content-type", "application/json")],
                &body.to_string(),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    }
    let m = wait_monitor(&h, "cards", |m| {
        m["backends"]
            .as_array()
            .is_some_and(|b| b.iter().map(|b| &b["requests"]).all(|r| *r == n) && b.len() == 2)
    })
    .await;
    // The card is counted, not shown; the other features are shown.
    let blue_report = m["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backend"] == "blue")
        .unwrap();
    let feature = |name: &str| {
        blue_report["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {blue_report:#}"))
            .clone()
    };
    let card = feature("card");
    assert_eq!(card["count"], n, "{card:#}");
    assert_eq!(card["redacted"], true, "{card:#}");
    assert_eq!(card["top"], json!([]), "{card:#}");
    assert_eq!(feature("country")["top"].as_array().unwrap().len(), 2);
    // The diffs have something to show: the answers disagree.
    let diffs = eventually("a diff", Duration::from_millis(20), || async {
        let d = admin_get(&h, "/api/v1/routes/cards/shadow/diffs").await;
        let text = d.to_string();
        if text.contains("predictions") {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await;
    assert!(diffs.contains("[redacted]"), "{diffs}");

    for path in [
        "/api/v1/monitor",
        "/api/v1/routes/cards/monitor",
        "/api/v1/status",
        "/api/v1/routes/cards/status",
        "/api/v1/history",
        "/api/v1/routes/cards/history",
        "/api/v1/shadow/diffs",
        "/api/v1/routes/cards/shadow/diffs",
        "/metrics",
    ] {
        let a = h.admin(Method::GET, path, None, "").await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {:?}", a.body);
        let text = String::from_utf8_lossy(&a.body);
        assert!(!text.contains(CARD), "{path} shows the card number: {text}");
    }
}
