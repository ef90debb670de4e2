//! A backend that records what reaches it, and raw client connections: for the tests
//! that try what an attacker would send.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// === a backend that records what reaches it ===

/// One request as the backend received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub headers: HeaderMap,
    /// The body, or why it could not be read to its end.
    pub body: Result<Bytes, String>,
}

/// A V2-speaking backend that records every request it receives.
pub struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// The V2 answer a [`Recorder`] gives unless told otherwise.
const V2_ANSWER: &str = r#"{"outputs":[{"name":"y","shape":[1],"datatype":"FP32","data":[1.0]}]}"#;

impl Recorder {
    pub async fn start() -> Recorder {
        Recorder::answering(V2_ANSWER, "application/json").await
    }

    /// A recorder that answers every request with `answer` of `content_type`.
    pub async fn answering(answer: &'static str, content_type: &'static str) -> Recorder {
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

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests whose body arrived whole.
    pub fn complete(&self) -> usize {
        self.seen().iter().filter(|s| s.body.is_ok()).count()
    }
}

// === raw client connections ===

/// Writes `bytes` on a new connection to `addr`, then reads what comes back until the
/// connection closes or `wait` passes.
pub async fn exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    read_for(&mut stream, wait).await
}

pub async fn read_for(stream: &mut TcpStream, wait: Duration) -> String {
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
pub fn status_of(text: &str) -> u16 {
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}
