//! A connection whose answers are timed by the kernel: a mirror's latency is the backend's.
//!
//! Mirrors run on the low-priority shadow thread. When the CPU is busy (other work on the
//! node, a client flooding switchyard) that thread may be polled long after a backend's
//! answer has arrived; timed from the thread, a healthy candidate looks slow. A
//! [`Socket`] of a shadow pool asks the kernel to stamp each arriving segment
//! (`SO_TIMESTAMPNS`) and reads with `recvmsg`, so its [`Clock`] holds:
//!
//! - **written**: when the request's last bytes were handed to the kernel (the backend
//!   cannot answer a request before it has it, so a thread that was late to *write*
//!   changes nothing), and
//! - **answered**: when the kernel received the first bytes of the answer that followed.
//!
//! The backend's latency is the difference ([`Clock::latency`]): the network and the
//! backend, never a wait in switchyard. Where the kernel gives no stamp (an old kernel,
//! a platform without `SO_TIMESTAMPNS`), there is no latency to report, and the caller
//! leaves the sample out rather than guess.
//!
//! A live connection's [`Socket`] has no clock: it reads and writes as a plain
//! [`TcpStream`].

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime};

use nix::sys::socket::{self, sockopt, ControlMessageOwned, MsgFlags};
use nix::sys::time::TimeSpec;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// When one exchange's request was written and its answer arrived, both on the wall clock
/// (the kernel stamps segments with `CLOCK_REALTIME`).
#[derive(Debug, Default)]
pub struct Clock {
    marks: Mutex<Marks>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Marks {
    written: Option<SystemTime>,
    answered: Option<SystemTime>,
    /// The answer's first bytes came without a kernel stamp: no clean latency.
    unstamped: bool,
}

impl Clock {
    /// The backend's latency for the exchange whose answer head has just been read: from
    /// the request written to the answer's first bytes received. `None` when it cannot be
    /// measured cleanly (no kernel stamp, or a wall clock that stepped backwards).
    pub fn latency(&self) -> Option<Duration> {
        let m = *self.lock();
        if m.unstamped {
            return None;
        }
        m.answered?.duration_since(m.written?).ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Marks> {
        self.marks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes of a request went out: a new exchange begins if the last one was answered.
    fn wrote(&self, at: SystemTime) {
        let mut m = self.lock();
        if m.answered.is_some() || m.unstamped {
            *m = Marks::default();
        }
        m.written = Some(at);
    }

    /// Bytes of an answer came in, stamped by the kernel (or not).
    fn read(&self, stamp: Option<SystemTime>) {
        let mut m = self.lock();
        if m.written.is_some() && m.answered.is_none() && !m.unstamped {
            match stamp {
                Some(at) => m.answered = Some(at),
                None => m.unstamped = true,
            }
        }
    }
}

/// A backend connection's socket: plain, or timed by the kernel (shadow connections).
#[derive(Debug)]
pub struct Socket {
    stream: TcpStream,
    timed: Option<Timed>,
}

#[derive(Debug)]
struct Timed {
    clock: Arc<Clock>,
    /// Room for one `SCM_TIMESTAMPNS` control message, reused for every read.
    control: Vec<u8>,
}

impl Socket {
    /// A socket read and written as `stream` is.
    pub fn plain(stream: TcpStream) -> Socket {
        Socket {
            stream,
            timed: None,
        }
    }

    /// A socket whose answers the kernel stamps, and the clock that holds the marks; a
    /// plain socket (and no clock) where the kernel refuses to stamp.
    pub fn timed(stream: TcpStream) -> (Socket, Option<Arc<Clock>>) {
        if socket::setsockopt(&stream, sockopt::ReceiveTimestampns, &true).is_err() {
            return (Socket::plain(stream), None);
        }
        let clock = Arc::new(Clock::default());
        let timed = Timed {
            clock: clock.clone(),
            control: nix::cmsg_space!(TimeSpec),
        };
        let socket = Socket {
            stream,
            timed: Some(timed),
        };
        (socket, Some(clock))
    }
}

/// Reads into `buf` with `recvmsg`; the kernel's stamp of the data read, if it gave one.
fn receive(
    stream: &TcpStream,
    control: &mut [u8],
    buf: &mut [u8],
) -> io::Result<(usize, Option<SystemTime>)> {
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = socket::recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(control),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let stamp = msg.cmsgs().ok().and_then(|mut c| {
        c.find_map(|m| match m {
            ControlMessageOwned::ScmTimestampns(ts) => {
                let since = Duration::from(ts);
                SystemTime::UNIX_EPOCH.checked_add(since)
            }
            _ => None,
        })
    });
    Ok((msg.bytes, stamp))
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(timed) = &mut this.timed else {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        };
        loop {
            ready!(this.stream.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let stream = &this.stream;
            let control = &mut timed.control;
            match stream.try_io(Interest::READABLE, || receive(stream, control, unfilled)) {
                Ok((n, stamp)) => {
                    if n > 0 {
                        timed.clock.read(stamp);
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl Socket {
    /// Marks bytes written, on a timed socket.
    fn wrote(&self, n: &Poll<io::Result<usize>>) {
        if let (Some(t), Poll::Ready(Ok(1..))) = (&self.timed, n) {
            t.clock.wrote(SystemTime::now());
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.wrote(&n);
        n
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.wrote(&n);
        n
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_latency_is_the_answers_arrival_not_when_it_was_read() {
        // The backend, on a thread of its own: it answers while this task is not polled.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let backend = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut s, _) = listener.accept().unwrap();
            let mut req = [0u8; 3];
            for _ in 0..2 {
                s.read_exact(&mut req).unwrap();
                s.write_all(b"answer").unwrap();
            }
        });
        let (mut socket, clock) = Socket::timed(TcpStream::connect(addr).await.unwrap());
        let clock = clock.expect("Linux stamps TCP segments");
        for _ in 0..2 {
            socket.write_all(b"req").await.unwrap();
            // The reader is late: the answer waits in the kernel for 300 ms.
            let late = std::time::Instant::now();
            std::thread::sleep(Duration::from_millis(300));
            let mut answer = [0u8; 6];
            socket.read_exact(&mut answer).await.unwrap();
            assert_eq!(&answer, b"answer");
            let latency = clock.latency().expect("stamped");
            assert!(
                latency < late.elapsed() / 2,
                "{latency:?}: the wait in switchyard is not the backend's"
            );
        }
        backend.join().unwrap();
    }

    #[test]
    fn an_exchange_without_a_stamp_has_no_latency() {
        let clock = Clock::default();
        let t0 = SystemTime::now();
        clock.wrote(t0);
        clock.read(None);
        assert_eq!(clock.latency(), None);
        // The next exchange starts afresh.
        clock.wrote(t0);
        clock.read(Some(t0 + Duration::from_millis(7)));
        clock.read(Some(t0 + Duration::from_millis(9)));
        assert_eq!(clock.latency(), Some(Duration::from_millis(7)));
    }
}
