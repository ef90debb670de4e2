//! A reference that stays put: built `from: stable` once per stable model (a retry keeps
//! it, so drift that happened meanwhile still shows as drift; a new stable model builds
//! its own), exported by `GET /api/v1/routes/NAME/monitor/reference` and `switchyard
//! baseline --from-live` in the format `monitor.reference.file` reads, and a reference that
//! matches none of the requests' features is a warning in the status.

use super::{monitor_after, send_v2};
use std::path::Path;
use std::process::Output;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::config::{step, TestConfig};
use crate::support::ProxyHarness;

/// The values a drift figure needs a side (`switchyard::monitor::drift::MIN_COUNT`).
const MIN_COUNT: u64 = switchyard::monitor::drift::MIN_COUNT;

/// Requests a reference is built from in these tests.
const REFERENCE: u64 = 20;

/// A V2 body of one row of tensor `x`, one column: value `i % 17 / 10` plus `shift`.
fn body(i: u64, shift: f64) -> String {
    let x = (i % 17) as f64 / 10.0 + shift;
    format!(r#"{{"inputs":[{{"name":"x","shape":[1,1],"datatype":"FP32","data":[{x}]}}]}}"#)
}

/// Sends requests `from..to`, their values moved by `shift`; each must succeed.
async fn send(h: &ProxyHarness, from: u64, to: u64, shift: f64) {
    send_v2(h, from..to, |i| body(i, shift)).await;
}

/// The drift of feature `x[0]` at the stable, `blue`.
fn drift(m: &Value) -> Value {
    let features = m["backends"][0]["features"]
        .as_array()
        .unwrap_or_else(|| panic!("no features: {m:#}"));
    features
        .iter()
        .find(|f| f["name"] == "x[0]")
        .unwrap_or_else(|| panic!("no feature x[0]: {m:#}"))["drift"]
        .clone()
}

/// The reference the route exports: its status and JSON.
async fn exported(h: &ProxyHarness, path: &str) -> (StatusCode, Value) {
    let a = h.admin(Method::GET, path, None, "").await;
    (a.status, a.json())
}

/// The edges of feature `x[0]` in an exported reference.
fn edges(reference: &Value) -> Vec<f64> {
    reference["features"]["x[0]"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("no numeric x[0]: {reference:#}"))
        .iter()
        .map(|e| e.as_f64().unwrap())
        .collect()
}

/// Runs `switchyard ARGS` off the runtime (the proxy it talks to runs on it).
async fn switchyard(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(&args)
            .env_remove("SWITCHYARD_ADMIN")
            .env_remove("SWITCHYARD_ROUTE")
            .output()
            .expect("run switchyard")
    })
    .await
    .unwrap()
}

/// `switchyard baseline --from-live` against `h`, writing `out`.
async fn baseline_from_live(h: &ProxyHarness, out: &Path) -> Output {
    switchyard(vec![
        "baseline".into(),
        "--from-live".into(),
        "--admin".into(),
        format!("http://{}", h.admin_addr()),
        "--out".into(),
        out.to_str().unwrap().into(),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_keeps_the_stables_reference_and_a_new_stable_model_builds_its_own() {
    let monitor =
        json!({ "sample": 100, "protocol": "v2", "reference": { "requests": REFERENCE } });
    // Every request to the stable: the candidate has a step of weight 0.
    let config = TestConfig::new()
        .steps([step(0.0).manual(), step(100.0)])
        .monitor(monitor);
    let mut h = ProxyHarness::start(&config).await;
    let scoped = "/api/v1/routes/default/monitor/reference";

    let (status, none) = exported(&h, scoped).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{none:#}");
    let why = none["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("building") && why.contains(&format!("0 of {REFERENCE}")),
        "{none:#}"
    );

    // The reference from clean traffic, then the inputs drift (every value moved by 5).
    send(&h, 0, REFERENCE, 0.0).await;
    monitor_after(&h, REFERENCE).await;
    let (status, built) = exported(&h, scoped).await;
    assert_eq!(status, StatusCode::OK, "{built:#}");
    assert_eq!(built["requests"], REFERENCE);
    assert!(edges(&built).iter().all(|e| *e < 2.0), "{built:#}");
    let (_, unscoped) = exported(&h, "/api/v1/monitor/reference").await;
    assert_eq!(unscoped, built, "the unscoped path is the default route's");
    send(&h, 0, REFERENCE, 5.0).await;
    monitor_after(&h, 2 * REFERENCE).await;

    // A retry: a new rollout on the same stable model keeps the reference.
    let a = h.admin(Method::POST, "/api/v1/rollback", None, "").await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let a = h.admin(Method::POST, "/api/v1/retry", None, "{}").await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let (status, kept) = exported(&h, scoped).await;
    assert_eq!(status, StatusCode::OK, "{kept:#}");
    assert_eq!(kept, built, "a retry keeps the stable's reference");

    // So the drifted traffic after the retry is drift, not the new normal.
    send(&h, 0, MIN_COUNT, 5.0).await;
    let m = monitor_after(&h, 2 * REFERENCE + MIN_COUNT).await;
    let d = drift(&m);
    assert_eq!(d["level"], "alert", "{d:#}");
    assert_eq!(d["samples"], MIN_COUNT, "{d:#}");

    // Another stable model (blue's URL now serves another model): its own reference,
    // built from its first requests.
    let moved = config.clone().backend_url("blue", &h.green.url());
    h.write_config(&moved);
    h.wait_status("the reload", |s| s["config"]["generation"] == 2)
        .await;
    let (status, anew) = exported(&h, scoped).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{anew:#}");
    assert!(
        anew["error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("0 of {REFERENCE}"))),
        "{anew:#}"
    );
    send(&h, 0, REFERENCE, 5.0).await;
    monitor_after(&h, REFERENCE).await;
    let (status, rebuilt) = exported(&h, scoped).await;
    assert_eq!(status, StatusCode::OK, "{rebuilt:#}");
    assert!(edges(&rebuilt).iter().all(|e| *e > 5.0), "{rebuilt:#}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_reference_read_back_as_a_file_gives_the_same_figures() {
    let built = json!({ "sample": 100, "protocol": "v2", "reference": { "requests": REFERENCE } });
    let config = TestConfig::stable_only().monitor(built);
    let mut h = ProxyHarness::start(&config).await;
    let out = h.dir.path().join("exported.json");

    // Nothing to export yet: the command says why and writes nothing.
    let run = baseline_from_live(&h, &out).await;
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no reference yet") && stderr.contains(&format!("0 of {REFERENCE}")),
        "{stderr}"
    );
    assert!(!out.exists());

    // The reference, then a window of values a little off it.
    send(&h, 0, REFERENCE, 0.0).await;
    send(&h, 0, MIN_COUNT, 0.15).await;
    let live = drift(&monitor_after(&h, REFERENCE + MIN_COUNT).await);
    assert!(live["value"].as_f64().is_some_and(|v| v > 0.0), "{live:#}");

    let run = baseline_from_live(&h, &out).await;
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        stdout.trim_end(),
        format!(
            "wrote {}: {REFERENCE} requests, 1 features (1 numeric, 0 categorical), outputs: label, score",
            out.display()
        )
    );
    let written: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let (_, served) = exported(&h, "/api/v1/monitor/reference").await;
    assert_eq!(written, served, "the file is the admin API's reference");

    // The same route reading that file: the same values give the same figures.
    let from_file = json!({ "sample": 100, "protocol": "v2", "reference": { "file": out } });
    h.write_config(&config.clone().monitor(from_file));
    h.wait_status("the reload", |s| s["config"]["generation"] == 2)
        .await;
    let m = monitor_after(&h, 0).await;
    assert_eq!(m["reference"]["in_use"], true, "{m:#}");
    assert_eq!(m["reference"]["requests"], REFERENCE, "{m:#}");
    send(&h, 0, MIN_COUNT, 0.15).await;
    let read_back = drift(&monitor_after(&h, MIN_COUNT).await);
    for key in ["level", "samples", "needed", "metric"] {
        assert_eq!(
            read_back[key], live[key],
            "{key}: {read_back:#} vs {live:#}"
        );
    }
    for key in ["value", "raw"] {
        let (a, b) = (
            read_back[key].as_f64().unwrap(),
            live[key].as_f64().unwrap(),
        );
        // Shares are scaled to add up to exactly 1 on load: a last-digit difference at most.
        assert!((a - b).abs() < 1e-12, "{key}: {a} vs {b}");
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_that_matches_no_feature_of_the_requests_is_a_status_warning() {
    let dir = tempfile::tempdir().unwrap();
    // As `switchyard baseline` writes one from a capture of another model's requests.
    let captured = dir.path().join("captured.json");
    let reference = json!({
        "version": 1,
        "requests": 100,
        "features": {
            "input-0[0]": { "kind": "numeric", "edges": [1.0], "shares": [0.5, 0.5] },
            "input-0[1]": { "kind": "numeric", "edges": [1.0], "shares": [0.5, 0.5] },
        },
    });
    std::fs::write(&captured, reference.to_string()).unwrap();
    let monitor =
        |file: &Path| json!({ "sample": 100, "protocol": "v2", "reference": { "file": file } });
    let config = TestConfig::stable_only().monitor(monitor(&captured));
    let mut h = ProxyHarness::start(&config).await;
    let warnings = |s: &Value| s["monitoring"]["warnings"].clone();
    assert_eq!(
        warnings(&h.status().await),
        json!([]),
        "no request seen yet"
    );

    send(&h, 0, 1, 0.0).await;
    let m = monitor_after(&h, 1).await;
    let status = h.status().await;
    let shown = warnings(&status);
    assert_eq!(shown.as_array().map(Vec::len), Some(1), "{status:#}");
    let text = shown[0].as_str().unwrap();
    for says in ["input-0[0], input-0[1]", "(x[0])", "share no name"] {
        assert!(text.contains(says), "{text}");
    }
    assert_eq!(m["warnings"], shown, "the monitor says it too");

    // A reference of no features at all: warned of before any request.
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, r#"{"version": 1}"#).unwrap();
    h.write_config(&config.clone().monitor(monitor(&empty)));
    let status = h
        .wait_status("the reload", |s| s["config"]["generation"] == 2)
        .await;
    let shown = warnings(&status);
    assert!(
        shown[0]
            .as_str()
            .is_some_and(|w| w.contains("no input features")),
        "{status:#}"
    );
    h.shutdown().await;
}
