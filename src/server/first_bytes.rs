//! A deadline on an HTTP/2 connection's preface.
//!
//! A new connection's first bytes are awaited with a deadline of `limits.header_timeout`
//! (in `server.rs`). Those that start like the HTTP/2 preface go to hyper-util's `auto`
//! builder, which reads the whole preface before choosing HTTP/2, and has no timer of its
//! own: a client stalled inside the 24-byte preface would hold its socket, and a file
//! descriptor, for ever. [`FirstBytes`] fails such a connection's read when the deadline
//! passes first. Once the protocol is known (a byte that is not the preface's, or the whole
//! preface) the deadline is dropped and reads pass straight through: HTTP/1 has hyper's
//! own timer from then on, and an idle HTTP/2 connection is normal.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The error a [`FirstBytes`] read fails with (inside an [`io::ErrorKind::TimedOut`]).
#[derive(Debug)]
pub(super) struct NoRequest;

impl std::fmt::Display for NoRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no request began within the header timeout")
    }
}

impl std::error::Error for NoRequest {}

/// Whether `e` is a [`FirstBytes`] deadline, not another timeout (a kernel `ETIMEDOUT`
/// from a peer that vanished is a `TimedOut` too).
pub(super) fn is_no_request(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<NoRequest>())
}

/// What an HTTP/2 client with prior knowledge sends first.
pub(super) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An I/O stream whose reads fail with [`io::ErrorKind::TimedOut`] when its protocol is
/// not known within the deadline.
#[derive(Debug)]
pub(super) struct FirstBytes<T> {
    inner: T,
    /// Running until the protocol is known.
    deadline: Option<Pin<Box<Sleep>>>,
    /// How many bytes of the preface have been read so far.
    matched: usize,
}

impl<T> FirstBytes<T> {
    /// `inner`, whose first bytes must arrive within `timeout`.
    pub(super) fn new(inner: T, timeout: Duration) -> Self {
        FirstBytes {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            matched: 0,
        }
    }

    /// Notes bytes read; the protocol is known once they leave or complete the preface.
    fn observe(&mut self, read: &[u8]) {
        for &b in read {
            if PREFACE.get(self.matched) != Some(&b) {
                self.deadline = None;
                return;
            }
            self.matched += 1;
        }
        if self.matched == PREFACE.len() {
            self.deadline = None;
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FirstBytes<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Some(deadline) = this.deadline.as_mut() {
            match read {
                Poll::Ready(Ok(())) => this.observe(&buf.filled()[before..]),
                Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                    this.deadline = None;
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, NoRequest)));
                }
                _ => {}
            }
        }
        read
    }
}

forward_write!([T: AsyncWrite + Unpin] FirstBytes<T> => inner);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn pair() -> (FirstBytes<DuplexStream>, DuplexStream) {
        let (server, client) = duplex(1024);
        (FirstBytes::new(server, TIMEOUT), client)
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_sends_nothing_times_out() {
        let (mut server, _client) = pair();
        let mut buf = [0u8; 64];
        let started = tokio::time::Instant::now();
        let err = server.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(is_no_request(&err));
        assert!(!is_no_request(&io::Error::from(io::ErrorKind::TimedOut)));
        assert_eq!(started.elapsed(), TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_stalled_inside_the_http2_preface_times_out() {
        let (mut server, mut client) = pair();
        client.write_all(&PREFACE[..10]).await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(server.read(&mut buf).await.unwrap(), 10);
        let err = server.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_known_protocol_lifts_the_deadline() {
        // A byte that is not the preface's (HTTP/1; the rest of its head is hyper's header
        // timeout's business), or the whole preface (HTTP/2, where idling is normal).
        for first in [&b"GET / HT"[..], PREFACE] {
            let (mut server, mut client) = pair();
            client.write_all(first).await.unwrap();
            let mut buf = [0u8; 64];
            assert_eq!(server.read(&mut buf).await.unwrap(), first.len());
            // Idle well past the deadline, with nothing to read: the read waits.
            tokio::time::advance(TIMEOUT * 3).await;
            let idle = tokio::time::timeout(TIMEOUT, server.read(&mut buf)).await;
            assert!(idle.is_err(), "after {first:?} the read failed: {idle:?}");
            client.write_all(b"more").await.unwrap();
            assert_eq!(server.read(&mut buf).await.unwrap(), 4);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn writes_pass_through() {
        let (mut server, mut client) = pair();
        server.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
    }
}
