//! Memory follows the config: what a reload adds (routes, backends, their windows,
//! pools and metric series) a later reload that removes it gives back to the system.
//!
//! Measured on the real binary (with its allocator), as an operator would: its
//! resident memory in `/proc`.

use crate::support;

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use http::{Method, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use support::process::{free_port, Switchyard};
use switchyard::demo::model::{Model, ModelServer};

type HttpClient = Client<HttpConnector, http_body_util::Full<bytes::Bytes>>;

/// How far above its resident memory before the big config switchyard may stay once the
/// big config is gone (allocator caches, the metrics registry's entries, fragmentation).
const MARGIN_KIB: u64 = 16 * 1024;

/// The config's first lines: where switchyard listens.
fn head(port: u16, admin_port: u16) -> String {
    format!(
        "listen: 127.0.0.1:{port}\nadmin: {{ listen: '127.0.0.1:{admin_port}' }}\nstate: {{ path: null }}\n"
    )
}

/// One route, `default`: a canary of `green` at 10 %.
fn small(head: &str, blue: &ModelServer, green: &ModelServer) -> String {
    format!(
        "{head}backends: {{ blue: {{ url: '{}' }}, green: {{ url: '{}' }} }}\n\
         rollout: {{ stable: blue, candidate: green, steps: [{{ weight: 10, hold: manual }}, {{ weight: 100 }}] }}\n",
        blue.url(),
        green.url()
    )
}

/// `n` routes, `r-0` to `r-{n-1}`, each taking `/r-i/` with its own stable and candidate
/// (`2n` backends at the two model servers).
fn many_routes(head: &str, n: usize, blue: &ModelServer, green: &ModelServer) -> String {
    let mut yaml = format!("{head}backends:\n");
    for i in 0..n {
        let _ = writeln!(yaml, "  s-{i}: {{ url: '{}' }}", blue.url());
        let _ = writeln!(yaml, "  c-{i}: {{ url: '{}' }}", green.url());
    }
    yaml.push_str("routes:\n");
    for i in 0..n {
        let _ = writeln!(
            yaml,
            "  - {{ name: r-{i}, match: {{ path_prefix: /r-{i} }}, rollout: {{ stable: s-{i}, candidate: c-{i}, steps: [{{ weight: 50, hold: manual }}, {{ weight: 100 }}] }} }}"
        );
    }
    yaml
}

/// GETs `url` until it answers `status` (bounded).
async fn wait_for(client: &HttpClient, url: &str, status: StatusCode) {
    support::eventually(url, Duration::from_millis(50), || async {
        let r =
            tokio::time::timeout(Duration::from_secs(1), client.get(url.parse().unwrap())).await;
        match r {
            Ok(Ok(r)) if r.status() == status => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// Writes `text` where switchyard reads its config.
fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_backends_added_then_removed_give_their_memory_and_series_back() {
    let blue = ModelServer::start("blue", Model::default()).await.unwrap();
    let green = ModelServer::start("green", Model::default()).await.unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let head = head(port, admin_port);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.yaml");
    write(&path, &small(&head, &blue, &green));
    let sy = Switchyard::run(&path);
    let client = support::client();
    let data = format!("http://127.0.0.1:{port}");
    let admin = format!("http://127.0.0.1:{admin_port}");
    wait_for(&client, &format!("{admin}/api/v1/status"), StatusCode::OK).await;
    let infer = |path: String| {
        let client = client.clone();
        async move {
            let a = support::send(&client, Method::POST, &path, &[], support::INFER.into()).await;
            assert_eq!(a.status, StatusCode::OK, "{path}");
        }
    };
    for _ in 0..200 {
        infer(format!("{data}/v2/models/m/infer")).await;
    }
    let before = sy.rss_kib();

    // 500 routes and 1 000 backends, every route used once.
    write(&path, &many_routes(&head, 500, &blue, &green));
    wait_for(
        &client,
        &format!("{admin}/api/v1/routes/r-499/status"),
        StatusCode::OK,
    )
    .await;
    for i in 0..500 {
        infer(format!("{data}/r-{i}/v2/models/m/infer")).await;
    }
    let metrics = format!("{admin}/metrics");
    let text = support::send(&client, Method::GET, &metrics, &[], String::new()).await;
    assert!(String::from_utf8_lossy(&text.body).contains(r#"route="r-499""#));
    let grown = sy.rss_kib();

    // Back to the one route: the 500 routes' series go at once, their memory within
    // jemalloc's decay time.
    write(&path, &small(&head, &blue, &green));
    wait_for(
        &client,
        &format!("{admin}/api/v1/routes/r-0/status"),
        StatusCode::NOT_FOUND,
    )
    .await;
    for _ in 0..200 {
        infer(format!("{data}/v2/models/m/infer")).await;
    }
    let text = support::send(&client, Method::GET, &metrics, &[], String::new()).await;
    let text = String::from_utf8_lossy(&text.body);
    let left: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(r#"route="r-"#))
        .collect();
    assert!(
        left.is_empty(),
        "series of removed routes: {:?}",
        &left[..left.len().min(5)]
    );
    // jemalloc purges freed pages over its decay time (10 s), on a background thread.
    let given_back = Duration::from_secs(30);
    let after = support::eventually_within(
        "memory given back",
        Duration::from_millis(500),
        given_back,
        || async {
            let now = sy.rss_kib();
            if now < before + MARGIN_KIB {
                Ok(now)
            } else {
                Err(format!(
                    "{now} KiB, {before} KiB before, {grown} KiB with 1 000 backends"
                ))
            }
        },
    )
    .await;
    println!("RSS: {before} KiB before, {grown} KiB with 1 000 backends, {after} KiB after");
    assert!(
        grown > before + 50 * 1024,
        "1 000 backends should show: {grown} vs {before} KiB"
    );
}
