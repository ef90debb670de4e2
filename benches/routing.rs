//! The routing decision: how long `route::pick` takes for each kind of request.
//!
//! `cargo bench --bench routing`

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue};
use std::hint::black_box;

use switchyard::config;
use switchyard::proxy::route;
use switchyard::snapshot::{self, Backends, Builder, Routing};

fn snapshot(weight: f64) -> std::sync::Arc<snapshot::Route> {
    let cfg = config::parse(
        r#"
backends:
  blue: { url: "http://127.0.0.1:18001" }
  green: { url: "http://127.0.0.1:18002" }
rollout:
  stable: blue
  candidate: green
  sticky: { header: x-user-id }
  override_header: x-switchyard-route
  steps: [ { weight: 25 }, { weight: 100 } ]
state: { path: null }
"#,
    )
    .expect("valid config");
    let mut backends = Backends::default();
    backends.sync(&cfg);
    let snap = Builder::new(&cfg, &backends, None).build(
        1,
        [Routing {
            weight,
            mirror: 0.0,
            tripwire: None,
            rollout: 0,
            step: 0,
        }],
    );
    snap.routes[0].clone()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let snap = snapshot(25.0);
    let mut g = c.benchmark_group("route::pick");
    let mut sticky = HeaderMap::new();
    sticky.insert("x-user-id", HeaderValue::from_static("user-12345"));
    sticky.insert("content-type", HeaderValue::from_static("application/json"));
    g.bench_function("sticky header", |b| {
        b.iter(|| black_box(route::pick(&snap, black_box(&sticky))))
    });
    let mut plain = HeaderMap::new();
    plain.insert("content-type", HeaderValue::from_static("application/json"));
    g.bench_function("random split", |b| {
        b.iter(|| black_box(route::pick(&snap, black_box(&plain))))
    });
    let mut forced = plain.clone();
    forced.insert("x-switchyard-route", HeaderValue::from_static("green"));
    g.bench_function("override header", |b| {
        b.iter(|| black_box(route::pick(&snap, black_box(&forced))))
    });
    let all_stable = snapshot(0.0);
    g.bench_function("weight 0 (all to stable)", |b| {
        b.iter(|| black_box(route::pick(&all_stable, black_box(&sticky))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
