//! The dashboard's files, embedded in the binary: the page, its script and style, and the
//! vendored chart library (uPlot, MIT). Nothing is fetched from elsewhere, so the page
//! works offline and its Content-Security-Policy can allow this origin only.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::{Response, StatusCode};
use http_body_util::Full;

/// The path prefix the files other than the page are served under.
#[cfg(test)]
const PREFIX: &str = crate::admin::api::ASSETS;

/// The page's Content-Security-Policy: scripts, styles and API calls from this origin
/// only, no inline script or style, no frames, no forms, no plugins.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

/// One embedded file: its path under [`PREFIX`], content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// The dashboard page itself, served at `/`.
const INDEX: &str = include_str!("assets/index.html");

/// Every file under [`PREFIX`].
const ASSETS: &[Asset] = &[
    Asset {
        path: "dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/dashboard.js"),
    },
    Asset {
        path: "dashboard.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/dashboard.css"),
    },
    Asset {
        path: "vendor/uplot/uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/vendor/uplot/uPlot.iife.min.js"),
    },
    Asset {
        path: "vendor/uplot/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/vendor/uplot/uPlot.min.css"),
    },
    Asset {
        path: "vendor/uplot/LICENSE",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("assets/vendor/uplot/LICENSE"),
    },
];

/// The answer to `GET /`: the page, with the headers every dashboard answer carries.
pub fn index() -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(INDEX.as_bytes())));
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    page_headers(h);
    r
}

/// The answer to `GET /assets/NAME` (`name` without the prefix): the file, revalidated by
/// its ETag on every load so a new binary's files are picked up at once; `None` for a
/// name that is not embedded.
pub fn serve(name: &str, request: &HeaderMap) -> Option<Response<Full<Bytes>>> {
    let asset = ASSETS.iter().find(|a| a.path == name)?;
    let etag = format!("\"{:016x}\"", fnv1a(asset.body));
    let fresh = request
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut r = if fresh {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        Response::new(Full::new(Bytes::from_static(asset.body)))
    };
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    page_headers(h);
    Some(r)
}

/// The security headers of the dashboard's answers: the CSP, no framing, no MIME
/// sniffing, no referrer.
fn page_headers(h: &mut HeaderMap) {
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
}

/// A 64-bit FNV-1a hash, for ETags: stable across builds of the same bytes.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_names_is_embedded() {
        for a in ASSETS.iter().filter(|a| !a.path.ends_with("LICENSE")) {
            let linked = format!("{PREFIX}{}", a.path);
            assert!(
                INDEX.contains(&linked),
                "{linked} is embedded but the page does not load it"
            );
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        assert!(!INDEX.contains("<script>"), "inline script");
        assert!(!INDEX.contains("<style"), "inline style");
        assert!(!INDEX.contains(" style="), "inline style attribute");
        for handler in ["onclick=", "onload=", "onchange=", "onsubmit="] {
            assert!(!INDEX.contains(handler), "inline event handler {handler}");
        }
    }

    #[test]
    fn an_unchanged_file_answers_304() {
        let first = serve("dashboard.js", &HeaderMap::new()).unwrap();
        let etag = first.headers()[ETAG].clone();
        let mut again = HeaderMap::new();
        again.insert(IF_NONE_MATCH, etag);
        let second = serve("dashboard.js", &again).unwrap();
        assert_eq!(second.status(), StatusCode::NOT_MODIFIED);
        assert!(serve("nope.js", &HeaderMap::new()).is_none());
        assert!(serve("../mod.rs", &HeaderMap::new()).is_none());
    }
}
