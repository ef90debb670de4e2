//! What the shadow side takes from a live request: the mirror's copy (with a calibration
//! copy to the stable, for a share of them), a sampled request for the observers, and
//! where the live answer is to be teed. The live path hands over the request as it went
//! upstream and gets back the tap's [`Delivery`]; it never sees a mirror or an
//! observation being built.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::HeaderValue;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::admission::{self, Reservation};
use super::mirror::Mirror;
use super::observed::{Captured, Pending, RequestCopy};
use super::tap::Delivery;
use crate::observe::Observers;
use crate::snapshot::{Backend, Route};
use crate::telemetry::share::Client;
use crate::upstream::Head;

/// A live request as the shadow side takes it, once its body is in hand.
pub(crate) struct Live<'a> {
    pub route: &'a Arc<Route>,
    /// The backend the request goes to (a fallback changes it with the answer).
    pub backend: &'a Backend,
    /// The request as it goes upstream.
    pub head: &'a Head,
    pub request_id: &'a HeaderValue,
    /// When it arrived.
    pub started: Instant,
    /// The most of an answer copied (`limits.max_body`).
    pub cap: usize,
    /// Its client, as the gates' share counts it, and whether the gates read it.
    pub client: Option<Client>,
    pub judged: bool,
}

/// What the live path copied of a request for the shadow side: the buffered body when it
/// mirrors, the observers' copy when the request was drawn for their sample.
pub(crate) struct Copies<'a> {
    pub mirrored: Option<Bytes>,
    pub sample: Option<Sample<'a>>,
}

/// A request drawn by the route's observers, with its draw and its body's copy.
pub(crate) struct Sample<'a> {
    pub observers: &'a Arc<Observers>,
    /// Its draw ([`Observers::roll`]).
    pub draw: u32,
    pub request: RequestCopy,
}

impl<'a> From<((&'a Arc<Observers>, u32), RequestCopy)> for Sample<'a> {
    /// A request drawn (`draw`) by `observers`, with its body's copy.
    fn from(((observers, draw), request): ((&'a Arc<Observers>, u32), RequestCopy)) -> Self {
        Sample {
            observers,
            draw,
            request,
        }
    }
}

/// Takes what the shadow side needs of a live request; returns where its answer is to be
/// teed, if anywhere: to the mirror job (which takes a place among the mirrors in flight,
/// and a sampled request's observers with it), or to the observers of a sampled request.
pub(crate) fn take(live: &Live<'_>, copies: Copies<'_>) -> Option<Delivery> {
    let mut pending = copies.sample.map(|s| pending(live, s));
    copies
        .mirrored
        .and_then(|body| {
            let place = admission::reserve(live.route)?;
            mirror(live, place, body, pending.take())
        })
        .map(Delivery::Mirror)
        .or_else(|| pending.map(Delivery::Observe))
}

/// A sampled request as the observers will read it once its answer has ended.
fn pending(live: &Live<'_>, sample: Sample<'_>) -> Box<Pending> {
    Box::new(Pending {
        observers: sample.observers.clone(),
        draw: sample.draw,
        request_id: live.request_id.clone(),
        path: live.head.path_and_query.clone(),
        at: SystemTime::now(),
        started: live.started,
        request: sample.request,
        // A fallback changes it with the answer.
        backend: live.backend.name.clone(),
        judged: live.judged,
        // The mirror job says, when there is one.
        shadow_judged: true,
    })
}

/// Starts the mirror job of a request (with a calibration copy to the stable itself, for
/// a share of them); returns the sender its live answer is teed to.
fn mirror(
    live: &Live<'_>,
    place: Reservation,
    body: Bytes,
    observe: Option<Box<Pending>>,
) -> Option<oneshot::Sender<Captured>> {
    let route = live.route;
    Mirror {
        place,
        calibration: admission::calibrates(route)
            .then(|| admission::reserve_calibration(route))
            .flatten(),
        route: route.clone(),
        head: live.head.clone(),
        body,
        request_id: live.request_id.clone(),
        client: live.client,
        cap: live.cap,
        observe,
    }
    .spawn()
}
