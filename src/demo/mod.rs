//! `switchyard demo`: a whole rollout on one machine, with nothing to set up.
//!
//! Two model servers (a stable `blue` and candidates `green-bad` / `green`), the proxy on
//! an embedded config, and a traffic generator that also posts each answer's true label
//! (blue's labelling rule) to the feedback API, as a labelling pipeline would. The
//! timeline is printed as it happens: shadow, canary, the bad candidate caught and rolled
//! back (its outputs drift, its accuracy falls; no failed user request, thanks to
//! fallback), then a good candidate walked to promotion.

pub mod model;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::app::{self, Running};
use crate::config;
use crate::feedback::Score;
use crate::rollout::analysis::GateOutcome;
use crate::rollout::Status;
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
    - { weight: 0, mirror: 100, hold: {HOLD} }   # shadow: copies only
    # Canary steps keep copying the stable's requests: output drift then compares both
    # models on the same requests, and has the 200 answers a side it needs within a step.
    - { weight: 10, mirror: 100, hold: {HOLD} }
    - { weight: 25, mirror: 100, hold: {HOLD} }
    - { weight: 50, mirror: 100, hold: {HOLD} }
    - { weight: 100 }
  analysis:
    interval: 1s
    window: 5s
    min_samples: 20
    failure_limit: 2
    gates:
      error_rate: { max: 0.02 }
{LATENCY}      shadow_agreement: { min: 0.95 }
      output_drift: { max: 0.2 }
      accuracy: { min: 0.9, max_drop: 0.05 }
    after_promotion: {WATCH}
  fast_rollback: { consecutive_errors: 10 }
  fallback_to_stable: true
shadow:
  max_in_flight: 64
  compare: { protocol: v2, abs_tolerance: 0.05 }
monitor:
  sample: 100
  reference: { from: stable, requests: 200 }
feedback:
  retain: 1m
state: { path: null }
"#;

/// The demo's latency gate: the candidate's p99 at most 3× the stable's, unless the two
/// are within 20 ms (scheduling noise on a busy machine, nothing a user notices). A
/// mirrored copy is timed by the kernel, from its request written to its answer
/// received, so the shadow thread's own delays are never the candidate's.
const LATENCY_GATE: &str = "      latency_p99: { max_ratio: 3, min_difference: 20ms }\n";

/// How long each demo model takes to answer, as a small real model would: the latency
/// gates then compare milliseconds, not scheduling noise.
const MODEL_LATENCY: Duration = Duration::from_millis(3);

/// Options of `switchyard demo`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Stay up after the rollout, until Ctrl-C.
    pub keep: bool,
    /// Steps held half as long and a shorter watch after promotion: the
    /// same story in about half the time (for the test suite).
    pub quick: bool,
}

/// What the demo showed, for a caller that checks the story (the test suite does).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Story {
    /// Requests the traffic generator sent, and those that failed for the user.
    pub requests: u64,
    pub failed: u64,
    /// Why the bad candidate was rolled back (the status' reason), when it was.
    pub rollback: Option<String>,
    /// The good candidate was promoted.
    pub promoted: bool,
    /// Labels the feedback API joined to a prediction, and those it did not.
    pub labels_matched: u64,
    labels_unmatched: u64,
}

/// Traffic counters the generator keeps, and the labels it has yet to send.
#[derive(Default)]
struct Traffic {
    sent: AtomicU64,
    blue: AtomicU64,
    green: AtomicU64,
    failed: AtomicU64,
    /// Answered requests waiting for their label: when answered, request id, true class.
    unlabelled: Mutex<Vec<(Instant, String, i64)>>,
    /// Labels the feedback API joined to a prediction, and those it did not.
    matched: AtomicU64,
    unmatched: AtomicU64,
}

impl Traffic {
    /// Takes the labels of the requests answered before `before` (the proxy remembers a
    /// prediction just after its answer is sent, so the newest wait for the next batch).
    fn labels_before(&self, before: Instant) -> Vec<(String, i64)> {
        let mut waiting = self.unlabelled.lock().unwrap_or_else(|e| e.into_inner());
        let (ready, later): (Vec<_>, Vec<_>) = waiting.drain(..).partition(|l| l.0 < before);
        *waiting = later;
        ready
            .into_iter()
            .map(|(_, id, label)| (id, label))
            .collect()
    }
}

/// Runs the demo; returns the story told once it is (or on Ctrl-C with `keep`).
pub async fn run(opts: Options) -> Result<Story, String> {
    let started = Instant::now();
    let stage = Stage::set_up(opts.quick).await?;
    let running = app::start(stage.config("green-bad")?, None)
        .await
        .map_err(|e| e.to_string())?;
    stage.introduce(&running);

    let traffic = Arc::new(Traffic::default());
    let stop_traffic = start_traffic(running.data_addr, running.admin_addr, &traffic);
    let mut printer = Timeline::new(started);
    let rollback = act_one(&mut printer, &running, &traffic, &stage.bad).await?;
    let phase = act_two(&mut printer, &running, &traffic, &stage).await?;
    let _ = stop_traffic.send(true);
    tokio::time::sleep(Duration::from_millis(100)).await;
    summarize(started, &traffic, &printer.judged);

    if phase != "promoted" {
        let statuses = running.shared.status.load_full();
        let reason = statuses.unscoped().and_then(|s| s.reason.clone());
        running.shutdown().await;
        let why = reason.map_or_else(String::new, |r| format!(" ({r})"));
        return Err(format!(
            "act 2 ended in phase {phase}{why}, expected promoted"
        ));
    }
    if opts.keep {
        println!("--keep: still serving; Ctrl-C to stop.");
        let _ = tokio::signal::ctrl_c().await;
    }
    running.shutdown().await;
    Ok(Story {
        requests: traffic.sent.load(Ordering::Relaxed),
        failed: traffic.failed.load(Ordering::Relaxed),
        rollback,
        promoted: true,
        labels_matched: traffic.matched.load(Ordering::Relaxed),
        labels_unmatched: traffic.unmatched.load(Ordering::Relaxed),
    })
}

/// The demo's model servers and the addresses the proxy takes.
struct Stage {
    blue: ModelServer,
    bad: ModelServer,
    good: ModelServer,
    listen: String,
    admin: String,
    quick: bool,
}

impl Stage {
    /// Starts the three model servers and picks the proxy's addresses.
    async fn set_up(quick: bool) -> Result<Stage, String> {
        let start = |name: &'static str, model: Model| async move {
            ModelServer::start(name, model)
                .await
                .map_err(|e| e.to_string())
        };
        let blue = start("blue", Model::default()).await?;
        blue.behavior().set_delay(MODEL_LATENCY);
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
        bad.behavior().set_delay(MODEL_LATENCY);
        good.behavior().set_delay(MODEL_LATENCY);
        Ok(Stage {
            blue,
            bad,
            good,
            listen: free_or_any("127.0.0.1:8080").await,
            admin: free_or_any("127.0.0.1:9901").await,
            quick,
        })
    }

    /// The demo's config, with `candidate` as the rollout's candidate.
    fn config(&self, candidate: &str) -> Result<config::Config, String> {
        let (hold, watch) = if self.quick {
            ("2s", "1s")
        } else {
            ("4s", "3s")
        };
        let text = TEMPLATE
            .replace("{LATENCY}", LATENCY_GATE)
            .replace("{HOLD}", hold)
            .replace("{WATCH}", watch)
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

/// Starts four traffic workers against the proxy at `addr` and the labeller posting to
/// the admin API at `admin`; they stop when the returned sender sends `true`.
fn start_traffic(
    addr: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    traffic: &Arc<Traffic>,
) -> watch::Sender<bool> {
    let (stop, stopped) = watch::channel(false);
    for worker in 0..4 {
        tokio::spawn(generate(worker, addr, traffic.clone(), stopped.clone()));
    }
    tokio::spawn(label(admin, traffic.clone(), stopped));
    stop
}

/// Act 1: green-bad is healthy in shadow, then starts failing once it takes users; the
/// rollout must end rolled back. Returns the rollback's reason.
async fn act_one(
    printer: &mut Timeline,
    running: &Running,
    traffic: &Traffic,
    bad: &ModelServer,
) -> Result<Option<String>, String> {
    println!("Act 1: candidate green-bad (under canary traffic it will fail and mislabel)");
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
                    bad_behavior.set_delay(Duration::from_millis(60));
                    bad_behavior.set_shift(0.25);
                    Some("green-bad starts failing 30 % of its requests, and its label mix shifts")
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
    let statuses = running.shared.status.load_full();
    Ok(statuses.unscoped().and_then(|s| s.reason.clone()))
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

/// Prints how long the story took, what the users saw, and how each candidate's accuracy
/// compared with the stable's (`judged`: the last figures of each act).
fn summarize(started: Instant, traffic: &Traffic, judged: &[Figures]) {
    println!();
    println!(
        "Done in {:.0}s: {} requests, {} answered by blue, {} by a green, {} failed for the user.",
        started.elapsed().as_secs_f64(),
        traffic.sent.load(Ordering::Relaxed),
        traffic.blue.load(Ordering::Relaxed),
        traffic.green.load(Ordering::Relaxed),
        traffic.failed.load(Ordering::Relaxed),
    );
    println!(
        "Labels sent to /api/v1/feedback: {} matched to a prediction, {} unmatched.",
        traffic.matched.load(Ordering::Relaxed),
        traffic.unmatched.load(Ordering::Relaxed),
    );
    for f in judged {
        println!(
            "Candidate {}: accuracy {} vs stable {} {} in its last labelled window; output drift {}.",
            f.candidate,
            percent(f.candidate_score.accuracy()),
            f.stable,
            percent(f.stable_score.accuracy()),
            f.drift.map_or("-".to_string(), |d| format!("{d:.3}")),
        );
    }
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

/// One traffic worker: V2 requests as 500 different users, about 80 a second; each
/// answered request's true label waits in `traffic` for the labeller.
async fn generate(
    worker: u64,
    addr: std::net::SocketAddr,
    traffic: Arc<Traffic>,
    mut stop: watch::Receiver<bool>,
) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let url = format!("http://{addr}/v2/models/demo/infer");
    let truth = Model::default();
    let mut n = worker;
    loop {
        if *stop.borrow() {
            return;
        }
        n += 4;
        let x = rand::random_range(-0.5..0.5);
        let row = [x, x * 0.5, -x];
        let id = format!("demo-{n}");
        let body = format!(
            r#"{{"inputs":[{{"name":"x","shape":[1,3],"datatype":"FP32","data":[{},{},{}]}}]}}"#,
            row[0], row[1], row[2]
        );
        let req = http::Request::post(&url)
            .header("content-type", "application/json")
            .header("x-user-id", format!("user-{}", (n * 7919) % 500))
            .header("x-request-id", &id)
            .body(Full::new(Bytes::from(body)))
            .expect("valid request");
        traffic.sent.fetch_add(1, Ordering::Relaxed);
        if count(&traffic, client.request(req).await).await {
            let mut waiting = traffic.unlabelled.lock().unwrap_or_else(|e| e.into_inner());
            waiting.push((Instant::now(), id, truth.label(&row)));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Counts one answer by who gave it (or as failed); true when it was answered.
async fn count(
    traffic: &Traffic,
    answer: Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error>,
) -> bool {
    let Ok(resp) = answer else {
        traffic.failed.fetch_add(1, Ordering::Relaxed);
        return false;
    };
    let blue = resp
        .headers()
        .get("x-switchyard-variant")
        .is_some_and(|v| v.as_bytes() == b"blue");
    let failed = resp.status().is_server_error();
    let _ = resp.into_body().collect().await;
    let counter = match (failed, blue) {
        (true, _) => &traffic.failed,
        (false, true) => &traffic.blue,
        (false, false) => &traffic.green,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    !failed
}

/// The labeller: every 200 ms, posts the true labels of the requests answered so far to
/// `POST /api/v1/feedback` on the admin API at `admin`, and counts what it matched.
async fn label(
    admin: std::net::SocketAddr,
    traffic: Arc<Traffic>,
    mut stop: watch::Receiver<bool>,
) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let url = format!("http://{admin}/api/v1/feedback");
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stop.changed() => return,
        }
        let ready = traffic.labels_before(Instant::now() - Duration::from_millis(50));
        if ready.is_empty() {
            continue;
        }
        let feedback: Vec<_> = ready
            .iter()
            .map(|(id, label)| serde_json::json!({ "request_id": id, "label": label }))
            .collect();
        let body = serde_json::json!({ "feedback": feedback }).to_string();
        let req = http::Request::post(&url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("valid request");
        let Ok(resp) = client.request(req).await else {
            continue;
        };
        let Ok(body) = resp.into_body().collect().await else {
            continue;
        };
        let joined: serde_json::Value =
            serde_json::from_slice(&body.to_bytes()).unwrap_or_default();
        for (key, counter) in [
            ("matched", &traffic.matched),
            ("unmatched", &traffic.unmatched),
        ] {
            counter.fetch_add(joined[key].as_u64().unwrap_or(0), Ordering::Relaxed);
        }
    }
}

/// What the monitor and the labels say of the rollout's two backends at one moment.
#[derive(Debug, Clone)]
struct Figures {
    stable: String,
    candidate: String,
    /// The candidate's output drift against the stable; `None` before there is a figure.
    drift: Option<f64>,
    /// The labels each backend's predictions got in the analysis window.
    stable_score: Score,
    candidate_score: Score,
    /// The share of the candidate's mirrored answers that agreed with the live ones in
    /// the analysis window, and how many were compared.
    agreement: Option<(f64, u64)>,
}

impl Figures {
    /// The figures of the running rollout now; `None` when the route has no candidate or
    /// no observers.
    fn now(running: &Running) -> Option<Figures> {
        let snapshot = running.shared.snapshot.load();
        let route = snapshot.routes.first()?;
        let o = route.observers.as_deref()?;
        let (stable, candidate) = (&route.stable.name, &route.candidate.as_ref()?.name);
        let now = Instant::now();
        let mirrored = route.candidate.as_ref()?.window.summary(now, route.window);
        let compared = mirrored.shadow_agree + mirrored.shadow_disagree;
        Some(Figures {
            agreement: mirrored.shadow_agreement().map(|a| (a, compared)),
            stable: stable.to_string(),
            candidate: candidate.to_string(),
            drift: o.output_drift(stable, candidate, now),
            stable_score: o.accuracy(stable, now, route.window),
            candidate_score: o.accuracy(candidate, now, route.window),
        })
    }

    /// One short timeline line: shadow agreement (while mirroring), output drift, then
    /// each backend's accuracy and labels.
    fn line(&self) -> String {
        let drift = self.drift.map_or("-".to_string(), |d| format!("{d:.3}"));
        let agreement = self.agreement.map_or(String::new(), |(a, n)| {
            format!("shadow agreement {:.1}% of {n} | ", a * 100.0)
        });
        format!(
            "{agreement}output drift {drift} | accuracy {} {} ({} labels), {} {} ({} labels)",
            self.stable,
            percent(self.stable_score.accuracy()),
            self.stable_score.labels(),
            self.candidate,
            percent(self.candidate_score.accuracy()),
            self.candidate_score.labels(),
        )
    }
}

/// A share as a whole percentage, `-` when there is none.
fn percent(share: Option<f64>) -> String {
    share.map_or("-".to_string(), |a| format!("{:.0}%", a * 100.0))
}

/// Prints the rollout's events, a traffic line and a monitor line as they happen.
struct Timeline {
    started: Instant,
    seen: usize,
    /// (blue, green) answers at the last traffic line.
    counted: (u64, u64),
    /// Per act, the last figures taken while both backends had labels.
    judged: Vec<Figures>,
}

impl Timeline {
    fn new(started: Instant) -> Self {
        Timeline {
            started,
            seen: 0,
            counted: (0, 0),
            judged: Vec::new(),
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
        let mut judged = None;
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
            let figures = Figures::now(running);
            if let Some(f) = figures.as_ref().filter(|f| f.candidate_score.labels() > 0) {
                judged = Some(f.clone());
            }
            if last_line.elapsed() >= Duration::from_secs(2) {
                self.traffic_line(s, traffic);
                if let Some(f) = &figures {
                    println!("  {:>5.1}s  {:<9} {}", self.t(), "monitor", f.line());
                }
                last_line = Instant::now();
            }
            if done(s) || Instant::now() >= until {
                self.judged.extend(judged);
                return s.phase.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Prints the step, the answers each side gave since the last line, and the verdict.
    fn traffic_line(&mut self, s: &Status, traffic: &Traffic) {
        let b = traffic.blue.load(Ordering::Relaxed);
        let g = traffic.green.load(Ordering::Relaxed);
        let verdict = s.analysis.last.as_ref().map_or("-".to_string(), |a| {
            // The sequential gates say what they wait for: their interval and how many more
            // samples would about decide them.
            let waiting: Vec<String> = a
                .gates
                .iter()
                .filter(|g| g.outcome == GateOutcome::Inconclusive)
                .map(|g| match &g.sequential {
                    Some(q) => {
                        let high = q
                            .interval
                            .high
                            .map_or("unbounded".into(), |h| format!("{h:.3}"));
                        let needed = q
                            .needed
                            .map_or(String::new(), |n| format!(", about {n} more samples"));
                        format!(
                            "{} in [{:.3}, {high}] on {} samples{needed}",
                            g.gate.as_str(),
                            q.interval.low,
                            q.samples
                        )
                    }
                    None => format!("{} waits", g.gate.as_str()),
                })
                .collect();
            match waiting.is_empty() {
                true => a.verdict.as_str().to_string(),
                false => format!("{} ({})", a.verdict.as_str(), waiting.join("; ")),
            }
        });
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
    }

    fn t(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}
