//! switchyards on one etcd: a restart continues the rollout from the stored step, a
//! start while etcd is down holds every route on its stable until etcd is back,
//! losing etcd while serving changes no routing and fails no request, and a control
//! sent to one replica is in force on the other.

use http::{Method, StatusCode};
use serde_json::Value;

use crate::support::config::TestConfig;
use crate::support::etcd::Etcd;
use crate::support::{has_event, ProxyHarness};

/// Sends `n` requests from different users; the variants that answered, all 200.
async fn served(h: &ProxyHarness, n: usize) -> Vec<String> {
    let mut by = Vec::with_capacity(n);
    for i in 0..n {
        let a = h.infer(Some(&format!("user-{i}"))).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        by.push(a.variant().to_string());
    }
    by
}

/// The phase, step and weight of a status.
fn place(s: &Value) -> (String, u64, f64) {
    (
        s["phase"].as_str().unwrap_or("").to_string(),
        s["step"].as_u64().unwrap_or(u64::MAX),
        s["weight"].as_f64().unwrap_or(-1.0),
    )
}

/// A manual ramp (users sticky by `x-user-id`) stored in `etcd` under `prefix`.
fn ramp(etcd: &Etcd, prefix: &str) -> TestConfig {
    TestConfig::ramp()
        .sticky_header("x-user-id")
        .etcd(&etcd.endpoint(), prefix)
}

/// `config` with the model servers of `h`: the same rollout revision as `h`'s.
fn same_backends(config: TestConfig, h: &ProxyHarness) -> TestConfig {
    config
        .backend_url("blue", &h.blue.url())
        .backend_url("green", &h.green.url())
}

/// Starts a switchyard on `etcd` (prefix `prefix`) with a manual ramp, promoted once:
/// step 1 at 50 %, stored in etcd. Answers it still running.
async fn at_step_one(etcd: &Etcd, prefix: &str) -> ProxyHarness {
    let h = ProxyHarness::start(&ramp(etcd, prefix)).await;
    assert_eq!(place(&h.status().await), ("progressing".into(), 0, 10.0));
    let a = h.admin(Method::POST, "/api/v1/promote", None, "").await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let s = h.status().await;
    assert_eq!(place(&s), ("progressing".into(), 1, 50.0));
    assert!(s["state"]["last_error"].is_null(), "{s:#}");
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_switchyard_on_the_same_etcd_continues_from_the_stored_step() {
    let etcd = Etcd::start();
    let mut first = at_step_one(&etcd, "/restart").await;
    first.shutdown().await;

    // Another switchyard in its own directory: only etcd and the model servers (the
    // rollout's revision names them) are shared.
    let config = same_backends(ramp(&etcd, "/restart"), &first);
    let mut second = ProxyHarness::start(&config).await;
    let s = second.status().await;
    assert_eq!(place(&s), ("progressing".into(), 1, 50.0), "{s:#}");
    assert!(has_event(&s, "restored", "at step 1"), "{:#}", s["events"]);
    assert!(
        s["state"]["path"]
            .as_str()
            .unwrap()
            .contains(&etcd.endpoint()),
        "{s:#}"
    );
    for h in [&first, &second] {
        assert!(
            !h.dir.path().join("state.json").exists(),
            "a state file was written"
        );
    }
    let by = served(&second, 100).await;
    assert!(by.iter().any(|v| v == "green") && by.iter().any(|v| v == "blue"));
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchyard_started_while_etcd_is_down_serves_the_stable_until_etcd_is_back() {
    let mut etcd = Etcd::start();
    let mut first = at_step_one(&etcd, "/down-at-start").await;
    first.shutdown().await;
    etcd.stop();

    let config = same_backends(ramp(&etcd, "/down-at-start"), &first);
    let mut h = ProxyHarness::start(&config).await;
    let s = h.status().await;
    assert_eq!(place(&s), ("paused".into(), 0, 0.0), "{s:#}");
    let reason = s["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("cannot be read") && reason.contains(&etcd.endpoint()),
        "{reason}"
    );
    assert!(
        s["state"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("not written")),
        "{s:#}"
    );
    assert!(served(&h, 50).await.iter().all(|v| v == "blue"));

    // etcd is back: the stored step is in force again, without a restart.
    etcd.resume();
    let s = h
        .wait_status("the stored step restored", |s| place(s).1 == 1)
        .await;
    assert_eq!(place(&s), ("progressing".into(), 1, 50.0), "{s:#}");
    assert!(has_event(&s, "restored", "at step 1"), "{:#}", s["events"]);
    let s = h
        .wait_status("the state written", |s| s["state"]["last_error"].is_null())
        .await;
    assert!(s["state"]["last_written"].is_string() || s["state"]["last_error"].is_null());
    let by = served(&h, 100).await;
    assert!(by.iter().any(|v| v == "green"), "{by:?}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_etcd_while_serving_changes_no_routing_and_fails_no_request() {
    let mut etcd = Etcd::start();
    let mut h = at_step_one(&etcd, "/lost").await;
    let before = served(&h, 100).await;
    etcd.stop();

    // Every request is answered, by the same variants as before (sticky users).
    let during = served(&h, 100).await;
    assert_eq!(during, before);
    // A control is in force and says it could not be stored; routing stays where it was.
    let body = r#"{"reason":"checking"}"#;
    let a = h.admin(Method::POST, "/api/v1/pause", None, body).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let s = h.status().await;
    assert_eq!(place(&s), ("paused".into(), 1, 50.0), "{s:#}");
    let e = s["state"]["last_error"].as_str().unwrap_or("");
    assert!(e.contains("etcd") && e.contains(&etcd.endpoint()), "{s:#}");
    h.wait_metric("switchyard_fleet_store_errors_total{op=\"save\"}", 1.0)
        .await;
    assert_eq!(served(&h, 100).await, before);
    // A control toward the candidate is refused while the store is away: nothing changed.
    let a = h.admin(Method::POST, "/api/v1/resume", None, "").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", a.body);
    assert!(a.json()["error"]
        .as_str()
        .unwrap_or("")
        .contains("cannot be reached"));
    assert_eq!(place(&h.status().await), ("paused".into(), 1, 50.0));

    // etcd is back: the state in force is written again by itself, then controls go on.
    etcd.resume();
    h.wait_status("the state written again", |s| {
        s["state"]["last_error"].is_null()
    })
    .await;
    let a = h.admin(Method::POST, "/api/v1/resume", None, "").await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(place(&h.status().await), ("progressing".into(), 1, 50.0));
    h.shutdown().await;
}

/// Two replicas of the same ramp on `etcd` under `prefix`, each in its own directory:
/// only etcd and the model servers are shared.
async fn two_replicas(etcd: &Etcd, prefix: &str) -> (ProxyHarness, ProxyHarness) {
    let a = ProxyHarness::start(&ramp(etcd, prefix)).await;
    let b = ProxyHarness::start(&same_backends(ramp(etcd, prefix), &a)).await;
    assert_eq!(place(&b.status().await), ("progressing".into(), 0, 10.0));
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_sent_to_one_replica_is_in_force_on_the_other() {
    let etcd = Etcd::start();
    let (mut a, mut b) = two_replicas(&etcd, "/follow-rollback").await;
    assert!(served(&b, 100).await.iter().any(|v| v == "green"));

    let body = r#"{"reason":"bad answers"}"#;
    let r = a.admin(Method::POST, "/api/v1/rollback", None, body).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let s = b
        .wait_status("A's rollback in force on B", |s| {
            s["phase"] == "rolled_back"
        })
        .await;
    assert_eq!(place(&s), ("rolled_back".into(), 0, 0.0), "{s:#}");
    assert_eq!(s["reason"], "bad answers");
    assert!(served(&b, 100).await.iter().all(|v| v == "blue"));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promote_sent_to_one_replica_moves_the_other_to_the_same_step() {
    let etcd = Etcd::start();
    let (mut a, mut b) = two_replicas(&etcd, "/follow-promote").await;
    let r = a.admin(Method::POST, "/api/v1/promote", None, "").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let s = b
        .wait_status("A's step in force on B", |s| place(s).1 == 1)
        .await;
    assert_eq!(place(&s), ("progressing".into(), 1, 50.0), "{s:#}");
    assert_eq!(place(&a.status().await), place(&s));
    let by = served(&b, 100).await;
    assert!(by.iter().any(|v| v == "green") && by.iter().any(|v| v == "blue"));
    // B wrote nothing back: a control on B goes through at once, from where A left it.
    let r = b.admin(Method::POST, "/api/v1/pause", None, "").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let s = b.status().await;
    assert_eq!(place(&s), ("paused".into(), 1, 50.0), "{s:#}");
    assert!(s["state"]["last_error"].is_null(), "{s:#}");
    a.wait_status("B's pause in force on A", |s| s["phase"] == "paused")
        .await;
    a.shutdown().await;
    b.shutdown().await;
}
