//! Judgment under load: the latency gate compares the stable and the candidate as the
//! backends are, however busy the node and however flooded switchyard.
//!
//! The real binary, in front of two model servers of known latency, on a node whose two
//! cores are taken by two processes spinning, while a client floods it over many
//! connections. In a shadow step the stable answers users and the candidate answers
//! mirrored copies: timed where switchyard reads the answers, the stable would carry
//! switchyard's own waits for a CPU and the candidate not, and `max_ratio` would
//! compare the two unfairly (a candidate 60 ms slower than a 20 ms stable passing
//! because the stable reads 80 ms).
//!
//! A test binary of its own, not a module of tests/it: it takes both cores and floods,
//! so beside other tests it would slow them and they would disturb its measurement.

#[path = "it/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use support::process::{free_port, Switchyard};
use switchyard::demo::model::{Behavior, Model, ModelServer};
use tokio::task::JoinSet;

/// The stable's latency, and a healthy candidate's.
const STABLE_LATENCY: Duration = Duration::from_millis(20);
/// How much slower the bad candidate is: three times the stable at p99, twice the ratio
/// the gate allows.
const SLOWER: Duration = Duration::from_millis(60);
/// One case at a time: each is the load it describes (two spinners, one flood).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Concurrent connections of the flooding client.
const FLOOD_CONNECTIONS: usize = 96;
/// How long a case may take before the test gives up: generous, for a busy CI node.
const DEADLINE: Duration = Duration::from_secs(90);

/// Processes that keep every core busy (`while :; do :; done`, at nice 10), as other
/// work on the node does; killed when dropped.
struct Spinners(Vec<Child>);

impl Spinners {
    fn start(n: usize) -> Spinners {
        let spin = || {
            // Niced as batch work on a shared node is: it takes every idle cycle, and the
            // test's own model servers, which stand for backends on other machines, still
            // answer in their time (un-niced spinners plus anything else running on the
            // test machine slow them unevenly, and the gate would rightly see that).
            Command::new("nice")
                .args(["-n", "10", "sh", "-c", "while :; do :; done"])
                .spawn()
                .expect("sh")
        };
        Spinners((0..n).map(|_| spin()).collect())
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The two model servers, on a runtime of their own (so the flood's tasks do not delay
/// their answers), `blue` answering after `STABLE_LATENCY` and `green` after `green`.
/// Their behaviors stay reachable; the servers live as long as the test process.
fn backends(green: Duration) -> ((String, Arc<Behavior>), (String, Arc<Behavior>)) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let blue = ModelServer::start("blue", Model::default()).await.unwrap();
            let green_server = ModelServer::start("green", Model::default()).await.unwrap();
            blue.behavior().set_delay(STABLE_LATENCY);
            green_server.behavior().set_delay(green);
            let out = |s: &ModelServer| (s.url(), s.behavior().clone());
            tx.send((out(&blue), out(&green_server))).unwrap();
            std::future::pending::<()>().await
        })
    });
    rx.recv().unwrap()
}

/// A shadow step (every request mirrored to the candidate, no user on it) held 3 s, then
/// all traffic: gated on `latency_p99.max_ratio: 1.5` alone, evaluated every second over
/// the last 10 s from 50 samples, rolled back after two failed evaluations in a row. One
/// client sends everything, so no share bounds it.
fn config(port: u16, admin_port: u16, blue: &str, green: &str) -> String {
    format!(
        "listen: 127.0.0.1:{port}
admin: {{ listen: '127.0.0.1:{admin_port}' }}
state: {{ path: null }}
backends:
  blue: {{ url: '{blue}' }}
  green: {{ url: '{green}' }}
rollout:
  stable: blue
  candidate: green
  steps:
    - {{ weight: 0, mirror: 100, hold: 3s }}
    - {{ weight: 100 }}
  analysis:
    interval: 1s
    window: 10s
    min_samples: 50
    failure_limit: 2
    max_client_share: 1
    gates:
      latency_p99: {{ max_ratio: 1.5 }}
"
    )
}

/// A client sending inference requests over `FLOOD_CONNECTIONS` connections as fast as
/// switchyard answers them, until dropped; counts the answers.
struct Flood {
    tasks: JoinSet<()>,
    answered: Arc<AtomicU64>,
}

impl Flood {
    fn start(url: String) -> Flood {
        let answered = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        for _ in 0..FLOOD_CONNECTIONS {
            // A client of its own for each: one connection each, kept alive.
            let client = support::client();
            let (url, answered) = (url.clone(), answered.clone());
            tasks.spawn(async move {
                loop {
                    let req = Request::post(&url)
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(support::INFER.as_bytes())))
                        .unwrap();
                    // Errors are not the point here: the flood goes on whatever happens.
                    if let Ok(resp) = client.request(req).await {
                        if resp.into_body().collect().await.is_ok() {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        Flood { tasks, answered }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// The admin status, `None` while switchyard is not answering (yet).
async fn status(url: &str) -> Option<Value> {
    let client = support::client();
    let resp = tokio::time::timeout(Duration::from_secs(5), client.get(url.parse().ok()?))
        .await
        .ok()?
        .ok()?;
    if resp.status() != StatusCode::OK {
        return None;
    }
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    serde_json::from_slice(&body).ok()
}

/// Runs one rollout of a candidate `green` slower than the stable by `slower`, on a busy
/// node under a flood, until its phase is `promoted` or `rolled_back`; returns the final
/// status, and how many requests the candidate got that were not mirrored copies.
async fn rollout_under_load(slower: Duration) -> (Value, u64) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let ((blue, _), (green, green_behavior)) = backends(STABLE_LATENCY + slower);
    let (port, admin_port) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.yaml");
    std::fs::write(&path, config(port, admin_port, &blue, &green)).unwrap();
    let status_url = format!("http://127.0.0.1:{admin_port}/api/v1/status");
    let _switchyard = start(&path, &status_url).await;

    // Both cores taken, then the flood: switchyard waits for a CPU between the stable's
    // answer arriving and its task reading it.
    let _spinners = Spinners::start(2);
    let flood = Flood::start(format!("http://127.0.0.1:{port}/v2/models/m/infer"));

    let deadline = tokio::time::Instant::now() + DEADLINE;
    let last = loop {
        let s = status(&status_url).await;
        let phase = s.as_ref().map(|s| s["phase"].clone());
        if let Some(s) = s.filter(|_| {
            phase
                .as_ref()
                .is_some_and(|p| p == "promoted" || p == "rolled_back")
        }) {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no decision within {DEADLINE:?} ({} answered): {:#}",
            flood.answered.load(Ordering::Relaxed),
            s_or_null(status(&status_url).await)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        flood.answered.load(Ordering::Relaxed) > 0,
        "the flood was answered"
    );
    eprintln!(
        "{:?} slower: {} after {} answers; last analysis: {}",
        slower,
        last["phase"],
        flood.answered.load(Ordering::Relaxed),
        last["analysis"]["last"]["gates"]
    );
    drop(flood);
    let served = green_behavior.hits() - green_behavior.shadow_hits();
    (last, served)
}

fn s_or_null(s: Option<Value>) -> Value {
    s.unwrap_or(Value::Null)
}

/// Starts switchyard on `config` and waits until its admin API answers.
async fn start(config: &Path, status_url: &str) -> Switchyard {
    let child = Switchyard::run(config);
    support::eventually("switchyard to start", Duration::from_millis(50), || async {
        status(status_url)
            .await
            .map(drop)
            .ok_or("no status yet".to_string())
    })
    .await;
    child
}

/// The gates of the last evaluation that failed, by name.
fn failing_gates(status: &Value) -> Vec<String> {
    let gates = status["analysis"]["last"]["gates"].as_array();
    gates
        .into_iter()
        .flatten()
        .filter(|g| g["outcome"] == "fail")
        .filter_map(|g| g["gate"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_candidate_is_promoted_on_a_busy_flooded_node() {
    let (s, _) = rollout_under_load(Duration::ZERO).await;
    assert_eq!(
        s["phase"], "promoted",
        "reason: {}; last analysis: {:#}",
        s["reason"], s["analysis"]["last"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_60ms_slower_is_caught_in_its_shadow_step_on_a_busy_flooded_node() {
    let (s, served) = rollout_under_load(SLOWER).await;
    assert_eq!(
        s["phase"], "rolled_back",
        "a candidate 3× slower at p99 was promoted; last analysis: {:#}",
        s["analysis"]["last"]
    );
    assert_eq!(
        failing_gates(&s),
        ["latency_p99_ratio"],
        "reason: {}; last analysis: {:#}",
        s["reason"],
        s["analysis"]["last"]
    );
    let reason = s["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("stable's"), "{reason}");
    assert_eq!(served, 0, "no user was answered by the slow candidate");
}
