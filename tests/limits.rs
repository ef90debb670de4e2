//! Limits and faults: bodies over `max_body` in h2c, and config files read only once
//! their writes have settled. (No other test here has a reload rejected:
//! `switchyard_config_reloads_total` is process-wide.)

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::config::TestConfig;
use support::ProxyHarness;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_written_in_two_parts_is_applied_once_whole() {
    let h = ProxyHarness::start(&TestConfig::canary(0.0)).await;
    let rejected = r#"switchyard_config_reloads_total{result="rejected"}"#;
    let before = h.metric(rejected).await;
    let text = h.render(&TestConfig::canary(100.0));
    let (half, rest) = text.split_at(text.len() / 2);
    assert!(
        switchyard::config::parse(half).is_err(),
        "half of it is a config: {half}"
    );
    // Written in place, with a pause in the middle, as a slow editor or a copy would.
    let mut file = std::fs::File::create(&h.config_path).unwrap();
    std::io::Write::write_all(&mut file, half.as_bytes()).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    std::io::Write::write_all(&mut file, rest.as_bytes()).unwrap();
    drop(file);
    let s = h
        .wait_status("the whole file applied", |s| s["weight"] == 100.0)
        .await;
    assert_eq!(s["config"]["generation"], 2, "applied more than once");
    assert!(s["config"]["last_error"].is_null(), "{}", s["config"]);
    // Nothing more comes of it: no second reload, and the half was never rejected.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(h.status().await["config"]["generation"], 2);
    assert_eq!(
        h.metric(rejected).await,
        before,
        "the half-written file was rejected"
    );
}
