//! Drift figures know their sample size: a figure, a level and a gauge only from the
//! minimum count a side, with the count beside every figure in `GET /api/v1/monitor`;
//! and a new step of the rollout starts the output counts the `output_drift` gate reads
//! anew.

use super::{monitor_after, send_v2};
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::config::{step, TestConfig};
use crate::support::{eventually, ProxyHarness};

/// The values a drift figure needs a side (`switchyard::monitor::drift::MIN_COUNT`).
const MIN_COUNT: u64 = switchyard::monitor::drift::MIN_COUNT;

/// A V2 body of one row of tensor `name`, one column, a value that depends on `i`.
fn body(name: &str, i: u64) -> String {
    let x = (i % 17) as f64 / 10.0;
    format!(r#"{{"inputs":[{{"name":"{name}","shape":[1,1],"datatype":"FP32","data":[{x}]}}]}}"#)
}

/// Sends requests `from..to` of tensor `name`; each must succeed.
async fn send(h: &ProxyHarness, name: &str, from: u64, to: u64) {
    send_v2(h, from..to, |i| body(name, i)).await;
}

/// The drift of feature `name` at the stable, `blue`.
fn drift<'m>(m: &'m Value, name: &str) -> &'m Value {
    let features = m["backends"][0]["features"]
        .as_array()
        .unwrap_or_else(|| panic!("no features: {m:#}"));
    &features
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no feature {name}: {m:#}"))["drift"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drift_figure_shows_from_the_minimum_count_with_its_count_and_the_gauge_waits_for_it() {
    let config = TestConfig::stable_only()
        .monitor(json!({ "sample": 100, "protocol": "v2", "reference": { "requests": 20 } }));
    let h = ProxyHarness::start(&config).await;
    // A tensor name no other test uses: the metrics recorder is shared.
    let (tensor, feature) = ("drift_count_probe", "drift_count_probe[0]");
    let gauge = format!(
        r#"switchyard_feature_drift{{backend="blue",feature="{feature}",route="default"}}"#
    );
    // The reference, then one value short of the minimum in the window.
    send(&h, tensor, 0, 20 + MIN_COUNT - 1).await;
    let m = monitor_after(&h, 20 + MIN_COUNT - 1).await;
    let d = drift(&m, feature);
    assert_eq!(d["value"], Value::Null, "{d:#}");
    assert_eq!(d["level"], "insufficient", "{d:#}");
    assert_eq!(d["samples"], MIN_COUNT - 1, "{d:#}");
    assert_eq!(d["needed"], MIN_COUNT, "{d:#}");
    assert_eq!(d["reason"], "too few values in the window", "{d:#}");
    assert!(
        !h.metrics_text().await.contains(&gauge),
        "the gauge is set below the minimum"
    );

    send(&h, tensor, 20 + MIN_COUNT - 1, 20 + MIN_COUNT).await;
    let m = monitor_after(&h, 20 + MIN_COUNT).await;
    let d = drift(&m, feature);
    assert!(d["value"].is_f64(), "{d:#}");
    assert_eq!(d["level"], "ok", "the same values as the reference: {d:#}");
    assert_eq!(d["samples"], MIN_COUNT, "{d:#}");
    assert!(
        h.metrics_text().await.contains(&gauge),
        "the gauge from the minimum on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_step_starts_the_output_counts_the_gate_reads_anew() {
    let config = TestConfig::new()
        .steps([
            step(0.0).mirror(100.0).manual(),
            step(50.0).manual(),
            step(100.0),
        ])
        .monitor(json!({ "sample": 100, "protocol": "v2", "reference": { "requests": 20 } }));
    let h = ProxyHarness::start(&config).await;
    // The shadow step: every request answered by blue and mirrored to green (a mirror
    // that finds the shadow side busy is left out, so more rounds until enough are in).
    send(&h, "x", 0, 20 + MIN_COUNT).await;
    let output_drift = |m: &Value| m["output_drift"]["label"].clone();
    let sent = std::cell::Cell::new(20 + MIN_COUNT);
    let shadowed = eventually(
        "the shadow step's answers, a side",
        Duration::from_millis(20),
        || async {
            let n = sent.replace(sent.get() + 10);
            send(&h, "x", n, n + 10).await;
            let m = h
                .admin(Method::GET, "/api/v1/monitor", None, "")
                .await
                .json();
            let label = output_drift(&m);
            match label["samples"].as_u64() {
                Some(n) if n >= MIN_COUNT => Ok(m),
                _ => Err(format!("{m:#}")),
            }
        },
    )
    .await;
    assert_eq!(shadowed["output_drift"]["paired"], true, "{shadowed:#}");
    assert!(output_drift(&shadowed)["value"].is_f64(), "{shadowed:#}");
    // Every mirror in flight observed before the step changes: the count stops moving.
    let last = std::cell::Cell::new(u64::MAX);
    eventually(
        "the mirrors in flight",
        Duration::from_millis(50),
        || async {
            let m = h
                .admin(Method::GET, "/api/v1/monitor", None, "")
                .await
                .json();
            let parsed = m["samples"]["parsed"].as_u64().unwrap_or_default();
            match last.replace(parsed) == parsed {
                true => Ok(()),
                false => Err(format!("{parsed} parsed")),
            }
        },
    )
    .await;

    let a = h.admin(Method::POST, "/api/v1/promote", None, "").await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    h.wait_status("step 1", |s| s["step"] == 1).await;
    let m = h
        .admin(Method::GET, "/api/v1/monitor", None, "")
        .await
        .json();
    let label = output_drift(&m);
    assert_eq!(label["value"], Value::Null, "{m:#}");
    assert_eq!(
        label["samples"], 0,
        "the shadow step's answers are gone: {m:#}"
    );
    // The feature counts are not the step's: they stay.
    assert!(drift(&m, "x[0]")["value"].is_f64(), "{m:#}");
}
