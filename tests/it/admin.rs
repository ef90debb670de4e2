//! The admin API and the CLI: controls, phases, tokens, state across restarts, metrics.

use crate::support;

use std::time::Duration;

use http::{Method, StatusCode};
use support::config::TestConfig;
use support::{has_event, ProxyHarness};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_rollback_takes_effect_for_the_very_next_request() {
    let h = ProxyHarness::start(&TestConfig::canary(100.0)).await;
    assert_eq!(h.get("/echo", &[]).await.variant(), "green");
    let a = h
        .admin(
            Method::POST,
            "/api/v1/rollback",
            None,
            r#"{"reason":"bad outputs"}"#,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let s = a.json();
    assert_eq!(
        (s["phase"].as_str(), s["weight"].as_f64()),
        (Some("rolled_back"), Some(0.0))
    );
    assert_eq!(s["reason"], "bad outputs");
    // No wait, no poll: the answer to the control came after the swap.
    assert_eq!(h.get("/echo", &[]).await.variant(), "blue");

    // Controls the phase does not allow: 409, nothing changes.
    let again = h.admin(Method::POST, "/api/v1/rollback", None, "").await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let resume = h.admin(Method::POST, "/api/v1/resume", None, "").await;
    assert_eq!(resume.status, StatusCode::CONFLICT);
    let retry = h.admin(Method::POST, "/api/v1/retry", None, "{}").await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(retry.json()["phase"], "progressing");
    assert_eq!(retry.json()["step"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_calls_need_the_token_when_one_is_set() {
    std::env::set_var("SWITCHYARD_TEST_TOKEN_AUTH", "s3cret");
    let h = ProxyHarness::start(
        &TestConfig::canary(10.0).admin_token_env("SWITCHYARD_TEST_TOKEN_AUTH"),
    )
    .await;
    let none = h.admin(Method::POST, "/api/v1/pause", None, "").await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    let wrong = h
        .admin(Method::POST, "/api/v1/pause", Some("guess"), "")
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(
        h.status().await["phase"],
        "progressing",
        "a refused call changed the phase"
    );
    let right = h
        .admin(Method::POST, "/api/v1/pause", Some("s3cret"), "")
        .await;
    assert_eq!(right.status, StatusCode::OK);
    assert_eq!(right.json()["phase"], "paused");
    // Reads need no token.
    assert_eq!(
        h.admin(Method::GET, "/api/v1/status", None, "")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_state_survives_a_restart() {
    let mut h = ProxyHarness::start(&TestConfig::ramp()).await;
    h.admin(Method::POST, "/api/v1/promote", None, "").await;
    h.admin(Method::POST, "/api/v1/pause", None, r#"{"reason":"lunch"}"#)
        .await;
    h.shutdown().await;
    h.boot().await;
    let s = h.status().await;
    assert_eq!(s["phase"], "paused");
    assert_eq!(s["step"], 1);
    assert_eq!(s["weight"], 50.0);
    assert_eq!(s["reason"], "lunch");
    assert!(has_event(&s, "restored", ""), "{:#}", s["events"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_are_served() {
    let h = ProxyHarness::start(&TestConfig::canary(50.0)).await;
    for _ in 0..20 {
        h.get("/echo", &[]).await;
    }
    assert_eq!(
        h.admin(Method::GET, "/healthz", None, "").await.status,
        StatusCode::OK
    );
    assert_eq!(
        h.admin(Method::GET, "/readyz", None, "").await.status,
        StatusCode::OK
    );
    let page = h.admin(Method::GET, "/", None, "").await;
    assert!(String::from_utf8_lossy(&page.body).contains("<title>switchyard</title>"));
    let text = h.metrics_text().await;
    for name in [
        "switchyard_requests_total{backend=\"blue\",code=\"200\",route=\"default\"}",
        "switchyard_request_duration_seconds_bucket{backend=\"blue\",route=\"default\"",
        // The recorder is process-wide and other tests run beside this one: names, not values.
        "switchyard_rollout_weight{route=\"default\"} ",
        "switchyard_rollout_phase{phase=\"progressing\",route=\"default\"}",
        "switchyard_connections_open{listener=\"data\"}",
        "switchyard_connections_total{listener=\"admin\"}",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    let nf = h.admin(Method::GET, "/nope", None, "").await;
    assert_eq!(nf.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_its_assets_are_served_from_the_binary() {
    let h = ProxyHarness::start(&TestConfig::canary(50.0)).await;
    let page = h.admin(Method::GET, "/", None, "").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert_eq!(page.headers["x-frame-options"], "DENY");
    let html = String::from_utf8_lossy(&page.body);
    for (path, content_type) in [
        ("/assets/dashboard.js", "text/javascript; charset=utf-8"),
        ("/assets/dashboard.css", "text/css; charset=utf-8"),
        (
            "/assets/vendor/uplot/uPlot.iife.min.js",
            "text/javascript; charset=utf-8",
        ),
        (
            "/assets/vendor/uplot/uPlot.min.css",
            "text/css; charset=utf-8",
        ),
    ] {
        assert!(html.contains(path), "the page does not load {path}");
        let a = h.admin(Method::GET, path, None, "").await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert_eq!(a.headers["content-type"], content_type, "{path}");
        assert_eq!(a.headers["cache-control"], "no-cache", "{path}");
        assert_eq!(a.headers["x-content-type-options"], "nosniff", "{path}");
        assert!(a.headers.contains_key("etag"), "{path}");
        assert!(!a.body.is_empty(), "{path}");
    }
    for unknown in [
        "/assets/nope.js",
        "/assets/",
        "/assets/../Cargo.toml",
        "/assets/vendor/uplot/../../dashboard.js",
        "/dashboard.js",
    ] {
        let a = h.admin(Method::GET, unknown, None, "").await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{unknown}");
    }
    let post = h
        .admin(Method::POST, "/assets/dashboard.js", None, "{}")
        .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drives_the_admin_api() {
    let h = ProxyHarness::start(&TestConfig::canary(10.0)).await;
    let admin = format!("http://{}", h.admin_addr());
    let bin = env!("CARGO_BIN_EXE_switchyard");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .args(["--admin", &admin])
            .env_remove("SWITCHYARD_ADMIN_TOKEN")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let h2 = &h;
    let (code, out, _) = tokio::task::block_in_place(|| run(&["status"]));
    assert_eq!(code, Some(0));
    assert!(out.contains("phase:     progressing"), "{out}");
    let (code, out, _) = tokio::task::block_in_place(|| run(&["promote"]));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("step:      1 of 2") && out.contains("weight:    100%"),
        "{out}"
    );
    let (code, _, err) = tokio::task::block_in_place(|| run(&["resume"]));
    assert_eq!(code, Some(1));
    assert!(
        err.contains("409") && err.contains("cannot resume"),
        "{err}"
    );
    let (code, out, _) =
        tokio::task::block_in_place(|| run(&["rollback", "--reason", "from the CLI"]));
    assert_eq!(code, Some(0));
    assert!(out.contains("from the CLI"), "{out}");
    let (code, out, _) = tokio::task::block_in_place(|| run(&["status", "--json"]));
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["phase"], "rolled_back");
    assert_eq!(h2.get("/echo", &[]).await.variant(), "blue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_page_cannot_drive_a_token_less_admin_while_the_cli_can() {
    let h = ProxyHarness::start(&TestConfig::canary(10.0)).await;
    let url = h.admin_url("/api/v1/rollback");
    let json = ("content-type", "application/json");
    let own_host = format!("{}", h.admin_addr());
    // What the page tries, the headers it manages to send, its body, what it gets.
    type Attempt<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str, StatusCode);
    let attempts: [Attempt; 5] = [
        (
            "a page's fetch (foreign Origin)",
            vec![json, ("origin", "http://evil.example")],
            "{}",
            StatusCode::FORBIDDEN,
        ),
        (
            "a DNS-rebound name",
            vec![json, ("host", "evil.example:9901")],
            "{}",
            StatusCode::FORBIDDEN,
        ),
        (
            "fetch metadata says cross-site",
            vec![json, ("sec-fetch-site", "cross-site")],
            "{}",
            StatusCode::FORBIDDEN,
        ),
        (
            "an HTML form",
            vec![("content-type", "application/x-www-form-urlencoded")],
            "reason=x",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "a text/plain beacon",
            vec![("content-type", "text/plain")],
            "{}",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (what, headers, body, refused) in attempts {
        let a = support::send(&h.client, Method::POST, &url, &headers, body.into()).await;
        assert_eq!(
            a.status,
            refused,
            "{what}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(
            h.status().await["phase"],
            "progressing",
            "{what} moved the rollout"
        );
    }
    // The dashboard's own page, same origin, may.
    let origin = format!("http://{own_host}");
    let dashboard = [
        json,
        ("origin", origin.as_str()),
        ("sec-fetch-site", "same-origin"),
    ];
    let a = support::send(
        &h.client,
        Method::POST,
        &h.admin_url("/api/v1/pause"),
        &dashboard,
        "{}".into(),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&a.body)
    );

    cli_rollback(&h, "by the operator");
    assert_eq!(h.status().await["phase"], "rolled_back");
}

/// Opens `n` connections to the admin at `addr`, each answered one `GET /healthz` and
/// then left open, idle, as an attacker holding the listener would; the connections the
/// admin refused or closed are dropped.
async fn hold_idle(addr: std::net::SocketAddr, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\n\r\n");
        if s.write_all(head.as_bytes()).await.is_ok() && read_answer(&mut s).await.is_some() {
            held.push(s);
        }
    }
    held
}

/// Reads one small admin answer (head and body, in one go or a few); `None` when the
/// connection is closed first.
async fn read_answer(s: &mut tokio::net::TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf));
        let n = read.await.expect("an answer or a close within 30 s").ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            if body.len() >= len {
                return Some(text);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_rollback_gets_through_while_300_idle_connections_hold_the_admin() {
    let h = ProxyHarness::start(&TestConfig::canary(10.0)).await;
    // All from the address the CLI calls from: eviction picks by idleness, not address.
    let mut held = hold_idle(h.admin_addr(), 300).await;
    let held_at = std::time::Instant::now();
    assert_eq!(held.len(), 300, "connections refused");

    let out = cli_rollback(&h, "under attack");
    assert!(out.contains("under attack"), "{out}");
    assert_eq!(h.status().await["phase"], "rolled_back");
    let evicted = r#"switchyard_connections_evicted_total{listener="admin"}"#;
    assert!(
        h.metrics_text().await.contains(evicted),
        "{evicted} not counted"
    );
    // Room was made by closing the connections idle longest: the first ones held.
    let mut buf = [0u8; 16];
    for (i, s) in held.iter_mut().take(45).enumerate() {
        let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
        assert_eq!(read.expect("closed").unwrap_or(0), 0, "connection {i}");
    }
    // Not by the idle timeout (5 s), unless this machine took nearly that long.
    if held_at.elapsed() < Duration::from_secs(4) {
        let newest = held.last_mut().unwrap();
        let open = newest.try_read(&mut buf);
        assert!(
            matches!(&open, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "{open:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_connection_serving_a_request_is_not_evicted() {
    let h = ProxyHarness::start(&TestConfig::canary(10.0)).await;
    let addr = h.admin_addr();
    // The oldest connection: a control whose body is still coming.
    let mut busy = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/pause HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: 2\r\n\r\n{{"
    );
    busy.write_all(head.as_bytes()).await.unwrap();
    let held = hold_idle(addr, 300).await;
    assert!(
        held.len() >= 256,
        "only {} connections admitted",
        held.len()
    );

    busy.write_all(b"}").await.unwrap();
    let answer = read_answer(&mut busy).await.expect("answered, not closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""phase": "paused""#), "{answer}");
    assert!(!answer.contains("connection: close"), "{answer}");
    // Still open for the next request.
    let next = format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\n\r\n");
    busy.write_all(next.as_bytes()).await.unwrap();
    let answer = read_answer(&mut busy).await.expect("kept open");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn a_control_whose_body_stops_coming_is_answered_408_and_changes_nothing() {
    let h = ProxyHarness::start(&TestConfig::canary(10.0)).await;
    let addr = h.admin_addr();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/rollback HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: 20\r\n\r\n{{\"rea"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let started = tokio::time::Instant::now();
    let answer = read_answer(&mut s).await.expect("answered");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
        "{waited:?}"
    );
    assert_eq!(h.status().await["phase"], "progressing");
}

#[tokio::test(start_paused = true)]
async fn an_idle_admin_connection_is_closed_within_seconds() {
    let h = ProxyHarness::start(&TestConfig::canary(10.0)).await;
    let held = hold_idle(h.admin_addr(), 1).await;
    let mut s = held.into_iter().next().expect("admitted");
    let answered = tokio::time::Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(75), s.read(&mut buf)).await;
    assert_eq!(
        read.expect("closed before the data plane's idle timeout")
            .unwrap(),
        0
    );
    let idle = answered.elapsed();
    assert!(idle <= Duration::from_secs(6), "closed after {idle:?}");
}

#[tokio::test(start_paused = true)]
async fn an_idle_http2_admin_connection_is_closed_within_seconds() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let h = ProxyHarness::start(&TestConfig::canary(10.0)).await;
    let addr = h.admin_addr();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{addr}/healthz"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let answer = send.send_request(req).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    drop(answer);
    let answered = tokio::time::Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(75), conn).await;
    closed
        .expect("closed before the data plane's idle timeout")
        .unwrap()
        .ok();
    let idle = answered.elapsed();
    assert!(idle <= Duration::from_secs(7), "closed after {idle:?}");
}

/// `switchyard rollback --reason REASON` against `h`'s admin API, as an operator runs it
/// (no token in the environment); it must succeed. What it printed.
fn cli_rollback(h: &ProxyHarness, reason: &str) -> String {
    let admin = format!("http://{}", h.admin_addr());
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["rollback", "--reason", reason, "--admin", &admin])
            .env_remove("SWITCHYARD_ADMIN_TOKEN")
            .output()
            .unwrap()
    });
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
