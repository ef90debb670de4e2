//! The data plane: one request's way through switchyard.
//!
//! The phases, in order (each in its own module):
//!
//! 1. **snapshot**: load the routing [`Snapshot`] once; the whole request uses it.
//! 2. **[`headers`]**: keep or make `x-request-id`, drop hop-by-hop headers, append `x-forwarded-for`.
//! 3. **[`route`]**: override header > sticky hash > random split.
//! 4. **[`body`]**: reject bodies over `limits.max_body` (413); buffer the body only when
//!    mirroring or fallback needs it, else stream it.
//! 5. **[`mirror`]**: spawn the shadow copy (never awaited here).
//! 6. **[`forward`]**: send upstream on a connection from the backend's [`upstream`] pool,
//!    within its timeout;
//!    a failed candidate request is retried once on stable when `fallback_to_stable`.
//! 7. **observe**: the outcome goes to the backend's window, metrics and the fast-rollback tripwire.
//! 8. **respond**: stream the answer back with `x-switchyard-variant`, teeing it for the
//!    comparison when mirrored.

pub mod body;
pub mod forward;
pub mod headers;
pub mod mirror;
pub mod route;
pub mod upstream;

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::snapshot::{Backend, Shared, Snapshot};
use crate::telemetry::metrics::{self, ErrorKind};
use body::{ProxyBody, Tap, UpstreamBody};
use forward::{Failure, Head};
use headers::{X_REQUEST_ID, X_SWITCHYARD_VARIANT};
use upstream::PooledBody;

/// The proxy service of one client connection.
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
    /// The client's address as an `x-forwarded-for` value.
    peer: Option<HeaderValue>,
}

impl Proxy {
    pub fn new(shared: Arc<Shared>, peer: Option<IpAddr>) -> Self {
        Proxy {
            shared,
            peer: headers::peer_value(peer),
        }
    }
}

// === impl Proxy ===

impl tower::Service<Request<Incoming>> for Proxy {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        // `serve` answers every request itself (errors included): never an `Err`. Boxed
        // directly, not wrapped in another async block, which would copy the whole
        // request future once more.
        Box::pin(self.clone().serve(req))
    }
}

/// The request body as the forward phase will send it.
enum Prepared {
    Stream(Incoming),
    Buffered(Bytes),
}

impl Proxy {
    async fn serve(self, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
        let started = Instant::now();
        // 1. snapshot
        let snap = self.shared.snapshot.load_full();
        // While mirroring, the shadow thread waits for live requests to finish.
        let _live = (snap.mirror_bp > 0).then(mirror::LiveRequest::start);
        let (mut parts, body) = req.into_parts();

        // 2. headers
        let request_id = headers::request_id(&mut parts.headers);
        headers::strip_hop_by_hop(&mut parts.headers);
        headers::append_forwarded_for(&mut parts.headers, self.peer.as_ref());

        // 3. route
        let backend = route::pick(&snap, &parts.headers);
        let backend = backend.clone();
        let is_candidate = snap.is_candidate(&backend);

        // 4. body
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > snap.max_body as u64) {
            return Ok(error(
                &backend,
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large",
                request_id,
            ));
        }
        let mirror = if !is_candidate
            && snap.candidate.is_some()
            && Arc::ptr_eq(&backend, &snap.stable)
            && route::mirrored(snap.mirror_bp)
        {
            mirror::reserve(&self.shared)
        } else {
            None
        };
        let fallback = is_candidate && snap.fallback_to_stable;
        let prepared = if mirror.is_some() || fallback {
            match Limited::new(body, snap.max_body).collect().await {
                Ok(c) => Prepared::Buffered(c.to_bytes()),
                Err(e) if e.is::<LengthLimitError>() => {
                    return Ok(error(
                        &backend,
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "request body too large",
                        request_id,
                    ));
                }
                Err(_) => {
                    return Ok(error(
                        &backend,
                        StatusCode::BAD_REQUEST,
                        "could not read the request body",
                        request_id,
                    ));
                }
            }
        } else {
            Prepared::Stream(body)
        };
        let head = Head {
            method: parts.method,
            path_and_query: parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
            headers: parts.headers,
        };

        // 5. mirror (+ calibration copy to the stable itself)
        let live_tap = match (&prepared, mirror) {
            (Prepared::Buffered(bytes), Some(place)) => mirror::spawn(
                place,
                if route::mirrored(snap.calibrate_bp) {
                    mirror::reserve_calibration(&self.shared)
                } else {
                    None
                },
                &self.shared,
                &snap,
                &head,
                bytes.clone(),
                request_id.clone(),
            ),
            _ => None,
        };

        // 6. forward (+ fallback)
        let retry = match &prepared {
            Prepared::Buffered(b) if fallback => Some((head.clone(), b.clone())),
            _ => None,
        };
        let upstream_body = match prepared {
            Prepared::Stream(b) => UpstreamBody::stream(b, snap.max_body),
            Prepared::Buffered(b) => UpstreamBody::buffered(b),
        };
        let result = forward::send(&backend, head, upstream_body).await;

        // 7. observe
        let failed = observe(&snap, &backend, is_candidate, started, &result);
        let (backend, result) = match retry {
            Some((head, bytes)) if failed => {
                metrics::fallback(&backend.name);
                let stable = snap.stable.clone();
                let again = Instant::now();
                let result = forward::send(&stable, head, UpstreamBody::buffered(bytes)).await;
                observe(&snap, &stable, false, again, &result);
                (stable, result)
            }
            _ => (backend, result),
        };

        // 8. respond
        Ok(match result {
            Ok(resp) => respond(&backend, resp, request_id, live_tap, snap.max_body),
            Err(failure) => {
                let status = failure.status();
                error(&backend, status, &failure.to_string(), request_id)
            }
        })
    }
}

/// Records one upstream outcome; true when it counts as a failure of `backend`.
fn observe(
    snap: &Snapshot,
    backend: &Backend,
    is_candidate: bool,
    started: Instant,
    result: &Result<Response<PooledBody>, Failure>,
) -> bool {
    let now = Instant::now();
    let latency = now - started;
    let failed = match result {
        Ok(resp) => {
            backend.metrics.latency(latency);
            let failed = resp.status().is_server_error();
            if failed {
                backend.metrics.error(ErrorKind::Status);
            }
            failed
        }
        Err(f) => match f.kind() {
            Some(kind) => {
                backend.metrics.error(kind);
                true
            }
            // The client's fault (body too large) says nothing about the backend.
            None => return false,
        },
    };
    backend.window.record(now, latency, failed);
    if is_candidate {
        if let Some(t) = &snap.tripwire {
            if failed {
                t.failure();
            } else {
                t.success();
            }
        }
    }
    failed
}

fn respond(
    backend: &Backend,
    resp: Response<PooledBody>,
    request_id: HeaderValue,
    live_tap: Option<tokio::sync::oneshot::Sender<body::Captured>>,
    cap: usize,
) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    parts
        .headers
        .insert(X_SWITCHYARD_VARIANT.clone(), backend.variant.clone());
    parts.headers.insert(X_REQUEST_ID.clone(), request_id);
    backend.metrics.response(parts.status.as_u16());
    let body = match live_tap {
        Some(tx) => {
            let content_type = parts
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let mut tap = Tap::new(parts.status.as_u16(), content_type, cap, tx);
            if body.is_end_stream() {
                tap.finish_complete();
                ProxyBody::Upstream { inner: body }
            } else {
                ProxyBody::Tapped { inner: body, tap }
            }
        }
        None => ProxyBody::Upstream { inner: body },
    };
    Response::from_parts(parts, body)
}

/// An answer of our own: a short JSON error naming the backend.
fn error(
    backend: &Backend,
    status: StatusCode,
    message: &str,
    request_id: HeaderValue,
) -> Response<ProxyBody> {
    backend.metrics.response(status.as_u16());
    let body = serde_json::json!({ "error": message, "backend": &*backend.name }).to_string();
    let mut resp = Response::new(ProxyBody::full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(X_SWITCHYARD_VARIANT.clone(), backend.variant.clone());
    h.insert(X_REQUEST_ID.clone(), request_id);
    resp
}
