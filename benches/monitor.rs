//! Payload monitoring: the time to parse and observe one V2 exchange with 4 features and
//! with 1 000, against a reference (drift windows counting), and, before the timings, the
//! memory a route's monitor holds for 1 000 features at two backends, measured with a
//! counting allocator, after a few thousand requests and along a million of them.
//!
//! `cargo bench --bench monitor` (`MONITOR_REQUESTS=N` for a shorter or longer run)

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};

use criterion::{criterion_group, BenchmarkId, Criterion};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use switchyard::monitor::stats::Sketch;
use switchyard::monitor::{Monitor, ReferenceSettings, Settings};
use switchyard::wire::Exchange;

/// The system allocator, keeping the live heap bytes and their peak.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);
static PEAK: AtomicI64 = AtomicI64::new(0);

fn grew(by: i64) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is passed on unchanged to `System`; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size() as i64);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size() as i64);
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size as i64 - layout.size() as i64);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// An MLServer-style V2 request of one row with `n` FP32 features; feature `i` is drawn
/// around `i % 7` with a spread of `1 + i % 3`, so some features cross zero.
fn v2_request(n: usize, rng: &mut SmallRng) -> String {
    let data: Vec<String> = (0..n)
        .map(|i| {
            let spread = 1.0 + (i % 3) as f64;
            let x = (i % 7) as f64 + spread * (rng.random::<f64>() * 2.0 - 1.0);
            format!("{x:.4}")
        })
        .collect();
    format!(
        r#"{{"id":"4b1f","inputs":[{{"name":"input-0","shape":[1,{n}],"datatype":"FP32","data":[{}]}}]}}"#,
        data.join(",")
    )
}

/// An MLServer-style iris answer: a label and its class probabilities.
fn v2_answer(rng: &mut SmallRng) -> String {
    let p: f64 = 0.5 + rng.random::<f64>() * 0.5;
    let class = rng.random_range(0..3);
    format!(
        r#"{{"model_name":"iris","model_version":"v1","id":"4b1f","parameters":{{}},"outputs":[{{"name":"predict","shape":[1,1],"datatype":"INT64","data":[{class}]}},{{"name":"predict_proba","shape":[1,3],"datatype":"FP64","data":[{p:.4},{:.4},0.0]}}]}}"#,
        1.0 - p
    )
}

fn exchange<'a>(backend: &'a str, request: &'a str, answer: &'a str) -> Exchange<'a> {
    Exchange {
        route: "default",
        backend,
        path: "/v2/models/iris/infer",
        status: 200,
        request: request.as_bytes(),
        request_truncated: false,
        answer: answer.as_bytes(),
        answer_truncated: false,
    }
}

/// A monitor for `n` features whose reference is built from `requests` requests of "blue".
fn monitor_with_reference(n: usize, requests: u64, rng: &mut SmallRng, now: Instant) -> Monitor {
    let mut m = Monitor::new(Settings {
        max_features: n.max(1),
        reference: ReferenceSettings {
            requests,
            ..ReferenceSettings::default()
        },
        ..Settings::default()
    })
    .expect("settings");
    m.start_reference("blue");
    for _ in 0..requests {
        let (req, ans) = (v2_request(n, rng), v2_answer(rng));
        let ex = exchange("blue", &req, &ans);
        let payload = m.parse(&ex);
        m.observe(&ex, &payload, now);
    }
    assert!(m.reference().is_some(), "reference built");
    m
}

/// Measures a route's monitor for 1 000 features at two backends after a reference of
/// 1 000 requests and 2 000 more requests each, prints it and checks it against the bound.
fn memory() {
    const FEATURES: usize = 1000;
    let mut rng = SmallRng::seed_from_u64(1);
    let now = Instant::now();
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let mut m = monitor_with_reference(FEATURES, 1000, &mut rng, now);
    let built_peak = PEAK.load(Ordering::Relaxed) - before;
    for _ in 0..2000 {
        for backend in ["blue", "green"] {
            let (req, ans) = (v2_request(FEATURES, &mut rng), v2_answer(&mut rng));
            let ex = exchange(backend, &req, &ans);
            let payload = m.parse(&ex);
            m.observe(&ex, &payload, now);
        }
    }
    let live = LIVE.load(Ordering::Relaxed) - before;
    let per = live as f64 / (2 * FEATURES) as f64;
    println!(
        "memory: {FEATURES} features at 2 backends: {live} bytes held ({:.1} MiB, {per:.0} bytes a feature and backend); peak while the reference was built: {:.1} MiB",
        live as f64 / 1048576.0,
        built_peak as f64 / 1048576.0
    );
    // The bound docs/monitoring.md states: a full sketch and the 10-bin window (6 slots)
    // per feature and backend, plus 1 KiB a feature for names, reference and bookkeeping.
    let bound = 2 * FEATURES * (Sketch::MAX_HEAP_BYTES + 6 * 10 * 4) + FEATURES * 1024;
    assert!(
        live > 0 && (live as usize) < bound,
        "{live} bytes, bound {bound}"
    );
    black_box(&m);
}

/// Feeds a route's monitor with 1 000 features `MONITOR_REQUESTS` exchanges (1 000 000 by
/// default) alternating between two backends at 1 000 a second of (simulated) time, so
/// its drift windows slide all along, and prints the heap it holds every tenth of the
/// way: it grows while the sketches meet the values' range, then stays flat, under the
/// same bound as [`memory`].
fn memory_over_time() {
    const FEATURES: usize = 1000;
    let total: u64 = std::env::var("MONITOR_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut rng = SmallRng::seed_from_u64(3);
    let start = Instant::now();
    let before = LIVE.load(Ordering::Relaxed);
    let mut m = monitor_with_reference(FEATURES, 1000, &mut rng, start);
    let mut held = Vec::new();
    let step = (total / 10).max(1);
    for i in 0..total {
        let now = start + std::time::Duration::from_millis(i);
        let backend = if i % 2 == 0 { "blue" } else { "green" };
        let (req, ans) = (v2_request(FEATURES, &mut rng), v2_answer(&mut rng));
        let ex = exchange(backend, &req, &ans);
        let payload = m.parse(&ex);
        m.observe(&ex, &payload, now);
        if (i + 1) % step == 0 {
            held.push(LIVE.load(Ordering::Relaxed) - before);
        }
    }
    let mib: Vec<String> = held
        .iter()
        .map(|b| format!("{:.2}", *b as f64 / 1048576.0))
        .collect();
    println!(
        "memory over {total} requests, {FEATURES} features at 2 backends, MiB held at each tenth: {}",
        mib.join(" ")
    );
    // The sketches add a bin for each new stretch of values they meet, so the heap grows
    // while they meet the values' range, then stays: flat over the second half (1 %).
    let bound = 2 * FEATURES * (Sketch::MAX_HEAP_BYTES + 6 * 10 * 4) + FEATURES * 1024;
    let (half, last) = (held[held.len() / 2 - 1], *held.last().unwrap_or(&0));
    assert!(
        (last as usize) < bound && last <= half + half / 100,
        "held {half} bytes halfway, {last} at the end (bound {bound}): not flat"
    );
    black_box(&m);
}

fn bench(c: &mut Criterion) {
    memory();
    memory_over_time();
    let mut group = c.benchmark_group("monitor_v2");
    for n in [4usize, 1000] {
        let mut rng = SmallRng::seed_from_u64(2);
        let now = Instant::now();
        let mut m = monitor_with_reference(n, 1000, &mut rng, now);
        let (req, ans) = (v2_request(n, &mut rng), v2_answer(&mut rng));
        let ex = exchange("green", &req, &ans);
        group.bench_with_input(BenchmarkId::new("parse_and_observe", n), &n, |b, _| {
            b.iter(|| {
                let payload = m.parse(black_box(&ex));
                m.observe(&ex, &payload, now);
            })
        });
        let payload = m.parse(&ex);
        group.bench_with_input(BenchmarkId::new("observe", n), &n, |b, _| {
            b.iter(|| m.observe(&ex, black_box(&payload), now))
        });
        group.bench_with_input(BenchmarkId::new("parse", n), &n, |b, _| {
            b.iter(|| m.parse(black_box(&ex)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
