//! Who may change a rollout through the admin API.
//!
//! With a token configured, a mutating call needs `Authorization: Bearer TOKEN`. Without
//! one (allowed only on a loopback admin), the call must come from a loopback client,
//! name a loopback `Host` (so a DNS-rebound name cannot reach it from a browser), and
//! carry no cross-site browser marker: no `Origin` but the admin's own, no
//! `Sec-Fetch-Site` but `same-origin` or `none`. Either way, a call with a body must say
//! it is JSON, which no HTML form can send without the browser asking first. A web page
//! the operator has open therefore cannot roll back or promote.

use std::net::IpAddr;

use http::header::{HeaderMap, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN};
use http::StatusCode;

/// Why a mutating call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MissingToken,
    WrongToken,
    NotLoopback,
    ForeignHost,
    CrossSite,
    NotJson,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::MissingToken => StatusCode::UNAUTHORIZED,
            Refusal::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::FORBIDDEN,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::MissingToken => "missing bearer token",
            Refusal::WrongToken => "wrong bearer token",
            Refusal::NotLoopback => {
                "without an admin token, only loopback clients may change the rollout"
            }
            Refusal::ForeignHost => {
                "without an admin token, the Host must be a loopback name or address"
            }
            Refusal::CrossSite => "cross-site requests may not change the rollout",
            Refusal::NotJson => "a request body must be JSON (content-type: application/json)",
        }
    }
}

/// Checks a mutating call from `peer` with `headers` against the admin's `token`.
pub fn check(token: Option<&str>, peer: IpAddr, headers: &HeaderMap) -> Result<(), Refusal> {
    json_body(headers)?;
    match token {
        Some(token) => bearer(token, headers),
        None => local_and_same_origin(peer, headers),
    }
}

/// A body, if there is one, must be declared JSON.
fn json_body(headers: &HeaderMap) -> Result<(), Refusal> {
    match headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        Some(ct) => {
            let mime = ct.split(';').next().unwrap_or("").trim();
            let json = mime.eq_ignore_ascii_case("application/json")
                || mime.to_ascii_lowercase().ends_with("+json");
            if json {
                Ok(())
            } else {
                Err(Refusal::NotJson)
            }
        }
        None if has_body(headers) => Err(Refusal::NotJson),
        None => Ok(()),
    }
}

/// Whether the request says a body follows.
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// Checks `Authorization: Bearer TOKEN`; the scheme's name is case-insensitive and may be
/// followed by several spaces (RFC 9110 §11.1, §11.4).
fn bearer(token: &str, headers: &HeaderMap) -> Result<(), Refusal> {
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, credentials)| credentials);
    match given {
        None => Err(Refusal::MissingToken),
        Some(t) if constant_time_eq(t.trim().as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(Refusal::WrongToken),
    }
}

fn local_and_same_origin(peer: IpAddr, headers: &HeaderMap) -> Result<(), Refusal> {
    if !peer.is_loopback() {
        return Err(Refusal::NotLoopback);
    }
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    let Some(host) = host.filter(|h| is_loopback_host(h)) else {
        return Err(Refusal::ForeignHost);
    };
    if let Some(origin) = headers.get(ORIGIN) {
        let own = origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("http://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(host));
        if !own {
            return Err(Refusal::CrossSite);
        }
    }
    let fetch_site = headers.get("sec-fetch-site").map(|v| v.as_bytes());
    match fetch_site {
        None | Some(b"same-origin") | Some(b"none") => Ok(()),
        Some(_) => Err(Refusal::CrossSite),
    }
}

/// Whether a `Host` value (with or without a port) names this machine's loopback.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // [::1]:9901
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Compares secrets without leaking where they differ through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    /// A case: its name, the peer, the request's headers, what `check` says.
    type Case = (
        &'static str,
        IpAddr,
        &'static [(&'static str, &'static str)],
        Result<(), Refusal>,
    );

    /// Who calls, as what, and whether it passes, without a token.
    const CASES: &[Case] = &[
        (
            "the CLI",
            LOOPBACK,
            &[
                ("host", "127.0.0.1:9901"),
                ("content-type", "application/json"),
            ],
            Ok(()),
        ),
        (
            "curl, no body",
            LOOPBACK,
            &[("host", "localhost:9901")],
            Ok(()),
        ),
        ("IPv6 loopback", LOOPBACK, &[("host", "[::1]:9901")], Ok(())),
        (
            "the dashboard",
            LOOPBACK,
            &[
                ("host", "127.0.0.1:9901"),
                ("origin", "http://127.0.0.1:9901"),
                ("sec-fetch-site", "same-origin"),
                ("content-type", "application/json"),
            ],
            Ok(()),
        ),
        (
            "remote peer",
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            &[("host", "127.0.0.1:9901")],
            Err(Refusal::NotLoopback),
        ),
        (
            "rebound name",
            LOOPBACK,
            &[("host", "attacker.example:9901")],
            Err(Refusal::ForeignHost),
        ),
        ("no host", LOOPBACK, &[], Err(Refusal::ForeignHost)),
        (
            "foreign origin",
            LOOPBACK,
            &[
                ("host", "127.0.0.1:9901"),
                ("origin", "http://evil.example"),
            ],
            Err(Refusal::CrossSite),
        ),
        (
            "other local port",
            LOOPBACK,
            &[
                ("host", "127.0.0.1:9901"),
                ("origin", "http://127.0.0.1:3000"),
            ],
            Err(Refusal::CrossSite),
        ),
        (
            "null origin",
            LOOPBACK,
            &[("host", "127.0.0.1:9901"), ("origin", "null")],
            Err(Refusal::CrossSite),
        ),
        (
            "fetch metadata",
            LOOPBACK,
            &[("host", "127.0.0.1:9901"), ("sec-fetch-site", "cross-site")],
            Err(Refusal::CrossSite),
        ),
        (
            "same-site page",
            LOOPBACK,
            &[("host", "127.0.0.1:9901"), ("sec-fetch-site", "same-site")],
            Err(Refusal::CrossSite),
        ),
        (
            "HTML form",
            LOOPBACK,
            &[
                ("host", "127.0.0.1:9901"),
                ("content-type", "application/x-www-form-urlencoded"),
                ("content-length", "5"),
            ],
            Err(Refusal::NotJson),
        ),
        (
            "text/plain fetch",
            LOOPBACK,
            &[("host", "127.0.0.1:9901"), ("content-type", "text/plain")],
            Err(Refusal::NotJson),
        ),
        (
            "body without a type",
            LOOPBACK,
            &[("host", "127.0.0.1:9901"), ("content-length", "2")],
            Err(Refusal::NotJson),
        ),
    ];

    #[test]
    fn without_a_token_only_local_same_origin_calls_pass() {
        for (name, peer, h, want) in CASES {
            assert_eq!(check(None, *peer, &headers(h)), *want, "{name}");
        }
    }

    #[test]
    fn with_a_token_the_token_decides() {
        let remote = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let ok = headers(&[
            ("authorization", "Bearer s3cret"),
            ("host", "admin.example"),
        ]);
        assert_eq!(check(Some("s3cret"), remote, &ok), Ok(()));
        let wrong = headers(&[("authorization", "Bearer nope")]);
        assert_eq!(
            check(Some("s3cret"), remote, &wrong),
            Err(Refusal::WrongToken)
        );
        assert_eq!(
            check(Some("s3cret"), LOOPBACK, &HeaderMap::new()),
            Err(Refusal::MissingToken)
        );
        for scheme in ["bearer s3cret", "BEARER s3cret", "bEaReR   s3cret"] {
            let h = headers(&[("authorization", scheme)]);
            assert_eq!(check(Some("s3cret"), remote, &h), Ok(()), "{scheme}");
        }
        for other in ["Basic czNjcmV0", "Bearers3cret", "s3cret"] {
            let h = headers(&[("authorization", other)]);
            let refused = check(Some("s3cret"), remote, &h);
            assert_eq!(refused, Err(Refusal::MissingToken), "{other}");
        }
        let form = headers(&[
            ("authorization", "Bearer s3cret"),
            ("content-type", "text/plain"),
        ]);
        assert_eq!(check(Some("s3cret"), remote, &form), Err(Refusal::NotJson));
    }
}
