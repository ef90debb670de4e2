//! Request and response bodies: streamed through, buffered only when mirroring or
//! fallback needs them, and teed into a capped buffer when a comparison needs the answer.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Full, Limited};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::sync::oneshot;

use super::upstream::PooledBody;

/// Boxed error of a body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

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

/// The live answer as captured for a comparison.
#[derive(Debug)]
pub struct Captured {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
    /// The body exceeded the cap, or the client went away before its end.
    pub truncated: bool,
}

/// Copies a response body into a capped buffer as it streams past.
pub struct Tap {
    status: u16,
    content_type: Option<String>,
    buf: BytesMut,
    cap: usize,
    truncated: bool,
    tx: Option<oneshot::Sender<Captured>>,
}

impl Tap {
    pub fn new(
        status: u16,
        content_type: Option<String>,
        cap: usize,
        tx: oneshot::Sender<Captured>,
    ) -> Self {
        Tap {
            status,
            content_type,
            buf: BytesMut::new(),
            cap,
            truncated: false,
            tx: Some(tx),
        }
    }

    fn data(&mut self, chunk: &Bytes) {
        if self.truncated {
            return;
        }
        if self.buf.len() + chunk.len() > self.cap {
            self.truncated = true;
            self.buf = BytesMut::new();
        } else {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// Delivers the capture of a body that ended before anything was polled.
    pub fn finish_complete(&mut self) {
        self.finish(true);
    }

    fn finish(&mut self, complete: bool) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Captured {
                status: self.status,
                content_type: self.content_type.take(),
                body: std::mem::take(&mut self.buf).freeze(),
                truncated: self.truncated || !complete,
            });
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.finish(false);
    }
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
