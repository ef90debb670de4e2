//! Known distributions in, exact counts and bounded errors out; real-looking bodies per protocol.

use super::drift::{self, Bins, Drift, Level, Metric, EPSILON};
use super::stats::{Sketch, TopK, RELATIVE_ACCURACY, TOP_CAPACITY};
use super::*;
use crate::wire::{Answer, Prediction};
use crate::wire::{Exchange, Payload, Protocol};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::{Duration, Instant};

// === helpers ===

fn exchange<'a>(
    backend: &'a str,
    path: &'a str,
    request: &'a str,
    answer: &'a str,
) -> Exchange<'a> {
    Exchange {
        route: "default",
        backend,
        path,
        status: 200,
        request: request.as_bytes(),
        request_truncated: false,
        answer: answer.as_bytes(),
        answer_truncated: false,
    }
}

fn observe(m: &mut Monitor, backend: &str, path: &str, request: &str, answer: &str, now: Instant) {
    let ex = exchange(backend, path, request, answer);
    let payload = m.parse(&ex);
    m.observe(&ex, &payload, now);
}

fn parse(path: &str, request: &str, answer: &str) -> Payload {
    Payload::parse(&exchange("blue", path, request, answer), Protocol::Auto)
}

fn feature<'r>(report: &'r Report, backend: &str, name: &str) -> &'r FeatureReport {
    let b = report
        .backends
        .iter()
        .find(|b| b.backend == backend)
        .unwrap_or_else(|| panic!("no backend {backend}"));
    b.features
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no feature {name} in {:?}", b.features))
}

fn settings(requests: u64) -> Settings {
    Settings {
        reference: ReferenceSettings {
            requests,
            ..ReferenceSettings::default()
        },
        ..Settings::default()
    }
}

/// Deterministic normal samples (Box-Muller).
struct Normal(SmallRng);

impl Normal {
    fn new(seed: u64) -> Normal {
        Normal(SmallRng::seed_from_u64(seed))
    }

    fn sample(&mut self, mean: f64, sd: f64) -> f64 {
        let u1: f64 = self.0.random_range(f64::EPSILON..1.0);
        let u2: f64 = self.0.random();
        mean + sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// One of `values`, drawn with the given shares.
    fn pick<'v>(&mut self, values: &[(&'v str, f64)]) -> &'v str {
        let mut u: f64 = self.0.random();
        for (v, share) in values {
            if u < *share {
                return v;
            }
            u -= share;
        }
        values[values.len() - 1].0
    }
}

/// PSI computed here, independently: values binned with `v <= edge`, shares floored at ε.
fn own_psi(edges: &[f64], expected: &[f64], values: &[f64]) -> f64 {
    let mut counts = vec![0f64; edges.len() + 1];
    for &v in values {
        let bin = edges.iter().take_while(|&&e| v > e).count();
        counts[bin] += 1.0;
    }
    let n = values.len() as f64;
    let mut psi = 0.0;
    for (c, p) in counts.iter().zip(expected) {
        let q = (c / n).max(EPSILON);
        let p = p.max(EPSILON);
        psi += (q - p) * (q / p).ln();
    }
    psi
}

/// Jensen-Shannon distance computed here, independently, from two maps of shares.
fn own_js(p: &[f64], q: &[f64]) -> f64 {
    let mut d = 0.0;
    for (a, b) in p.iter().zip(q) {
        let m = (a + b) / 2.0;
        if *a > 0.0 {
            d += 0.5 * a * (a / m).log2();
        }
        if *b > 0.0 {
            d += 0.5 * b * (b / m).log2();
        }
    }
    d.sqrt()
}

/// Shares of `picked` over a categorical reference's bins (values in name order, then other).
fn category_shares(bins: &Bins, picked: &[&str]) -> Vec<f64> {
    let Bins::Categorical { shares, .. } = bins else {
        panic!("not categorical: {bins:?}")
    };
    let mut counts = vec![0f64; shares.len() + 1];
    for v in picked {
        let i = shares.keys().position(|k| k == v).unwrap_or(shares.len());
        counts[i] += 1.0;
    }
    counts.iter().map(|c| c / picked.len() as f64).collect()
}

// === parsing, per protocol ===

const IRIS_REQUEST: &str = r#"{"id":"5f4a","parameters":{"content_type":"np"},"inputs":[{"name":"input-0","shape":[2,4],"datatype":"FP32","data":[[5.1,3.5,1.4,0.2],[6.7,3.1,4.7,1.5]]}]}"#;
const IRIS_ANSWER: &str = r#"{"model_name":"iris","model_version":"v0.1.0","id":"5f4a","parameters":{},"outputs":[{"name":"predict","shape":[2,1],"datatype":"INT64","parameters":{"content_type":"np"},"data":[0,1]},{"name":"predict_proba","shape":[2,3],"datatype":"FP64","parameters":{"content_type":"np"},"data":[0.97,0.03,0.0,0.02,0.88,0.1]}]}"#;

#[test]
fn v2_iris_as_mlserver_answers_it() {
    let p = parse("/v2/models/iris/infer", IRIS_REQUEST, IRIS_ANSWER);
    assert_eq!(p.protocol, Protocol::V2);
    let labels: Vec<_> = p.predictions.iter().map(|p| p.label.as_deref()).collect();
    assert_eq!(labels, [Some("0"), Some("1")]);
    let scores: Vec<_> = p.predictions.iter().map(|p| p.score).collect();
    assert_eq!(scores, [Some(0.97), Some(0.88)]);

    let mut m = Monitor::new(Settings::default()).unwrap();
    observe(
        &mut m,
        "blue",
        "/v2/models/iris/infer",
        IRIS_REQUEST,
        IRIS_ANSWER,
        Instant::now(),
    );
    let r = m.report(Instant::now(), None);
    let names: Vec<_> = r.backends[0]
        .features
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["input-0[0]", "input-0[1]", "input-0[2]", "input-0[3]"]
    );
    let petal = feature(&r, "blue", "input-0[2]");
    assert_eq!((petal.kind, petal.count), (Some(Kind::Numeric), 2));
    let q = petal.quantiles.unwrap();
    assert_eq!((q.min, q.max), (1.4, 4.7));
    assert_eq!(r.backends[0].rows.unwrap().max, 2.0);
    assert_eq!(r.backends[0].outputs.rows, 2);
}

#[test]
fn v2_configured_names_and_absent_columns() {
    let s = Settings {
        features: vec![
            FeatureSpec {
                name: "petal_length".into(),
                input: Some("input-0".into()),
                column: Some(2),
                pointer: None,
                kind: None,
            },
            FeatureSpec {
                name: "extra".into(),
                input: Some("input-0".into()),
                column: Some(7),
                pointer: None,
                kind: None,
            },
            FeatureSpec {
                name: "other_tensor".into(),
                input: Some("input-1".into()),
                column: None,
                pointer: None,
                kind: None,
            },
        ],
        ..Settings::default()
    };
    let mut m = Monitor::new(s).unwrap();
    observe(
        &mut m,
        "blue",
        "/v2/models/iris/infer",
        IRIS_REQUEST,
        IRIS_ANSWER,
        Instant::now(),
    );
    let r = m.report(Instant::now(), None);
    assert_eq!(
        r.backends[0].features.len(),
        3,
        "only the configured features"
    );
    assert_eq!(feature(&r, "blue", "petal_length").count, 2);
    assert_eq!(feature(&r, "blue", "extra").missing.absent, 2);
    assert_eq!(feature(&r, "blue", "other_tensor").missing.absent, 2);
}

#[test]
fn v1_as_tf_serving_answers_it() {
    let request =
        r#"{"signature_name":"serving_default","instances":[[1.0,2.0,5.0],[3.5,0.5,1.0]]}"#;
    let answer = r#"{"predictions":[[0.1,0.7,0.2],[0.8,0.15,0.05]]}"#;
    let p = parse("/v1/models/flowers:predict", request, answer);
    assert_eq!(p.protocol, Protocol::V1);
    assert_eq!(
        p.predictions,
        [
            Prediction {
                label: Some("1".into()),
                score: Some(0.7)
            },
            Prediction {
                label: Some("0".into()),
                score: Some(0.8)
            }
        ]
    );
    let mut m = Monitor::new(Settings::default()).unwrap();
    observe(
        &mut m,
        "blue",
        "/v1/models/flowers:predict",
        request,
        answer,
        Instant::now(),
    );
    let r = m.report(Instant::now(), None);
    let f = feature(&r, "blue", "instances[2]");
    assert_eq!(f.count, 2);
    assert_eq!(f.quantiles.unwrap().max, 5.0);
}

#[test]
fn v1_labels_regression_and_row_objects() {
    let labels = parse(
        "/x",
        r#"{"instances":[1]}"#,
        r#"{"predictions":["setosa",null]}"#,
    );
    assert_eq!(labels.protocol, Protocol::V1, "from the request's shape");
    assert_eq!(labels.predictions[0].label.as_deref(), Some("setosa"));
    assert!(labels.predictions[1].is_null());
    let regression = parse("/x", r#"{"instances":[1]}"#, r#"{"predictions":[0.83]}"#);
    assert_eq!(regression.predictions[0].score, Some(0.83));
    assert_eq!(regression.predictions[0].label, None);
    let objects = parse(
        "/x",
        r#"{"instances":[1]}"#,
        r#"{"predictions":[{"classes":["cat","dog"],"scores":[0.9,0.1]}]}"#,
    );
    assert_eq!(objects.predictions[0].label.as_deref(), Some("cat"));
    assert_eq!(objects.predictions[0].score, Some(0.9));
}

const CHAT_REQUEST: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Name three rivers in France."}],"temperature":0.2}"#;
const CHAT_ANSWER: &str = r#"{"id":"chatcmpl-9x","object":"chat.completion","created":1718000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Seine, Loire, Rhône."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":24,"completion_tokens":7,"total_tokens":31}}"#;

#[test]
fn openai_chat_request_and_answer() {
    let p = parse("/v1/chat/completions", CHAT_REQUEST, CHAT_ANSWER);
    assert_eq!(p.protocol, Protocol::OpenAi);
    assert_eq!(p.predictions.len(), 1);
    assert_eq!(p.predictions[0].label.as_deref(), Some("stop"));
    assert_eq!(p.predictions[0].score, Some(20.0), "characters, not bytes");

    let mut m = Monitor::new(Settings::default()).unwrap();
    observe(
        &mut m,
        "blue",
        "/v1/chat/completions",
        CHAT_REQUEST,
        CHAT_ANSWER,
        Instant::now(),
    );
    let r = m.report(Instant::now(), None);
    let chars = "You are terse.".len() + "Name three rivers in France.".len();
    assert_eq!(
        feature(&r, "blue", "prompt_chars").quantiles.unwrap().max,
        chars as f64
    );
    assert_eq!(feature(&r, "blue", "messages").quantiles.unwrap().max, 2.0);
    assert_eq!(r.backends[0].outputs.labels[0].value, "stop");
}

#[test]
fn openai_stream_deltas_are_joined() {
    let stream = concat!(
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Seine, \"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Loire\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
        "data: [DONE]\n\n",
    );
    let p = parse("/v1/chat/completions", CHAT_REQUEST, stream);
    assert!(matches!(p.answer, Answer::Events(ref e) if e.len() == 4));
    assert_eq!(
        p.predictions,
        [Prediction {
            label: Some("length".into()),
            score: Some(12.0)
        }]
    );
}

#[test]
fn json_pointer_features_with_wildcards() {
    let s = Settings {
        protocol: Protocol::Json,
        features: vec![FeatureSpec {
            name: "country".into(),
            input: None,
            column: None,
            pointer: Some("/instances/*/country".into()),
            kind: Some(Kind::Categorical),
        }],
        ..Settings::default()
    };
    let mut m = Monitor::new(s).unwrap();
    let request = r#"{"instances":[{"country":"FR"},{"country":"DE"},{"age":3},{"country":"FR"}]}"#;
    observe(&mut m, "blue", "/predict", request, "{}", Instant::now());
    let r = m.report(Instant::now(), None);
    let f = feature(&r, "blue", "country");
    assert_eq!((f.count, f.missing.absent), (3, 1));
    assert_eq!(f.top[0].value, "FR");
    assert_eq!(f.top[0].count, 2);
    assert_eq!(r.backends[0].rows.unwrap().max, 4.0);
}

#[test]
fn failed_truncated_and_unparseable_answers_are_counted_apart() {
    let mut m = Monitor::new(Settings::default()).unwrap();
    let now = Instant::now();
    let mut ex = exchange(
        "blue",
        "/v2/models/iris/infer",
        IRIS_REQUEST,
        "upstream timeout",
    );
    ex.status = 503;
    m.observe(&ex, &m.parse(&ex), now);
    ex.status = 200;
    m.observe(&ex, &m.parse(&ex), now);
    let mut cut = exchange(
        "blue",
        "/v2/models/iris/infer",
        IRIS_REQUEST,
        &IRIS_ANSWER[..40],
    );
    cut.answer_truncated = true;
    m.observe(&cut, &m.parse(&cut), now);
    observe(
        &mut m,
        "blue",
        "/v2/models/iris/infer",
        "not json",
        r#"{"outputs":[]}"#,
        now,
    );
    let r = m.report(now, None);
    let o = &r.backends[0].outputs;
    assert_eq!((o.failed, o.unparseable, o.truncated), (1, 1, 1));
    assert_eq!((o.answers, o.empty), (1, 1));
    assert_eq!(r.samples.parsed, 3);
    assert_eq!(r.samples.unparseable, 1);
    assert_eq!(r.backends[0].unparsed, 1);
}

// === statistics ===

#[test]
fn missing_values_are_counted_exactly_by_kind() {
    // A bare NaN token (as Python's json writes it), a spelled NaN, nulls, absent keys,
    // and a value no kind of feature can use.
    let request = r#"{"instances":[{"a":1.0,"b":"x"},{"a":null,"b":"y"},{"a":NaN},{"a":"nan","b":null},{"b":"z"},{"a":{"x":1}}]}"#;
    let mut m = Monitor::new(Settings::default()).unwrap();
    let now = Instant::now();
    for _ in 0..3 {
        observe(
            &mut m,
            "blue",
            "/v1/models/m:predict",
            request,
            r#"{"predictions":[1]}"#,
            now,
        );
    }
    let r = m.report(now, None);
    let a = feature(&r, "blue", "a");
    assert_eq!((a.count, a.invalid), (3, 3));
    assert_eq!(
        a.missing,
        Missing {
            null: 3,
            nan: 6,
            absent: 3
        }
    );
    let b = feature(&r, "blue", "b");
    assert_eq!(b.kind, Some(Kind::Categorical));
    assert_eq!(b.count, 9);
    assert_eq!(
        b.missing,
        Missing {
            null: 3,
            nan: 0,
            absent: 6
        }
    );
}

#[test]
fn a_row_lacks_only_the_features_of_its_own_protocol() {
    // One route taking V1 instances and V2 tensors: a V2 row lacks no V1 key, and a V1
    // row lacks no V2 column, whichever protocol the route saw first.
    let v1 = r#"{"instances":[{"age":30},{"age":31},{}]}"#;
    let v2 = r#"{"inputs":[{"name":"x","shape":[2,1],"datatype":"FP32","data":[1.0,2.0]}]}"#;
    let mut m = Monitor::new(Settings::default()).unwrap();
    let now = Instant::now();
    for _ in 0..4 {
        observe(
            &mut m,
            "blue",
            "/v1/models/m:predict",
            v1,
            r#"{"predictions":[1,1,1]}"#,
            now,
        );
        let answer = r#"{"outputs":[{"name":"y","shape":[2],"datatype":"INT64","data":[1,0]}]}"#;
        observe(&mut m, "blue", "/v2/models/m/infer", v2, answer, now);
    }
    let r = m.report(now, None);
    let age = feature(&r, "blue", "age");
    assert_eq!(
        (age.count, age.missing.absent),
        (8, 4),
        "one absent per V1 request"
    );
    let x = feature(&r, "blue", "x[0]");
    assert_eq!(
        (x.count, x.missing.absent),
        (8, 0),
        "V1 rows lack no V2 column"
    );
}

#[test]
fn max_features_bounds_what_is_kept_and_counts_the_rest() {
    // One declared protocol: its features may take every slot.
    let s = Settings {
        max_features: 4,
        protocol: Protocol::V2,
        ..Settings::default()
    };
    let mut m = Monitor::new(s).unwrap();
    let data: Vec<String> = (0..10).map(|i| format!("{i}.5")).collect();
    let request = format!(
        r#"{{"inputs":[{{"name":"x","shape":[1,10],"datatype":"FP32","data":[{}]}}]}}"#,
        data.join(",")
    );
    for _ in 0..5 {
        observe(
            &mut m,
            "blue",
            "/v2/models/m/infer",
            &request,
            "{}",
            Instant::now(),
        );
    }
    let r = m.report(Instant::now(), None);
    assert_eq!(r.backends[0].features.len(), 4);
    assert_eq!(r.untracked_values, 5 * 6);
}

#[test]
fn quantiles_never_lie_outside_the_values_seen() {
    let mut s = Sketch::new();
    for _ in 0..100 {
        s.add(214.0);
    }
    let q = s.summary().unwrap();
    assert_eq!((q.min, q.p50, q.p99, q.max), (214.0, 214.0, 214.0, 214.0));
    let mut s = Sketch::new();
    for v in [1.0, 2.0, 1000.0] {
        s.add(v);
    }
    for p in [0.0, 0.01, 0.5, 0.99, 1.0] {
        let v = s.quantile(p).unwrap();
        assert!((1.0..=1000.0).contains(&v), "q{p} = {v}");
    }
}

#[test]
fn quantiles_are_within_the_sketchs_relative_error() {
    let mut g = Normal::new(7);
    for (mean, sd) in [(50.0, 10.0), (0.0, 1.0), (-3.0, 0.5)] {
        let mut values: Vec<f64> = (0..20_000).map(|_| g.sample(mean, sd)).collect();
        let mut sketch = Sketch::new();
        values.iter().for_each(|&v| sketch.add(v));
        values.sort_by(f64::total_cmp);
        for q in [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99] {
            let exact = values[(q * (values.len() - 1) as f64) as usize];
            let got = sketch.quantile(q).unwrap();
            assert!(
                (got - exact).abs() <= RELATIVE_ACCURACY * exact.abs() + 1e-12,
                "N({mean}, {sd}) q{q}: {got} vs {exact}"
            );
        }
    }
}

#[test]
fn merged_sketches_equal_the_sketch_of_all_values() {
    let mut g = Normal::new(3);
    let (mut a, mut b, mut all) = (Sketch::new(), Sketch::new(), Sketch::new());
    for i in 0..10_000 {
        let v = g.sample(-1.0, 4.0);
        if i % 3 == 0 {
            a.add(v)
        } else {
            b.add(v)
        }
        all.add(v);
    }
    a.merge(&b);
    assert_eq!(a.count(), all.count());
    for q in [0.0, 0.01, 0.3, 0.5, 0.9, 0.99, 1.0] {
        assert_eq!(a.quantile(q), all.quantile(q), "q{q}");
    }
}

#[test]
fn top_values_keep_heavy_hitters_within_the_error_bound() {
    let mut top = TopK::default();
    let mut other = TopK::default();
    let heavy = [("FR", 3000u64), ("DE", 2000), ("IT", 1000)];
    for (v, n) in heavy {
        for _ in 0..n / 2 {
            top.add(v);
            other.add(v);
        }
    }
    for i in 0..4000 {
        let v = format!("rare-{i}");
        if i % 2 == 0 {
            top.add(&v)
        } else {
            other.add(&v)
        }
    }
    top.merge(&other);
    let n = top.total();
    assert_eq!(n, 10_000);
    let shown = top.top(3);
    for ((v, truth), t) in heavy.iter().zip(&shown) {
        assert_eq!(t.value, *v);
        assert!(t.count >= *truth && t.count - t.error <= *truth, "{t:?}");
        assert!(t.error <= n / TOP_CAPACITY as u64, "{t:?}");
    }
}

// === drift ===

/// A monitor whose reference is the first `n` requests of "blue", one value a request.
fn numeric_reference(n: u64, g: &mut Normal, now: Instant) -> Monitor {
    let mut m = Monitor::new(settings(n)).unwrap();
    m.start_reference("blue");
    for _ in 0..n {
        let req = format!(r#"{{"instances":[[{}]]}}"#, g.sample(0.0, 1.0));
        observe(
            &mut m,
            "blue",
            "/v1/models/m:predict",
            &req,
            r#"{"predictions":[0]}"#,
            now,
        );
    }
    m
}

#[test]
fn psi_is_low_for_the_same_distribution_and_high_for_a_shifted_one() {
    let mut g = Normal::new(11);
    let now = Instant::now();
    let mut m = numeric_reference(2000, &mut g, now);
    let reference = m.reference().expect("built after 2000 requests");
    let Some(Bins::Numeric { edges, shares }) = reference.features.get("instances[0]").cloned()
    else {
        panic!("no numeric bins: {reference:?}")
    };
    assert_eq!(edges.len(), 9, "deciles");

    let same: Vec<f64> = (0..5000).map(|_| g.sample(0.0, 1.0)).collect();
    let shifted: Vec<f64> = (0..5000).map(|_| g.sample(0.75, 1.0)).collect();
    for (backend, values) in [("blue", &same), ("green", &shifted)] {
        for v in values {
            let req = format!(r#"{{"instances":[[{v}]]}}"#);
            observe(&mut m, backend, "/v1/models/m:predict", &req, "{}", now);
        }
    }
    let r = m.report(now, None);
    let blue = feature(&r, "blue", "instances[0]").drift.unwrap();
    let green = feature(&r, "green", "instances[0]").drift.unwrap();
    assert_eq!((blue.metric, blue.samples), (Metric::Psi, 5000));
    let (blue_raw, green_raw) = (blue.raw.unwrap(), green.raw.unwrap());
    assert!((blue_raw - own_psi(&edges, &shares, &same)).abs() < 1e-9);
    assert!((green_raw - own_psi(&edges, &shares, &shifted)).abs() < 1e-9);
    // The figure is the PSI less what sampling adds on average over 10 bins: 5 000 values
    // in the window, against a reference sample of 1 024 values (its reservoir).
    let chance = 9.0 * (1.0 / 5000.0 + 1.0 / 1024.0);
    assert!((blue.value.unwrap() - (blue_raw - chance).max(0.0)).abs() < 1e-12);
    assert!((green.value.unwrap() - (green_raw - chance)).abs() < 1e-12);
    assert!(blue.value < Some(0.05), "same distribution: {blue:?}");
    assert!(green.value > Some(0.2), "shifted: {green:?}");
    assert_eq!((blue.level, green.level), (Level::Ok, Level::Alert));
}

const MIX: [(&str, f64); 3] = [("FR", 0.5), ("DE", 0.3), ("IT", 0.2)];
const SHIFTED_MIX: [(&str, f64); 3] = [("FR", 0.1), ("DE", 0.3), ("IT", 0.6)];

#[test]
fn js_distance_is_low_for_the_same_mix_and_high_for_a_shifted_one() {
    let mut g = Normal::new(5);
    let now = Instant::now();
    let mut m = Monitor::new(settings(2000)).unwrap();
    m.start_reference("blue");
    let row = |c: &str| format!(r#"{{"instances":[{{"country":"{c}"}}]}}"#);
    for _ in 0..2000 {
        let c = g.pick(&MIX);
        observe(&mut m, "blue", "/v1/models/m:predict", &row(c), "{}", now);
    }
    let bins = m.reference().unwrap().features["country"].clone();
    let same: Vec<&str> = (0..5000).map(|_| g.pick(&MIX)).collect();
    let shifted: Vec<&str> = (0..5000).map(|_| g.pick(&SHIFTED_MIX)).collect();
    for (backend, values) in [("blue", &same), ("green", &shifted)] {
        for c in values {
            observe(&mut m, backend, "/v1/models/m:predict", &row(c), "{}", now);
        }
    }
    let r = m.report(now, None);
    let blue = feature(&r, "blue", "country").drift.unwrap();
    let green = feature(&r, "green", "country").drift.unwrap();
    assert_eq!(blue.metric, Metric::Js);
    let expected = bins.shares();
    let raw = |d: &Drift| d.raw.unwrap();
    assert!((raw(&blue) - own_js(&expected, &category_shares(&bins, &same))).abs() < 1e-9);
    assert!((raw(&green) - own_js(&expected, &category_shares(&bins, &shifted))).abs() < 1e-9);
    assert!(blue.value < Some(0.05), "same mix: {blue:?}");
    assert!(green.value > Some(0.2), "shifted mix: {green:?}");
}

#[test]
fn on_mirrored_requests_output_drift_compares_both_models_on_the_same_requests() {
    let mut g = Normal::new(11);
    let now = Instant::now();
    let mut m = Monitor::new(settings(1000)).unwrap();
    m.start_reference("blue");
    let answer = |label: &str| format!(r#"{{"predictions":[{{"label":"{label}"}}]}}"#);
    let (path, req) = ("/v1/models/m:predict", r#"{"instances":[[1.0]]}"#);
    for _ in 0..1000 {
        observe(&mut m, "blue", path, req, &answer(g.pick(&MIX)), now);
    }
    // The candidate's own users (one heavy user, a skewed sticky slice) send requests
    // that all come out "IT": on their traffic alone the candidate looks drifted.
    for _ in 0..500 {
        observe(&mut m, "blue", path, req, &answer(g.pick(&MIX)), now);
        observe(&mut m, "green", path, req, &answer("IT"), now);
    }
    let d = m.output_drift("blue", "green", now).unwrap();
    assert!(!d.paired);
    assert!(d.value().unwrap() > 0.2, "{d:?}");

    // Mirrored requests: both models answer the very same requests alike.
    for _ in 0..500 {
        let a = answer(g.pick(&MIX));
        let (live, mirror) = (
            exchange("blue", path, req, &a),
            exchange("green", path, req, &a),
        );
        let (lp, mp) = (m.parse(&live), m.parse(&mirror));
        m.observe(&live, &lp, now);
        m.observe(&mirror, &mp, now);
        m.pair(("blue", &lp), ("green", &mp), now);
    }
    let d = m.output_drift("blue", "green", now).unwrap();
    assert!(d.paired, "{d:?}");
    assert!(
        d.value().unwrap() < 1e-9,
        "same answers to the same requests: {d:?}"
    );
}

#[test]
fn output_drift_compares_the_candidate_with_the_stable_over_the_same_window() {
    let mut g = Normal::new(9);
    let now = Instant::now();
    let mut m = Monitor::new(settings(1000)).unwrap();
    m.start_reference("blue");
    let answer = |label: &str, score: f64| {
        format!(r#"{{"predictions":[{{"label":"{label}","score":{score}}}]}}"#)
    };
    let req = r#"{"instances":[[1.0]]}"#;
    for _ in 0..1000 {
        let a = answer(g.pick(&MIX), g.sample(0.7, 0.1));
        observe(&mut m, "blue", "/v1/models/m:predict", req, &a, now);
    }
    let mut seen = (Vec::new(), Vec::new());
    for _ in 0..3000 {
        let stable = g.pick(&MIX);
        let candidate = g.pick(&SHIFTED_MIX);
        seen.0.push(stable);
        seen.1.push(candidate);
        let a = answer(stable, g.sample(0.7, 0.1));
        observe(&mut m, "blue", "/v1/models/m:predict", req, &a, now);
        let a = answer(candidate, g.sample(0.7, 0.1));
        observe(&mut m, "green", "/v1/models/m:predict", req, &a, now);
    }
    let d = m.output_drift("blue", "green", now).unwrap();
    let label = d.label.unwrap();
    let bins = m.reference().unwrap().outputs.label.unwrap();
    let own = own_js(
        &category_shares(&bins, &seen.0),
        &category_shares(&bins, &seen.1),
    );
    assert!((label.raw.unwrap() - own).abs() < 1e-9);
    assert!(label.value > Some(0.2), "label mix moved: {label:?}");
    let score = d.score.unwrap();
    assert!(score.value < Some(0.05), "scores did not move: {score:?}");
    assert_eq!(d.value(), label.value);
    let same = m.output_drift("blue", "blue", now).unwrap();
    assert_eq!(same.value(), Some(0.0));

    // A new rollout (a retry) is judged on its own answers: the windows start empty.
    m.clear_windows();
    let d = m.output_drift("blue", "green", now).unwrap();
    assert_eq!(
        d.value(),
        None,
        "no figure before min_samples answers of the new rollout"
    );
    assert!(m.reference().is_some(), "the reference stays");
}

#[test]
fn the_window_slides_and_old_values_leave_it() {
    let mut g = Normal::new(13);
    let t0 = Instant::now();
    let mut m = numeric_reference(500, &mut g, t0);
    for _ in 0..200 {
        let req = format!(r#"{{"instances":[[{}]]}}"#, g.sample(0.0, 1.0));
        observe(&mut m, "blue", "/v1/models/m:predict", &req, "{}", t0);
    }
    let drift_at = |m: &Monitor, t| feature(&m.report(t, None), "blue", "instances[0]").drift;
    assert_eq!(drift_at(&m, t0).unwrap().samples, 200);
    assert_eq!(
        drift_at(&m, t0 + Duration::from_secs(40)).unwrap().samples,
        200
    );
    let gone = drift_at(&m, t0 + Duration::from_secs(120)).unwrap();
    assert_eq!(
        (gone.value, gone.level, gone.samples, gone.needed),
        (None, Level::Insufficient, 0, drift::MIN_COUNT),
        "too few values: {gone:?}"
    );
}

#[test]
fn a_feature_with_few_distinct_values_gets_fewer_bins() {
    let mut flags: Vec<f64> = (0..1000)
        .map(|i| if i % 10 < 7 { 0.0 } else { 1.0 })
        .collect();
    let Some(Bins::Numeric { edges, shares }) = drift::numeric_bins(&mut flags) else {
        panic!("numeric bins")
    };
    // One edge between the two values: a bin each, none empty.
    assert_eq!(edges, [0.5]);
    assert_eq!(shares, [0.7, 0.3]);
}

#[test]
fn levels_start_at_their_thresholds() {
    let t = Thresholds::default();
    assert_eq!(t.level(0.099), Level::Ok);
    assert_eq!(t.level(0.1), Level::Warn);
    assert_eq!(t.level(0.2), Level::Alert);
}

// === warnings ===

/// A reference of one numeric feature named `name` (none when `name` is `None`).
fn reference_of(name: Option<&str>) -> Reference {
    let json = match name {
        Some(n) => format!(
            r#"{{"version":1,"features":{{"{n}":{{"kind":"numeric","edges":[1.0],"shares":[0.5,0.5]}}}}}}"#
        ),
        None => r#"{"version":1}"#.to_owned(),
    };
    Reference::from_json(json.as_bytes()).unwrap()
}

/// The log lines written while `f` runs.
fn logged(f: impl FnOnce()) -> String {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let text = lines.0.lock().unwrap().clone();
    String::from_utf8(text).unwrap()
}

#[test]
fn a_reference_sharing_no_name_with_the_requests_features_is_warned_of_once() {
    let mut m = Monitor::new(Settings::default()).unwrap();
    m.set_reference(reference_of(Some("input-0[0]")));
    assert!(m.warnings().is_empty(), "no feature seen yet");
    let req = r#"{"instances":[{"sepal_length":5.1,"petal_length":1.4}]}"#;
    let log = logged(|| {
        for _ in 0..3 {
            observe(
                &mut m,
                "blue",
                "/v1/models/m:predict",
                req,
                "{}",
                Instant::now(),
            );
        }
    });
    let warnings = m.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let (kind, text) = &warnings[0];
    assert_eq!(*kind, Warning::NoSharedName);
    for says in ["input-0[0]", "petal_length, sepal_length", "share no name"] {
        assert!(text.contains(says), "{text}");
    }
    assert_eq!(
        log.matches("share no name").count(),
        1,
        "logged once: {log}"
    );
    assert!(log.contains("route=default"), "{log}");
    let report = m.report(Instant::now(), None);
    assert_eq!(report.warnings, std::slice::from_ref(text));

    // A reference that names one of them: no warning.
    m.set_reference(reference_of(Some("sepal_length")));
    assert!(m.warnings().is_empty());
}

#[test]
fn a_reference_of_no_features_is_warned_of() {
    let mut m = Monitor::new(Settings::default()).unwrap();
    m.set_reference(reference_of(None));
    let warnings = m.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].0, Warning::NoFeatures);
    assert!(warnings[0].1.contains("no input features"), "{warnings:?}");

    // Built from requests whose every value is redacted: none, and the warning says why.
    let mut m = Monitor::new(Settings {
        redact: vec!["/inputs/*/data".into()],
        ..settings(5)
    })
    .unwrap();
    m.start_reference("blue");
    let req = r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}"#;
    for _ in 0..5 {
        observe(
            &mut m,
            "blue",
            "/v2/models/m/infer",
            req,
            "{}",
            Instant::now(),
        );
    }
    assert!(m.reference().unwrap().features.is_empty());
    let warnings = m.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].1.contains("no input features") && warnings[0].1.contains("redact"),
        "{warnings:?}"
    );
}

#[test]
fn the_exported_reference_says_why_there_is_none_and_hides_redacted_outputs() {
    let req = r#"{"inputs":[{"name":"x","shape":[1,1],"datatype":"FP32","data":[1]}]}"#;
    let answer = r#"{"outputs":[{"name":"label","shape":[1,1],"datatype":"INT64","data":[7]}]}"#;
    for (redact, outputs_shown) in [(vec![], true), (vec!["/outputs".to_owned()], false)] {
        let mut m = Monitor::new(Settings {
            redact,
            ..settings(3)
        })
        .unwrap();
        m.start_reference("blue");
        observe(
            &mut m,
            "blue",
            "/v2/models/m/infer",
            req,
            answer,
            Instant::now(),
        );
        let why = m.reference_in_use().unwrap_err();
        assert!(
            why.contains("building") && why.contains("blue: 1 of 3"),
            "{why}"
        );
        for _ in 0..2 {
            observe(
                &mut m,
                "blue",
                "/v2/models/m/infer",
                req,
                answer,
                Instant::now(),
            );
        }
        let exported = m.reference_in_use().unwrap();
        assert!(exported.features.contains_key("x[0]"));
        assert_eq!(
            exported.outputs.label.is_some(),
            outputs_shown,
            "{exported:?}"
        );
        // The monitor still measures output drift on them.
        assert!(m.reference().unwrap().outputs.label.is_some());
    }
}

#[test]
fn validation_warns_of_a_reference_file_of_no_features_or_of_none_configured() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, reference: Reference| {
        let path = dir.path().join(name);
        std::fs::write(&path, reference.to_json()).unwrap();
        path
    };
    let with = |path, features: Vec<FeatureSpec>| Settings {
        reference: ReferenceSettings {
            file: Some(path),
            ..ReferenceSettings::default()
        },
        features,
        ..Settings::default()
    };
    let sepal = || FeatureSpec {
        name: "sepal_length".into(),
        input: Some("input-0".into()),
        column: Some(0),
        pointer: None,
        kind: None,
    };
    let none = file("none.json", reference_of(None));
    let w = with(none, Vec::new()).reference_warnings();
    assert!(
        w.len() == 1 && w[0].contains("has no input features"),
        "{w:?}"
    );

    let captured = file("captured.json", reference_of(Some("input-0[0]")));
    assert!(with(captured.clone(), Vec::new())
        .reference_warnings()
        .is_empty());
    let w = with(captured, vec![sepal()]).reference_warnings();
    assert!(
        w.len() == 1 && w[0].contains("input-0[0]") && w[0].contains("sepal_length"),
        "{w:?}"
    );
    let named = file("named.json", reference_of(Some("sepal_length")));
    assert!(with(named, vec![sepal()]).reference_warnings().is_empty());
}

// === the reference file ===

#[test]
fn a_reference_file_round_trips_and_bad_ones_are_refused() {
    let file = r#"{"version":1,"requests":10,
        "features":{"x":{"kind":"numeric","edges":[1.0,2.0],"shares":[0.25,0.5,0.25]},
                    "c":{"kind":"categorical","shares":{"a":0.5},"other":0.5}},
        "outputs":{"score":{"kind":"numeric","edges":[0.5],"shares":[0.5,0.5]}}}"#;
    let r = Reference::from_json(file.as_bytes()).unwrap();
    assert_eq!(Reference::from_json(r.to_json().as_bytes()).unwrap(), r);

    let mut m = Monitor::new(Settings::default()).unwrap();
    m.set_reference(r.clone());
    assert_eq!(m.reference(), Some(r));

    for (bad, why) in [
        (r#"{"version":2}"#, "version 2"),
        (
            r#"{"version":1,"features":{"x":{"kind":"numeric","edges":[2.0,1.0],"shares":[0.3,0.3,0.4]}}}"#,
            "ascending",
        ),
        (
            r#"{"version":1,"features":{"x":{"kind":"numeric","edges":[1.0],"shares":[1.0]}}}"#,
            "need 2 shares",
        ),
        (
            r#"{"version":1,"features":{"c":{"kind":"categorical","shares":{"a":0.2},"other":0.3}}}"#,
            "add up to",
        ),
        (r#"{"version":1,"extra":true}"#, "unknown field"),
    ] {
        let e = Reference::from_json(bad.as_bytes()).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn a_reference_beyond_its_stated_caps_is_refused_before_it_is_kept() {
    use super::drift::{MAX_REFERENCE_BINS, MAX_REFERENCE_BYTES, MAX_REFERENCE_FEATURES};
    let feature = r#"{"kind":"categorical","shares":{},"other":1.0}"#;
    let features: Vec<String> = (0..=MAX_REFERENCE_FEATURES)
        .map(|i| format!(r#""f{i}":{feature}"#))
        .collect();
    let many = format!(r#"{{"version":1,"features":{{{}}}}}"#, features.join(","));
    let e = Reference::from_json(many.as_bytes()).unwrap_err();
    assert!(e.contains("more than the 4096"), "{e}");

    let edges: Vec<String> = (0..=MAX_REFERENCE_BINS).map(|i| i.to_string()).collect();
    let mut shares = vec!["0".to_string(); MAX_REFERENCE_BINS + 1];
    shares.push("1".into());
    let wide = format!(
        r#"{{"version":1,"features":{{"x":{{"kind":"numeric","edges":[{}],"shares":[{}]}}}}}}"#,
        edges.join(","),
        shares.join(",")
    );
    let e = Reference::from_json(wide.as_bytes()).unwrap_err();
    assert!(e.contains("1025 bins"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let large = dir.path().join("reference.json");
    let f = std::fs::File::create(&large).unwrap();
    f.set_len(MAX_REFERENCE_BYTES + 1).unwrap();
    let e = Reference::load(&large).unwrap_err();
    assert!(e.contains("larger than 16 MiB"), "{e}");
}

#[test]
fn settings_report_every_problem() {
    let s = Settings {
        sample: 120.0,
        max_features: 0,
        drift: Thresholds {
            warn: 0.3,
            alert: 0.2,
        },
        reference: ReferenceSettings {
            from: Some(ReferenceFrom::Stable),
            requests: 1000,
            file: Some("baselines/iris.json".into()),
        },
        features: vec![FeatureSpec {
            name: "c".into(),
            input: None,
            column: None,
            pointer: Some("instances/*".into()),
            kind: None,
        }],
        ..Settings::default()
    };
    let e = Monitor::new(s).unwrap_err();
    for part in [
        "sample",
        "max_features",
        "drift",
        "from or file",
        "must start with '/'",
    ] {
        assert!(e.contains(part), "{part} in {e}");
    }
}

#[test]
fn settings_read_the_yaml_the_spec_shows() {
    let yaml = r#"
sample: 10
protocol: auto
features:
  - { name: petal_length, input: input-0, column: 2 }
  - { name: country, pointer: /instances/*/country, kind: categorical }
max_features: 256
reference: { from: stable, requests: 1000 }
drift: { warn: 0.1, alert: 0.2 }
"#;
    let s: Settings = serde_yaml::from_str(yaml).unwrap();
    assert_eq!(s.features.len(), 2);
    assert_eq!(s.features[1].kind, Some(Kind::Categorical));
    assert_eq!(s.reference.from, Some(ReferenceFrom::Stable));
    assert!(Monitor::new(s).is_ok());
}

#[test]
fn backends_beyond_the_cap_are_dropped_and_counted() {
    let mut m = Monitor::new(Settings::default()).unwrap();
    for i in 0..MAX_BACKENDS + 3 {
        let name = format!("b{i}");
        observe(
            &mut m,
            &name,
            "/v2/models/iris/infer",
            IRIS_REQUEST,
            IRIS_ANSWER,
            Instant::now(),
        );
    }
    let r = m.report(Instant::now(), None);
    assert_eq!(r.backends.len(), MAX_BACKENDS);
    assert_eq!(r.samples.dropped, 3);
}

// === hostile bodies: sizes from the wire are checked, never trusted ===

#[test]
fn a_shape_whose_product_overflows_is_not_believed() {
    // 12297829382473034411 × 3 wraps to 1 in 64 bits: the one value must not be read as
    // a row of three columns.
    let poisonous = r#"{"inputs":[{"name":"x","shape":[12297829382473034411,3],"datatype":"FP32","data":[1.5]}]}"#;
    let zero =
        r#"{"inputs":[{"name":"y","shape":[0,18446744073709551615],"datatype":"FP32","data":[]}]}"#;
    let huge = r#"{"inputs":[{"name":"z","shape":[4294967296,4294967296,1],"datatype":"FP32","data":[2.5]}]}"#;
    let mut m = Monitor::new(Settings::default()).unwrap();
    for request in [poisonous, zero, huge] {
        observe(
            &mut m,
            "blue",
            "/v2/models/m/infer",
            request,
            "{}",
            Instant::now(),
        );
    }
    let r = m.report(Instant::now(), None);
    assert_eq!(r.samples.parsed, 3);
    let names: Vec<&str> = r.backends[0].features.iter().map(|f| &*f.name).collect();
    assert_eq!(
        names,
        ["x[0]", "z[0]"],
        "read by the nesting: one column each"
    );
    assert_eq!(feature(&r, "blue", "x[0]").count, 1);
    assert_eq!(r.untracked_values, 0);
}

#[test]
fn an_openai_choice_index_sizes_nothing_beyond_the_choices_there_are() {
    let hostile =
        r#"{"choices":[{"index":4294967295,"message":{"content":"hi"},"finish_reason":"stop"}]}"#;
    let p = parse("/v1/chat/completions", CHAT_REQUEST, hostile);
    assert!(p.predictions.is_empty(), "{:?}", p.predictions);
    assert_eq!(p.over_cap, 1);
    let large = r#"{"choices":[{"index":20000000,"text":"a"},{"index":0,"text":"bc","finish_reason":"stop"}]}"#;
    let p = parse("/v1/completions", r#"{"prompt":"x"}"#, large);
    assert_eq!(p.predictions.len(), 1);
    assert_eq!(p.predictions[0].score, Some(2.0));
    assert_eq!(p.over_cap, 1);
    // A stream may name its choices in any order: indexes below the choices it holds.
    let stream = concat!(
        "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"ab\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"c\"},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"choices\":[{\"index\":1,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
    );
    let p = parse("/v1/chat/completions", CHAT_REQUEST, stream);
    let labels: Vec<_> = p.predictions.iter().map(|p| p.label.as_deref()).collect();
    assert_eq!(labels, [Some("stop"), Some("length")]);
    assert_eq!(p.over_cap, 0);

    // Through the monitor: counted, not read.
    let mut m = Monitor::new(Settings::default()).unwrap();
    observe(
        &mut m,
        "green",
        "/v1/chat/completions",
        CHAT_REQUEST,
        hostile,
        Instant::now(),
    );
    let r = m.report(Instant::now(), None);
    assert_eq!(r.backends[0].outputs.over_cap, 1);
    assert_eq!(r.backends[0].outputs.rows, 0);
}

#[test]
fn an_answer_gives_at_most_max_rows_predictions() {
    let rows = vec!["1"; crate::wire::MAX_ROWS + 5].join(",");
    let answer = format!(r#"{{"predictions":[{rows}]}}"#);
    let p = parse("/v1/models/m:predict", r#"{"instances":[[1]]}"#, &answer);
    assert_eq!(p.predictions.len(), crate::wire::MAX_ROWS);
    assert_eq!(p.over_cap, 5);
}

#[test]
fn a_request_gives_at_most_max_cells_values() {
    let n = features::MAX_CELLS + 10;
    let data = vec!["1"; n].join(",");
    let request = format!(
        r#"{{"inputs":[{{"name":"x","shape":[{n}],"datatype":"INT32","data":[{data}]}}]}}"#
    );
    let mut m = Monitor::new(Settings::default()).unwrap();
    observe(
        &mut m,
        "blue",
        "/v2/models/m/infer",
        &request,
        "{}",
        Instant::now(),
    );
    let r = m.report(Instant::now(), None);
    let x = feature(&r, "blue", "x[0]");
    assert_eq!(x.count, features::MAX_CELLS as u64);
    assert_eq!(r.untracked_values, 10);
    // The rows the request has are still its rows, and none is counted absent.
    assert_eq!(r.backends[0].rows.unwrap().max, n as f64);
}

/// A V2 request of one row with `cols` columns of tensor `name`.
fn wide(name: &str, cols: usize) -> String {
    let data = vec!["0.5"; cols].join(",");
    format!(
        r#"{{"inputs":[{{"name":"{name}","shape":[1,{cols}],"datatype":"FP32","data":[{data}]}}]}}"#
    )
}

#[test]
fn v1_and_v2_share_the_feature_slots_under_auto() {
    let mut m = Monitor::new(Settings::default()).unwrap();
    let share = features::Schema::share(256);
    assert_eq!(share, 127);
    observe(
        &mut m,
        "blue",
        "/v2/models/m/infer",
        &wide("w", 300),
        "{}",
        Instant::now(),
    );
    let v1 = r#"{"instances":[{"age":41,"country":"FR"}]}"#;
    observe(
        &mut m,
        "blue",
        "/v1/models/m:predict",
        v1,
        r#"{"predictions":[1]}"#,
        Instant::now(),
    );
    observe(
        &mut m,
        "blue",
        "/v1/chat/completions",
        CHAT_REQUEST,
        CHAT_ANSWER,
        Instant::now(),
    );
    let r = m.report(Instant::now(), None);
    let names: Vec<&str> = r.backends[0].features.iter().map(|f| &*f.name).collect();
    assert_eq!(names.iter().filter(|n| n.starts_with("w[")).count(), share);
    for name in ["age", "country", "messages", "prompt_chars"] {
        assert!(names.contains(&name), "{name} has no slot: {names:?}");
    }
    assert_eq!(r.untracked_values, (300 - share) as u64);
}

#[test]
fn a_new_rollout_frees_the_slots_discovered_features_took() {
    let s = Settings {
        max_features: 8,
        protocol: Protocol::V2,
        ..Settings::default()
    };
    let mut m = Monitor::new(s).unwrap();
    observe(
        &mut m,
        "blue",
        "/v2/models/m/infer",
        &wide("w", 300),
        "{}",
        Instant::now(),
    );
    observe(
        &mut m,
        "blue",
        "/v2/models/m/infer",
        &wide("x", 2),
        "{}",
        Instant::now(),
    );
    let names = |m: &Monitor| -> Vec<String> {
        let r = m.report(Instant::now(), None);
        r.backends[0]
            .features
            .iter()
            .map(|f| f.name.clone())
            .collect()
    };
    assert!(
        names(&m).iter().all(|n| n.starts_with("w[")),
        "{:?}",
        names(&m)
    );

    m.forget_discovered();
    observe(
        &mut m,
        "blue",
        "/v2/models/m/infer",
        &wide("x", 2),
        "{}",
        Instant::now(),
    );
    assert_eq!(names(&m), ["x[0]", "x[1]"]);
    let r = m.report(Instant::now(), None);
    assert_eq!(feature(&r, "blue", "x[0]").count, 1, "counted afresh");
}

#[test]
fn values_under_a_redact_pointer_are_counted_never_shown() {
    let s = Settings {
        redact: vec!["/instances/*/card".into(), "/predictions/*/label".into()],
        features: Vec::new(),
        ..Settings::default()
    };
    let mut m = Monitor::new(s).unwrap();
    for i in 0..20 {
        let request = format!(
            r#"{{"instances":[{{"card":"4111111111111111","pin":{i},"country":"FR"}},{{"card":null,"country":"DE"}}]}}"#
        );
        let answer =
            r#"{"predictions":[{"label":"fraud","score":0.9},{"label":"ok","score":0.2}]}"#;
        observe(
            &mut m,
            "blue",
            "/v1/models/m:predict",
            &request,
            answer,
            Instant::now(),
        );
    }
    let r = m.report(Instant::now(), None);
    let card = feature(&r, "blue", "card");
    assert!(card.redacted);
    assert_eq!(card.count, 20);
    assert_eq!(card.missing.null, 20);
    assert!(card.top.is_empty() && card.quantiles.is_none() && card.drift.is_none());
    let country = feature(&r, "blue", "country");
    assert!(!country.redacted);
    assert_eq!(country.top.len(), 2, "other features are shown");
    assert!(feature(&r, "blue", "pin").quantiles.is_some());
    let outputs = &r.backends[0].outputs;
    assert!(outputs.redacted && outputs.labels.is_empty() && outputs.scores.is_none());
    assert_eq!(outputs.rows, 40);
    let shown = serde_json::to_string(&r).unwrap();
    assert!(
        !shown.contains("4111111111111111") && !shown.contains("fraud"),
        "{shown}"
    );
}

#[test]
fn a_redact_pointer_hides_tensor_columns_and_pointer_features() {
    let s = Settings {
        redact: vec!["/inputs/secret/data".into(), "/parameters/user".into()],
        features: vec![FeatureSpec {
            name: "user".into(),
            input: None,
            column: None,
            pointer: Some("/parameters/user".into()),
            kind: None,
        }],
        ..Settings::default()
    };
    let mut m = Monitor::new(s.clone()).unwrap();
    let request = r#"{"parameters":{"user":"alice"},"inputs":[{"name":"secret","shape":[1,2],"datatype":"BYTES","data":["a","b"]}]}"#;
    observe(
        &mut m,
        "blue",
        "/v2/models/m/infer",
        request,
        "{}",
        Instant::now(),
    );
    let r = m.report(Instant::now(), None);
    let user = feature(&r, "blue", "user");
    assert!(user.redacted && user.top.is_empty() && user.count == 1);

    let discover = Settings {
        features: Vec::new(),
        ..s
    };
    let mut m = Monitor::new(discover).unwrap();
    let request = r#"{"inputs":[{"name":"secret","shape":[1,2],"datatype":"BYTES","data":["4111","x"]},{"name":"plain","shape":[1],"datatype":"BYTES","data":["shown"]}]}"#;
    observe(
        &mut m,
        "blue",
        "/v2/models/m/infer",
        request,
        "{}",
        Instant::now(),
    );
    let r = m.report(Instant::now(), None);
    for name in ["secret[0]", "secret[1]"] {
        let f = feature(&r, "blue", name);
        assert!(f.redacted && f.top.is_empty() && f.count == 1, "{f:?}");
    }
    assert_eq!(feature(&r, "blue", "plain[0]").top[0].value, "shown");
}

// === drift that does not cry wolf ===

/// Thirteen distinct scores, 0.2 to 0.8 by 0.05, most of them near the middle: a model
/// whose scores take few values (a small tree, rounded probabilities).
const THIRTEEN: [(f64, f64); 13] = {
    let weights = [1., 2., 4., 7., 10., 13., 15., 13., 10., 7., 4., 2., 1.];
    let mut out = [(0.0, 0.0); 13];
    let mut i = 0;
    while i < 13 {
        out[i] = (0.2 + 0.05 * i as f64, weights[i] / 89.0);
        i += 1;
    }
    out
};

impl Normal {
    /// One of the [`THIRTEEN`] scores, drawn with their shares.
    fn thirteen(&mut self) -> f64 {
        let mut u: f64 = self.0.random();
        for (v, share) in THIRTEEN {
            if u < share {
                return v;
            }
            u -= share;
        }
        THIRTEEN[12].0
    }
}

/// A monitor whose reference is `blue`'s first 1 000 answers, each `answer(g)`.
fn output_reference(g: &mut Normal, answer: impl Fn(&mut Normal) -> String) -> Monitor {
    let mut m = Monitor::new(settings(1000)).unwrap();
    m.start_reference("blue");
    let now = Instant::now();
    for _ in 0..1000 {
        let a = answer(g);
        observe(&mut m, "blue", "/v1/models/m:predict", "{}", &a, now);
    }
    assert!(m.reference().is_some());
    m
}

/// The output drift of `trials` windows of `n` answers a side, each side's answers drawn
/// by its own function, sorted; every window must give a figure.
fn output_drift_trials(
    m: &mut Monitor,
    g: &mut Normal,
    trials: usize,
    n: usize,
    stable: impl Fn(&mut Normal) -> String,
    candidate: impl Fn(&mut Normal) -> String,
) -> Vec<f64> {
    let now = Instant::now();
    let mut figures: Vec<f64> = (0..trials)
        .map(|_| {
            m.clear_windows();
            for _ in 0..n {
                let (s, c) = (stable(g), candidate(g));
                observe(m, "blue", "/v1/models/m:predict", "{}", &s, now);
                observe(m, "green", "/v1/models/m:predict", "{}", &c, now);
            }
            let d = m.output_drift("blue", "green", now).unwrap();
            d.value()
                .unwrap_or_else(|| panic!("no figure at {n} a side: {d:?}"))
        })
        .collect();
    figures.sort_by(f64::total_cmp);
    figures
}

/// The `q`-quantile of sorted figures.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[test]
fn a_near_identical_model_with_13_distinct_scores_holds_output_drift_well_under_0_1() {
    let mut g = Normal::new(23);
    let score = |v: f64| format!(r#"{{"predictions":[{v}]}}"#);
    let mut m = output_reference(&mut g, |g| score(g.thirteen()));
    // A retrained model: the same scores for the same inputs, each a little higher.
    let figures = output_drift_trials(
        &mut m,
        &mut g,
        200,
        300,
        |g| score(g.thirteen()),
        |g| score(g.thirteen() + 0.002),
    );
    let (median, p99) = (quantile(&figures, 0.5), quantile(&figures, 0.99));
    assert_eq!(median, 0.0, "noise is not read as drift: {figures:?}");
    assert!(p99 < 0.1, "99th percentile {p99}: {figures:?}");

    // A model whose scores moved two values up is still caught in every window.
    let figures = output_drift_trials(
        &mut m,
        &mut g,
        200,
        300,
        |g| score(g.thirteen()),
        |g| score(g.thirteen() + 0.1),
    );
    assert!(figures[0] > 0.2, "a shifted model read {}", figures[0]);
}

#[test]
fn an_equal_label_mix_holds_output_drift_well_under_0_1_and_a_moved_one_does_not() {
    const EQUAL: [(&str, f64); 3] = [("cat", 1.0 / 3.0), ("dog", 1.0 / 3.0), ("fox", 1.0 / 3.0)];
    const MOVED: [(&str, f64); 3] = [("cat", 0.7), ("dog", 0.2), ("fox", 0.1)];
    let mut g = Normal::new(29);
    let label = |l: &str| format!(r#"{{"predictions":["{l}"]}}"#);
    let mut m = output_reference(&mut g, |g| label(g.pick(&EQUAL)));
    let figures = output_drift_trials(
        &mut m,
        &mut g,
        200,
        400,
        |g| label(g.pick(&EQUAL)),
        |g| label(g.pick(&EQUAL)),
    );
    let (median, p99) = (quantile(&figures, 0.5), quantile(&figures, 0.99));
    assert_eq!(median, 0.0, "noise is not read as drift: {figures:?}");
    assert!(p99 < 0.1, "99th percentile {p99}: {figures:?}");

    let figures = output_drift_trials(
        &mut m,
        &mut g,
        200,
        400,
        |g| label(g.pick(&EQUAL)),
        |g| label(g.pick(&MOVED)),
    );
    assert!(
        figures[0] > 0.2,
        "a moved mix read {}: {figures:?}",
        figures[0]
    );
}

#[test]
fn a_no_drift_window_of_the_minimum_count_stays_under_warn() {
    let mut g = Normal::new(31);
    let now = Instant::now();
    let mut m = numeric_reference(1000, &mut g, now);
    let n = drift::MIN_COUNT;
    let windows = 500;
    let mut over_warn = 0;
    for _ in 0..windows {
        m.clear_windows();
        for _ in 0..n {
            let req = format!(r#"{{"instances":[[{}]]}}"#, g.sample(0.0, 1.0));
            observe(&mut m, "blue", "/v1/models/m:predict", &req, "{}", now);
        }
        let d = feature(&m.report(now, None), "blue", "instances[0]")
            .drift
            .unwrap();
        assert_eq!(d.samples, n);
        if d.level != Level::Ok {
            over_warn += 1;
        }
    }
    assert!(
        over_warn * 100 <= windows,
        "{over_warn} of {windows} windows of {n} values read warn or alert"
    );
}

#[test]
fn below_the_minimum_count_a_drift_shows_its_count_and_no_level() {
    let mut g = Normal::new(37);
    let now = Instant::now();
    let req = |g: &mut Normal| format!(r#"{{"instances":[[{}]]}}"#, g.sample(0.0, 1.0));
    let answer = |g: &mut Normal| format!(r#"{{"predictions":[{}]}}"#, g.sample(0.5, 0.1));
    let mut m = Monitor::new(settings(500)).unwrap();
    m.start_reference("blue");
    for _ in 0..500 {
        let (r, a) = (req(&mut g), answer(&mut g));
        observe(&mut m, "blue", "/v1/models/m:predict", &r, &a, now);
    }
    let short = drift::MIN_COUNT - 1;
    for _ in 0..short {
        let (r, a) = (req(&mut g), answer(&mut g));
        observe(&mut m, "blue", "/v1/models/m:predict", &r, &a, now);
        let (r, a) = (req(&mut g), answer(&mut g));
        observe(&mut m, "green", "/v1/models/m:predict", &r, &a, now);
    }
    let json = |m: &Monitor| serde_json::to_value(m.report(now, Some(("blue", "green")))).unwrap();
    let r = json(&m);
    let drift = &r["backends"][0]["features"][0]["drift"];
    assert_eq!(
        *drift,
        serde_json::json!({
            "metric": "psi", "value": null, "raw": null, "level": "insufficient",
            "samples": short, "needed": drift::MIN_COUNT,
            "reason": "too few values in the window",
        })
    );
    let score = &r["output_drift"]["score"];
    assert_eq!(score["level"], "insufficient", "{score:#}");
    assert_eq!(score["value"], serde_json::Value::Null);
    assert_eq!(
        (score["samples"].as_u64(), score["needed"].as_u64()),
        (Some(short), Some(200))
    );
    assert!(
        score["reason"].as_str().unwrap().contains("too few"),
        "{score:#}"
    );
    assert_eq!(m.output_drift("blue", "green", now).unwrap().value(), None);

    // One more value a side: every figure, with its count beside it.
    let (r, a) = (req(&mut g), answer(&mut g));
    observe(&mut m, "blue", "/v1/models/m:predict", &r, &a, now);
    let (r, a) = (req(&mut g), answer(&mut g));
    observe(&mut m, "green", "/v1/models/m:predict", &r, &a, now);
    let r = json(&m);
    for drift in [
        &r["backends"][0]["features"][0]["drift"],
        &r["backends"][1]["features"][0]["drift"],
        &r["output_drift"]["score"],
    ] {
        assert!(
            drift["value"].is_f64() && drift["raw"].is_f64(),
            "{drift:#}"
        );
        assert_eq!(drift["samples"], drift::MIN_COUNT, "{drift:#}");
        assert_ne!(drift["level"], "insufficient", "{drift:#}");
        assert!(drift.get("reason").is_none(), "{drift:#}");
    }
}

#[test]
fn bins_never_split_a_value_and_hold_a_twentieth_of_the_sample_each() {
    let mut g = Normal::new(41);
    let mut scores: Vec<f64> = (0..1000).map(|_| g.thirteen()).collect();
    let Some(Bins::Numeric { edges, shares }) = drift::numeric_bins(&mut scores) else {
        panic!("numeric bins")
    };
    let values: Vec<f64> = THIRTEEN.iter().map(|t| t.0).collect();
    for e in &edges {
        // Every edge lies strictly between two neighbouring values, halfway.
        let above = values.iter().position(|v| v > e).unwrap();
        let (lo, hi) = (values[above - 1], values[above]);
        assert!((e - (lo + hi) / 2.0).abs() < 1e-12, "edge {e} in {edges:?}");
    }
    assert!(shares.iter().all(|&s| s >= 0.05), "{shares:?}");
    assert!(shares.len() <= drift::BINS, "{shares:?}");
    // A value a little off lands where the value does.
    let bins = Bins::Numeric { edges, shares };
    for v in values {
        let at = |x: f64| bins.bin(&stats::Read::Number(x));
        assert_eq!(at(v), at(v + 0.002), "{v}");
        assert_eq!(at(v), at(v - 0.002), "{v}");
    }
    // Continuous values: ten bins of a tenth.
    let mut normal: Vec<f64> = (0..1000).map(|_| g.sample(0.0, 1.0)).collect();
    let Some(Bins::Numeric { shares, .. }) = drift::numeric_bins(&mut normal) else {
        panic!("numeric bins")
    };
    assert_eq!(shares, [0.1; 10]);
}

#[test]
fn a_new_step_empties_the_candidates_output_counts_and_keeps_the_rest() {
    let mut g = Normal::new(43);
    let now = Instant::now();
    let mut m = numeric_reference(500, &mut g, now);
    let answer = r#"{"predictions":[0]}"#;
    for _ in 0..300 {
        for backend in ["blue", "green"] {
            let req = format!(r#"{{"instances":[[{}]]}}"#, g.sample(0.0, 1.0));
            let ex = exchange(backend, "/v1/models/m:predict", &req, answer);
            let p = m.parse(&ex);
            m.observe(&ex, &p, now);
        }
    }
    assert!(m
        .output_drift("blue", "green", now)
        .unwrap()
        .value()
        .is_some());

    m.clear_outputs("blue");
    let d = m.output_drift("blue", "green", now).unwrap();
    let label = d.label.unwrap();
    assert_eq!((label.value, label.samples), (None, 0), "{d:?}");
    assert_eq!(
        label.reason,
        Some("too few candidate answers in the window")
    );
    // The stable's answers stay: the candidate's 300 of the new step are compared with them.
    let answer = r#"{"predictions":[0]}"#;
    for _ in 0..300 {
        let ex = exchange("green", "/v1/models/m:predict", "{}", answer);
        let p = m.parse(&ex);
        m.observe(&ex, &p, now);
    }
    let label = m.output_drift("blue", "green", now).unwrap().label.unwrap();
    assert_eq!((label.value, label.samples), (Some(0.0), 300), "{label:?}");
    let f = feature(&m.report(now, None), "blue", "instances[0]")
        .drift
        .unwrap();
    assert_eq!(f.samples, 300, "the feature window stays: {f:?}");
    assert!(f.value.is_some());
}

/// Prints the share of no-drift windows whose figure reaches `warn` (0.1) and `alert`
/// (0.2), at several window sizes, as `docs/monitoring.md` shows them:
/// `cargo test --release --lib monitor::tests::measure_no_drift -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_no_drift_false_alerts() {
    let t = Thresholds::default();
    let mut g = Normal::new(1);
    let trials = 2000;
    let count = |edges: &[f64], values: &[f64]| {
        let mut c = vec![0u64; edges.len() + 1];
        for v in values {
            c[edges.partition_point(|e| e < v)] += 1;
        }
        c
    };
    let categories = |k: usize, zipf: bool| -> Vec<f64> {
        let w: Vec<f64> = (0..k)
            .map(|i| if zipf { 1.0 / (i as f64 + 1.0) } else { 1.0 })
            .collect();
        let total: f64 = w.iter().sum();
        w.iter().map(|x| x / total).collect()
    };
    let pick = |g: &mut Normal, p: &[f64]| {
        let mut u: f64 = g.0.random();
        for (i, s) in p.iter().enumerate() {
            if u < *s {
                return i;
            }
            u -= s;
        }
        p.len() - 1
    };
    println!("| case | n | corrected ≥ warn | ≥ alert | 99th pct | raw ≥ warn | ≥ alert |");
    for (case, two_sided) in [
        ("numeric feature (normal) vs a reference of 1 000", false),
        (
            "categorical feature, 3 values, vs a reference of 1 000",
            false,
        ),
        (
            "categorical feature, 21 values (Zipf), vs a reference of 1 000",
            false,
        ),
        ("output scores, 13 distinct values, two samples", true),
        ("output scores, continuous, two samples", true),
        ("output labels, 3 equal, two samples", true),
    ] {
        for n in [42u64, 100, 200, 300, 400, 600] {
            let mut figures = Vec::new();
            let (mut warn, mut alert, mut raw_warn, mut raw_alert) = (0, 0, 0, 0);
            for _ in 0..trials {
                let d = if case.contains("numeric") || case.contains("scores") {
                    let draw = |g: &mut Normal| {
                        if case.contains("13") {
                            g.thirteen()
                        } else {
                            g.sample(0.0, 1.0)
                        }
                    };
                    let mut r: Vec<f64> = (0..1000).map(|_| draw(&mut g)).collect();
                    let Some(Bins::Numeric { edges, shares }) = drift::numeric_bins(&mut r) else {
                        panic!()
                    };
                    let a: Vec<f64> = (0..n).map(|_| draw(&mut g)).collect();
                    let (expected, expected_n) = if two_sided {
                        let s: Vec<f64> = (0..n).map(|_| draw(&mut g)).collect();
                        (drift::shares(&count(&edges, &s)), n)
                    } else {
                        (shares, 1000)
                    };
                    Drift::of(
                        Kind::Numeric,
                        &expected,
                        Some(expected_n),
                        &count(&edges, &a),
                        &t,
                        1,
                    )
                } else {
                    let k = if case.contains("21") { 21 } else { 3 };
                    let p = categories(k, case.contains("Zipf"));
                    let p = if case.contains("3 values") {
                        vec![0.5, 0.3, 0.2]
                    } else {
                        p
                    };
                    let mut a = vec![0u64; k];
                    (0..n).for_each(|_| a[pick(&mut g, &p)] += 1);
                    let side = if two_sided { n } else { 1000 };
                    let mut e = vec![0u64; k];
                    (0..side).for_each(|_| e[pick(&mut g, &p)] += 1);
                    Drift::figure(Metric::Js, &drift::shares(&e), Some(side), &a, &t)
                };
                let (v, r) = (d.value.unwrap(), d.raw.unwrap());
                figures.push(v);
                warn += u32::from(v >= t.warn);
                alert += u32::from(v >= t.alert);
                raw_warn += u32::from(r >= t.warn);
                raw_alert += u32::from(r >= t.alert);
            }
            figures.sort_by(f64::total_cmp);
            let pct = |x: u32| 100.0 * f64::from(x) / trials as f64;
            println!(
                "| {case} | {n} | {:.1} % | {:.1} % | {:.3} | {:.1} % | {:.1} % |",
                pct(warn),
                pct(alert),
                quantile(&figures, 0.99),
                pct(raw_warn),
                pct(raw_alert)
            );
        }
    }
}
