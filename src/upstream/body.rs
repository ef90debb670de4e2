//! The request body sent upstream: the client's stream under the size limit, or a
//! buffered copy (when mirroring or fallback needs the bytes again).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Full, Limited};
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use crate::error::BoxError;

pin_project! {
    /// The body sent upstream: the client's stream (under the size limit), or a buffered copy.
    #[project = UpstreamProj]
    pub enum UpstreamBody {
        Stream { #[pin] inner: Limited<Incoming> },
        Buffered { #[pin] inner: Full<Bytes> },
    }
}

impl UpstreamBody {
    pub fn stream(body: Incoming, limit: usize) -> Self {
        UpstreamBody::Stream {
            inner: Limited::new(body, limit),
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
