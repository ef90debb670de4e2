//! Limits and faults: connections beyond `max_connections`, clients that take no answer
//! bytes (`send_timeout`), shutdown's `drain_timeout`, bodies over `max_body` in h2c, the
//! validation of these keys. (A config file read only once its writes have settled:
//! tests/reload_alone.rs, in a process of its own.)

use crate::support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::config::{line_of, TestConfig};
use support::ProxyHarness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An HTTP/2 (prior knowledge) connection to `addr`, its connection driven on a task.
async fn h2c<B>(addr: std::net::SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// A request body of `n` chunks of `size` bytes, with no length known in advance.
type Chunked = StreamBody<
    futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::convert::Infallible>>>,
>;

fn chunked(n: usize, size: usize) -> Chunked {
    let chunks = (0..n).map(|_| Ok(Frame::data(Bytes::from(vec![b'y'; size]))));
    StreamBody::new(futures_util::stream::iter(chunks.collect::<Vec<_>>()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_body_streamed_over_max_body_is_413() {
    let h = ProxyHarness::start(&TestConfig::canary(0.0).max_body("1KiB")).await;
    let mut sender = h2c(h.data_addr()).await;
    // Four 512-byte chunks and no content-length: only counting them while they stream
    // finds the body too large.
    let req = http::Request::post(h.url("/echo"))
        .body(chunked(4, 512))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("an answer within 10 s")
        .expect("an answer, not a reset");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(resp.headers()["x-switchyard-variant"], "blue");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("too large"),
        "{body:?}"
    );
    // Under the limit, the same way, it goes through.
    let req = http::Request::post(h.url("/echo"))
        .body(chunked(2, 500))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// Sends one keep-alive GET on `s` and reads its answer (the demo model's answers are
/// small and come in one read); empty when the server closed the connection instead.
async fn get(s: &mut TcpStream) -> String {
    let request = b"GET /echo HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut buf = vec![0u8; 4096];
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        s.write_all(request).await?;
        s.read(&mut buf).await
    });
    match answered.await.expect("an answer or a close within 5 s") {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(_) => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_are_closed_at_once_and_counted() {
    let config = TestConfig::canary(0.0).max_connections(4);
    let h = ProxyHarness::start(&config).await;
    let refused = r#"switchyard_connections_refused_total{listener="data"}"#;
    let before = h.metric(refused).await;
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(h.data_addr()).await.unwrap();
        assert!(get(&mut s).await.starts_with("HTTP/1.1 200"));
        open.push(s);
    }
    let mut fifth = TcpStream::connect(h.data_addr()).await.unwrap();
    let answer = get(&mut fifth).await;
    assert!(answer.is_empty(), "the fifth was served: {answer}");
    h.wait_metric(refused, before + 1.0).await;
    assert_eq!(h.metric(refused).await, before + 1.0);
    // The four kept alive are still served.
    for s in &mut open {
        assert!(get(s).await.starts_with("HTTP/1.1 200"));
    }

    // One closes: a new connection is served (once the proxy has seen the close).
    drop(open.pop());
    let replacement =
        support::eventually("room for one more", Duration::from_millis(20), || async {
            let mut s = TcpStream::connect(h.data_addr()).await.unwrap();
            let head = get(&mut s).await;
            if head.starts_with("HTTP/1.1 200") {
                Ok(s)
            } else {
                Err(format!("answered {head:?}"))
            }
        });
    open.push(replacement.await);

    // A reload that raises the limit applies to the next connection.
    h.write_config(&config.clone().max_connections(5));
    h.wait_status("reload", |s| s["config"]["generation"] == 2)
        .await;
    let mut fifth = TcpStream::connect(h.data_addr()).await.unwrap();
    assert!(get(&mut fifth).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_drain_timeout_for_in_flight_requests_then_closes_them() {
    let mut h = ProxyHarness::start(&TestConfig::canary(0.0).drain_timeout("300ms")).await;
    h.blue.behavior().set_delay(Duration::from_secs(5));
    let req = http::Request::get(h.url("/echo"))
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let in_flight = tokio::spawn(h.client.request(req));
    h.wait_hits(&h.blue, 1).await;
    let started = std::time::Instant::now();
    h.shutdown().await;
    // Not the 5 s the answer would take: the drain timeout, and a little.
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2500), "shutdown took {took:?}");
    let answer = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the in-flight request ends with the shutdown")
        .unwrap();
    assert!(
        answer.is_err(),
        "answered after the drain timeout: {answer:?}"
    );
}

#[test]
fn the_new_limits_are_validated_with_their_field_and_line() {
    let config = TestConfig::canary(0.0)
        .max_connections(0)
        .send_timeout("0s")
        .drain_timeout("0ms");
    let text = config.render();
    let problems = switchyard::config::parse(&text).unwrap_err();
    for (field, on_line, says) in [
        ("limits.max_connections", "max_connections: 0", "at least 1"),
        ("limits.send_timeout", "send_timeout: 0s", "more than 0"),
        ("limits.drain_timeout", "drain_timeout: 0ms", "more than 0"),
    ] {
        let p = problems
            .0
            .iter()
            .find(|p| p.path == field)
            .unwrap_or_else(|| panic!("no problem at {field}: {problems}"));
        assert_eq!(p.line, Some(line_of(&text, on_line)), "{p}");
        assert!(p.message.contains(says), "{p}");
    }
    assert_eq!(problems.0.len(), 3, "{problems}");
    // Absent, they take their defaults.
    let limits = TestConfig::canary(0.0).parse().limits;
    assert_eq!(limits.max_connections, 10_000);
    assert_eq!(limits.send_timeout.0, Duration::from_secs(60));
    assert_eq!(limits.drain_timeout.0, Duration::from_secs(10));
}

/// A backend that answers every request with [`BIG`] bytes, streamed in 64 KiB chunks,
/// and counts its connections still open.
struct BigAnswers {
    url: String,
    open: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
}

/// 20 MB: more than the kernel buffers between a backend and a client hold together.
const BIG: usize = 20 << 20;

async fn big_answers() -> BigAnswers {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (open, accepted) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (count, total) = (open.clone(), accepted.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            total.fetch_add(1, Ordering::SeqCst);
            let svc = hyper::service::service_fn(|_req| async {
                let chunks = (0..BIG / (64 << 10)).map(|_| {
                    Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![
                        b'z';
                        64 << 10
                    ])))
                });
                let body = StreamBody::new(futures_util::stream::iter(chunks));
                Ok::<_, std::convert::Infallible>(http::Response::new(body))
            });
            let count = count.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                count.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    BigAnswers {
        url,
        open,
        accepted,
    }
}

impl BigAnswers {
    /// Waits (bounded) until the backend has had one connection and has none open.
    async fn wait_released(&self) {
        support::eventually(
            "the upstream connection released",
            Duration::from_millis(20),
            || async {
                let (accepted, open) = (
                    self.accepted.load(Ordering::SeqCst),
                    self.open.load(Ordering::SeqCst),
                );
                if accepted >= 1 && open == 0 {
                    Ok(())
                } else {
                    Err(format!("{accepted} accepted, {open} open"))
                }
            },
        )
        .await;
    }
}

/// How many bytes the client reads from `s` until the server closes it.
async fn drain(s: &mut TcpStream) -> usize {
    let mut total = 0;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return total,
            Ok(Ok(n)) => total += n,
            Err(_) => panic!("still open 10 s after {total} bytes"),
        }
    }
}

/// Counts the clients cut off for taking no answer bytes.
const TIMED_OUT: &str = r#"switchyard_connections_send_timeout_total{listener="data"}"#;

/// A backend of big answers behind switchyard with `send_timeout: 1s`, and the count of
/// clients cut off so far.
async fn behind_a_send_timeout_of_a_second() -> (BigAnswers, ProxyHarness, f64) {
    let backend = big_answers().await;
    let config = TestConfig::canary(0.0)
        .backend_url("blue", &backend.url)
        .send_timeout("1s");
    let h = ProxyHarness::start(&config).await;
    let before = h.metric(TIMED_OUT).await;
    (backend, h, before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_client_that_reads_nothing_is_cut_off_and_its_upstream_released() {
    let (backend, h, before) = behind_a_send_timeout_of_a_second().await;
    // A small receive buffer, and nothing read: the proxy's writes soon wait.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut client = socket.connect(h.data_addr()).await.unwrap();
    client
        .write_all(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    // Cut off after the send timeout: the backend's connection is closed, and counted.
    backend.wait_released().await;
    h.wait_metric(TIMED_OUT, before + 1.0).await;
    // What the client reads now is what was in flight when it was cut off, not the answer.
    let got = drain(&mut client).await;
    assert!(got < BIG, "the whole answer came: {got} bytes");
    // Others are served as before.
    assert_eq!(h.get("/echo", &[]).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_client_that_grants_no_window_is_cut_off_and_its_upstream_released() {
    let (backend, h, before) = behind_a_send_timeout_of_a_second().await;
    // The client's HTTP/2 stack reads the socket; the answer is never read, so its
    // flow-control window runs out and the proxy's socket never blocks.
    let mut sender = h2c::<http_body_util::Empty<Bytes>>(h.data_addr()).await;
    let req = http::Request::get(h.url("/big"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    backend.wait_released().await;
    h.wait_metric(TIMED_OUT, before + 1.0).await;
    // Read now, the answer breaks off: the connection is gone.
    let read = resp.into_body().collect().await;
    assert!(read.is_err(), "the whole answer came");
}
