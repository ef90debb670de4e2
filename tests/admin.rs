//! The admin API and the CLI: controls, phases, tokens, state across restarts, metrics.

mod support;

use http::{Method, StatusCode};
use support::config::TestConfig;
use support::{has_event, ProxyHarness};

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

    let bin = env!("CARGO_BIN_EXE_switchyard");
    let admin = format!("http://{}", h.admin_addr());
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(bin)
            .args(["rollback", "--reason", "by the operator", "--admin", &admin])
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
    assert_eq!(h.status().await["phase"], "rolled_back");
}
