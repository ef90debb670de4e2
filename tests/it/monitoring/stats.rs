//! What `GET /api/v1/monitor` and `/metrics` report when known data goes through the
//! proxy: missing values counted exactly by kind, quantiles within the sketch's stated
//! error, and drift figures (PSI for a numeric feature, Jensen-Shannon distance for a
//! categorical one) equal to the ones this file computes itself on the reference's bins.
//!
//! Each test has a route of its own, so the process-wide `/metrics` series it reads are
//! its own too.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard::monitor::drift::EPSILON;
use switchyard::monitor::stats::RELATIVE_ACCURACY;
use switchyard::monitor::{baseline, Bins};

use crate::support::config::{Analysis, TestConfig};
use crate::support::{eventually, ProxyHarness};

// === helpers ===

/// A small deterministic generator (xorshift64*), so every run sends the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in (0, 1).
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Normal with mean `mean` and standard deviation `sd` (Box-Muller), to 3 decimals.
    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
        round3(mean + sd * z)
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// `v` as JSON writes it with 3 decimals, read back: what the proxy and the CSV both see.
fn round3(v: f64) -> f64 {
    format!("{v:.3}").parse().unwrap()
}

/// A V2 request of one FP32 tensor `tensor` with one column: `values`, one per row.
fn v2_column(tensor: &str, values: &[f64]) -> String {
    json!({
        "inputs": [{ "name": tensor, "shape": [values.len(), 1], "datatype": "FP32", "data": values }]
    })
    .to_string()
}

async fn post(h: &ProxyHarness, path: &str, body: &str) {
    let a = h
        .send(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            body,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{path}: {:?}", a.body);
}

/// Sends `values` as V2 requests of `rows` rows each to `/v2/models/m/infer`.
async fn send_column(h: &ProxyHarness, tensor: &str, values: &[f64], rows: usize) {
    for chunk in values.chunks(rows) {
        post(h, "/v2/models/m/infer", &v2_column(tensor, chunk)).await;
    }
}

/// `GET /api/v1/routes/ROUTE/monitor`.
async fn monitor(h: &ProxyHarness, route: &str) -> Value {
    let a = h
        .admin(
            Method::GET,
            &format!("/api/v1/routes/{route}/monitor"),
            None,
            "",
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    a.json()
}

/// Waits (bounded) until the monitor has parsed `n` sampled requests; returns its report.
async fn parsed(h: &ProxyHarness, route: &str, n: u64) -> Value {
    let what = format!("{n} parsed samples on {route}");
    eventually(&what, Duration::from_millis(20), || async {
        let m = monitor(h, route).await;
        match m["samples"]["parsed"].as_u64() {
            Some(p) if p == n => Ok(m),
            _ => Err(format!("{:#}", m["samples"])),
        }
    })
    .await
}

/// Feature `name` as backend `backend` reports it, if it does.
fn find_feature<'a>(m: &'a Value, backend: &str, name: &str) -> Option<&'a Value> {
    let b = m["backends"]
        .as_array()?
        .iter()
        .find(|b| b["backend"] == backend)?;
    b["features"].as_array()?.iter().find(|f| f["name"] == name)
}

/// Feature `name` as backend `backend` reports it.
fn feature<'a>(m: &'a Value, backend: &str, name: &str) -> &'a Value {
    find_feature(m, backend, name).unwrap_or_else(|| panic!("no {name} at {backend}: {m:#}"))
}

/// The value of the series `name` whose labels include every one of `labels`.
fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    crate::support::metrics::series(text, name, labels)
        .first()
        .copied()
}

/// `values` as `switchyard baseline` reads a table: a header row, then one value a row.
fn csv(column: &str, values: &[f64]) -> String {
    let mut text = format!("{column}\n");
    for v in values {
        text.push_str(&format!("{v}\n"));
    }
    text
}

/// The bin of `v` under `edges`: bin `i` holds the values in `(edges[i-1], edges[i]]`.
fn bin(edges: &[f64], v: f64) -> usize {
    edges.iter().filter(|e| **e < v).count()
}

/// The share of `values` in each of the `edges.len() + 1` bins.
fn numeric_shares(edges: &[f64], values: &[f64]) -> Vec<f64> {
    let mut counts = vec![0usize; edges.len() + 1];
    for v in values {
        counts[bin(edges, *v)] += 1;
    }
    counts
        .iter()
        .map(|c| *c as f64 / values.len() as f64)
        .collect()
}

/// `Σ (q − p) · ln(q / p)`, each share raised to at least EPSILON first.
fn our_psi(expected: &[f64], actual: &[f64]) -> f64 {
    assert_eq!(expected.len(), actual.len());
    expected
        .iter()
        .zip(actual)
        .map(|(p, q)| {
            let (p, q) = (p.max(EPSILON), q.max(EPSILON));
            (q - p) * (q / p).ln()
        })
        .sum()
}

/// Jensen-Shannon distance in base 2: `sqrt(½ KL(p‖m) + ½ KL(q‖m))`, `m` the mean.
fn our_js(p: &[f64], q: &[f64]) -> f64 {
    let kl = |a: &[f64], m: &[f64]| -> f64 {
        a.iter()
            .zip(m)
            .filter(|(x, _)| **x > 0.0)
            .map(|(x, y)| x * (x / y).log2())
            .sum()
    };
    let m: Vec<f64> = p.iter().zip(q).map(|(a, b)| (a + b) / 2.0).collect();
    (0.5 * kl(p, &m) + 0.5 * kl(q, &m)).sqrt()
}

/// The edges switchyard's reference builder makes of `values` (all of them kept: there
/// are fewer than its reservoir of 1 024), read from the reference `baseline` builds.
fn edges_of(column: &str, values: &[f64]) -> Vec<f64> {
    assert!(values.len() <= switchyard::monitor::drift::RESERVOIR);
    let (reference, _) = baseline::from_csv(csv(column, values).as_bytes()).unwrap();
    match &reference.features[column] {
        Bins::Numeric { edges, .. } => edges.clone(),
        other => panic!("{column} is not numeric: {other:?}"),
    }
}

/// Waits (bounded) until the feature's drift rests on `samples` values; returns it.
async fn drift(h: &ProxyHarness, route: &str, name: &str, samples: u64) -> Value {
    let what = format!("{name}'s drift over {samples} values");
    eventually(&what, Duration::from_millis(20), || async {
        let m = monitor(h, route).await;
        let d = find_feature(&m, "blue", name).map(|f| &f["drift"]);
        match d.and_then(|d| d["samples"].as_u64()) {
            Some(n) if n == samples => Ok(d.cloned().unwrap_or_default()),
            _ => Err(format!("{m:#}")),
        }
    })
    .await
}

/// Waits (bounded) until the reference built from the stable's first requests is in use.
async fn reference_built(h: &ProxyHarness, route: &str, requests: u64) {
    eventually("the reference", Duration::from_millis(20), || async {
        let m = monitor(h, route).await;
        let r = &m["reference"];
        if r["in_use"] == true && r["requests"] == requests {
            Ok(())
        } else {
            Err(format!("{r:#}"))
        }
    })
    .await;
}

// === missing values ===

/// V1 instances as objects: keys missing, `null`, `"NaN"`/`"nan"` strings and a bare `NaN`
/// token. Each body is sent the number of times given.
const V1_BODIES: [(&str, usize); 3] = [
    // age: 1 value, 1 null, 2 absent; income: 3 values, 1 NaN.
    (
        r#"{"instances":[{"age":31,"income":1200.5},{"age":null,"income":2000},{"income":"NaN"},{"income":7}]}"#,
        3,
    ),
    // age: 2 values, 1 NaN (bare token), 1 null; income: 1 value, 1 null, 2 absent.
    (
        r#"{"instances":[{"age":45},{"age":NaN,"income":null},{"age":52,"income":3100},{"age":null}]}"#,
        1,
    ),
    // age: 2 NaN, 1 absent; income: 1 value, 1 NaN, 1 null.
    (
        r#"{"instances":[{"age":"nan","income":"NaN"},{"income":900},{"age":"NaN","income":null}]}"#,
        2,
    ),
];

/// V2 rows of two columns with `null` and NaN strings, each body sent once.
const V2_BODIES: [(&str, usize); 2] = [
    (
        r#"{"inputs":[{"name":"mv","shape":[4,2],"datatype":"FP32","data":[1.0,2.0,null,2.5,"NaN",3.0,1.5,null]}]}"#,
        1,
    ),
    (
        r#"{"inputs":[{"name":"mv","shape":[4,2],"datatype":"FP32","data":[2.0,"NaN",null,null,"nan",4.0,null,5.0]}]}"#,
        1,
    ),
];

/// Sends each of `bodies` to `path` its number of times on a route of its own, then checks
/// each `(feature, values, null, NaN, absent)` of `expected` in the monitor and on `/metrics`.
async fn assert_missing(
    route: &'static str,
    path: &str,
    bodies: &[(&str, usize)],
    expected: &[(&str, u64, u64, u64, u64)],
) {
    let config = TestConfig::stable_only()
        .routed(route, "m")
        .monitor(json!({ "sample": 100 }));
    let h = ProxyHarness::start(&config).await;
    let mut sent = 0;
    for (body, times) in bodies {
        for _ in 0..*times {
            post(&h, path, body).await;
            sent += 1;
        }
    }
    let m = parsed(&h, route, sent).await;
    let metrics = h.metrics_text().await;
    for &(name, count, nulls, nans, absents) in expected {
        let f = feature(&m, "blue", name);
        assert_eq!(f["kind"], "numeric", "{f:#}");
        assert_eq!(
            f["missing"],
            json!({ "null": nulls, "nan": nans, "absent": absents }),
            "{name}: {f:#}"
        );
        assert_eq!(f["count"], count, "{name}: {f:#}");
        assert_eq!(f["invalid"], 0, "{name}: {f:#}");
        let total = series(
            &metrics,
            "switchyard_feature_missing_total",
            &[("route", route), ("backend", "blue"), ("feature", name)],
        );
        assert_eq!(
            total,
            Some((nulls + nans + absents) as f64),
            "{name} on /metrics"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_values_of_v1_instances_are_counted_exactly_by_kind() {
    // From the bodies above:
    // age:    values 3·1 + 2 = 5; null 3·1 + 1 = 4; NaN 1 + 2·2 = 5; absent 3·2 + 2·1 = 8
    // income: values 3·3 + 1 + 2·1 = 12; null 1 + 2·1 = 3; NaN 3·1 + 2·1 = 5; absent 2
    let expected = [("age", 5, 4, 5, 8), ("income", 12, 3, 5, 2)];
    assert_missing("missing-v1", "/v1/models/m:predict", &V1_BODIES, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_values_of_v2_tensors_are_counted_exactly_by_kind() {
    // From the bodies above:
    // mv[0]: values 1.0, 1.5, 2.0; null 3; NaN 2 ("NaN", "nan")
    // mv[1]: values 2.0, 2.5, 3.0, 4.0, 5.0; null 2; NaN 1
    let expected = [("mv[0]", 3, 3, 2, 0), ("mv[1]", 5, 2, 1, 0)];
    assert_missing("missing-v2", "/v2/models/m/infer", &V2_BODIES, &expected).await;
}

// === quantiles ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quantiles_are_within_the_sketch_s_stated_error() {
    let config = TestConfig::stable_only()
        .routed("quantiles", "m")
        .monitor(json!({ "sample": 100 }));
    let h = ProxyHarness::start(&config).await;
    let mut values: Vec<f64> = (1..=2000).map(f64::from).collect();
    Rng(0x9e37_79b9_7f4a_7c15).shuffle(&mut values);
    send_column(&h, "q", &values, 25).await;
    let m = parsed(&h, "quantiles", 80).await;

    let f = feature(&m, "blue", "q[0]");
    assert_eq!(f["count"], 2000, "{f:#}");
    let q = &f["quantiles"];
    // Extremes and mean are exact.
    assert_eq!(q["min"], 1.0, "{q:#}");
    assert_eq!(q["max"], 2000.0, "{q:#}");
    assert!((q["mean"].as_f64().unwrap() - 1000.5).abs() < 1e-9, "{q:#}");
    // Each quantile is within RELATIVE_ACCURACY of the true value at its rank,
    // floor(p · (n − 1)) among the sorted values (here the value rank + 1).
    let n = values.len() as f64;
    for (key, p) in [
        ("p01", 0.01),
        ("p05", 0.05),
        ("p25", 0.25),
        ("p50", 0.5),
        ("p75", 0.75),
        ("p95", 0.95),
        ("p99", 0.99),
    ] {
        let exact = (p * (n - 1.0)).floor() + 1.0;
        let got = q[key].as_f64().unwrap_or_else(|| panic!("no {key}: {q:#}"));
        let error = (got - exact).abs() / exact;
        assert!(
            error <= RELATIVE_ACCURACY + 1e-12,
            "{key}: {got} against {exact} ({:.3} % off)",
            error * 100.0
        );
    }
}

// === PSI ===

/// The route's numeric feature: the first column of tensor `x`. The test's one client
/// stands for every user: no share bound.
fn psi_monitor(reference: Value) -> TestConfig {
    TestConfig::stable_only()
        .routed("psi", "m")
        .analysis(Analysis::new("10s", "60s", 100, 3).max_client_share(1.0))
        .monitor(json!({
            "sample": 100,
            "features": [{ "name": "petal_length", "input": "x", "column": 0 }],
            "reference": reference,
        }))
}

/// 1 000 values of a normal distribution (sd 1) around `mean`.
fn sample(seed: u64, mean: f64) -> Vec<f64> {
    let mut rng = Rng(seed);
    (0..1000).map(|_| rng.normal(mean, 1.0)).collect()
}

/// Feeds the reference (100 requests of 10 values) to a fresh proxy building its
/// reference from them, then `window`; returns the feature's drift once it rests on every
/// value of `window`.
async fn live_psi(reference: &[f64], window: &[f64]) -> Value {
    let h = ProxyHarness::start(&psi_monitor(json!({ "requests": 100 }))).await;
    send_column(&h, "x", reference, 10).await;
    reference_built(&h, "psi", 100).await;
    send_column(&h, "x", window, 10).await;
    drift(&h, "psi", "petal_length", window.len() as u64).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psi_against_a_reference_from_the_stable_s_first_requests() {
    let reference = sample(1, 5.0);
    let edges = edges_of("petal_length", &reference);
    assert_eq!(edges.len(), 9, "deciles of distinct values: {edges:?}");
    let expected = numeric_shares(&edges, &reference);

    // A second sample of the same distribution: no drift.
    let same = sample(2, 5.0);
    let d = live_psi(&reference, &same).await;
    let ours = our_psi(&expected, &numeric_shares(&edges, &same));
    // `raw` is the plain figure, `value` the same less what sampling adds on average.
    let (value, raw) = (d["value"].as_f64().unwrap(), d["raw"].as_f64().unwrap());
    assert_eq!((&d["metric"], &d["level"]), (&json!("psi"), &json!("ok")));
    assert!(value < 0.05, "same distribution, PSI {value}");
    assert!((raw - ours).abs() < 1e-6, "switchyard {raw}, ours {ours}");

    // Shifted by three standard deviations: an alert. The lowest bins get no value at
    // all, so the floor at EPSILON decides the figure.
    let shifted = sample(3, 8.0);
    let actual = numeric_shares(&edges, &shifted);
    assert!(actual.contains(&0.0), "no empty bin: {actual:?}");
    let d = live_psi(&reference, &shifted).await;
    let ours = our_psi(&expected, &actual);
    // `raw` is the plain figure, `value` the same less what sampling adds on average.
    let (value, raw) = (d["value"].as_f64().unwrap(), d["raw"].as_f64().unwrap());
    assert_eq!(
        (&d["metric"], &d["level"]),
        (&json!("psi"), &json!("alert"))
    );
    assert!(value > 0.2, "shifted distribution, PSI {value}");
    assert!((raw - ours).abs() < 1e-6, "switchyard {raw}, ours {ours}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psi_against_a_reference_file_written_by_switchyard_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("reference.csv");
    let file = dir.path().join("reference.json");
    let reference = sample(11, 5.0);
    std::fs::write(&table, csv("petal_length", &reference)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("baseline")
        .arg("--from")
        .arg(&table)
        .arg("--out")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let written: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let bins = &written["features"]["petal_length"];
    let edges: Vec<f64> = serde_json::from_value(bins["edges"].clone()).unwrap();
    let expected: Vec<f64> = serde_json::from_value(bins["shares"].clone()).unwrap();

    for (mean, level) in [(5.0, "ok"), (6.0, "alert")] {
        let h = ProxyHarness::start(&psi_monitor(json!({ "file": file }))).await;
        let window = sample(12, mean);
        send_column(&h, "x", &window, 10).await;
        let d = drift(&h, "psi", "petal_length", window.len() as u64).await;
        let ours = our_psi(&expected, &numeric_shares(&edges, &window));
        // `raw` is the plain figure, `value` the same less what sampling adds on average.
        let (value, raw) = (d["value"].as_f64().unwrap(), d["raw"].as_f64().unwrap());
        assert!(value <= raw, "{d:#}");
        assert_eq!(d["level"], level, "mean {mean}: {d:#}");
        assert!((raw - ours).abs() < 1e-6, "switchyard {raw}, ours {ours}");
    }
}

// === Jensen-Shannon ===

/// `n` countries drawn with the given weights (percent, adding up to 100).
fn countries(seed: u64, n: usize, weights: &[(&'static str, u64)]) -> Vec<&'static str> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let mut r = rng.next() % 100;
            for (c, w) in weights {
                if r < *w {
                    return *c;
                }
                r -= w;
            }
            unreachable!("weights add up to 100")
        })
        .collect()
}

/// Sends `values` as V1 instances `{"country": ...}`, 10 a request.
async fn send_countries(h: &ProxyHarness, values: &[&str]) {
    for chunk in values.chunks(10) {
        let instances: Vec<Value> = chunk.iter().map(|c| json!({ "country": c })).collect();
        let body = json!({ "instances": instances }).to_string();
        post(h, "/v1/models/m:predict", &body).await;
    }
}

/// The shares of `values` over the reference's categories (in name order) and `other`.
fn category_shares(categories: &[&str], values: &[&str]) -> Vec<f64> {
    let mut counts = vec![0usize; categories.len() + 1];
    for v in values {
        let i = categories
            .iter()
            .position(|c| c == v)
            .unwrap_or(categories.len());
        counts[i] += 1;
    }
    counts
        .iter()
        .map(|c| *c as f64 / values.len() as f64)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jensen_shannon_distance_of_a_categorical_feature() {
    const A: [(&str, u64); 4] = [("FR", 40), ("DE", 30), ("IT", 20), ("ES", 10)];
    // PT never appears in the reference: it counts as `other`.
    const B: [(&str, u64); 5] = [("FR", 10), ("DE", 20), ("IT", 30), ("ES", 20), ("PT", 20)];
    let reference = countries(21, 1000, &A);
    // The reference's categories: its values (fewer than 20 of them), in name order.
    let categories: Vec<&str> = reference
        .iter()
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(categories, ["DE", "ES", "FR", "IT"]);
    let expected = category_shares(&categories, &reference);

    for (window, level) in [
        (countries(22, 1000, &A), "ok"),
        (countries(23, 1000, &B), "alert"),
    ] {
        // The test's one client stands for every user: no share bound.
        let config = TestConfig::stable_only()
            .routed("js", "m")
            .analysis(Analysis::new("10s", "60s", 100, 3).max_client_share(1.0))
            .monitor(json!({
                "sample": 100,
                "features": [{ "name": "country", "pointer": "/instances/*/country", "kind": "categorical" }],
                "reference": { "requests": 100 },
            }));
        let h = ProxyHarness::start(&config).await;
        send_countries(&h, &reference).await;
        reference_built(&h, "js", 100).await;
        send_countries(&h, &window).await;
        let d = drift(&h, "js", "country", window.len() as u64).await;
        let ours = our_js(&expected, &category_shares(&categories, &window));
        // `raw` is the plain figure, `value` the same less what sampling adds on average.
        let (value, raw) = (d["value"].as_f64().unwrap(), d["raw"].as_f64().unwrap());
        assert_eq!((&d["metric"], &d["level"]), (&json!("js"), &json!(level)));
        match level {
            "ok" => assert!(value < 0.05, "same distribution, JS distance {value}"),
            _ => assert!(value > 0.2, "shifted distribution, JS distance {value}"),
        }
        assert!((raw - ours).abs() < 1e-6, "switchyard {raw}, ours {ours}");

        // The most frequent values shown are the window's and the reference's together.
        let m = monitor(&h, "js").await;
        let top: BTreeMap<String, u64> = feature(&m, "blue", "country")["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["value"].as_str().unwrap().to_owned(),
                    t["count"].as_u64().unwrap(),
                )
            })
            .collect();
        let fr = reference
            .iter()
            .chain(&window)
            .filter(|c| **c == "FR")
            .count();
        assert_eq!(top["FR"], fr as u64, "{top:?}");
    }
}
