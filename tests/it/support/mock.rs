//! A mock model server that speaks the protocols switchyard routes by, records every
//! request it receives, and names itself in each answer, so a test sees both what
//! reached which backend and which backend served the client.
//!
//! Each answer has the shape its protocol's clients expect, by request path:
//!
//! | request | answer |
//! | --- | --- |
//! | V2 `POST /v2/models/NAME[/versions/V]/infer` | `{"model_name", "model_version", "outputs": [{"name": "served_by", "data": [BACKEND]}]}` |
//! | V1 `POST /v1/models/NAME[/versions/V]:predict` | `{"predictions": [{"served_by": BACKEND}]}` |
//! | `POST /v1/chat/completions` | `{"model", "choices": [{"message": {"content": "served by BACKEND"}}]}` |
//! | `POST /v1/completions` | `{"model", "choices": [{"text": "served by BACKEND"}]}` |
//! | `POST /v1/embeddings` | `{"model", "data": [{"embedding": [...]}], "served_by": BACKEND}` |
//! | anything else | `{"backend": BACKEND, "path": PATH}` |
//!
//! [`served_by`] reads the backend's name back out of any of them.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::Answer;

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query, exactly as they arrived.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    /// True for a copy switchyard mirrored (it carries `x-switchyard-shadow`).
    pub fn is_shadow(&self) -> bool {
        self.headers.contains_key("x-switchyard-shadow")
    }
}

/// A running mock model server; it stops accepting when dropped.
pub struct MockModel {
    pub name: String,
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    failing: Arc<AtomicBool>,
    accept: JoinHandle<()>,
}

impl MockModel {
    /// Starts a mock called `name` on a free loopback port.
    pub async fn start(name: &str) -> MockModel {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(AtomicBool::new(false));
        let (log, fail, me) = (received.clone(), failing.clone(), name.to_string());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (log, fail, me) = (log.clone(), fail.clone(), me.clone());
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (log, fail, me) = (log.clone(), fail.clone(), me.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|c| c.to_bytes());
                        let body = body.unwrap_or_default();
                        let target = parts
                            .uri
                            .path_and_query()
                            .map_or_else(|| parts.uri.path().to_string(), |p| p.to_string());
                        let answer = if fail.load(Ordering::Relaxed) {
                            (
                                StatusCode::INTERNAL_SERVER_ERROR,
                                json!({ "error": format!("{me} failed") }),
                            )
                        } else {
                            (StatusCode::OK, answer(&me, parts.uri.path(), &body))
                        };
                        log.lock().unwrap().push(Received {
                            method: parts.method.to_string(),
                            target,
                            headers: parts.headers,
                            body,
                        });
                        let mut resp = Response::new(Full::new(Bytes::from(answer.1.to_string())));
                        *resp.status_mut() = answer.0;
                        resp.headers_mut()
                            .insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, Infallible>(resp)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
        MockModel {
            name: name.to_string(),
            addr,
            received,
            failing,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on every request is answered 500 (`true`), or normally again (`false`).
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }

    /// Every request received so far, mirrored copies included, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The requests received so far that were not mirrored copies.
    pub fn live(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| !r.is_shadow())
            .collect()
    }

    /// How many requests, mirrored copies included, arrived so far.
    pub fn hits(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

impl Drop for MockModel {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The answer of backend `me` to a request for `path` with `body`.
fn answer(me: &str, path: &str, body: &[u8]) -> Value {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let model = body["model"].clone();
    if let Some((name, version)) = v2_model(path) {
        return json!({
            "model_name": name,
            "model_version": version,
            "outputs": [{ "name": "served_by", "shape": [1], "datatype": "BYTES", "data": [me] }],
        });
    }
    if path.starts_with("/v1/models/") && path.ends_with(":predict") {
        return json!({ "predictions": [{ "served_by": me }] });
    }
    match path {
        "/v1/chat/completions" => json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": format!("served by {me}") },
                "finish_reason": "stop",
            }],
        }),
        "/v1/completions" => json!({
            "id": "cmpl-1",
            "object": "text_completion",
            "model": model,
            "choices": [{ "index": 0, "text": format!("served by {me}"), "finish_reason": "stop" }],
        }),
        "/v1/embeddings" => json!({
            "object": "list",
            "model": model,
            "data": [{ "object": "embedding", "index": 0, "embedding": [0.25, -0.5, 0.125] }],
            "served_by": me,
        }),
        _ => json!({ "backend": me, "path": path }),
    }
}

/// The model name and version (`null` when absent) of a V2 inference path.
fn v2_model(path: &str) -> Option<(String, Value)> {
    let rest = path.strip_prefix("/v2/models/")?.strip_suffix("/infer")?;
    Some(match rest.split_once("/versions/") {
        Some((name, version)) => (name.to_string(), Value::from(version)),
        None => (rest.to_string(), Value::Null),
    })
}

/// The name of the mock backend that produced `answer`, read from its JSON body in any of
/// the shapes [`MockModel`] answers with; `None` when it is none of them.
pub fn served_by(answer: &Answer) -> Option<String> {
    let v: Value = serde_json::from_slice(&answer.body).ok()?;
    let named = [
        v.pointer("/outputs/0/data/0"),
        v.pointer("/predictions/0/served_by"),
        v.pointer("/served_by"),
        v.pointer("/backend"),
    ];
    if let Some(name) = named.into_iter().flatten().find_map(Value::as_str) {
        return Some(name.to_string());
    }
    let said = [
        v.pointer("/choices/0/message/content"),
        v.pointer("/choices/0/text"),
    ];
    let text = said.into_iter().flatten().find_map(Value::as_str)?;
    text.strip_prefix("served by ").map(str::to_string)
}
