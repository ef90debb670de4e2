//! The one name of an inference wire form, as configured and as detected from an answer.

use super::{v1, v2};
use serde_json::Value;

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
