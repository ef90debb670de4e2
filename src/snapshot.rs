//! The immutable routing snapshot: everything a request needs, swapped atomically.
//!
//! The controller is the only writer: it builds a new [`Snapshot`] and `store`s it in
//! [`Shared::snapshot`]. A request loads the snapshot once at its start and uses that
//! copy to its end, so a reload or a rollback never mixes two configurations inside one
//! request, and a rollback is a single `store`.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::{HeaderName, HeaderValue};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{mpsc, Semaphore};

use crate::compare;
use crate::config::{BackendConfig, Config};
use crate::proxy::upstream::Pool;
use crate::rollout::{Msg, Status};
use crate::telemetry::metrics::BackendMetrics;
use crate::telemetry::window::Window;

/// The name of the one route today; state and windows are keyed by it so several routes can follow.
pub const DEFAULT_ROUTE: &str = "default";

/// What the control plane and the data plane share.
pub struct Shared {
    /// The routing snapshot in force.
    pub snapshot: ArcSwap<Snapshot>,
    /// The rollout status as last published by the controller.
    pub status: ArcSwap<Status>,
    /// True once a valid config is loaded and the data plane listens.
    pub ready: AtomicBool,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Long-lived shadow state (in-flight bound, recent disagreements).
    pub shadow: Arc<ShadowState>,
}

/// One routing configuration, immutable once published.
pub struct Snapshot {
    /// Increases with every config that was applied.
    pub generation: u64,
    /// Every configured backend, for the override header.
    pub backends: Vec<Arc<Backend>>,
    pub stable: Arc<Backend>,
    /// `None` when no rollout is configured.
    pub candidate: Option<Arc<Backend>>,
    /// Share of user traffic for the candidate, in basis points (0..=10 000).
    pub weight_bp: u32,
    /// Share of stable-served requests mirrored to the candidate, in basis points.
    pub mirror_bp: u32,
    /// Share of mirrored requests also copied to the stable itself (`shadow.calibrate`), in basis points.
    pub calibrate_bp: u32,
    pub sticky: Option<Sticky>,
    /// Seed of the sticky hash: per candidate, so each rollout canaries a different slice of users.
    pub sticky_seed: u64,
    pub override_header: Option<HeaderName>,
    pub fallback_to_stable: bool,
    pub max_body: usize,
    pub compare: Arc<compare::Rules>,
    /// Trips the controller on consecutive candidate failures; `None` when off.
    pub tripwire: Option<Arc<Tripwire>>,
    /// The span the analysis looks at (`analysis.window`, 1m without analysis).
    pub window: Duration,
}

/// Where the sticky key of a request is found.
#[derive(Debug, Clone)]
pub enum Sticky {
    Header(HeaderName),
    Cookie(Box<str>),
}

impl Snapshot {
    /// The backend with this name, among the configured ones.
    pub fn backend(&self, name: &[u8]) -> Option<&Arc<Backend>> {
        self.backends.iter().find(|b| b.name.as_bytes() == name)
    }

    /// Whether `backend` is the candidate of this snapshot.
    pub fn is_candidate(&self, backend: &Backend) -> bool {
        self.candidate
            .as_ref()
            .is_some_and(|c| std::ptr::eq(Arc::as_ptr(c), backend))
    }
}

/// One model server: its connection pools, its window and its metric handles.
pub struct Backend {
    pub name: Arc<str>,
    /// `x-switchyard-variant` value, built once.
    pub variant: HeaderValue,
    /// Path prefix from the URL ("" or "/v1/prefix", no trailing slash).
    pub prefix: Box<str>,
    pub timeout: Duration,
    /// `Host` for requests that come without one.
    pub host: HeaderValue,
    /// Connections for live requests, driven by the requests' own tasks.
    pub pool: Arc<Pool>,
    /// A pool of its own for shadow and calibration copies: their connections are driven
    /// by the low-priority shadow thread, so a live request never waits on one.
    pub shadow_pool: Arc<Pool>,
    pub window: Arc<Window>,
    pub metrics: BackendMetrics,
    config: BackendConfig,
}

impl Backend {
    fn new(name: &str, config: &BackendConfig, window: Arc<Window>) -> Backend {
        let uri: http::Uri = config.url.parse().expect("validated URL");
        let parts = uri.into_parts();
        let prefix = parts
            .path_and_query
            .map(|p| p.path().trim_end_matches('/').to_string())
            .unwrap_or_default();
        let authority = parts.authority.expect("validated URL");
        Backend {
            name: name.into(),
            variant: HeaderValue::from_str(name).unwrap_or(HeaderValue::from_static("invalid")),
            host: HeaderValue::from_str(authority.as_str())
                .expect("an authority is a valid header value"),
            pool: Pool::new(&authority),
            shadow_pool: Pool::new(&authority),
            prefix: prefix.into_boxed_str(),
            timeout: config.timeout.0,
            window,
            metrics: BackendMetrics::new(name),
            config: config.clone(),
        }
    }
}

/// The backends by name, reused across reloads so pools and windows survive them.
#[derive(Default)]
pub struct Backends {
    by_name: HashMap<String, Arc<Backend>>,
    /// Width of a window bucket and how many, from the analysis window.
    shape: (Duration, usize),
}

impl Backends {
    /// Brings the set in line with `config`: unchanged backends are kept as they are.
    pub fn sync(&mut self, config: &Config) {
        let shape = window_shape(config);
        let reshape = shape != self.shape;
        self.shape = shape;
        let mut next = HashMap::with_capacity(config.backends.len());
        for (name, bc) in &config.backends {
            let old = self.by_name.remove(name);
            let backend = match old {
                Some(b) if b.config == *bc && !reshape => b,
                Some(b) if !reshape => Arc::new(Backend::new(name, bc, b.window.clone())),
                _ => Arc::new(Backend::new(
                    name,
                    bc,
                    Arc::new(Window::new(shape.0, shape.1)),
                )),
            };
            next.insert(name.clone(), backend);
        }
        self.by_name = next;
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Backend>> {
        self.by_name.get(name)
    }

    /// All backends, sorted by name.
    pub fn all(&self) -> Vec<Arc<Backend>> {
        let mut v: Vec<_> = self.by_name.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

/// Sixty buckets over the analysis window (1 s at least), plus one for the bucket being filled.
fn window_shape(config: &Config) -> (Duration, usize) {
    let span = config
        .rollout
        .analysis
        .as_ref()
        .map(|a| a.window.0)
        .unwrap_or(Duration::from_secs(60));
    let bucket = Duration::from_secs(span.as_secs().div_ceil(60).max(1));
    let n = span.as_secs().div_ceil(bucket.as_secs()) as usize + 1;
    (bucket, n.max(2))
}

/// Counts consecutive candidate failures and trips the controller once at the threshold.
pub struct Tripwire {
    threshold: u32,
    consecutive: AtomicU32,
    tripped: AtomicBool,
    rollout: u64,
    tx: mpsc::Sender<Msg>,
}

impl Tripwire {
    pub fn new(threshold: u32, rollout: u64, tx: mpsc::Sender<Msg>) -> Self {
        Self {
            threshold,
            consecutive: AtomicU32::new(0),
            tripped: AtomicBool::new(false),
            rollout,
            tx,
        }
    }

    /// The rollout this tripwire belongs to.
    pub fn rollout(&self) -> u64 {
        self.rollout
    }

    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// A candidate request failed.
    pub fn failure(&self) {
        let n = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= self.threshold && !self.tripped.swap(true, Ordering::AcqRel) {
            // Never blocks the request: the channel is bounded and a full one means the
            // controller is already busy with messages; the next failure retries.
            if self
                .tx
                .try_send(Msg::Trip {
                    rollout: self.rollout,
                    failures: n,
                })
                .is_err()
            {
                self.tripped.store(false, Ordering::Release);
            }
        }
    }

    /// A candidate request succeeded: the run of failures is broken.
    pub fn success(&self) {
        if self.consecutive.load(Ordering::Relaxed) != 0 {
            self.consecutive.store(0, Ordering::Relaxed);
        }
    }
}

/// Shadow state that outlives snapshots: the in-flight bound and the recent disagreements.
pub struct ShadowState {
    pub in_flight: ArcSwap<Semaphore>,
    diffs: Mutex<VecDeque<Arc<serde_json::Value>>>,
    /// Output names already used as metric labels, at most [`OUTPUT_LABELS`].
    outputs: Mutex<Vec<Arc<str>>>,
}

/// How many distinct output names get their own metric label; later ones are `other`,
/// so a model with odd output names cannot grow the metrics without bound.
pub const OUTPUT_LABELS: usize = 32;

/// How many recent disagreements `/api/v1/shadow/diffs` keeps.
pub const DIFFS_KEPT: usize = 100;

impl ShadowState {
    pub fn new(max_in_flight: usize) -> Self {
        Self {
            in_flight: ArcSwap::from_pointee(Semaphore::new(max_in_flight)),
            diffs: Mutex::new(VecDeque::with_capacity(DIFFS_KEPT)),
            outputs: Mutex::new(Vec::new()),
        }
    }

    /// The metric label for output `name`: itself while fewer than [`OUTPUT_LABELS`] names
    /// have been seen, else `other`.
    pub fn output_label(&self, name: &str) -> Arc<str> {
        let mut seen = self.outputs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = seen.iter().find(|n| &***n == name) {
            return n.clone();
        }
        if seen.len() >= OUTPUT_LABELS {
            return Arc::from("other");
        }
        let n: Arc<str> = Arc::from(name);
        seen.push(n.clone());
        n
    }

    /// Keeps one disagreement, dropping the oldest beyond [`DIFFS_KEPT`].
    pub fn push_diff(&self, diff: serde_json::Value) {
        let mut d = self.diffs.lock().unwrap_or_else(|e| e.into_inner());
        if d.len() == DIFFS_KEPT {
            d.pop_back();
        }
        d.push_front(Arc::new(diff));
    }

    /// The most recent disagreements, newest first.
    pub fn recent_diffs(&self, limit: usize) -> Vec<Arc<serde_json::Value>> {
        let d = self.diffs.lock().unwrap_or_else(|e| e.into_inner());
        d.iter().take(limit).cloned().collect()
    }
}

/// Everything the controller decides that goes into a snapshot.
pub struct Routing {
    pub weight: f64,
    pub mirror: f64,
    pub tripwire: Option<Arc<Tripwire>>,
}

/// Builds a snapshot from a validated config, the live backends and the rollout's routing.
pub fn build(config: &Config, backends: &Backends, generation: u64, routing: Routing) -> Snapshot {
    let r = &config.rollout;
    let stable = backends.get(&r.stable).expect("validated stable").clone();
    let candidate = r.candidate.as_ref().and_then(|c| backends.get(c)).cloned();
    let sticky = r
        .sticky
        .as_ref()
        .and_then(|s| match (&s.header, &s.cookie) {
            (Some(h), _) => HeaderName::from_bytes(h.as_bytes())
                .ok()
                .map(Sticky::Header),
            (None, Some(c)) => Some(Sticky::Cookie(c.as_str().into())),
            _ => None,
        });
    let c = &config.shadow.compare;
    let rules = compare::Rules::new(
        c.protocol,
        c.ignore.clone(),
        c.abs_tolerance,
        c.rel_tolerance,
        c.redact.clone(),
    )
    .unwrap_or_default();
    let seed = r
        .candidate
        .as_deref()
        .map(|c| xxhash_rust::xxh3::xxh3_64(c.as_bytes()))
        .unwrap_or(0);
    Snapshot {
        generation,
        backends: backends.all(),
        stable,
        candidate,
        weight_bp: basis_points(routing.weight),
        mirror_bp: basis_points(routing.mirror),
        calibrate_bp: basis_points(config.shadow.calibrate.unwrap_or(0.0)),
        sticky,
        sticky_seed: seed,
        override_header: r
            .override_header
            .as_ref()
            .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
        fallback_to_stable: r.fallback_to_stable,
        max_body: config.limits.max_body.as_usize(),
        compare: Arc::new(rules),
        tripwire: routing.tripwire,
        window: r
            .analysis
            .as_ref()
            .map_or(Duration::from_secs(60), |a| a.window.0),
    }
}

/// A percentage as basis points, 0..=10 000.
pub fn basis_points(percent: f64) -> u32 {
    (percent.clamp(0.0, 100.0) * 100.0).round() as u32
}
