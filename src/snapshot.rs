//! The immutable routing snapshot: everything a request needs, swapped atomically.
//!
//! The controller is the only writer: it builds a new [`Snapshot`] and `store`s it in the
//! `ArcSwap` that the data plane reads. A request loads the snapshot once at its start and
//! uses that copy to its end, so a reload or a rollback never mixes two configurations
//! inside one request, and a rollback is a single `store`.
//!
//! What a config fixes (backends, compiled compare rules, sticky and override settings,
//! the mirror bound) is prepared once per config by a [`Builder`]; each publish only adds
//! what the rollout decides ([`Routing`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use tokio::sync::Semaphore;

use crate::compare;
use crate::config::{BackendConfig, Config};
use crate::telemetry::metrics::BackendMetrics;
use crate::telemetry::window::Window;
use crate::telemetry::Tripwire;
use crate::upstream::Upstream;

/// The route of a config with a top-level `rollout:`; state and windows are keyed by it.
pub use crate::config::DEFAULT_ROUTE;

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
    /// How long after its head a request body may take to arrive (`limits.body_timeout`).
    pub body_timeout: Duration,
    /// Places for mirrors in flight (`shadow.max_in_flight`). Kept across publishes and
    /// replaced when the bound changes: mirrors in flight release their place in the old one.
    pub shadow_slots: Arc<Semaphore>,
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

/// One model server: where it is, its window and its metric handles.
pub struct Backend {
    pub name: Arc<str>,
    /// `x-switchyard-variant` value, built once.
    pub variant: HeaderValue,
    /// Its address, timeout and connection pools (live and shadow).
    pub upstream: Upstream,
    pub window: Arc<Window>,
    pub metrics: BackendMetrics,
    config: BackendConfig,
}

impl Backend {
    fn new(name: &str, config: &BackendConfig, window: Arc<Window>) -> Backend {
        Backend {
            name: name.into(),
            variant: HeaderValue::from_str(name).unwrap_or(HeaderValue::from_static("invalid")),
            upstream: Upstream::new(&config.url, config.timeout.0),
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

/// Everything the controller decides that goes into a snapshot.
pub struct Routing {
    pub weight: f64,
    pub mirror: f64,
    pub tripwire: Option<Arc<Tripwire>>,
}

/// What one config fixes in every snapshot, prepared once per config: the backends in
/// play, compiled compare rules, sticky and override settings, the mirror bound.
pub struct Builder {
    backends: Vec<Arc<Backend>>,
    stable: Arc<Backend>,
    candidate: Option<Arc<Backend>>,
    calibrate_bp: u32,
    sticky: Option<Sticky>,
    sticky_seed: u64,
    override_header: Option<HeaderName>,
    fallback_to_stable: bool,
    max_body: usize,
    body_timeout: Duration,
    compare: Arc<compare::Rules>,
    window: Duration,
    max_in_flight: usize,
    shadow_slots: Arc<Semaphore>,
}

impl Builder {
    /// Prepares the snapshots of a validated `config` over the live `backends`; the mirror
    /// bound of `previous` is kept when `shadow.max_in_flight` did not change.
    pub fn new(config: &Config, backends: &Backends, previous: Option<&Builder>) -> Builder {
        let r = &config.rollout;
        let max_in_flight = config.shadow.max_in_flight;
        let shadow_slots = match previous {
            Some(p) if p.max_in_flight == max_in_flight => p.shadow_slots.clone(),
            // More than a semaphore can count is as good as no bound (and would panic).
            _ => Arc::new(Semaphore::new(max_in_flight.min(Semaphore::MAX_PERMITS))),
        };
        Builder {
            backends: backends.all(),
            stable: backends.get(&r.stable).expect("validated stable").clone(),
            candidate: r.candidate.as_ref().and_then(|c| backends.get(c)).cloned(),
            calibrate_bp: basis_points(config.shadow.calibrate.unwrap_or(0.0)),
            sticky: sticky(config),
            // Per candidate, so each rollout canaries a different slice of users.
            sticky_seed: r
                .candidate
                .as_deref()
                .map(|c| xxhash_rust::xxh3::xxh3_64(c.as_bytes()))
                .unwrap_or(0),
            override_header: r
                .override_header
                .as_ref()
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
            fallback_to_stable: r.fallback_to_stable,
            max_body: config.limits.max_body.as_usize(),
            body_timeout: config.limits.body_timeout.0,
            compare: Arc::new(compare_rules(config)),
            window: r
                .analysis
                .as_ref()
                .map_or(Duration::from_secs(60), |a| a.window.0),
            max_in_flight,
            shadow_slots,
        }
    }

    /// The snapshot of this config with the rollout's current `routing`.
    pub fn build(&self, generation: u64, routing: Routing) -> Snapshot {
        Snapshot {
            generation,
            backends: self.backends.clone(),
            stable: self.stable.clone(),
            candidate: self.candidate.clone(),
            weight_bp: basis_points(routing.weight),
            mirror_bp: basis_points(routing.mirror),
            calibrate_bp: self.calibrate_bp,
            sticky: self.sticky.clone(),
            sticky_seed: self.sticky_seed,
            override_header: self.override_header.clone(),
            fallback_to_stable: self.fallback_to_stable,
            max_body: self.max_body,
            body_timeout: self.body_timeout,
            compare: self.compare.clone(),
            tripwire: routing.tripwire,
            window: self.window,
            shadow_slots: self.shadow_slots.clone(),
        }
    }
}

/// Where the sticky key is found, from `rollout.sticky`.
fn sticky(config: &Config) -> Option<Sticky> {
    let s = config.rollout.sticky.as_ref()?;
    match (&s.header, &s.cookie) {
        (Some(h), _) => HeaderName::from_bytes(h.as_bytes())
            .ok()
            .map(Sticky::Header),
        (None, Some(c)) => Some(Sticky::Cookie(c.as_str().into())),
        _ => None,
    }
}

/// The compiled comparison rules of `shadow.compare`.
fn compare_rules(config: &Config) -> compare::Rules {
    let c = &config.shadow.compare;
    compare::Rules::new(
        c.protocol,
        c.ignore.clone(),
        c.abs_tolerance,
        c.rel_tolerance,
        c.redact.clone(),
    )
    .unwrap_or_default()
}

/// A percentage as basis points, 0..=10 000.
pub fn basis_points(percent: f64) -> u32 {
    (percent.clamp(0.0, 100.0) * 100.0).round() as u32
}
