//! A connection whose answers are timed by the kernel: the latency the gates read is the
//! backend's, live or mirrored.
//!
//! Mirrors run on the low-priority shadow thread, live requests on the proxy's workers.
//! When the CPU is busy (other work on the node, a client flooding switchyard) either may
//! be polled long after a backend's answer has arrived; timed from the thread, a backend
//! looks slower than it is, and the stable (served live) and the candidate (mirrored, or
//! served live at another weight) not by the same amount. A
//! [`Socket`] of a timed pool asks the kernel to stamp each arriving segment
//! (`SO_TIMESTAMPNS`) and reads with `recvmsg`, so its [`Clock`] holds:
//!
//! - **written**: when the request's last bytes were handed to the kernel (the backend
//!   cannot answer a request before it has it, so a thread that was late to *write*
//!   changes nothing): the instants just before and just after that `write`, and
//! - **answered**: when the kernel received the first bytes of the answer that followed.
//!
//! The backend's latency is the difference ([`Clock::latency`]): the network and the
//! backend, never a wait in switchyard. Where the kernel gives no stamp (an old kernel,
//! a platform without `SO_TIMESTAMPNS`), there is no latency to report, and the caller
//! leaves the sample out of the latency figures rather than guess.
//!
//! The kernel turns receive stamping on for the whole host a moment after the first
//! socket asks for it (deferred work): segments that arrive before then carry no stamp.
//! So a timed pool turns it on as it is made ([`keep_stamping`]), long before its first
//! request, and keeps it on.
//!
//! A [`Socket`] without a clock ([`Socket::plain`], an untimed pool's) reads and writes
//! as a plain [`TcpStream`].

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

/// Turns the kernel's receive stamping on for good, once per process: one socket that
/// asks for it, kept open. Timed sockets ask too, but the kernel acts on the first
/// request a moment later; without this the first answers after a start would come
/// unstamped and give no latency.
pub(crate) fn keep_stamping() {
    use std::os::fd::OwnedFd;
    use std::sync::OnceLock;
    static KEPT: OnceLock<Option<OwnedFd>> = OnceLock::new();
    KEPT.get_or_init(|| {
        let fd = socket::socket(
            socket::AddressFamily::Inet,
            socket::SockType::Datagram,
            socket::SockFlag::SOCK_CLOEXEC,
            None,
        )
        .ok()?;
        socket::setsockopt(&fd, sockopt::ReceiveTimestampns, &true).ok()?;
        Some(fd)
    });
}

/// When one exchange's request was written and its answer arrived, both on the wall clock
/// (the kernel stamps segments with `CLOCK_REALTIME`).
#[derive(Debug, Default)]
pub(crate) struct Clock {
    marks: Mutex<Marks>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Marks {
    /// Just before and just after the last write.
    written: Option<(SystemTime, SystemTime)>,
    answered: Option<SystemTime>,
    /// The answer's first bytes came without a kernel stamp: no clean latency.
    unstamped: bool,
}

impl Clock {
    /// The backend's latency for the exchange whose answer head has just been read: from
    /// the request written to the answer's first bytes received. `None` when it cannot be
    /// measured cleanly (no kernel stamp, or a wall clock that stepped backwards).
    pub(crate) fn latency(&self) -> Option<Duration> {
        let m = *self.lock();
        if m.unstamped {
            return None;
        }
        let (before, after) = m.written?;
        let answered = m.answered?;
        // A backend next door may answer before this thread is back from its `write`:
        // then the latency is within that `write`, counted from its start.
        answered
            .duration_since(after)
            .or_else(|_| answered.duration_since(before))
            .ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Marks> {
        self.marks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes of a request went out in a `write` between `before` and `after`: a new
    /// exchange begins if the last one was answered.
    fn wrote(&self, before: SystemTime, after: SystemTime) {
        let mut m = self.lock();
        if m.answered.is_some() || m.unstamped {
            *m = Marks::default();
        }
        m.written = Some((before, after));
    }

    /// True while a request has been written and its answer's first bytes (and their
    /// stamp) are still to come: the one read of an exchange that asks for a stamp.
    fn awaits_answer(&self) -> bool {
        let m = self.lock();
        m.written.is_some() && m.answered.is_none() && !m.unstamped
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

/// A backend connection's socket: plain, or timed by the kernel (every upstream pool's).
#[derive(Debug)]
pub(crate) struct Socket {
    stream: TcpStream,
    timed: Option<Timed>,
}

#[derive(Debug)]
struct Timed {
    clock: Arc<Clock>,
    /// Room for one `SCM_TIMESTAMPNS` control message, reused for every read.
    control: Vec<u8>,
}

/// At most this many bytes are read by the stamped read of an exchange; the rest of a
/// longer answer comes by plain reads.
const STAMPED_READ: usize = 16 * 1024;

thread_local! {
    /// Where a stamped read puts its bytes before they are copied to the caller's buffer:
    /// `recvmsg` here takes initialized memory, and zeroing the caller's (hyper reads into
    /// 8 KiB and more of uninitialized memory) on every read would cost more than this
    /// copy of the bytes actually read. One per thread, not one per connection.
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; STAMPED_READ].into_boxed_slice());
}

impl Socket {
    /// A socket read and written as `stream` is.
    pub(crate) fn plain(stream: TcpStream) -> Socket {
        Socket {
            stream,
            timed: None,
        }
    }

    /// A socket whose answers the kernel stamps, and the clock that holds the marks; a
    /// plain socket (and no clock) where the kernel refuses to stamp.
    pub(crate) fn timed(stream: TcpStream) -> (Socket, Option<Arc<Clock>>) {
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
        // Only the first read of an answer asks for its stamp; the others (the rest of a
        // body, a connection polled while idle) read as a plain stream does.
        let Some(timed) = this.timed.as_mut().filter(|t| t.clock.awaits_answer()) else {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        };
        loop {
            ready!(this.stream.poll_read_ready(cx))?;
            let stream = &this.stream;
            let control = &mut timed.control;
            let read = SCRATCH.with_borrow_mut(|scratch| {
                let room = buf.remaining().min(scratch.len());
                let got = stream.try_io(Interest::READABLE, || {
                    receive(stream, control, &mut scratch[..room])
                });
                if let Ok((n, _)) = &got {
                    buf.put_slice(&scratch[..*n]);
                }
                got
            });
            match read {
                Ok((n, stamp)) => {
                    if n > 0 {
                        timed.clock.read(stamp);
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl Socket {
    /// The instant before a write, on a timed socket.
    fn before_write(&self) -> Option<SystemTime> {
        self.timed.as_ref().map(|_| SystemTime::now())
    }

    /// Marks bytes written since `before`, on a timed socket.
    fn wrote(&self, before: Option<SystemTime>, n: &Poll<io::Result<usize>>) {
        if let (Some(t), Some(before), Poll::Ready(Ok(1..))) = (&self.timed, before, n) {
            t.clock.wrote(before, SystemTime::now());
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
        let before = this.before_write();
        let n = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.wrote(before, &n);
        n
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let before = this.before_write();
        let n = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.wrote(before, &n);
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
            for _ in 0..3 {
                s.read_exact(&mut req).unwrap();
                s.write_all(b"answer").unwrap();
            }
        });
        let (mut socket, clock) = Socket::timed(TcpStream::connect(addr).await.unwrap());
        let clock = clock.expect("Linux stamps TCP segments");
        for round in 0..3 {
            socket.write_all(b"req").await.unwrap();
            // The reader is late: the answer waits in the kernel for 300 ms.
            let late = std::time::Instant::now();
            std::thread::sleep(Duration::from_millis(300));
            let mut answer = [0u8; 6];
            socket.read_exact(&mut answer).await.unwrap();
            assert_eq!(&answer, b"answer");
            // The kernel turns stamping on shortly after the first socket asks for it: the
            // first answer may come unstamped, and then has no latency.
            let Some(latency) = clock.latency() else {
                assert_eq!(round, 0, "unstamped after the first answer");
                continue;
            };
            assert!(
                latency < late.elapsed() / 2,
                "{latency:?}: the wait in switchyard is not the backend's"
            );
        }
        backend.join().unwrap();
    }

    #[tokio::test]
    async fn an_answer_longer_than_the_stamped_read_comes_whole() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let answer: Vec<u8> = (0..5 * STAMPED_READ as u32).map(|i| i as u8).collect();
        let sent = answer.clone();
        let backend = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut s, _) = listener.accept().unwrap();
            for _ in 0..2 {
                let mut req = [0u8; 3];
                s.read_exact(&mut req).unwrap();
                s.write_all(&sent).unwrap();
            }
        });
        let (mut socket, clock) = Socket::timed(TcpStream::connect(addr).await.unwrap());
        assert!(clock.is_some(), "Linux stamps TCP segments");
        for _ in 0..2 {
            socket.write_all(b"req").await.unwrap();
            let mut got = vec![0u8; answer.len()];
            socket.read_exact(&mut got).await.unwrap();
            assert!(got == answer, "the answer came whole and in order");
        }
        backend.join().unwrap();
    }

    #[test]
    fn an_exchange_without_a_stamp_has_no_latency() {
        let clock = Clock::default();
        let t0 = SystemTime::now();
        let ms = Duration::from_millis;
        clock.wrote(t0, t0 + ms(1));
        clock.read(None);
        assert_eq!(clock.latency(), None);
        // The next exchange starts afresh.
        clock.wrote(t0, t0 + ms(1));
        clock.read(Some(t0 + ms(8)));
        clock.read(Some(t0 + ms(9)));
        assert_eq!(clock.latency(), Some(ms(7)), "from the write's end");
        // An answer that came while the thread was still in its write.
        clock.wrote(t0, t0 + ms(3));
        clock.read(Some(t0 + ms(2)));
        assert_eq!(clock.latency(), Some(ms(2)), "from the write's start");
    }
}
