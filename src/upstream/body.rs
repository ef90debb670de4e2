//! The request body sent upstream: the client's stream under the size limit, or a
//! buffered copy (when mirroring or fallback needs the bytes again).
//!
//! A streamed body marks its failures as the client's ([`ClientBodyError`]): a body that
//! breaks off, is malformed or does not arrive by its deadline (`limits.body_timeout`)
//! fails the exchange, and the failure must not count against the backend.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
    /// The body was not complete by `limits.body_timeout` after the request head.
    #[error("the request body did not arrive within limits.body_timeout")]
    Timeout,
}

pin_project! {
    /// The client's body as it streams through: its errors marked as the client's, cut
    /// off at its deadline, and its completion noted for the exchange's timeout.
    pub struct ClientBody {
        #[pin]
        inner: Incoming,
        deadline: Instant,
        // Made on the first wait only: a body that arrives with its head sets no timer.
        timer: Option<Pin<Box<Sleep>>>,
        // Set once the body has been read to its end.
        done: Arc<AtomicBool>,
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(ClientBodyError::Aborted(e)))),
            Poll::Ready(frame) => {
                if frame.is_none() || this.inner.is_end_stream() {
                    this.done.store(true, Ordering::Release);
                }
                Poll::Ready(frame.map(|f| f.map_err(ClientBodyError::Aborted)))
            }
            Poll::Pending => {
                let deadline = *this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
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
        Stream { #[pin] inner: Limited<ClientBody>, done: Option<Arc<AtomicBool>> },
        Buffered { #[pin] inner: Full<Bytes> },
    }
}

impl UpstreamBody {
    /// The client's body, streamed: at most `limit` bytes, complete by `deadline`.
    pub fn stream(body: Incoming, limit: usize, deadline: Instant) -> Self {
        let done = Arc::new(AtomicBool::new(body.is_end_stream()));
        let body = ClientBody {
            done: done.clone(),
            inner: body,
            deadline,
            timer: None,
        };
        UpstreamBody::Stream {
            inner: Limited::new(body, limit),
            done: Some(done),
        }
    }

    /// For a streamed body, a flag set once the client's body has been read to its end
    /// (taken once): an exchange that times out before then was waiting on the client.
    pub fn take_progress(&mut self) -> Option<Arc<AtomicBool>> {
        match self {
            UpstreamBody::Stream { done, .. } => done.take(),
            UpstreamBody::Buffered { .. } => None,
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
            UpstreamProj::Stream { inner, .. } => inner.poll_frame(cx),
            UpstreamProj::Buffered { inner } => inner.poll_frame(cx).map_err(|e| match e {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Stream { inner, .. } => inner.is_end_stream(),
            UpstreamBody::Buffered { inner } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Stream { inner, .. } => inner.size_hint(),
            UpstreamBody::Buffered { inner } => inner.size_hint(),
        }
    }
}
