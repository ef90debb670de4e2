//! Hot reload: valid files swap in atomically under load, invalid ones are rejected and
//! the old config keeps serving.

use crate::support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use support::config::{line_of, step, TestConfig};
use support::process::{free_port, Switchyard};
use support::{has_event, ProxyHarness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_concurrent_load_fail_no_request() {
    let h = ProxyHarness::start(&TestConfig::canary(10.0)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (client, url, stop, ok) = (h.client.clone(), h.url("/echo"), stop.clone(), ok.clone());
        workers.spawn(async move {
            let mut bad = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let a = support::send(&client, Method::POST, &url, &[], "payload".into()).await;
                if a.status == StatusCode::OK && a.json()["body"] == "payload" {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    bad.push(a.status);
                }
            }
            bad
        });
    }
    // Ten reloads: weights and limits change (same revision for limits, new rollout for weights).
    for i in 0..10u32 {
        let weight = [10.0, 30.0][i as usize % 2];
        h.write_config(&TestConfig::canary(weight).max_body(&format!("{}KiB", 64 + i)));
        h.wait_status("reload applied", |s| {
            s["config"]["generation"] == 2 + i as u64
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    while let Some(bad) = workers.join_next().await {
        failures.extend(bad.unwrap());
    }
    assert!(
        failures.is_empty(),
        "failed requests during reloads: {failures:?}"
    );
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "too little load to mean anything"
    );
    let s = h.status().await;
    assert_eq!(s["config"]["generation"], 11);
    assert_eq!(s["weight"], 30.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_reload_is_rejected_and_the_old_config_keeps_serving() {
    let h = ProxyHarness::start(&TestConfig::canary(100.0)).await;
    assert_eq!(h.get("/echo", &[]).await.variant(), "green");
    let broken = TestConfig::new().steps([step(100.0).manual(), step(150.0)]);
    h.write_config(&broken);
    let line = line_of(&h.render(&broken), "weight: 150");
    let s = h
        .wait_status("rejection", |s| s["config"]["last_error"].is_string())
        .await;
    let err = s["config"]["last_error"].as_str().unwrap();
    assert!(err.contains("rollout.steps[1].weight"), "{err}");
    assert!(err.contains(&format!("line {line}")), "{err}");
    assert_eq!(s["config"]["generation"], 1);
    // Traffic goes on, on the old routing.
    for _ in 0..20 {
        let a = h.get("/echo", &[]).await;
        assert_eq!((a.status, a.variant()), (StatusCode::OK, "green"));
    }
    let text = h.metrics_text().await;
    assert!(
        text.contains("switchyard_config_reloads_total{result=\"rejected\"}"),
        "{text}"
    );

    // Fixing the file clears the error.
    h.write_config(&TestConfig::canary(100.0));
    let s = h
        .wait_status("recovery", |s| s["config"]["last_error"].is_null())
        .await;
    assert_eq!(s["config"]["generation"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_by_rename_are_seen() {
    let h = ProxyHarness::start(&TestConfig::canary(0.0)).await;
    // Editors and ConfigMap updates write a new file and rename it over the old one.
    let tmp = h.dir.path().join(".switchyard.yaml.swp");
    std::fs::write(&tmp, h.render(&TestConfig::canary(100.0))).unwrap();
    std::fs::rename(&tmp, &h.config_path).unwrap();
    h.wait_status("reload by rename", |s| s["weight"] == 100.0)
        .await;
    assert_eq!(h.get("/echo", &[]).await.variant(), "green");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_only_limits_keeps_the_rollout_where_it_is() {
    let h = ProxyHarness::start(&TestConfig::ramp()).await;
    let a = h.admin(Method::POST, "/api/v1/promote", None, "").await;
    assert_eq!(a.json()["step"], 1);
    h.write_config(&TestConfig::ramp().max_body("1MiB"));
    let s = h
        .wait_status("reload", |s| s["config"]["generation"] == 2)
        .await;
    assert_eq!(
        (s["phase"].as_str(), s["step"].as_u64()),
        (Some("progressing"), Some(1))
    );
    assert!(!has_event(&s, "reload", ""), "{:#}", s["events"]);
    // Changing the steps is a new revision: a new rollout from step 0.
    h.write_config(&TestConfig::new().steps([
        step(10.0).manual(),
        step(40.0).manual(),
        step(100.0),
    ]));
    let s = h
        .wait_status("new rollout", |s| s["config"]["generation"] == 3)
        .await;
    assert_eq!(s["step"], 0);
    assert!(
        has_event(&s, "reload", "a new rollout starts at step 0"),
        "{:#}",
        s["events"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_finish_on_the_snapshot_they_started_with() {
    let h = ProxyHarness::start(&TestConfig::canary(0.0)).await;
    h.blue.behavior().set_delay(Duration::from_millis(400));
    let (client, url) = (h.client.clone(), h.url("/echo"));
    let slow =
        tokio::spawn(
            async move { support::send(&client, Method::GET, &url, &[], String::new()).await },
        );
    h.wait_hits(&h.blue, 1).await;
    // The request is in flight on the old snapshot (the model sleeps 400 ms): now reload.
    h.write_config(&TestConfig::canary(100.0));
    h.wait_status("reload", |s| s["weight"] == 100.0).await;
    let a = slow.await.unwrap();
    assert_eq!((a.status, a.variant()), (StatusCode::OK, "blue"));
    assert_eq!(h.get("/echo", &[]).await.variant(), "green");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_reloads_are_refused_while_requests_keep_answering() {
    let blue = switchyard::demo::model::ModelServer::start(
        "blue",
        switchyard::demo::model::Model::default(),
    )
    .await
    .unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let base = format!(
        "listen: 127.0.0.1:{port}\nadmin: {{ listen: '127.0.0.1:{admin_port}' }}\n\
         backends: {{ blue: {{ url: '{}' }} }}\nrollout: {{ stable: blue }}\nstate: {{ path: null }}\n",
        blue.url()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.yaml");
    std::fs::write(&path, &base).unwrap();
    let child = Switchyard::run(&path);
    let client = support::client();
    let url = format!("http://127.0.0.1:{port}/v2/models/m/infer");
    let status_url = format!("http://127.0.0.1:{admin_port}/api/v1/status");
    support::eventually("switchyard to serve", Duration::from_millis(50), || async {
        let ready = tokio::time::timeout(
            Duration::from_secs(1),
            client.get(status_url.parse().unwrap()),
        )
        .await;
        match ready {
            Ok(Ok(r)) if r.status() == StatusCode::OK => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let timed = || async {
        let started = std::time::Instant::now();
        let a = support::send(&client, Method::POST, &url, &[], support::INFER.into()).await;
        assert_eq!(a.status, StatusCode::OK);
        started.elapsed()
    };
    let mut normal = Vec::new();
    for _ in 0..50 {
        normal.push(timed().await);
    }

    // 900 KiB aliased 2 000 times (1.8 GB expanded), then 100 000-deep nesting.
    let bomb = format!(
        "{base}shadow:\n  compare:\n    ignore: [&a \"{}\", {}]\n",
        "x".repeat(900 << 10),
        vec!["*a"; 2000].join(", ")
    );
    let deep = format!(
        "{base}extra: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let hostile = [(bomb, "aliases expanded"), (deep, "deeper than")];
    let mut during = Vec::new();
    for (generation, (text, refused)) in hostile.into_iter().enumerate() {
        std::fs::write(&path, text).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            during.push(timed().await);
            let s = support::send(&client, Method::GET, &status_url, &[], String::new()).await;
            let last_error = s.json()["config"]["last_error"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if last_error.contains(refused) {
                assert_eq!(s.json()["config"]["generation"], 1, "nothing was applied");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "reload {generation} not refused: {last_error:?}"
            );
        }
    }
    normal.sort();
    during.sort();
    let p = |v: &[Duration], q: f64| v[((v.len() - 1) as f64 * q) as usize];
    let rss = child.peak_rss_mib();
    println!(
        "requests: normal p50 {:?} max {:?}; during hostile reloads ({}) p50 {:?} max {:?}; peak RSS {rss:.1} MiB",
        p(&normal, 0.5),
        p(&normal, 1.0),
        during.len(),
        p(&during, 0.5),
        p(&during, 1.0),
    );
    // Loose: a stalled data plane takes seconds, a busy machine some milliseconds.
    assert!(p(&during, 1.0) < Duration::from_millis(500), "{during:?}");
    assert!(rss < 100.0, "peak RSS {rss:.1} MiB, the bound is 100 MiB");
}
