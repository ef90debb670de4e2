//! What a client can send, tried as an attacker would: nothing it sends may count
//! against a backend or move a rollout, and nothing switchyard sets may be forged or
//! stripped by it.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::config::{step, Analysis, TestConfig};
use support::ProxyHarness;

// === a backend that records what reaches it ===

/// One request as the backend received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    headers: HeaderMap,
    /// The body, or why it could not be read to its end.
    body: Result<Bytes, String>,
}

/// A V2-speaking backend that records every request it receives.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// The V2 answer a [`Recorder`] gives unless told otherwise.
const V2_ANSWER: &str = r#"{"outputs":[{"name":"y","shape":[1],"datatype":"FP32","data":[1.0]}]}"#;

impl Recorder {
    async fn start() -> Recorder {
        Recorder::answering(V2_ANSWER, "application/json").await
    }

    /// A recorder that answers every request with `answer` of `content_type`.
    async fn answering(answer: &'static str, content_type: &'static str) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                let svc = service_fn(move |req: Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .map_err(|e| e.to_string());
                        log.lock().unwrap().push(Seen {
                            method: parts.method.to_string(),
                            headers: parts.headers,
                            body,
                        });
                        let mut resp =
                            Response::new(Full::new(Bytes::from_static(answer.as_bytes())));
                        resp.headers_mut()
                            .insert("content-type", content_type.parse().unwrap());
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
        Recorder { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests whose body arrived whole.
    fn complete(&self) -> usize {
        self.seen().iter().filter(|s| s.body.is_ok()).count()
    }
}

// === raw client connections ===

/// Writes `bytes` on a new connection to `addr`, then reads what comes back until the
/// connection closes or `wait` passes.
async fn exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    read_for(&mut stream, wait).await
}

async fn read_for(stream: &mut TcpStream, wait: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first answer in `text`, 0 when there is none.
fn status_of(text: &str) -> u16 {
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A POST head to the candidate (by the override header) declaring `len` body bytes.
fn head_to_candidate(len: usize) -> String {
    format!(
        "POST /v2/models/m/infer HTTP/1.1\r\nhost: x\r\nx-switchyard-route: green\r\n\
         content-type: application/json\r\ncontent-length: {len}\r\n\r\n"
    )
}

// === attribution ===

/// A canary at weight 0 whose candidate only the override header reaches, without
/// fallback, guarded by a fast rollback after 3 failures and an error-rate gate.
fn guarded(candidate_url: &str) -> TestConfig {
    TestConfig::new()
        .steps([step(0.0).manual(), step(100.0)])
        .fast_rollback(3)
        .analysis(Analysis::new("1s", "30s", 1, 1))
        .gate_error_rate(0.01)
        .backend_url("green", candidate_url)
}

/// Asserts that nothing was counted against the candidate and the rollout did not move.
async fn assert_candidate_unharmed(h: &ProxyHarness, what: &str) {
    let s = h.status().await;
    assert_eq!(s["phase"], "progressing", "{what}: {s}");
    assert_eq!(s["step"], 0, "{what}: {s}");
    let errors = &s["window"]["candidate"]["errors"];
    assert_eq!(errors, &Value::from(0), "{what}: {}", s["window"]);
    for kind in ["connect", "timeout", "protocol", "status", "truncated"] {
        let series =
            format!("switchyard_upstream_errors_total{{backend=\"green\",kind=\"{kind}\"}}");
        assert_eq!(h.metric(&series).await, 0.0, "{what}: {series}");
    }
}

#[tokio::test]
async fn aborted_uploads_at_the_candidate_count_against_nobody() {
    let green = Recorder::start().await;
    let h = ProxyHarness::start(&guarded(&green.url())).await;
    let before = h
        .metric("switchyard_client_errors_total{reason=\"body_aborted\"}")
        .await;
    for _ in 0..5 {
        let mut stream = TcpStream::connect(h.data_addr()).await.unwrap();
        let mut bytes = head_to_candidate(1000).into_bytes();
        bytes.extend_from_slice(&[b' '; 100]);
        stream.write_all(&bytes).await.unwrap();
        drop(stream); // gone, 900 bytes short
    }
    h.wait_metric(
        "switchyard_client_errors_total{reason=\"body_aborted\"}",
        before + 5.0,
    )
    .await;
    // Past an evaluation, which would roll back on a single counted error.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(green.complete(), 0, "no whole request reached the backend");
    assert_candidate_unharmed(&h, "aborted uploads").await;
}

#[tokio::test]
async fn malformed_uploads_at_the_candidate_get_400_and_count_against_nobody() {
    let green = Recorder::start().await;
    let h = ProxyHarness::start(&guarded(&green.url())).await;
    for _ in 0..5 {
        let req = "POST /v2/models/m/infer HTTP/1.1\r\nhost: x\r\nx-switchyard-route: green\r\n\
                   transfer-encoding: chunked\r\n\r\n5\r\n{\"in\"\r\nzz\r\n";
        let answer = exchange(h.data_addr(), req.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(status_of(&answer), 400, "{answer}");
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(green.complete(), 0, "no whole request reached the backend");
    assert_candidate_unharmed(&h, "malformed uploads").await;
}

#[tokio::test]
async fn trickled_uploads_get_408_and_count_against_nobody() {
    let green = Recorder::start().await;
    // The body deadline, then the backend's own timeout, each running out first.
    let cases = [
        ("body_timeout", guarded(&green.url()).body_timeout("300ms")),
        (
            "backend timeout",
            guarded(&green.url()).backend_timeout("green", "300ms"),
        ),
    ];
    for (name, config) in cases {
        let h = ProxyHarness::start(&config).await;
        for _ in 0..4 {
            let mut bytes = head_to_candidate(1000).into_bytes();
            bytes.extend_from_slice(&[b' '; 10]);
            let answer = exchange(h.data_addr(), &bytes, Duration::from_secs(5)).await;
            assert_eq!(status_of(&answer), 408, "{name}: {answer}");
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_candidate_unharmed(&h, name).await;
    }
    assert_eq!(green.complete(), 0, "no whole request reached the backend");
}

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
    let series = "switchyard_upstream_errors_total{backend=\"blue\",kind=\"truncated\"}";
    let before = h.metric(series).await;
    let mut stream = TcpStream::connect(h.data_addr()).await.unwrap();
    stream
        .write_all(b"GET /v2/models/m HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_for(&mut stream, Duration::from_secs(5)).await;
    // The head may or may not have gone out; the answer never completes.
    assert!(
        answer.is_empty() || (status_of(&answer) == 200 && !answer.ends_with("\r\n\r\n")),
        "{answer}"
    );
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
