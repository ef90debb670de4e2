//! Forwarding one request to one backend over its connection pool, with its timeout,
//! and saying precisely what failed when it does.

use std::fmt;
use std::future::Future;

use std::sync::Arc;

use http::header::{HeaderMap, HOST};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri, Version};
use http_body_util::LengthLimitError;

use super::body::{BoxError, UpstreamBody};
use super::upstream::{Pool, PooledBody, SendError};
use crate::error::{is_caused_by, root_cause};
use crate::snapshot::Backend;
use crate::telemetry::metrics::ErrorKind;

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
    /// The client's body went over `limits.max_body` while streaming (413).
    BodyTooLarge,
}

impl Failure {
    /// The status the client gets.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Failure::Connect(_) | Failure::Protocol(_) => http::StatusCode::BAD_GATEWAY,
            Failure::Timeout => http::StatusCode::GATEWAY_TIMEOUT,
            Failure::BodyTooLarge => http::StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The `kind` label, or `None` when the client is at fault.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Failure::Connect(_) => Some(ErrorKind::Connect),
            Failure::Timeout => Some(ErrorKind::Timeout),
            Failure::Protocol(_) => Some(ErrorKind::Protocol),
            Failure::BodyTooLarge => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "upstream unreachable: {}", root_cause(e.as_ref())),
            Failure::Timeout => f.write_str("upstream timed out"),
            Failure::Protocol(e) => write!(f, "upstream failed: {}", root_cause(e.as_ref())),
            Failure::BodyTooLarge => f.write_str("request body too large"),
        }
    }
}

/// The upstream request target (origin form): the backend's path prefix, then the
/// request's path and query.
pub fn upstream_uri(backend: &Backend, pq: &PathAndQuery) -> Uri {
    if backend.prefix.is_empty() {
        return Uri::from(pq.clone());
    }
    format!("{}{}", backend.prefix, pq.as_str())
        .parse()
        .unwrap_or_else(|_| Uri::from(pq.clone()))
}

/// Sends `head` + `body` to `backend` and waits for the response head, within the backend's timeout.
///
/// `send_on`'s future itself, not one wrapping it: a wrapper would copy it once more.
pub fn send(
    backend: &Backend,
    head: Head,
    body: UpstreamBody,
) -> impl Future<Output = Result<Response<PooledBody>, Failure>> + '_ {
    send_on(&backend.pool, backend, head, body)
}

/// [`send`] on a given pool of `backend`'s connections (the live one or the shadow one).
pub async fn send_on(
    pool: &Arc<Pool>,
    backend: &Backend,
    head: Head,
    body: UpstreamBody,
) -> Result<Response<PooledBody>, Failure> {
    let mut req = Request::new(body);
    *req.method_mut() = head.method;
    *req.uri_mut() = upstream_uri(backend, &head.path_and_query);
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = head.headers;
    if !req.headers().contains_key(HOST) {
        // An HTTP/1.0 client may leave it out; HTTP/1.1 needs one.
        req.headers_mut().insert(HOST, backend.host.clone());
    }
    match pool.send(req, backend.timeout).await {
        Ok(resp) => Ok(resp),
        Err(SendError::Timeout) => Err(Failure::Timeout),
        Err(SendError::Connect(e)) => Err(Failure::Connect(e)),
        Err(SendError::Exchange(e)) => {
            if is_caused_by::<LengthLimitError>(&e) {
                Err(Failure::BodyTooLarge)
            } else {
                Err(Failure::Protocol(e.into()))
            }
        }
    }
}
