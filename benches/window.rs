//! Benchmarks of the sliding window: the per-request `record` cost and a 1-minute `summary`.

use std::hint::black_box;
use std::time::Instant as StdInstant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use switchyard::telemetry::window::{ShadowOutcome, Window};
use tokio::time::{Duration, Instant};

/// Latencies cycling over 1 ms ..= 1 s so the histogram index varies like real traffic.
fn latency(i: u64) -> Duration {
    Duration::from_micros(1_000 + (i.wrapping_mul(7_919) % 1_000_000))
}

fn record(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Elements(1));

    let t0 = Instant::now();
    let window = Window::with_origin(t0, Duration::from_secs(1), 61);
    let mut i = 0u64;
    group.bench_function("same_bucket", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            window.record(black_box(t0), latency(i), i % 64 == 0);
        })
    });

    // Time advancing 1 µs per request through 1 ms buckets: one reset per 1 000 records.
    let window = Window::with_origin(t0, Duration::from_millis(1), 61);
    let mut i = 0u64;
    group.bench_function("rotating", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            window.record(black_box(t0 + Duration::from_micros(i)), latency(i), false);
        })
    });

    let window = Window::with_origin(t0, Duration::from_secs(1), 61);
    group.bench_function("shadow", |b| {
        b.iter(|| window.record_shadow(black_box(t0), ShadowOutcome::Agree))
    });

    group.finish();

    // Four threads recording into the same bucket at once: one iteration is
    // one record on each thread, so the throughput is the aggregate rate.
    let mut group = c.benchmark_group("record_contended");
    group.throughput(Throughput::Elements(4));
    let window = Window::with_origin(t0, Duration::from_secs(1), 61);
    group.bench_function("same_bucket_4_threads", |b| {
        b.iter_custom(|iters| {
            let start = StdInstant::now();
            std::thread::scope(|scope| {
                for thread in 0..4u64 {
                    let window = &window;
                    scope.spawn(move || {
                        for i in 0..iters {
                            window.record(black_box(t0), latency(i ^ thread), false);
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    group.finish();
}

fn summary(c: &mut Criterion) {
    let t0 = Instant::now();
    let window = Window::with_origin(t0, Duration::from_secs(1), 61);
    // Fill all 61 buckets (60 s back from now, plus the current one).
    for second in 0..=60u64 {
        for i in 0..1_000u64 {
            window.record(
                t0 + Duration::from_secs(second),
                latency(i + second),
                i % 50 == 0,
            );
        }
    }
    let now = t0 + Duration::from_secs(60);
    c.bench_function("summary/60s_of_1s_buckets", |b| {
        b.iter(|| {
            let s = window.summary(black_box(now), Duration::from_secs(60));
            black_box((s.error_rate(), s.quantile(0.99)))
        })
    });
}

criterion_group!(benches, record, summary);
criterion_main!(benches);
