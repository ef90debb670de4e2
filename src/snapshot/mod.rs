//! The immutable routing snapshot: everything a request needs, swapped atomically.
//!
//! The controller is the only writer: it builds a new [`Snapshot`] and `store`s it in the
//! `ArcSwap` that the data plane reads. A request loads the snapshot once at its start and
//! uses that copy to its end, so a reload or a rollback never mixes two configurations
//! inside one request, and a rollback is a single `store`.
//!
//! A snapshot is a route table: the [`Matcher`] that picks a request's route, then per
//! [`Route`] its backends, weights, mirror share and compare rules. What a config fixes
//! (the matcher, backends, compiled compare rules, sticky and override settings, the mirror
//! bound) is prepared once per config by a [`Builder`]; each publish only adds what each
//! route's rollout decides ([`Routing`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::compare;
use crate::config::{self, BackendConfig, Config};
use crate::observe::{Hub, Observers};
use crate::telemetry::diffs::Diffs;
use crate::telemetry::metrics::BackendMetrics;
use crate::telemetry::share::{Client, Shares};
use crate::telemetry::window::Window;
use crate::telemetry::Tripwire;
use crate::upstream::Upstream;
use matcher::Matcher;

pub mod matcher;

/// The route of a config with a top-level `rollout:`; state and windows are keyed by it.
pub use crate::config::DEFAULT_ROUTE;

/// One routing configuration, immutable once published.
pub struct Snapshot {
    /// Increases with every config that was applied.
    pub generation: u64,
    /// Which route takes a request; its indices are those of [`Snapshot::routes`].
    pub matcher: Arc<Matcher>,
    /// The routes, in the order they are tried.
    pub routes: Box<[Arc<Route>]>,
    /// Request bodies larger than this get 413 (`limits.max_body`).
    pub max_body: usize,
    /// How long after its head a request body may take to arrive (`limits.body_timeout`).
    pub body_timeout: Duration,
}

impl Snapshot {
    /// The route named `name`.
    pub fn route(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| &*r.name == name)
    }
}

/// One route of a snapshot: its backends and what its rollout decided.
pub struct Route {
    pub name: Arc<str>,
    /// The route's backends (its stable and its candidate), for the override header.
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
    pub compare: Arc<compare::Rules>,
    /// Trips the controller on consecutive candidate failures; `None` when off.
    pub tripwire: Option<Arc<Tripwire>>,
    /// The span the analysis looks at (`analysis.window`, 1m without analysis).
    pub window: Duration,
    /// Places for mirrors in flight (`shadow.max_in_flight`). Kept across publishes and
    /// replaced when the bound changes: mirrors in flight release their place in the old one.
    pub shadow_slots: Arc<Semaphore>,
    /// The route's recent disagreements; kept across publishes and reloads.
    pub diffs: Arc<Diffs>,
    /// What watches the route's sampled exchanges; `None` when nothing does.
    pub observers: Option<Arc<Observers>>,
}

/// Where the sticky key of a request is found.
#[derive(Debug, Clone)]
pub enum Sticky {
    Header(HeaderName),
    Cookie(Box<str>),
}

impl Route {
    /// The backend of this route with this name.
    pub fn backend(&self, name: &[u8]) -> Option<&Arc<Backend>> {
        self.backends.iter().find(|b| b.name.as_bytes() == name)
    }

    /// Whether `backend` is the candidate of this route.
    pub fn is_candidate(&self, backend: &Backend) -> bool {
        self.candidate
            .as_ref()
            .is_some_and(|c| std::ptr::eq(Arc::as_ptr(c), backend))
    }
}

/// One model server as it serves one route: where it is (its connection pools are shared
/// by every route it serves), and the route's own window and metric handles for it.
pub struct Backend {
    pub name: Arc<str>,
    /// `x-switchyard-variant` value, built once.
    pub variant: HeaderValue,
    /// `x-switchyard-route` value: the route this backend serves here.
    pub route: HeaderValue,
    /// Its address, timeout and connection pools (live and shadow), shared across routes.
    pub upstream: Arc<Upstream>,
    pub window: Arc<Window>,
    /// How much of `window` (and of the observers' figures) one client may fill.
    pub shares: Arc<Shares>,
    pub metrics: BackendMetrics,
    /// User requests the route's split sent here; kept across reloads ([`Backend::served`]).
    served: Arc<AtomicU64>,
    config: BackendConfig,
}

impl Backend {
    fn new(
        route: &str,
        name: &str,
        upstream: &Shared,
        judging: Judging,
        served: Arc<AtomicU64>,
    ) -> Backend {
        Backend {
            name: name.into(),
            variant: header_value(name),
            route: header_value(route),
            upstream: upstream.upstream.clone(),
            window: judging.0,
            shares: judging.1,
            metrics: BackendMetrics::new(route, name),
            served,
            config: upstream.config.clone(),
        }
    }

    /// How many user requests the route's split (weight, sticky key or random draw) has
    /// sent to this backend since it began serving the route, for `sample_ratio`: read it
    /// at a step's start and later, and take the difference.
    ///
    /// Counted when the request goes upstream, whether or not the gates read it (a
    /// client over its share counts), and whatever the answer; a candidate's request that
    /// falls back to the stable stays the candidate's. Not counted: requests the override
    /// header forced here (they follow the header, not the weight), mirrored copies
    /// (sent by the shadow side, never by the split), and requests refused before going
    /// upstream (413, a body that did not arrive). The count survives reloads, and only
    /// restarts from 0 when the route stops naming the backend.
    #[inline]
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Counts one user request the split sent here (a relaxed increment, no lock).
    #[inline]
    pub fn count_served(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the gates read a sample of `client` at `now`: false when the client is over
    /// its share (the sample is served, and left out of what the gates read). Counts it.
    #[inline]
    pub fn judges(&self, client: Option<Client>, now: Instant) -> bool {
        let judged = client.is_none_or(|c| self.shares.admit(c, now));
        if !judged {
            self.metrics.left_out();
        }
        judged
    }

    /// The window a sample goes to: `None` for one that is not judged.
    #[inline]
    pub fn window_if(&self, judged: bool) -> Option<&Window> {
        judged.then_some(&*self.window)
    }
}

/// What a backend's samples are judged in: its window, and its clients' shares of it.
type Judging = (Arc<Window>, Arc<Shares>);

/// A validated name as a header value.
fn header_value(name: &str) -> HeaderValue {
    HeaderValue::from_str(name).unwrap_or(HeaderValue::from_static("invalid"))
}

/// One configured backend's upstream, shared by the routes it serves.
struct Shared {
    config: BackendConfig,
    upstream: Arc<Upstream>,
}

/// The backends of every route, reused across reloads so that connection pools and each
/// route's windows survive them.
#[derive(Default)]
pub struct Backends {
    upstreams: HashMap<String, Shared>,
    /// By (route, backend).
    by_route: HashMap<(String, String), Arc<Backend>>,
    /// What each route's analysis fixes of its windows.
    shapes: HashMap<String, Shape>,
}

impl Backends {
    /// Brings the set in line with `config`: unchanged backends are kept as they are, a
    /// backend whose settings changed keeps its windows, and those no route names go.
    pub fn sync(&mut self, config: &Config) {
        let mut upstreams = HashMap::with_capacity(config.backends.len());
        for (name, bc) in &config.backends {
            let shared = match self.upstreams.remove(name) {
                Some(s) if s.config == *bc => s,
                _ => Shared {
                    config: bc.clone(),
                    upstream: Arc::new(Upstream::new(bc)),
                },
            };
            upstreams.insert(name.clone(), shared);
        }
        self.upstreams = upstreams;
        let mut by_route = HashMap::new();
        let mut shapes = HashMap::new();
        for route in config.routes() {
            let shape = Shape::of(&route.rollout);
            let reshape = self.shapes.get(&route.name) != Some(&shape);
            for name in route_backends(&route.rollout) {
                let Some(shared) = self.upstreams.get(name) else {
                    continue;
                };
                let key = (route.name.clone(), name.to_string());
                let backend = match self.by_route.remove(&key) {
                    Some(b) if b.config == shared.config && !reshape => b,
                    Some(b) if !reshape => {
                        let judging = (b.window.clone(), b.shares.clone());
                        let served = b.served.clone();
                        Arc::new(Backend::new(&route.name, name, shared, judging, served))
                    }
                    // A new shape begins new windows; the served count goes on.
                    Some(b) => {
                        let served = b.served.clone();
                        Arc::new(Backend::new(
                            &route.name,
                            name,
                            shared,
                            shape.judging(),
                            served,
                        ))
                    }
                    None => {
                        let served = Arc::default();
                        Arc::new(Backend::new(
                            &route.name,
                            name,
                            shared,
                            shape.judging(),
                            served,
                        ))
                    }
                };
                by_route.insert(key, backend);
            }
            shapes.insert(route.name, shape);
        }
        self.by_route = by_route;
        self.shapes = shapes;
    }

    /// The backend `name` as it serves `route`.
    pub fn get(&self, route: &str, name: &str) -> Option<&Arc<Backend>> {
        self.by_route.get(&(route.to_string(), name.to_string()))
    }
}

/// The backends a route's rollout names: its stable, then its candidate.
fn route_backends(r: &config::RolloutConfig) -> impl Iterator<Item = &str> {
    std::iter::once(r.stable.as_str()).chain(r.candidate.as_deref())
}

/// What a route's analysis fixes of its backends' windows and shares.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Shape {
    /// The analysis window.
    span: Duration,
    max_client_share: f64,
    min_samples: u64,
}

impl Shape {
    /// Without analysis no gate reads the windows: a one-minute span, no share bound.
    fn of(r: &config::RolloutConfig) -> Shape {
        match &r.analysis {
            Some(a) => Shape {
                span: a.window.0,
                max_client_share: a.max_client_share,
                min_samples: a.min_samples,
            },
            None => Shape {
                span: Duration::from_secs(60),
                max_client_share: 1.0,
                min_samples: 0,
            },
        }
    }

    /// A new window (sixty buckets over the span, 1 s at least, plus one for the bucket
    /// being filled) and its shares.
    fn judging(&self) -> Judging {
        let bucket = Duration::from_secs(self.span.as_secs().div_ceil(60).max(1));
        let n = self.span.as_secs().div_ceil(bucket.as_secs()) as usize + 1;
        let shares = Shares::new(self.span, self.max_client_share, self.min_samples);
        (Arc::new(Window::new(bucket, n.max(2))), Arc::new(shares))
    }
}

/// Everything a route's rollout decides that goes into a snapshot.
pub struct Routing {
    pub weight: f64,
    pub mirror: f64,
    pub tripwire: Option<Arc<Tripwire>>,
    /// The rollout's id: a new one empties the monitor's drift windows and forgets the
    /// features found in requests (the reference, of the stable model, stays).
    pub rollout: u64,
    /// The rollout's step (its index; one past the last once promoted): a new one empties
    /// the monitor's output counts, so the `output_drift` gate reads this step's answers.
    pub step: u64,
}

/// What one config fixes in every snapshot, prepared once per config: the matcher, and
/// per route its backends, compiled compare rules, sticky and override settings, and the
/// mirror bound.
pub struct Builder {
    matcher: Arc<Matcher>,
    routes: Vec<RouteBuilder>,
    max_body: usize,
    body_timeout: Duration,
    /// Capture logs, the feedback store and monitors, kept across reloads.
    hub: Hub,
}

/// What a config fixes of one route.
struct RouteBuilder {
    name: Arc<str>,
    backends: Vec<Arc<Backend>>,
    stable: Arc<Backend>,
    candidate: Option<Arc<Backend>>,
    calibrate_bp: u32,
    sticky: Option<Sticky>,
    sticky_seed: u64,
    override_header: Option<HeaderName>,
    fallback_to_stable: bool,
    compare: Arc<compare::Rules>,
    window: Duration,
    max_in_flight: usize,
    shadow_slots: Arc<Semaphore>,
    diffs: Arc<Diffs>,
    observers: Option<Arc<Observers>>,
}

impl Builder {
    /// Prepares the snapshots of a validated `config` over the live `backends`. From
    /// `previous`, a route of the same name keeps its diffs, and its mirror bound when
    /// its `shadow.max_in_flight` did not change.
    pub fn new(config: &Config, backends: &Backends, previous: Option<&Builder>) -> Builder {
        let routes = config.routes();
        let matcher = Matcher::from_routes(&routes).expect("a validated config's routes");
        let hub = Hub::new(config, previous.map(|p| &p.hub));
        let routes = routes
            .iter()
            .map(|route| {
                let before =
                    previous.and_then(|p| p.routes.iter().find(|r| *r.name == *route.name));
                RouteBuilder::new(route, backends, before, hub.observers(route))
            })
            .collect();
        Builder {
            matcher: Arc::new(matcher),
            routes,
            max_body: config.limits.max_body.as_usize(),
            body_timeout: config.limits.body_timeout.0,
            hub,
        }
    }

    /// The observers of the route named `route`, when anything observes it.
    pub fn observers(&self, route: &str) -> Option<&Observers> {
        let r = self.routes.iter().find(|r| *r.name == *route)?;
        r.observers.as_deref()
    }

    /// The feedback store, when any route takes labels.
    pub fn feedback(&self) -> Option<&Arc<crate::feedback::Feedback>> {
        self.hub.feedback()
    }

    /// The snapshot of this config with each route's current `routing`, in route order.
    pub fn build(&self, generation: u64, routing: impl IntoIterator<Item = Routing>) -> Snapshot {
        Snapshot {
            generation,
            matcher: self.matcher.clone(),
            routes: self
                .routes
                .iter()
                .zip(routing)
                .map(|(r, routing)| Arc::new(r.build(routing)))
                .collect(),
            max_body: self.max_body,
            body_timeout: self.body_timeout,
        }
    }
}

impl RouteBuilder {
    fn new(
        route: &config::Route,
        backends: &Backends,
        previous: Option<&RouteBuilder>,
        observers: Option<Arc<Observers>>,
    ) -> RouteBuilder {
        let r = &route.rollout;
        let max_in_flight = route.shadow.max_in_flight;
        let shadow_slots = match previous {
            Some(p) if p.max_in_flight == max_in_flight => p.shadow_slots.clone(),
            // More than a semaphore can count is as good as no bound (and would panic).
            _ => Arc::new(Semaphore::new(max_in_flight.min(Semaphore::MAX_PERMITS))),
        };
        let get = |name: &str| backends.get(&route.name, name).cloned();
        let stable = get(&r.stable).expect("validated stable");
        let candidate = r.candidate.as_deref().and_then(get);
        RouteBuilder {
            name: route.name.as_str().into(),
            backends: std::iter::once(stable.clone())
                .chain(candidate.clone())
                .collect(),
            stable,
            candidate,
            calibrate_bp: basis_points(route.shadow.calibrate.unwrap_or(0.0)),
            sticky: sticky(r),
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
            compare: Arc::new(compare_rules(
                &route.shadow.compare,
                route.capture.as_ref().map_or(&[][..], |c| &c.redact),
            )),
            window: r
                .analysis
                .as_ref()
                .map_or(Duration::from_secs(60), |a| a.window.0),
            max_in_flight,
            shadow_slots,
            diffs: previous.map_or_else(Default::default, |p| p.diffs.clone()),
            observers,
        }
    }

    fn build(&self, routing: Routing) -> Route {
        if let Some(o) = &self.observers {
            o.rollout(routing.rollout, routing.step);
        }
        Route {
            name: self.name.clone(),
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
            compare: self.compare.clone(),
            tripwire: routing.tripwire,
            window: self.window,
            shadow_slots: self.shadow_slots.clone(),
            diffs: self.diffs.clone(),
            observers: self.observers.clone(),
        }
    }
}

/// Where the sticky key is found, from `rollout.sticky`.
fn sticky(r: &config::RolloutConfig) -> Option<Sticky> {
    let s = r.sticky.as_ref()?;
    match (&s.header, &s.cookie) {
        (Some(h), _) => HeaderName::from_bytes(h.as_bytes())
            .ok()
            .map(Sticky::Header),
        (None, Some(c)) => Some(Sticky::Cookie(c.as_str().into())),
        _ => None,
    }
}

/// The compiled comparison rules of a `shadow.compare`; the diffs it shows also hide
/// what the capture's `redact` pointers (`capture_redact`) hide: a value redacted
/// anywhere is shown nowhere.
fn compare_rules(c: &config::CompareConfig, capture_redact: &[String]) -> compare::Rules {
    let redact = c.redact.iter().chain(capture_redact).cloned().collect();
    compare::Rules::new(
        c.protocol,
        c.ignore.clone(),
        c.abs_tolerance,
        c.rel_tolerance,
        redact,
    )
    .unwrap_or_default()
}

/// A percentage as basis points, 0..=10 000.
fn basis_points(percent: f64) -> u32 {
    (percent.clamp(0.0, 100.0) * 100.0).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(window: &str, timeout: &str) -> Config {
        let text = format!(
            "\
backends:
  blue: {{ url: 'http://127.0.0.1:18001', timeout: {timeout} }}
  green: {{ url: 'http://127.0.0.1:18002' }}
rollout:
  stable: blue
  candidate: green
  steps: [{{ weight: 10 }}, {{ weight: 100 }}]
  analysis: {{ interval: 10s, window: {window} }}
"
        );
        crate::config::parse(&text).expect("a valid config")
    }

    #[test]
    fn served_counts_survive_reloads_and_new_window_shapes() {
        let mut backends = Backends::default();
        backends.sync(&config("1m", "5s"));
        let blue = || backends.get(DEFAULT_ROUTE, "blue").unwrap().clone();
        for _ in 0..3 {
            blue().count_served();
        }
        assert_eq!(blue().served(), 3);
        // Its settings change (a new backend value), then its analysis window (new windows).
        backends.sync(&config("1m", "7s"));
        assert_eq!(backends.get(DEFAULT_ROUTE, "blue").unwrap().served(), 3);
        backends.sync(&config("5m", "7s"));
        let reshaped = backends.get(DEFAULT_ROUTE, "blue").unwrap();
        assert_eq!(reshaped.served(), 3);
        reshaped.count_served();
        assert_eq!(reshaped.served(), 4);
        assert_eq!(backends.get(DEFAULT_ROUTE, "green").unwrap().served(), 0);
    }
}
