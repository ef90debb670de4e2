//! The body phase: a request body over `limits.max_body` is refused (413); the body is
//! read into memory only when mirroring or fallback needs the bytes again (or the route
//! depends on the body's model), else it streams.

use bytes::Bytes;
use http::header::{HeaderMap, CONTENT_LENGTH};
use http_body::Body as _;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::observe;
use crate::shadow::RequestCopy;
use crate::telemetry::metrics::ClientFault;
use crate::upstream::UpstreamBody;

/// The request body as the forward phase will send it.
pub enum Prepared {
    Stream(Incoming),
    Buffered(Bytes),
}

/// Refuses a body whose `Content-Length` already says it is over `max_body`.
pub fn check_declared(headers: &HeaderMap, max_body: usize) -> Result<(), ClientFault> {
    match declared(headers) {
        Some(n) if n > max_body as u64 => Err(ClientFault::BodyTooLarge),
        _ => Ok(()),
    }
}

/// Whether the observers may read a message's body: not when its `Content-Length`
/// declares more than [`observe::MAX_BODY`].
pub fn observable(headers: &HeaderMap) -> bool {
    declared(headers).is_none_or(|n| n <= observe::MAX_BODY as u64)
}

/// The body size a message's `Content-Length` declares, when it does.
pub fn declared(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads the body into memory, up to `max_body` and by `deadline`.
pub async fn read(
    body: Incoming,
    max_body: usize,
    deadline: Instant,
) -> Result<Bytes, ClientFault> {
    let collected = tokio::time::timeout_at(deadline, Limited::new(body, max_body).collect());
    match collected.await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(ClientFault::BodyTooLarge),
        Ok(Err(_)) => Err(ClientFault::BodyAborted),
        Err(_) => Err(ClientFault::BodyTimeout),
    }
}

impl Prepared {
    /// The bytes of a buffered body (a cheap clone).
    pub fn buffered(&self) -> Option<Bytes> {
        match self {
            Prepared::Buffered(bytes) => Some(bytes.clone()),
            Prepared::Stream(_) => None,
        }
    }

    /// The body read into memory when `buffer` (up to `max_body`, by `deadline`), else as it is.
    pub async fn buffered_if(
        self,
        buffer: bool,
        max_body: usize,
        deadline: Instant,
    ) -> Result<Prepared, ClientFault> {
        match self {
            Prepared::Stream(body) if buffer => {
                Ok(Prepared::Buffered(read(body, max_body, deadline).await?))
            }
            body => Ok(body),
        }
    }

    /// The body to send upstream: the stream under the size limit and its deadline, or
    /// the buffered bytes; with `copied` (a sampled request), also the observers' copy
    /// of it: the buffered bytes, or a copy made as the stream goes upstream.
    pub fn into_upstream(
        self,
        max_body: usize,
        deadline: Instant,
        copied: bool,
    ) -> (UpstreamBody, Option<RequestCopy>) {
        match self {
            Prepared::Stream(b) if copied && !b.is_end_stream() => {
                let cap = observe::MAX_BODY.min(max_body);
                let (body, copy) = UpstreamBody::teed(b, max_body, cap, deadline);
                (body, Some(RequestCopy::Teed(copy)))
            }
            Prepared::Stream(b) => {
                let copy = copied.then(|| RequestCopy::Buffered(Bytes::new()));
                (UpstreamBody::stream(b, max_body, deadline), copy)
            }
            Prepared::Buffered(b) => {
                let copy = copied.then(|| RequestCopy::Buffered(b.clone()));
                (UpstreamBody::buffered(b), copy)
            }
        }
    }
}
