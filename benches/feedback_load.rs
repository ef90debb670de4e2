//! Live latency while large label batches are posted: feedback is parsed off the data plane.
//!
//! A model server and switchyard (one route, every answer remembered for feedback) in
//! this process, four clients sending small V2 requests one after another. The live
//! latency is measured idle, then while two clients post 16 MiB label batches to
//! `/api/v1/feedback` back to back. Prints requests, p50 and p99 for each phase, their
//! ratio, and how many batches were parsed; the target is the loaded p99 within 2× of
//! the idle one.
//!
//! `cargo bench --bench feedback_load` (`PHASE_SECS=N` for longer phases; default 10).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use switchyard::demo::model::{Model, ModelServer};
use switchyard::{app, config};

/// One label batch: as many `{"request_id", "label"}` entries as fit in 16 MiB.
fn batch() -> Bytes {
    let mut body = String::with_capacity(16 << 20);
    body.push_str(r#"{"feedback":["#);
    let mut i = 0u64;
    while body.len() < (16 << 20) - 100 {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"request_id":"bench-{i:012}","label":"{}"}}"#,
            i % 3
        ));
        i += 1;
    }
    body.push_str("]}");
    Bytes::from(body)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

/// Live latencies over `secs` seconds from four clients, sorted.
async fn live(url: &str, secs: u64) -> Vec<Duration> {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (url, stop, seen) = (url.to_owned(), stop.clone(), seen.clone());
        clients.push(tokio::spawn(async move {
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            let body = Bytes::from_static(br#"{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[0.1,0.2,0.3]}]}"#);
            let mut mine = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::post(&url)
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))
                    .unwrap();
                let started = Instant::now();
                let resp = client.request(req).await.expect("an answer");
                assert!(resp.status().is_success(), "{}", resp.status());
                let _ = resp.into_body().collect().await;
                mine.push(started.elapsed());
            }
            seen.lock().unwrap().extend(mine);
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let mut all = std::mem::take(&mut *seen.lock().unwrap());
    all.sort();
    all
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}

async fn run() {
    let secs: u64 = std::env::var("PHASE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let blue = ModelServer::start("blue", Model::default()).await.unwrap();
    let yaml = format!(
        r#"
listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
backends:
  blue: {{ url: "{}" }}
rollout: {{ stable: blue }}
monitor: {{ sample: 0 }}
feedback: {{ retain: 1h, max_body: 32MiB }}
state: {{ path: null }}
"#,
        blue.url()
    );
    let running = app::start(config::parse(&yaml).unwrap(), None)
        .await
        .unwrap();
    let url = format!("http://{}/v2/models/m/infer", running.data_addr);
    let feedback = format!("http://{}/api/v1/feedback", running.admin_addr);
    let body = batch();

    let idle = live(&url, secs).await;

    let stop = Arc::new(AtomicBool::new(false));
    let posted = Arc::new(AtomicU64::new(0));
    let mut posters = Vec::new();
    for _ in 0..2 {
        let (feedback, body, stop, posted) =
            (feedback.clone(), body.clone(), stop.clone(), posted.clone());
        posters.push(tokio::spawn(async move {
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::post(&feedback)
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))
                    .unwrap();
                let resp = client.request(req).await.expect("an answer");
                let ok = resp.status().is_success();
                let _ = resp.into_body().collect().await;
                if ok {
                    posted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let loaded = live(&url, secs).await;
    stop.store(true, Ordering::Relaxed);
    for p in posters {
        p.await.unwrap();
    }

    println!(
        "live latency, 4 clients, {secs} s a phase; the loaded phase with two clients posting {:.1} MiB label batches back to back:",
        body.len() as f64 / (1 << 20) as f64
    );
    println!("  phase    requests     p50 ms     p99 ms");
    for (name, l) in [("idle", &idle), ("labels", &loaded)] {
        println!(
            "  {name:<8} {:>8} {:>10.3} {:>10.3}",
            l.len(),
            pct(l, 0.5),
            pct(l, 0.99)
        );
    }
    println!(
        "  p99 labels / idle: {:.2}x; batches parsed during the phase: {}",
        pct(&loaded, 0.99) / pct(&idle, 0.99),
        posted.load(Ordering::Relaxed)
    );
    running.shutdown().await;
}
