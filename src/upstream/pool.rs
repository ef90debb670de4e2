//! Pooled HTTP/1 connections: a pool per backend, each connection driven by the task of
//! the request that holds it.
//!
//! hyper-util's pooled client runs every upstream connection as a task of its own, so a
//! request crosses tasks twice on its way (into the connection's channel, and back with the
//! answer) and its body a third time. Here the request's own task polls the
//! [`Connection`] while it waits for the answer's head ([`Pool::send`]) and while the
//! answer's body streams to the client ([`PooledBody`]); a connection whose answer has been
//! read in full goes back to the pool, and the next request takes it from there.
//!
//! A pool's unused connections are one list behind a mutex, held only to push or pop (never
//! across an await, never while a socket closes). Per-thread lists would skip that lock,
//! but on a multi-thread runtime the answer that frees a connection is often read on
//! another worker than the one the next request arrives on: connections then pile up on
//! one thread's list while the other opens a new one for every request.
//!
//! A pooled connection is not polled while idle, so one the backend closed in the meantime
//! is noticed when it is taken: it is polled once then, and dropped if it has ended. A
//! request that never left a reused connection (the backend closed it just then) is sent
//! again on the next one; a request that did leave is never sent twice.
//!
//! A pool has a fixed number of places (`max_connections`): an exchange takes one before
//! it takes a connection or opens one, and its answer's body gives it back with the
//! connection. A connection is opened only by an exchange that holds a place and found
//! none unused, so the pool never has more connections open, busy or unused, than
//! places. An exchange that finds every place taken waits for the first one freed, at
//! most its timeout ([`SendError::Saturated`] after that); waiting, it holds nothing.
//!
//! A connection goes back to the pool only clean: its answer read in full, and its
//! request, body included, written in full to the socket. A backend that answers before
//! it has read the whole body (refusing a request early) may never read the rest: a
//! request sent after it on that connection would never be answered, so a connection
//! whose request is still being sent when its answer has been read is closed.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};

use super::body::{ClientBodyError, UpstreamBody};
use super::timed::{Clock, Socket};
use crate::error::is_caused_by;
use crate::error::BoxError;

/// How long a connection may sit unused in the pool before it is closed.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// At most this many unused connections are kept per pool.
pub(crate) const MAX_IDLE: usize = 1024;

/// Why an exchange on one connection failed.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be opened.
    Connect(BoxError),
    /// The exchange broke (including a request body that failed while streaming).
    Exchange(hyper::Error),
    /// No answer's head within the timeout.
    Timeout,
    /// Every place was taken for the whole timeout: the request was never sent.
    Saturated,
}

/// One open connection: the half that sends requests, the half that does the I/O, and
/// on a timed pool the kernel's clock of its exchanges.
struct Conn {
    sender: SendRequest<UpstreamBody>,
    io: Connection<TokioIo<Socket>, UpstreamBody>,
    clock: Option<Arc<Clock>>,
}

impl Conn {
    /// True when the connection is still open and can take a request now.
    fn poll_usable(&mut self, cx: &mut Context<'_>) -> bool {
        // Polling reads what arrived while it sat idle: an end of stream ends the future.
        if Pin::new(&mut self.io).poll(cx).is_ready() {
            return false;
        }
        matches!(self.sender.poll_ready(cx), Poll::Ready(Ok(())))
    }

    /// True when the exchange whose answer has just been read is over on both sides:
    /// its request, body included, written in full. hyper asks for the next request
    /// only then; it has mostly asked already, else one more poll lets it.
    fn is_idle(&mut self, cx: &mut Context<'_>) -> bool {
        self.sender.is_ready()
            || (Pin::new(&mut self.io).poll(cx).is_pending() && self.sender.is_ready())
    }
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// The connections to one backend: its unused ones, newest last, and the places that
/// bound how many it may have.
pub struct Pool {
    host: Box<str>,
    port: u16,
    idle: Mutex<VecDeque<Idle>>,
    /// Free places: `max_connections` less the exchanges in flight.
    places: Semaphore,
    /// Answers carry the backend's own latency, timed by the kernel ([`BackendLatency`]).
    timed: bool,
}

/// The backend's latency for an answer of a timed pool: from the request written to the
/// answer's first bytes received, as the kernel saw them ([`timed`](crate::upstream::timed)).
/// Its answer's body carries it ([`PooledBody::latency`]), absent when it could not be
/// measured cleanly (kept there rather than in the answer's extensions, which would
/// allocate a map for every answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendLatency(pub Duration);

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool of at most `max_connections` connections to `authority` (`host:port`,
    /// port 80 when absent).
    pub fn new(authority: &http::uri::Authority, max_connections: usize) -> Arc<Pool> {
        Pool::with_timing(authority, max_connections, false)
    }

    /// A pool like [`Pool::new`] whose answers carry their [`BackendLatency`].
    pub fn timed(authority: &http::uri::Authority, max_connections: usize) -> Arc<Pool> {
        super::timed::keep_stamping();
        Pool::with_timing(authority, max_connections, true)
    }

    fn with_timing(
        authority: &http::uri::Authority,
        max_connections: usize,
        timed: bool,
    ) -> Arc<Pool> {
        let host = authority.host();
        // `[::1]` in a URL is `::1` to the resolver.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        Arc::new(Pool {
            host: host.into(),
            port: authority.port_u16().unwrap_or(80),
            idle: Mutex::new(VecDeque::new()),
            places: Semaphore::new(max_connections),
            timed,
        })
    }

    /// Sends `req` (origin-form URI, headers as they go out) on a pooled connection, or a
    /// new one, and waits for the answer's head, at most `timeout`. The answer's body
    /// holds the connection until it has been read in full.
    ///
    /// When every place is taken, the request first waits for one, at most `timeout`
    /// too; its exchange then has the whole `timeout` of its own, so that a backend is
    /// timed on what it does, not on the queue before it.
    ///
    /// The timer is polled beside the exchange rather than wrapping this future in
    /// `tokio::time::timeout`, which would copy the whole future into its own.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<UpstreamBody>,
        timeout: Duration,
    ) -> Result<Response<PooledBody>, SendError> {
        let place = match self.try_place() {
            Some(place) => place,
            // Boxed: waiting is rare, and its future would make every request's larger.
            None => Box::pin(self.wait_place(timeout))
                .await
                .ok_or(SendError::Saturated)?,
        };
        let deadline = Instant::now() + timeout;
        req.body_mut().due_before(deadline);
        let mut timer = pin!(tokio::time::sleep_until(deadline));
        while let Some(conn) = self.checkout().await {
            match self.exchange(conn, req, timer.as_mut()).await {
                Ok(answer) => return Ok(answer.lease(place)),
                Err(Unsent::Again(r)) => req = *r,
                Err(Unsent::Failed(e)) => return Err(e),
            }
        }
        // Boxed: the connect future is large, and a request rarely needs it. A backend
        // that cannot be connected to within the timeout is unreachable (502), not slow.
        let conn = match tokio::time::timeout_at(deadline, Box::pin(self.connect())).await {
            Err(_) => {
                let why = format!(
                    "no connection within {}",
                    humantime::format_duration(timeout)
                );
                return Err(SendError::Connect(why.into()));
            }
            Ok(conn) => conn.map_err(SendError::Connect)?,
        };
        match self.exchange(conn, req, timer).await {
            Ok(answer) => Ok(answer.lease(place)),
            Err(Unsent::Failed(e)) => Err(e),
            Err(Unsent::Again(_)) => Err(SendError::Connect(
                "the connection closed before the request was sent".into(),
            )),
        }
    }

    /// How many unused connections the pool holds.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    /// A free place, if there is one now.
    fn try_place(self: &Arc<Self>) -> Option<Place> {
        self.places.try_acquire().ok()?.forget();
        Some(Place { pool: self.clone() })
    }

    /// The first place freed within `timeout`, if any. Places go to waiting requests in
    /// the order they came.
    async fn wait_place(self: &Arc<Self>, timeout: Duration) -> Option<Place> {
        let freed = tokio::time::timeout(timeout, self.places.acquire()).await;
        // The semaphore is never closed: an `Err` inside is impossible.
        freed.ok()?.ok()?.forget();
        Some(Place { pool: self.clone() })
    }

    /// The unused connections. Nothing panics while the lock is held, so a poisoned lock
    /// still holds a consistent list.
    fn lock(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used connection that is still open, if any.
    async fn checkout(&self) -> Option<Box<Conn>> {
        loop {
            let popped = self.lock().pop_back();
            let Idle { mut conn, since } = popped?;
            if since.elapsed() >= IDLE_TIMEOUT {
                continue;
            }
            if poll_fn(|cx| Poll::Ready(conn.poll_usable(cx))).await {
                return Some(conn);
            }
        }
    }

    /// Returns a connection whose exchange has ended; the oldest ones past the idle
    /// timeout or over the cap are closed.
    fn put(&self, conn: Box<Conn>) {
        let now = Instant::now();
        // Closed after the lock is released (allocates only when there is one to close).
        let mut closing = Vec::new();
        let mut idle = self.lock();
        while idle
            .front()
            .is_some_and(|i| now.duration_since(i.since) >= IDLE_TIMEOUT)
            || idle.len() >= MAX_IDLE
        {
            closing.extend(idle.pop_front());
        }
        idle.push_back(Idle { conn, since: now });
        drop(idle);
        drop(closing);
    }

    async fn connect(&self) -> Result<Box<Conn>, BoxError> {
        let stream = TcpStream::connect((&*self.host, self.port)).await?;
        stream.set_nodelay(true)?;
        let (socket, clock) = match self.timed {
            true => Socket::timed(stream),
            false => (Socket::plain(stream), None),
        };
        let (sender, io) = http1::Builder::new()
            .handshake(TokioIo::new(socket))
            .await?;
        Ok(Box::new(Conn { sender, io, clock }))
    }

    /// Sends `req` on `conn`, polling the connection until the answer's head is in or
    /// `timer` fires.
    async fn exchange(
        &self,
        conn: Box<Conn>,
        req: Request<UpstreamBody>,
        mut timer: Pin<&mut Sleep>,
    ) -> Result<Answered, Unsent> {
        let clock = conn.clock.clone();
        let mut conn = Some(conn);
        // Why the connection ended, when it ended first: the answer may then only say
        // that it was dropped, and this says whose fault it was (a client's body failing).
        let mut ended: Option<hyper::Error> = None;
        let mut answer = pin!(conn
            .as_mut()
            .expect("just set")
            .sender
            .try_send_request(req));
        let result = poll_fn(|cx| {
            if let Some(c) = conn.as_mut() {
                if let Poll::Ready(r) = Pin::new(&mut c.io).poll(cx) {
                    // Ended (closed or failed): dropping it settles the pending answer.
                    ended = r.err();
                    conn = None;
                }
            }
            match answer.as_mut().poll(cx) {
                Poll::Ready(r) => Poll::Ready(Some(r)),
                Poll::Pending => timer.as_mut().poll(cx).map(|()| None),
            }
        })
        .await;
        // Timed out: dropping the connection abandons the exchange.
        let Some(result) = result else {
            return Err(Unsent::Failed(SendError::Timeout));
        };
        match result {
            Ok(resp) => {
                let latency = clock.and_then(|c| c.latency()).map(BackendLatency);
                Ok(Answered {
                    resp,
                    conn,
                    latency,
                })
            }
            Err(mut e) => match e.take_message() {
                Some(req) => Err(Unsent::Again(Box::new(req))),
                None => {
                    let e = match ended {
                        Some(cause) if is_caused_by::<ClientBodyError>(&cause) => cause,
                        _ => e.into_error(),
                    };
                    Err(Unsent::Failed(SendError::Exchange(e)))
                }
            },
        }
    }
}

enum Unsent {
    /// The request never left: it can go on another connection.
    Again(Box<Request<UpstreamBody>>),
    Failed(SendError),
}

/// An answer's head, its connection unless that ended, and on a timed pool the
/// backend's latency.
struct Answered {
    resp: Response<Incoming>,
    conn: Option<Box<Conn>>,
    latency: Option<BackendLatency>,
}

impl Answered {
    /// The answer, its body holding the connection and `place` until read in full.
    fn lease(self, place: Place) -> Response<PooledBody> {
        // A connection that ended frees its place at once.
        let lease = self.conn.map(|conn| Lease { conn, place });
        let (parts, inner) = self.resp.into_parts();
        let mut body = PooledBody {
            inner,
            lease,
            latency: self.latency,
        };
        if body.inner.is_end_stream() {
            body.release(&mut Context::from_waker(
                futures_util::task::noop_waker_ref(),
            ));
        }
        Response::from_parts(parts, body)
    }
}

/// One of a pool's places, held by an exchange from before it takes a connection until
/// its answer has been read or dropped; freed when dropped.
struct Place {
    pool: Arc<Pool>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.pool.places.add_permits(1);
    }
}

/// A connection lent to one exchange, with the exchange's place.
struct Lease {
    conn: Box<Conn>,
    place: Place,
}

/// An upstream answer's body. It drives its connection while it streams and, once read
/// in full, gives the connection back to the pool if it is clean (closes it if its
/// request is still being sent); dropped before that, it closes it.
pub struct PooledBody {
    inner: Incoming,
    lease: Option<Lease>,
    latency: Option<BackendLatency>,
}

impl PooledBody {
    /// The backend's latency for this answer, on a timed pool when it was measured
    /// cleanly.
    pub fn latency(&self) -> Option<BackendLatency> {
        self.latency
    }

    /// The answer has been read in full: the connection goes back to the pool if it can
    /// take another request now, else it is closed; its place is freed either way.
    fn release(&mut self, cx: &mut Context<'_>) {
        if let Some(Lease { mut conn, place }) = self.lease.take() {
            if conn.is_idle(cx) {
                place.pool.put(conn);
            } else {
                drop(conn);
            }
            drop(place);
        }
    }

    /// Polls the connection, so that it reads the next part of the body.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(lease) = self.lease.as_mut() {
            if Pin::new(&mut lease.conn.io).poll(cx).is_ready() {
                // Ended: what it read is already in the body's channel.
                self.lease = None;
            }
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let mut frame = Pin::new(&mut this.inner).poll_frame(cx);
        if frame.is_pending() && this.lease.is_some() {
            // The first poll told the connection the body wants data; now let it read.
            this.drive(cx);
            frame = Pin::new(&mut this.inner).poll_frame(cx);
        }
        match &frame {
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.release(cx),
            Poll::Ready(None) => this.release(cx),
            // A failed body leaves its connection in an unknown state: it is closed.
            Poll::Ready(Some(Err(_))) => this.lease = None,
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody")
            .field("pooled", &self.lease.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::header::{CONNECTION, HOST};
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioTimer;
    use tokio::net::TcpListener;

    use super::*;

    /// A backend that counts the connections it accepted. `/close` answers with
    /// `connection: close`, `/big` with 1 MiB, `/slow` after 1 s, `/hang` never; it
    /// closes a connection idle for 5 s.
    struct Backend {
        addr: SocketAddr,
        accepted: Arc<AtomicUsize>,
    }

    async fn backend() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
                    match req.uri().path() {
                        "/close" => {
                            resp.headers_mut()
                                .insert(CONNECTION, "close".parse().unwrap());
                        }
                        "/big" => *resp.body_mut() = Full::new(Bytes::from(vec![b'x'; 1 << 20])),
                        "/hang" => std::future::pending().await,
                        "/slow" => tokio::time::sleep(Duration::from_secs(1)).await,
                        _ => {}
                    }
                    Ok::<_, std::convert::Infallible>(resp)
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(5))
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
        Backend { addr, accepted }
    }

    impl Backend {
        fn pool(&self) -> Arc<Pool> {
            self.bounded(64)
        }

        fn bounded(&self, max_connections: usize) -> Arc<Pool> {
            Pool::new(&self.addr.to_string().parse().unwrap(), max_connections)
        }

        fn accepted(&self) -> usize {
            self.accepted.load(Ordering::SeqCst)
        }
    }

    const WAIT: Duration = Duration::from_secs(30);

    fn get(path: &str) -> Request<UpstreamBody> {
        Request::builder()
            .uri(path)
            .header(HOST, "backend")
            .body(UpstreamBody::buffered(Bytes::new()))
            .unwrap()
    }

    async fn fetch(pool: &Arc<Pool>, path: &str) -> Bytes {
        let resp = pool.send(get(path), WAIT).await.expect("an answer");
        resp.into_body().collect().await.unwrap().to_bytes()
    }

    /// A backend on a runtime and thread of its own: it answers while the caller's thread
    /// is busy.
    fn backend_elsewhere() -> SocketAddr {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                tx.send(backend().await.addr).unwrap();
                std::future::pending::<()>().await
            })
        });
        rx.recv().unwrap()
    }

    #[test]
    fn a_timed_answer_carries_the_backends_latency_not_the_callers_wait() {
        let addr: http::uri::Authority = backend_elsewhere().to_string().parse().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (timed, plain) = (Pool::timed(&addr, 4), Pool::new(&addr, 4));
            for round in 0..4 {
                let started = std::time::Instant::now();
                let send = tokio::spawn({
                    let pool = timed.clone();
                    async move { pool.send(get("/ok"), WAIT).await }
                });
                // The request goes out; then the one thread that would read its answer
                // is busy for 300 ms, as a starved shadow thread is.
                for _ in 0..10 {
                    tokio::task::yield_now().await;
                }
                std::thread::sleep(Duration::from_millis(300));
                let resp = send.await.unwrap().expect("an answer");
                let waited = started.elapsed();
                // The kernel turns stamping on shortly after the first socket asks for
                // it: the first answer may come without a latency.
                let Some(latency) = resp.body().latency() else {
                    assert_eq!(round, 0, "untimed after the first answer");
                    resp.into_body().collect().await.unwrap();
                    continue;
                };
                assert!(
                    latency.0 < waited / 2,
                    "round {round}: {latency:?} of {waited:?} is the caller's wait"
                );
                resp.into_body().collect().await.unwrap();
            }
            let resp = plain.send(get("/ok"), WAIT).await.unwrap();
            assert_eq!(resp.body().latency(), None, "untimed");
        });
    }

    #[tokio::test]
    async fn an_answer_read_in_full_gives_its_connection_to_the_next_request() {
        let b = backend().await;
        let pool = b.pool();
        for _ in 0..5 {
            assert_eq!(fetch(&pool, "/ok").await, "ok");
        }
        assert_eq!(b.accepted(), 1);
        assert_eq!(pool.idle(), 1);
    }

    #[tokio::test]
    async fn the_connection_comes_back_with_the_last_frame() {
        // hyper's server stops polling a body that says it has ended, so the last data
        // frame must give the connection back, not a final `None` that never comes.
        let b = backend().await;
        let pool = b.pool();
        let mut body = pool.send(get("/ok"), WAIT).await.unwrap().into_body();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "ok");
        assert!(body.is_end_stream());
        assert_eq!(pool.idle(), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_each_take_a_connection_and_all_come_back() {
        let b = backend().await;
        let pool = b.pool();
        let answers =
            futures_util::future::join_all((0..4).map(|_| pool.send(get("/ok"), WAIT))).await;
        for a in answers {
            let body = a.unwrap().into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, "ok");
        }
        assert_eq!((b.accepted(), pool.idle()), (4, 4));
        for _ in 0..4 {
            fetch(&pool, "/ok").await;
        }
        assert_eq!(b.accepted(), 4, "the pooled connections were reused");
    }

    #[tokio::test]
    async fn an_answer_dropped_unread_closes_its_connection() {
        let b = backend().await;
        let pool = b.pool();
        let resp = pool.send(get("/big"), WAIT).await.unwrap();
        drop(resp);
        assert_eq!(pool.idle(), 0, "a half-read connection is not reused");
        assert_eq!(fetch(&pool, "/big").await.len(), 1 << 20);
        assert_eq!((b.accepted(), pool.idle()), (2, 1));
    }

    #[tokio::test]
    async fn a_connection_the_backend_closes_is_not_reused() {
        let b = backend().await;
        let pool = b.pool();
        assert_eq!(fetch(&pool, "/close").await, "ok");
        assert_eq!(fetch(&pool, "/ok").await, "ok");
        assert_eq!(b.accepted(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_closed_while_idle_is_noticed_when_taken() {
        let b = backend().await;
        let pool = b.pool();
        fetch(&pool, "/ok").await;
        // The backend closes the connection after 5 s without a request. The check when
        // taken drops it; were the close seen only on sending, the request would still go
        // out again on a new connection (it never left), so the user sees a 200 either way.
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(pool.idle(), 1);
        assert_eq!(fetch(&pool, "/ok").await, "ok");
        assert_eq!(b.accepted(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn connections_idle_past_the_timeout_are_replaced() {
        let b = backend().await;
        let pool = b.pool();
        fetch(&pool, "/ok").await;
        tokio::time::advance(IDLE_TIMEOUT).await;
        fetch(&pool, "/ok").await;
        assert_eq!(b.accepted(), 2);
        assert_eq!(pool.idle(), 1, "the expired connection was closed");
    }

    #[tokio::test(start_paused = true)]
    async fn no_answer_within_the_timeout_is_a_timeout_and_the_connection_is_not_kept() {
        let b = backend().await;
        let pool = b.pool();
        fetch(&pool, "/ok").await;
        let err = pool
            .send(get("/hang"), Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::Timeout), "{err:?}");
        assert_eq!(
            pool.idle(),
            0,
            "the abandoned exchange's connection was closed"
        );
        assert_eq!(fetch(&pool, "/ok").await, "ok");
        assert_eq!(b.accepted(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_backend_that_takes_no_connection_is_unreachable_after_the_timeout() {
        // A listener that never accepts, its queue filled: the kernel drops further SYNs.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        for _ in 0..4 {
            let attempt =
                tokio::time::timeout(Duration::from_millis(100), TcpStream::connect(addr));
            if let Ok(Ok(s)) = attempt.await {
                queued.push(s);
            }
        }
        let pool = Pool::new(&addr.to_string().parse().unwrap(), 64);
        let err = pool
            .send(get("/ok"), Duration::from_secs(2))
            .await
            .unwrap_err();
        match err {
            SendError::Connect(e) => assert_eq!(e.to_string(), "no connection within 2s"),
            other => panic!("expected a connect error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_unreachable_backend_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        drop(listener);
        let err = Pool::new(&authority, 64)
            .send(get("/ok"), WAIT)
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::Connect(_)), "{err:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_beyond_the_bound_wait_for_a_freed_connection_and_open_none() {
        let b = backend().await;
        let pool = b.bounded(2);
        let started = Instant::now();
        let answers = futures_util::future::join_all((0..5).map(|_| fetch(&pool, "/slow"))).await;
        assert!(answers.iter().all(|a| a == "ok"));
        assert_eq!(b.accepted(), 2, "two places, two connections");
        // Two at a time, a second each.
        assert_eq!(started.elapsed().as_secs(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn no_connection_freed_within_the_timeout_is_saturated_and_sends_nothing() {
        let b = backend().await;
        let pool = b.bounded(1);
        let held = tokio::spawn({
            let pool = pool.clone();
            async move { pool.send(get("/hang"), WAIT).await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let started = Instant::now();
        let err = pool
            .send(get("/ok"), Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::Saturated), "{err:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(b.accepted(), 1, "the waiting request opened nothing");
        // The held exchange ends (its client went away): its place is free again.
        held.abort();
        let _ = held.await;
        assert_eq!(fetch(&pool, "/ok").await, "ok");
    }

    #[tokio::test]
    async fn an_answer_dropped_unread_frees_its_place() {
        let b = backend().await;
        let pool = b.bounded(1);
        drop(pool.send(get("/big"), WAIT).await.unwrap());
        let again = pool.send(get("/ok"), Duration::from_millis(500)).await;
        assert_eq!(again.unwrap().status(), http::StatusCode::OK);
    }

    #[tokio::test]
    async fn an_answer_that_comes_before_the_body_is_sent_closes_its_connection() {
        // A backend that answers as soon as it has a head and never reads a body; its
        // small receive buffer fills long before an 8 MB body is sent.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(16 * 1024).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(8).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") {
                        let mut byte = [0u8; 1];
                        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let answer = b"HTTP/1.1 413 Too Large\r\ncontent-length: 2\r\n\r\nno";
                    stream.write_all(answer).await.unwrap();
                    std::future::pending::<()>().await;
                });
            }
        });
        let pool = Pool::new(&addr.to_string().parse().unwrap(), 4);
        for _ in 0..2 {
            let req = Request::post("/infer")
                .header(HOST, "backend")
                .body(UpstreamBody::buffered(Bytes::from(vec![b'x'; 8 << 20])))
                .unwrap();
            let resp = pool.send(req, WAIT).await.unwrap();
            assert_eq!(resp.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
            assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "no");
            assert_eq!(pool.idle(), 0, "the connection went back to the pool");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}
