//! Admission: a mirror takes one of `shadow.max_in_flight` places once the body to copy
//! is in hand, or is dropped and counted. Nothing waits for a place.
//!
//! Whether there is room is looked at before the body is buffered (so a mirror that
//! would be dropped costs the live request nothing), but the place is taken only after:
//! a client trickling its upload never holds one, and cannot starve the mirrors of
//! requests that arrive whole.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use crate::snapshot::{Backend, Route};
use crate::telemetry::metrics;

/// A place among the mirrors in flight, held until the copy's exchange ends.
pub(crate) struct Reservation {
    _permit: OwnedSemaphorePermit,
}

/// Whether a request routed to `backend` is mirrored to the candidate: only stable-served
/// requests are, while a candidate is configured, a share `mirror_bp` of them.
#[inline]
pub(crate) fn mirrors(snap: &Route, backend: &Arc<Backend>) -> bool {
    snap.candidate.is_some()
        && Arc::ptr_eq(backend, &snap.stable)
        && !snap.is_candidate(backend)
        && drawn(snap.mirror_bp)
}

/// A draw against a share in basis points (`mirror_bp`, `calibrate_bp`).
#[inline]
fn drawn(bp: u32) -> bool {
    match bp {
        0 => false,
        10_000.. => true,
        _ => rand::random_range(0..10_000) < bp,
    }
}

/// Whether a mirrored request also sends a calibration copy to the stable itself (a draw
/// against `calibrate_bp`).
pub(crate) fn calibrates(snap: &Route) -> bool {
    drawn(snap.calibrate_bp)
}

/// Whether a mirror could take a place now; counts it dropped when `max_in_flight` are
/// in flight. Takes nothing: [`reserve`] does, once the body is read.
pub(crate) fn has_room(snap: &Route) -> bool {
    let room = snap.shadow_slots.available_permits() > 0;
    if !room {
        metrics::shadow_request(&snap.name, "dropped");
    }
    room
}

/// Takes a place for one mirror, or counts it dropped when `max_in_flight` are in flight.
pub(crate) fn reserve(snap: &Route) -> Option<Reservation> {
    let place = take_place(snap);
    if place.is_none() {
        metrics::shadow_request(&snap.name, "dropped");
    }
    place
}

/// Takes a place for one calibration copy (to the stable itself) from the same
/// `max_in_flight`; a full semaphore skips calibration for this request (counted).
pub(crate) fn reserve_calibration(snap: &Route) -> Option<Reservation> {
    let place = take_place(snap);
    if place.is_none() {
        metrics::shadow_calibration(&snap.name, "dropped");
    }
    place
}

fn take_place(snap: &Route) -> Option<Reservation> {
    let permit = snap.shadow_slots.clone().try_acquire_owned().ok()?;
    Some(Reservation { _permit: permit })
}
