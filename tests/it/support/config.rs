//! Test configs, built with methods and rendered to YAML in one place.
//!
//! Every test config starts as two model servers, `blue` (stable) and `green`
//! (candidate), behind a switchyard that listens on free ports with no admin token;
//! a test adds only what it is about:
//!
//! ```ignore
//! let config = TestConfig::new()
//!     .steps([step(20.0).hold("10s"), step(100.0)])
//!     .analysis(Analysis::every_10s())
//!     .gate_error_rate(0.01)
//!     .fast_rollback(3);
//! ```
//!
//! Backends with no URL set point at ports nobody listens on; the proxy harness fills
//! in its own model servers (and a state file) before it writes the file.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Where `blue` and `green` point when nothing else is said: the demo's ports, where no
/// test listens.
const BLUE_URL: &str = "http://127.0.0.1:18001";
const GREEN_URL: &str = "http://127.0.0.1:18002";

/// A whole config file, as the tests write it.
#[derive(Debug, Clone, Serialize)]
pub struct TestConfig {
    listen: &'static str,
    admin: Admin,
    #[serde(skip_serializing_if = "Limits::is_empty")]
    limits: Limits,
    backends: BTreeMap<&'static str, Backend>,
    rollout: Rollout,
    #[serde(skip_serializing_if = "Option::is_none")]
    shadow: Option<Shadow>,
    state: State,
    /// `monitor`, `capture`, `feedback`: written as given.
    #[serde(flatten)]
    observers: BTreeMap<&'static str, serde_json::Value>,
    /// (name, model): the rollout is written as the one entry of `routes:`, taking the
    /// requests for that model, instead of as the top-level `rollout:`.
    #[serde(skip)]
    route: Option<(&'static str, &'static str)>,
}

#[derive(Debug, Clone, Serialize)]
struct Admin {
    listen: &'static str,
    token_env: String,
}

#[derive(Debug, Clone, Default, Serialize)]
struct Limits {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    header_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    send_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    drain_timeout: Option<String>,
}

impl Limits {
    fn is_empty(&self) -> bool {
        self.max_body.is_none()
            && self.header_timeout.is_none()
            && self.idle_timeout.is_none()
            && self.body_timeout.is_none()
            && self.max_connections.is_none()
            && self.send_timeout.is_none()
            && self.drain_timeout.is_none()
    }
}

#[derive(Debug, Clone, Serialize)]
struct Backend {
    /// `None` until a harness (or a test) says where the server is.
    url: Option<String>,
    timeout: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
struct Rollout {
    stable: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strategy: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sticky: Option<Sticky>,
    override_header: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    steps: Vec<Step>,
    #[serde(skip_serializing_if = "Option::is_none")]
    analysis: Option<Analysis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fast_rollback: Option<FastRollback>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    fallback_to_stable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    blue_green: Option<BlueGreen>,
}

#[derive(Debug, Clone, Serialize)]
struct Sticky {
    #[serde(skip_serializing_if = "Option::is_none")]
    header: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cookie: Option<String>,
}

/// One rollout step: `step(25.0).hold("10s")`, `step(0.0).mirror(100.0).manual()`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    weight: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    mirror: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hold: Option<String>,
}

/// A step that sends `weight` % of users to the candidate, with no hold (the last step).
pub fn step(weight: f64) -> Step {
    Step {
        weight,
        mirror: None,
        hold: None,
    }
}

impl Step {
    /// Holds the step for `duration` (`"10s"`, `"10m"`) before it may pass.
    pub fn hold(mut self, duration: &str) -> Step {
        self.hold = Some(duration.to_string());
        self
    }

    /// Holds the step until a promote.
    pub fn manual(self) -> Step {
        self.hold("manual")
    }

    /// Mirrors `percent` % of stable-served requests to the candidate.
    pub fn mirror(mut self, percent: f64) -> Step {
        self.mirror = Some(percent);
        self
    }
}

/// The `rollout.analysis` block; gates are added on [`TestConfig`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct Analysis {
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    window: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_samples: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after_promotion: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_client_share: Option<f64>,
    gates: Gates,
}

#[derive(Debug, Clone, Default, Serialize)]
struct Gates {
    #[serde(skip_serializing_if = "Option::is_none")]
    error_rate: Option<Max>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_p99: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shadow_agreement: Option<Min>,
    /// `output_drift`, `accuracy`: written as given.
    #[serde(flatten)]
    model: BTreeMap<&'static str, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
struct Max {
    max: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Min {
    min: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Latency {
    #[serde(skip_serializing_if = "Option::is_none")]
    max: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_ratio: Option<f64>,
}

impl Analysis {
    /// An evaluation every `interval` over the last `window`, holding below `min_samples`
    /// candidate samples and rolling back after `failure_limit` failures in a row.
    pub fn new(interval: &str, window: &str, min_samples: u64, failure_limit: u32) -> Analysis {
        Analysis {
            interval: Some(interval.to_string()),
            window: Some(window.to_string()),
            min_samples: Some(min_samples),
            failure_limit: Some(failure_limit),
            ..Analysis::default()
        }
    }

    /// The controller tests' usual analysis: every 10 s over 30 s, 20 samples, 3 failures.
    pub fn every_10s() -> Analysis {
        Analysis::new("10s", "30s", 20, 3)
    }

    /// How long after a promotion the gates still watch (and may roll back).
    pub fn after_promotion(mut self, duration: &str) -> Analysis {
        self.after_promotion = Some(duration.to_string());
        self
    }

    /// The largest share of a backend's window one client may fill beyond `min_samples`.
    pub fn max_client_share(mut self, share: f64) -> Analysis {
        self.max_client_share = Some(share);
        self
    }
}

#[derive(Debug, Clone, Serialize)]
struct FastRollback {
    consecutive_errors: u32,
}

#[derive(Debug, Clone, Serialize)]
struct BlueGreen {
    #[serde(skip_serializing_if = "Option::is_none")]
    auto_promote_after: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
struct Shadow {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_in_flight: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    calibrate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compare: Option<Compare>,
}

#[derive(Debug, Clone, Serialize)]
struct Compare {
    protocol: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    redact: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
struct State {
    /// `null` keeps the rollout state in memory.
    path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etcd: Option<serde_json::Value>,
}

// === impl TestConfig ===

impl Default for TestConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl TestConfig {
    /// Blue stable, green candidate, no steps, no analysis, no state file.
    pub fn new() -> TestConfig {
        let backend = || Backend {
            url: None,
            timeout: "10s".to_string(),
            max_connections: None,
        };
        TestConfig {
            listen: "127.0.0.1:0",
            admin: Admin {
                listen: "127.0.0.1:0",
                token_env: "SWITCHYARD_TEST_NO_TOKEN".to_string(),
            },
            limits: Limits::default(),
            backends: BTreeMap::from([("blue", backend()), ("green", backend())]),
            rollout: Rollout {
                stable: "blue",
                candidate: Some("green"),
                strategy: None,
                sticky: None,
                override_header: "x-switchyard-route",
                steps: Vec::new(),
                analysis: None,
                fast_rollback: None,
                fallback_to_stable: false,
                blue_green: None,
            },
            shadow: None,
            state: State {
                path: None,
                store: None,
                etcd: None,
            },
            observers: BTreeMap::new(),
            route: None,
        }
    }

    /// The same rollout as route `name` of `routes:`, taking only requests for `model`.
    pub fn routed(mut self, name: &'static str, model: &'static str) -> TestConfig {
        self.route = Some((name, model));
        self
    }

    /// Only the stable, `blue`: nothing to roll out.
    pub fn stable_only() -> TestConfig {
        let mut c = TestConfig::new();
        c.backends.remove("green");
        c.rollout.candidate = None;
        c
    }

    /// A canary with a manual first step at `weight`, then 100 %, so tests control promotion.
    pub fn canary(weight: f64) -> TestConfig {
        TestConfig::new().steps([step(weight).manual(), step(100.0)])
    }

    /// A manual ramp 10 % → 50 % → 100 %.
    pub fn ramp() -> TestConfig {
        TestConfig::new().steps([step(10.0).manual(), step(50.0).manual(), step(100.0)])
    }

    /// A shadow step (no users on the candidate, every request mirrored) held for a
    /// promote, then 100 %; answers compared with `protocol: auto`.
    pub fn shadow() -> TestConfig {
        TestConfig::new()
            .steps([step(0.0).mirror(100.0).manual(), step(100.0)])
            .compare_protocol("auto")
    }

    // --- rollout ---

    pub fn steps(mut self, steps: impl IntoIterator<Item = Step>) -> TestConfig {
        self.rollout.steps = steps.into_iter().collect();
        self
    }

    /// Blue-green instead of steps, promoting on its own after `auto_promote_after` when given.
    pub fn blue_green(mut self, auto_promote_after: Option<&str>) -> TestConfig {
        self.rollout.strategy = Some("blue-green");
        self.rollout.blue_green = auto_promote_after.map(|d| BlueGreen {
            auto_promote_after: Some(d.to_string()),
        });
        self
    }

    pub fn sticky_header(mut self, name: &str) -> TestConfig {
        self.rollout.sticky = Some(Sticky {
            header: Some(name.to_string()),
            cookie: None,
        });
        self
    }

    pub fn sticky_cookie(mut self, name: &str) -> TestConfig {
        self.rollout.sticky = Some(Sticky {
            header: None,
            cookie: Some(name.to_string()),
        });
        self
    }

    /// Rolls back at once after `consecutive_errors` candidate failures in a row.
    pub fn fast_rollback(mut self, consecutive_errors: u32) -> TestConfig {
        self.rollout.fast_rollback = Some(FastRollback { consecutive_errors });
        self
    }

    pub fn fallback_to_stable(mut self) -> TestConfig {
        self.rollout.fallback_to_stable = true;
        self
    }

    /// Sets the analysis block, keeping any gates already added.
    pub fn analysis(mut self, analysis: Analysis) -> TestConfig {
        let gates = self.rollout.analysis.take().map(|a| a.gates);
        self.rollout.analysis = Some(Analysis {
            gates: gates.unwrap_or_default(),
            ..analysis
        });
        self
    }

    fn gates(&mut self) -> &mut Gates {
        &mut self
            .rollout
            .analysis
            .get_or_insert_with(Analysis::default)
            .gates
    }

    pub fn gate_error_rate(mut self, max: f64) -> TestConfig {
        self.gates().error_rate = Some(Max { max });
        self
    }

    /// The candidate's p99 under `max` (`"300ms"`) and under `max_ratio` × the stable's.
    pub fn gate_latency_p99(mut self, max: Option<&str>, max_ratio: Option<f64>) -> TestConfig {
        self.gates().latency_p99 = Some(Latency {
            max: max.map(str::to_string),
            max_ratio,
        });
        self
    }

    pub fn gate_shadow_agreement(mut self, min: f64) -> TestConfig {
        self.gates().shadow_agreement = Some(Min { min });
        self
    }

    /// A gate on what the observers see: `output_drift` or `accuracy`, written as given.
    pub fn gate(mut self, name: &'static str, settings: serde_json::Value) -> TestConfig {
        self.gates().model.insert(name, settings);
        self
    }

    // --- observers ---

    /// The top-level `monitor:` block, written as given.
    pub fn monitor(mut self, settings: serde_json::Value) -> TestConfig {
        self.observers.insert("monitor", settings);
        self
    }

    /// The top-level `capture:` block, written as given.
    pub fn capture(mut self, settings: serde_json::Value) -> TestConfig {
        self.observers.insert("capture", settings);
        self
    }

    /// The top-level `feedback:` block, written as given.
    pub fn feedback(mut self, settings: serde_json::Value) -> TestConfig {
        self.observers.insert("feedback", settings);
        self
    }

    // --- shadow ---

    fn shadow_block(&mut self) -> &mut Shadow {
        self.shadow.get_or_insert_with(Shadow::default)
    }

    /// How many mirrored requests may be in flight at once.
    pub fn max_in_flight(mut self, n: usize) -> TestConfig {
        self.shadow_block().max_in_flight = Some(n);
        self
    }

    /// Sends `percent` % of requests to the stable a second time to measure its own noise.
    pub fn calibrate(mut self, percent: f64) -> TestConfig {
        self.shadow_block().calibrate = Some(percent);
        self
    }

    /// `auto`, `v2`, `v1`, `json` or `bytes`.
    pub fn compare_protocol(mut self, protocol: &'static str) -> TestConfig {
        let compare = self.shadow_block().compare.get_or_insert(Compare {
            protocol,
            redact: Vec::new(),
        });
        compare.protocol = protocol;
        self
    }

    /// Pointers whose values never show in diffs (`shadow.compare.redact`).
    pub fn compare_redact(mut self, pointers: &[&'static str]) -> TestConfig {
        let compare = self.shadow_block().compare.get_or_insert(Compare {
            protocol: "auto",
            redact: Vec::new(),
        });
        compare.redact = pointers.to_vec();
        self
    }

    // --- limits ---

    pub fn max_body(mut self, size: &str) -> TestConfig {
        self.limits.max_body = Some(size.to_string());
        self
    }

    pub fn header_timeout(mut self, duration: &str) -> TestConfig {
        self.limits.header_timeout = Some(duration.to_string());
        self
    }

    pub fn idle_timeout(mut self, duration: &str) -> TestConfig {
        self.limits.idle_timeout = Some(duration.to_string());
        self
    }

    pub fn body_timeout(mut self, duration: &str) -> TestConfig {
        self.limits.body_timeout = Some(duration.to_string());
        self
    }

    /// How many client connections the data plane keeps open at once.
    pub fn max_connections(mut self, n: usize) -> TestConfig {
        self.limits.max_connections = Some(n);
        self
    }

    /// How long a client may take no answer bytes before it is cut off.
    pub fn send_timeout(mut self, duration: &str) -> TestConfig {
        self.limits.send_timeout = Some(duration.to_string());
        self
    }

    /// How long in-flight requests get to finish at shutdown.
    pub fn drain_timeout(mut self, duration: &str) -> TestConfig {
        self.limits.drain_timeout = Some(duration.to_string());
        self
    }

    // --- backends, admin, state ---

    /// Points backend `name` (`blue` or `green`) at `url`.
    pub fn backend_url(mut self, name: &str, url: &str) -> TestConfig {
        self.backend(name).url = Some(url.to_string());
        self
    }

    /// How long backend `name` has to answer before the client gets a 504.
    pub fn backend_timeout(mut self, name: &str, timeout: &str) -> TestConfig {
        self.backend(name).timeout = timeout.to_string();
        self
    }

    /// How many connections live requests may hold to backend `name` at once.
    pub fn backend_max_connections(mut self, name: &str, n: usize) -> TestConfig {
        self.backend(name).max_connections = Some(n);
        self
    }

    fn backend(&mut self, name: &str) -> &mut Backend {
        self.backends
            .get_mut(name)
            .unwrap_or_else(|| panic!("no backend {name} in the test config"))
    }

    /// Points every backend with no URL yet at `blue` and `green` (a harness's servers).
    pub fn or_backends(mut self, blue: &str, green: &str) -> TestConfig {
        for (name, url) in [("blue", blue), ("green", green)] {
            if let Some(b) = self.backends.get_mut(name) {
                b.url.get_or_insert_with(|| url.to_string());
            }
        }
        self
    }

    /// The environment variable that holds the admin token (none is set by default).
    pub fn admin_token_env(mut self, name: &str) -> TestConfig {
        self.admin.token_env = name.to_string();
        self
    }

    /// Persists the rollout state at `path` (in memory only by default).
    pub fn state_path(mut self, path: &Path) -> TestConfig {
        self.state.path = Some(path.to_path_buf());
        self
    }

    /// Keeps the rollout state in etcd at `endpoint`, under `prefix` (`state.store: etcd`),
    /// with a 1s timeout.
    pub fn etcd(mut self, endpoint: &str, prefix: &str) -> TestConfig {
        self.state.store = Some("etcd");
        self.state.etcd = Some(serde_json::json!({
            "endpoints": [endpoint],
            "prefix": prefix,
            "lease_ttl": "5s",
            "timeout": "1s",
        }));
        self
    }

    /// Persists the rollout state at `path` unless a path is already set.
    pub fn or_state_path(mut self, path: &Path) -> TestConfig {
        self.state.path.get_or_insert_with(|| path.to_path_buf());
        self
    }

    // --- output ---

    /// The YAML text of the file.
    pub fn render(&self) -> String {
        let complete = self.clone().or_backends(BLUE_URL, GREEN_URL);
        let mut doc = serde_yaml::to_value(&complete).expect("a test config renders");
        if let (Some((name, model)), Some(map)) = (self.route, doc.as_mapping_mut()) {
            let rollout = map.remove("rollout").expect("a rollout");
            let route = serde_yaml::to_value(serde_json::json!({
                "name": name,
                "match": { "model": model },
            }));
            let mut route = route.expect("a route renders");
            route["rollout"] = rollout;
            map.insert("routes".into(), serde_yaml::Value::Sequence(vec![route]));
        }
        serde_yaml::to_string(&doc).expect("a test config renders")
    }

    /// The parsed and validated config, as the controller takes it.
    pub fn parse(&self) -> switchyard::config::Config {
        let text = self.render();
        switchyard::config::parse(&text)
            .unwrap_or_else(|e| panic!("test config is invalid:\n{e}\n---\n{text}"))
    }
}

/// The 1-based line of the only line of `text` that contains `needle`.
pub fn line_of(text: &str, needle: &str) -> usize {
    let hits: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(hits.len(), 1, "`{needle}` should be on exactly one line");
    hits[0]
}

/// The example configs, the `*.yaml` files of the `config/` directory, sorted by name.
pub fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}
