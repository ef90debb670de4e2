//! The dashboard in a real browser: headless Chromium, driven by `tests/browser/dashboard.mjs`,
//! opens the page of a switchyard mid-rollout, sees the phase and a chart with data, rolls
//! back with the admin token, and leaves a screenshot at `target/dashboard.png`.
//!
//! Ignored by default: it needs `node`, `playwright-core` in `target/browser` and
//! `/usr/bin/chromium`, which `.ci/run` installs before running
//! `cargo test --test dashboard -- --ignored`.

mod support;

use std::path::Path;
use std::time::Duration;

use http::Method;
use serde_json::json;
use support::config::{step, Analysis, TestConfig};
use support::ProxyHarness;
use switchyard::demo::model::{Model, ModelServer};

/// The token the browser is given.
const TOKEN: &str = "dashboard-test-token";

/// A canary held at 25 % with every stable request mirrored, analysed, monitored; the
/// candidate's model differs a little, so the shadow disagreements have something to show.
/// The test's one client stands for every user: no share bound.
fn config() -> TestConfig {
    TestConfig::new()
        .steps([step(25.0).mirror(100.0).manual(), step(100.0)])
        .compare_protocol("auto")
        .analysis(Analysis::new("1s", "30s", 5, 3).max_client_share(1.0))
        .gate_error_rate(0.05)
        .gate_latency_p99(Some("500ms"), None)
        .monitor(json!({ "sample": 100, "reference": { "requests": 50 } }))
        .admin_token_env("SWITCHYARD_TEST_DASHBOARD_TOKEN")
}

/// A V2 request whose three features vary with `i`.
fn infer_body(i: u32) -> String {
    let x = |k: u32| f64::from((i * 7 + k * 13) % 100) / 100.0;
    json!({ "inputs": [{ "name": "x", "shape": [1, 3], "datatype": "FP32",
        "data": [x(1), x(2), x(3)] }] })
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

    // Traffic in the background, so the history has points to draw.
    let (client, url) = (h.client.clone(), h.url("/v2/models/m/infer"));
    let traffic = tokio::spawn(async move {
        for i in 0.. {
            let headers = [("content-type", "application/json")];
            support::send(&client, Method::POST, &url, &headers, infer_body(i)).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    // A few seconds of points before the page opens.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(h.status().await["phase"], "progressing");

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = root.join("target/dashboard.png");
    let admin = h.admin_url("/");
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(root.join("tests/browser/dashboard.mjs"))
            .args([admin.as_str(), TOKEN])
            .arg(&out)
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
    assert_eq!(s["phase"], "rolled_back", "{s:#}");
    assert_eq!(s["reason"], "rolled back by the browser test");
}
