//! Benchmarks of the shadow comparator on realistic V2 (Open Inference Protocol) responses.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use switchyard::compare::{compare, Response, Rules};

/// Builds an MLServer-style FP32 response body with `n` elements (values as numpy float32 prints them via JSON).
fn v2_body(id: &str, version: &str, n: usize, bump: Option<usize>) -> Vec<u8> {
    let mut data = String::with_capacity(n * 22);
    for i in 0..n {
        if i > 0 {
            data.push(',');
        }
        let mut x = ((i as f32) * 0.618_034).sin().abs() as f64; // f32 widened: ~17 significant digits
        if bump == Some(i) {
            x += 0.01;
        }
        data.push_str(&x.to_string());
    }
    let rows = if n >= 100 { n / 10 } else { 1 };
    let cols = n / rows;
    format!(
        r#"{{"model_name":"classifier","model_version":"{version}","id":"{id}","parameters":{{"content_type":"np"}},"outputs":[{{"name":"probabilities","shape":[{rows},{cols}],"datatype":"FP32","parameters":{{"content_type":"np"}},"data":[{data}]}},{{"name":"label","shape":[{rows},1],"datatype":"INT64","data":[{labels}]}}]}}"#,
        labels = vec!["3"; rows].join(",")
    )
    .into_bytes()
}

fn resp(body: &[u8]) -> Response<'_> {
    Response {
        status: 200,
        content_type: Some("application/json"),
        body,
        truncated: false,
    }
}

fn bench(c: &mut Criterion) {
    let rules = Rules::new(
        Default::default(),
        vec!["/id".into(), "/model_version".into()],
        1e-6,
        1e-4,
        vec![],
    )
    .expect("rules");
    let mut group = c.benchmark_group("compare_v2");
    for n in [1usize, 100, 10_000] {
        let live = v2_body("6f1c2a7e-1b7b-4a38-9b0e-9f1f3f1b3c11", "blue-1", n, None);
        let agree = v2_body("0d9e8c51-77a2-4d52-8a1b-2a7e1c0c9d42", "green-1", n, None);
        let disagree = v2_body(
            "0d9e8c51-77a2-4d52-8a1b-2a7e1c0c9d42",
            "green-1",
            n,
            Some(n / 2),
        );
        group.throughput(Throughput::Bytes((live.len() + agree.len()) as u64));
        group.bench_with_input(BenchmarkId::new("agree", n), &n, |b, _| {
            b.iter(|| {
                compare(
                    black_box(&rules),
                    black_box(&resp(&live)),
                    black_box(&resp(&agree)),
                )
            })
        });
        group.bench_with_input(BenchmarkId::new("disagree", n), &n, |b, _| {
            b.iter(|| {
                compare(
                    black_box(&rules),
                    black_box(&resp(&live)),
                    black_box(&resp(&disagree)),
                )
            })
        });
    }
    group.finish();

    // The comparison alone, on already-parsed trees, to separate it from parsing.
    let n = 10_000;
    let live = v2_body("a", "1", n, None);
    let shadow = v2_body("b", "1", n, None);
    c.bench_function("parse_only_v2/10000", |b| {
        b.iter(|| {
            let l: serde_json::Value = serde_json::from_slice(black_box(&live)).unwrap();
            let s: serde_json::Value = serde_json::from_slice(black_box(&shadow)).unwrap();
            (l, s)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
