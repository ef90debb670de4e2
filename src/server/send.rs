//! `limits.send_timeout`: a client that takes no answer bytes for this long is cut off.
//!
//! A client can stop taking its answer in two ways; each has its guard.
//!
//! - It stops reading its socket. The kernel's buffers fill and writes to the socket
//!   stay pending. [`SendDeadline`] wraps every client socket, HTTP/1 and HTTP/2 alike:
//!   a write that stays pending for the timeout, with no byte written since, fails with
//!   [`io::ErrorKind::TimedOut`] ([`SendTimedOut`] inside), which ends the connection.
//!   Any byte written starts the wait again, so a slow reader is never cut off.
//! - HTTP/2 only: its protocol stack reads the socket but grants no more flow-control
//!   window. switchyard then has nothing it may write, and the socket never blocks.
//!   [`Pace`] watches the connection's answers: once one has handed hyper a frame and
//!   none has been asked for its next frame within the timeout, [`Pace::stalled`]
//!   returns and the connection is closed. An answer waiting for its backend is not
//!   waiting for the client, and does not count.
//!
//! Either way the connection's answers are dropped, and with them the upstream
//! connections they came on (an upstream answer dropped before its end closes its
//! connection): a client that does not read holds no backend and no buffers.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::Service;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::http1::Peek;

/// The error a [`SendDeadline`] write fails with (inside an [`io::ErrorKind::TimedOut`]).
#[derive(Debug)]
pub(super) struct SendTimedOut;

impl std::fmt::Display for SendTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client took no answer bytes within the send timeout")
    }
}

impl std::error::Error for SendTimedOut {}

/// Whether `e` is a [`SendDeadline`]'s timeout, not another one.
pub(super) fn is_send_timeout(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<SendTimedOut>())
}

/// A client socket whose writes fail once one has stayed pending for the timeout
/// without a byte written.
///
/// The timer is touched only when a write is pending (the socket's buffer is full): a
/// client that reads costs nothing.
#[derive(Debug)]
pub(super) struct SendDeadline<T> {
    inner: T,
    timeout: Duration,
    /// Made on the first pending write, then reset for each wait.
    timer: Option<Pin<Box<Sleep>>>,
    /// A write is pending and no byte has been written since `timer` was set.
    waiting: bool,
}

impl<T> SendDeadline<T> {
    /// `inner`, whose writes may stay pending for `timeout` at most.
    pub(super) fn new(inner: T, timeout: Duration) -> Self {
        SendDeadline {
            inner,
            timeout,
            timer: None,
            waiting: false,
        }
    }

    /// Notes what a write of `inner` returned: bytes written end the wait, a pending
    /// write starts it (or goes on with it) and fails once it has lasted `timeout`.
    fn track(
        &mut self,
        cx: &mut Context<'_>,
        wrote: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match wrote {
            Poll::Ready(Ok(n)) if n > 0 => {
                self.waiting = false;
                wrote
            }
            Poll::Pending => {
                if !self.waiting {
                    self.waiting = true;
                    let due = Instant::now() + self.timeout;
                    match self.timer.as_mut() {
                        Some(timer) => timer.as_mut().reset(due),
                        None => self.timer = Some(Box::pin(tokio::time::sleep_until(due))),
                    }
                }
                let timer = self.timer.as_mut().expect("set when the wait began");
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, SendTimedOut)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            other => other,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for SendDeadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SendDeadline<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let wrote = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.track(cx, wrote)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let wrote = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.track(cx, wrote)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    /// Passed through: a TCP socket flushes at once.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<T: Peek> Peek for SendDeadline<T> {
    fn wait_for_bytes(&mut self) -> impl Future<Output = io::Result<bool>> + Send {
        self.inner.wait_for_bytes()
    }
}

// === impl Pace ===

/// What the answers of one connection tell its stall watch.
#[derive(Debug)]
pub(super) struct Pace {
    /// What `moved` counts from.
    epoch: Instant,
    /// Answers that have handed hyper a frame and not been asked for the next one yet.
    waiting: AtomicU32,
    /// When an answer last began to wait while none was, or was asked for its next
    /// frame (or dropped) after waiting: in nanoseconds since `epoch`.
    moved: AtomicU64,
}

impl Pace {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Pace {
            epoch: Instant::now(),
            waiting: AtomicU32::new(0),
            moved: AtomicU64::new(0),
        })
    }

    fn mark(&self) {
        let since = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.moved.store(since, Ordering::Release);
    }

    fn moved_at(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.moved.load(Ordering::Acquire))
    }

    /// Returns once some answer has waited for the client for `timeout` and no answer
    /// has been taken further meanwhile. Wakes once per `timeout` while none waits.
    pub(super) async fn stalled(&self, timeout: Duration) {
        loop {
            let next = if self.waiting.load(Ordering::Acquire) == 0 {
                Instant::now() + timeout
            } else {
                let due = self.moved_at() + timeout;
                if Instant::now() >= due {
                    return;
                }
                due
            };
            tokio::time::sleep_until(next).await;
        }
    }
}

/// One answer waiting for the client to take the frame it handed hyper, until dropped.
#[derive(Debug)]
struct Handed(Arc<Pace>);

impl Handed {
    fn new(pace: &Arc<Pace>) -> Self {
        // Marked before it counts: the watch never sees the count with an older mark.
        if pace.waiting.load(Ordering::Acquire) == 0 {
            pace.mark();
        }
        pace.waiting.fetch_add(1, Ordering::AcqRel);
        Handed(pace.clone())
    }
}

impl Drop for Handed {
    fn drop(&mut self) {
        self.0.mark();
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's service whose answers report to the connection's [`Pace`].
#[derive(Debug)]
pub(super) struct Paced<S> {
    inner: S,
    pace: Arc<Pace>,
}

impl<S> Paced<S> {
    pub(super) fn new(inner: S, pace: Arc<Pace>) -> Self {
        Paced { inner, pace }
    }
}

impl<S, B> Service<Request<Incoming>> for Paced<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<PacedBody<B>>;
    type Error = S::Error;
    type Future = PacedFuture<S::Future>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        PacedFuture {
            inner: self.inner.call(req),
            pace: Some(self.pace.clone()),
        }
    }
}

pin_project_lite::pin_project! {
    /// The service's future; its answer's body reports to the connection's [`Pace`].
    pub struct PacedFuture<F> {
        #[pin]
        inner: F,
        pace: Option<Arc<Pace>>,
    }
}

impl<F, B, E> Future for PacedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<PacedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = std::task::ready!(this.inner.poll(cx));
        let pace = this.pace.take().expect("polled after it was ready");
        Poll::Ready(answer.map(|r| {
            r.map(|body| PacedBody {
                body,
                pace,
                handed: None,
            })
        }))
    }
}

pin_project_lite::pin_project! {
    /// An answer's body: a frame handed to hyper waits for the client until hyper asks
    /// for the next one.
    pub struct PacedBody<B> {
        #[pin]
        body: B,
        pace: Arc<Pace>,
        handed: Option<Handed>,
    }
}

impl<B: Body> Body for PacedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        // Asked for more: the frame handed before has been taken.
        this.handed.take();
        let polled = this.body.poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            *this.handed = Some(Handed::new(this.pace));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    const TIMEOUT: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_write_pending_for_the_timeout_fails_and_bytes_taken_restart_the_wait() {
        let (server, mut client) = duplex(1024);
        let mut server = SendDeadline::new(server, TIMEOUT);
        let chunk = [7u8; 1024];
        server.write_all(&chunk).await.unwrap();
        // The buffer is full: the next write waits. A client that takes a little every
        // 40 s (under the timeout) keeps it going.
        let started = Instant::now();
        for _ in 0..3 {
            let write = server.write_all(&chunk[..512]);
            let taker = async {
                tokio::time::sleep(TIMEOUT * 2 / 3).await;
                client.read_exact(&mut [0u8; 512]).await.unwrap();
            };
            let (wrote, ()) = tokio::join!(write, taker);
            wrote.unwrap();
        }
        assert!(started.elapsed() >= TIMEOUT * 2, "{:?}", started.elapsed());
        // Then the client takes nothing: the write fails after the timeout.
        let started = Instant::now();
        let err = server.write_all(&chunk).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(is_send_timeout(&err));
        assert!(!is_send_timeout(&io::Error::from(io::ErrorKind::TimedOut)));
        assert_eq!(started.elapsed(), TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn reads_pass_through_and_an_idle_socket_never_times_out() {
        let (server, mut client) = duplex(1024);
        let mut server = SendDeadline::new(server, TIMEOUT);
        tokio::time::advance(TIMEOUT * 3).await;
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        server.write_all(b"pong").await.unwrap();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
    }

    /// A body of `n` one-byte frames, each ready at once.
    fn frames(
        n: usize,
    ) -> http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible> {
        use http_body_util::BodyExt;
        let frames = (0..n).map(|_| Ok(Frame::data(bytes::Bytes::from_static(b"x"))));
        let frames: Vec<_> = frames.collect();
        http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed()
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_not_asked_for_its_next_frame_within_the_timeout_is_stalled() {
        use http_body_util::BodyExt;

        let pace = Pace::new();
        let mut body = Box::pin(PacedBody {
            body: frames(3),
            pace: pace.clone(),
            handed: None,
        });
        let stalled = pace.stalled(TIMEOUT);
        tokio::pin!(stalled);
        // Nothing handed yet: however long, not stalled.
        assert!(tokio::time::timeout(TIMEOUT * 2, stalled.as_mut())
            .await
            .is_err());
        // A frame handed and taken on within the timeout: not stalled.
        body.frame().await.unwrap().unwrap();
        assert!(tokio::time::timeout(TIMEOUT / 2, stalled.as_mut())
            .await
            .is_err());
        body.frame().await.unwrap().unwrap();
        let handed = Instant::now();
        // The second one is never taken: stalled a timeout after it was handed.
        stalled.await;
        assert_eq!(handed.elapsed(), TIMEOUT);
        // Dropped (hyper is done with it), it waits no more.
        drop(body);
        assert_eq!(pace.waiting.load(Ordering::Acquire), 0);
    }
}
