//! Header hygiene: hop-by-hop headers dropped, `x-forwarded-for` appended, `x-request-id`
//! kept or generated, `x-switchyard-variant` set, and the headers only switchyard may set
//! dropped from what clients send.
//!
//! Order matters: a request's hop-by-hop headers go first, so that a client's
//! `Connection: x-request-id` can remove only the client's own id, never the one
//! switchyard adds after.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_SWITCHYARD_VARIANT: HeaderName = HeaderName::from_static("x-switchyard-variant");
pub static X_SWITCHYARD_ROUTE: HeaderName = HeaderName::from_static("x-switchyard-route");

/// Headers that only switchyard may set on what it forwards or answers: a client's are
/// dropped, so no client can pass for a mirror or name a variant or route to a backend.
static PRIVATE: [HeaderName; 3] = [
    HeaderName::from_static("x-switchyard-shadow"),
    HeaderName::from_static("x-switchyard-variant"),
    HeaderName::from_static("x-switchyard-route"),
];

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// What the pass over a message's header names found, beyond what it removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Found(u16);

impl Found {
    /// The message carries a header only switchyard may set ([`PRIVATE`]).
    pub fn private(self) -> bool {
        self.0 & PRIVATE_BITS != 0
    }
}

/// Bits of [`PRIVATE`] names in a [`Found`], after the hop-by-hop ones.
const PRIVATE_BITS: u16 = 0b111 << HOP_BY_HOP.len();

/// Removes hop-by-hop headers, including those the `Connection` header names; says
/// whether headers only switchyard may set are there (they are left for the routing
/// decision, which may read one, and removed by [`strip_private`]).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) -> Found {
    // One pass over the names notes which hop-by-hop headers are there; most messages
    // carry none or only `Connection: keep-alive`, and only those present are removed
    // (each removal is a hashed lookup).
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name) {
            present |= 1 << i;
        }
    }
    let found = Found(present & PRIVATE_BITS);
    let present = present & !PRIVATE_BITS;
    if present == 0 {
        return found;
    }
    if present & 1 != 0 {
        // Names listed in `Connection` go too (read byte-wise: a non-ASCII byte elsewhere
        // in the list does not hide them). `close` and `keep-alive` are options, not
        // names, and the common case collects nothing (an empty Vec does not allocate).
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|t| !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive"))
            .filter_map(|t| HeaderName::from_bytes(t).ok())
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    for (i, h) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(h);
        }
    }
    found
}

/// Removes the headers only switchyard may set from a client's request.
pub fn strip_private(headers: &mut HeaderMap) {
    for h in &PRIVATE {
        headers.remove(h);
    }
}

/// Whether a request carries more than one `Host` (a request smuggling vector: the
/// backend and switchyard could read different hosts). Repeated names are rare, so the
/// common case is one comparison.
pub fn duplicate_host(headers: &HeaderMap) -> bool {
    headers.len() != headers.keys_len() && headers.get_all(header::HOST).iter().nth(1).is_some()
}

/// Makes `Host` the request target's authority when the target carries one (an
/// absolute-form request, or HTTP/2's `:authority`): a server must then ignore `Host`
/// (RFC 9112 §3.2.2, RFC 9113 §8.3.1), and routing reads the authority, so the backend
/// must be told the same host. Any userinfo is left out, as a `Host` never carries one.
/// An origin-form request (nearly all HTTP/1) is left as it is.
pub fn host_from_authority(uri: &http::Uri, headers: &mut HeaderMap) {
    let Some(authority) = uri.authority() else {
        return;
    };
    let authority = authority.as_str();
    let host = &authority[authority.rfind('@').map_or(0, |at| at + 1)..];
    if headers
        .get(header::HOST)
        .is_some_and(|h| h.as_bytes() == host.as_bytes())
    {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(host) {
        headers.insert(header::HOST, v);
    }
}

/// The place of `name` in [`HOP_BY_HOP`], then [`PRIVATE`]; a string match (a length
/// switch, then one compare) is cheaper than comparing with each name in turn.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "proxy-authenticate" => 3,
        "proxy-authorization" => 4,
        "te" => 5,
        "trailer" => 6,
        "transfer-encoding" => 7,
        "upgrade" => 8,
        "x-switchyard-shadow" => 9,
        "x-switchyard-variant" => 10,
        "x-switchyard-route" => 11,
        _ => return None,
    })
}

/// The client's address as an `x-forwarded-for` value, made once per connection.
pub fn peer_value(peer: Option<IpAddr>) -> Option<HeaderValue> {
    peer.and_then(|ip| HeaderValue::from_str(&ip.to_string()).ok())
}

/// Appends the client's address (from [`peer_value`]) to `x-forwarded-for`.
///
/// The common case, no header yet, shares the connection's value and allocates nothing.
pub fn append_forwarded_for(headers: &mut HeaderMap, peer: Option<&HeaderValue>) {
    let Some(ip) = peer else { return };
    match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => {
            let joined = format!("{prev}, {}", ip.to_str().unwrap_or(""));
            if let Ok(v) = HeaderValue::from_str(&joined) {
                headers.insert(X_FORWARDED_FOR.clone(), v);
            }
        }
        _ => {
            headers.insert(X_FORWARDED_FOR.clone(), ip.clone());
        }
    }
}

/// The request's `x-request-id`, or a new one set on the headers.
pub fn request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(&X_REQUEST_ID) {
        if !id.is_empty() {
            return id.clone();
        }
    }
    let id = new_request_id();
    headers.insert(X_REQUEST_ID.clone(), id.clone());
    id
}

/// A new request id: 128 random bits as 32 hex digits, so that no id tells anything
/// of another (a client that saw some cannot guess the rest and label or replay them).
///
/// Drawn from the thread's generator (a CSPRNG seeded from the system, a few
/// nanoseconds a draw) and written on the stack: one allocation, as the value needs.
pub fn new_request_id() -> HeaderValue {
    let bits: u128 = rand::random();
    let mut buf = [0u8; 32];
    hex((bits >> 64) as u64, &mut buf[..16]);
    hex(bits as u64, &mut buf[16..]);
    // Owned in place: one allocation, and the copy for the answer is a reference count
    // (a value copied from a slice allocates again when first cloned).
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(buf))
        .expect("hex digits are a valid header value")
}

fn hex(mut v: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-end-to-end", HeaderValue::from_static("kept"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-end-to-end"], "kept");
    }

    #[test]
    fn every_connection_header_is_read_and_its_options_are_not_names() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("Keep-Alive"));
        h.append(
            header::CONNECTION,
            HeaderValue::from_static("close, X-Second"),
        );
        h.insert("x-second", HeaderValue::from_static("1"));
        h.insert(
            "close",
            HeaderValue::from_static("a header that happens to be called so"),
        );
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("close"));
    }

    #[test]
    fn the_fast_check_knows_every_hop_by_hop_name_and_nothing_else() {
        for (i, h) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(h), Some(i), "{h}");
        }
        for h in [header::CONTENT_TYPE, header::HOST, X_REQUEST_ID.clone()] {
            assert_eq!(hop_by_hop_index(&h), None, "{h}");
        }
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::HOST, HeaderValue::from_static("example"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
    }

    #[test]
    fn an_authority_in_the_target_becomes_the_host() {
        let host = |target: &str, given: Option<&'static str>| {
            let mut h = HeaderMap::new();
            if let Some(v) = given {
                h.insert(header::HOST, HeaderValue::from_static(v));
            }
            host_from_authority(&target.parse().unwrap(), &mut h);
            let all: Vec<_> = h.get_all(header::HOST).iter().cloned().collect();
            all
        };
        assert_eq!(host("http://a.example/x", Some("b.example")), ["a.example"]);
        assert_eq!(host("http://a.example:8080/x", None), ["a.example:8080"]);
        assert_eq!(host("http://user:pw@a.example/x", Some("b")), ["a.example"]);
        assert_eq!(host("http://[::1]:9/x", Some("b")), ["[::1]:9"]);
        assert_eq!(host("/x", Some("b.example")), ["b.example"], "origin form");
        assert_eq!(host("/x", None), Vec::<HeaderValue>::new());
    }

    #[test]
    fn forwarded_for_is_appended() {
        let mut h = HeaderMap::new();
        append_forwarded_for(
            &mut h,
            peer_value(Some("10.0.0.1".parse().unwrap())).as_ref(),
        );
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1");
        append_forwarded_for(
            &mut h,
            peer_value(Some("127.0.0.1".parse().unwrap())).as_ref(),
        );
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, 127.0.0.1");
    }

    #[test]
    fn request_ids_are_kept_or_made_unique() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc"));
        assert_eq!(request_id(&mut h), "abc");
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }

    /// Ids in a row share nothing: with a prefix and a counter, consecutive ids agree on
    /// their first 16 digits and differ by one at the end. Each of the 128 bits is set
    /// in about half of 2000 ids (a counter's high bits, or a fixed prefix's, never vary),
    /// and consecutive ids share about 2 of 32 digits.
    #[test]
    fn generated_request_ids_are_128_random_bits() {
        const N: usize = 2000;
        let ids: Vec<u128> = (0..N)
            .map(|_| {
                let v = new_request_id();
                let text = v.to_str().unwrap();
                assert_eq!(text.len(), 32, "{text}");
                u128::from_str_radix(text, 16).unwrap()
            })
            .collect();
        for bit in 0..128 {
            let set = ids.iter().filter(|id| *id >> bit & 1 == 1).count();
            // Binomial(2000, 1/2): 1000 ± 22; 850..1150 is 6.7 standard deviations.
            assert!((850..1150).contains(&set), "bit {bit} set in {set} of {N}");
        }
        let shared: usize = ids
            .windows(2)
            .map(|w| {
                (0..32)
                    .filter(|d| (w[0] >> (4 * d)) & 0xf == (w[1] >> (4 * d)) & 0xf)
                    .count()
            })
            .sum();
        let mean = shared as f64 / (N - 1) as f64;
        assert!(mean < 4.0, "consecutive ids share {mean:.1} of 32 digits");
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; uid=alice"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, "uid"), Some(&b"alice"[..]));
        assert_eq!(cookie(&h, "b"), Some(&b"2"[..]));
        assert_eq!(cookie(&h, "missing"), None);
    }
}
