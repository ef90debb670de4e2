//! The data plane: one request's way through switchyard.
//!
//! The phases, in order, each in its own module; [`Proxy::serve`] reads as this list:
//!
//! 1. **snapshot**: load the routing [`Snapshot`] once; the whole request uses it.
//! 2. **[`headers`]**: drop hop-by-hop headers, then keep or make `x-request-id` and append
//!    `x-forwarded-for`; refuse `CONNECT` (405) and a repeated `Host` (400).
//! 3. **[`route`]**: override header > sticky hash > random split; whether to mirror. Then
//!    the headers only switchyard may set are dropped from what the client sent.
//! 4. **[`body`]**: reject bodies over `limits.max_body` (413); buffer the body only when
//!    mirroring or fallback needs it, else stream it.
//! 5. **mirror**: hand the shadow copy to the [`shadow`](crate::shadow) side (never awaited here).
//! 6. **[`forward`]**: send upstream on a pooled connection within the backend's timeout;
//!    a failed candidate request is retried once on stable when `fallback_to_stable`.
//! 7. **observe** (in [`forward`]): the outcome goes to the backend's window, metrics and
//!    the fast-rollback tripwire.
//! 8. **[`respond`]**: stream the answer back with `x-switchyard-variant`, teeing it for the
//!    comparison when mirrored.

pub mod body;
pub mod forward;
pub mod headers;
pub mod matcher;
pub mod respond;
pub mod route;

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::HeaderValue;
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::shadow::{self, Captured, Diffs, Mirror, Reservation};
use crate::snapshot::Snapshot;
use crate::telemetry::metrics::ClientFault;
use crate::upstream::Head;
use body::Prepared;
pub use respond::ProxyBody;

/// What the data plane reads: the published snapshot, and where disagreements go.
pub struct DataPlane {
    /// The routing snapshot in force, stored by the controller.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// The recent shadow disagreements.
    pub diffs: Arc<Diffs>,
}

/// The proxy service of one client connection.
#[derive(Clone)]
pub struct Proxy {
    plane: Arc<DataPlane>,
    /// The client's address as an `x-forwarded-for` value.
    peer: Option<HeaderValue>,
}

impl Proxy {
    pub fn new(plane: Arc<DataPlane>, peer: Option<IpAddr>) -> Self {
        Proxy {
            plane,
            peer: headers::peer_value(peer),
        }
    }
}

// === impl Proxy ===

impl tower::Service<Request<Incoming>> for Proxy {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        // `serve` answers every request itself (errors included): never an `Err`. Boxed
        // directly, not wrapped in another async block, which would copy the whole
        // request future once more.
        Box::pin(self.clone().serve(req))
    }
}

/// The request as it goes upstream: method, path and query (origin form), headers.
fn upstream_head(parts: http::request::Parts) -> Head {
    Head {
        method: parts.method,
        path_and_query: parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        headers: parts.headers,
    }
}

/// Whether a request is refused before routing, and by which of its faults: `CONNECT`
/// would make switchyard a tunnel; two `Host`s could be read differently by switchyard
/// and the backend.
fn refuse(parts: &http::request::Parts) -> Option<ClientFault> {
    if parts.method == http::Method::CONNECT {
        return Some(ClientFault::Method);
    }
    headers::duplicate_host(&parts.headers).then_some(ClientFault::DuplicateHost)
}

impl Proxy {
    async fn serve(self, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
        let started = Instant::now();
        // 1. snapshot
        let snap = self.plane.snapshot.load_full();
        // While mirroring, the shadow thread waits for live requests to finish.
        let _live = (snap.mirror_bp > 0).then(shadow::LiveRequest::start);
        let (mut parts, body) = req.into_parts();

        // 2. headers
        let found = headers::strip_hop_by_hop(&mut parts.headers);
        let request_id = headers::request_id(&mut parts.headers);
        headers::append_forwarded_for(&mut parts.headers, self.peer.as_ref());
        if let Some(fault) = refuse(&parts) {
            return Ok(respond::refused(None, fault, request_id));
        }

        // 3. route
        let backend = route::pick(&snap, &parts.headers).clone();
        let is_candidate = snap.is_candidate(&backend);
        if found.private() {
            headers::strip_private(&mut parts.headers);
        }

        // 4. body
        if let Err(fault) = body::check_declared(&parts.headers, snap.max_body) {
            return Ok(respond::refused(Some(&backend), fault, request_id));
        }
        let mirror = if route::mirrors(&snap, &backend) {
            shadow::reserve(&snap)
        } else {
            None
        };
        let fallback = is_candidate && snap.fallback_to_stable;
        let buffer = mirror.is_some() || fallback;
        let deadline = started + snap.body_timeout;
        let prepared = match body::prepare(body, snap.max_body, deadline, buffer).await {
            Ok(p) => p,
            Err(fault) => return Ok(respond::refused(Some(&backend), fault, request_id)),
        };
        let head = upstream_head(parts);

        // 5. mirror (+ calibration copy to the stable itself)
        let tap = match (&prepared, mirror) {
            (Prepared::Buffered(bytes), Some(place)) => {
                self.mirror(place, &snap, &head, bytes, &request_id)
            }
            _ => None,
        };

        // 6. forward, 7. observe (+ fallback)
        let retry = forward::retry_copy(&prepared, &head, fallback);
        let due = backend.upstream.body_due(started, deadline);
        let body = prepared.into_upstream(snap.max_body, due);
        let result = backend.upstream.send_live(head, body).await;
        let failed = forward::observe(&snap, &backend, is_candidate, started, &result);
        let (source, result) = match retry {
            Some(retry) if failed => forward::fall_back(&snap, &backend, retry).await,
            _ => (forward::source(&snap, backend, is_candidate), result),
        };

        // 8. respond
        Ok(respond::respond(
            source,
            result,
            request_id,
            tap,
            snap.max_body,
        ))
    }

    /// Hands a copy of the request to the shadow side (with a calibration copy to the
    /// stable itself, for a share of them); returns where the live answer is to be teed.
    fn mirror(
        &self,
        place: Reservation,
        snap: &Arc<Snapshot>,
        head: &Head,
        body: &Bytes,
        request_id: &HeaderValue,
    ) -> Option<oneshot::Sender<Captured>> {
        Mirror {
            place,
            calibration: route::mirrored(snap.calibrate_bp)
                .then(|| shadow::reserve_calibration(snap))
                .flatten(),
            snapshot: snap.clone(),
            head: head.clone(),
            body: body.clone(),
            request_id: request_id.clone(),
            diffs: self.plane.diffs.clone(),
        }
        .spawn()
    }
}
