//! What flowed through one backend: per feature and for the outputs, in bounded memory.
//!
//! - Numbers go into a [`Sketch`] (DDSketch, from `sketches-ddsketch`): a
//!   quantile it reports is within [`RELATIVE_ACCURACY`] (1 %) of the true
//!   value at that rank, for every value whose magnitude lies within
//!   [`MAX_BINS`] bins (≈ 8.9 decades) of the largest magnitude seen on its
//!   side of zero (smaller ones are merged into the lowest bin); magnitudes
//!   below 10⁻⁹ count as 0. Sketches merge exactly: a merged sketch is the
//!   sketch of all the values. One sketch holds at most [`MAX_BINS`] 8-byte
//!   counters per sign, in vectors the allocator may round up to
//!   [`Sketch::MAX_HEAP_BYTES`] in all.
//! - Categories go into a [`TopK`] (Space-Saving): [`TOP_CAPACITY`]
//!   counters; a value whose true count exceeds `n / TOP_CAPACITY` is always
//!   among them, and a reported count exceeds the true one by at most its
//!   `error` (≤ `n / TOP_CAPACITY`). Values are cut to [`MAX_VALUE_BYTES`].
//! - Missing values are counted exactly, by kind: `null`, NaN (a JSON `NaN`
//!   token or a string such as `"nan"`) and absent (the row lacks the
//!   feature). A value the feature's kind cannot use (an object, an array, a
//!   string in a numeric feature, an infinity) is counted as `invalid`.

use super::features::{Cell, Feature};
use crate::config::FeatureKind as Kind;
use crate::wire::json;
use crate::wire::{Answer, Payload};
use serde_json::Value;
use sketches_ddsketch::{Config, DDSketch};
use std::borrow::Cow;

/// Relative accuracy of every quantile a [`Sketch`] reports.
pub const RELATIVE_ACCURACY: f64 = 0.01;
/// Most bins a [`Sketch`] keeps on each side of zero.
const MAX_BINS: u32 = 1024;
/// Magnitudes below this count as zero in a [`Sketch`].
const MIN_MAGNITUDE: f64 = 1e-9;
/// Counters a [`TopK`] keeps.
pub const TOP_CAPACITY: usize = 32;
/// Values a report shows per categorical feature (and for output labels).
pub const TOP_SHOWN: usize = 10;
/// Longest category value kept, in bytes (longer ones are cut on a character boundary).
const MAX_VALUE_BYTES: usize = 64;

// === impl Sketch ===

/// A mergeable quantile sketch of numbers with 1 % relative accuracy (see the module docs).
#[derive(Clone)]
pub struct Sketch(DDSketch);

impl Sketch {
    /// The most heap one sketch can hold: two stores of [`MAX_BINS`] counters of 8 bytes,
    /// each in a vector whose capacity can reach 1.75 times that when it grows in the
    /// store's 128-bin steps.
    pub const MAX_HEAP_BYTES: usize = 2 * (MAX_BINS as usize * 7 / 4) * 8;

    /// An empty sketch.
    pub fn new() -> Sketch {
        Sketch(DDSketch::new(Config::new(
            RELATIVE_ACCURACY,
            MAX_BINS,
            MIN_MAGNITUDE,
        )))
    }

    /// Adds a value; NaN and infinities are left out.
    pub fn add(&mut self, v: f64) {
        if v.is_finite() {
            self.0.add(v);
        }
    }

    /// How many values were added.
    pub fn count(&self) -> u64 {
        self.0.count() as u64
    }

    /// The value at quantile `q` (0 = the minimum, 1 = the maximum); `None` when empty or `q`
    /// is outside `[0, 1]`. Within the smallest and largest values seen: the sketch answers
    /// with a bin's representative value, which may lie just outside them.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let v = self.0.quantile(q).ok().flatten()?;
        Some(v.clamp(self.0.min()?, self.0.max()?))
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Sketch) {
        // Both are built by `new` with the same configuration, so merging cannot fail.
        let _ = self.0.merge(&other.0);
    }

    /// The usual quantiles, the extremes and the mean; `None` when empty.
    pub fn summary(&self) -> Option<Quantiles> {
        let q = |p| self.quantile(p);
        Some(Quantiles {
            min: self.0.min()?,
            p01: q(0.01)?,
            p05: q(0.05)?,
            p25: q(0.25)?,
            p50: q(0.5)?,
            p75: q(0.75)?,
            p95: q(0.95)?,
            p99: q(0.99)?,
            max: self.0.max()?,
            mean: self.0.sum()? / self.0.count() as f64,
        })
    }
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch::new()
    }
}

impl std::fmt::Debug for Sketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sketch")
            .field("count", &self.count())
            .field("bins", &self.0.length())
            .finish()
    }
}

/// A distribution as a report shows it: extremes and mean exact, quantiles within 1 %.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Quantiles {
    pub min: f64,
    pub p01: f64,
    pub p05: f64,
    pub p25: f64,
    pub p50: f64,
    pub p75: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

// === impl TopK ===

/// The most frequent values of a categorical feature, in bounded memory (Space-Saving).
#[derive(Debug, Clone, Default)]
pub struct TopK {
    counters: Vec<Counter>,
    total: u64,
}

#[derive(Debug, Clone)]
struct Counter {
    value: Box<str>,
    count: u64,
    /// How much of `count` may belong to values this counter held before.
    error: u64,
}

/// One of the most frequent values: its count is at least `count - error` and at most `count`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopValue {
    pub value: String,
    pub count: u64,
    pub error: u64,
}

impl TopK {
    /// Counts one occurrence of `value` (cut to [`MAX_VALUE_BYTES`]).
    pub fn add(&mut self, value: &str) {
        self.total += 1;
        let value = cut(value);
        if let Some(c) = self.counters.iter_mut().find(|c| *c.value == *value) {
            c.count += 1;
            return;
        }
        if self.counters.len() < TOP_CAPACITY {
            self.counters.push(Counter {
                value: value.into(),
                count: 1,
                error: 0,
            });
            return;
        }
        // Full: the least counted value gives its counter up, its count kept as error.
        if let Some(min) = self.counters.iter_mut().min_by_key(|c| c.count) {
            *min = Counter {
                value: value.into(),
                count: min.count + 1,
                error: min.count,
            };
        }
    }

    /// How many values were counted.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The `n` most counted values, most first (ties by value).
    pub fn top(&self, n: usize) -> Vec<TopValue> {
        let mut v: Vec<&Counter> = self.counters.iter().collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        v.into_iter()
            .take(n)
            .map(|c| TopValue {
                value: c.value.to_string(),
                count: c.count,
                error: c.error,
            })
            .collect()
    }

    /// Adds the counts of `other`, keeping the error bound: a value missing from a full
    /// summary may have had up to that summary's smallest count there.
    pub fn merge(&mut self, other: &TopK) {
        let floor = |t: &TopK| {
            if t.counters.len() < TOP_CAPACITY {
                0
            } else {
                t.counters.iter().map(|c| c.count).min().unwrap_or(0)
            }
        };
        let (mine, theirs) = (floor(self), floor(other));
        for c in &mut self.counters {
            if !other.counters.iter().any(|o| o.value == c.value) {
                c.count += theirs;
                c.error += theirs;
            }
        }
        for o in &other.counters {
            match self.counters.iter_mut().find(|c| c.value == o.value) {
                Some(c) => {
                    c.count += o.count;
                    c.error += o.error;
                }
                None => self.counters.push(Counter {
                    value: o.value.clone(),
                    count: o.count + mine,
                    error: o.error + mine,
                }),
            }
        }
        self.counters.sort_by_key(|c| std::cmp::Reverse(c.count));
        self.counters.truncate(TOP_CAPACITY);
        self.counters.shrink_to(TOP_CAPACITY);
        self.total += other.total;
    }
}

/// `value` cut to at most [`MAX_VALUE_BYTES`] on a character boundary.
fn cut(value: &str) -> &str {
    if value.len() <= MAX_VALUE_BYTES {
        return value;
    }
    let mut n = MAX_VALUE_BYTES;
    while !value.is_char_boundary(n) {
        n -= 1;
    }
    &value[..n]
}

// === reading cells ===

/// A cell as the statistics and the drift windows read it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Read<'a> {
    Null,
    NaN,
    Absent,
    Number(f64),
    Text(Cow<'a, str>),
    /// An object or an array: no kind of feature uses it.
    Other,
}

/// Reads a cell: JSON numbers (and spelled-out non-finites) as numbers, strings and
/// booleans as text.
pub(crate) fn read<'a>(cell: &Cell<'a>) -> Read<'a> {
    let v = match cell {
        Cell::Absent => return Read::Absent,
        Cell::Number(f) if f.is_nan() => return Read::NaN,
        Cell::Number(f) => return Read::Number(*f),
        Cell::Value(v) => *v,
    };
    match v {
        Value::Null => Read::Null,
        Value::Number(_) => json::num(v).map_or(Read::Other, Read::Number),
        Value::String(s) => match json::special_float(s) {
            Some(f) if f.is_nan() => Read::NaN,
            Some(f) => Read::Number(f),
            None => Read::Text(Cow::Borrowed(s)),
        },
        Value::Bool(b) => Read::Text(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Array(_) | Value::Object(_) => Read::Other,
    }
}

/// The kind a feature takes from its first usable value.
pub(crate) fn infer(read: &Read<'_>) -> Option<Kind> {
    match read {
        Read::Number(_) => Some(Kind::Numeric),
        Read::Text(_) => Some(Kind::Categorical),
        _ => None,
    }
}

/// A value as a categorical feature counts it: text as is, a number as JSON writes it.
pub(crate) fn category<'a>(read: &Read<'a>) -> Option<Cow<'a, str>> {
    match read {
        Read::Text(t) => Some(t.clone()),
        Read::Number(f) if f.is_finite() => Some(Cow::Owned(number_text(*f))),
        _ => None,
    }
}

/// A number as text, integers without a fraction (`2`, not `2.0`).
fn number_text(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

// === impl FeatureStats ===

/// Missing values of a feature, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Missing {
    /// JSON `null`.
    pub null: u64,
    /// NaN: the bare token, or a string such as `"NaN"`.
    pub nan: u64,
    /// The row lacks the feature.
    pub absent: u64,
}

impl Missing {
    /// All missing values.
    pub fn total(&self) -> u64 {
        self.null + self.nan + self.absent
    }
}

/// What one backend saw of one feature.
#[derive(Debug, Clone, Default)]
pub struct FeatureStats {
    /// Values kept (numbers in the sketch, or categories counted).
    pub count: u64,
    pub missing: Missing,
    /// Values the feature's kind cannot use.
    pub invalid: u64,
    values: Values,
}

#[derive(Debug, Clone, Default)]
enum Values {
    #[default]
    Empty,
    Numbers(Sketch),
    Categories(TopK),
}

impl FeatureStats {
    /// Counts one value of `feature`, fixing its kind from the first usable value.
    pub(crate) fn record(&mut self, feature: &mut Feature, read: &Read<'_>) {
        match read {
            Read::Null => return self.missing.null += 1,
            Read::NaN => return self.missing.nan += 1,
            Read::Absent => return self.missing.absent += 1,
            _ => {}
        }
        if feature.kind.is_none() {
            feature.kind = infer(read);
        }
        if feature.redacted {
            // Counted, never kept: whatever was kept before the feature was found
            // under a `redact` pointer is forgotten.
            self.values = Values::Empty;
            let usable = match (feature.kind, read) {
                (Some(Kind::Numeric), Read::Number(f)) => f.is_finite(),
                (Some(Kind::Categorical), Read::Text(_)) => true,
                (Some(Kind::Categorical), Read::Number(f)) => f.is_finite(),
                _ => false,
            };
            if usable {
                self.count += 1;
            } else {
                self.invalid += 1;
            }
            return;
        }
        let kept = match feature.kind {
            Some(Kind::Numeric) => match read {
                Read::Number(f) if f.is_finite() => {
                    self.numbers().add(*f);
                    true
                }
                _ => false,
            },
            Some(Kind::Categorical) => match category(read) {
                Some(c) => {
                    self.categories().add(&c);
                    true
                }
                None => false,
            },
            None => false,
        };
        if kept {
            self.count += 1;
        } else {
            self.invalid += 1;
        }
    }

    /// Counts `n` absent values at once.
    pub(crate) fn absent(&mut self, n: u64) {
        self.missing.absent += n;
    }

    fn numbers(&mut self) -> &mut Sketch {
        if !matches!(self.values, Values::Numbers(_)) {
            self.values = Values::Numbers(Sketch::new());
        }
        match &mut self.values {
            Values::Numbers(s) => s,
            _ => unreachable!("just set"),
        }
    }

    fn categories(&mut self) -> &mut TopK {
        if !matches!(self.values, Values::Categories(_)) {
            self.values = Values::Categories(TopK::default());
        }
        match &mut self.values {
            Values::Categories(t) => t,
            _ => unreachable!("just set"),
        }
    }

    /// The numeric values' sketch, if the feature is numeric and has values.
    pub fn sketch(&self) -> Option<&Sketch> {
        match &self.values {
            Values::Numbers(s) => Some(s),
            _ => None,
        }
    }

    /// The categorical values' counts, if the feature is categorical and has values.
    pub fn top(&self) -> Option<&TopK> {
        match &self.values {
            Values::Categories(t) => Some(t),
            _ => None,
        }
    }

    /// Adds everything `other` counted (the same feature, seen elsewhere).
    pub fn merge(&mut self, other: &FeatureStats) {
        self.count += other.count;
        self.invalid += other.invalid;
        self.missing.null += other.missing.null;
        self.missing.nan += other.missing.nan;
        self.missing.absent += other.missing.absent;
        match &other.values {
            Values::Empty => {}
            Values::Numbers(s) => self.numbers().merge(s),
            Values::Categories(t) => self.categories().merge(t),
        }
    }
}

// === impl OutputStats ===

/// What one backend's answers held.
#[derive(Debug, Clone, Default)]
pub struct OutputStats {
    /// Answers read (2xx, whole, JSON or an event stream).
    pub answers: u64,
    /// Answers with a status outside 2xx (not read).
    pub failed: u64,
    /// Answers cut at the tee's cap (not read).
    pub truncated: u64,
    /// 2xx answers that were neither JSON nor an event stream.
    pub unparseable: u64,
    /// Answers read that held no prediction at all.
    pub empty: u64,
    /// Predictions (rows) read.
    pub rows: u64,
    /// Rows (or OpenAI choice indexes) beyond what an answer can give, not read.
    pub over_cap: u64,
    /// Rows that predicted nothing (null).
    pub null: u64,
    /// Predicted labels (class mix, or OpenAI finish reasons).
    pub labels: TopK,
    /// Scores (top probability, regression value, or OpenAI completion length).
    pub scores: Sketch,
    /// A `redact` pointer reaches where the predictions are read: labels and scores are
    /// counted, not kept.
    pub redacted: bool,
}

impl OutputStats {
    /// Counts one exchange's answer and its predictions; `hidden`: their labels and
    /// scores are under a `redact` pointer, so they are counted, not kept.
    pub(crate) fn record(&mut self, payload: &Payload, hidden: bool) {
        if hidden && !self.redacted {
            self.redacted = true;
            self.labels = TopK::default();
            self.scores = Sketch::new();
        }
        match payload.answer {
            Answer::Failed(_) => return self.failed += 1,
            Answer::Truncated => return self.truncated += 1,
            Answer::Unparseable => return self.unparseable += 1,
            Answer::Json(_) | Answer::Events(_) => self.answers += 1,
        }
        if payload.predictions.is_empty() {
            self.empty += 1;
        }
        self.over_cap = self.over_cap.saturating_add(payload.over_cap as u64);
        for p in &payload.predictions {
            self.rows += 1;
            if p.is_null() {
                self.null += 1;
            }
            if self.redacted {
                continue;
            }
            if let Some(l) = &p.label {
                self.labels.add(l);
            }
            if let Some(s) = p.score {
                self.scores.add(s);
            }
        }
    }
}

/// Everything one backend saw: per request, per feature (by the schema's index) and outputs.
#[derive(Debug, Clone, Default)]
pub struct BackendStats {
    /// Requests observed (sampled).
    pub requests: u64,
    /// Requests whose body was not JSON (or was truncated).
    pub unparsed: u64,
    /// Rows per request.
    pub rows: Sketch,
    /// Request body sizes in bytes.
    pub request_bytes: Sketch,
    /// Answer body sizes in bytes.
    pub answer_bytes: Sketch,
    /// Per feature, by the route's feature index.
    pub features: Vec<FeatureStats>,
    pub outputs: OutputStats,
}
