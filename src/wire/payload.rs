//! An exchange's two bodies, parsed once into the form every observer reads.
//!
//! [`Payload::parse`] reads the request as JSON and the answer as JSON or as
//! a server-sent event stream (OpenAI-style streaming), resolves `auto` to
//! a protocol, and reads the answer's predictions: one [`Prediction`] per
//! row, a label and a score. The monitor then takes its features from
//! [`Payload::request`]; the prediction log and the feedback join read the
//! same parsed values, so no body is parsed twice.
//!
//! What a prediction is, per protocol:
//!
//! - **V2**: the first output whose datatype is `BYTES`, `BOOL`, `INT*` or
//!   `UINT*` with one value per row gives the label; the first floating
//!   output gives the score: for a `[rows, k]` tensor (k > 1) the row's
//!   largest value, whose index is the label when no label output exists;
//!   for one value per row, that value.
//! - **V1** (`predictions`, or `outputs`): a row that is an integer, a
//!   string or a boolean is a label; a float is a score; an array of
//!   numbers gives its argmax (label) and maximum (score); an object gives
//!   its `label`/`class`/`classes`/`predicted_label`/`prediction` member
//!   and its `score`/`scores`/`probability`/`probabilities`/`confidence`
//!   member. Columnar `outputs` (an object of named columns) are read
//!   row by row with the same names.
//! - **OpenAI**: one row per choice: the label is its `finish_reason`, the
//!   score the completion's length in characters (`message.content` or
//!   `text`; for a stream, the `delta` contents joined).
//! - **JSON**: none.
//!
//! A `null` row, or a NaN score with no label, is a null prediction.
//!
//! # Limits
//!
//! Every size here comes from the wire, so none is trusted: an answer gives at
//! most [`MAX_ROWS`] predictions (rows beyond are counted in
//! [`Payload::over_cap`], not read), an OpenAI choice `index` only places a
//! row among the choices the answer actually holds (an index at or beyond
//! them, or at or beyond [`MAX_ROWS`], is counted and left out), and a V2
//! tensor's declared `shape` is multiplied with checked arithmetic: one that
//! overflows, or that does not give the number of values in `data`, is not
//! believed, and the data is read by its nesting. A tensor's rows are at
//! most as many as its values, so a declared shape never sizes an allocation.

use super::protocol::Protocol;
use super::{json, tensor, v1, v2};
use serde_json::Value;

/// The largest request or answer body read into these forms: a body declared larger is
/// not observed, and a copy that grows past it is given up (the exchange counts as
/// unparseable). Large tensors (an image's pixels) are no features to watch, and
/// parsing them would cost more than the request.
pub const MAX_BODY: usize = 1 << 20;

/// Rows (predictions) one answer gives at most; further rows are counted in
/// [`Payload::over_cap`], not kept. With 40 bytes a row and labels no longer than the
/// body, an answer's predictions take at most about 2.6 MiB besides their labels.
pub const MAX_ROWS: usize = 1 << 16;

/// One request and its answer, borrowed from the tap's buffers, as observers receive it.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    /// The route that took the request.
    pub route: &'a str,
    /// The backend that answered.
    pub backend: &'a str,
    /// The request's path (a hint for `auto`: `/v2/models/m/infer`, `:predict`, `/chat/completions`).
    pub path: &'a str,
    /// The answer's status code; only a 2xx answer is read for predictions.
    pub status: u16,
    /// The request body as buffered.
    pub request: &'a [u8],
    /// The request body was cut at the buffer's cap: it is not read.
    pub request_truncated: bool,
    /// The answer body as teed.
    pub answer: &'a [u8],
    /// The answer body was cut at the tee's cap: it is not read.
    pub answer_truncated: bool,
}

/// What became of an answer body.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A JSON document.
    Json(Value),
    /// A server-sent event stream: the JSON of each `data:` line, in order (`[DONE]` left out).
    Events(Vec<Value>),
    /// The status was not 2xx: the body is not read.
    Failed(u16),
    /// The body was cut at the tee's cap: not read.
    Truncated,
    /// Neither JSON nor an event stream.
    Unparseable,
}

/// One row of an answer, as the monitor and the feedback join read it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Prediction {
    /// The predicted class (or OpenAI `finish_reason`), as text.
    pub label: Option<String>,
    /// The score (top probability, regression value, or OpenAI completion length in characters).
    pub score: Option<f64>,
}

impl Prediction {
    /// Tells whether the row predicted nothing: neither a label nor a score.
    pub fn is_null(&self) -> bool {
        self.label.is_none() && self.score.is_none()
    }
}

/// An exchange's bodies parsed once: what every observer reads.
#[derive(Debug, Clone)]
pub struct Payload {
    /// The protocol the exchange was read under (`auto` resolved; `json` when nothing else fits).
    pub protocol: Protocol,
    /// The request as JSON; `None` when it is not JSON or was truncated.
    pub request: Option<Value>,
    /// The answer.
    pub answer: Answer,
    /// The answer's rows (empty when the answer was not read or predicted nothing).
    pub predictions: Vec<Prediction>,
    /// Size of the request body in bytes.
    pub request_bytes: usize,
    /// Size of the answer body in bytes.
    pub answer_bytes: usize,
    /// Rows (or OpenAI choice indexes) of the answer beyond what it can give: past
    /// [`MAX_ROWS`], or an index past the choices the answer holds; counted, not read.
    pub over_cap: usize,
}

impl Payload {
    /// Parses an exchange's bodies under the `declared` protocol (`Auto` detects it).
    ///
    /// # Examples
    ///
    /// ```
    /// use switchyard::wire::{Exchange, Payload, Protocol};
    ///
    /// let exchange = Exchange {
    ///     route: "default",
    ///     backend: "blue",
    ///     path: "/v2/models/iris/infer",
    ///     status: 200,
    ///     request: br#"{"inputs":[{"name":"input-0","shape":[1,4],"datatype":"FP32","data":[[5.1,3.5,1.4,0.2]]}]}"#,
    ///     request_truncated: false,
    ///     answer: br#"{"model_name":"iris","outputs":[{"name":"predict","shape":[1,1],"datatype":"INT64","data":[0]}]}"#,
    ///     answer_truncated: false,
    /// };
    /// let payload = Payload::parse(&exchange, Protocol::Auto);
    /// assert_eq!(payload.protocol, Protocol::V2);
    /// assert_eq!(payload.predictions[0].label.as_deref(), Some("0"));
    /// ```
    pub fn parse(exchange: &Exchange<'_>, declared: Protocol) -> Payload {
        let request = if exchange.request_truncated {
            None
        } else {
            json::parse(exchange.request)
        };
        let answer = read_answer(exchange);
        let protocol = match declared {
            Protocol::Auto => detect(exchange.path, request.as_ref(), &answer),
            p => p,
        };
        Payload::of(request, answer, protocol, exchange)
    }

    /// The payload of another answer to the same request (a mirror's), under the protocol
    /// the first was read with: the request already parsed is moved in, not parsed again.
    pub fn with_answer(
        request: Option<Value>,
        protocol: Protocol,
        exchange: &Exchange<'_>,
    ) -> Payload {
        Payload::of(request, read_answer(exchange), protocol, exchange)
    }

    /// A payload of parsed bodies, its predictions read under `protocol`.
    fn of(
        request: Option<Value>,
        answer: Answer,
        protocol: Protocol,
        exchange: &Exchange<'_>,
    ) -> Payload {
        let (predictions, over_cap) = predictions(protocol, &answer);
        Payload {
            protocol,
            request,
            answer,
            predictions,
            request_bytes: exchange.request.len(),
            answer_bytes: exchange.answer.len(),
            over_cap,
        }
    }
}

/// Reads the answer body when the status is 2xx and the body whole.
fn read_answer(exchange: &Exchange<'_>) -> Answer {
    if !(200..300).contains(&exchange.status) {
        return Answer::Failed(exchange.status);
    }
    if exchange.answer_truncated {
        return Answer::Truncated;
    }
    if let Some(v) = json::parse(exchange.answer) {
        return Answer::Json(v);
    }
    match events(exchange.answer) {
        Some(evs) => Answer::Events(evs),
        None => Answer::Unparseable,
    }
}

/// The JSON events of a server-sent event stream; `None` when the body has no `data:` line of JSON.
fn events(body: &[u8]) -> Option<Vec<Value>> {
    let mut out = Vec::new();
    for line in body.split(|&b| b == b'\n') {
        let Some(data) = line.strip_prefix(b"data:") else {
            continue;
        };
        let data = data.trim_ascii();
        if data == b"[DONE]" {
            continue;
        }
        out.push(json::parse(data)?);
    }
    (!out.is_empty()).then_some(out)
}

/// Resolves `auto`: the path first, then the request's shape, then the answer's.
fn detect(path: &str, request: Option<&Value>, answer: &Answer) -> Protocol {
    let path = path.split('?').next().unwrap_or(path);
    if path.starts_with("/v2/") && path.ends_with("/infer") {
        return Protocol::V2;
    }
    if path.contains(":predict") {
        return Protocol::V1;
    }
    if path.ends_with("/completions") {
        return Protocol::OpenAi;
    }
    if let Some(p) = request.and_then(request_shape) {
        return p;
    }
    match answer {
        Answer::Json(v) if v2::looks_like(v, true) => Protocol::V2,
        Answer::Json(v) if v.get("choices").is_some() => Protocol::OpenAi,
        Answer::Json(v) if v.is_object() && v1::looks_like(v) => Protocol::V1,
        Answer::Events(_) => Protocol::OpenAi,
        _ => Protocol::Json,
    }
}

/// The protocol a request's shape says: V2 `inputs` (named tensors), V1 `instances` or
/// `inputs`, OpenAI `messages` or `prompt`.
fn request_shape(v: &Value) -> Option<Protocol> {
    let obj = v.as_object()?;
    if let Some(Value::Array(inputs)) = obj.get("inputs") {
        let named = |x: &Value| x.get("name").is_some_and(Value::is_string);
        if !inputs.is_empty() && inputs.iter().all(named) {
            return Some(Protocol::V2);
        }
    }
    if obj.contains_key("instances") || obj.contains_key("inputs") {
        return Some(Protocol::V1);
    }
    if obj.contains_key("messages") || obj.contains_key("prompt") {
        return Some(Protocol::OpenAi);
    }
    None
}

/// The rows an answer predicts, read under `protocol` (at most [`MAX_ROWS`]), and how
/// many more it named that were not read.
fn predictions(protocol: Protocol, answer: &Answer) -> (Vec<Prediction>, usize) {
    let (mut rows, mut over) = match (protocol, answer) {
        (Protocol::V2, Answer::Json(v)) => (v2_predictions(v), 0),
        (Protocol::V1, Answer::Json(v)) => (v1_predictions(v), 0),
        (Protocol::OpenAi, Answer::Json(v)) => openai_predictions(std::slice::from_ref(v)),
        (Protocol::OpenAi, Answer::Events(evs)) => openai_predictions(evs),
        _ => (Vec::new(), 0),
    };
    if rows.len() > MAX_ROWS {
        over = over.saturating_add(rows.len() - MAX_ROWS);
        rows.truncate(MAX_ROWS);
    }
    (rows, over)
}

/// Tells whether a `redact` pointer may reach where predictions are read in an answer of
/// `protocol`: V2 `outputs`, V1 `predictions` or `outputs`, an OpenAI choice's
/// `finish_reason`. A pointer anywhere below those members counts (a conservative
/// reading: what it hides might be a label or a score).
pub fn answer_redacted(redact: &[String], protocol: Protocol) -> bool {
    use super::pointer::{compile, PSeg};
    let lit = |k: &str| PSeg::Lit {
        key: k.to_owned(),
        index: None,
    };
    let places: Vec<Vec<PSeg>> = match protocol {
        Protocol::V2 => vec![vec![lit("outputs")]],
        Protocol::V1 => vec![vec![lit("predictions")], vec![lit("outputs")]],
        Protocol::OpenAi => vec![vec![lit("choices"), PSeg::Any, lit("finish_reason")]],
        Protocol::Auto | Protocol::Json | Protocol::Bytes => return false,
    };
    let overlaps = |p: &[PSeg], place: &[PSeg]| {
        p.iter().zip(place).all(|(a, b)| match (a, b) {
            (PSeg::Any, _) | (_, PSeg::Any) => true,
            (PSeg::Lit { key: a, .. }, PSeg::Lit { key: b, .. }) => a == b,
        })
    };
    compile(redact)
        .iter()
        .any(|p| places.iter().any(|place| overlaps(&p.segs, place)))
}

// === V2 ===

/// A V2 tensor's values (an input's or an output's), one row at a time.
pub(crate) struct Rows<'a> {
    leaves: Vec<&'a Value>,
    /// Values per row: the product of the dimensions after the first (1 for one
    /// dimension); never more than the values there are (at least 1).
    pub(crate) cols: usize,
}

impl<'a> Rows<'a> {
    /// Reads a tensor's `data` in rows: by the declared `shape` when it fits the data
    /// (its product, computed without overflow, is the number of values), else by the
    /// nesting.
    pub(crate) fn of(tensor: &'a Value) -> Option<Rows<'a>> {
        let data = tensor.get("data")?;
        let t = tensor::flatten(data);
        let leaves = leaves(&t.leaves);
        let declared = tensor
            .get("shape")
            .and_then(|s| declared_shape(s, leaves.len()));
        let dims = match declared {
            Some(d) => d,
            _ if t.regular => t.dims,
            _ => vec![leaves.len()],
        };
        let cols = match dims.as_slice() {
            [] | [_] => 1,
            [_, rest @ ..] => product(rest).unwrap_or(1).max(1),
        };
        // A shape with a zero dimension fits empty data whatever its other dimensions:
        // rows of no values have no columns to read.
        let cols = if leaves.is_empty() { 1 } else { cols };
        Some(Rows { leaves, cols })
    }

    /// How many rows (whole ones: the values always fill them).
    pub(crate) fn count(&self) -> usize {
        self.leaves.len() / self.cols
    }

    /// The rows, each a slice of exactly `cols` values.
    pub(crate) fn iter(&self) -> std::slice::ChunksExact<'_, &'a Value> {
        self.leaves.chunks_exact(self.cols)
    }
}

/// A declared `shape` when its dimensions are numbers whose product (without overflow)
/// is `values`; `None` otherwise, and then the shape is not believed.
fn declared_shape(shape: &Value, values: usize) -> Option<Vec<usize>> {
    let dims = shape.as_array()?;
    if dims.len() > MAX_DIMS {
        return None;
    }
    let dims: Vec<usize> = dims
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<_>>()?;
    (product(&dims)? == values).then_some(dims)
}

/// Dimensions a declared V2 `shape` may have to be believed (JSON nesting is limited
/// to 128 levels anyway, and tensors rarely have more than a handful).
pub const MAX_DIMS: usize = 32;

/// The product of dimensions, `None` when it overflows.
fn product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// The leaves of a flattened tensor as references, whatever their storage.
fn leaves<'a>(l: &tensor::Leaves<'a>) -> Vec<&'a Value> {
    match l {
        tensor::Leaves::Flat(s) => s.iter().collect(),
        tensor::Leaves::Nested(v) => v.clone(),
    }
}

fn v2_predictions(v: &Value) -> Vec<Prediction> {
    let Some(Value::Array(outputs)) = v.get("outputs") else {
        return Vec::new();
    };
    let mut labels: Option<Vec<Option<String>>> = None;
    let mut scored: Option<Vec<Prediction>> = None;
    for o in outputs {
        let Some(rows) = Rows::of(o) else { continue };
        let kind = v2::kind(o.get("datatype").and_then(Value::as_str));
        let label = matches!(kind, v2::Kind::Int | v2::Kind::Bool | v2::Kind::Bytes);
        if labels.is_none() && rows.cols == 1 && label {
            labels = Some(rows.iter().map(|r| label_text(r[0])).collect());
        } else if scored.is_none() && matches!(kind, v2::Kind::Float | v2::Kind::Unknown) {
            scored = Some(rows.iter().map(score_row).collect());
        }
    }
    let mut out = scored.unwrap_or_default();
    if let Some(labels) = labels {
        out.resize(out.len().max(labels.len()), Prediction::default());
        for (p, l) in out.iter_mut().zip(labels) {
            p.label = l;
        }
    }
    out
}

/// A row of scores: its maximum, with its index as the label when there are several.
fn score_row(row: &[&Value]) -> Prediction {
    match row {
        [one] => Prediction {
            label: None,
            score: score(one),
        },
        _ => match tensor::argmax(row) {
            Some(i) => Prediction {
                label: Some(i.to_string()),
                score: score(row[i]),
            },
            None => Prediction::default(),
        },
    }
}

// === V1 ===

/// Members of a row object (or columns of columnar `outputs`) that hold the label.
const LABEL_KEYS: [&str; 5] = ["label", "class", "classes", "predicted_label", "prediction"];
/// Members of a row object (or columns of columnar `outputs`) that hold the score.
const SCORE_KEYS: [&str; 5] = [
    "score",
    "scores",
    "probability",
    "probabilities",
    "confidence",
];

fn v1_predictions<'a>(v: &'a Value) -> Vec<Prediction> {
    match v.get("predictions").or_else(|| v.get("outputs")) {
        Some(Value::Array(rows)) => rows.iter().map(row_prediction).collect(),
        Some(Value::Object(columns)) => {
            let column = |keys: &[&str]| {
                keys.iter()
                    .find_map(|k| columns.get(*k))
                    .and_then(Value::as_array)
            };
            let (labels, scores) = (column(&LABEL_KEYS), column(&SCORE_KEYS));
            let n = labels.map_or(0, Vec::len).max(scores.map_or(0, Vec::len));
            (0..n)
                .map(|i| {
                    let at = |c: Option<&'a Vec<Value>>| c.and_then(|c| c.get(i));
                    object_prediction(at(labels), at(scores))
                })
                .collect()
        }
        Some(other) => vec![row_prediction(other)],
        None => Vec::new(),
    }
}

/// Reads one V1 row (see the module docs).
fn row_prediction(v: &Value) -> Prediction {
    match v {
        Value::Null => Prediction::default(),
        Value::Number(n) if n.is_f64() => Prediction {
            label: None,
            score: score(v),
        },
        Value::Array(items) => match items.as_slice() {
            [one] => row_prediction(one),
            _ if items.iter().all(|x| json::num(x).is_some()) => {
                let refs: Vec<&Value> = items.iter().collect();
                score_row(&refs)
            }
            _ => Prediction {
                label: items.first().and_then(label_text),
                score: None,
            },
        },
        Value::Object(m) => {
            let member = |keys: &[&str]| keys.iter().find_map(|k| m.get(*k));
            object_prediction(member(&LABEL_KEYS), member(&SCORE_KEYS))
        }
        Value::String(s) if json::special_float(s).is_some() => Prediction::default(),
        _ => Prediction {
            label: label_text(v),
            score: None,
        },
    }
}

/// A prediction from a label member and a score member (a number, or scores whose argmax labels the row).
fn object_prediction(label: Option<&Value>, score_v: Option<&Value>) -> Prediction {
    let mut p = match score_v {
        Some(Value::Array(s)) => score_row(&s.iter().collect::<Vec<_>>()),
        Some(s) => Prediction {
            label: None,
            score: score(s),
        },
        None => Prediction::default(),
    };
    if let Some(l) = label.map(|l| match l {
        Value::Array(a) => a.first().and_then(label_text),
        l => label_text(l),
    }) {
        p.label = l.or(p.label);
    }
    p
}

// === OpenAI ===

/// One row per choice, from a whole answer or from a stream's events (deltas joined by
/// `index`), and how many choices were left out.
///
/// A choice's `index` places it only among the choices the answer holds (a stream of
/// n choices holds at least n choice objects, so names indexes below that) and below
/// [`MAX_ROWS`]: a larger one is counted and left out, so an index never sizes an
/// allocation beyond the choices there are.
fn openai_predictions(events: &[Value]) -> (Vec<Prediction>, usize) {
    let choices_of = |ev: &'_ Value| match ev.get("choices") {
        Some(Value::Array(choices)) => choices.len(),
        _ => 0,
    };
    let bound = events.iter().map(choices_of).sum::<usize>().min(MAX_ROWS);
    let mut rows: Vec<(usize, Option<String>)> = Vec::new();
    let mut over = 0usize;
    for ev in events {
        let Some(Value::Array(choices)) = ev.get("choices") else {
            continue;
        };
        for (pos, c) in choices.iter().enumerate() {
            let i = match c.get("index").and_then(Value::as_u64) {
                None => Some(pos),
                Some(i) => usize::try_from(i).ok(),
            };
            let Some(i) = i.filter(|&i| i < bound) else {
                over = over.saturating_add(1);
                continue;
            };
            if i >= rows.len() {
                rows.resize(i + 1, (0, None));
            }
            let text = c
                .pointer("/message/content")
                .or_else(|| c.pointer("/delta/content"))
                .or_else(|| c.get("text"))
                .and_then(Value::as_str);
            rows[i].0 = rows[i]
                .0
                .saturating_add(text.map_or(0, |t| t.chars().count()));
            if let Some(r) = c.get("finish_reason").and_then(Value::as_str) {
                rows[i].1 = Some(r.to_owned());
            }
        }
    }
    let rows = rows
        .into_iter()
        .map(|(chars, reason)| Prediction {
            label: reason,
            score: Some(chars as f64),
        })
        .collect();
    (rows, over)
}

// === values ===

/// A label as text: a string as is, a number or boolean as JSON writes it; `None` for null.
fn label_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
        _ => None,
    }
}

/// A score: a finite number (or a spelled-out infinity); NaN and non-numbers are none.
fn score(v: &Value) -> Option<f64> {
    json::num(v).filter(|f| !f.is_nan())
}
