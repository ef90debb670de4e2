//! Fuzz target: the comparator (`switchyard::compare::compare`, V2, V1, JSON and bytes)
//! and redaction (`switchyard::compare::redact`).
//!
//! Inputs are arbitrary bytes, byte-level mutations of the seed corpus in
//! `tests/fuzz/corpus/compare/`, and structured V2/V1/JSON documents drawn from
//! strategies (nested and ragged tensors, NaN and infinities as bare tokens and as
//! strings, huge and tiny numbers, deep nesting around serde_json's limit), under rules
//! that are valid or built by hand with bad pointers and tolerances.
//!
//! Properties:
//! - nothing panics, and a comparison is self-consistent (outcome against the count of
//!   differences, the kept list bounded, per-output statistics in range);
//! - a body compared with itself never disagrees, and agrees under `auto`, `json` and
//!   `bytes`;
//! - without ignore rules the outcome, the resolved protocol and the number of
//!   differences do not depend on which side is live (the comparison is symmetric by
//!   design: missing/extra and live/shadow are mirror images; the one asymmetry is that
//!   ignore masks inside tensor data are computed from the live side's nesting);
//! - a value at a redacted pointer shows neither in [`redact`]'s output nor in any
//!   difference (pointers literal, with `*`, or naming V2 outputs), under every protocol
//!   and content type, also when the other side is not JSON and holds a secret itself;
//! - [`redact`] of a body that is not JSON shows none of its bytes, only its size;
//!   a JSON body comes back whole up to 4 KiB of text.

use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{Map, Number, Value};
use switchyard::compare::{
    compare, redact, Comparison, Outcome, Response, Rules, MAX_DIFFERENCES, MAX_EXCERPT,
};
use switchyard::wire::Protocol;

// === seeds ===

fn seeds() -> &'static [(String, Vec<u8>)] {
    static SEEDS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let all = super::corpus("tests/fuzz/corpus/compare", &["json", "txt"]);
        assert!(all.len() >= 10, "the compare corpus is missing");
        all
    })
}

/// Tokens spliced into bodies by the byte-level mutations.
const TOKENS: &[&str] = &[
    "NaN",
    "Infinity",
    "-Infinity",
    "\"NaN\"",
    "\"-inf\"",
    "null",
    "1e400",
    "-0",
    "18446744073709551616",
    "\"outputs\"",
    "\"predictions\"",
    "\"name\"",
    "\"data\"",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "\"",
    "\\",
    "\\u0000",
    "\\ud800",
    "\u{feff}",
];

fn mutated_seed() -> BoxedStrategy<Vec<u8>> {
    crate::mutate::mutated(seeds(), TOKENS)
}

// === documents ===

const NAMES: &[&str] = &[
    "predict",
    "probabilities",
    "labels",
    "embedding",
    "0",
    "1",
    "a/b",
    "~x",
    "",
];
const DATATYPES: &[&str] = &[
    "FP32", "FP64", "FP16", "BF16", "INT64", "INT8", "UINT8", "BOOL", "BYTES", "fp32", "",
];
const KEYS: &[&str] = &[
    "outputs",
    "predictions",
    "name",
    "data",
    "shape",
    "datatype",
    "parameters",
    "id",
    "model_name",
    "error",
    "0",
    "01",
    "a/b",
    "~",
    "",
];
const SPECIALS: &[&str] = &[
    "NaN",
    "nan",
    "-NaN",
    "Infinity",
    "-Infinity",
    "inf",
    "-inf",
    "+inf",
    "INF",
];
const FLOATS: &[f64] = &[
    0.0,
    -0.0,
    0.5,
    1.0,
    1e-7,
    1e16 + 1.0,
    1e308,
    -1e308,
    f64::MAX,
    f64::MIN_POSITIVE,
    5e-324,
];

fn number() -> BoxedStrategy<Value> {
    prop_oneof![
        (0..10i64).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(FLOATS).prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
        {
            use prop::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
            (POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO)
                .prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number))
        },
        (-1.0f64..1.0).prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
    ]
    .boxed()
}

fn label() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => "[a-z]{0,6}".prop_map(Value::String),
        1 => any::<String>().prop_map(Value::String),
    ]
    .boxed()
}

fn special() -> impl Strategy<Value = Value> {
    prop::sample::select(SPECIALS).prop_map(|s| Value::String(s.to_owned()))
}

fn leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => number(),
        1 => special(),
        2 => label(),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(Value::Null),
    ]
    .boxed()
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => "[a-z]{1,4}",
    ]
}

fn json_value() -> BoxedStrategy<Value> {
    leaf()
        .prop_recursive(5, 48, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(key(), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
        .boxed()
}

/// Nests `leaves` row-major into `dims` (no dims: the single leaf itself).
fn nest(dims: &[usize], leaves: &mut std::vec::IntoIter<Value>) -> Value {
    match dims.split_first() {
        None => leaves.next().unwrap_or(Value::Null),
        Some((&n, rest)) => Value::Array((0..n).map(|_| nest(rest, leaves)).collect()),
    }
}

/// Leaves of one kind: numbers, labels, or anything.
fn elements(n: usize) -> impl Strategy<Value = Vec<Value>> {
    prop_oneof![
        3 => prop::collection::vec(number(), n),
        1 => prop::collection::vec(prop_oneof![4 => number(), 1 => special()], n),
        1 => prop::collection::vec(label(), n),
        1 => prop::collection::vec(leaf(), n),
    ]
}

/// A tensor: regular nested data with its dims, or a ragged one (no dims).
fn tensor() -> BoxedStrategy<(Value, Option<Vec<usize>>)> {
    prop_oneof![
        4 => prop::collection::vec(0..4usize, 0..=3).prop_flat_map(|dims| {
            let n = dims.iter().product::<usize>();
            (Just(dims), elements(n)).prop_map(|(dims, leaves)| {
                let data = nest(&dims, &mut leaves.into_iter());
                (data, Some(dims))
            })
        }),
        1 => prop::collection::vec(prop::collection::vec(leaf(), 0..4), 0..4).prop_map(|rows| {
            let data = Value::Array(rows.into_iter().map(Value::Array).collect());
            (data, None)
        }),
        1 => prop::collection::vec(prop_oneof![leaf(), prop::collection::vec(leaf(), 0..3).prop_map(Value::Array)], 0..5)
            .prop_map(|items| (Value::Array(items), None)),
    ]
    .boxed()
}

fn v2_output() -> BoxedStrategy<Value> {
    (
        prop::sample::select(NAMES),
        prop::option::weighted(0.9, prop::sample::select(DATATYPES)),
        tensor(),
        0..4u8,
        prop::option::of(json_value()),
        prop::collection::vec(0..5u64, 0..3),
    )
        .prop_map(
            |(name, datatype, (data, dims), shape_kind, parameters, other)| {
                let mut o = Map::new();
                o.insert("name".into(), Value::from(name));
                if let Some(dt) = datatype {
                    o.insert("datatype".into(), Value::from(dt));
                }
                match (shape_kind, dims) {
                    (0 | 1, Some(d)) => {
                        o.insert("shape".into(), Value::from(d));
                    }
                    (2, _) => {
                        o.insert("shape".into(), Value::from(other));
                    }
                    _ => {}
                }
                if let Some(p) = parameters {
                    o.insert("parameters".into(), p);
                }
                if shape_kind != 1 || name.is_empty() {
                    o.insert("data".into(), data);
                }
                Value::Object(o)
            },
        )
        .boxed()
}

fn v2_doc() -> BoxedStrategy<Value> {
    (
        prop::collection::vec(v2_output(), 0..4),
        prop::option::of(label()),
        prop::option::of(json_value()),
    )
        .prop_map(|(outputs, id, parameters)| {
            let mut d = Map::new();
            d.insert("model_name".into(), Value::from("m"));
            if let Some(id) = id {
                d.insert("id".into(), id);
            }
            if let Some(p) = parameters {
                d.insert("parameters".into(), p);
            }
            d.insert("outputs".into(), Value::Array(outputs));
            Value::Object(d)
        })
        .boxed()
}

fn v1_doc() -> BoxedStrategy<Value> {
    prop_oneof![
        tensor().prop_map(|(t, _)| serde_json::json!({ "predictions": t })),
        prop::collection::vec(
            prop::collection::btree_map(key(), leaf(), 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            0..4
        )
        .prop_map(|rows| serde_json::json!({ "predictions": rows })),
        tensor().prop_map(|(t, _)| serde_json::json!({ "outputs": t })),
        prop::collection::btree_map(key(), tensor().prop_map(|(t, _)| t), 0..4)
            .prop_map(|m| serde_json::json!({ "outputs": Value::Object(m.into_iter().collect()) })),
    ]
    .boxed()
}

/// Any structured document: V2, V1 or plain JSON.
fn doc() -> BoxedStrategy<Value> {
    prop_oneof![3 => v2_doc(), 2 => v1_doc(), 2 => json_value()].boxed()
}

/// A document as a body, with the string non-finites as bare Python tokens when `bare`.
fn to_body(v: &Value, bare: bool) -> Vec<u8> {
    let text = serde_json::to_string(v).unwrap();
    if !bare {
        return text.into_bytes();
    }
    text.replace("\"NaN\"", "NaN")
        .replace("\"-Infinity\"", "-Infinity")
        .replace("\"Infinity\"", "Infinity")
        .into_bytes()
}

/// Deep nesting around serde_json's recursion limit (128).
fn deep() -> impl Strategy<Value = Vec<u8>> {
    (100..140usize, any::<bool>()).prop_map(|(n, objects)| {
        if objects {
            format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n)).into_bytes()
        } else {
            format!("{}1{}", "[".repeat(n), "]".repeat(n)).into_bytes()
        }
    })
}

/// Any body: bytes, a mutated seed, a generated document, or deep nesting.
fn body() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..64),
        3 => mutated_seed(),
        4 => (doc(), any::<bool>()).prop_map(|(d, bare)| to_body(&d, bare)),
        1 => deep(),
    ]
    .boxed()
}

// === edits of a document (the shadow answer of a live one) ===

/// One step of a location in a document.
#[derive(Debug, Clone, PartialEq)]
enum P {
    Key(String),
    Index(usize),
}

/// Every location in `v` (the root first), in document order.
fn paths(v: &Value) -> Vec<Vec<P>> {
    fn walk(v: &Value, here: &mut Vec<P>, out: &mut Vec<Vec<P>>) {
        out.push(here.clone());
        match v {
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    here.push(P::Index(i));
                    walk(x, here, out);
                    here.pop();
                }
            }
            Value::Object(m) => {
                for (k, x) in m {
                    here.push(P::Key(k.clone()));
                    walk(x, here, out);
                    here.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn get_mut<'v>(v: &'v mut Value, path: &[P]) -> Option<&'v mut Value> {
    path.iter().try_fold(v, |v, p| match (v, p) {
        (Value::Object(m), P::Key(k)) => m.get_mut(k),
        (Value::Array(a), P::Index(i)) => a.get_mut(*i),
        _ => None,
    })
}

#[derive(Debug, Clone)]
enum Edit {
    /// Scales a number by `1 + f`.
    Nudge(f64),
    Replace(Value),
    Delete,
    Wrap,
    SwapWithFirst,
}

fn edit() -> impl Strategy<Value = (prop::sample::Index, Edit)> {
    (
        any::<prop::sample::Index>(),
        prop_oneof![
            3 => prop::sample::select(&[1e-9, -1e-7, 1e-5, 1e-3, 0.5, -2.0][..]).prop_map(Edit::Nudge),
            2 => leaf().prop_map(Edit::Replace),
            1 => Just(Edit::Delete),
            1 => Just(Edit::Wrap),
            1 => Just(Edit::SwapWithFirst),
        ],
    )
}

fn apply_edits(mut v: Value, edits: &[(prop::sample::Index, Edit)]) -> Value {
    for (at, e) in edits {
        let all = paths(&v);
        let path = at.get(&all).clone();
        match e {
            Edit::Nudge(f) => {
                if let Some(x) = get_mut(&mut v, &path) {
                    if let Some(n) = x.as_f64() {
                        if let Some(m) = Number::from_f64(n * (1.0 + f) + f) {
                            *x = Value::Number(m);
                        }
                    }
                }
            }
            Edit::Replace(new) => {
                if let Some(x) = get_mut(&mut v, &path) {
                    *x = new.clone();
                }
            }
            Edit::Wrap => {
                if let Some(x) = get_mut(&mut v, &path) {
                    *x = Value::Array(vec![x.take()]);
                }
            }
            Edit::Delete | Edit::SwapWithFirst => {
                let Some((last, parent)) = path.split_last() else {
                    continue;
                };
                match (get_mut(&mut v, parent), last) {
                    (Some(Value::Object(m)), P::Key(k)) => {
                        if matches!(e, Edit::Delete) {
                            m.remove(k);
                        }
                    }
                    (Some(Value::Array(a)), P::Index(i)) => {
                        if matches!(e, Edit::Delete) {
                            a.remove(*i);
                        } else {
                            a.swap(0, *i);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    v
}

/// A live document and a shadow made from it by a few edits.
fn doc_pair() -> BoxedStrategy<(Value, Value)> {
    (doc(), prop::collection::vec(edit(), 0..4))
        .prop_map(|(live, edits)| {
            let shadow = apply_edits(live.clone(), &edits);
            (live, shadow)
        })
        .boxed()
}

// === rules and responses ===

const POINTER_SEGS: &[&str] = &[
    "outputs",
    "*",
    "0",
    "1",
    "01",
    "data",
    "parameters",
    "predictions",
    "id",
    "predict",
    "labels",
    "name",
    "a~1b",
    "~0x",
    "~",
    "~2",
    "",
];

/// A pointer as written: empty or `/`-separated (its escapes may still be bad).
fn pointer_like() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just(String::new()),
        6 => prop::collection::vec(prop::sample::select(POINTER_SEGS), 1..5)
            .prop_map(|segs| segs.iter().map(|s| format!("/{s}")).collect()),
    ]
}

/// A pointer, or anything.
fn pointer() -> impl Strategy<Value = String> {
    prop_oneof![7 => pointer_like(), 1 => "[ -~]{0,10}"]
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop::sample::select(
        &[
            Protocol::Auto,
            Protocol::V2,
            Protocol::V1,
            Protocol::Json,
            Protocol::Bytes,
        ][..],
    )
}

fn tolerance() -> impl Strategy<Value = f64> {
    prop::sample::select(&[0.0, 1e-6, 1e-4, 0.5, 1.0, 1e300, f64::MAX][..])
}

/// Rules set by hand, bad pointers and tolerances included (the comparator then skips them).
fn any_rules() -> impl Strategy<Value = Rules> {
    (
        protocol(),
        prop::collection::vec(pointer(), 0..3),
        prop_oneof![tolerance(), any::<f64>()],
        prop_oneof![tolerance(), any::<f64>()],
        prop::collection::vec(pointer(), 0..3),
    )
        .prop_map(|(protocol, ignore, abs, rel, redact)| {
            let mut r = Rules::default();
            r.protocol = protocol;
            r.ignore = ignore;
            r.abs_tolerance = abs;
            r.rel_tolerance = rel;
            r.redact = redact;
            r
        })
}

/// Valid rules with the given ignore pointers.
fn rules_with(protocol: Protocol, ignore: Vec<String>, abs: f64, rel: f64) -> Rules {
    Rules::new(protocol, ignore, abs, rel, Vec::new()).expect("valid rules")
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        4 => Just(None),
        2 => Just(Some("application/json".to_owned())),
        1 => prop::sample::select(&[
            "application/octet-stream",
            "IMAGE/png",
            " audio/wav",
            "video/",
            "application/grpc+proto",
            "text/plain; charset=utf-8",
            "",
        ][..]).prop_map(|s| Some(s.to_owned())),
        1 => any::<String>().prop_map(Some),
    ]
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![4 => Just(200u16), 1 => Just(500u16), 1 => any::<u16>()]
}

fn response<'a>(
    status: u16,
    ct: &'a Option<String>,
    body: &'a [u8],
    truncated: bool,
) -> Response<'a> {
    Response {
        status,
        content_type: ct.as_deref(),
        body,
        truncated,
    }
}

fn ok(body: &[u8]) -> Response<'_> {
    Response {
        status: 200,
        content_type: None,
        body,
        truncated: false,
    }
}

/// What holds of every comparison.
fn consistent(c: &Comparison) -> Result<(), TestCaseError> {
    prop_assert!(c.differences.len() <= MAX_DIFFERENCES);
    prop_assert!(c.differences.len() <= c.differences_total);
    prop_assert_eq!(c.differences.is_empty(), c.differences_total == 0);
    match c.outcome {
        Outcome::Agree => prop_assert_eq!(c.differences_total, 0),
        Outcome::Disagree => prop_assert!(c.differences_total > 0),
        Outcome::Incomparable => {
            prop_assert_eq!(c.differences_total, 0);
            prop_assert!(c.reason.is_some());
        }
    }
    for o in &c.outputs {
        prop_assert!(o.mismatched <= o.elements, "{:?}", o);
        for share in [o.top1_agreement, o.label_agreement].into_iter().flatten() {
            prop_assert!((0.0..=1.0).contains(&share), "{:?}", o);
        }
        if let Some(d) = o.max_abs_diff {
            prop_assert!(d.is_finite() && d >= 0.0, "{:?}", o);
        }
    }
    Ok(())
}

// === redaction ===

/// The RFC 6901 form of one key.
fn escape(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

/// A pointer to `path` in `doc`: per segment (by `how`) literal, `*`, or an array
/// element's `name` when it has one.
fn pointer_to(doc: &Value, path: &[P], how: &[u8]) -> String {
    let mut out = String::new();
    let mut node = Some(doc);
    for (i, p) in path.iter().enumerate() {
        let choice = how.get(i).copied().unwrap_or(0) % 4;
        let seg = match (p, choice) {
            (_, 1) => "*".to_owned(),
            (P::Index(j), 2) => match node
                .and_then(|n| n.get(*j))
                .and_then(|e| e.get("name"))
                .and_then(Value::as_str)
            {
                Some(name) => escape(name),
                None => j.to_string(),
            },
            (P::Index(j), _) => j.to_string(),
            (P::Key(k), _) => escape(k),
        };
        out.push('/');
        out.push_str(&seg);
        node = node.and_then(|n| match p {
            P::Index(j) => n.get(*j),
            P::Key(k) => n.get(k),
        });
    }
    out
}

/// Tells whether `pointer` selects `path` in `doc` (or an ancestor of it), by the
/// documented rules: a segment is a key, an index, `*`, or an array element's `name`.
fn selects(pointer: &str, doc: &Value, path: &[P]) -> bool {
    if pointer.is_empty() {
        return true;
    }
    let segs: Vec<String> = pointer[1..]
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    if segs.len() > path.len() {
        return false;
    }
    let mut node = doc;
    for (s, p) in segs.iter().zip(path) {
        let next = match p {
            P::Key(k) => node.get(k),
            P::Index(j) => node.get(*j),
        };
        let Some(next) = next else { return false };
        let hit = s == "*"
            || match p {
                P::Key(k) => s == k,
                P::Index(j) => {
                    *s == j.to_string() || next.get("name").and_then(Value::as_str) == Some(s)
                }
            };
        if !hit {
            return false;
        }
        node = next;
    }
    true
}

const SECRET: &str = "S3CRET";

/// A document with a secret at one of its locations, a shadow made from it with a
/// second secret at the same location (when the pointer selects it there), and the
/// redact pointer.
fn secret_pair() -> BoxedStrategy<(Value, Value, String)> {
    (
        doc(),
        any::<prop::sample::Index>(),
        prop::collection::vec(any::<u8>(), 0..8),
        prop::collection::vec(edit(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(base, at, how, edits, nested)| {
            let all = paths(&base);
            let path = at.get(&all).clone();
            let secret = |n: u32| {
                let s = Value::String(format!("{SECRET}{n}"));
                if nested {
                    serde_json::json!({ "inner": [s] })
                } else {
                    s
                }
            };
            let mut live = base.clone();
            *get_mut(&mut live, &path).unwrap() = secret(1);
            // Named after the document as sent: the secret may have replaced a named element.
            let pointer = pointer_to(&live, &path, &how);
            let mut shadow = apply_edits(base, &edits);
            let mut with_secret = shadow.clone();
            if let Some(x) = get_mut(&mut with_secret, &path) {
                *x = secret(2);
                if selects(&pointer, &with_secret, &path) {
                    shadow = with_secret;
                }
            }
            (live, shadow, pointer)
        })
        .boxed()
}

/// Tells whether `body` is neither JSON nor JSON with Python's bare non-finite tokens.
fn not_json(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_err()
        && !body.windows(3).any(|w| w == b"NaN")
        && !body.windows(8).any(|w| w == b"Infinity")
}

proptest! {
    #![proptest_config(super::config(
        512,
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz/proptest-regressions/compare.txt"),
    ))]

    /// Nothing panics and every comparison is self-consistent, whatever the bodies and rules.
    #[test]
    fn anything_compares_without_panic(
        rules in any_rules(),
        (ls, lct, lb, lt) in (status(), content_type(), body(), prop::bool::weighted(0.05)),
        (ss, sct, sb, st) in (status(), content_type(), body(), prop::bool::weighted(0.05)),
        same_status in prop::bool::weighted(0.8),
    ) {
        let ss = if same_status { ls } else { ss };
        let live = response(ls, &lct, &lb, lt);
        let shadow = response(ss, &sct, &sb, st);
        consistent(&compare(&rules, &live, &shadow))?;
        for body in [&lb, &sb] {
            let shown = redact(&rules, body);
            let text = shown.to_string();
            if not_json(body) {
                prop_assert!(
                    matches!(&shown, Value::String(s) if s.contains(&body.len().to_string()) && s.len() < 64),
                    "not JSON, yet redacted to {}", text
                );
            } else {
                prop_assert!(text.len() <= MAX_EXCERPT + 64, "{} bytes shown", text.len());
            }
        }
    }

    /// Structured pairs: nothing panics, and the comparison is self-consistent.
    #[test]
    fn documents_compare_without_panic(
        rules in any_rules(),
        (live, shadow) in doc_pair(),
        (lbare, sbare) in any::<(bool, bool)>(),
    ) {
        let (lb, sb) = (to_body(&live, lbare), to_body(&shadow, sbare));
        consistent(&compare(&rules, &ok(&lb), &ok(&sb)))?;
    }

    /// A body compared with itself never disagrees; under auto, json (when it is JSON)
    /// and bytes it agrees.
    #[test]
    fn a_body_agrees_with_itself(
        body in body(),
        protocol in protocol(),
        ignore in prop::collection::vec(pointer_like(), 0..2),
        (abs, rel) in (tolerance(), tolerance()),
        ct in content_type(),
    ) {
        let Ok(rules) = Rules::new(protocol, ignore, abs, rel, Vec::new()) else {
            return Ok(()); // a bad `~` escape
        };
        let r = response(200, &ct, &body, false);
        let c = compare(&rules, &r, &r);
        consistent(&c)?;
        prop_assert_ne!(c.outcome, Outcome::Disagree, "{:?}", c);
        let json = serde_json::from_slice::<Value>(&body).is_ok();
        if protocol == Protocol::Auto || protocol == Protocol::Bytes || (protocol == Protocol::Json && json) {
            prop_assert_eq!(c.outcome, Outcome::Agree, "{:?}", c);
        }
    }

    /// Which side is live does not change the outcome, the protocol or the count of
    /// differences (no ignore rules: see the module docs).
    #[test]
    fn the_comparison_is_symmetric(
        (live, shadow) in doc_pair(),
        (lbare, sbare) in any::<(bool, bool)>(),
        protocol in protocol(),
        (abs, rel) in (tolerance(), tolerance()),
        raw in prop::option::weighted(0.2, (body(), body())),
    ) {
        let (lb, sb) = match raw {
            Some(pair) => pair,
            None => (to_body(&live, lbare), to_body(&shadow, sbare)),
        };
        let rules = rules_with(protocol, Vec::new(), abs, rel);
        let ab = compare(&rules, &ok(&lb), &ok(&sb));
        let ba = compare(&rules, &ok(&sb), &ok(&lb));
        prop_assert_eq!(ab.outcome, ba.outcome, "{:?}\n{:?}", ab, ba);
        prop_assert_eq!(ab.protocol, ba.protocol);
        prop_assert_eq!(ab.differences_total, ba.differences_total, "{:?}\n{:?}", ab, ba);
    }

    /// A value at a redacted pointer shows nowhere: not in `redact`'s output, not in any
    /// difference, under every protocol that parses JSON.
    #[test]
    fn redacted_values_never_show(
        (live, shadow, pointer) in secret_pair(),
        protocol in protocol(),
        (lbare, sbare) in any::<(bool, bool)>(),
        extra in prop::collection::vec(pointer_like(), 0..2),
        ct in content_type(),
        // No `"`: the secret must not become a JSON string.
        text in prop::option::weighted(0.2, "[a-z {}\\[\\]:,]{0,24}"),
    ) {
        let mut redact_list = vec![pointer];
        redact_list.extend(extra);
        let Ok(rules) = Rules::new(protocol, Vec::new(), 1e-6, 1e-4, redact_list) else {
            return Ok(());
        };
        let lb = to_body(&live, lbare);
        // Sometimes the shadow answers with text, not JSON, that holds a secret of its own.
        let sb = match text {
            Some(t) => format!("{t} {SECRET}3 {t}").into_bytes(),
            None => to_body(&shadow, sbare),
        };
        for body in [&lb, &sb] {
            let shown = redact(&rules, body).to_string();
            prop_assert!(!shown.contains(SECRET), "redact left a secret: {}", shown);
        }
        let c = compare(&rules, &response(200, &ct, &lb, false), &response(200, &ct, &sb, false));
        consistent(&c)?;
        for d in &c.differences {
            prop_assert!(
                !d.live.contains(SECRET) && !d.shadow.contains(SECRET),
                "a difference shows a secret: {:?}\nrules: {:?}\nlive: {}\nshadow: {}",
                d, rules.redact, String::from_utf8_lossy(&lb), String::from_utf8_lossy(&sb)
            );
        }
    }
}

#[test]
fn every_seed_compares_with_itself_and_the_others() {
    let rules = Rules::default();
    for (a, x) in seeds() {
        for (b, y) in seeds() {
            let c = compare(&rules, &ok(x), &ok(y));
            consistent(&c).unwrap_or_else(|e| panic!("{a} vs {b}: {e}"));
            if a == b {
                assert_eq!(c.outcome, Outcome::Agree, "{a}: {c:?}");
            }
        }
    }
}

// === regressions: each failure the target found, as it was found ===

/// Compares under `protocol` with `redact` and returns every difference as text.
fn shown(protocol: Protocol, redact: &str, live: &str, shadow: &str) -> String {
    let rules = Rules::new(protocol, Vec::new(), 1e-6, 1e-4, vec![redact.to_owned()]).unwrap();
    let c = compare(&rules, &ok(live.as_bytes()), &ok(shadow.as_bytes()));
    assert_eq!(c.outcome, Outcome::Disagree, "{c:?}");
    format!("{:?}", c.differences)
}

/// Ragged tensor data is compared element by element in flat order, and the
/// difference's path is the flat index: a pointer to the nested place did not match
/// it, and the element was shown.
#[test]
fn a_redacted_element_of_ragged_data_is_not_shown() {
    let doc = |s: &str| {
        format!(r#"{{"outputs":[{{"name":"p","datatype":"BYTES","data":[[1],[2,"{s}"]]}}]}}"#)
    };
    let d = shown(
        Protocol::V2,
        "/outputs/p/data/1/1",
        &doc("S3CRET1"),
        &doc("S3CRET2"),
    );
    assert!(!d.contains(SECRET), "{d}");
    assert!(d.contains("[redacted]"), "{d}");
}

/// Tensors of different shapes are compared in flat order and the path follows the
/// live shape, so the shadow's value sat elsewhere than the path said.
#[test]
fn a_redacted_element_of_a_reshaped_tensor_is_not_shown() {
    let d = shown(
        Protocol::V1,
        "/predictions/2/1",
        r#"{"predictions":[[1,2,3],[4,5,6]]}"#,
        r#"{"predictions":[[1,2],[3,4],[5,"S3CRET2"]]}"#,
    );
    assert!(!d.contains(SECRET), "{d}");
}

/// A pointer may name an array element by its `name` member; a structural (json or
/// v1) diff matched only indexes, so the named element's value was shown.
#[test]
fn a_pointer_naming_an_element_redacts_it_in_a_structural_diff() {
    for protocol in [Protocol::Json, Protocol::V1] {
        let d = shown(
            protocol,
            "/outputs/p/data",
            r#"{"outputs":[{"name":"p","data":"S3CRET1"}]}"#,
            r#"{"outputs":[{"name":"p","data":"S3CRET2"}]}"#,
        );
        assert!(!d.contains(SECRET), "{protocol}: {d}");
    }
}

/// The V2 fast path read an output written as an array (`["name", datatype, ...]`,
/// serde's sequence form of a struct) as a named output, where pointers do not reach.
#[test]
fn outputs_written_as_arrays_are_not_v2_outputs() {
    let d = shown(
        Protocol::Auto,
        "/outputs/*/0",
        r#"{"outputs":[["S3CRET1",0]]}"#,
        r#"{"outputs":[["S3CRET2",0]]}"#,
    );
    assert!(!d.contains(SECRET), "{d}");
    // A whole body as an array of members is no V2 response either.
    let rules = Rules::new(Protocol::V2, Vec::new(), 0.0, 0.0, Vec::new()).unwrap();
    let body = br#"[[{"name":"y","data":[1]}]]"#;
    let c = compare(&rules, &ok(body), &ok(body));
    assert_eq!(c.outcome, Outcome::Incomparable, "{c:?}");
}
