//! The inference wire forms: what a V2, V1, OpenAI-style or plain JSON request and answer
//! look like, read once into the forms the observers and the comparison share.
//!
//! Everything here reads untrusted bytes (a client's request, a candidate model's
//! answer), so nothing here trusts a size it reads: see [`payload`]'s limits.
//!
//! - [`Protocol`]: the one name of a wire form, used by `compare.protocol` and
//!   `monitor.protocol` alike.
//! - [`json`]: lenient JSON (the bare `NaN`/`Infinity` Python emits), a V2 answer's
//!   `outputs` read alone, numbers spelled as strings.
//! - [`v2`], [`v1`]: what an answer of each protocol looks like, and its tensors.
//! - [`tensor`]: nested JSON data flattened row-major.
//! - [`pointer`]: RFC 6901 JSON pointers with `*`, for ignoring and redacting.
//! - [`Payload`]: an exchange's two bodies parsed once, with the answer's predictions.

pub mod json;
mod payload;
pub mod pointer;
pub mod tensor;
pub mod v1;
pub mod v2;

pub(crate) use payload::Rows;
pub use payload::{answer_redacted, Answer, Exchange, Payload, Prediction, MAX_DIMS, MAX_ROWS};

use serde_json::Value;

/// The largest request or answer body read into these forms: a body declared larger is
/// not observed, and a copy that grows past it is given up (the exchange counts as
/// unparseable). Large tensors (an image's pixels) are no features to watch, and
/// parsing them would cost more than the request.
pub const MAX_BODY: usize = 1 << 20;

/// An inference wire form, as configured (`compare.protocol`, `monitor.protocol`) and as
/// detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Detect it: per pair of answers from their bodies, per exchange from the path, then
    /// from the bodies' shape.
    #[default]
    Auto,
    /// KServe / MLServer / Triton Open Inference Protocol (`inputs` → `outputs`).
    V2,
    /// TF-Serving / KServe V1 (`instances` or `inputs` → `predictions` or `outputs`).
    V1,
    /// OpenAI-style completions and chat completions (compared as JSON).
    #[serde(rename = "openai")]
    OpenAi,
    /// Any JSON: compared structurally; the monitor reads only the configured pointers.
    Json,
    /// Opaque bytes: compared for exact equality; nothing in them is read.
    Bytes,
}

impl Protocol {
    /// Returns the lowercase name used in configuration and reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Auto => "auto",
            Protocol::V2 => "v2",
            Protocol::V1 => "v1",
            Protocol::OpenAi => "openai",
            Protocol::Json => "json",
            Protocol::Bytes => "bytes",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The protocol one answer body (parsed whole) looks like: V2 when it has named outputs
/// with data, V1 with `predictions` or `outputs`, else plain JSON.
pub(crate) fn detect_answer(v: &Value) -> Protocol {
    if !v.is_object() {
        Protocol::Json
    } else if v2::looks_like(v, true) {
        Protocol::V2
    } else if v1::looks_like(v) {
        Protocol::V1
    } else {
        Protocol::Json
    }
}
