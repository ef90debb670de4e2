//! One record rendered as one line of JSON, its bodies redacted.

use serde::Serialize;
use serde_json::Value;

use super::{Body, Queued};
use crate::wire::json;
use crate::wire::pointer::{self, Pattern};

/// The line's members, in the order they are written.
#[derive(Serialize)]
struct Line<'a> {
    at: String,
    route: &'a str,
    request_id: &'a str,
    backend: &'a str,
    status: u16,
    latency_ms: f64,
    request: Value,
    response: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    shadow: Option<ShadowLine<'a>>,
}

/// The `shadow` member of a mirrored exchange's line.
#[derive(Serialize)]
struct ShadowLine<'a> {
    backend: &'a str,
    status: Option<u16>,
    response: Value,
}

/// Appends `q` to `out` as one JSON object and a newline, every `redact` pointer's value
/// replaced by `"[redacted]"` in every body.
pub(super) fn render(q: &Queued, redact: &[Pattern], out: &mut Vec<u8>) -> serde_json::Result<()> {
    let r = &q.record;
    let line = Line {
        at: humantime::format_rfc3339_millis(r.at).to_string(),
        route: &q.route,
        request_id: &r.request_id,
        backend: &r.backend,
        status: r.status,
        latency_ms: r.latency.as_micros() as f64 / 1000.0,
        request: body(&r.request, redact),
        response: body(&r.response, redact),
        shadow: r.shadow.as_ref().map(|s| ShadowLine {
            backend: &s.backend,
            status: s.status,
            response: body(&s.response, redact),
        }),
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.push(b'\n');
    Ok(())
}

/// A body as it is written: `null` when empty, its JSON redacted, or (not JSON, or cut
/// short by the capture cap) its size only, since redaction cannot reach inside it.
pub(super) fn body(b: &Body, redact: &[Pattern]) -> Value {
    if b.bytes.is_empty() {
        return Value::Null;
    }
    let parsed = match &b.parsed {
        Some(v) => Some(Value::clone(v)),
        None => json::parse(&b.bytes),
    };
    let Some(mut v) = parsed else {
        return Value::String(format!("({} bytes, not JSON: not recorded)", b.bytes.len()));
    };
    for p in redact {
        pointer::redact_in(&mut v, &p.segs);
    }
    v
}
