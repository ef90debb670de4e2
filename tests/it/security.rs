//! What a client can send, tried as an attacker would: nothing switchyard sets may be
//! forged or stripped by it, a backend's broken answer is the backend's, and nothing
//! redacted shows. (Uploads that fail by the client's fault: tests/it/attribution.rs.)

use crate::support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use support::config::TestConfig;
use support::recorder::{exchange, status_of, Recorder};
use support::ProxyHarness;

#[tokio::test]
async fn an_answer_cut_off_mid_body_is_the_backends_error() {
    // Promises 100 bytes, sends 10, hangs up.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
                .await;
        }
    });
    // The stable is the one cutting off (metrics are process-wide: the candidate's
    // stay clean for the attribution tests beside this one).
    let config = TestConfig::canary(0.0).backend_url("blue", &format!("http://{addr}"));
    let h = ProxyHarness::start(&config).await;
    let series =
        "switchyard_upstream_errors_total{backend=\"blue\",kind=\"truncated\",route=\"default\"}";
    let before = h.metric(series).await;
    let answer = exchange(
        h.data_addr(),
        b"GET /v2/models/m HTTP/1.1\r\nhost: x\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    // The head may or may not have gone out; the 100 bytes it promised never all do.
    if !answer.is_empty() {
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        assert_eq!(status_of(head), 200, "{answer}");
        assert!(head.contains("content-length: 100"), "{answer}");
        assert!(body.len() < 100, "the answer completed: {answer}");
    }
    h.wait_metric(series, before + 1.0).await;
    let s = h.status().await;
    assert_eq!(s["window"]["stable"]["errors"], 1, "{}", s["window"]);
}

// === headers ===

#[tokio::test]
async fn headers_only_switchyard_may_set_never_reach_a_backend() {
    let green = Recorder::start().await;
    let config = TestConfig::canary(0.0).backend_url("green", &green.url());
    let h = ProxyHarness::start(&config).await;
    let forged = [
        ("x-switchyard-route", "green"), // the override header: routes, then goes
        ("x-switchyard-shadow", "1"),
        ("x-switchyard-variant", "blue"),
    ];
    let a = h.get("/v2/models/m", &forged).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.variant(), "green", "the override header still routes");
    let seen = green.seen();
    assert_eq!(seen.len(), 1);
    for (name, _) in forged {
        assert!(
            !seen[0].headers.contains_key(name),
            "{name} reached the backend: {:?}",
            seen[0].headers
        );
    }
}

#[tokio::test]
async fn a_connection_header_cannot_strip_what_switchyard_adds() {
    let green = Recorder::start().await;
    let config = TestConfig::canary(100.0).backend_url("green", &green.url());
    let h = ProxyHarness::start(&config).await;
    let a = h
        .get(
            "/v2/models/m",
            &[
                ("connection", "x-request-id, x-forwarded-for"),
                ("x-request-id", "client-chosen"),
            ],
        )
        .await;
    assert_eq!(a.status, 200);
    let seen = green.seen();
    let got = &seen[0].headers;
    let id = got
        .get("x-request-id")
        .expect("a request id reached the backend");
    assert_ne!(
        id, "client-chosen",
        "the named header goes, then ours is set"
    );
    assert_eq!(
        a.headers.get("x-request-id"),
        Some(id),
        "the client sees the same id"
    );
    let xff = got
        .get("x-forwarded-for")
        .expect("x-forwarded-for reached the backend");
    assert_eq!(xff, "127.0.0.1");
}

#[tokio::test]
async fn connect_repeated_host_and_ambiguous_framing_are_refused() {
    let green = Recorder::start().await;
    let config = TestConfig::canary(100.0).backend_url("green", &green.url());
    let h = ProxyHarness::start(&config).await;
    let wait = Duration::from_secs(5);
    let connect = exchange(
        h.data_addr(),
        b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nhost: 127.0.0.1:22\r\n\r\n",
        wait,
    )
    .await;
    assert!(matches!(status_of(&connect), 405 | 501), "{connect}");
    let hosts = exchange(
        h.data_addr(),
        b"GET /v2/models/m HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
        wait,
    )
    .await;
    assert_eq!(status_of(&hosts), 400, "{hosts}");
    let lengths = exchange(
        h.data_addr(),
        b"POST /v2/models/m/infer HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}",
        wait,
    )
    .await;
    assert_eq!(status_of(&lengths), 400, "{lengths}");
    assert!(green.seen().is_empty(), "none of these reached the backend");

    // Transfer-Encoding frames the body; the Content-Length is not forwarded, and what
    // follows the body on the connection never reaches the backend as a request.
    let smuggle = b"POST /v2/models/m/infer HTTP/1.1\r\nhost: a\r\ncontent-length: 40\r\n\
                    transfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n\
                    GET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n";
    let answer = exchange(h.data_addr(), smuggle, wait).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert_eq!(
        answer.matches("HTTP/1.1 ").count(),
        1,
        "the connection closes: {answer}"
    );
    let seen = green.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].body.as_deref().ok(), Some(&b"{}"[..]));
    assert!(
        !seen[0].headers.contains_key("content-length") || seen[0].headers["content-length"] == "2"
    );
}

// === redaction ===

#[tokio::test]
async fn a_shadow_answer_that_is_not_json_leaks_no_redacted_value() {
    let blue = Recorder::answering(
        r#"{"token":"s3cr3t-live","outputs":[{"name":"y","shape":[1],"datatype":"FP32","data":[1.0]}]}"#,
        "application/json",
    )
    .await;
    // The candidate breaks its format and echoes the secret in plain text.
    let green = Recorder::answering("error: token=s3cr3t-shadow not valid", "text/plain").await;
    let config = TestConfig::shadow()
        .compare_redact(&["/token"])
        .backend_url("blue", &blue.url())
        .backend_url("green", &green.url());
    let h = ProxyHarness::start(&config).await;
    for _ in 0..3 {
        assert_eq!(h.infer(None).await.status, 200);
    }
    let diffs = support::eventually(
        "a disagreement listed",
        Duration::from_millis(20),
        || async {
            let d = h
                .admin(http::Method::GET, "/api/v1/shadow/diffs", None, "")
                .await
                .json();
            match d["diffs"].as_array() {
                Some(a) if !a.is_empty() => Ok(d),
                _ => Err(d.to_string()),
            }
        },
    )
    .await;
    let shown = diffs.to_string();
    assert!(!shown.contains("s3cr3t"), "a secret leaked: {shown}");
    let d = &diffs["diffs"][0];
    assert_eq!(d["live"]["body"]["token"], "[redacted]", "{d}");
    assert_eq!(
        d["shadow"]["body"], "(36 bytes, not JSON: not shown)",
        "{d}"
    );
    let where_ = d["differences"][0]["live"].as_str().unwrap_or("");
    assert!(where_.contains("first difference at byte 0"), "{d}");
}
