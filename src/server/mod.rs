//! Serving connections: the accept loops, HTTP/1 (parked when idle) and HTTP/2, the
//! limits on connections and clients, eviction on the admin listener, and draining on
//! shutdown. What is served is the caller's (the composition root, `app`, composes the parts).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::error::{is_caused_by_where, BoxError};
use crate::telemetry::metrics::ConnectionMetrics;

/// Implements `AsyncWrite` for a wrapper by passing every call to one of its fields:
/// `forward_write!([T: AsyncWrite + Unpin] Wrapper<T> => field);`.
macro_rules! forward_write {
    ([$($generics:tt)*] $ty:ty => $field:ident) => {
        impl<$($generics)*> tokio::io::AsyncWrite for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().$field).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().$field).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.$field.is_write_vectored()
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().$field).poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().$field).poll_shutdown(cx)
            }
        }
    };
}

mod activity;
mod bounds;
mod evict;
mod first_bytes;
mod http1;
mod send;
pub(crate) use bounds::Bounds;
use evict::{Evictor, Slot};
use first_bytes::{is_no_request, FirstBytes, PREFACE};
use send::{is_send_timeout, Pace, Paced, SendDeadline};

/// How a listener serves its connections.
pub(crate) struct Serving {
    /// HTTP/1, which nearly every client speaks: parked while idle.
    h1: http1::Settings,
    /// HTTP/2 with prior knowledge (h2c), and connections whose first bytes could still
    /// be either protocol: hyper-util tells them apart.
    auto: auto::Builder<TokioExecutor>,
    /// A new connection's first bytes must arrive within this.
    first_bytes: Duration,
    /// How many connections, how long a client may take no answer bytes, how long to drain.
    bounds: Arc<Bounds>,
    /// Whether a full listener closes its idlest connection to admit a new one (the
    /// admin's, [`evict`]), rather than refusing the new one (the data plane's).
    evicts_idle: bool,
}

impl Serving {
    /// Request heads must arrive within `header_timeout` (a new connection's first bytes
    /// too); keep-alive connections idle for `idle_timeout` are closed; `bounds` says the rest.
    pub(crate) fn new(
        header_timeout: Duration,
        idle_timeout: Duration,
        bounds: Arc<Bounds>,
    ) -> Self {
        let mut auto = auto::Builder::new(TokioExecutor::new());
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(true);
        auto.http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)));
        Serving {
            h1: http1::Settings::new(header_timeout, idle_timeout),
            auto,
            first_bytes: header_timeout,
            bounds,
            evicts_idle: false,
        }
    }

    /// The admin listener's: as [`Serving::new`], but keep-alive connections idle for
    /// [`bounds::ADMIN_IDLE_TIMEOUT`] (or `idle_timeout`, if shorter) are closed, an
    /// HTTP/2 connection carries at most [`bounds::ADMIN_MAX_STREAMS`] requests at once,
    /// and a full listener evicts its idlest connection to admit a new one.
    pub(crate) fn admin(
        header_timeout: Duration,
        idle_timeout: Duration,
        bounds: Arc<Bounds>,
    ) -> Self {
        let mut serving = Serving::new(
            header_timeout,
            idle_timeout.min(bounds::ADMIN_IDLE_TIMEOUT),
            bounds,
        );
        serving
            .auto
            .http2()
            .max_concurrent_streams(bounds::ADMIN_MAX_STREAMS);
        serving.evicts_idle = true;
        serving
    }
}

/// Accepts connections until `shutdown`, serving each with the service `make` builds for
/// its peer; then stops accepting, lets open connections drain for at most the drain
/// timeout, and closes the rest. A connection beyond `max_connections` is closed as soon
/// as it is accepted, before any of it is read; on a listener that evicts idle
/// connections, it is admitted instead once the idlest open one has been told to close.
pub(crate) async fn serve_connections<M, S, B>(
    what: &'static str,
    listener: TcpListener,
    serving: Serving,
    shutdown: watch::Receiver<bool>,
    make: M,
) where
    M: Fn(SocketAddr) -> S,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Unpin + Send + 'static,
    S::Future: Unpin + Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let serving = Arc::new(serving);
    let counts = Arc::new(ConnectionMetrics::new(what));
    // Each connection's task, reaped as it ends; at shutdown, aborted once drained.
    let mut open = JoinSet::new();
    // The admin listener's connections, for eviction; the data plane tracks nothing.
    let mut evictor = serving.evicts_idle.then(Evictor::default);
    let mut stop = shutdown.clone();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, what, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = open.join_next(), if !open.is_empty() => continue,
            _ = http1::stopped(&mut stop) => break,
        };
        let permit = match serving.bounds.admit() {
            Some(permit) => permit,
            None if evictor.as_mut().is_some_and(Evictor::evict_idlest) => {
                counts.evicted();
                tracing::debug!(%peer, what, "listener full: the idlest connection closes to admit a new one");
                serving.bounds.admit_in_place()
            }
            None => {
                counts.refused();
                tracing::debug!(%peer, what, "connection refused: limits.max_connections are open");
                drop(stream);
                continue;
            }
        };
        let slot = evictor.as_mut().map(Evictor::track);
        let _ = stream.set_nodelay(true);
        counts.opened();
        let service = make(peer);
        let (serving, counts, shutdown) = (serving.clone(), counts.clone(), shutdown.clone());
        open.spawn(async move {
            let slot = slot.as_deref();
            let ended = connection(stream, service, &serving, shutdown, slot, &counts).await;
            if let Ended::Failed(e) = &ended {
                tracing::debug!(error = %e, %peer, what, "connection ended with an error");
            }
            counts.closed(ended.cut_off());
            if ended.sent_too_slowly() {
                counts.send_timed_out();
            }
            drop(permit);
        });
    }
    drop(listener);
    let drain = serving.bounds.drain_timeout();
    let drained = tokio::time::timeout(drain, async { while open.join_next().await.is_some() {} });
    if drained.await.is_ok() {
        tracing::info!(what, "all connections drained");
    } else {
        tracing::warn!(
            what,
            open = open.len(),
            "drain timed out after {drain:?}; closing the rest"
        );
        open.abort_all();
        while let Some(ended) = open.join_next().await {
            // Aborted before it could count itself closed.
            if ended.is_err_and(|e| e.is_cancelled()) {
                counts.closed(false);
            }
        }
    }
}

/// How a client connection ended.
enum Ended {
    /// Closed by the client, at shutdown, for idling `idle_timeout`, or evicted from a
    /// full admin listener.
    Closed,
    /// No byte came within the first-bytes deadline.
    Silent,
    /// HTTP/2: answers waited for the client (flow control) for `send_timeout`.
    Stalled,
    Failed(BoxError),
}

/// Serves one client connection: HTTP/1 through [`http1::serve`], anything that starts
/// like HTTP/2's preface through hyper-util's `auto` builder ([`auto_connection`]). An
/// admin connection is closed when its `slot` is evicted (at once while it serves no
/// request).
async fn connection<S, B>(
    stream: TcpStream,
    service: S,
    serving: &Serving,
    mut shutdown: watch::Receiver<bool>,
    slot: Option<&Slot>,
    counts: &ConnectionMetrics,
) -> Ended
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Unpin + Send + 'static,
    S::Future: Unpin + Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let deadline = Instant::now() + serving.first_bytes;
    let mut first = [0u8; PREFACE.len()];
    let n = tokio::select! {
        biased;
        _ = http1::stopped(&mut shutdown) => return Ended::Closed,
        _ = evict::evicted(slot), if slot.is_some() => return Ended::Closed,
        peeked = tokio::time::timeout_at(deadline, stream.peek(&mut first)) => match peeked {
            Err(_) => return Ended::Silent,
            Ok(Err(e)) => return Ended::Failed(e.into()),
            Ok(Ok(0)) => return Ended::Closed,
            Ok(Ok(n)) => n,
        },
    };
    let stream = SendDeadline::new(stream, serving.bounds.send_timeout());
    if !PREFACE.starts_with(&first[..n]) {
        let served = http1::serve(stream, service, &serving.h1, shutdown, slot, |p| {
            counts.parked(p)
        })
        .await;
        tracing::trace!(sessions = served.sessions, "HTTP/1 connection ended");
        return match served.ended {
            http1::Ended::Closed | http1::Ended::Idle | http1::Ended::Evicted => Ended::Closed,
            http1::Ended::Failed(e) => Ended::Failed(e.into()),
        };
    }
    // HTTP/2, or too few bytes yet to tell: `FirstBytes` bounds the rest of the preface.
    let io = FirstBytes::new(stream, deadline.saturating_duration_since(Instant::now()));
    match slot {
        None => auto_connection(io, service, serving, shutdown, None).await,
        Some(slot) => {
            let service = http1::Tracked::new(service, slot.activity.clone());
            auto_connection(io, service, serving, shutdown, Some(slot)).await
        }
    }
}

/// How long an evicted (or idle) HTTP/2 admin connection serving no request waits for
/// its client to take the `GOAWAY` before it is closed outright.
const EVICTED_H2_GRACE: Duration = Duration::from_secs(1);

/// Serves a connection with hyper-util's `auto` builder (HTTP/2, or an HTTP/1 head that
/// began like the HTTP/2 preface) until it ends, drains at shutdown, its answers stall,
/// or (admin connections, with a `slot`) it is evicted or has served no request for the
/// idle timeout: then it finishes the requests it serves, and is closed once it serves
/// none, [`EVICTED_H2_GRACE`] at the latest.
async fn auto_connection<S, B>(
    io: FirstBytes<SendDeadline<TcpStream>>,
    service: S,
    serving: &Serving,
    mut shutdown: watch::Receiver<bool>,
    slot: Option<&Slot>,
) -> Ended
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let pace = Pace::new();
    let service = Paced::new(service, pace.clone());
    // Boxed: a parked HTTP/1 connection's task would otherwise be sized for this.
    let mut conn = Box::pin(
        serving
            .auto
            .serve_connection_with_upgrades(TokioIo::new(io), service),
    );
    let stalled = pace.stalled(serving.bounds.send_timeout());
    tokio::pin!(stalled);
    let mut draining = false;
    // Admin connections only: closed when evicted, or once idle for the idle timeout.
    let idle_timeout = serving.h1.idle_timeout;
    let mut closing = false;
    let check = match slot {
        Some(s) => tokio::time::sleep_until(s.activity.idle_since() + idle_timeout),
        None => tokio::time::sleep(Duration::MAX),
    };
    tokio::pin!(check);
    let result = loop {
        tokio::select! {
            result = conn.as_mut() => break result,
            _ = http1::stopped(&mut shutdown), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = evict::evicted(slot), if slot.is_some() && !closing => {
                closing = true;
                if !draining {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
                check.as_mut().reset(Instant::now() + EVICTED_H2_GRACE);
            }
            () = &mut check, if slot.is_some() => {
                let Some(activity) = slot.map(|s| &s.activity) else { continue };
                let now = Instant::now();
                let idle_until = activity.idle_since() + idle_timeout;
                if closing && !activity.serving() {
                    return Ended::Closed;
                } else if closing {
                    check.as_mut().reset(now + EVICTED_H2_GRACE);
                } else if activity.serving() {
                    check.as_mut().reset(now + idle_timeout);
                } else if now >= idle_until {
                    closing = true;
                    if !draining {
                        draining = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    check.as_mut().reset(now + EVICTED_H2_GRACE);
                } else {
                    check.as_mut().reset(idle_until);
                }
            }
            () = &mut stalled => return Ended::Stalled,
        }
    };
    match result {
        Ok(()) => Ended::Closed,
        Err(e) => Ended::Failed(e),
    }
}

impl Ended {
    /// Whether the connection was closed because no request head came in time: no first
    /// byte, hyper's header timeout (the only timeout hyper's server reports), or
    /// [`FirstBytes`]'s deadline inside the HTTP/2 preface.
    fn cut_off(&self) -> bool {
        match self {
            Ended::Closed | Ended::Stalled => false,
            Ended::Silent => true,
            Ended::Failed(e) => {
                is_caused_by_where::<hyper::Error>(&**e, hyper::Error::is_timeout)
                    || is_caused_by_where::<std::io::Error>(&**e, is_no_request)
            }
        }
    }

    /// Whether the connection was closed because the client took no answer bytes for
    /// `limits.send_timeout`.
    fn sent_too_slowly(&self) -> bool {
        match self {
            Ended::Stalled => true,
            Ended::Failed(e) => is_caused_by_where::<std::io::Error>(&**e, is_send_timeout),
            Ended::Closed | Ended::Silent => false,
        }
    }
}
