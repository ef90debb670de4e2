//! The dashboard in a real browser: headless Chromium, driven by `tests/browser/dashboard.mjs`,
//! opens the page of a switchyard mid-rollout, sees the phase, the charts with figures in
//! their legends (mirrored copies apart from users' requests, accuracy with its labels)
//! and only the controls the phase allows, rolls back with the admin token, sees the
//! route go idle when the config drops the candidate, and leaves a screenshot at
//! `target/dashboard.png`.
//!
//! Ignored by default: it needs `node`, `playwright-core` in `target/browser` and
//! `/usr/bin/chromium`, which `.ci/run` installs before running
//! `cargo test --test it dashboard:: -- --ignored`.

use crate::support;

use std::path::Path;
use std::time::Duration;

use http::Method;
use serde_json::json;
use support::config::{step, Analysis, TestConfig};
use support::ProxyHarness;
use switchyard::demo::model::{Model, ModelServer};

/// The token the browser is given.
const TOKEN: &str = "dashboard-test-token";

/// A canary held at 25 % with every stable request mirrored, analysed, monitored, labelled;
/// the candidate's model differs a little, so the shadow disagreements have something to
/// show. The test's one client stands for every user: no share bound.
fn config() -> TestConfig {
    TestConfig::new()
        .steps([step(25.0).mirror(100.0).manual(), step(100.0)])
        .compare_protocol("auto")
        .analysis(Analysis::new("1s", "30s", 5, 3).max_client_share(1.0))
        .gate_error_rate(0.05)
        .gate_latency_p99(Some("500ms"), None)
        .monitor(json!({ "sample": 100, "reference": { "requests": 50 } }))
        .feedback(json!({ "retain": "1m" }))
        .admin_token_env("SWITCHYARD_TEST_DASHBOARD_TOKEN")
}

/// The same switchyard once the candidate is gone from the config: an idle route.
fn idle_config() -> TestConfig {
    TestConfig::stable_only().admin_token_env("SWITCHYARD_TEST_DASHBOARD_TOKEN")
}

/// The three features of request `i`.
fn row(i: u32) -> [f64; 3] {
    let x = |k: u32| f64::from((i * 7 + k * 13) % 100) / 100.0;
    [x(1), x(2), x(3)]
}

/// A V2 request whose three features vary with `i`.
fn infer_body(i: u32) -> String {
    json!({ "inputs": [{ "name": "x", "shape": [1, 3], "datatype": "FP32",
        "data": row(i) }] })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs node, playwright-core and chromium: run by .ci/run"]
async fn the_dashboard_shows_a_rollout_and_rolls_it_back() {
    std::env::set_var("SWITCHYARD_TEST_DASHBOARD_TOKEN", TOKEN);
    let blue = ModelServer::start("blue", Model::default()).await.unwrap();
    let green = Model {
        weight: Model::default().weight * 1.05,
        ..Model::default()
    };
    let green = ModelServer::start("green", green).await.unwrap();
    let h = ProxyHarness::start_with(&config(), blue, green).await;

    // Traffic in the background, so the history has points to draw, and the true labels
    // (the stable's rule) of the answers, ten at a time, for the accuracy chart.
    let (client, url) = (h.client.clone(), h.url("/v2/models/m/infer"));
    let feedback = h.admin_url("/api/v1/feedback");
    let traffic = tokio::spawn(async move {
        let truth = Model::default();
        let mut labels = Vec::new();
        for i in 0.. {
            let headers = [("content-type", "application/json")];
            let a = support::send(&client, Method::POST, &url, &headers, infer_body(i)).await;
            if let Some(id) = a.headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
                labels.push(json!({ "request_id": id, "label": truth.label(&row(i)) }));
            }
            if labels.len() == 10 {
                let body = json!({ "feedback": std::mem::take(&mut labels) }).to_string();
                let auth = format!("Bearer {TOKEN}");
                let headers = [
                    ("content-type", "application/json"),
                    ("authorization", &auth),
                ];
                support::send(&client, Method::POST, &feedback, &headers, body).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    // A few seconds of points before the page opens.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(h.status().await["phase"], "progressing");

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = root.join("target/dashboard.png");
    let admin = h.admin_url("/");
    // The config without the candidate, which the page moves over the watched one (a
    // rename, as an editor saves) once it has seen the rollback.
    let idle = h.dir.path().join("idle.yaml");
    std::fs::write(&idle, h.render(&idle_config())).unwrap();
    let config_path = h.config_path.clone();
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(root.join("tests/browser/dashboard.mjs"))
            .args([admin.as_str(), TOKEN])
            .arg(&out)
            .args([&idle, &config_path])
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    traffic.abort();
    assert!(
        run.status.success(),
        "the browser script failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let s = h.status().await;
    assert_eq!(s["phase"], "idle", "{s:#}");
    assert!(
        support::has_event(&s, "rollback", "rolled back by the browser test"),
        "{s:#}"
    );
}
