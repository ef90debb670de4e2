//! Time to rollback: how long after a canary starts failing is it out of traffic?
//!
//! Two in-process model servers and switchyard (fast_rollback 5, fallback on) under a
//! steady load of four clients; the candidate is flipped to failing every request and
//! the clock runs until the published snapshot routes nothing to it. Repeated with
//! `retry` between runs. Prints the distribution and the user-facing failures (which
//! must be 0: fallback serves every failed candidate request from stable).
//!
//! `cargo bench --bench time_to_rollback`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use switchyard::demo::model::{Model, ModelServer};
use switchyard::rollout::Action;
use switchyard::{app, config};

const RUNS: usize = 30;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let blue = ModelServer::start("blue", Model::default()).await.unwrap();
    let green = ModelServer::start("green", Model::default()).await.unwrap();
    let yaml = format!(
        r#"
listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
backends:
  blue: {{ url: "{}" }}
  green: {{ url: "{}" }}
rollout:
  stable: blue
  candidate: green
  steps: [ {{ weight: 50, hold: manual }}, {{ weight: 100 }} ]
  fast_rollback: {{ consecutive_errors: 5 }}
  fallback_to_stable: true
state: {{ path: null }}
"#,
        blue.url(),
        green.url()
    );
    let running = app::start(config::parse(&yaml).unwrap(), None)
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    for _ in 0..4 {
        let url = format!("http://{}/v2/models/m/infer", running.data_addr);
        let (stop, failed, sent) = (stop.clone(), failed.clone(), sent.clone());
        tokio::spawn(async move {
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            let body = Bytes::from_static(br#"{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[0.1,0.2,0.3]}]}"#);
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::post(&url)
                    .body(Full::new(body.clone()))
                    .unwrap();
                sent.fetch_add(1, Ordering::Relaxed);
                match client.request(req).await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.into_body().collect().await;
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        green.behavior().set_error_rate(0.0);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let onset = Instant::now();
        green.behavior().set_error_rate(1.0);
        loop {
            if running.shared.snapshot.load().routes[0].weight_bp == 0 {
                break;
            }
            if onset.elapsed() > Duration::from_secs(10) {
                panic!("no rollback within 10 s");
            }
            tokio::task::yield_now().await;
        }
        times.push(onset.elapsed());
        running.control.send(Action::Retry).await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    times.sort();
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    println!("time to rollback after the candidate starts failing ({RUNS} runs, fast_rollback.consecutive_errors = 5, 4 clients):");
    println!(
        "  median {:.2} ms   p90 {:.2} ms   max {:.2} ms",
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.9).as_secs_f64() * 1e3,
        times.last().unwrap().as_secs_f64() * 1e3
    );
    println!(
        "  user-facing failures: {} of {} requests",
        failed.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed)
    );
    running.shutdown().await;
}
