//! Test support: in-process model servers, a running switchyard on a config file, and a client.
#![allow(dead_code)]

pub mod config;

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

use switchyard::demo::model::{Model, ModelServer};
use switchyard::server::{self, Running};

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

/// A running switchyard in front of two model servers, `blue` and `green`.
pub struct Harness {
    pub blue: ModelServer,
    pub green: ModelServer,
    pub running: Option<Running>,
    pub dir: TempDir,
    pub config_path: PathBuf,
    pub client: Client<HttpConnector, Full<Bytes>>,
    template: String,
}

impl Harness {
    /// Starts the model servers and switchyard on `template`, a config in which
    /// `{BLUE}`, `{GREEN}` and `{STATE}` are replaced by the servers' URLs and a state path.
    pub async fn start(template: &str) -> Harness {
        let blue = ModelServer::start("blue", Model::default()).await.unwrap();
        let green = ModelServer::start("green", Model::default()).await.unwrap();
        Self::start_with(template, blue, green).await
    }

    pub async fn start_with(template: &str, blue: ModelServer, green: ModelServer) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("switchyard.yaml");
        let mut h = Harness {
            blue,
            green,
            running: None,
            dir,
            config_path,
            client: client(),
            template: template.to_string(),
        };
        h.write_config(template);
        h.boot().await;
        h
    }

    /// Fills the template's placeholders.
    pub fn render(&self, template: &str) -> String {
        template
            .replace("{BLUE}", &self.blue.url())
            .replace("{GREEN}", &self.green.url())
            .replace(
                "{STATE}",
                &self.dir.path().join("state.json").display().to_string(),
            )
    }

    /// Writes a config file (rendered) where switchyard watches it.
    pub fn write_config(&self, template: &str) {
        std::fs::write(&self.config_path, self.render(template)).unwrap();
    }

    /// Starts switchyard on the current config file.
    pub async fn boot(&mut self) {
        let cfg = switchyard::config::load_file(&self.config_path).expect("valid test config");
        self.running = Some(
            server::start(cfg, Some(self.config_path.clone()))
                .await
                .unwrap(),
        );
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.running().data_addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.running().admin_addr, path)
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

    /// A V2 inference request as user `user` (no sticky header when `None`).
    pub async fn infer(&self, user: Option<&str>) -> Answer {
        let body =
            r#"{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[0.1,0.2,0.3]}]}"#;
        let mut headers = vec![("content-type", "application/json")];
        if let Some(u) = user {
            headers.push(("x-user-id", u));
        }
        self.send(Method::POST, "/v2/models/m/infer", &headers, body)
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
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.status().await;
            if f(&s) {
                return s;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}; status: {s:#}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) until the candidate's shadow tally in the status window satisfies `f`.
    pub async fn wait_shadow(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let s = self
            .wait_status(what, |s| f(&s["window"]["candidate"]["shadow"]))
            .await;
        s["window"]["candidate"]["shadow"].clone()
    }

    /// The value of one series on `/metrics` (`name{labels}` exactly as rendered), 0 when
    /// absent. The recorder is process-wide: other tests running beside add to it too.
    pub async fn metric(&self, series: &str) -> f64 {
        let m = self.admin(Method::GET, "/metrics", None, "").await;
        String::from_utf8_lossy(&m.body)
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits (bounded) until `series` on `/metrics` reaches `at_least`.
    pub async fn wait_metric(&self, series: &str, at_least: f64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let v = self.metric(series).await;
            if v >= at_least {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{series} stayed at {v}, below {at_least}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) until `n` requests have reached `server`.
    pub async fn wait_hits(&self, server: &ModelServer, n: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while server.behavior().hits() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} never got {n} requests",
                server.name
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn shutdown(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
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

/// A test config: blue stable, green candidate, the given `steps` (YAML list items),
/// `rollout_extra` appended to the rollout block and `extra` at the top level.
/// `{BLUE}`, `{GREEN}` and `{STATE}` are filled in by [`Harness::render`].
pub fn config(steps: &str, rollout_extra: &str, extra: &str) -> String {
    format!(
        r#"
listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0, token_env: SWITCHYARD_TEST_NO_TOKEN }}
backends:
  blue: {{ url: "{{BLUE}}", timeout: 10s }}
  green: {{ url: "{{GREEN}}", timeout: 10s }}
rollout:
  stable: blue
  candidate: green
  override_header: x-switchyard-route
  steps:
{steps}
{rollout_extra}
{extra}
state: {{ path: "{{STATE}}" }}
"#
    )
}

/// A canary with a manual first step at `weight`, then 100 %, so tests control promotion.
pub fn canary(weight: f64, rollout_extra: &str) -> String {
    config(
        &format!("    - {{ weight: {weight}, hold: manual }}\n    - {{ weight: 100 }}"),
        rollout_extra,
        "",
    )
}

/// A manual ramp 10 % → 50 % → 100 %.
pub fn ramp(rollout_extra: &str) -> String {
    config(
        "    - { weight: 10, hold: manual }\n    - { weight: 50, hold: manual }\n    - { weight: 100 }",
        rollout_extra,
        "",
    )
}

/// A shadow step (weight 0, every request mirrored), comparing with `protocol: auto`.
pub fn shadow(shadow_extra: &str) -> String {
    config(
        "    - { weight: 0, mirror: 100, hold: manual }\n    - { weight: 100 }",
        "",
        &format!("shadow:\n  compare: {{ protocol: auto }}\n{shadow_extra}"),
    )
}
