//! The backend decision within a route: override header > sticky hash > random split.
//!
//! Sticky keys hash (xxh3, seeded per candidate) to one of 10 000 buckets; a request is
//! the candidate's when its bucket is below the weight in basis points. Raising the
//! weight only adds buckets, so a ramp moves users from stable to candidate and never
//! back, and every replica with the same config agrees without shared state.
//!
//! ```
//! use switchyard::proxy::route::bucket;
//! assert!(bucket(b"alice", 7) < 10_000);
//! assert_eq!(bucket(b"alice", 7), bucket(b"alice", 7));
//! ```

use std::sync::Arc;

use http::header::HeaderValue;
use http::HeaderMap;

use super::headers::cookie;
use crate::snapshot::{Backend, Route, Sticky};
use crate::telemetry::share::Client;

/// The bucket (0..10 000) of a sticky key.
#[inline]
pub fn bucket(key: &[u8], seed: u64) -> u32 {
    (xxhash_rust::xxh3::xxh3_64_with_seed(key, seed) % 10_000) as u32
}

/// Picks the backend of `snap` (a route) for a request, and says whether the override
/// header forced it (true) or the split chose it. The override header names one of the
/// route's own backends; a name it does not serve is ignored.
#[inline]
pub fn pick<'s>(snap: &'s Route, headers: &HeaderMap) -> (&'s Arc<Backend>, bool) {
    if let Some(h) = &snap.override_header {
        if let Some(b) = headers.get(h).and_then(|v| snap.backend(v.as_bytes())) {
            return (b, true);
        }
    }
    (split(snap, headers), false)
}

/// The backend the route's split gives a request: weight, then sticky key or a random draw.
#[inline]
fn split<'s>(snap: &'s Route, headers: &HeaderMap) -> &'s Arc<Backend> {
    let Some(candidate) = &snap.candidate else {
        return &snap.stable;
    };
    match snap.weight_bp {
        0 => return &snap.stable,
        10_000.. => return candidate,
        _ => {}
    }
    let b = match sticky_key(snap, headers) {
        Some(k) => bucket(k, snap.sticky_seed),
        None => rand::random_range(0..10_000),
    };
    if b < snap.weight_bp {
        candidate
    } else {
        &snap.stable
    }
}

/// The request's sticky key, when the route has one and the request carries it.
#[inline]
fn sticky_key<'h>(snap: &Route, headers: &'h HeaderMap) -> Option<&'h [u8]> {
    match &snap.sticky {
        Some(Sticky::Header(h)) => headers.get(h).map(|v| v.as_bytes()),
        Some(Sticky::Cookie(name)) => cookie(headers, name),
        None => None,
    }
}

/// Who sent a request, as `backend`'s share bound counts clients: its sticky key, else its
/// address (`peer`); `None` when the backend bounds no share (nothing is hashed).
#[inline]
pub fn client(
    snap: &Route,
    backend: &Backend,
    headers: &HeaderMap,
    peer: Option<&HeaderValue>,
) -> Option<Client> {
    if !backend.shares.bounded() {
        return None;
    }
    let key = sticky_key(snap, headers).or(peer.map(HeaderValue::as_bytes))?;
    Some(Client::of(key))
}
