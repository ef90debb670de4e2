//! The prediction log as a user reads it: files rotate by size and only the newest
//! `keep` remain, redacted values never reach a file, a mirrored request's record carries
//! the shadow's answer, and a capture path that cannot be written fails no request.
//!
//! Each test has a route of its own, so the process-wide `/metrics` series it reads are
//! its own too.

use std::path::Path;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::config::TestConfig;
use crate::support::{eventually, ProxyHarness};

/// Sends one V2 request carrying `secret` as a parameter and as the first feature value.
async fn infer(h: &ProxyHarness, id: &str, secret: &str) {
    let body = json!({
        "parameters": { "user_token": secret },
        "inputs": [{ "name": "x", "shape": [1, 3], "datatype": "FP32", "data": [7.654321, 0.5, 0.25] }],
    })
    .to_string();
    let a = h
        .send(
            Method::POST,
            "/v2/models/m/infer",
            &[("content-type", "application/json"), ("x-request-id", id)],
            &body,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{id}: {:?}", a.body);
}

/// The route's `capture` counts as `GET /api/v1/routes/ROUTE/monitor` shows them.
async fn capture_counts(h: &ProxyHarness, route: &str) -> Value {
    let path = format!("/api/v1/routes/{route}/monitor");
    let m = h.admin(Method::GET, &path, None, "").await;
    assert_eq!(m.status, StatusCode::OK, "{:?}", m.body);
    m.json()["capture"].clone()
}

/// Waits (bounded) until the route's capture counts satisfy `done`; returns them.
async fn wait_counts(h: &ProxyHarness, route: &str, done: impl Fn(&Value) -> bool) -> Value {
    eventually("capture counts", Duration::from_millis(20), || async {
        let c = capture_counts(h, route).await;
        if done(&c) {
            Ok(c)
        } else {
            Err(format!("{c}"))
        }
    })
    .await
}

/// The log's files, sorted by name (which sorts them by age), with their text.
fn files(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// Every record of every file, oldest file first.
fn records(files: &[(String, String)]) -> Vec<Value> {
    files
        .iter()
        .flat_map(|(name, text)| {
            text.lines().map(move |l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {e}: {l}"))
            })
        })
        .collect()
}

/// The value of the series `name` whose labels include every one of `labels`.
fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    crate::support::metrics::series(text, name, labels)
        .first()
        .copied()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_rotate_by_size_and_only_the_newest_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::stable_only()
        .routed("rotate", "m")
        .capture(json!({ "path": dir.path(), "sample": 100, "max_file": "4KiB", "keep": 3 }));
    let h = ProxyHarness::start(&config).await;
    let n = 60;
    for i in 0..n {
        infer(&h, &format!("rot-{i}"), "not-a-secret").await;
    }
    wait_counts(&h, "rotate", |c| c["written"] == n).await;

    let files = files(dir.path());
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(files.len(), 3, "{names:?}");
    for (name, text) in &files {
        assert!(
            name.starts_with("capture-") && name.ends_with(".jsonl"),
            "{name}"
        );
        assert!(text.len() <= 4096, "{name} has {} bytes", text.len());
    }
    let kept = records(&files);
    assert!(kept.len() < n, "{} records kept of {n}", kept.len());
    let ids: Vec<&str> = kept
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"rot-59"),
        "the newest record is gone: {ids:?}"
    );
    assert!(
        !ids.contains(&"rot-0"),
        "the oldest record is kept: {ids:?}"
    );
    for r in &kept {
        assert_eq!(
            (&r["route"], &r["backend"]),
            (&json!("rotate"), &json!("blue"))
        );
        assert!(r.get("shadow").is_none(), "not mirrored, yet: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_redacted_and_carry_the_mirror_s_answer() {
    const SECRET: &str = "tok-7f3a9c-do-not-log";
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::shadow().routed("mirror", "m").capture(json!({
        "path": dir.path(),
        "sample": 100,
        "redact": ["/parameters/user_token", "/inputs/*/data", "/id"],
    }));
    let h = ProxyHarness::start(&config).await;
    let n = 10;
    for i in 0..n {
        infer(&h, &format!("mir-{i}"), SECRET).await;
    }
    wait_counts(&h, "mirror", |c| c["written"] == n).await;

    let files = files(dir.path());
    for (name, text) in &files {
        assert!(!text.contains(SECRET), "{name} holds the secret");
        assert!(!text.contains("7.654321"), "{name} holds a redacted value");
    }
    let records = records(&files);
    assert_eq!(records.len(), n);
    for r in &records {
        assert_eq!(r["backend"], "blue", "{r:#}");
        assert_eq!(r["status"], 200, "{r:#}");
        assert_eq!(r["request"]["parameters"]["user_token"], "[redacted]");
        assert_eq!(r["request"]["inputs"][0]["data"], "[redacted]");
        assert_eq!(
            r["request"]["inputs"][0]["name"], "x",
            "only pointers hidden"
        );
        assert_eq!(r["response"]["id"], "[redacted]", "{r:#}");
        assert_eq!(r["response"]["model_name"], "blue", "{r:#}");
        let shadow = &r["shadow"];
        assert_eq!(shadow["backend"], "green", "{r:#}");
        assert_eq!(shadow["status"], 200, "{r:#}");
        assert_eq!(shadow["response"]["model_name"], "green", "{r:#}");
        assert_eq!(shadow["response"]["id"], "[redacted]", "{r:#}");
        assert!(shadow["response"]["outputs"].is_array(), "{r:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_capture_path_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    // Root may write anywhere: only a path through a regular file cannot be a directory.
    let plain = dir.path().join("plain-file");
    std::fs::write(&plain, "not a directory").unwrap();
    let config = TestConfig::stable_only()
        .routed("broken", "m")
        .capture(json!({ "path": plain.join("capture"), "sample": 100 }));
    let h = ProxyHarness::start(&config).await;
    let n = 20;
    for i in 0..n {
        // Every request is answered 200 (`infer` asserts it).
        infer(&h, &format!("err-{i}"), "x").await;
    }
    let c = wait_counts(&h, "broken", |c| {
        c["error"].as_u64().unwrap_or(0) + c["dropped"].as_u64().unwrap_or(0) == n
    })
    .await;
    assert_eq!(c["written"], 0, "{c}");
    let errors = c["error"].as_u64().unwrap();
    assert!(errors > 0, "{c}");
    let metrics = h.metrics_text().await;
    let exported = series(
        &metrics,
        "switchyard_capture_records_total",
        &[("route", "broken"), ("result", "error")],
    );
    assert_eq!(exported, Some(errors as f64));
    assert_eq!(
        std::fs::read_to_string(&plain).unwrap(),
        "not a directory",
        "the file in the way is left alone"
    );
}
