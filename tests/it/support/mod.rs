//! Test support: in-process model servers, a running switchyard on a config file
//! ([`ProxyHarness`]), a client, and the test configs ([`config::TestConfig`]).
#![allow(dead_code)]

pub mod config;
pub mod etcd;
pub mod metrics;
pub mod mock;
pub mod process;
pub mod recorder;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tempfile::TempDir;

use switchyard::app::{self, Running};
use switchyard::demo::model::{Model, ModelServer};

use config::TestConfig;

/// One answer as a test looks at it.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn variant(&self) -> &str {
        self.headers
            .get("x-switchyard-variant")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A V2 inference request body: one FP32 row of three features.
pub const INFER: &str =
    r#"{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[0.1,0.2,0.3]}]}"#;

/// A running switchyard, on a config file it watches, in front of two model servers,
/// `blue` and `green`.
pub struct ProxyHarness {
    pub blue: ModelServer,
    pub green: ModelServer,
    running: Option<Running>,
    pub dir: TempDir,
    pub config_path: PathBuf,
    pub client: Client<HttpConnector, Full<Bytes>>,
}

impl ProxyHarness {
    /// Starts two default model servers and switchyard on `config`.
    pub async fn start(config: &TestConfig) -> ProxyHarness {
        let blue = ModelServer::start("blue", Model::default()).await.unwrap();
        let green = ModelServer::start("green", Model::default()).await.unwrap();
        Self::start_with(config, blue, green).await
    }

    /// Starts switchyard on `config` in front of the given model servers.
    pub async fn start_with(
        config: &TestConfig,
        blue: ModelServer,
        green: ModelServer,
    ) -> ProxyHarness {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("switchyard.yaml");
        let mut h = ProxyHarness {
            blue,
            green,
            running: None,
            dir,
            config_path,
            client: client(),
        };
        h.write_config(config);
        h.boot().await;
        h
    }

    /// The text of `config` as this harness writes it: backends not set otherwise point
    /// at its model servers, the rollout state goes to its directory.
    pub fn render(&self, config: &TestConfig) -> String {
        config
            .clone()
            .or_backends(&self.blue.url(), &self.green.url())
            .or_state_path(&self.dir.path().join("state.json"))
            .render()
    }

    /// Writes `config` where switchyard watches it.
    pub fn write_config(&self, config: &TestConfig) {
        std::fs::write(&self.config_path, self.render(config)).unwrap();
    }

    /// Starts switchyard on the current config file.
    pub async fn boot(&mut self) {
        let cfg = switchyard::config::load_file(&self.config_path).expect("valid test config");
        self.running = Some(
            app::start(cfg, Some(self.config_path.clone()))
                .await
                .unwrap(),
        );
    }

    /// Stops switchyard gracefully, letting requests in flight finish.
    pub async fn shutdown(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }

    fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    /// The routing snapshot in force.
    pub fn snapshot(&self) -> std::sync::Arc<switchyard::snapshot::Snapshot> {
        self.running().shared.snapshot.load_full()
    }

    /// Where the data plane listens.
    pub fn data_addr(&self) -> SocketAddr {
        self.running().data_addr
    }

    /// Where the admin API listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.running().admin_addr
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.data_addr(), path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin_addr(), path)
    }

    /// Sends a request through the proxy.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        send(
            &self.client,
            method,
            &self.url(path),
            headers,
            body.to_string(),
        )
        .await
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send(Method::GET, path, headers, "").await
    }

    /// A V2 inference request ([`INFER`]) as user `user` (no sticky header when `None`).
    pub async fn infer(&self, user: Option<&str>) -> Answer {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(u) = user {
            headers.push(("x-user-id", u));
        }
        self.send(Method::POST, "/v2/models/m/infer", &headers, INFER)
            .await
    }

    /// Calls the admin API.
    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> Answer {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        if !body.is_empty() {
            // As the CLI does: the admin API takes JSON bodies only.
            headers.push(("content-type", "application/json"));
        }
        send(
            &self.client,
            method,
            &self.admin_url(path),
            &headers,
            body.to_string(),
        )
        .await
    }

    pub async fn status(&self) -> Value {
        self.admin(Method::GET, "/api/v1/status", None, "")
            .await
            .json()
    }

    /// Waits (bounded) until the status satisfies `f`; panics with the last status otherwise.
    pub async fn wait_status(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        eventually(what, Duration::from_millis(20), || async {
            let s = self.status().await;
            if f(&s) {
                Ok(s)
            } else {
                Err(format!("status: {s:#}"))
            }
        })
        .await
    }

    /// Waits (bounded) until the candidate's shadow tally in the status window satisfies `f`.
    pub async fn wait_shadow(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let s = self
            .wait_status(what, |s| f(&s["window"]["candidate"]["shadow"]))
            .await;
        s["window"]["candidate"]["shadow"].clone()
    }

    /// The text of `/metrics`. The recorder is process-wide: other tests running beside
    /// add to it too.
    pub async fn metrics_text(&self) -> String {
        let m = self.admin(Method::GET, "/metrics", None, "").await;
        String::from_utf8_lossy(&m.body).into_owned()
    }

    /// The value of one series on `/metrics` (`name{labels}` exactly as rendered), 0 when
    /// absent.
    pub async fn metric(&self, series: &str) -> f64 {
        self.metrics_text()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits (bounded) until `series` on `/metrics` reaches `at_least`.
    pub async fn wait_metric(&self, series: &str, at_least: f64) {
        eventually(series, Duration::from_millis(20), || async {
            let v = self.metric(series).await;
            if v >= at_least {
                Ok(())
            } else {
                Err(format!("stayed at {v}, below {at_least}"))
            }
        })
        .await
    }

    /// Waits (bounded) until `n` requests have reached `server`.
    pub async fn wait_hits(&self, server: &ModelServer, n: u64) {
        let what = format!("{n} requests to {}", server.name);
        eventually(&what, Duration::from_millis(5), || async {
            let hits = server.behavior().hits();
            if hits >= n {
                Ok(())
            } else {
                Err(format!("{hits} so far"))
            }
        })
        .await
    }
}

/// Whether the status JSON `status` lists an event of `kind` whose message contains `says`.
pub fn has_event(status: &Value, kind: &str, says: &str) -> bool {
    let events = status["events"].as_array().expect("a status lists events");
    events
        .iter()
        .any(|e| e["kind"] == kind && e["message"].as_str().is_some_and(|m| m.contains(says)))
}

/// Calls `probe` every `every` until it answers `Ok`, for at most 30 s; panics with
/// `what` and the last `Err` otherwise.
///
/// The bound is for a test that is failing, not a timing target: a healthy run answers
/// in well under a second, but on a busy machine the low-priority shadow and observer
/// threads (nice 9 by design) can lag the live side by many seconds.
pub async fn eventually<T, F, Fut>(what: &str, every: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    eventually_within(what, every, Duration::from_secs(30), probe).await
}

/// As [`eventually`], giving up after `limit` instead of 10 s.
pub async fn eventually_within<T, F, Fut>(
    what: &str,
    every: Duration,
    limit: Duration,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match probe().await {
            Ok(done) => return done,
            Err(last) if tokio::time::Instant::now() > deadline => {
                panic!("timed out waiting for {what}; {last}")
            }
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http()
}

pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: String,
) -> Answer {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body))).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("answer within 10 s")
        .expect("request sent");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}
