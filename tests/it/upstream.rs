//! Backends as a client of theirs sees switchyard: answers that come before the request's
//! body has been read, and the bound on each backend's connections.

use crate::support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use support::config::TestConfig;
use support::ProxyHarness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How a [`RawBackend`] answers each request.
#[derive(Debug, Clone, Copy)]
enum Answers {
    /// With this status as soon as it has the head; it never reads the body and keeps
    /// the connection open (as gateways that refuse a request early do).
    Early(u16),
    /// With 200 once it has read the whole body, after this long; then it waits for the
    /// next request on the connection.
    AfterBody(Duration),
}

/// A backend on plain TCP that counts its connections: those it accepted, and the most
/// ever open at once (accepted and not yet closed by switchyard).
struct RawBackend {
    url: String,
    accepted: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl RawBackend {
    async fn start(answers: Answers) -> RawBackend {
        // A small receive buffer: a body the backend does not read soon fills it, and
        // what switchyard cannot send stays unsent.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(16 * 1024).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1024).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (a, o, p) = (accepted.clone(), open.clone(), peak.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                a.fetch_add(1, Ordering::SeqCst);
                let now = o.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                let o = o.clone();
                tokio::spawn(async move {
                    serve_raw(stream, answers).await;
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        RawBackend {
            url,
            accepted,
            peak,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// Serves one backend connection until switchyard closes it.
async fn serve_raw(mut stream: TcpStream, answers: Answers) {
    let mut buf = Vec::new();
    while let Some(head) = read_head(&mut stream, &mut buf).await {
        match answers {
            Answers::Early(status) => {
                let _ = stream.write_all(&response(status, b"{}")).await;
                // Holds the connection, reading nothing more (the test ends first).
                tokio::time::sleep(Duration::from_secs(60)).await;
                return;
            }
            Answers::AfterBody(delay) => {
                let length = content_length(&head);
                while buf.len() < length {
                    let mut chunk = vec![0u8; 64 * 1024];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                buf.drain(..length);
                tokio::time::sleep(delay).await;
                if stream.write_all(&response(200, b"{}")).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Reads one request or response head from `stream` into `buf`; returns it and leaves in
/// `buf` what came after it. `None` when the stream ends first.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            return Some(head);
        }
        let mut chunk = vec![0u8; 64 * 1024];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The `content-length` of a head, 0 when it has none.
fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A whole HTTP/1.1 answer with `status` and `body`.
fn response(status: u16, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// One keep-alive client connection that sends a request's whole body before it reads
/// anything of the answer, as most HTTP client libraries do.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    /// POSTs `body`, then reads the answer: its status and head.
    async fn post(&mut self, body: &[u8]) -> (u16, String) {
        self.send_head(body.len()).await;
        self.stream.write_all(body).await.unwrap();
        self.answer().await
    }

    /// POSTs the first `first` bytes of `body`, reads the answer, then sends the rest.
    async fn post_answered_early(&mut self, body: &[u8], first: usize) -> (u16, String) {
        self.send_head(body.len()).await;
        self.stream.write_all(&body[..first]).await.unwrap();
        let answer = self.answer().await;
        self.stream.write_all(&body[first..]).await.unwrap();
        answer
    }

    async fn send_head(&mut self, length: usize) {
        let head = format!(
            "POST /v2/models/m/infer HTTP/1.1\r\nhost: switchyard\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
        );
        self.stream.write_all(head.as_bytes()).await.unwrap();
    }

    /// Reads one answer: its status and head.
    async fn answer(&mut self) -> (u16, String) {
        let head = read_head(&mut self.stream, &mut self.buf)
            .await
            .expect("an answer before the connection closed");
        let length = content_length(&head);
        while self.buf.len() < length {
            let mut chunk = vec![0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the connection closed inside the answer");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        self.buf.drain(..length);
        let status = head[9..12].parse().unwrap();
        (status, head)
    }
}

/// A V2-sized request body of `n` bytes.
fn tensor(n: usize) -> Vec<u8> {
    vec![b'7'; n]
}

/// How a test client sends its body.
#[derive(Debug, Clone, Copy)]
enum Sending {
    /// All of it, then it reads the answer.
    Whole,
    /// 64 KiB, then it reads the answer, then the rest.
    ReadingEarly,
}

/// Sends `sizes` one after the other on one keep-alive connection; each must be answered
/// with `status` within 2 s.
async fn sequential_posts(h: &ProxyHarness, sizes: &[usize], sending: Sending, status: u16) {
    let mut client = Client::connect(h.data_addr()).await;
    for (i, &size) in sizes.iter().enumerate() {
        let body = tensor(size);
        let post = async {
            match sending {
                Sending::Whole => client.post(&body).await,
                Sending::ReadingEarly => client.post_answered_early(&body, 64 * 1024).await,
            }
        };
        let answered = tokio::time::timeout(Duration::from_secs(2), post).await;
        let (got, head) = answered
            .unwrap_or_else(|_| panic!("request {i} ({size} bytes) not answered within 2 s"));
        assert_eq!(got, status, "request {i} ({size} bytes): {head}");
        assert!(
            head.contains("x-switchyard-variant: blue"),
            "request {i}: {head}"
        );
    }
}

/// 100 requests of 1.3 MB, then a few of 1 MB and of 4 MB (under the default
/// `limits.max_body` of 4 MiB).
fn large_tensors() -> Vec<usize> {
    let mut sizes = vec![1_300_000; 100];
    sizes.extend([1_000_000, 4_000_000, 1_000_000, 4_000_000, 4_000_000]);
    sizes
}

/// Sends [`large_tensors`] to a backend that answers each with `status` before it reads
/// the body, to a client that reads the answer while it still sends: every answer comes
/// at once, the client's connection goes on, and each backend connection is closed
/// after its answer (the backend never reads the rest: another request sent there
/// would never be answered).
async fn early_answers(status: u16) {
    let backend = RawBackend::start(Answers::Early(status)).await;
    let h = ProxyHarness::start(&TestConfig::stable_only().backend_url("blue", &backend.url)).await;
    let sizes = large_tensors();
    sequential_posts(&h, &sizes, Sending::ReadingEarly, status).await;
    assert_eq!(backend.accepted(), sizes.len(), "one connection a request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_refusal_reaches_the_client_and_closes_its_backend_connection() {
    early_answers(413).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_success_reaches_the_client_and_closes_its_backend_connection() {
    early_answers(200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_refusal_reaches_a_client_that_reads_only_once_it_has_sent_its_body() {
    // 16 MB: more than the kernel holds between switchyard and a backend that stops
    // reading, so the client is still sending when the answer comes; switchyard reads
    // the rest and throws it away.
    let backend = RawBackend::start(Answers::Early(413)).await;
    let config = TestConfig::stable_only()
        .backend_url("blue", &backend.url)
        .max_body("32MiB");
    let h = ProxyHarness::start(&config).await;
    sequential_posts(&h, &[16_000_000; 3], Sending::Whole, 413).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_reads_the_whole_body_keeps_its_connection() {
    let backend = RawBackend::start(Answers::AfterBody(Duration::ZERO)).await;
    let h = ProxyHarness::start(&TestConfig::stable_only().backend_url("blue", &backend.url)).await;
    sequential_posts(&h, &[1_300_000; 20], Sending::Whole, 200).await;
    assert_eq!(
        backend.accepted(),
        1,
        "every request went over one connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_never_has_more_connections_than_its_bound_and_requests_beyond_wait() {
    // A backend that takes 1 s a request, 8 connections, 2.5 s to wait for one: 8 at a
    // time are served, in three rounds (at 0, 1 and 2 s); the others get 503 after 2.5 s.
    let backend = RawBackend::start(Answers::AfterBody(Duration::from_secs(1))).await;
    let config = TestConfig::stable_only()
        .backend_url("blue", &backend.url)
        .backend_timeout("blue", "2500ms")
        .backend_max_connections("blue", 8);
    let h = ProxyHarness::start(&config).await;
    let saturated =
        r#"switchyard_upstream_errors_total{backend="blue",kind="saturated",route="default"}"#;
    let before = h.metric(saturated).await;
    // 500 slow requests at once: 8 connections, never 500.
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..500 {
        let (client, url) = (h.client.clone(), h.url("/v2/models/m/infer"));
        tasks.spawn(async move {
            let started = Instant::now();
            let a = support::send(&client, Method::POST, &url, &[], support::INFER.into()).await;
            (a, started.elapsed())
        });
    }
    let (mut served, mut refused) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        let (a, took) = done.unwrap();
        assert_eq!(a.variant(), "blue");
        match a.status {
            StatusCode::OK => served += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                refused += 1;
                assert!(took >= Duration::from_millis(2500), "503 after {took:?}");
                assert_eq!(a.json()["backend"], "blue");
                let error = a.json()["error"].as_str().unwrap().to_string();
                assert!(error.contains("saturated"), "{error}");
            }
            other => panic!("{other}: {}", String::from_utf8_lossy(&a.body)),
        }
    }
    assert_eq!(backend.peak(), 8, "connections open at once");
    // 8 a second while requests kept coming (they connect over a while): at least the
    // first three rounds, and never more than 8 connections' worth.
    let rounds = started.elapsed().as_secs() as u32 + 1;
    assert!(
        (16..=8 * rounds).contains(&served),
        "{served} served in {rounds} s"
    );
    assert_eq!(served + refused, 500);
    h.wait_metric(saturated, before + f64::from(refused)).await;
}

#[test]
fn a_backend_needs_room_for_one_connection_at_least() {
    let text = TestConfig::stable_only()
        .backend_max_connections("blue", 0)
        .render();
    let problems = switchyard::config::parse(&text).unwrap_err();
    let found = problems
        .0
        .iter()
        .any(|p| p.path == "backends.blue.max_connections" && p.message.contains("between 1 and"));
    assert!(found, "{problems}");
}
