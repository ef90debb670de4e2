//! The request body sent upstream: the client's stream under the size limit, or a
//! buffered copy (when mirroring or fallback needs the bytes again).
//!
//! A streamed body marks its failures as the client's ([`ClientBodyError`]): a body that
//! is too large, breaks off, is malformed or does not arrive by its deadline
//! (`limits.body_timeout`) fails the exchange, and the failure must not count against the
//! backend.
//!
//! A backend may answer before it has read the whole body (a gateway refusing a request
//! early does); its connection is then closed, not reused (see [`pool`](crate::upstream::pool)), and the
//! body with it. A client body dropped before its end that way is read on and thrown
//! away in a task of its own, up to what it may still bring (`limits.max_body`) and by
//! its deadline: the client, which may still be sending it and read nothing before it
//! has, gets its answer, and its connection goes on. Past either bound the rest is left
//! unread, and the client's connection closes after the answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::error::BoxError;

/// How long before an exchange's timeout a client's body must be complete: the body's
/// deadline and the exchange's must not fire together, so that which one was waited for
/// decides whose fault it was.
const BODY_MARGIN: Duration = Duration::from_millis(1);

/// Why the client's request body failed while it streamed upstream.
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    /// The body went over `limits.max_body`.
    #[error("the request body is over the size limit")]
    TooLarge,
    /// The client's connection broke off or sent a malformed body.
    #[error("the request body broke off: {0}")]
    Aborted(hyper::Error),
    /// The body was not complete by its deadline: `limits.body_timeout` after the request
    /// head, or just before the backend's own timeout (no backend answers before it has
    /// the body, so waiting for the client is not the backend's fault).
    #[error("the request body did not arrive in time")]
    Timeout,
}

/// The client's body as it streams through: at most `limits.max_body`, complete by its
/// deadline, its failures marked as the client's; read on and thrown away if dropped
/// before its end (see the module's documentation).
pub struct ClientBody {
    /// `None` only once dropped.
    inner: Option<Incoming>,
    due: Due,
    /// Bytes the body may still bring.
    left: usize,
}

/// When a client's body must be complete: a deadline, and once the body has had to wait,
/// the timer set for it (made on the first wait only: a body that arrives with its head
/// sets no timer). One field, so the body stays small: hyper moves it several times.
enum Due {
    By(Instant),
    Waiting(Pin<Box<Sleep>>),
    /// Ended, failed or late: nothing more is read.
    Over,
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let this = &mut *self;
        let (Some(inner), false) = (this.inner.as_mut(), matches!(this.due, Due::Over)) else {
            return Poll::Ready(None);
        };
        let frame = match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, Buf::remaining);
                if n <= this.left {
                    this.left -= n;
                    return Poll::Ready(Some(Ok(frame)));
                }
                Some(Err(ClientBodyError::TooLarge))
            }
            Poll::Ready(Some(Err(e))) => Some(Err(ClientBodyError::Aborted(e))),
            Poll::Ready(None) => None,
            Poll::Pending => {
                if let Due::By(deadline) = this.due {
                    this.due = Due::Waiting(Box::pin(tokio::time::sleep_until(deadline)));
                }
                let Due::Waiting(timer) = &mut this.due else {
                    unreachable!("set just above")
                };
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Some(Err(ClientBodyError::Timeout)),
                    Poll::Pending => return Poll::Pending,
                }
            }
        };
        this.due = Due::Over;
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        let deadline = match &self.due {
            Due::By(deadline) => *deadline,
            Due::Waiting(timer) => timer.deadline(),
            Due::Over => return,
        };
        let Some(body) = self.inner.take() else {
            return;
        };
        if body.is_end_stream() || deadline <= Instant::now() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(discard(body, self.left, deadline));
        }
    }
}

/// Reads the rest of a client's body and throws it away: at most `left` bytes, by
/// `deadline`. Dropped before its end, the body closes the client's connection after
/// its answer (hyper's server does that with a body nobody reads).
async fn discard(mut body: Incoming, mut left: usize, deadline: Instant) {
    let rest = async {
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, Buf::remaining);
            if n > left {
                return;
            }
            left -= n;
        }
    };
    let _ = tokio::time::timeout_at(deadline, rest).await;
}

pin_project! {
    /// The body sent upstream: the client's stream (under the size limit), the same
    /// stream copied on its way for the observers (a sampled request), or a buffered copy.
    #[project = UpstreamProj]
    pub enum UpstreamBody {
        Stream { #[pin] inner: ClientBody },
        Teed { #[pin] inner: ClientBody, copy: Box<Tee> },
        Buffered { #[pin] inner: Full<Bytes> },
    }
}

/// Where a streamed request body is copied as it goes upstream, for the observers of a
/// sampled request: up to a cap, and whether it was complete.
pub(crate) type TeeCopy = Arc<Mutex<Copied>>;

/// A streamed request body as copied so far.
#[derive(Debug, Default)]
pub struct Copied {
    pub bytes: BytesMut,
    /// The body ended and every byte was copied.
    pub complete: bool,
    /// The body passed the cap: the copy was given up.
    pub truncated: bool,
}

/// The copying end of a [`TeeCopy`].
pub struct Tee {
    to: TeeCopy,
    cap: usize,
}

impl Tee {
    fn data(&self, chunk: &Bytes) {
        let mut c = self.to.lock().unwrap_or_else(|e| e.into_inner());
        if c.truncated {
            return;
        }
        if c.bytes.len() + chunk.len() > self.cap {
            c.truncated = true;
            c.bytes = BytesMut::new();
        } else {
            c.bytes.extend_from_slice(chunk);
        }
    }

    fn end(&self) {
        let mut c = self.to.lock().unwrap_or_else(|e| e.into_inner());
        c.complete = !c.truncated;
    }
}

impl UpstreamBody {
    /// The client's body, streamed: at most `limit` bytes, complete by `deadline`.
    pub fn stream(body: Incoming, limit: usize, deadline: Instant) -> Self {
        UpstreamBody::Stream {
            inner: ClientBody {
                inner: Some(body),
                due: Due::By(deadline),
                left: limit,
            },
        }
    }

    /// The client's body, streamed as [`UpstreamBody::stream`] and copied (up to `cap`;
    /// beyond it the copy is given up) into the returned [`TeeCopy`] on its way.
    pub fn teed(body: Incoming, limit: usize, cap: usize, deadline: Instant) -> (Self, TeeCopy) {
        let copy = TeeCopy::default();
        let body = UpstreamBody::Teed {
            inner: ClientBody {
                inner: Some(body),
                due: Due::By(deadline),
                left: limit,
            },
            copy: Box::new(Tee {
                to: copy.clone(),
                cap,
            }),
        };
        (body, copy)
    }

    pub fn buffered(bytes: Bytes) -> Self {
        UpstreamBody::Buffered {
            inner: Full::new(bytes),
        }
    }

    /// Makes a streamed body due just before `deadline` (its exchange's) if that is
    /// sooner than its own deadline: a body still arriving then makes the exchange the
    /// client's failure, not the backend's (no backend answers before it has the body).
    pub fn due_before(&mut self, deadline: Instant) {
        if let UpstreamBody::Stream { inner } | UpstreamBody::Teed { inner, .. } = self {
            if let Due::By(due) = &mut inner.due {
                *due = (*due).min(deadline.checked_sub(BODY_MARGIN).unwrap_or(deadline));
            }
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
            UpstreamProj::Stream { inner } => inner.poll_frame(cx).map_err(Into::into),
            UpstreamProj::Teed { mut inner, copy } => {
                let frame = ready!(inner.as_mut().poll_frame(cx));
                match &frame {
                    Some(Ok(f)) => {
                        if let Some(data) = f.data_ref() {
                            copy.data(data);
                        }
                        // The last frame: the body may never be polled again.
                        if inner.is_end_stream() {
                            copy.end();
                        }
                    }
                    None => copy.end(),
                    Some(Err(_)) => {}
                }
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            UpstreamProj::Buffered { inner } => inner.poll_frame(cx).map_err(|e| match e {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Stream { inner } | UpstreamBody::Teed { inner, .. } => {
                inner.is_end_stream()
            }
            UpstreamBody::Buffered { inner } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Stream { inner } | UpstreamBody::Teed { inner, .. } => inner.size_hint(),
            UpstreamBody::Buffered { inner } => inner.size_hint(),
        }
    }
}
