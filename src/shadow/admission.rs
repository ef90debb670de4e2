//! Admission: a mirror takes one of `shadow.max_in_flight` places before anything is
//! copied, or is dropped and counted. Nothing waits for a place.

use tokio::sync::OwnedSemaphorePermit;

use crate::snapshot::Route;
use crate::telemetry::metrics;

/// A place among the mirrors in flight, taken before the body is buffered so a mirror
/// that would be dropped costs the live request nothing.
pub struct Reservation {
    _permit: OwnedSemaphorePermit,
}

/// Takes a place for one mirror, or counts it dropped when `max_in_flight` are in flight.
pub fn reserve(snap: &Route) -> Option<Reservation> {
    let place = take_place(snap);
    if place.is_none() {
        metrics::shadow_request(&snap.name, "dropped");
    }
    place
}

/// Takes a place for one calibration copy (to the stable itself) from the same
/// `max_in_flight`; a full semaphore skips calibration for this request (counted).
pub fn reserve_calibration(snap: &Route) -> Option<Reservation> {
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
