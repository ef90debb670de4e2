//! What comparing one live/shadow pair finds: the verdict, the differences and the
//! per-tensor reports, shared by the comparison and the protocol-specific parts.

use crate::wire::Protocol;

/// The verdict on one live/shadow pair, also the `result` label of `switchyard_shadow_comparisons_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Everything compared is equal within tolerance.
    Agree,
    /// At least one difference.
    Disagree,
    /// The pair cannot be judged (status mismatch, truncated or unparseable body, wrong shape for the protocol).
    Incomparable,
}

impl Outcome {
    /// Returns the Prometheus label value: `agree`, `disagree` or `incomparable`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Agree => "agree",
            Outcome::Disagree => "disagree",
            Outcome::Incomparable => "incomparable",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of comparing one live/shadow pair.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Comparison {
    /// Agree, disagree or incomparable.
    pub outcome: Outcome,
    /// The protocol actually used (`auto` resolved; `auto` only if the pair was rejected before detection).
    pub protocol: Protocol,
    /// Why the pair is incomparable, or a note on how `auto` resolved a mixed pair.
    pub reason: Option<String>,
    /// The first [`MAX_DIFFERENCES`](crate::compare::MAX_DIFFERENCES) differences.
    pub differences: Vec<Difference>,
    /// How many differences there were in all.
    pub differences_total: usize,
    /// One report per output tensor (v2) or per predictions/outputs tensor (v1); empty for json/bytes.
    pub outputs: Vec<OutputReport>,
}

impl Comparison {
    pub(super) fn incomparable(protocol: Protocol, reason: String) -> Self {
        Comparison {
            outcome: Outcome::Incomparable,
            protocol,
            reason: Some(reason),
            differences: Vec::new(),
            differences_total: 0,
            outputs: Vec::new(),
        }
    }
}

/// One place where the two responses differ.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Difference {
    /// JSON pointer of the location, V2 outputs by name (`/outputs/predict/data/3`); `""` for the whole body.
    pub path: String,
    /// The live value as compact JSON (cut at 256 bytes, redacted per the rules), or `(absent)`.
    pub live: String,
    /// The shadow value, likewise.
    pub shadow: String,
    /// What differs: `value`, `type`, `shape`, `datatype`, `length`, `missing in shadow`, `extra in shadow` or `bytes`.
    pub what: String,
}

/// Per-tensor agreement statistics.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OutputReport {
    /// The output name (v2), `predictions`/`outputs` or the columnar member name (v1).
    pub name: String,
    /// Every element within tolerance and datatype, shape and parameters equal.
    pub agree: bool,
    /// Element count (the larger side's when they differ; 0 if the data was ignored).
    pub elements: usize,
    /// Elements that differ, including the surplus of the longer side.
    pub mismatched: usize,
    /// Largest finite |live - shadow| over numeric elements.
    pub max_abs_diff: Option<f64>,
    /// For `[n, k]` score tensors (k > 1): whether every row's argmax agrees.
    pub top1_agree: Option<bool>,
    /// For `[n, k]` score tensors: share of rows whose argmax agrees.
    pub top1_agreement: Option<f64>,
    /// For label-like outputs (BYTES/strings, or integer/boolean class ids one per row): share of equal labels.
    pub label_agreement: Option<f64>,
}
