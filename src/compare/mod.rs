//! Protocol-aware comparison of a live (stable) response with its shadow (candidate) copy.
//!
//! During shadow mode every mirrored request yields two responses; [`compare`]
//! says whether they agree, and why not, in terms of the inference protocol:
//!
//! - **Status and truncation.** Different status codes, or a body cut at the
//!   capture cap on either side, make the pair [`Outcome::Incomparable`].
//!   Equal statuses (2xx or not) are compared by the same rules: with `auto`,
//!   two JSON error bodies get a structural diff; with an explicit `v2`/`v1`,
//!   error bodies that are not inference responses are `Incomparable` (the
//!   reason carries the status).
//! - **`auto`** picks per pair: a body that parses as JSON and has an
//!   `outputs` array of objects with `name` and `data` is `v2`; one with
//!   `predictions` (or a non-V2 `outputs`, TF-Serving columnar) is `v1`; any
//!   other JSON is `json`; a body that is not JSON is compared as `bytes`.
//!   When the two sides resolve differently the pair is diffed as `json` (or
//!   as `bytes` if only one is JSON), which reports the difference. A
//!   `content_type` of `application/octet-stream`, protobuf, gRPC, `image/*`,
//!   `audio/*` or `video/*` on either side skips JSON parsing.
//! - **`v2`** (Open Inference Protocol) compares only `outputs`, matched by
//!   name in any order: `datatype`, `shape`, `parameters` and `data`
//!   element-wise (nested data flattened row-major). Top-level `id`,
//!   `model_name`, `model_version` and `parameters` are *not* compared: the
//!   candidate's identity differs by design. FP data is compared with
//!   tolerance; INT/UINT/BOOL/BYTES data exactly.
//! - **`v1`** compares only `predictions` (or `outputs`) as tensors with
//!   tolerance and a shape check.
//! - **`json`** is a structural diff of the whole document.
//! - **`bytes`** is exact equality.
//!
//! Numbers agree when `|a-b| <= abs_tolerance` or `|a-b| <= rel_tolerance *
//! max(|a|,|b|)`; NaN agrees with NaN, an infinity with the same infinity.
//! The bare `NaN`/`Infinity` tokens Python emits are accepted, as are
//! strings such as `"NaN"` or `"-inf"` in numeric positions.
//!
//! # Ignore and redact pointers
//!
//! [`Rules::ignore`] and [`Rules::redact`] hold RFC 6901 JSON pointers (`""`
//! is the whole document) in which a segment that is exactly `*` matches any
//! key or index: `/outputs/*/parameters`. A pointer selects the location and
//! everything below it. They address the documents as sent, with one
//! addition: where an array element has a `name` member (V2 outputs), a
//! segment may name it instead of indexing it. So for V2,
//! `/outputs/probabilities/parameters`, `/outputs/0/parameters` (position in
//! the live *or* the shadow response) and `/outputs/*/parameters` all work;
//! ignoring `/outputs/<o>` drops that output from the comparison and the
//! reports. Inside tensor data, pointers follow the JSON nesting of the data
//! (`/predictions/0` is row 0 of a nested V1 tensor; ignored elements are not
//! counted as mismatched).
//!
//! Paths in [`Difference`]s use the same scheme, V2 outputs by name:
//! `/outputs/predict/data/3`; for nested tensor data the path holds nested
//! indexes.

mod json;
mod outcome;
mod report;
mod tensor;
mod tolerance;
mod v1;
mod v2;

use crate::wire::json::{parse, parse_outputs, V2Output};
use crate::wire::pointer::{self, Pattern};
use crate::wire::{self, detect_answer, Protocol};
use report::{Ctx, Shown};
use serde_json::Value;
use std::borrow::Cow;
use std::sync::OnceLock;

pub use outcome::{Comparison, Difference, Outcome, OutputReport};
pub use report::MAX_DIFFERENCES;

/// What a body must be to be compared under the declared `protocol`, as a reason says it.
fn wanted(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::V2 => "a V2 inference response (an `outputs` array of named tensors)",
        _ => "a V1 response (`predictions` or `outputs`)",
    }
}

/// The comparison settings of one configuration, built once and shared by all comparisons.
///
/// Build it with [`Rules::new`], which validates the pointers and
/// tolerances, or start from [`Rules::default`]. A value built by hand is
/// accepted too; pointers that do not parse are then skipped (check such a
/// value with [`Rules::validate`]). The ignore pointers are compiled on the
/// first comparison and kept (compiled afresh if `ignore` has changed since);
/// redact pointers only when something is reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Protocol to compare under; `Auto` detects it per pair.
    pub protocol: Protocol,
    /// JSON pointers left out of the comparison (see the module docs for the syntax).
    pub ignore: Vec<String>,
    /// Absolute tolerance for numbers.
    pub abs_tolerance: f64,
    /// Relative tolerance for numbers, against the larger magnitude.
    pub rel_tolerance: f64,
    /// JSON pointers whose values are shown as `"[redacted]"` in differences and [`redact`]ed bodies.
    pub redact: Vec<String>,
    compiled: Compiled,
}

/// `ignore` compiled, with the list it was compiled from. A cache, not part of the value:
/// any two compare equal.
#[derive(Debug, Clone, Default)]
struct Compiled(OnceLock<(Vec<String>, Vec<Pattern>)>);

impl PartialEq for Compiled {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Default absolute tolerance.
pub const DEFAULT_ABS_TOLERANCE: f64 = 1e-6;
/// Default relative tolerance.
pub const DEFAULT_REL_TOLERANCE: f64 = 1e-4;

impl Rules {
    /// Builds validated comparison rules.
    ///
    /// Fails, listing every problem, when a pointer is neither empty nor
    /// starts with `/` (or has a bad `~` escape), or a tolerance is negative
    /// or not finite.
    pub fn new(
        protocol: Protocol,
        ignore: Vec<String>,
        abs_tolerance: f64,
        rel_tolerance: f64,
        redact: Vec<String>,
    ) -> Result<Rules, String> {
        let rules = Rules {
            protocol,
            ignore,
            abs_tolerance,
            rel_tolerance,
            redact,
            compiled: Compiled::default(),
        };
        rules.validate()?;
        Ok(rules)
    }

    /// The ignore pointers, compiled once and shared by every comparison.
    fn ignore_patterns(&self) -> Cow<'_, [Pattern]> {
        let (src, compiled) = self
            .compiled
            .0
            .get_or_init(|| (self.ignore.clone(), pointer::compile(&self.ignore)));
        if *src == self.ignore {
            Cow::Borrowed(compiled)
        } else {
            // Changed by hand since the first comparison.
            Cow::Owned(pointer::compile(&self.ignore))
        }
    }

    /// Checks the pointers and tolerances, returning every problem joined by `; `.
    pub fn validate(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        for (name, t) in [
            ("abs_tolerance", self.abs_tolerance),
            ("rel_tolerance", self.rel_tolerance),
        ] {
            if !t.is_finite() || t < 0.0 {
                errors.push(format!("{name}: must be a finite number >= 0, got {t}"));
            }
        }
        pointer::check("ignore", &self.ignore, &mut errors);
        pointer::check("redact", &self.redact, &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

impl Default for Rules {
    /// `auto`, nothing ignored or redacted, tolerances 1e-6 absolute and 1e-4 relative.
    fn default() -> Self {
        Rules {
            protocol: Protocol::Auto,
            ignore: Vec::new(),
            abs_tolerance: DEFAULT_ABS_TOLERANCE,
            rel_tolerance: DEFAULT_REL_TOLERANCE,
            redact: Vec::new(),
            compiled: Compiled::default(),
        }
    }
}

/// One captured upstream response, borrowed from the mirror's buffers.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// HTTP status code.
    pub status: u16,
    /// The `content-type` header, if any (a hint for `auto`).
    pub content_type: Option<&'a str>,
    /// The body as captured (possibly cut at the capture cap).
    pub body: &'a [u8],
    /// The body exceeded the capture cap; such a pair is `Incomparable`.
    pub truncated: bool,
}

/// Compares a live response with its shadow copy under `rules`.
pub fn compare(rules: &Rules, live: &Response<'_>, shadow: &Response<'_>) -> Comparison {
    let declared = rules.protocol;
    if let Some(reason) = rejected(live, shadow) {
        return Comparison::incomparable(declared, reason);
    }
    if declared == Protocol::Bytes
        || declared == Protocol::Auto
            && (is_binary(live.content_type) || is_binary(shadow.content_type))
    {
        return compare_bytes(live.body, shadow.body, None);
    }
    let (lv, sv) = match parse_pair(declared, live.body, shadow.body) {
        (Some(l), Some(s)) => (l, s),
        (l, s) => return unparsed(declared, live, shadow, (l.is_some(), s.is_some())),
    };
    let (protocol, reason) = match declared {
        Protocol::Auto => detect_pair(&lv, &sv),
        p => {
            if let Some(who) = failing((lv.fits(p), sv.fits(p))) {
                let note = StatusNote(live.status);
                return Comparison::incomparable(p, format!("{who} {}{note}", wanted(p)));
            }
            (p, None)
        }
    };
    compare_parsed(rules, protocol, reason, &lv, &sv)
}

/// Why a pair cannot be judged whatever its bodies say: one cut at the capture cap, or
/// different statuses.
fn rejected(live: &Response<'_>, shadow: &Response<'_>) -> Option<String> {
    match (live.truncated, shadow.truncated) {
        (true, true) => Some("body truncated (both)".into()),
        (true, false) => Some("body truncated (live)".into()),
        (false, true) => Some("body truncated (shadow)".into()),
        (false, false) if live.status != shadow.status => Some(format!(
            "status mismatch {} vs {}",
            live.status, shadow.status
        )),
        (false, false) => None,
    }
}

/// The status an incomparable pair's reason mentions: nothing for 2xx, ` (status 503)` otherwise.
#[derive(Clone, Copy)]
struct StatusNote(u16);

impl std::fmt::Display for StatusNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if (200..300).contains(&self.0) {
            Ok(())
        } else {
            write!(f, " (status {})", self.0)
        }
    }
}

/// Says which side of a pair fails a check (`live body is not`, `shadow body is not` or
/// `neither body is`), given whether each passes; `None` when both do.
fn failing(passed: (bool, bool)) -> Option<&'static str> {
    match passed {
        (true, true) => None,
        (false, true) => Some("live body is not"),
        (true, false) => Some("shadow body is not"),
        (false, false) => Some("neither body is"),
    }
}

/// Judges a pair whose bodies are not both JSON (`json`: whether each is): `auto` compares
/// them as bytes, a declared protocol finds them incomparable.
fn unparsed(
    declared: Protocol,
    live: &Response<'_>,
    shadow: &Response<'_>,
    json: (bool, bool),
) -> Comparison {
    match failing(json) {
        Some(who) if declared != Protocol::Auto => {
            let note = StatusNote(live.status);
            Comparison::incomparable(declared, format!("{who} JSON{note}"))
        }
        _ => {
            let reason = match json {
                (true, false) => Some("shadow body is not JSON, live body is; compared as bytes"),
                (false, true) => Some("live body is not JSON, shadow body is; compared as bytes"),
                _ => None,
            };
            compare_bytes(live.body, shadow.body, reason.map(str::to_owned))
        }
    }
}

/// Resolves `auto` for a parsed pair: what both look like, or `json` (with a note saying
/// why) when they look like different protocols.
fn detect_pair(lv: &Doc, sv: &Doc) -> (Protocol, Option<String>) {
    let (pl, ps) = (lv.detect(), sv.detect());
    if pl == ps {
        (pl, None)
    } else {
        (
            Protocol::Json,
            Some(format!(
                "live looks like {pl}, shadow like {ps}; compared as json"
            )),
        )
    }
}

/// Compares a parsed pair under its resolved `protocol` and gives the verdict.
fn compare_parsed(
    rules: &Rules,
    protocol: Protocol,
    reason: Option<String>,
    lv: &Doc,
    sv: &Doc,
) -> Comparison {
    // What the comparator borrows from, made before the context that holds the borrows.
    let (outputs, whole) = if protocol == Protocol::V2 {
        ((lv.outputs(), sv.outputs()), None)
    } else {
        ((Vec::new(), Vec::new()), Some((lv.whole(), sv.whole())))
    };
    let ignore = rules.ignore_patterns();
    let mut ctx = Ctx::new(
        rules.abs_tolerance,
        rules.rel_tolerance,
        &ignore,
        &rules.redact,
    );
    let root = ctx.ignore_state();
    let outputs = if root.exact {
        Vec::new() // the whole document is ignored
    } else {
        match (protocol, &whole) {
            (Protocol::V1, Some((l, s))) => v1::compare(&mut ctx, l, s),
            (_, Some((l, s))) => {
                json::diff(&mut ctx, l, s, root.deeper);
                Vec::new()
            }
            (_, None) => v2::compare(&mut ctx, &outputs.0, &outputs.1),
        }
    };
    Comparison {
        outcome: if ctx.total == 0 {
            Outcome::Agree
        } else {
            Outcome::Disagree
        },
        protocol,
        reason,
        differences_total: ctx.total,
        differences: ctx.list,
        outputs,
    }
}

/// A parsed body: a V2 response's outputs alone, or the whole document.
enum Doc {
    Outputs(Vec<V2Output>),
    Whole(Value),
}

impl Doc {
    /// The V2 outputs (of a document that looks like a V2 response).
    fn outputs(&self) -> Vec<wire::v2::Output<'_>> {
        match self {
            Doc::Outputs(outs) => wire::v2::Output::of_parsed(outs),
            Doc::Whole(v) => wire::v2::Output::of_value(v),
        }
    }

    /// The document as JSON; outputs parsed alone stand in an object of their own.
    fn whole(&self) -> Cow<'_, Value> {
        match self {
            Doc::Whole(v) => Cow::Borrowed(v),
            Doc::Outputs(outs) => {
                let outs = outs.iter().map(V2Output::to_value).collect();
                Cow::Owned(serde_json::json!({ "outputs": Value::Array(outs) }))
            }
        }
    }

    /// Tells whether the body is what the declared `protocol` compares.
    fn fits(&self, protocol: Protocol) -> bool {
        match (protocol, self) {
            (Protocol::V2, Doc::Outputs(_)) => true,
            (Protocol::V2, Doc::Whole(v)) => wire::v2::looks_like(v, false),
            (Protocol::V1, Doc::Whole(v)) => wire::v1::looks_like(v),
            (Protocol::V1, Doc::Outputs(_)) => false, // not parsed this way for V1
            _ => true,
        }
    }

    /// Resolves `auto` for one parsed body.
    fn detect(&self) -> Protocol {
        match self {
            // Parsed alone only when every output has data (see `parse_pair`).
            Doc::Outputs(_) => Protocol::V2,
            Doc::Whole(v) => detect_answer(v),
        }
    }
}

/// Parses both bodies. A V2 comparison reads only `outputs`, so when the pair is V2 (declared,
/// or under `auto` both bodies look like it) only that member is built; a pair that is
/// compared otherwise is parsed whole.
fn parse_pair(declared: Protocol, live: &[u8], shadow: &[u8]) -> (Option<Doc>, Option<Doc>) {
    let outputs = |body: &[u8]| parse_outputs(body).map(Doc::Outputs);
    let whole = |body: &[u8]| parse(body).map(Doc::Whole);
    let outputs_with_data = |body: &[u8]| {
        // A cheap look first, so JSON and V1 bodies are not parsed twice.
        memchr::memmem::find(body, b"\"outputs\"")?;
        parse_outputs(body)
            .filter(|outs| outs.iter().all(|o| o.data.is_some()))
            .map(Doc::Outputs)
    };
    match declared {
        Protocol::V2 => (
            outputs(live).or_else(|| whole(live)),
            outputs(shadow).or_else(|| whole(shadow)),
        ),
        Protocol::Auto => match (outputs_with_data(live), outputs_with_data(shadow)) {
            (Some(l), Some(s)) => (Some(l), Some(s)),
            _ => (whole(live), whole(shadow)),
        },
        _ => (whole(live), whole(shadow)),
    }
}

/// Tells whether a content type announces a body that is certainly not JSON.
fn is_binary(ct: Option<&str>) -> bool {
    const BINARY: [&str; 7] = [
        "application/octet-stream",
        "application/x-protobuf",
        "application/protobuf",
        "application/grpc",
        "image/",
        "audio/",
        "video/",
    ];
    let Some(ct) = ct else { return false };
    let ct = ct.trim_start().as_bytes();
    BINARY
        .iter()
        .any(|p| ct.len() >= p.len() && ct[..p.len()].eq_ignore_ascii_case(p.as_bytes()))
}

/// Compares two bodies byte for byte.
fn compare_bytes(live: &[u8], shadow: &[u8], reason: Option<String>) -> Comparison {
    let mut differences = Vec::new();
    let equal = live == shadow;
    if !equal {
        let at = live
            .iter()
            .zip(shadow)
            .position(|(a, b)| a != b)
            .unwrap_or(live.len().min(shadow.len()));
        let mut ctx = Ctx::new(0.0, 0.0, &[], &[]);
        ctx.record(
            "bytes",
            Shown::Bytes { body: live, at },
            Shown::Bytes { body: shadow, at },
        );
        differences = ctx.list;
    }
    Comparison {
        outcome: if equal {
            Outcome::Agree
        } else {
            Outcome::Disagree
        },
        protocol: Protocol::Bytes,
        reason,
        differences_total: differences.len(),
        differences,
        outputs: Vec::new(),
    }
}

/// The most of one body a report shows: a few KiB a side, never a whole answer.
pub const MAX_EXCERPT: usize = 4096;

/// Prepares a body for reporting: JSON with the redact pointers' values replaced by
/// `"[redacted]"`, whole when its text fits in [`MAX_EXCERPT`] bytes, else that text cut
/// there (on a character boundary) as a string.
///
/// A body that is not JSON is shown by its size only: redaction cannot reach inside it,
/// so none of its bytes are. The whole-document pointer `""` redacts everything.
pub fn redact(rules: &Rules, body: &[u8]) -> Value {
    let Some(mut v) = parse(body) else {
        return Value::String(format!("({} bytes, not JSON: not shown)", body.len()));
    };
    for p in pointer::compile(&rules.redact) {
        pointer::redact_in(&mut v, &p.segs);
    }
    let text = v.to_string();
    if text.len() <= MAX_EXCERPT {
        return v;
    }
    let mut n = MAX_EXCERPT;
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    Value::String(format!(
        "{}… (cut: {} bytes of JSON in all)",
        &text[..n],
        text.len()
    ))
}

#[cfg(test)]
mod tests;
