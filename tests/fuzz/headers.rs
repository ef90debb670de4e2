//! Fuzz target: the header handling of `switchyard::proxy::headers`
//! (`strip_hop_by_hop`, `request_id`, `append_forwarded_for`, `cookie`) on header maps
//! drawn from strategies and from the seed corpus in `tests/fuzz/corpus/headers/` (one
//! request head per file).
//!
//! Properties:
//! - nothing panics;
//! - after stripping, no hop-by-hop header remains, nor any header that a `Connection`
//!   header names (an option that is not a header name, such as `close`, removes
//!   nothing); every other header remains with all its values, in order;
//! - in the order the proxy applies them (strip, request id, forwarded-for), the request
//!   id returned is the one forwarded, and the client's address ends `x-forwarded-for`,
//!   whatever `Connection` names (SPEC, "Limits and faults": stripping never removes
//!   the headers switchyard adds);
//! - a non-empty `x-request-id` is kept, a missing or empty one replaced by 32 hex digits;
//! - `cookie` finds the first cookie of that name across every `Cookie` header.

use std::net::IpAddr;
use std::sync::OnceLock;

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, COOKIE};
use proptest::prelude::*;
use switchyard::proxy::headers::{
    append_forwarded_for, cookie, peer_value, request_id, strip_hop_by_hop, X_FORWARDED_FOR,
    X_REQUEST_ID,
};

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

const NAMES: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "x-request-id",
    "x-forwarded-for",
    "cookie",
    "close",
    "x-private",
    "x-a",
    "content-type",
    "content-length",
    "host",
    "x-switchyard-variant",
    "x-switchyard-shadow",
    "x-switchyard-route",
];

/// The seed request heads: `name: value` lines (values may hold any byte but CR and LF).
fn seeds() -> &'static [Vec<(HeaderName, HeaderValue)>] {
    static SEEDS: OnceLock<Vec<Vec<(HeaderName, HeaderValue)>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let all: Vec<_> = super::corpus("tests/fuzz/corpus/headers", &["txt"])
            .into_iter()
            .map(|(name, bytes)| {
                bytes
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .skip_while(|l| !l.contains(&b':')) // the request line
                    .map(|l| {
                        let c = l.iter().position(|b| *b == b':').unwrap();
                        let n = HeaderName::from_bytes(&l[..c])
                            .unwrap_or_else(|e| panic!("{name}: {e}"));
                        let v = HeaderValue::from_bytes(l[c + 1..].trim_ascii())
                            .unwrap_or_else(|e| panic!("{name}: {e}"));
                        (n, v)
                    })
                    .collect()
            })
            .collect();
        assert!(all.len() >= 3, "the headers corpus is missing");
        all
    })
}

/// A name from the list with its letters' case changed by `upper`, or any token.
fn name_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (prop::sample::select(NAMES), any::<u32>()).prop_map(|(n, upper)| {
            n.chars()
                .enumerate()
                .map(|(i, c)| if upper >> (i % 32) & 1 == 1 { c.to_ascii_uppercase() } else { c })
                .collect()
        }),
        1 => "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,12}",
    ]
}

fn header_name() -> impl Strategy<Value = HeaderName> {
    name_text().prop_filter_map("a header name", |n| {
        HeaderName::from_bytes(n.as_bytes()).ok()
    })
}

const SEPARATORS: &[&[u8]] = &[b",", b", ", b" ,", b",\t", b",,"];

/// A `Connection`-like list: names, options and junk, with untidy separators.
fn list_value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        (
            prop_oneof![
                6 => name_text().prop_map(String::into_bytes),
                1 => Just(b"close".to_vec()),
                1 => Just(b"".to_vec()),
                1 => Just(b"\xff\xfe".to_vec()),
                1 => Just("é".as_bytes().to_vec()),
                1 => "[ -~]{0,6}".prop_map(String::into_bytes),
            ],
            prop::sample::select(SEPARATORS),
        ),
        0..5,
    )
    .prop_map(|items| {
        let mut out = Vec::new();
        for (i, (item, sep)) in items.into_iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(sep);
            }
            out.extend_from_slice(&item);
        }
        out
    })
}

/// Any bytes a header value may hold: controls other than tab become `!` (drawing
/// bytes and rejecting the invalid ones would exhaust proptest's reject budget on
/// long runs).
fn value_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..16).prop_map(|mut v| {
        for b in &mut v {
            if (*b < 0x20 && *b != b'\t') || *b == 0x7f {
                *b = b'!';
            }
        }
        v
    })
}

fn header_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        2 => list_value(),
        2 => "[ -~]{0,16}".prop_map(String::into_bytes),
        1 => value_bytes(),
    ]
    .prop_filter_map("a header value", |v| HeaderValue::from_bytes(&v).ok())
}

/// Headers drawn from strategies, or a seed with some added.
fn headers() -> impl Strategy<Value = Vec<(HeaderName, HeaderValue)>> {
    let drawn = prop::collection::vec(
        prop_oneof![
            3 => (header_name(), header_value()),
            1 => (Just(CONNECTION), list_value().prop_filter_map("a value", |v| HeaderValue::from_bytes(&v).ok())),
        ],
        0..10,
    );
    prop_oneof![
        3 => drawn.clone(),
        1 => (any::<prop::sample::Index>(), drawn).prop_map(|(i, mut more)| {
            let mut h = i.get(seeds()).clone();
            h.append(&mut more);
            h
        }),
    ]
}

fn map(list: &[(HeaderName, HeaderValue)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in list {
        h.append(n.clone(), v.clone());
    }
    h
}

/// The names that the `Connection` headers list, read byte-wise: every comma-separated
/// element that is a header name, except the `close` and `keep-alive` options.
fn named_by_connection(h: &HeaderMap) -> Vec<HeaderName> {
    h.get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive"))
        .filter_map(|t| HeaderName::from_bytes(t).ok())
        .collect()
}

fn values(h: &HeaderMap, n: &HeaderName) -> Vec<HeaderValue> {
    h.get_all(n).iter().cloned().collect()
}

/// Checks what stripping promises, given the headers before and after.
fn stripped(before: &HeaderMap, after: &HeaderMap) -> Result<(), TestCaseError> {
    for n in HOP_BY_HOP {
        prop_assert!(!after.contains_key(*n), "{n} remains: {after:?}");
    }
    let named = named_by_connection(before);
    for n in &named {
        prop_assert!(
            !after.contains_key(n),
            "{n} is named by Connection yet remains: {before:?}"
        );
    }
    for n in before.keys() {
        if HOP_BY_HOP.contains(&n.as_str()) || named.contains(n) {
            continue;
        }
        prop_assert_eq!(
            values(before, n),
            values(after, n),
            "{} changed: {:?}",
            n,
            before
        );
    }
    Ok(())
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u16; 8]>().prop_map(IpAddr::from),
    ]
}

/// A cookie name, and a value that the lookup returns as it is.
fn cookie_pair() -> impl Strategy<Value = (String, String)> {
    (
        prop_oneof![
            Just("uid".to_owned()),
            Just("uid2".to_owned()),
            "[a-zA-Z0-9_-]{1,6}"
        ],
        "([!-:<-~]([ !-:<-~]{0,8}[!-:<-~])?)?",
    )
}

proptest! {
    #![proptest_config(super::config(
        1024,
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz/proptest-regressions/headers.txt"),
    ))]

    /// Stripping removes exactly the hop-by-hop headers and those `Connection` names.
    #[test]
    fn stripping_removes_hop_by_hop_and_connection_named_headers(list in headers()) {
        let before = map(&list);
        let mut after = before.clone();
        strip_hop_by_hop(&mut after);
        stripped(&before, &after)?;
    }

    /// The headers as the proxy sets them: stripping, request id, forwarded-for.
    #[test]
    fn the_proxy_forwards_its_own_headers(list in headers(), peer in ip()) {
        let before = map(&list);
        let mut h = before.clone();
        strip_hop_by_hop(&mut h);
        let id = request_id(&mut h);
        let peer = peer_value(Some(peer)).expect("an address is a header value");
        append_forwarded_for(&mut h, Some(&peer));
        prop_assert_eq!(h.get(&X_REQUEST_ID), Some(&id), "{:?}", before);
        let xff = h.get_all(&X_FORWARDED_FOR).iter().collect::<Vec<_>>();
        prop_assert_eq!(xff.len(), 1, "{:?}", h);
        let last = xff[0].as_bytes().rsplit(|b| *b == b',').next().unwrap().trim_ascii();
        prop_assert_eq!(last, peer.as_bytes());
        for n in HOP_BY_HOP {
            prop_assert!(!h.contains_key(*n));
        }
    }

    /// A non-empty request id is kept; otherwise a new one of 32 hex digits is set.
    #[test]
    fn request_ids_are_kept_or_made(list in headers(), id in prop::option::of(header_value())) {
        let mut h = map(&list);
        if let Some(id) = id {
            h.insert(&X_REQUEST_ID, id);
        }
        let before = h.get(&X_REQUEST_ID).cloned();
        let got = request_id(&mut h);
        match before {
            Some(b) if !b.is_empty() => prop_assert_eq!(got, b),
            _ => {
                prop_assert_eq!(got.len(), 32);
                prop_assert!(got.as_bytes().iter().all(u8::is_ascii_hexdigit));
                prop_assert_eq!(h.get(&X_REQUEST_ID), Some(&got));
            }
        }
    }

    /// The peer is appended to the first `x-forwarded-for` value, which becomes the only one.
    #[test]
    fn forwarded_for_appends_the_peer(
        list in headers(),
        prev in prop::collection::vec(header_value(), 0..3),
        peer in prop::option::of(ip()),
    ) {
        let mut h = map(&list);
        for v in prev {
            h.append(&X_FORWARDED_FOR, v);
        }
        let before = h.clone();
        let peer = peer_value(peer);
        append_forwarded_for(&mut h, peer.as_ref());
        let Some(peer) = peer else {
            prop_assert_eq!(h, before);
            return Ok(());
        };
        let first = before.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()).filter(|s| !s.is_empty());
        let want = match first {
            Some(prev) => format!("{prev}, {}", peer.to_str().unwrap()),
            None => peer.to_str().unwrap().to_owned(),
        };
        let got: Vec<_> = h.get_all(&X_FORWARDED_FOR).iter().cloned().collect();
        prop_assert_eq!(got, vec![HeaderValue::from_str(&want).unwrap()]);
    }

    /// `cookie` never panics on any headers and name.
    #[test]
    fn cookie_lookup_never_panics(list in headers(), name in any::<String>(), raw in prop::collection::vec(header_value(), 0..3)) {
        let mut h = map(&list);
        for v in raw {
            h.append(COOKIE, v);
        }
        let _ = cookie(&h, &name);
        let _ = cookie(&h, "uid");
    }

    /// `cookie` finds the first cookie with that name, in every `Cookie` header in order.
    #[test]
    fn cookies_are_found_by_name(
        pairs in prop::collection::vec(cookie_pair(), 0..6),
        split in prop::collection::vec(any::<bool>(), 6),
        name in prop_oneof![Just("uid".to_owned()), "[a-z]{1,3}"],
    ) {
        let mut h = HeaderMap::new();
        let mut current = String::new();
        for (i, (n, v)) in pairs.iter().enumerate() {
            if !current.is_empty() {
                if split[i] {
                    h.append(COOKIE, HeaderValue::from_str(&current).unwrap());
                    current.clear();
                } else {
                    current.push_str("; ");
                }
            }
            current.push_str(&format!("{n}={v}"));
        }
        if !current.is_empty() {
            h.append(COOKIE, HeaderValue::from_str(&current).unwrap());
        }
        let want = pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_bytes());
        prop_assert_eq!(cookie(&h, &name), want, "{:?}", h);
    }
}

#[test]
fn every_seed_is_stripped_as_promised() {
    for list in seeds() {
        let before = map(list);
        let mut after = before.clone();
        strip_hop_by_hop(&mut after);
        stripped(&before, &after).unwrap_or_else(|e| panic!("{e}"));
    }
}

// === regressions: each failure the target found, as it was found ===

/// A `Connection` value with a non-ASCII byte anywhere was skipped whole, so the
/// headers it named were forwarded.
#[test]
fn a_connection_value_with_a_non_ascii_byte_still_names_headers() {
    let mut h = HeaderMap::new();
    h.append(
        CONNECTION,
        HeaderValue::from_bytes(b"x-private, \xff").unwrap(),
    );
    h.append("x-private", HeaderValue::from_static("1"));
    h.append("x-kept", HeaderValue::from_static("2"));
    strip_hop_by_hop(&mut h);
    assert!(!h.contains_key("x-private"), "{h:?}");
    assert!(h.contains_key("x-kept"), "{h:?}");
}

/// `Connection: x-request-id` removed the request id the proxy had settled on when it
/// stripped after choosing the id, so the backend got none (SPEC: stripping never
/// removes switchyard's own headers). Found with that order; the proxy now strips
/// first, and this is its order.
#[test]
fn connection_cannot_strip_the_headers_switchyard_sets() {
    let mut h = HeaderMap::new();
    h.append(
        CONNECTION,
        HeaderValue::from_static("close, X-Request-Id, x-forwarded-for"),
    );
    h.append(&X_REQUEST_ID, HeaderValue::from_static("client-chosen"));
    h.append(&X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
    strip_hop_by_hop(&mut h);
    let id = request_id(&mut h);
    let peer = peer_value(Some([127, 0, 0, 1].into()));
    append_forwarded_for(&mut h, peer.as_ref());
    assert_eq!(h.get(&X_REQUEST_ID), Some(&id));
    assert_ne!(
        id, "client-chosen",
        "the named header goes, then ours is set"
    );
    assert_eq!(h[&X_FORWARDED_FOR], "127.0.0.1");
    assert!(!h.contains_key(CONNECTION));
}
