//! Talking to backends: pooled HTTP/1 connections, one request sent within a timeout,
//! and a precise account of what failed when it does.
//!
//! The live path and the shadow side both send through here; each [`Upstream`] keeps
//! one pool per [`Lane`], so a live request never waits on a connection that the
//! low-priority shadow thread drives, nor for a place a mirrored copy holds. The live
//! pool has the backend's `max_connections`; the shadow pool a quarter as many of its
//! own (at least one). Both pools are [timed](timed): every answer carries the backend's
//! own latency as the kernel saw it, the figure the gates read on either lane.

pub(crate) mod body;
pub(crate) mod errors;
pub(crate) mod pool;
pub(crate) mod timed;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderMap, HeaderValue, HOST};
use http::uri::{Authority, PathAndQuery};
use http::{Method, Request, Response, Uri, Version};

pub(crate) use body::{ClientBodyError, UpstreamBody};
pub(crate) use errors::ErrorLog;
pub(crate) use pool::{Pool, PooledBody, SendError};

use crate::config::BackendConfig;
use crate::error::{is_caused_by_where, root_cause, BoxError};
use crate::telemetry::metrics::{ClientFault, ErrorKind};
use crate::telemetry::Outcome;

/// Where one backend is and how long it may take: the target of every request sent to it.
pub struct Upstream {
    /// Path prefix from the URL ("" or "/v1/prefix", no trailing slash).
    prefix: Box<str>,
    /// `Host` for requests that come without one.
    host: HeaderValue,
    timeout: Duration,
    /// Connections for live requests, driven by the requests' own tasks.
    live: Arc<Pool>,
    /// Connections for shadow and calibration copies, driven by the shadow thread.
    shadow: Arc<Pool>,
    /// Its failures in the log, at most a line a second of each kind.
    pub errors: ErrorLog,
}

/// Which of a backend's pools a request goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Live,
    Shadow,
}

/// The parts of a request sent upstream, kept so it can be sent again (fallback, mirror).
#[derive(Debug, Clone)]
pub struct Head {
    pub method: Method,
    pub path_and_query: PathAndQuery,
    pub headers: HeaderMap,
}

/// Why a forward failed, and whose fault it was.
#[derive(Debug)]
pub enum Failure {
    /// The upstream could not be reached (502).
    Connect(BoxError),
    /// The upstream did not answer within its timeout (504).
    Timeout,
    /// The upstream broke the exchange (502).
    Protocol(BoxError),
    /// The upstream cut its answer off mid-body (502 when the head has not gone out yet).
    Truncated(BoxError),
    /// The client's body went over `limits.max_body` while streaming (413).
    BodyTooLarge,
    /// The client's body broke off or was malformed while streaming (400).
    ClientAborted,
    /// The client's body was not complete in time: by `limits.body_timeout`, or when the
    /// backend's timeout ran out while it still waited for the body (408).
    ClientTimeout,
    /// Every connection `max_connections` allows was busy for the whole timeout; the
    /// request was never sent (503).
    Saturated,
}

// === impl Upstream ===

impl Upstream {
    /// The upstream a validated backend config describes: at `url`
    /// (`http://host[:port][/prefix]`), answering within `timeout`, over at most
    /// `max_connections` connections for live requests.
    pub fn new(config: &BackendConfig) -> Upstream {
        let uri: Uri = config.url.parse().expect("validated URL");
        let parts = uri.into_parts();
        let prefix = parts
            .path_and_query
            .map(|p| p.path().trim_end_matches('/').to_string())
            .unwrap_or_default();
        let authority: Authority = parts.authority.expect("validated URL");
        Upstream {
            prefix: prefix.into_boxed_str(),
            host: HeaderValue::from_str(authority.as_str())
                .expect("an authority is a valid header value"),
            timeout: config.timeout.0,
            live: Pool::timed(&authority, config.max_connections),
            shadow: Pool::timed(&authority, shadow_places(config.max_connections)),
            errors: ErrorLog::new(),
        }
    }

    /// The pool of one lane.
    pub fn pool(&self, lane: Lane) -> &Arc<Pool> {
        match lane {
            Lane::Live => &self.live,
            Lane::Shadow => &self.shadow,
        }
    }

    /// The upstream request target (origin form): the path prefix, then the request's
    /// path and query.
    pub fn uri(&self, pq: &PathAndQuery) -> Uri {
        if self.prefix.is_empty() {
            return Uri::from(pq.clone());
        }
        format!("{}{}", self.prefix, pq.as_str())
            .parse()
            .unwrap_or_else(|_| Uri::from(pq.clone()))
    }

    /// Sends `head` + `body` through `lane` and waits for the answer's head, within the
    /// timeout. The answer's body holds its connection until read in full.
    pub async fn send(
        &self,
        lane: Lane,
        head: Head,
        body: UpstreamBody,
    ) -> Result<Response<PooledBody>, Failure> {
        let mut req = Request::new(body);
        *req.method_mut() = head.method;
        *req.uri_mut() = self.uri(&head.path_and_query);
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = head.headers;
        if !req.headers().contains_key(HOST) {
            // An HTTP/1.0 client may leave it out; HTTP/1.1 needs one.
            req.headers_mut().insert(HOST, self.host.clone());
        }
        match self.pool(lane).send(req, self.timeout).await {
            Ok(resp) => Ok(resp),
            Err(SendError::Timeout) => Err(Failure::Timeout),
            Err(SendError::Saturated) => Err(Failure::Saturated),
            Err(SendError::Connect(e)) => Err(Failure::Connect(e)),
            Err(SendError::Exchange(e)) => Err(classify(e)),
        }
    }

    /// [`Upstream::send`] on the live lane: that future itself, not one wrapping it (a
    /// wrapper would copy it once more on the request path).
    pub fn send_live(
        &self,
        head: Head,
        body: UpstreamBody,
    ) -> impl Future<Output = Result<Response<PooledBody>, Failure>> + '_ {
        self.send(Lane::Live, head, body)
    }
}

/// How many connections a backend's shadow pool may have: a quarter of its live ones,
/// at least one. Mirrors are few next to live requests (and bounded per route by
/// `shadow.max_in_flight`, 64 by default, a quarter of the default 256).
fn shadow_places(max_connections: usize) -> usize {
    (max_connections / 4).max(1)
}

/// Whose fault a broken exchange was: the client's body (too large, broken off, late),
/// or the backend's.
fn classify(e: hyper::Error) -> Failure {
    let client = |e: &hyper::Error, f: fn(&ClientBodyError) -> bool| is_caused_by_where(e, f);
    if client(&e, |c| matches!(c, ClientBodyError::TooLarge)) {
        Failure::BodyTooLarge
    } else if client(&e, |c| matches!(c, ClientBodyError::Timeout)) {
        Failure::ClientTimeout
    } else if client(&e, |c| matches!(c, ClientBodyError::Aborted(_))) {
        Failure::ClientAborted
    } else {
        Failure::Protocol(e.into())
    }
}

// === impl Failure ===

impl Failure {
    /// The status the client gets.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Failure::Connect(_) | Failure::Protocol(_) | Failure::Truncated(_) => {
                http::StatusCode::BAD_GATEWAY
            }
            Failure::Timeout => http::StatusCode::GATEWAY_TIMEOUT,
            Failure::Saturated => http::StatusCode::SERVICE_UNAVAILABLE,
            Failure::BodyTooLarge => http::StatusCode::PAYLOAD_TOO_LARGE,
            Failure::ClientAborted => http::StatusCode::BAD_REQUEST,
            Failure::ClientTimeout => http::StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The `kind` label, or `None` when the client is at fault.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Failure::Connect(_) => Some(ErrorKind::Connect),
            Failure::Timeout => Some(ErrorKind::Timeout),
            Failure::Protocol(_) => Some(ErrorKind::Protocol),
            Failure::Truncated(_) => Some(ErrorKind::Truncated),
            Failure::Saturated => Some(ErrorKind::Saturated),
            Failure::BodyTooLarge | Failure::ClientAborted | Failure::ClientTimeout => None,
        }
    }

    /// The client's fault this failure was, if it was the client's.
    pub fn client_fault(&self) -> Option<ClientFault> {
        match self {
            Failure::BodyTooLarge => Some(ClientFault::BodyTooLarge),
            Failure::ClientAborted => Some(ClientFault::BodyAborted),
            Failure::ClientTimeout => Some(ClientFault::BodyTimeout),
            Failure::Connect(_)
            | Failure::Timeout
            | Failure::Protocol(_)
            | Failure::Truncated(_)
            | Failure::Saturated => None,
        }
    }

    /// What this failure says about the backend, or `None` when the client is at fault.
    pub fn outcome(&self) -> Option<Outcome> {
        self.kind().map(Outcome::Failed)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "upstream unreachable: {}", root_cause(e.as_ref())),
            Failure::Timeout => f.write_str("upstream timed out"),
            Failure::Protocol(e) => write!(f, "upstream failed: {}", root_cause(e.as_ref())),
            Failure::Truncated(e) => {
                write!(f, "upstream cut its answer off: {}", root_cause(e.as_ref()))
            }
            Failure::Saturated => f.write_str(
                "upstream saturated: no connection free within the timeout (max_connections)",
            ),
            Failure::BodyTooLarge => f.write_str("request body too large"),
            Failure::ClientAborted => f.write_str("the request body broke off"),
            Failure::ClientTimeout => f.write_str("the request body did not arrive in time"),
        }
    }
}
