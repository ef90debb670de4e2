//! The data plane: one request's way through switchyard.
//!
//! The phases, in order, each in its own module; [`Proxy::serve`] reads as this list:
//!
//! 1. **snapshot**: load the routing [`Snapshot`] once; the whole request uses it.
//! 2. **[`headers`]**: drop hop-by-hop headers, then keep or make `x-request-id` and append
//!    `x-forwarded-for`; refuse `CONNECT` (405) and a repeated `Host` (400); a target
//!    with an authority (absolute form, HTTP/2) makes it the `Host`.
//! 3. **[`route`]**: the route that takes the request (its
//!    [`Matcher`](crate::snapshot::matcher::Matcher); 404 when none does; an OpenAI-style
//!    request's body is read first for its `model`), then the route's backend: override
//!    header > sticky hash > random split (what the split sends is counted as
//!    [`Backend::served`] when it goes upstream); whether to mirror. Then the headers only
//!    switchyard may set are dropped from what the client sent.
//! 4. **[`body`]**: reject bodies over `limits.max_body` (413); buffer the body only when
//!    mirroring or fallback needs it, else stream it.
//! 5. **mirror**: once the body is in hand, take a place among `shadow.max_in_flight` and
//!    hand the copy to the [`shadow`](crate::shadow) side (never awaited here). A request
//!    drawn by the route's [`Observers`] (its sample) has its body buffered too, and its
//!    answer goes to them, with the mirror's answer when mirrored.
//! 6. **[`forward`]**: send upstream on a pooled connection within the backend's timeout;
//!    a failed candidate request is retried once on stable when `fallback_to_stable`.
//! 7. **record** (in [`forward`]): the outcome goes to the backend's window, metrics and
//!    the fast-rollback tripwire.
//! 8. **[`respond`]**: stream the answer back with `x-switchyard-variant` and
//!    `x-switchyard-route`, teeing it for the comparison when mirrored or sampled.

pub mod body;
pub mod forward;
pub mod headers;
pub mod respond;
pub mod route;

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use http::header::HeaderValue;
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::shadow::{self, Copies, Live, Sample};
use crate::snapshot::matcher::Pick;
use crate::snapshot::Snapshot;
use crate::telemetry::metrics::ClientFault;
use crate::upstream::Head;
use body::Prepared;
pub use respond::ProxyBody;

/// What the data plane reads: the published snapshot.
pub struct DataPlane {
    /// The routing snapshot in force, stored by the controller.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
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
        let deadline = started + snap.body_timeout;
        let (mut parts, body) = req.into_parts();

        // 2. headers
        let found = headers::strip_hop_by_hop(&mut parts.headers);
        let request_id = headers::request_id(&mut parts.headers);
        headers::append_forwarded_for(&mut parts.headers, self.peer.as_ref());
        if let Some(fault) = refuse(&parts) {
            return Ok(respond::refused(None, fault, request_id));
        }
        headers::host_from_authority(&parts.uri, &mut parts.headers);

        // 3. route: which route takes the request, then which of its backends
        let (index, body) = match snap.matcher.pick(&parts.method, &parts.uri, &parts.headers) {
            Pick::Route(i) => (i, Prepared::Stream(body)),
            Pick::NoRoute => return Ok(Unrouted::NoRoute.answer(&parts, request_id)),
            // Boxed: only OpenAI-style requests read their body to find their route.
            Pick::NeedsBody => match Box::pin(by_body(&snap, &parts, body, deadline)).await {
                Ok(picked) => picked,
                Err(fault) => return Ok(fault.answer(&parts, request_id)),
            },
        };
        let route = &snap.routes[index];
        // While mirroring, the shadow thread waits for live requests to finish.
        let _live = (route.mirror_bp > 0).then(shadow::LiveRequest::start);
        let (backend, forced) = route::pick(route, &parts.headers);
        let backend = backend.clone();
        let is_candidate = route.is_candidate(&backend);
        // Whether the gates read this request: its client within its share of the window.
        let client = route::client(route, &backend, &parts.headers, self.peer.as_ref());
        let judged = backend.judges(client, started);
        if found.private() {
            headers::strip_private(&mut parts.headers);
        }

        // 4. body
        if let Err(fault) = body::check_declared(&parts.headers, snap.max_body) {
            return Ok(respond::refused(Some(&backend), fault, request_id));
        }
        // A mirror needs the body; none is buffered for one that would be dropped.
        let mirroring = shadow::mirrors(route, &backend) && shadow::has_room(route);
        let fallback = is_candidate && route.fallback_to_stable;
        // A body declared over what the observers read is not observed at all.
        let observed = route.observers.as_ref().and_then(|o| Some((o, o.roll()?)));
        let observed = observed.filter(|_| body::observable(&parts.headers));
        let buffer = mirroring || fallback;
        let prepared = match body.buffered_if(buffer, snap.max_body, deadline).await {
            Ok(prepared) => prepared,
            Err(fault) => return Ok(respond::refused(Some(&backend), fault, request_id)),
        };
        let head = upstream_head(parts);

        // 5. mirror (+ calibration copy), its place taken now that the body is in hand; a
        //    sampled request's body is copied on its way, for the observers
        let retry = forward::retry_copy(&prepared, &head, fallback);
        let mirrored = mirroring.then(|| prepared.buffered()).flatten();
        // Also due just before the backend's timeout, counted from when the request goes
        // out (`UpstreamBody::due_before`).
        let (body, copy) = prepared.into_upstream(snap.max_body, deadline, observed.is_some());
        let sample = observed.zip(copy).map(Sample::from);
        let live = Live {
            route,
            backend: &backend,
            head: &head,
            request_id: &request_id,
            started,
            cap: snap.max_body,
            client,
            judged,
        };
        let tap = shadow::live::take(&live, Copies { mirrored, sample });

        // 6. forward, 7. record (+ fallback); `sample_ratio` counts what the split sent
        if !forced {
            backend.count_served();
        }
        let result = backend.upstream.send_live(head, body).await;
        let live = (is_candidate, judged);
        let failed = forward::record(route, &backend, live, started, &result);
        if failed {
            forward::log_failure(&backend, &result, &request_id);
        }
        let (source, result) = match retry {
            Some(retry) if failed => {
                forward::fall_back(route, &backend, retry, (&request_id, client)).await
            }
            _ => (
                forward::source(route, backend, is_candidate, judged),
                result,
            ),
        };

        // 8. respond
        let cap = snap.max_body;
        Ok(respond::respond(source, result, request_id, tap, cap))
    }
}

/// Why a request whose route depends on its body found none.
enum Unrouted {
    /// Its body could not be read (too large, aborted, too slow).
    Client(ClientFault),
    /// Its body names a model no route takes.
    NoRoute,
}

impl Unrouted {
    fn answer(self, parts: &http::request::Parts, request_id: HeaderValue) -> Response<ProxyBody> {
        match self {
            Unrouted::Client(fault) => respond::refused(None, fault, request_id),
            Unrouted::NoRoute => respond::no_route(&parts.method, parts.uri.path(), request_id),
        }
    }
}

/// The route of an OpenAI-style request, from the `model` of its body: the body is read
/// (up to `limits.max_body`, by the body deadline) and forwarded as read, byte for byte.
async fn by_body(
    snap: &Snapshot,
    parts: &http::request::Parts,
    body: Incoming,
    deadline: Instant,
) -> Result<(usize, Prepared), Unrouted> {
    body::check_declared(&parts.headers, snap.max_body).map_err(Unrouted::Client)?;
    let bytes = body::read(body, snap.max_body, deadline)
        .await
        .map_err(Unrouted::Client)?;
    match snap
        .matcher
        .pick_with_body(&parts.method, &parts.uri, &parts.headers, &bytes)
    {
        Pick::Route(i) => Ok((i, Prepared::Buffered(bytes))),
        Pick::NoRoute | Pick::NeedsBody => Err(Unrouted::NoRoute),
    }
}
