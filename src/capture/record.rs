//! What is recorded of one exchange, and one record rendered as one line of JSON, its
//! bodies redacted.

use serde::Serialize;
use serde_json::Value;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::counts::Counts;
use crate::wire::json;
use crate::wire::pointer::{self, Pattern};

/// What one queued record is counted for in [`Settings::queue_bytes`](crate::capture::Settings::queue_bytes) besides its bodies.
pub(crate) const RECORD_OVERHEAD: usize = 256;

/// One exchange to record, as the observer has it once the answer has gone to the client.
#[derive(Debug, Clone)]
pub struct Record {
    /// When the request arrived.
    pub at: SystemTime,
    /// The request's `x-request-id`.
    pub request_id: String,
    /// The backend that answered.
    pub backend: Arc<str>,
    /// The answer's status code.
    pub status: u16,
    /// From the request to the answer's head (or however the caller measures it).
    pub latency: Duration,
    /// The request body.
    pub request: Body,
    /// The answer body.
    pub response: Body,
    /// The mirror's answer, when the request was mirrored.
    pub shadow: Option<Shadow>,
}

/// The shadow side of a mirrored exchange.
#[derive(Debug, Clone)]
pub struct Shadow {
    /// The backend the copy went to.
    pub backend: Arc<str>,
    /// Its answer's status code; `None` when no answer came (connection error, timeout).
    pub status: Option<u16>,
    /// Its answer body.
    pub response: Body,
}

/// A body to record: its bytes, and the JSON parsed from them when an observer already did.
///
/// The writer parses the bytes itself when no parsed form is given, so a body is parsed
/// at most once either way. Whichever it gets, it redacts a copy: a shared parsed form
/// is never changed.
#[derive(Debug, Clone, Default)]
pub struct Body {
    bytes: Bytes,
    parsed: Option<Arc<Value>>,
}

impl Body {
    /// A body given by its bytes (parsed by the writer, off the caller's thread).
    pub fn bytes(bytes: impl Into<Bytes>) -> Body {
        Body {
            bytes: bytes.into(),
            parsed: None,
        }
    }

    /// A body with the JSON another observer parsed from `bytes`.
    pub fn parsed(bytes: impl Into<Bytes>, json: Arc<Value>) -> Body {
        Body {
            bytes: bytes.into(),
            parsed: Some(json),
        }
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Tells whether it is empty (recorded as `null`).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl Record {
    /// What the record is counted for against [`Settings::queue_bytes`](crate::capture::Settings::queue_bytes).
    pub(super) fn weight(&self) -> usize {
        let shadow = self.shadow.as_ref().map_or(0, |s| s.response.len());
        RECORD_OVERHEAD + self.request.len() + self.response.len() + shadow
    }
}

/// A record on its way to the writer, with what the writer needs to render and count it.
pub(super) struct Queued {
    pub(super) record: Record,
    pub(super) route: Arc<str>,
    pub(super) counts: Arc<Counts>,
    pub(super) weight: usize,
}

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
