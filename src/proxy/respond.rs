//! The respond phase: the upstream's answer streams back to the client with
//! `x-switchyard-variant` and `x-request-id`, teed for the comparison when mirrored; or an
//! answer of our own (a short JSON error naming the backend).
//!
//! An answer the backend cuts off mid-body counts as its error (`kind="truncated"`), after
//! its head already counted: the body keeps its backend for that.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::headers::{self, X_REQUEST_ID, X_SWITCHYARD_ROUTE, X_SWITCHYARD_VARIANT};
use crate::error::BoxError;
use crate::observe;
use crate::shadow::{Delivery, Tap};
use crate::snapshot::Backend;
use crate::telemetry::metrics::{self, ClientFault, ErrorKind};
use crate::telemetry::{self, Tripwire};
use crate::upstream::errors::Failed;
use crate::upstream::{Failure, PooledBody};

/// Whose answer a body is, so that its end can still count: the backend, and the
/// tripwire when the backend is the candidate.
pub struct Source {
    pub backend: Arc<Backend>,
    pub tripwire: Option<Arc<Tripwire>>,
    /// Whether the gates read this answer's outcome (its client is within its share).
    pub judged: bool,
}

/// The answer to the client: the upstream's (teed into `tap` when mirrored), or an error of ours.
pub fn respond(
    source: Source,
    result: Result<Response<PooledBody>, Failure>,
    request_id: HeaderValue,
    tap: Option<Delivery>,
    cap: usize,
) -> Response<ProxyBody> {
    match result {
        Ok(resp) => upstream_answer(source, resp, request_id, tap, cap),
        Err(failure) => match failure.client_fault() {
            Some(fault) => refused(Some(&source.backend), fault, request_id),
            None => error(
                &source.backend,
                failure.status(),
                &failure.to_string(),
                request_id,
            ),
        },
    }
}

fn upstream_answer(
    source: Source,
    resp: Response<PooledBody>,
    request_id: HeaderValue,
    tap: Option<Delivery>,
    cap: usize,
) -> Response<ProxyBody> {
    let backend = &*source.backend;
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    parts
        .headers
        .insert(X_SWITCHYARD_VARIANT.clone(), backend.variant.clone());
    parts
        .headers
        .insert(X_SWITCHYARD_ROUTE.clone(), backend.route.clone());
    parts.headers.insert(X_REQUEST_ID.clone(), request_id);
    backend.metrics.response(parts.status.as_u16());
    // An answer declared over what the observers read is not observed (a mirror's
    // comparison reads up to `cap`).
    let tap = tap.filter(|to| {
        !matches!(to, Delivery::Observe(_)) || super::body::observable(&parts.headers)
    });
    let body = match tap {
        Some(mut to) => {
            let cap = match &mut to {
                Delivery::Observe(pending) => {
                    pending.backend = backend.name.clone();
                    cap.min(observe::MAX_BODY)
                }
                Delivery::Mirror(_) => cap,
            };
            let content_type = parts
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let mut tap = Tap::new(parts.status.as_u16(), content_type, cap, to);
            if body.is_end_stream() {
                tap.finish_complete();
                ProxyBody::Upstream {
                    inner: body,
                    source,
                }
            } else {
                ProxyBody::Tapped {
                    inner: body,
                    tap: Box::new(tap),
                    source,
                }
            }
        }
        None => ProxyBody::Upstream {
            inner: body,
            source,
        },
    };
    Response::from_parts(parts, body)
}

/// The answer to a request refused by the client's own `fault` (counted as such), before
/// anything of it went upstream or while its body streamed; `backend` is where it was
/// routed, when it got that far.
pub fn refused(
    backend: Option<&Backend>,
    fault: ClientFault,
    request_id: HeaderValue,
) -> Response<ProxyBody> {
    metrics::client_error(fault);
    let (status, message) = match fault {
        ClientFault::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
        ClientFault::BodyAborted => (StatusCode::BAD_REQUEST, "could not read the request body"),
        ClientFault::BodyTimeout => (
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        ),
        ClientFault::Method => (StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not forwarded"),
        ClientFault::DuplicateHost => (StatusCode::BAD_REQUEST, "more than one Host header"),
        ClientFault::NoRoute => (StatusCode::NOT_FOUND, "no route for this request"),
    };
    answer(backend, status, message, request_id)
}

/// The answer to a request no route takes: 404, naming the method and path (never the
/// query, which may carry what a log must not), counted as the client's.
pub fn no_route(method: &http::Method, path: &str, request_id: HeaderValue) -> Response<ProxyBody> {
    metrics::client_error(ClientFault::NoRoute);
    let message = format!("no route for {method} {path}");
    answer(None, StatusCode::NOT_FOUND, &message, request_id)
}

/// An answer of our own: a short JSON error naming the backend.
pub fn error(
    backend: &Backend,
    status: StatusCode,
    message: &str,
    request_id: HeaderValue,
) -> Response<ProxyBody> {
    answer(Some(backend), status, message, request_id)
}

/// A short JSON error, naming the backend (and counted for it) when there is one.
fn answer(
    backend: Option<&Backend>,
    status: StatusCode,
    message: &str,
    request_id: HeaderValue,
) -> Response<ProxyBody> {
    let body = match backend {
        Some(b) => {
            b.metrics.response(status.as_u16());
            serde_json::json!({ "error": message, "backend": &*b.name })
        }
        None => serde_json::json!({ "error": message }),
    };
    let mut resp = Response::new(ProxyBody::full(body.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(b) = backend {
        h.insert(X_SWITCHYARD_VARIANT.clone(), b.variant.clone());
        h.insert(X_SWITCHYARD_ROUTE.clone(), b.route.clone());
    }
    h.insert(X_REQUEST_ID.clone(), request_id);
    resp
}

pin_project! {
    /// The body sent to the client.
    #[project = ProxyProj]
    pub enum ProxyBody {
        /// The upstream's answer, streamed as it arrives.
        Upstream { #[pin] inner: PooledBody, source: Source },
        /// The upstream's answer, streamed and copied for a comparison.
        // Boxed: only mirrored answers carry a tap, and every answer's body is moved
        // several times on its way through hyper, at the size of the largest variant.
        Tapped { #[pin] inner: PooledBody, tap: Box<Tap>, source: Source },
        /// An answer of our own (errors).
        Full { #[pin] inner: Full<Bytes> },
    }
}

impl ProxyBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        ProxyBody::Full {
            inner: Full::new(bytes.into()),
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            ProxyProj::Upstream { inner, source } => {
                let frame = ready!(inner.poll_frame(cx));
                if let Some(Err(_)) = &frame {
                    source.cut_off();
                }
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            ProxyProj::Full { inner } => inner.poll_frame(cx).map_err(|e| match e {}),
            ProxyProj::Tapped {
                mut inner,
                tap,
                source,
            } => {
                let frame = ready!(inner.as_mut().poll_frame(cx));
                match &frame {
                    Some(Ok(f)) => {
                        if let Some(d) = f.data_ref() {
                            tap.data(d);
                        }
                        // hyper stops polling once a body says it has ended, so the
                        // capture is delivered here rather than on a final `None`.
                        if inner.is_end_stream() {
                            tap.finish(true);
                        }
                    }
                    Some(Err(_)) => {
                        tap.finish(false);
                        source.cut_off();
                    }
                    None => tap.finish(true),
                }
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { inner, .. } => inner.is_end_stream(),
            ProxyBody::Tapped { inner, .. } => inner.is_end_stream(),
            ProxyBody::Full { inner } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { inner, .. } => inner.size_hint(),
            ProxyBody::Tapped { inner, .. } => inner.size_hint(),
            ProxyBody::Full { inner } => inner.size_hint(),
        }
    }
}

// === impl Source ===

impl Source {
    /// The backend broke off its answer mid-body.
    fn cut_off(&self) {
        let b = &self.backend;
        b.upstream.errors.warn(Failed {
            kind: ErrorKind::Truncated,
            backend: &b.name,
            route: &b.route,
            // Not kept with every answer's body for the rare one cut off.
            request_id: None,
            what: &"upstream cut its answer off mid-body",
        });
        telemetry::record_truncated(
            b.window_if(self.judged),
            &b.metrics,
            self.tripwire.as_deref(),
            Instant::now(),
        );
    }
}
