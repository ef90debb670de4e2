//! The respond phase: the upstream's answer streams back to the client with
//! `x-switchyard-variant` and `x-request-id`, teed for the comparison when mirrored; or an
//! answer of our own (a short JSON error naming the backend).

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;
use tokio::sync::oneshot;

use super::body::Refused;
use super::headers::{self, X_REQUEST_ID, X_SWITCHYARD_VARIANT};
use crate::error::BoxError;
use crate::shadow::{Captured, Tap};
use crate::snapshot::Backend;
use crate::upstream::{Failure, PooledBody};

/// The answer to the client: the upstream's (teed into `tap` when mirrored), or an error of ours.
pub fn respond(
    backend: &Backend,
    result: Result<Response<PooledBody>, Failure>,
    request_id: HeaderValue,
    tap: Option<oneshot::Sender<Captured>>,
    cap: usize,
) -> Response<ProxyBody> {
    match result {
        Ok(resp) => upstream_answer(backend, resp, request_id, tap, cap),
        Err(failure) => error(backend, failure.status(), &failure.to_string(), request_id),
    }
}

fn upstream_answer(
    backend: &Backend,
    resp: Response<PooledBody>,
    request_id: HeaderValue,
    tap: Option<oneshot::Sender<Captured>>,
    cap: usize,
) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    parts
        .headers
        .insert(X_SWITCHYARD_VARIANT.clone(), backend.variant.clone());
    parts.headers.insert(X_REQUEST_ID.clone(), request_id);
    backend.metrics.response(parts.status.as_u16());
    let body = match tap {
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

/// The answer to a request whose body was refused before it went anywhere.
pub fn refused(backend: &Backend, why: Refused, request_id: HeaderValue) -> Response<ProxyBody> {
    error(backend, why.status(), why.message(), request_id)
}

/// An answer of our own: a short JSON error naming the backend.
pub fn error(
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

pin_project! {
    /// The body sent to the client.
    #[project = ProxyProj]
    pub enum ProxyBody {
        /// The upstream's answer, streamed as it arrives.
        Upstream { #[pin] inner: PooledBody },
        /// The upstream's answer, streamed and copied for a comparison.
        Tapped { #[pin] inner: PooledBody, tap: Tap },
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
            ProxyProj::Upstream { inner } => inner.poll_frame(cx).map_err(Into::into),
            ProxyProj::Full { inner } => inner.poll_frame(cx).map_err(|e| match e {}),
            ProxyProj::Tapped { mut inner, tap } => {
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
                    Some(Err(_)) => tap.finish(false),
                    None => tap.finish(true),
                }
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { inner } => inner.is_end_stream(),
            ProxyBody::Tapped { inner, .. } => inner.is_end_stream(),
            ProxyBody::Full { inner } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { inner } => inner.size_hint(),
            ProxyBody::Tapped { inner, .. } => inner.size_hint(),
            ProxyBody::Full { inner } => inner.size_hint(),
        }
    }
}
