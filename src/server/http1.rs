//! HTTP/1 keep-alive connections that hold only their socket while idle.
//!
//! hyper keeps an HTTP/1 connection's read and write buffers (8 KiB each) for as long as
//! the connection is open, busy or idle: 10 000 idle keep-alive clients would hold about
//! 190 MiB. [`serve`] runs hyper's connection while requests come. Once the connection
//! has been quiet for [`Settings::park_after`] since its last response (no request begun
//! or in flight since), it
//! asks hyper to finish: `graceful_shutdown` on an idle connection ends it at once,
//! writing nothing. It takes the socket back (`into_parts`, without shutting the socket)
//! and waits on the socket alone, **parked**. The next request's first bytes start a
//! fresh hyper connection on the same socket. The client sees one ordinary keep-alive
//! connection.
//!
//! Bytes hyper had read but not used yet (the start of the next request head) come back
//! from `into_parts` and are replayed to the next hyper connection first, so nothing is
//! lost. A session is parked only after it has begun at least one request, so hyper's
//! header timeout, which restarts with each session, still bounds a slow head: a client
//! cannot reset it by stalling.
//!
//! A parked connection is closed [`Settings::idle_timeout`] after its last response (or
//! when parked, if `park_after` is the longer), when the client closes it, or at shutdown.
//!
//! An admin connection can also be evicted ([`evict`](crate::server::evict)): when it serves no request
//! it closes at once (a request head begun is dropped), else after its current answer.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::{HttpService, Service};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use super::activity::{Activity, InFlight, Quiet};
use super::evict::{self, Slot};
use crate::error::BoxError;

/// How long a connection stays quiet before it is parked (at most; see
/// [`Settings::new`]). Short, so that a burst of new clients that then idle does not
/// hold their buffers long; long enough that a client pausing between requests rarely
/// pays the few microseconds of a new hyper connection.
pub(super) const PARK_AFTER: Duration = Duration::from_millis(250);

/// How HTTP/1 connections are served.
#[derive(Clone, Debug)]
pub(super) struct Settings {
    /// hyper's HTTP/1 settings, header timeout included.
    pub builder: http1::Builder,
    /// Quiet this long after a response → parked.
    pub park_after: Duration,
    /// A parked connection idle this long is closed.
    pub idle_timeout: Duration,
}

impl Settings {
    /// Heads must arrive within `header_timeout`; keep-alive connections idle longer than
    /// `idle_timeout` are closed.
    pub(super) fn new(header_timeout: Duration, idle_timeout: Duration) -> Self {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(true);
        Settings {
            builder,
            // hyper's header timer also runs on an idle connection until it is parked:
            // park well before it could fire (but do not tick more often than every
            // 10 ms for a header timeout too short to matter).
            park_after: PARK_AFTER
                .min(header_timeout / 4)
                .max(Duration::from_millis(10)),
            idle_timeout,
        }
    }
}

/// How a connection ended.
#[derive(Debug)]
pub(super) enum Ended {
    /// The client closed it, asked for it to close, or it was closed at shutdown.
    Closed,
    /// Parked and idle for `idle_timeout`.
    Idle,
    /// Evicted from a full admin listener to admit a new connection.
    Evicted,
    /// hyper or the socket failed (a header timeout included).
    Failed(hyper::Error),
}

/// What [`serve`] reports when the connection is gone.
#[derive(Debug)]
pub(super) struct Served {
    pub ended: Ended,
    /// hyper connections made on the socket: 1, plus one per wake-up from parking or
    /// replay of a head begun before it.
    pub sessions: u32,
}

/// Serves HTTP/1 on `stream` with `service` until the client leaves, the connection idles
/// past `idle_timeout`, `shutdown` turns true (in-flight requests finish first), or it is
/// evicted through `slot` (admin connections only).
/// `stream` must have bytes to read (the caller waited for the first ones).
pub(super) async fn serve<T, S, B>(
    stream: T,
    service: S,
    settings: &Settings,
    shutdown: watch::Receiver<bool>,
    slot: Option<&Slot>,
    parked: impl Fn(bool),
) -> Served
where
    T: Peek,
    S: Service<Request<Incoming>, Response = Response<B>> + Unpin,
    S::Future: Unpin,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    let activity = match slot {
        Some(s) => s.activity.clone(),
        None => Arc::new(Activity::new()),
    };
    let mut service = Tracked {
        inner: service,
        activity: activity.clone(),
    };
    let mut socket = Socket {
        stream,
        replay: Bytes::new(),
    };
    let mut keepalive = Keepalive {
        settings,
        activity,
        // Seen only when shutdown is signalled; checked on each wake-up without a lock.
        probe: shutdown.clone(),
        shutdown,
        slot,
        tick: pin!(tokio::time::sleep(settings.park_after)),
    };
    let mut sessions = 0;
    let ended = loop {
        sessions += 1;
        (service, socket) = match keepalive.session(socket, service).await {
            Session::Parked(service, socket) => (service, socket),
            Session::Over(ended) => break ended,
        };
        if slot.is_some_and(Slot::is_evicted) {
            break Ended::Evicted;
        }
        if !socket.replay.is_empty() {
            // A request head had begun: serve it now.
            continue;
        }
        parked(true);
        let ended = keepalive.park(&mut socket.stream).await;
        parked(false);
        if let Some(ended) = ended {
            break ended;
        }
        // Woken by the next request's first bytes: a fresh session serves it.
    };
    Served { ended, sessions }
}

/// What the sessions and parked spells of one keep-alive connection share.
struct Keepalive<'a> {
    settings: &'a Settings,
    activity: Arc<Activity>,
    shutdown: watch::Receiver<bool>,
    /// A copy of `shutdown` whose change is never marked seen.
    probe: watch::Receiver<bool>,
    /// The admin connection's eviction signal.
    slot: Option<&'a Slot>,
    /// When to look at the activity again (serving), or to give up waiting (parked).
    tick: Pin<&'a mut Sleep>,
}

/// How a session ended.
enum Session<H, T> {
    /// Quiet long enough: hyper gave the service and the socket back, with the bytes it
    /// had read but not used.
    Parked(H, Socket<T>),
    /// The connection is over.
    Over(Ended),
}

impl Keepalive<'_> {
    /// Runs one hyper connection on `socket` until the client leaves, shutdown drains it,
    /// or it is quiet long enough to park.
    async fn session<T, H>(&mut self, socket: Socket<T>, service: H) -> Session<H, T>
    where
        T: Peek,
        H: HttpService<Incoming, ResBody: 'static, Future: Unpin> + Unpin,
        H::Error: Into<BoxError>,
        <H::ResBody as Body>::Error: Into<BoxError>,
    {
        let settings = self.settings;
        let activity = &*self.activity;
        let probe = &self.probe;
        let mut conn = Box::new(
            settings
                .builder
                .serve_connection(TokioIo::new(socket), service),
        );
        let begun = activity.requests.load(Relaxed);
        self.tick
            .as_mut()
            .reset(Instant::now() + settings.park_after);
        let mut parking = false;
        let mut draining = false;
        let mut evicting = false;
        // Admin connections only: the data plane polls nothing more.
        let mut evicted = self.slot.map(|s| Box::pin(s.evicted()));
        let result = {
            let tick = &mut self.tick;
            let mut stop = pin!(stopped(&mut self.shutdown));
            let mut stop_polled = false;
            poll_fn(|cx| loop {
                if let Poll::Ready(r) = conn.poll_without_shutdown(cx) {
                    return Poll::Ready(r);
                }
                if !evicting
                    && evicted
                        .as_mut()
                        .is_some_and(|e| e.as_mut().poll(cx).is_ready())
                {
                    evicting = true;
                    if !activity.serving() {
                        // Closed at once, even with a head begun (hyper would wait for
                        // it, to answer `close`). hyper has written all it can: bytes
                        // of an answer it still holds are for a client not reading them.
                        return Poll::Ready(Ok(()));
                    }
                    // Serving a request (it began as this one was chosen): the answer
                    // is finished first, then the connection closes.
                    Pin::new(&mut *conn).graceful_shutdown();
                    continue;
                }
                // The shutdown future takes a lock to register: poll it once, then only
                // when the signal has been sent.
                if !draining && (!stop_polled || probe.has_changed().unwrap_or(true)) && {
                    stop_polled = true;
                    stop.as_mut().poll(cx).is_ready()
                } {
                    draining = true;
                    Pin::new(&mut *conn).graceful_shutdown();
                    continue;
                }
                if parking || draining || tick.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                match activity.quiet(begun, settings.park_after) {
                    Quiet::Until(next) => tick.as_mut().reset(next),
                    Quiet::Enough => {
                        // hyper is between requests: it finishes at once, writing nothing.
                        parking = true;
                        Pin::new(&mut *conn).graceful_shutdown();
                        continue;
                    }
                }
            })
            .await
        };
        if evicting {
            return Session::Over(Ended::Evicted);
        }
        if let Err(e) = result {
            return Session::Over(Ended::Failed(e));
        }
        if draining || !parking {
            // Drained, or hyper ended on its own: the client closed the connection or
            // asked for it to be closed.
            return Session::Over(Ended::Closed);
        }
        let parts = conn.into_parts();
        let mut socket = parts.io.into_inner();
        socket.keep_unread(parts.read_buf);
        Session::Parked(parts.service, socket)
    }

    /// Waits, parked, on the client's socket alone: `None` when a request is coming,
    /// otherwise how the connection ended (idle too long, closed, or shutdown).
    async fn park(&mut self, stream: &mut impl Peek) -> Option<Ended> {
        self.tick
            .as_mut()
            .reset(self.activity.done_at() + self.settings.idle_timeout);
        // The bytes are peeked, not read: hyper reads them whole into its own buffer.
        tokio::select! {
            biased;
            _ = stopped(&mut self.shutdown) => Some(Ended::Closed),
            _ = evict::evicted(self.slot), if self.slot.is_some() => Some(Ended::Evicted),
            ready = stream.wait_for_bytes() => match ready {
                Ok(true) => None,
                Ok(false) | Err(_) => Some(Ended::Closed),
            },
            _ = &mut self.tick => Some(Ended::Idle),
        }
    }
}

/// A client stream whose next bytes can be awaited without taking them.
pub(super) trait Peek: AsyncRead + AsyncWrite + Unpin {
    /// Waits until there are bytes to read (`true`) or the peer has closed (`false`).
    fn wait_for_bytes(&mut self) -> impl Future<Output = io::Result<bool>> + Send;
}

impl Peek for tokio::net::TcpStream {
    async fn wait_for_bytes(&mut self) -> io::Result<bool> {
        let mut byte = [0u8; 1];
        Ok(self.peek(&mut byte).await? > 0)
    }
}

/// Returns once `shutdown` is (or has been) signalled, or its sender is gone.
pub(super) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// A client socket, with the bytes an earlier hyper connection read but did not use.
#[derive(Debug)]
struct Socket<T> {
    stream: T,
    replay: Bytes,
}

impl<T> Socket<T> {
    /// Keeps `unread` to be read first.
    fn keep_unread(&mut self, unread: Bytes) {
        self.replay = match (self.replay.is_empty(), unread.is_empty()) {
            (_, true) => std::mem::take(&mut self.replay),
            (true, false) => unread,
            (false, false) => {
                let mut both = BytesMut::with_capacity(unread.len() + self.replay.len());
                both.extend_from_slice(&unread);
                both.extend_from_slice(&self.replay);
                both.freeze()
            }
        };
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Socket<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.replay.is_empty() {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        let n = this.replay.len().min(buf.remaining());
        buf.put_slice(&this.replay[..n]);
        this.replay.advance(n);
        Poll::Ready(Ok(()))
    }
}

forward_write!([T: AsyncWrite + Unpin] Socket<T> => stream);

/// The connection's service, counting requests begun and in flight.
pub(crate) struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    /// `inner`, reporting to `activity`.
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Tracked { inner, activity }
    }
}

impl<S, B> Service<Request<Incoming>> for Tracked<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.activity.requests.fetch_add(1, Relaxed);
        self.activity.in_flight.fetch_add(1, Relaxed);
        TrackedFuture {
            inner: self.inner.call(req),
            in_flight: Some(InFlight(self.activity.clone())),
        }
    }
}

pin_project_lite::pin_project! {
    /// The service's future; its answer's body carries the in-flight mark on.
    pub(crate) struct TrackedFuture<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = std::task::ready!(this.inner.poll(cx));
        let in_flight = this.in_flight.take();
        Poll::Ready(answer.map(|r| {
            r.map(|body| TrackedBody {
                body,
                _in_flight: in_flight,
            })
        }))
    }
}

pin_project_lite::pin_project! {
    /// A response body; hyper drops it once it has taken the last frame.
    pub(crate) struct TrackedBody<B> {
        #[pin]
        body: B,
        _in_flight: Option<InFlight>,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
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
    use std::convert::Infallible;
    use std::sync::atomic::AtomicI32;

    use http_body_util::Full;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// The server's end of an in-memory connection; a byte taken to see that more are
    /// coming is held and read first.
    struct Pipe {
        inner: DuplexStream,
        held: Option<u8>,
    }

    impl Peek for Pipe {
        async fn wait_for_bytes(&mut self) -> io::Result<bool> {
            if self.held.is_none() {
                let mut byte = [0u8; 1];
                if self.inner.read(&mut byte).await? == 0 {
                    return Ok(false);
                }
                self.held = Some(byte[0]);
            }
            Ok(true)
        }
    }

    impl AsyncRead for Pipe {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            if let Some(b) = this.held.take() {
                buf.put_slice(&[b]);
                return Poll::Ready(Ok(()));
            }
            Pin::new(&mut this.inner).poll_read(cx, buf)
        }
    }

    forward_write!([] Pipe => inner);

    const HEADER_TIMEOUT: Duration = Duration::from_secs(8);
    const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

    type Answer = Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

    /// Answers with the request's path, after `delay` (`/big`: with 1 MiB).
    fn paths(
        delay: Duration,
    ) -> impl Service<
        Request<Incoming>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = Answer,
    > + Unpin {
        hyper::service::service_fn(move |req: Request<Incoming>| -> Answer {
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                let body = match req.uri().path() {
                    "/big" => Bytes::from(vec![b'x'; 1 << 20]),
                    path => Bytes::from(path.to_owned()),
                };
                Ok(Response::new(Full::new(body)))
            })
        })
    }

    struct Client {
        stream: DuplexStream,
        /// Parked right now: +1 when parked, -1 when woken.
        parked: Arc<AtomicI32>,
        stop: watch::Sender<bool>,
        served: tokio::task::JoinHandle<Served>,
    }

    async fn connect(delay: Duration) -> Client {
        connect_to(delay, None).await
    }

    /// A connection an admin listener could evict through the slot returned.
    async fn connect_evictable(delay: Duration) -> (Client, Arc<Slot>) {
        let slot = Arc::new(Slot::new());
        (connect_to(delay, Some(slot.clone())).await, slot)
    }

    async fn connect_to(delay: Duration, slot: Option<Arc<Slot>>) -> Client {
        let (stream, server) = duplex(64 * 1024);
        let parked = Arc::new(AtomicI32::new(0));
        let (stop, shutdown) = watch::channel(false);
        let gauge = parked.clone();
        let served = tokio::spawn(async move {
            let settings = Settings::new(HEADER_TIMEOUT, IDLE_TIMEOUT);
            let server = Pipe {
                inner: server,
                held: None,
            };
            let slot = slot.as_deref();
            serve(server, paths(delay), &settings, shutdown, slot, move |p| {
                gauge.fetch_add(if p { 1 } else { -1 }, Relaxed);
            })
            .await
        });
        Client {
            stream,
            parked,
            stop,
            served,
        }
    }

    impl Client {
        async fn send(&mut self, bytes: &[u8]) {
            self.stream.write_all(bytes).await.unwrap();
        }

        /// Reads one answer (hyper's are small and have a content-length); returns its
        /// head and body.
        async fn answer(&mut self) -> (String, String) {
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            loop {
                let n = self.stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map_or(0, |v| v.parse().unwrap());
                    if body.len() >= len {
                        return (head.to_owned(), body.to_owned());
                    }
                }
            }
        }

        async fn get(&mut self, path: &str) -> (String, String) {
            self.send(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
                .await;
            self.answer().await
        }

        fn parked(&self) -> i32 {
            self.parked.load(Relaxed)
        }

        /// Closes the client's side; what `serve` returned.
        async fn close(self) -> Served {
            drop(self.stream);
            self.served.await.unwrap()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_is_quiet_park_after_its_last_answer_with_none_in_flight() {
        let a = Arc::new(Activity::new());
        let later = || Quiet::Until(Instant::now() + PARK_AFTER);
        assert_eq!(a.quiet(0, PARK_AFTER), later(), "no request begun yet");
        a.requests.fetch_add(1, Relaxed);
        a.in_flight.fetch_add(1, Relaxed);
        let answering = InFlight(a.clone());
        tokio::time::advance(PARK_AFTER * 2).await;
        assert_eq!(a.quiet(0, PARK_AFTER), later(), "in flight");
        drop(answering);
        let answered = Instant::now();
        tokio::time::advance(PARK_AFTER / 2).await;
        assert_eq!(a.quiet(0, PARK_AFTER), Quiet::Until(answered + PARK_AFTER));
        tokio::time::advance(PARK_AFTER / 2).await;
        assert_eq!(a.quiet(0, PARK_AFTER), Quiet::Enough);
        assert_eq!(
            a.quiet(1, PARK_AFTER),
            later(),
            "none begun by this session"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_parked_and_serves_its_next_request() {
        let mut c = connect(Duration::ZERO).await;
        let (head, body) = c.get("/a").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(!head.contains("close"), "keep-alive kept: {head}");
        assert_eq!(body, "/a");
        assert_eq!(c.parked(), 0);
        // Parked once quiet for PARK_AFTER since the answer, not before.
        tokio::time::sleep(PARK_AFTER - Duration::from_millis(10)).await;
        assert_eq!(c.parked(), 0, "parked early");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(c.parked(), 1, "quiet for PARK_AFTER, not parked");
        let (head, body) = c.get("/b").await;
        assert!(!head.contains("close"), "{head}");
        assert_eq!(body, "/b");
        assert_eq!(c.parked(), 0);
        let served = c.close().await;
        assert!(matches!(served.ended, Ended::Closed), "{served:?}");
        assert_eq!(served.sessions, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_head_begun_before_parking_is_replayed() {
        let mut c = connect(Duration::ZERO).await;
        assert_eq!(c.get("/a").await.1, "/a");
        // The next head starts, then pauses while the connection is parked.
        c.send(b"GET /second-request HT").await;
        tokio::time::sleep(PARK_AFTER * 3).await;
        // Taken down and replayed to a new hyper connection, which must not be taken down
        // before its head is complete: it would answer `connection: close`.
        c.send(b"TP/1.1\r\n").await;
        tokio::time::sleep(PARK_AFTER * 3).await;
        c.send(b"host: x\r\n\r\n").await;
        let (head, body) = c.answer().await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(!head.contains("close"), "{head}");
        assert_eq!(body, "/second-request");
        let served = c.close().await;
        // The head's start was read by the first hyper connection and served by the second.
        assert_eq!(served.sessions, 2, "{served:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_head_is_still_cut_off_by_the_header_timeout() {
        let mut c = connect(Duration::ZERO).await;
        assert_eq!(c.get("/a").await.1, "/a");
        // One byte per half second, after a served request: the quiet pauses must not
        // let parking restart hyper's header timer for ever (a slowloris). The first pause
        // does park the connection (the head's start is replayed); the new hyper
        // connection has begun no request, so it is not parked again and its header timer
        // runs out.
        let started = Instant::now();
        for b in b"GET /slowly-slowly-slowly-slowly HTTP/1.1\r\n"
            .iter()
            .cycle()
            .take(200)
        {
            if c.stream.write_all(&[*b]).await.is_err() || c.served.is_finished() {
                break;
            }
            tokio::time::sleep(PARK_AFTER * 2).await;
        }
        let served = c.served.await.unwrap();
        assert!(
            matches!(&served.ended, Ended::Failed(e) if e.is_timeout()),
            "{served:?}"
        );
        // Parked once, with the head's start, and never again.
        assert_eq!(served.sessions, 2, "{served:?}");
        assert!(
            started.elapsed() < HEADER_TIMEOUT + PARK_AFTER * 5,
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_answer_is_not_parked() {
        let mut c = connect(PARK_AFTER * 10).await;
        let (head, body) = c.get("/slow").await;
        assert!(!head.contains("close"), "{head}");
        assert_eq!(body, "/slow");
        let served = c.close().await;
        assert_eq!(served.sessions, 1, "{served:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_parked_connection_is_closed_after_the_idle_timeout() {
        let mut c = connect(Duration::ZERO).await;
        assert_eq!(c.get("/a").await.1, "/a");
        let started = Instant::now();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(IDLE_TIMEOUT * 2, c.stream.read(&mut buf)).await;
        assert_eq!(read.expect("still open").unwrap(), 0, "closed");
        let waited = started.elapsed();
        assert!(
            waited >= IDLE_TIMEOUT - PARK_AFTER * 2 && waited <= IDLE_TIMEOUT + PARK_AFTER * 2,
            "{waited:?}"
        );
        let served = c.served.await.unwrap();
        assert!(matches!(served.ended, Ended::Idle), "{served:?}");
        assert_eq!(c.parked.load(Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_closes_a_parked_connection_and_lets_an_answer_finish() {
        let mut c = connect(Duration::ZERO).await;
        assert_eq!(c.get("/a").await.1, "/a");
        tokio::time::sleep(PARK_AFTER * 3).await;
        assert_eq!(c.parked(), 1);
        c.stop.send(true).unwrap();
        let served = c.served.await.unwrap();
        assert!(matches!(served.ended, Ended::Closed), "{served:?}");

        // In flight: the answer still comes, then the connection closes.
        let mut c = connect(PARK_AFTER * 4).await;
        c.send(b"GET /last HTTP/1.1\r\nhost: x\r\n\r\n").await;
        tokio::time::sleep(PARK_AFTER).await;
        c.stop.send(true).unwrap();
        let (head, body) = c.answer().await;
        assert!(head.contains("connection: close"), "{head}");
        assert_eq!(body, "/last");
        let mut buf = [0u8; 16];
        assert_eq!(c.stream.read(&mut buf).await.unwrap(), 0);
    }

    /// Whether the client's side has been closed: reads to the end, `false` on any
    /// answer bytes.
    async fn closed_silently(c: &mut Client) -> bool {
        let mut rest = Vec::new();
        c.stream.read_to_end(&mut rest).await.unwrap();
        rest.is_empty()
    }

    #[tokio::test(start_paused = true)]
    async fn an_evicted_idle_connection_closes_at_once_parked_or_not() {
        // Parked.
        let (mut c, slot) = connect_evictable(Duration::ZERO).await;
        assert_eq!(c.get("/a").await.1, "/a");
        tokio::time::sleep(PARK_AFTER * 3).await;
        assert_eq!(c.parked(), 1);
        slot.evict();
        assert!(closed_silently(&mut c).await);
        let served = c.served.await.unwrap();
        assert!(matches!(served.ended, Ended::Evicted), "{served:?}");

        // Between requests, before parking, with the next head begun.
        let (mut c, slot) = connect_evictable(Duration::ZERO).await;
        assert_eq!(c.get("/a").await.1, "/a");
        c.send(b"GET /never-finished HT").await;
        tokio::time::sleep(PARK_AFTER / 10).await;
        assert_eq!(c.parked(), 0);
        let evicted = Instant::now();
        slot.evict();
        assert!(closed_silently(&mut c).await);
        assert_eq!(evicted.elapsed(), Duration::ZERO, "closed at once");
        let served = c.served.await.unwrap();
        assert!(matches!(served.ended, Ended::Evicted), "{served:?}");
        assert_eq!(served.sessions, 1, "{served:?}");

        // A head trickled from the first byte on (no request begun on hyper's connection).
        let (mut c, slot) = connect_evictable(Duration::ZERO).await;
        c.send(b"GET /slow").await;
        tokio::time::sleep(PARK_AFTER * 3).await;
        let evicted = Instant::now();
        slot.evict();
        assert!(closed_silently(&mut c).await);
        assert_eq!(evicted.elapsed(), Duration::ZERO, "closed at once");
        assert!(matches!(c.served.await.unwrap().ended, Ended::Evicted));
    }

    #[tokio::test(start_paused = true)]
    async fn an_evicted_connection_whose_client_takes_no_answer_closes_at_once() {
        let (mut c, slot) = connect_evictable(Duration::ZERO).await;
        c.send(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n").await;
        // The answer is computed; most of it waits for a client that reads nothing.
        tokio::time::sleep(PARK_AFTER / 10).await;
        assert!(!slot.activity.serving());
        assert!(!c.served.is_finished());
        slot.evict();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(c.served.is_finished(), "still held for the unread answer");
        assert!(matches!(c.served.await.unwrap().ended, Ended::Evicted));
    }

    #[tokio::test(start_paused = true)]
    async fn an_evicted_connection_serving_a_request_answers_it_then_closes() {
        let (mut c, slot) = connect_evictable(PARK_AFTER * 4).await;
        c.send(b"GET /busy HTTP/1.1\r\nhost: x\r\n\r\n").await;
        tokio::time::sleep(PARK_AFTER).await;
        assert!(slot.activity.serving());
        slot.evict();
        let (head, body) = c.answer().await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        assert_eq!(body, "/busy");
        assert!(closed_silently(&mut c).await);
        assert!(matches!(c.served.await.unwrap().ended, Ended::Evicted));
    }
}
