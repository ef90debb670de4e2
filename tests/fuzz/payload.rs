//! Fuzz target: the observers' payload parsers (`switchyard::monitor::Payload::parse`,
//! V2, V1, OpenAI and JSON, answers as JSON or as event streams) and the monitor's
//! feature extraction and counting (`switchyard::monitor::Monitor::observe`).
//!
//! Inputs are structured requests and answers drawn from strategies, as a hostile
//! client or candidate would write them: V2 tensors whose declared `shape` is anything
//! (huge dimensions, products that overflow 64 bits and wrap to the data's length,
//! zeros, negative or non-numeric dimensions, too many of them) over flat, nested or
//! ragged `data` of any datatype; V1 instances as rows, objects or columns; OpenAI
//! chat and completion requests, answers and server-sent event streams whose choice
//! `index` is anything up to 2⁶⁴−1; plus arbitrary bytes. Each goes through `auto` and
//! through every declared protocol, under settings with and without configured
//! features, redact pointers, and a small `max_features`.
//!
//! Properties:
//! - nothing panics;
//! - an answer gives at most `MAX_ROWS` predictions, and never more than its body has
//!   bytes (no index or declared size makes rows out of nothing);
//! - one request keeps at most `MAX_CELLS` values (count, missing, invalid added up),
//!   the features named are at most `max_features`, and under `auto` the V1 and V2
//!   features found in requests each take at most their share of them;
//! - a value under a redact pointer (the secret is generated only there: a row's
//!   `card`, the tensor `secret`, an answer's predictions) is never in the report.

use proptest::prelude::*;
use serde_json::{json, Map, Number, Value};
use switchyard::monitor::features::{share, MAX_CELLS};
use switchyard::monitor::{FeatureSpec, Monitor, Settings};
use switchyard::wire::MAX_ROWS;
use switchyard::wire::{Exchange, Payload, Protocol};
use tokio::time::Instant;

/// A value redacted in every request that carries it: it must never be shown.
const SECRET: &str = "4111111111111111";

// === strategies ===

/// Dimensions as a hostile client declares them.
fn dim() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => (0u64..5).prop_map(Value::from),
        2 => prop::sample::select(vec![
            u64::MAX,
            1 << 63,
            1 << 32,
            12_297_829_382_473_034_411, // × 3 wraps to 1
            6_148_914_691_236_517_206,  // × 3 wraps to 2
            4_294_967_297,
            20_000_000,
        ])
        .prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => prop::sample::select(vec![json!(-1), json!(1.5), json!("3"), json!(null), json!([2])]),
    ]
    .boxed()
}

fn shape() -> BoxedStrategy<Value> {
    prop_oneof![
        8 => prop::collection::vec(dim(), 0..5).prop_map(Value::Array),
        1 => prop::collection::vec(dim(), 30..40).prop_map(Value::Array),
        1 => Just(json!("1,3")),
    ]
    .boxed()
}

fn leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => (-1e6f64..1e6).prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
        2 => (0i64..10).prop_map(Value::from),
        1 => prop::sample::select(vec!["NaN", "inf", "-Infinity", "a", "b", ""])
            .prop_map(|s| Value::String(s.to_owned())),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(Value::Null),
        1 => Just(json!({"k": 1})),
    ]
    .boxed()
}

/// Tensor data: flat, nested (regular or ragged), or a scalar.
fn data() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => prop::collection::vec(leaf(), 0..24).prop_map(Value::Array),
        3 => prop::collection::vec(prop::collection::vec(leaf(), 0..6).prop_map(Value::Array), 0..6)
            .prop_map(Value::Array),
        1 => leaf(),
        1 => leaf().prop_recursive(4, 32, 4, |inner| {
            prop::collection::vec(inner, 0..4).prop_map(Value::Array)
        }),
    ]
    .boxed()
}

fn datatype() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        "FP32", "FP64", "INT64", "INT8", "UINT8", "BOOL", "BYTES", "FP16", "weird",
    ])
    .prop_map(|s| Value::String(s.to_owned()))
}

fn tensor() -> BoxedStrategy<Value> {
    (
        prop::sample::select(vec!["x", "input-0", "secret", "predict", "probabilities"]),
        prop::option::weighted(0.9, shape()),
        prop::option::weighted(0.9, datatype()),
        prop::option::weighted(0.95, data()),
    )
        .prop_map(|(name, shape, datatype, data)| {
            // The secret is only ever in the tensor a redact pointer names.
            let data = match (name, data) {
                ("secret", Some(Value::Array(d))) => Some(json!(vec![SECRET; d.len()])),
                (_, data) => data,
            };
            let mut m = Map::new();
            m.insert("name".into(), json!(name));
            for (k, v) in [("shape", shape), ("datatype", datatype), ("data", data)] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            Value::Object(m)
        })
        .boxed()
}

fn v2_request() -> BoxedStrategy<Value> {
    prop::collection::vec(tensor(), 0..4)
        .prop_map(|inputs| json!({ "inputs": inputs }))
        .boxed()
}

fn v2_answer() -> BoxedStrategy<Value> {
    prop::collection::vec(tensor(), 0..4)
        .prop_map(|outputs| json!({ "model_name": "m", "outputs": outputs }))
        .boxed()
}

fn row() -> BoxedStrategy<Value> {
    prop_oneof![
        2 => prop::collection::vec(leaf(), 0..6).prop_map(Value::Array),
        2 => prop::collection::btree_map(
            prop::sample::select(vec!["card", "country", "age", "name", "label", "score"]),
            leaf(),
            0..5,
        )
        .prop_map(|m| {
            // The secret is only ever a row's `card`, which a redact pointer names.
            let secret = |k: &str, v: Value| if k == "card" { json!(SECRET) } else { v };
            Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), secret(k, v))).collect())
        }),
        1 => leaf(),
    ]
    .boxed()
}

fn v1_request() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => prop::collection::vec(row(), 0..8).prop_map(|r| json!({ "instances": r })),
        1 => prop::collection::btree_map("[a-c]", data(), 0..4).prop_map(|cols| json!({ "inputs": cols })),
        1 => row().prop_map(|r| json!({ "instances": r })),
    ]
    .boxed()
}

fn v1_answer() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => prop::collection::vec(row(), 0..8).prop_map(|r| json!({ "predictions": r })),
        1 => prop::collection::btree_map(
            prop::sample::select(vec!["label", "classes", "scores", "probability", "x"]),
            data(),
            0..3,
        )
        .prop_map(|cols| json!({ "outputs": cols })),
        1 => leaf().prop_map(|r| json!({ "predictions": r })),
    ]
    .boxed()
}

/// A choice `index` as a hostile candidate writes it.
fn index() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => (0u64..4).prop_map(Value::from),
        2 => prop::sample::select(vec![u64::MAX, 4_294_967_295, 20_000_000, 1 << 53, 65_536])
            .prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => prop::sample::select(vec![json!(-1), json!("0"), json!(null), json!(1.5)]),
    ]
    .boxed()
}

fn choice() -> BoxedStrategy<Value> {
    (
        prop::option::weighted(0.9, index()),
        prop::option::of("[a-z ]{0,12}"),
        prop::option::of(prop::sample::select(vec!["stop", "length", SECRET])),
        0..3u8,
    )
        .prop_map(|(index, text, reason, place)| {
            let mut m = Map::new();
            if let Some(i) = index {
                m.insert("index".into(), i);
            }
            if let Some(t) = text {
                let at = match place {
                    0 => json!({ "message": { "role": "assistant", "content": t } }),
                    1 => json!({ "delta": { "content": t } }),
                    _ => json!({ "text": t }),
                };
                m.extend(at.as_object().unwrap().clone());
            }
            m.insert("finish_reason".into(), json!(reason));
            Value::Object(m)
        })
        .boxed()
}

fn openai_request() -> BoxedStrategy<Value> {
    prop_oneof![
        prop::collection::vec("[a-z]{0,8}", 0..4).prop_map(|c| {
            let messages: Vec<Value> = c
                .iter()
                .map(|c| json!({ "role": "user", "content": c }))
                .collect();
            json!({ "model": "m", "messages": messages })
        }),
        prop::collection::vec("[a-z]{0,8}", 0..4)
            .prop_map(|p| json!({ "model": "m", "prompt": p })),
        "[a-z]{0,8}".prop_map(|p| json!({ "model": "m", "prompt": p })),
    ]
    .boxed()
}

fn openai_answer() -> BoxedStrategy<Value> {
    prop::collection::vec(choice(), 0..5)
        .prop_map(|choices| json!({ "object": "chat.completion", "choices": choices }))
        .boxed()
}

/// An answer body: JSON, or a server-sent event stream of chunks.
fn openai_body() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        2 => openai_answer().prop_map(|v| v.to_string().into_bytes()),
        2 => (prop::collection::vec(openai_answer(), 0..6), any::<bool>()).prop_map(|(events, done)| {
            let mut s = String::new();
            for e in events {
                s.push_str(&format!("data: {e}\n\n"));
            }
            if done {
                s.push_str("data: [DONE]\n\n");
            }
            s.into_bytes()
        }),
    ]
    .boxed()
}

/// A request and an answer body, with the path a client would use.
pub fn exchange() -> BoxedStrategy<(&'static str, Vec<u8>, Vec<u8>)> {
    let bytes = |v: Value| v.to_string().into_bytes();
    prop_oneof![
        3 => (v2_request(), v2_answer()).prop_map(move |(q, a)| ("/v2/models/m/infer", bytes(q), bytes(a))),
        3 => (v1_request(), v1_answer()).prop_map(move |(q, a)| ("/v1/models/m:predict", bytes(q), bytes(a))),
        3 => (openai_request(), openai_body()).prop_map(move |(q, a)| ("/v1/chat/completions", bytes(q), a)),
        1 => (
            prop_oneof![v2_request(), v1_request(), openai_request()],
            prop_oneof![v2_answer(), v1_answer(), openai_answer()],
        )
            .prop_map(move |(q, a)| ("/predict", bytes(q), bytes(a))),
        1 => (prop::collection::vec(any::<u8>(), 0..64), prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(q, a)| ("/anything", q, a)),
    ]
    .boxed()
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop::sample::select(vec![
        Protocol::Auto,
        Protocol::Auto,
        Protocol::V2,
        Protocol::V1,
        Protocol::OpenAi,
        Protocol::Json,
    ])
}

/// Monitor settings: discovered or configured features, redact pointers or none, the
/// default or a small `max_features`.
fn settings() -> impl Strategy<Value = Settings> {
    (
        protocol(),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![1usize, 3, 8, 256]),
    )
        .prop_map(|(protocol, configured, redact, max)| {
            let features = if configured {
                vec![
                    spec("c0", Some("x"), Some(1), None),
                    spec("card", None, None, Some("/instances/*/card")),
                ]
            } else {
                Vec::new()
            };
            Settings {
                protocol,
                max_features: max.max(features.len()),
                features,
                redact: if redact {
                    vec![
                        "/instances/*/card".into(),
                        "/inputs/secret/data".into(),
                        "/predictions".into(),
                        "/outputs".into(),
                        "/choices/*/finish_reason".into(),
                    ]
                } else {
                    Vec::new()
                },
                ..Settings::default()
            }
        })
}

fn spec(
    name: &str,
    input: Option<&str>,
    column: Option<usize>,
    pointer: Option<&str>,
) -> FeatureSpec {
    FeatureSpec {
        name: name.into(),
        input: input.map(Into::into),
        column,
        pointer: pointer.map(Into::into),
        kind: None,
    }
}

// === properties ===

/// What an answer's parse must respect, whatever it holds.
fn bounded(payload: &Payload, answer: &[u8]) -> Result<(), TestCaseError> {
    let rows = payload.predictions.len();
    prop_assert!(rows <= MAX_ROWS, "{rows} predictions");
    prop_assert!(
        rows <= answer.len().max(1),
        "{rows} predictions from {} bytes",
        answer.len()
    );
    Ok(())
}

proptest! {
    #![proptest_config(super::config(
        512,
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz/proptest-regressions/payload.txt"),
    ))]

    /// Every protocol parses any exchange without panic, within the caps.
    #[test]
    fn payloads_parse_within_their_caps(
        (path, request, answer) in exchange(),
        declared in protocol(),
        status in prop::sample::select(vec![200u16, 201, 400, 500]),
    ) {
        let ex = Exchange {
            route: "r",
            backend: "blue",
            path,
            status,
            request: &request,
            request_truncated: false,
            answer: &answer,
            answer_truncated: false,
        };
        let p = Payload::parse(&ex, declared);
        bounded(&p, &answer)?;
        if declared != Protocol::Auto {
            prop_assert_eq!(p.protocol, declared);
        }
        let again = Payload::with_answer(p.request.clone(), p.protocol, &ex);
        prop_assert_eq!(again.predictions, p.predictions);
    }

    /// The monitor counts any exchange without panic: bounded values per request and
    /// features per route, fair slots under `auto`, nothing redacted shown.
    #[test]
    fn the_monitor_observes_within_its_caps(
        (path, request, answer) in exchange(),
        settings in settings(),
    ) {
        let max = settings.max_features;
        let redacting = !settings.redact.is_empty();
        let auto = settings.protocol == Protocol::Auto;
        let mut monitor = Monitor::new(settings).unwrap();
        monitor.start_reference("blue");
        let ex = Exchange {
            route: "r",
            backend: "blue",
            path,
            status: 200,
            request: &request,
            request_truncated: false,
            answer: &answer,
            answer_truncated: false,
        };
        let p = monitor.parse(&ex);
        bounded(&p, &answer)?;
        monitor.observe(&ex, &p, Instant::now());
        let report = monitor.report(Instant::now(), None);
        prop_assert!(report.backends.len() == 1);
        let b = &report.backends[0];
        prop_assert!(b.features.len() <= max, "{} features", b.features.len());
        let kept: u64 = b
            .features
            .iter()
            .map(|f| f.count + f.invalid + f.missing.null + f.missing.nan)
            .sum();
        prop_assert!(kept <= MAX_CELLS as u64, "{kept} values kept");
        prop_assert!(b.outputs.rows <= MAX_ROWS as u64);
        if auto && max == 256 {
            let named = |prefix: &[&str]| {
                b.features.iter().filter(|f| prefix.iter().any(|p| f.name.starts_with(p))).count()
            };
            prop_assert!(named(&["x[", "input-0[", "secret[", "predict[", "probabilities["]) <= share(max));
        }
        if redacting {
            let shown = serde_json::to_string(&report).unwrap();
            prop_assert!(!shown.contains(SECRET), "{}", shown);
        }
    }
}

// === regressions ===

/// The finding that opened issue 22: a shape that wraps to the data's length.
#[test]
fn a_wrapping_shape_is_read_by_its_nesting() {
    let request = br#"{"inputs":[{"name":"x","shape":[12297829382473034411,3],"datatype":"FP32","data":[1.0]}]}"#;
    let ex = Exchange {
        route: "r",
        backend: "blue",
        path: "/v2/models/m/infer",
        status: 200,
        request,
        request_truncated: false,
        answer: b"{}",
        answer_truncated: false,
    };
    let mut monitor = Monitor::new(Settings::default()).unwrap();
    let p = monitor.parse(&ex);
    monitor.observe(&ex, &p, Instant::now());
    let report = monitor.report(Instant::now(), None);
    assert_eq!(report.backends[0].features[0].count, 1);
}
