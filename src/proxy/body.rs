//! The body phase: a request body over `limits.max_body` is refused (413); the body is
//! read into memory only when mirroring or fallback needs the bytes again (or the route
//! depends on the body's model), else it streams.

use bytes::Bytes;
use http::header::{HeaderMap, CONTENT_LENGTH};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::telemetry::metrics::ClientFault;
use crate::upstream::UpstreamBody;

/// The request body as the forward phase will send it.
pub enum Prepared {
    Stream(Incoming),
    Buffered(Bytes),
}

/// Refuses a body whose `Content-Length` already says it is over `max_body`.
pub fn check_declared(headers: &HeaderMap, max_body: usize) -> Result<(), ClientFault> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > max_body as u64 => Err(ClientFault::BodyTooLarge),
        _ => Ok(()),
    }
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
    /// The body to send upstream: the stream under the size limit and its deadline, or
    /// the buffered bytes.
    pub fn into_upstream(self, max_body: usize, deadline: Instant) -> UpstreamBody {
        match self {
            Prepared::Stream(b) => UpstreamBody::stream(b, max_body, deadline),
            Prepared::Buffered(b) => UpstreamBody::buffered(b),
        }
    }
}
