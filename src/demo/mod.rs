//! `switchyard demo`: a whole rollout on one machine, with nothing to set up.
//!
//! Two model servers (a stable `blue` and candidates `green-bad` / `green`), the proxy on
//! an embedded config, and a traffic generator. The timeline is printed as it happens:
//! shadow, canary, the bad candidate caught and rolled back (with no failed user request,
//! thanks to fallback), then a good candidate walked to promotion.

pub mod model;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config;
use crate::rollout::Status;
use crate::server::{self, Running};
use model::{Model, ModelServer};

/// The demo's rollout config; `{…}` placeholders are filled in at start.
const TEMPLATE: &str = r#"
listen: {LISTEN}
admin:
  listen: {ADMIN}
backends:
  blue:      { url: "{BLUE}",  timeout: 2s }
  green-bad: { url: "{BAD}",   timeout: 2s }
  green:     { url: "{GOOD}",  timeout: 2s }
rollout:
  stable: blue
  candidate: {CANDIDATE}
  strategy: canary
  sticky: { header: x-user-id }
  override_header: x-switchyard-route
  steps:
    - { weight: 0, mirror: 100, hold: 4s }   # shadow: copies only
    - { weight: 10, hold: 4s }
    - { weight: 25, hold: 4s }
    - { weight: 50, hold: 4s }
    - { weight: 100 }
  analysis:
    interval: 1s
    window: 5s
    min_samples: 20
    failure_limit: 2
    gates:
      error_rate: { max: 0.02 }
      latency_p99: { max: 250ms, max_ratio: 3 }
      shadow_agreement: { min: 0.95 }
    after_promotion: 3s
  fast_rollback: { consecutive_errors: 5 }
  fallback_to_stable: true
shadow:
  max_in_flight: 64
  compare: { protocol: v2, abs_tolerance: 0.05 }
state: { path: null }
"#;

/// Options of `switchyard demo`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Stay up after the rollout, until Ctrl-C.
    pub keep: bool,
}

/// Traffic counters the generator keeps.
#[derive(Default)]
struct Traffic {
    sent: AtomicU64,
    blue: AtomicU64,
    green: AtomicU64,
    failed: AtomicU64,
}

/// Runs the demo; returns when the rollout story is told (or on Ctrl-C with `keep`).
pub async fn run(opts: Options) -> Result<(), String> {
    let started = Instant::now();
    let stage = Stage::set_up().await?;
    let running = server::start(stage.config("green-bad")?, None)
        .await
        .map_err(|e| e.to_string())?;
    stage.introduce(&running);

    let traffic = Arc::new(Traffic::default());
    let stop_traffic = start_traffic(running.data_addr, &traffic);
    let mut printer = Timeline::new(started);
    act_one(&mut printer, &running, &traffic, &stage.bad).await?;
    let phase = act_two(&mut printer, &running, &traffic, &stage).await?;
    let _ = stop_traffic.send(true);
    tokio::time::sleep(Duration::from_millis(100)).await;
    summarize(started, &traffic);

    if phase != "promoted" {
        running.shutdown().await;
        return Err(format!("act 2 ended in phase {phase}, expected promoted"));
    }
    if opts.keep {
        println!("--keep: still serving; Ctrl-C to stop.");
        let _ = tokio::signal::ctrl_c().await;
    }
    running.shutdown().await;
    Ok(())
}

/// The demo's model servers and the addresses the proxy takes.
struct Stage {
    blue: ModelServer,
    bad: ModelServer,
    good: ModelServer,
    listen: String,
    admin: String,
}

impl Stage {
    /// Starts the three model servers and picks the proxy's addresses.
    async fn set_up() -> Result<Stage, String> {
        let start = |name: &'static str, model: Model| async move {
            ModelServer::start(name, model)
                .await
                .map_err(|e| e.to_string())
        };
        let blue = start("blue", Model::default()).await?;
        let bad = start(
            "green-bad",
            Model {
                weight: 0.8,
                bias: -0.1,
            },
        )
        .await?;
        let good = start(
            "green",
            Model {
                weight: 0.81,
                bias: -0.1,
            },
        )
        .await?;
        Ok(Stage {
            blue,
            bad,
            good,
            listen: free_or_any("127.0.0.1:8080").await,
            admin: free_or_any("127.0.0.1:9901").await,
        })
    }

    /// The demo's config, with `candidate` as the rollout's candidate.
    fn config(&self, candidate: &str) -> Result<config::Config, String> {
        let text = TEMPLATE
            .replace("{LISTEN}", &self.listen)
            .replace("{ADMIN}", &self.admin)
            .replace("{BLUE}", &self.blue.url())
            .replace("{BAD}", &self.bad.url())
            .replace("{GOOD}", &self.good.url())
            .replace("{CANDIDATE}", candidate);
        config::parse(&text).map_err(|p| format!("demo config: {p}"))
    }

    /// Prints where the proxy, its dashboard and the models listen.
    fn introduce(&self, running: &Running) {
        println!("switchyard demo");
        println!("  proxy      http://{}", running.data_addr);
        println!("  dashboard  http://{}/", running.admin_addr);
        println!(
            "  models     blue {}  green-bad {}  green {}",
            self.blue.url(),
            self.bad.url(),
            self.good.url()
        );
        println!();
    }
}

/// Starts four traffic workers against the proxy at `addr`; they stop when the returned
/// sender sends `true`.
fn start_traffic(addr: std::net::SocketAddr, traffic: &Arc<Traffic>) -> watch::Sender<bool> {
    let (stop, stopped) = watch::channel(false);
    for worker in 0..4 {
        tokio::spawn(generate(worker, addr, traffic.clone(), stopped.clone()));
    }
    stop
}

/// Act 1: green-bad is healthy in shadow, then starts failing once it takes users; the
/// rollout must end rolled back.
async fn act_one(
    printer: &mut Timeline,
    running: &Running,
    traffic: &Traffic,
    bad: &ModelServer,
) -> Result<(), String> {
    println!("Act 1: candidate green-bad (it will start failing under canary traffic)");
    let bad_behavior = bad.behavior().clone();
    let mut broke = false;
    let phase = printer
        .follow(
            running,
            traffic,
            Duration::from_secs(40),
            |s| {
                if !broke && s.weight >= 10.0 {
                    broke = true;
                    bad_behavior.set_error_rate(0.3);
                    bad_behavior.set_delay(Duration::from_millis(40));
                    Some("green-bad starts failing 30 % of its requests")
                } else {
                    None
                }
            },
            |s| s.phase == "rolled_back",
        )
        .await;
    if phase != "rolled_back" {
        return Err(format!(
            "act 1 ended in phase {phase}, expected rolled_back"
        ));
    }
    Ok(())
}

/// Act 2: a good candidate, applied as a config reload and walked to promotion; returns
/// the phase the rollout ended in.
async fn act_two(
    printer: &mut Timeline,
    running: &Running,
    traffic: &Traffic,
    stage: &Stage,
) -> Result<String, String> {
    println!();
    println!("Act 2: candidate green (a retrained model that agrees with blue)");
    running
        .control
        .reload(Ok(stage.config("green")?))
        .await
        .map_err(|p| p.to_string())?;
    Ok(printer
        .follow(
            running,
            traffic,
            Duration::from_secs(40),
            |_| None,
            |s| s.phase == "promoted" && s.events.last().is_some_and(|e| e.kind == "analysis"),
        )
        .await)
}

/// Prints how long the story took and what the users saw.
fn summarize(started: Instant, traffic: &Traffic) {
    println!();
    println!(
        "Done in {:.0}s: {} requests, {} answered by blue, {} by a green, {} failed for the user.",
        started.elapsed().as_secs_f64(),
        traffic.sent.load(Ordering::Relaxed),
        traffic.blue.load(Ordering::Relaxed),
        traffic.green.load(Ordering::Relaxed),
        traffic.failed.load(Ordering::Relaxed),
    );
}

/// `addr` when it is free, else any loopback port.
async fn free_or_any(addr: &str) -> String {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => {
            drop(l);
            addr.to_string()
        }
        Err(_) => "127.0.0.1:0".to_string(),
    }
}

/// One traffic worker: V2 requests as 500 different users, about 100 a second.
async fn generate(
    worker: u64,
    addr: std::net::SocketAddr,
    traffic: Arc<Traffic>,
    mut stop: watch::Receiver<bool>,
) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let url = format!("http://{addr}/v2/models/demo/infer");
    let mut n = worker;
    loop {
        if *stop.borrow() {
            return;
        }
        n += 4;
        let user = (n * 7919) % 500;
        let x = (n % 13) as f64 / 13.0 - 0.5;
        let body = format!(
            r#"{{"inputs":[{{"name":"x","shape":[1,3],"datatype":"FP32","data":[{x},{},{}]}}]}}"#,
            x * 0.5,
            -x
        );
        let req = http::Request::post(&url)
            .header("content-type", "application/json")
            .header("x-user-id", format!("user-{user}"))
            .body(Full::new(Bytes::from(body)))
            .expect("valid request");
        traffic.sent.fetch_add(1, Ordering::Relaxed);
        match client.request(req).await {
            Ok(resp) => {
                let variant = resp
                    .headers()
                    .get("x-switchyard-variant")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let failed = resp.status().is_server_error();
                let _ = resp.into_body().collect().await;
                if failed {
                    traffic.failed.fetch_add(1, Ordering::Relaxed);
                } else if variant == "blue" {
                    traffic.blue.fetch_add(1, Ordering::Relaxed);
                } else {
                    traffic.green.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => {
                traffic.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Prints the rollout's events and a traffic line as they happen.
struct Timeline {
    started: Instant,
    seen: usize,
    /// (blue, green) answers at the last traffic line.
    counted: (u64, u64),
}

impl Timeline {
    fn new(started: Instant) -> Self {
        Timeline {
            started,
            seen: 0,
            counted: (0, 0),
        }
    }

    /// Follows the status until `done` or `limit`; `poke` may act on the system and say what it did.
    async fn follow(
        &mut self,
        running: &Running,
        traffic: &Traffic,
        limit: Duration,
        mut poke: impl FnMut(&Status) -> Option<&'static str>,
        done: impl Fn(&Status) -> bool,
    ) -> String {
        let until = Instant::now() + limit;
        let mut last_line = Instant::now();
        loop {
            let statuses = running.shared.status.load_full();
            let Some(s) = statuses.unscoped() else {
                return "the demo's config has one route".into();
            };
            if s.events.len() < self.seen {
                self.seen = 0;
            }
            for e in &s.events[self.seen..] {
                println!("  {:>5.1}s  {:<9} {}", self.t(), e.kind, e.message);
            }
            self.seen = s.events.len();
            if let Some(what) = poke(s) {
                println!("  {:>5.1}s  {:<9} {}", self.t(), "chaos", what);
            }
            if last_line.elapsed() >= Duration::from_secs(2) {
                let b = traffic.blue.load(Ordering::Relaxed);
                let g = traffic.green.load(Ordering::Relaxed);
                let verdict = s
                    .analysis
                    .last
                    .as_ref()
                    .map(|a| a.verdict.as_str())
                    .unwrap_or("-");
                println!(
                    "  {:>5.1}s  traffic   {} step {}/{} weight {}% mirror {}% | blue {} green {} (last 2s) | user-facing failures {} | analysis {}",
                    self.t(),
                    s.phase,
                    s.step,
                    s.steps,
                    s.weight,
                    s.mirror,
                    b - self.counted.0,
                    g - self.counted.1,
                    traffic.failed.load(Ordering::Relaxed),
                    verdict
                );
                self.counted = (b, g);
                last_line = Instant::now();
            }
            if done(s) || Instant::now() >= until {
                return s.phase.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn t(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}
