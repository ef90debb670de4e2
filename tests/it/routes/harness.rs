//! A switchyard with several routes, running in process on a config file it watches, in
//! front of mock model servers ([`MockModel`]), one per configured backend.
//!
//! Configs are written as YAML, route by route:
//!
//! ```ignore
//! let iris = route("iris")
//!     .when("{ model: iris }")
//!     .rollout("{ stable: iris-v1, candidate: iris-v2, steps: [{ weight: 100 }] }");
//! let h = Routed::start(&["iris-v1", "iris-v2"], &[iris]).await;
//! ```
//!
//! The harness adds the rest of the file: free ports, no admin token, every backend at
//! its mock's URL, and the state file in the harness's directory.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use serde_json::Value;
use tempfile::TempDir;

use switchyard::app::{self, Running};

pub use crate::support::metrics::{parse_labels, series};
use crate::support::mock::{served_by, MockModel};
use crate::support::{self, eventually, Answer, INFER};

/// One entry of `routes:`, as YAML.
#[derive(Debug, Clone)]
pub struct Route {
    name: &'static str,
    when: Option<&'static str>,
    rollout: String,
    shadow: Option<&'static str>,
}

/// A route called `name` that takes every request and has no rollout yet.
pub fn route(name: &'static str) -> Route {
    Route {
        name,
        when: None,
        rollout: String::new(),
        shadow: None,
    }
}

impl Route {
    /// The route's `match`, as a YAML flow mapping: `"{ model: iris }"`.
    pub fn when(mut self, conditions: &'static str) -> Route {
        self.when = Some(conditions);
        self
    }

    /// The route's `rollout`, as a YAML flow mapping.
    pub fn rollout(mut self, rollout: impl Into<String>) -> Route {
        self.rollout = rollout.into();
        self
    }

    /// The route's own `shadow`, as a YAML flow mapping.
    pub fn shadow(mut self, shadow: &'static str) -> Route {
        self.shadow = Some(shadow);
        self
    }

    fn render(&self) -> String {
        assert!(
            !self.rollout.is_empty(),
            "route {} has no rollout",
            self.name
        );
        let mut text = format!("  - name: {}\n", self.name);
        if let Some(when) = self.when {
            text += &format!("    match: {when}\n");
        }
        text += &format!("    rollout: {}\n", self.rollout);
        if let Some(shadow) = self.shadow {
            text += &format!("    shadow: {shadow}\n");
        }
        text
    }
}

/// The backends of [`held_canaries`].
pub const HELD_BACKENDS: [&str; 5] = ["iris-v1", "iris-v2", "chat-a", "chat-b", "fraud-v6"];

/// Three routes: iris and chat, canaries held by hand (50 % and 25 %); fraud, nothing
/// to roll out.
pub fn held_canaries() -> Vec<Route> {
    vec![
        route("iris").when("{ model: iris }").rollout(
            "{ stable: iris-v1, candidate: iris-v2, \
             steps: [{ weight: 50, hold: manual }, { weight: 100 }] }",
        ),
        route("chat").when("{ model: llama-3-8b }").rollout(
            "{ stable: chat-a, candidate: chat-b, \
             steps: [{ weight: 25, hold: manual }, { weight: 100 }] }",
        ),
        route("fraud")
            .when("{ path_prefix: /fraud/ }")
            .rollout("{ stable: fraud-v6 }"),
    ]
}

/// A running switchyard with routes, its mock backends, and its files.
pub struct Routed {
    backends: Vec<MockModel>,
    running: Option<Running>,
    pub dir: TempDir,
    pub config_path: PathBuf,
    pub client: Client<HttpConnector, Full<Bytes>>,
}

impl Routed {
    /// Starts a mock model server for each of `backends` and switchyard on `routes`.
    pub async fn start(backends: &[&str], routes: &[Route]) -> Routed {
        let mut mocks = Vec::new();
        for name in backends {
            mocks.push(MockModel::start(name).await);
        }
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("switchyard.yaml");
        let mut h = Routed {
            backends: mocks,
            running: None,
            dir,
            config_path,
            client: support::client(),
        };
        h.write_config(routes);
        h.boot().await;
        h
    }

    /// The whole config file for `routes`.
    pub fn render(&self, routes: &[Route]) -> String {
        let mut text = String::from(
            "listen: 127.0.0.1:0\n\
             admin: { listen: 127.0.0.1:0, token_env: SWITCHYARD_TEST_NO_TOKEN }\n\
             backends:\n",
        );
        for b in &self.backends {
            text += &format!("  {}: {{ url: '{}', timeout: 10s }}\n", b.name, b.url());
        }
        text += "routes:\n";
        for r in routes {
            text += &r.render();
        }
        let state = self.dir.path().join("state.json");
        text += &format!("state: {{ path: '{}' }}\n", state.display());
        text
    }

    /// Writes the config for `routes` where switchyard watches it.
    pub fn write_config(&self, routes: &[Route]) {
        std::fs::write(&self.config_path, self.render(routes)).unwrap();
    }

    /// Starts switchyard on the current config file (and state file).
    pub async fn boot(&mut self) {
        let cfg = switchyard::config::load_file(&self.config_path).expect("a valid routes config");
        let running = app::start(cfg, Some(self.config_path.clone()))
            .await
            .unwrap_or_else(|e| panic!("switchyard did not start: {e}"));
        self.running = Some(running);
    }

    /// Stops switchyard gracefully.
    pub async fn shutdown(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }

    fn running(&self) -> &Running {
        self.running.as_ref().expect("switchyard is running")
    }

    /// The mock server of backend `name`.
    pub fn backend(&self, name: &str) -> &MockModel {
        self.backends
            .iter()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("no backend {name} in this test"))
    }

    /// Starts a new mock server for backend `name` (a new URL, as a redeploy gives); the
    /// next config written points `name` at it.
    pub async fn replace_backend(&mut self, name: &str) {
        let fresh = MockModel::start(name).await;
        let old = self
            .backends
            .iter_mut()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("no backend {name} in this test"));
        *old = fresh;
    }

    /// Starts a mock server for a new backend `name`; the next config written lists it.
    pub async fn add_backend(&mut self, name: &str) {
        self.backends.push(MockModel::start(name).await);
    }

    // --- the data plane ---

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.running().data_addr, path)
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        support::send(
            &self.client,
            method,
            &self.url(path),
            headers,
            body.to_string(),
        )
        .await
    }

    /// A V2 inference request ([`INFER`]) for `model`.
    pub async fn infer(&self, model: &str) -> Answer {
        let path = format!("/v2/models/{model}/infer");
        let json = [("content-type", "application/json")];
        self.send(Method::POST, &path, &json, INFER).await
    }

    /// An OpenAI-style chat completion for `model`.
    pub async fn chat(&self, model: &str) -> Answer {
        let body =
            format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
        let json = [("content-type", "application/json")];
        self.send(Method::POST, "/v1/chat/completions", &json, &body)
            .await
    }

    /// Which backends served `n` requests made by `request`, each answered 200 by the
    /// backend it names; panics on any other answer.
    pub async fn served<F, Fut>(&self, n: usize, mut request: F) -> Vec<String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Answer>,
    {
        let mut by = Vec::new();
        for _ in 0..n {
            let a = request().await;
            assert_eq!(
                a.status,
                StatusCode::OK,
                "{}",
                String::from_utf8_lossy(&a.body)
            );
            assert_eq!(
                served_by(&a).as_deref(),
                Some(a.variant()),
                "x-switchyard-variant names another backend than the one that answered"
            );
            by.push(a.variant().to_string());
        }
        by
    }

    // --- the admin API ---

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.running().admin_addr, path)
    }

    /// Calls the admin API; a body is sent as JSON.
    pub async fn admin(&self, method: Method, path: &str, body: &str) -> Answer {
        let json = [("content-type", "application/json")];
        let headers: &[(&str, &str)] = if body.is_empty() { &[] } else { &json };
        support::send(
            &self.client,
            method,
            &self.admin_url(path),
            headers,
            body.to_string(),
        )
        .await
    }

    /// The statuses `GET /api/v1/routes` lists.
    pub async fn routes(&self) -> Vec<Value> {
        let a = self.admin(Method::GET, "/api/v1/routes", "").await;
        assert_eq!(
            a.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&a.body)
        );
        a.json()["routes"]
            .as_array()
            .unwrap_or_else(|| panic!("no `routes` list: {}", a.json()))
            .clone()
    }

    /// `GET /api/v1/routes/NAME/status`, which must answer 200.
    pub async fn status(&self, name: &str) -> Value {
        let a = self
            .admin(Method::GET, &format!("/api/v1/routes/{name}/status"), "")
            .await;
        assert_eq!(
            a.status,
            StatusCode::OK,
            "status of {name}: {}",
            String::from_utf8_lossy(&a.body)
        );
        a.json()
    }

    /// `POST /api/v1/routes/NAME/ACTION` with `body`.
    pub async fn control(&self, name: &str, action: &str, body: &str) -> Answer {
        let path = format!("/api/v1/routes/{name}/{action}");
        self.admin(Method::POST, &path, body).await
    }

    /// Waits (bounded) until route `name`'s status satisfies `f`; panics with the last
    /// status otherwise.
    pub async fn wait_status(&self, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        eventually(what, Duration::from_millis(20), || async {
            let s = self.status(name).await;
            if f(&s) {
                Ok(s)
            } else {
                Err(format!("status of {name}: {s:#}"))
            }
        })
        .await
    }

    /// The text of `/metrics` (process-wide: other tests running beside add to it).
    pub async fn metrics_text(&self) -> String {
        let m = self.admin(Method::GET, "/metrics", "").await;
        assert_eq!(m.status, StatusCode::OK);
        String::from_utf8_lossy(&m.body).into_owned()
    }

    // --- the command line ---

    /// Runs `switchyard ARGS --admin URL` with `env` set (and no route, token or admin
    /// from the test's own environment): its exit code, stdout and stderr.
    pub fn cli(&self, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
        let admin = format!("http://{}", self.running().admin_addr);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        cmd.args(args)
            .args(["--admin", &admin])
            .env_remove("SWITCHYARD_ROUTE")
            .env_remove("SWITCHYARD_ADMIN")
            .env_remove("SWITCHYARD_ADMIN_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        // The command calls back into this process's admin API: keep the runtime serving.
        let out = tokio::task::block_in_place(|| cmd.output().expect("run switchyard"));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// The status of route `name` in a `GET /api/v1/routes` list.
pub fn listed<'a>(routes: &'a [Value], name: &str) -> &'a Value {
    routes
        .iter()
        .find(|r| r["route"] == name)
        .unwrap_or_else(|| panic!("route {name} not listed: {routes:#?}"))
}

/// A route's placement as a user reads it: (phase, step, weight).
pub fn placement(status: &Value) -> (String, u64, f64) {
    (
        status["phase"].as_str().unwrap_or("?").to_string(),
        status["step"].as_u64().unwrap_or(u64::MAX),
        status["weight"].as_f64().unwrap_or(f64::NAN),
    )
}

/// How many events of `kind` a status lists.
pub fn events_of(status: &Value, kind: &str) -> usize {
    status["events"]
        .as_array()
        .expect("a status lists events")
        .iter()
        .filter(|e| e["kind"] == kind)
        .count()
}

#[test]
fn series_match_labels_in_any_order() {
    let text = "# TYPE x counter\n\
                x{route=\"iris\",backend=\"a\",code=\"200\"} 3\n\
                x{backend=\"a\",code=\"200\",route=\"fraud\"} 4\n\
                x{backend=\"a\",code=\"500\",route=\"iris\"} 1\n\
                xy{route=\"iris\"} 9\n\
                w 2\n";
    let iris_ok = [("backend", "a"), ("code", "200"), ("route", "iris")];
    assert_eq!(series(text, "x", &iris_ok), vec![3.0]);
    assert_eq!(series(text, "x", &[("route", "iris")]), vec![3.0, 1.0]);
    assert_eq!(series(text, "w", &[]), vec![2.0]);
    assert!(series(text, "x", &[("route", "chat")]).is_empty());
    let escaped = parse_labels(r#"a="x\"y",b="z""#);
    assert_eq!(
        escaped,
        vec![("a".into(), "x\"y".into()), ("b".into(), "z".into())]
    );
}
