//! Streamed answers (chunked `text/event-stream`, as LLM servers send tokens) reach the
//! client as the backend sends them, mirrored or not; a mirrored stream is compared once
//! both streams have ended.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::net::TcpListener;

use support::config::{step, TestConfig};
use support::ProxyHarness;

/// How many events a stream has, and how far apart the backend sends them.
const EVENTS: usize = 5;
const EVERY: Duration = Duration::from_millis(100);

/// A backend that answers every request with [`EVENTS`] server-sent events, one every
/// [`EVERY`], and notes when it sent each (for the requests not marked as mirrored).
async fn event_stream_backend() -> (String, Arc<Mutex<Vec<Instant>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sent = Arc::new(Mutex::new(Vec::new()));
    let log = sent.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let live = !req.headers().contains_key("x-switchyard-shadow");
                    let log = log.clone();
                    let frames = futures_util::stream::unfold(0, move |n| {
                        let log = log.clone();
                        async move {
                            if n == EVENTS {
                                return None;
                            }
                            if n > 0 {
                                tokio::time::sleep(EVERY).await;
                            }
                            if live {
                                log.lock().unwrap().push(Instant::now());
                            }
                            let event = Bytes::from(format!("data: {{\"token\": {n}}}\n\n"));
                            Some((Ok::<_, std::convert::Infallible>(Frame::data(event)), n + 1))
                        }
                    });
                    async move {
                        let mut resp = http::Response::new(StreamBody::new(frames));
                        resp.headers_mut()
                            .insert("content-type", "text/event-stream".parse().unwrap());
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc),
            );
        }
    });
    (url, sent)
}

/// Reads one streamed answer through `h`; returns the route that took it and when each
/// event arrived.
async fn arrivals(h: &ProxyHarness) -> (String, Vec<Instant>) {
    let req = http::Request::post(h.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from_static(
            br#"{"model":"m","stream":true}"#,
        )))
        .unwrap();
    let resp = h.client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let route = resp.headers()["x-switchyard-route"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    let mut received = Vec::new();
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("the stream goes on")
    {
        received.extend_from_slice(&frame.unwrap().into_data().unwrap());
        // An event may come split over frames or joined with the next: count the
        // events completed so far, and note when each completed.
        let complete = received.windows(2).filter(|w| w == b"\n\n").count();
        let now = Instant::now();
        seen.resize(complete, now);
    }
    (route, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_client_as_they_are_sent_mirrored_or_not() {
    let (blue, sent) = event_stream_backend().await;
    let (green, _) = event_stream_backend().await;
    let cases = [
        ("all to stable", TestConfig::canary(0.0)),
        (
            "mirrored",
            TestConfig::new().steps([step(0.0).mirror(100.0).manual(), step(100.0)]),
        ),
        // The route is found by the `model` of the request's body, read before it goes on.
        (
            "mirrored, routed by the body's model",
            TestConfig::new()
                .steps([step(0.0).mirror(100.0).manual(), step(100.0)])
                .routed("chat", "m"),
        ),
    ];
    for (name, config) in cases {
        let config = config
            .backend_url("blue", &blue)
            .backend_url("green", &green);
        let h = ProxyHarness::start(&config).await;
        sent.lock().unwrap().clear();
        let (route, arrived) = arrivals(&h).await;
        let expected = if name.contains("routed") {
            "chat"
        } else {
            "default"
        };
        assert_eq!(route, expected, "{name}");
        let sent = sent.lock().unwrap().clone();
        assert_eq!((arrived.len(), sent.len()), (EVENTS, EVENTS), "{name}");
        let delays: Vec<Duration> = sent.iter().zip(&arrived).map(|(s, a)| *a - *s).collect();
        println!("{name}: each event reached the client this long after it was sent: {delays:?}");
        // Each event is delivered before the backend sends the next: nothing is
        // held back until the answer ends (which would take 400 ms here).
        for (i, d) in delays.iter().enumerate() {
            assert!(
                *d < EVERY,
                "{name}: event {i} arrived {d:?} after it was sent"
            );
        }
        if name.starts_with("mirrored") {
            // The copy's stream is compared with the live one once both have ended.
            h.wait_status("the mirrored stream compared", |s| {
                s["window"]["candidate"]["shadow"]["agree"] == 1
            })
            .await;
        }
    }
}
