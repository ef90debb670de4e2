//! The serde types of the configuration file, as written and as the rest of the crate
//! reads them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::monitor::MonitorConfig;
use super::path::FieldPath;
use super::units::{self, ByteSize, Dur};
use crate::wire::Protocol;

/// The whole configuration file.
///
/// Routing is written one of two ways: a top-level `rollout:` (one route, named
/// [`DEFAULT_ROUTE`], that takes every request) or a `routes:` list, never both.
/// [`Config::routes`] reads either as the same ordered list of [`Route`]s.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "ConfigFile")]
pub struct Config {
    /// Address of the data plane.
    pub listen: SocketAddr,
    pub admin: AdminConfig,
    pub limits: Limits,
    /// Model servers by name.
    pub backends: BTreeMap<String, BackendConfig>,
    /// The top-level `rollout:`. For a `routes:` config, a copy of the first route's
    /// rollout, so the layers that know a single rollout keep working until they read
    /// [`Config::routes`]; it is not the other routes' truth.
    pub rollout: RolloutConfig,
    /// The top-level `shadow:`, which every route without its own `shadow` takes.
    pub shadow: ShadowConfig,
    /// The top-level `monitor:` (its defaults when absent: 10 % of requests observed).
    pub monitor: MonitorConfig,
    /// The top-level `capture:`; no prediction log when absent.
    pub capture: Option<CaptureConfig>,
    /// The top-level `feedback:`; no labels joined when absent.
    pub feedback: Option<FeedbackConfig>,
    pub state: StateConfig,
    /// This replica among several sharing one rollout (`state.store: etcd`).
    pub fleet: FleetConfig,
    /// Which routing keys the file has, as written: validation reads it.
    pub(crate) written: Written,
}

/// What the file says about routing, as written, before [`Config::routes`] normalizes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Written {
    /// The file has a top-level `rollout:`.
    pub(crate) rollout: bool,
    /// The file's `routes:`, when it has the key.
    pub(crate) routes: Option<Vec<RouteConfig>>,
}

/// The document as serde reads it; [`Config`] is built from it.
#[derive(Deserialize)]
#[serde(rename = "Config", deny_unknown_fields)]
struct ConfigFile {
    #[serde(default = "default_listen")]
    listen: SocketAddr,
    #[serde(default)]
    admin: AdminConfig,
    #[serde(default)]
    limits: Limits,
    backends: BTreeMap<String, BackendConfig>,
    #[serde(default)]
    rollout: Option<RolloutConfig>,
    #[serde(default)]
    routes: Option<Vec<RouteConfig>>,
    #[serde(default)]
    shadow: ShadowConfig,
    #[serde(default)]
    monitor: MonitorConfig,
    #[serde(default)]
    capture: Option<CaptureConfig>,
    #[serde(default)]
    feedback: Option<FeedbackConfig>,
    #[serde(default)]
    state: StateConfig,
    #[serde(default)]
    fleet: FleetConfig,
}

impl From<ConfigFile> for Config {
    fn from(file: ConfigFile) -> Self {
        let first_route = || Some(file.routes.as_ref()?.first()?.rollout.clone());
        // Neither key (or an empty list): validation refuses the file, so this
        // stand-in never reaches a running proxy.
        let rollout = file
            .rollout
            .clone()
            .or_else(first_route)
            .unwrap_or_else(RolloutConfig::unset);
        Config {
            listen: file.listen,
            admin: file.admin,
            limits: file.limits,
            backends: file.backends,
            rollout,
            shadow: file.shadow,
            monitor: file.monitor,
            capture: file.capture,
            feedback: file.feedback,
            state: file.state,
            fleet: file.fleet,
            written: Written {
                rollout: file.rollout.is_some(),
                routes: file.routes,
            },
        }
    }
}

/// Whether `path` is under the path prefix `prefix`, by whole segments: `prefix` itself
/// (its trailing `/` dropped) or below it, so `/fraud` takes `/fraud/x`, not
/// `/fraudulent`. What `match.path_prefix` means, for validation and the data plane alike.
pub fn path_under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

impl Config {
    /// The routes, in the order they are tried: the first whose [`Match`] holds takes
    /// the request.
    ///
    /// A top-level `rollout:` is one route named [`DEFAULT_ROUTE`] that matches every
    /// request and takes the top-level `shadow`; a route of `routes:` without its own
    /// `shadow` takes the top-level one too.
    ///
    /// ```
    /// let config = switchyard::config::parse(
    ///     "backends: { blue: { url: 'http://127.0.0.1:18001' } }\nrollout: { stable: blue }\n",
    /// ).unwrap();
    /// let routes = config.routes();
    /// assert_eq!(routes.len(), 1);
    /// assert_eq!(routes[0].name, switchyard::config::DEFAULT_ROUTE);
    /// assert!(routes[0].when.is_catch_all());
    /// ```
    pub fn routes(&self) -> Vec<Route> {
        let listed = self.written.routes.as_deref().unwrap_or_default();
        if self.written.rollout || listed.is_empty() {
            return vec![Route {
                name: DEFAULT_ROUTE.to_string(),
                when: Match::default(),
                rollout: self.rollout.clone(),
                shadow: self.shadow.clone(),
                monitor: self.monitor.clone(),
                capture: self.capture.clone(),
                feedback: self.feedback.clone(),
            }];
        }
        listed
            .iter()
            .map(|r| Route {
                name: r.name.clone(),
                when: r.when.clone().unwrap_or_default(),
                rollout: r.rollout.clone(),
                shadow: r.shadow.clone().unwrap_or_else(|| self.shadow.clone()),
                monitor: r.monitor.clone().unwrap_or_else(|| self.monitor.clone()),
                capture: r.capture.clone().or_else(|| self.capture.clone()),
                feedback: r.feedback.clone().or_else(|| self.feedback.clone()),
            })
            .collect()
    }

    /// Every `monitor` block as written (the top-level one, then each listed route's),
    /// with its field path.
    pub fn monitor_blocks(&self) -> Vec<(FieldPath, &MonitorConfig)> {
        let listed = self.written.routes.as_deref().unwrap_or_default();
        let routes = listed.iter().enumerate().filter_map(|(i, r)| {
            let p = FieldPath::new(&["routes"]).index(i).key("monitor");
            r.monitor.as_ref().map(|m| (p, m))
        });
        std::iter::once((FieldPath::new(&["monitor"]), &self.monitor))
            .chain(routes)
            .collect()
    }
}

/// The name of the one route of a config with a top-level `rollout:`.
pub const DEFAULT_ROUTE: &str = "default";

/// One entry of `routes:`, as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique, `[a-z0-9-]+`: it keys the route's state, metrics and admin paths.
    pub name: String,
    /// The YAML `match`; absent takes every request (only the last route may omit it).
    #[serde(default, rename = "match")]
    pub when: Option<Match>,
    pub rollout: RolloutConfig,
    /// Replaces the top-level `shadow` as a whole for this route.
    #[serde(default)]
    pub shadow: Option<ShadowConfig>,
    /// Replaces the top-level `monitor` as a whole for this route.
    #[serde(default)]
    pub monitor: Option<MonitorConfig>,
    /// Replaces the top-level `capture` as a whole for this route.
    #[serde(default)]
    pub capture: Option<CaptureConfig>,
    /// Replaces the top-level `feedback` as a whole for this route.
    #[serde(default)]
    pub feedback: Option<FeedbackConfig>,
}

/// The conditions under which a route takes a request: every condition given must hold.
///
/// With none given ([`Match::is_catch_all`]) it takes every request; a file may express
/// that only by leaving `match` out on its last route.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Match {
    /// The model an inference request names: in its path (KServe/MLServer V2
    /// `/v2/models/NAME/...`, TF-Serving V1 `/v1/models/NAME...`), or, for OpenAI-style
    /// POSTs to `/v1/chat/completions`, `/v1/completions` and `/v1/embeddings`, in the
    /// body's top-level `"model"`.
    pub model: Option<String>,
    /// The request path (without its query) starts with this text; it starts with `/`.
    pub path_prefix: Option<String>,
    /// Each header is present with exactly this value (names are case-insensitive).
    pub header: BTreeMap<String, String>,
    /// The request's host (`Host`, or `:authority` in HTTP/2), case-insensitive; without
    /// a port it takes any port.
    pub host: Option<String>,
}

impl Match {
    /// True when no condition is given: the route takes every request.
    pub fn is_catch_all(&self) -> bool {
        *self == Match::default()
    }
}

/// A route as every layer after the config sees it, whichever way the file wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    /// Which requests it takes; [`Match::is_catch_all`] for a route without `match`.
    pub when: Match,
    pub rollout: RolloutConfig,
    /// The route's own `shadow`, or else the top-level one.
    pub shadow: ShadowConfig,
    /// The route's own `monitor`, or else the top-level one.
    pub monitor: MonitorConfig,
    /// The route's own `capture`, or else the top-level one.
    pub capture: Option<CaptureConfig>,
    /// The route's own `feedback`, or else the top-level one.
    pub feedback: Option<FeedbackConfig>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// Where the admin API listens and how mutating calls are authorized.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// Name of the environment variable that holds the bearer token.
    #[serde(default = "default_token_env")]
    pub token_env: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
            token_env: default_token_env(),
        }
    }
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9901))
}

fn default_token_env() -> String {
    "SWITCHYARD_ADMIN_TOKEN".to_string()
}

impl AdminConfig {
    /// The bearer token from the environment, if one is set and not empty.
    pub fn token(&self) -> Option<String> {
        std::env::var(&self.token_env)
            .ok()
            .filter(|t| !t.trim().is_empty())
    }
}

/// Limits that protect the proxy from clients.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Request bodies larger than this get 413.
    #[serde(default = "default_max_body")]
    pub max_body: ByteSize,
    /// A client that has not sent its request head within this long is cut off.
    #[serde(default = "default_header_timeout")]
    pub header_timeout: Dur,
    /// A keep-alive client connection with no request for this long is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Dur,
    /// A request body not fully received this long after its head gets 408, and counts
    /// as the client's fault, never the backend's.
    #[serde(default = "default_body_timeout")]
    pub body_timeout: Dur,
    /// Client connections open at once on the data plane; the ones beyond are closed as
    /// soon as they are accepted, before any request is read.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A client that takes no answer bytes for this long is cut off (its connection
    /// closed), which releases the upstream connection its answer came on.
    #[serde(default = "default_send_timeout")]
    pub send_timeout: Dur,
    /// At shutdown, how long in-flight requests get to finish before their connections
    /// are closed.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: Dur,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: default_max_body(),
            header_timeout: default_header_timeout(),
            idle_timeout: default_idle_timeout(),
            body_timeout: default_body_timeout(),
            max_connections: default_max_connections(),
            send_timeout: default_send_timeout(),
            drain_timeout: default_drain_timeout(),
        }
    }
}

fn default_max_body() -> ByteSize {
    ByteSize(4 << 20)
}

fn default_body_timeout() -> Dur {
    Dur::from_secs(30)
}

fn default_header_timeout() -> Dur {
    Dur::from_secs(10)
}

/// As nginx's `keepalive_timeout`: longer than the 60 s idle timeout of common load
/// balancers in front, so they are the side that closes an idle connection, never
/// switchyard in the middle of their next request.
fn default_idle_timeout() -> Dur {
    Dur::from_secs(75)
}

/// About 20 MiB of sockets and parked connections at most, well under the usual
/// 65 536 file descriptors per process.
fn default_max_connections() -> usize {
    10_000
}

/// Long enough for a client on a slow link to take a large answer chunk by chunk.
fn default_send_timeout() -> Dur {
    Dur::from_secs(60)
}

/// Under Kubernetes' default 30 s grace period, with room for the rest of the shutdown.
fn default_drain_timeout() -> Dur {
    Dur::from_secs(10)
}

/// One model server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Base URL, `http://host:port` (a path prefix is allowed).
    pub url: String,
    /// Upstream timeout until the response head arrives; past it the client gets 504.
    #[serde(default = "default_backend_timeout")]
    pub timeout: Dur,
    /// The most connections live requests hold to this backend at once (mirrored copies
    /// have a quarter as many of their own). A request beyond it waits up to `timeout`
    /// for one to be free, then gets 503.
    #[serde(default = "default_backend_max_connections")]
    pub max_connections: usize,
}

fn default_backend_timeout() -> Dur {
    Dur::from_secs(5)
}

/// A model server does only so many requests at once (its workers, its batch); more
/// connections than a few hundred only queue inside it, where nobody sees or times them
/// out. 256 keeps that queue in switchyard, bounded by `timeout`, and still leaves room
/// for bursts: 500 slow requests never open 500 connections.
fn default_backend_max_connections() -> usize {
    256
}

/// The largest `max_connections` a backend may have: more connections than this would
/// run out of file descriptors and local ports long before the bound mattered.
pub const MAX_CONNECTIONS: usize = 1 << 20;

/// How traffic moves from `stable` to `candidate`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    pub stable: String,
    #[serde(default)]
    pub candidate: Option<String>,
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default)]
    pub sticky: Option<StickyConfig>,
    #[serde(default)]
    pub override_header: Option<String>,
    #[serde(default)]
    pub steps: Vec<StepConfig>,
    #[serde(default)]
    pub analysis: Option<AnalysisConfig>,
    #[serde(default)]
    pub fast_rollback: Option<FastRollbackConfig>,
    #[serde(default)]
    pub fallback_to_stable: bool,
    #[serde(default)]
    pub blue_green: Option<BlueGreenConfig>,
}

impl RolloutConfig {
    /// The stand-in of a file with no rollout at all, which validation refuses.
    fn unset() -> Self {
        RolloutConfig {
            stable: String::new(),
            candidate: None,
            strategy: Strategy::default(),
            sticky: None,
            override_header: None,
            steps: Vec::new(),
            analysis: None,
            fast_rollback: None,
            fallback_to_stable: false,
            blue_green: None,
        }
    }
}

/// The rollout strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Weighted steps walked in order.
    #[default]
    Canary,
    /// No user traffic to the candidate until one atomic switch to 100 %.
    BlueGreen,
}

impl Strategy {
    /// The name used in the YAML and in the status JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Canary => "canary",
            Strategy::BlueGreen => "blue-green",
        }
    }
}

/// What keeps a user on the same variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickyConfig {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub cookie: Option<String>,
}

/// One canary step.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// Percentage of user traffic served by the candidate.
    pub weight: f64,
    /// Percentage of stable-served requests mirrored to the candidate; `shadow.mirror` when absent.
    #[serde(default)]
    pub mirror: Option<f64>,
    /// How long the step lasts before it may pass, or `manual`.
    #[serde(default)]
    pub hold: Option<Hold>,
}

/// How long a step holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hold {
    For(Dur),
    /// Waits for `switchyard promote`.
    Manual,
}

/// Automatic analysis of the candidate.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisConfig {
    #[serde(default = "default_interval")]
    pub interval: Dur,
    #[serde(default = "default_window")]
    pub window: Dur,
    #[serde(default = "default_min_samples")]
    pub min_samples: u64,
    #[serde(default = "default_failure_limit")]
    pub failure_limit: u32,
    /// The largest share of what a gate reads that one client (its sticky key, else its
    /// address) may fill beyond `min_samples`; 1 bounds nothing (the share is counted by
    /// `telemetry::share`).
    #[serde(default = "default_max_client_share")]
    pub max_client_share: f64,
    /// The relative gates decide at this confidence, valid at every look (the tests are
    /// `rollout::sequential`'s).
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    #[serde(default)]
    pub gates: GatesConfig,
    #[serde(default = "default_after_promotion")]
    pub after_promotion: Dur,
}

fn default_interval() -> Dur {
    Dur::from_secs(10)
}
fn default_window() -> Dur {
    Dur::from_secs(60)
}
fn default_min_samples() -> u64 {
    50
}
fn default_failure_limit() -> u32 {
    3
}
fn default_max_client_share() -> f64 {
    0.1
}
fn default_confidence() -> f64 {
    0.95
}
fn default_after_promotion() -> Dur {
    Dur::from_secs(300)
}

/// The gates an analysis applies; exactly the listed ones.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatesConfig {
    #[serde(default)]
    pub error_rate: Option<ErrorRateGate>,
    #[serde(default)]
    pub latency_p99: Option<LatencyGate>,
    #[serde(default)]
    pub shadow_agreement: Option<AgreementGate>,
    /// The candidate's outputs against the stable's (needs monitoring on the route).
    #[serde(default)]
    pub output_drift: Option<OutputDriftGate>,
    /// Live accuracy from labels (needs `feedback:` on the route).
    #[serde(default)]
    pub accuracy: Option<AccuracyGate>,
    /// The candidate's share of user requests against its weight.
    #[serde(default)]
    pub sample_ratio: Option<SampleRatioGate>,
}

/// `sample_ratio: {}`: the candidate's share of the route's user requests matches its
/// weight; a mismatch pauses the rollout (the candidate is not at fault).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleRatioGate {}

/// `output_drift: { max: 0.2 }`: the candidate's output drift against the stable, at most `max`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputDriftGate {
    pub max: f64,
}

/// `accuracy: { min: 0.9, max_drop: 0.02 }`: the candidate's accuracy at least `min`, and
/// at most `max_drop` below the stable's in the same window; either or both.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccuracyGate {
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max_drop: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRateGate {
    /// The candidate's error rate, at most this (over the window).
    #[serde(default)]
    pub max: Option<f64>,
    /// The candidate's error rate minus the stable's, at most this (decided sequentially).
    #[serde(default)]
    pub max_increase: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyGate {
    #[serde(default)]
    pub max: Option<Dur>,
    #[serde(default)]
    pub max_ratio: Option<f64>,
    /// A ratio over `max_ratio` passes when the candidate's p99 is less than this much
    /// above the stable's: at millisecond scale a ratio says nothing a user would notice.
    #[serde(default)]
    pub min_difference: Option<Dur>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgreementGate {
    pub min: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FastRollbackConfig {
    pub consecutive_errors: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlueGreenConfig {
    #[serde(default)]
    pub auto_promote_after: Option<Dur>,
}

/// Shadow mirroring and comparison.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    /// Default mirror percentage for steps that do not say.
    #[serde(default)]
    pub mirror: f64,
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Percentage of requests also sent to the stable itself to measure its own non-determinism.
    #[serde(default)]
    pub calibrate: Option<f64>,
    #[serde(default)]
    pub compare: CompareConfig,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        Self {
            mirror: 0.0,
            max_in_flight: default_max_in_flight(),
            calibrate: None,
            compare: CompareConfig::default(),
        }
    }
}

fn default_max_in_flight() -> usize {
    64
}

/// How shadow answers are compared with live ones.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareConfig {
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default)]
    pub ignore: Vec<String>,
    #[serde(default = "default_abs_tolerance")]
    pub abs_tolerance: f64,
    #[serde(default = "default_rel_tolerance")]
    pub rel_tolerance: f64,
    /// JSON pointers replaced by `[redacted]` in the diffs the admin API shows.
    #[serde(default)]
    pub redact: Vec<String>,
}

impl Default for CompareConfig {
    fn default() -> Self {
        Self {
            protocol: Protocol::default(),
            ignore: Vec::new(),
            abs_tolerance: default_abs_tolerance(),
            rel_tolerance: default_rel_tolerance(),
            redact: Vec::new(),
        }
    }
}

fn default_abs_tolerance() -> f64 {
    1e-6
}
fn default_rel_tolerance() -> f64 {
    1e-4
}

/// The prediction log (`capture:`): sampled exchanges as JSON Lines files.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// The directory the files are written in (created when missing).
    pub path: PathBuf,
    /// Percent of requests recorded (default 1).
    #[serde(default = "default_capture_sample")]
    pub sample: f64,
    /// JSON pointers replaced by `"[redacted]"` in requests and answers before anything is written.
    #[serde(default)]
    pub redact: Vec<String>,
    /// A file that would grow past this is closed and the next begun (default 64MiB).
    #[serde(default = "default_max_file")]
    pub max_file: ByteSize,
    /// Files kept, the one being written included (default 10).
    #[serde(default = "default_keep")]
    pub keep: usize,
}

fn default_capture_sample() -> f64 {
    1.0
}
fn default_max_file() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_keep() -> usize {
    10
}

/// Labels that arrive later (`feedback:`): predictions remembered for the join.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackConfig {
    /// A prediction is remembered this long for its label (default 1h).
    #[serde(default = "default_retain")]
    pub retain: Dur,
    /// At most this many predictions are remembered, the oldest forgotten first (default 100000).
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// Percent of requests whose prediction is remembered (default 100: a label can come
    /// for any request).
    #[serde(default = "default_feedback_sample")]
    pub sample: f64,
    /// The largest `POST /api/v1/feedback` body read; larger ones are answered 413
    /// (default 4MiB). With several blocks, the largest applies (the store is shared).
    #[serde(default = "default_feedback_max_body")]
    pub max_body: ByteSize,
}

fn default_retain() -> Dur {
    Dur::from_secs(3600)
}
fn default_max_pending() -> usize {
    100_000
}
fn default_feedback_sample() -> f64 {
    100.0
}
fn default_feedback_max_body() -> ByteSize {
    ByteSize(DEFAULT_FEEDBACK_MAX_BODY)
}

/// `feedback.max_body` unless configured: 4 MiB.
pub const DEFAULT_FEEDBACK_MAX_BODY: u64 = 4 << 20;

/// The largest `feedback.max_body` accepted: a post holds about three times its body
/// while it is read and joined.
pub const FEEDBACK_MAX_BODY_LIMIT: u64 = 256 << 20;

/// Where the rollout state is persisted.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Which store holds the state: the file at `path` (one replica) or etcd (a fleet).
    #[serde(default)]
    pub store: StoreKind,
    /// The file store's file; `null` keeps the state in memory only.
    #[serde(default = "default_state_path")]
    pub path: Option<PathBuf>,
    /// The etcd store's settings, read when `store: etcd`.
    #[serde(default)]
    pub etcd: Option<EtcdConfig>,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            store: StoreKind::File,
            path: default_state_path(),
            etcd: None,
        }
    }
}

fn default_state_path() -> Option<PathBuf> {
    Some(PathBuf::from("state/rollout.json"))
}

/// `state.store`: which store holds the rollout state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// The file at `state.path`, owned by one replica.
    #[default]
    File,
    /// An etcd cluster (`state.etcd`), shared by a fleet of replicas.
    Etcd,
}

/// `state.etcd`: where a fleet's shared rollout state lives.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// The cluster's client URLs (`http://` or `https://`).
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Every key of this fleet lives under it (starts with `/`).
    #[serde(default = "default_etcd_prefix")]
    pub prefix: String,
    /// How long a silent replica keeps its lease (and a leader its leadership).
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl: Dur,
    /// The longest any one call to etcd may take.
    #[serde(default = "default_etcd_timeout")]
    pub timeout: Dur,
}

fn default_etcd_prefix() -> String {
    "/switchyard".to_string()
}

fn default_lease_ttl() -> Dur {
    Dur::from_secs(5)
}

fn default_etcd_timeout() -> Dur {
    Dur::from_secs(2)
}

/// `fleet`: this replica's name and where the others reach it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// This replica's name, as written; [`FleetConfig::replica_name`] resolves it.
    #[serde(default)]
    pub replica: Option<String>,
    /// Where the other replicas reach this one's admin API.
    #[serde(default)]
    pub advertise: Option<String>,
}

impl FleetConfig {
    /// This replica's name: `fleet.replica`, or the host name when it is absent or
    /// written `${HOSTNAME}` (the config loader expands no variables).
    pub fn replica_name(&self) -> String {
        match self.replica.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() && name != "${HOSTNAME}" => name.to_string(),
            _ => host_name(),
        }
    }
}

/// The host's name (the kernel's, else `$HOSTNAME`), or `switchyard` when neither says.
fn host_name() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    kernel
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "switchyard".to_string())
}

// === impl Hold ===

impl<'de> Deserialize<'de> for Hold {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EXPECTING: &str = "a duration such as 500ms, 10s, 2m or 1h, or `manual`";
        units::from_str_with(d, EXPECTING, |s| {
            if s.trim() == "manual" {
                return Ok(Hold::Manual);
            }
            units::parse_duration(s).map(Hold::For).map_err(|e| {
                // Not a duration at all: `manual` was an option too.
                let plain = format!("expected {}, got", units::DURATION);
                match e.strip_prefix(&plain) {
                    Some(rest) => format!("expected {EXPECTING}, got{rest}"),
                    None => e,
                }
            })
        })
    }
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hold::For(d) => d.fmt(f),
            Hold::Manual => f.write_str("manual"),
        }
    }
}
