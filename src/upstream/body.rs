//! The request body sent upstream: the client's stream under the size limit, or a
//! buffered copy (when mirroring or fallback needs the bytes again).
//!
//! A streamed body marks its failures as the client's ([`ClientBodyError`]): a body that
//! breaks off, is malformed or does not arrive by its deadline (`limits.body_timeout`)
//! fails the exchange, and the failure must not count against the backend.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Full, Limited};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::error::BoxError;

/// Why the client's request body failed while it streamed upstream.
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    /// The client's connection broke off or sent a malformed body.
    #[error("the request body broke off: {0}")]
    Aborted(hyper::Error),
    /// The body was not complete by its deadline: `limits.body_timeout` after the request
    /// head, or just before the backend's own timeout (no backend answers before it has
    /// the body, so waiting for the client is not the backend's fault).
    #[error("the request body did not arrive in time")]
    Timeout,
}

pin_project! {
    /// The client's body as it streams through: complete by its deadline, its failures
    /// marked as the client's. (The size limit is `http_body_util::Limited`'s, around it.)
    pub struct ClientBody {
        #[pin]
        inner: Incoming,
        due: Due,
    }
}

/// When a client's body must be complete: a deadline, and once the body has had to wait,
/// the timer set for it (made on the first wait only: a body that arrives with its head
/// sets no timer). One field, so the body stays small: hyper moves it several times.
enum Due {
    By(Instant),
    Waiting(Pin<Box<Sleep>>),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(ClientBodyError::Aborted))),
            Poll::Pending => {
                if let Due::By(deadline) = *this.due {
                    *this.due = Due::Waiting(Box::pin(tokio::time::sleep_until(deadline)));
                }
                let Due::Waiting(timer) = this.due else {
                    unreachable!("set just above")
                };
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(ClientBodyError::Timeout))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// The body sent upstream: the client's stream (under the size limit), or a buffered copy.
    #[project = UpstreamProj]
    pub enum UpstreamBody {
        Stream { #[pin] inner: Limited<ClientBody> },
        Buffered { #[pin] inner: Full<Bytes> },
    }
}

impl UpstreamBody {
    /// The client's body, streamed: at most `limit` bytes, complete by `deadline`.
    pub fn stream(body: Incoming, limit: usize, deadline: Instant) -> Self {
        UpstreamBody::Stream {
            inner: Limited::new(
                ClientBody {
                    inner: body,
                    due: Due::By(deadline),
                },
                limit,
            ),
        }
    }

    pub fn buffered(bytes: Bytes) -> Self {
        UpstreamBody::Buffered {
            inner: Full::new(bytes),
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            UpstreamProj::Stream { inner } => inner.poll_frame(cx),
            UpstreamProj::Buffered { inner } => inner.poll_frame(cx).map_err(|e| match e {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Stream { inner } => inner.is_end_stream(),
            UpstreamBody::Buffered { inner } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Stream { inner } => inner.size_hint(),
            UpstreamBody::Buffered { inner } => inner.size_hint(),
        }
    }
}
