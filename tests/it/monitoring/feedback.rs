//! `POST /api/v1/feedback` as a label sender meets it: refused with the reason when no
//! route remembers predictions (409) or the body is over `feedback.max_body` (413);
//! parsed off the runtime that serves requests, so live traffic goes on while large
//! batches are read; and request ids recorded as the client sent them.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::config::TestConfig;
use crate::support::{eventually, Answer, ProxyHarness, INFER};

/// Posts `body` as labels, waiting up to a minute for the answer (a large batch is read
/// at a low priority on a busy machine).
async fn post_labels(h: &ProxyHarness, body: Bytes) -> Answer {
    let req = Request::builder()
        .method(Method::POST)
        .uri(h.admin_url("/api/v1/feedback"))
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(60), h.client.request(req))
        .await
        .expect("answer within a minute")
        .expect("request sent");
    let (parts, body) = resp.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// A batch of `n` labels for ids no request had, as JSON.
fn batch_of(n: usize) -> String {
    let mut s = String::with_capacity(n * 48 + 16);
    s.push_str(r#"{"feedback":["#);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            r#"{{"request_id":"label-{i:012}","label":{}}}"#,
            i % 3
        ));
    }
    s.push_str("]}");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_without_a_feedback_block_are_refused_with_409_saying_why() {
    let h = ProxyHarness::start(&TestConfig::stable_only().monitor(json!({ "sample": 100 }))).await;
    let a = h.infer(None).await;
    assert_eq!(a.status, StatusCode::OK);
    let id = a.headers["x-request-id"].to_str().unwrap().to_string();
    let body = json!({ "request_id": id, "label": 1 }).to_string();
    let refused = h.admin(Method::POST, "/api/v1/feedback", None, &body).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{:?}", refused.body);
    let msg = refused.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.contains("no route remembers predictions") && msg.contains("feedback:"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feedback_body_over_max_body_is_refused_with_413() {
    let config = TestConfig::stable_only().feedback(json!({ "max_body": "1KiB" }));
    let h = ProxyHarness::start(&config).await;
    let small = batch_of(10);
    assert!(small.len() < 1024);
    let ok = post_labels(&h, small.into()).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);

    let large = batch_of(40);
    assert!(large.len() > 1024);
    let refused = post_labels(&h, large.clone().into()).await;
    assert_eq!(
        refused.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{:?}",
        refused.body
    );
    let msg = refused.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("feedback.max_body (1KiB)"), "{msg}");

    // Without a length up front (chunked), the limit holds as the body arrives.
    let mut conn = tokio::net::TcpStream::connect(h.admin_addr())
        .await
        .unwrap();
    let head = "POST /api/v1/feedback HTTP/1.1\r\nhost: 127.0.0.1\r\n\
                content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    conn.write_all(head.as_bytes()).await.unwrap();
    for piece in large.as_bytes().chunks(200) {
        let chunk = format!(
            "{:x}\r\n{}\r\n",
            piece.len(),
            String::from_utf8_lossy(piece)
        );
        if conn.write_all(chunk.as_bytes()).await.is_err() {
            break; // answered and closed before the end
        }
    }
    let _ = conn.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

/// Live requests go on while two 16 MiB label batches are parsed and joined: on a
/// runtime of one thread, which serves the proxy, the admin API and this test alike, a
/// live answer arrives while a batch is being parsed. Were the parse on that runtime,
/// nothing else could run until it ended, and no live answer could see it in progress.
/// (How much the parse slows live requests is a timing figure, measured apart: see
/// docs/capture-and-feedback.md.)
#[tokio::test(flavor = "current_thread")]
async fn live_requests_are_answered_while_large_label_batches_are_parsed() {
    let config = TestConfig::stable_only().feedback(json!({ "max_body": "16MiB" }));
    let h = ProxyHarness::start(&config).await;
    // 47 bytes a label: as many as fit in 16 MiB.
    let body = Bytes::from(batch_of(((16 << 20) - 16) / 47));
    let n = {
        let v: Value = serde_json::from_slice(&body).unwrap();
        v["feedback"].as_array().unwrap().len() as u64
    };
    assert!(body.len() <= 16 << 20, "{} bytes", body.len());

    let posts = async {
        let (a, b) = tokio::join!(post_labels(&h, body.clone()), post_labels(&h, body.clone()));
        [a, b]
    };
    // Live requests, one after another, until the posts are answered; each answer notes
    // whether a batch was being parsed when it came.
    let answered = std::cell::Cell::new(0u64);
    let during_parse = std::cell::Cell::new(0u64);
    let live = async {
        loop {
            let a = h.infer(None).await;
            assert_eq!(a.status, StatusCode::OK);
            answered.set(answered.get() + 1);
            if switchyard::admin::labels::parsing() > 0 {
                during_parse.set(during_parse.get() + 1);
            }
            tokio::task::yield_now().await;
        }
    };
    let answers = tokio::select! {
        answers = posts => answers,
        never = live => never,
    };
    for a in &answers {
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        let j = a.json();
        let total: u64 = ["matched", "unmatched", "ambiguous", "waiting"]
            .iter()
            .map(|k| j[k].as_u64().unwrap())
            .sum();
        assert_eq!(total, n, "{j}");
    }
    let (answered, during_parse) = (answered.get(), during_parse.get());
    assert!(
        during_parse >= 10,
        "only {during_parse} of {answered} live answers came while a batch was parsed"
    );
}

/// An `x-request-id` that is not ASCII is echoed as sent, and recorded as its UTF-8
/// text: the label a client posts for it (the same text in JSON) finds its prediction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_for_a_non_ascii_request_id_finds_its_prediction() {
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::stable_only()
        .monitor(json!({ "sample": 100 }))
        .capture(json!({ "path": dir.path(), "sample": 100 }))
        .feedback(json!({ "retain": "1h" }));
    let h = ProxyHarness::start(&config).await;
    let id = "requête-42-数";
    let headers = [("content-type", "application/json"), ("x-request-id", id)];
    let a = h
        .send(Method::POST, "/v2/models/m/infer", &headers, INFER)
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.headers["x-request-id"].as_bytes(),
        id.as_bytes(),
        "echoed as sent"
    );

    let record = eventually("the capture record", Duration::from_millis(20), || async {
        let text: String = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
            .collect();
        match text.lines().next() {
            Some(line) => Ok(serde_json::from_str::<Value>(line).unwrap()),
            None => Err("no record yet".to_string()),
        }
    })
    .await;
    assert_eq!(record["request_id"], id, "{record:#}");

    let body = json!({ "request_id": id, "label": 1 }).to_string();
    let joined = h.admin(Method::POST, "/api/v1/feedback", None, &body).await;
    assert_eq!(joined.status, StatusCode::OK, "{:?}", joined.body);
    assert_eq!(joined.json()["matched"], 1, "{:?}", joined.body);
}
