//! Each route's last hour at one point a second, for `GET /api/v1/history` and the
//! dashboard: its weight, mirror and phase, and per backend its users' requests a second
//! and, apart, the mirrored copies it answered a second, error rate, latency, shadow
//! agreement, output drift, and accuracy with the count of labels it is of.
//!
//! One task ([`History::run`]) wakes every second, reads the published snapshot and
//! statuses once, and appends one point per route, its backends' figures read from the
//! last complete bucket of their windows. Requests never touch a [`History`]: it only
//! reads what the windows count anyway. Routes a reload removed are dropped at the next
//! tick, so its memory follows the config.
//!
//! It lives under `admin`, not `telemetry`: a point carries the rollout's phase and
//! weight, which only `rollout` publishes, and `telemetry` imports nothing above it.
//!
//! # Memory
//!
//! Fixed, allocated when a route (or one of its backends) first appears: per route
//! [`KEPT`] points of 16 bytes (`at` as u32, weight and mirror as f32, phase as u8), that
//! is 57 600 bytes; per backend of a route [`KEPT`] samples of 36 bytes (eight f32 and a
//! u32), that is 129 600 bytes. A route with a stable and a candidate takes 316 800 bytes
//! (309 KiB).
//!
//! # Resolution
//!
//! A window's buckets are one second wide for an `analysis.window` up to a minute, and
//! one sixtieth of it beyond (5 s for 5 minutes): there, consecutive points repeat the
//! figures of the same bucket, its requests spread over its width.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};
use tokio::sync::watch;
use tokio::time::{Duration, Instant, MissedTickBehavior};

use crate::rollout::controller::Published;
use crate::rollout::{Event, Phase, Status, Statuses};
use crate::snapshot::{Backend, Route, Snapshot};

/// How many points a route keeps: one hour at one a second.
pub const KEPT: usize = 3600;
/// How far back `GET /api/v1/history` looks without `?since=`, in seconds.
const DEFAULT_SINCE: u64 = 300;

/// Every route's recent points, written once a second by [`History::run`] and read by
/// the admin API.
///
/// ```
/// use switchyard::admin::history::History;
/// use tokio::time::Instant;
///
/// let history = History::new();
/// assert!(history.timeline("iris", 300, Instant::now()).is_empty());
/// ```
pub struct History {
    /// Unix time at `started`, so `at` follows `tokio::time` (paused in tests).
    wall: Duration,
    started: Instant,
    routes: Mutex<HashMap<Arc<str>, RouteHistory>>,
}

/// One route's ring of points, and one ring of samples per backend aligned with it at
/// the newest end: a backend's last sample belongs to the route's last point.
struct RouteHistory {
    points: VecDeque<Point>,
    backends: Vec<BackendHistory>,
}

/// One backend's samples within its route, [`Sample::ABSENT`] where the route did not
/// name it.
struct BackendHistory {
    name: Arc<str>,
    samples: VecDeque<Sample>,
    /// How many of the newest samples are absent: all of them, and the backend goes.
    absent: usize,
}

/// What a route was doing at one tick.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    /// Unix seconds.
    at: u32,
    weight: f32,
    mirror: f32,
    /// Index in [`Phase::ALL`].
    phase: u8,
}

/// One backend's figures at one tick; NaN stands for "none" (`null` in the answer).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    /// Users' requests a second.
    rps: f32,
    /// Mirrored copies answered a second.
    mirrored_rps: f32,
    error_rate: f32,
    p50_ms: f32,
    p99_ms: f32,
    shadow_agreement: f32,
    output_drift: f32,
    accuracy: f32,
    /// The labels `accuracy` is of; [`NO_LABELS`] without feedback.
    labels: u32,
}

/// [`Sample::labels`] of a backend whose route takes no labels.
const NO_LABELS: u32 = u32::MAX;

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl History {
    /// An empty history whose clock starts now.
    pub fn new() -> History {
        History {
            wall: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            started: Instant::now(),
            routes: Mutex::new(HashMap::new()),
        }
    }

    /// Records a point every second from what `published` holds, until `shutdown` flips
    /// (or its sender is gone).
    pub async fn run(self: Arc<Self>, published: Published, mut shutdown: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                at = ticks.tick() => {
                    let snapshot = published.snapshot.load();
                    let statuses = published.status.load();
                    self.record(&snapshot, &statuses, at);
                }
                _ = shutdown.changed() => break,
            }
        }
    }

    /// Appends one point for each route of `snapshot` that `statuses` describes, and
    /// drops the routes `snapshot` no longer has.
    pub fn record(&self, snapshot: &Snapshot, statuses: &Statuses, now: Instant) {
        let at = u32::try_from(self.unix_seconds(now)).unwrap_or(u32::MAX);
        // Read the windows before taking the lock: the admin API waits on it.
        let taken: Vec<_> = snapshot
            .routes
            .iter()
            .filter_map(|route| {
                let status = statuses.route(&route.name)?;
                let samples: Vec<_> = route
                    .backends
                    .iter()
                    .map(|b| (b.name.clone(), Sample::of(route, b, now)))
                    .collect();
                Some((route.name.clone(), Point::of(status, at), samples))
            })
            .collect();
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut kept = HashMap::with_capacity(snapshot.routes.len());
        for route in snapshot.routes.iter() {
            if let Some(h) = routes.remove(&route.name) {
                kept.insert(route.name.clone(), h);
            }
        }
        for (name, point, samples) in taken {
            let h = kept.entry(name).or_insert_with(RouteHistory::new);
            h.push(point, &samples);
        }
        *routes = kept;
    }

    /// The points of `route` taken within the last `since` seconds before `now`, oldest
    /// first; empty for a route not recorded yet.
    pub fn timeline(&self, route: &str, since: u64, now: Instant) -> Timeline {
        let from = self.unix_seconds(now).saturating_sub(since);
        let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(h) = routes.get(route) else {
            return Timeline::default();
        };
        let first = h.points.partition_point(|p| u64::from(p.at) <= from);
        let points: Vec<Point> = h.points.range(first..).copied().collect();
        let backends = h
            .backends
            .iter()
            .map(|b| {
                let n = b.samples.len().min(points.len());
                let samples = b.samples.range(b.samples.len() - n..).copied().collect();
                (b.name.clone(), samples)
            })
            .collect();
        Timeline { points, backends }
    }

    /// The routes recorded, in no particular order.
    pub fn routes(&self) -> Vec<Arc<str>> {
        let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        routes.keys().cloned().collect()
    }

    fn unix_seconds(&self, now: Instant) -> u64 {
        (self.wall + now.saturating_duration_since(self.started)).as_secs()
    }
}

/// Parses `?since=`: whole seconds, at least 1; [`DEFAULT_SINCE`] when absent, and at
/// most [`KEPT`] (what is kept) when more.
///
/// ```
/// use switchyard::admin::history::since;
/// assert_eq!(since(None), Ok(300));
/// assert_eq!(since(Some("60")), Ok(60));
/// assert_eq!(since(Some("86400")), Ok(3600));
/// assert!(since(Some("abc")).is_err() && since(Some("0")).is_err());
/// ```
pub fn since(value: Option<&str>) -> Result<u64, String> {
    let Some(v) = value else {
        return Ok(DEFAULT_SINCE);
    };
    match v.parse::<u64>() {
        Ok(s) if s > 0 => Ok(s.min(KEPT as u64)),
        _ => Err(format!(
            "since={v}: expected a whole number of seconds, at least 1 (at most {KEPT} are kept)"
        )),
    }
}

// === impl RouteHistory ===

impl RouteHistory {
    fn new() -> RouteHistory {
        RouteHistory {
            points: VecDeque::with_capacity(KEPT),
            backends: Vec::with_capacity(2),
        }
    }

    /// Appends `point` and each backend's sample; a backend missing from `samples` gets
    /// an absent one, and goes once it has nothing but.
    fn push(&mut self, point: Point, samples: &[(Arc<str>, Sample)]) {
        push_kept(&mut self.points, point);
        for b in &mut self.backends {
            let sample = samples.iter().find(|(n, _)| *n == b.name).map(|(_, s)| *s);
            b.push(sample.unwrap_or(Sample::ABSENT));
        }
        for (name, sample) in samples {
            if !self.backends.iter().any(|b| b.name == *name) {
                let mut b = BackendHistory {
                    name: name.clone(),
                    samples: VecDeque::with_capacity(KEPT),
                    absent: 0,
                };
                b.push(*sample);
                self.backends.push(b);
            }
        }
        self.backends.retain(|b| b.absent < b.samples.len());
    }
}

impl BackendHistory {
    fn push(&mut self, sample: Sample) {
        self.absent = if sample.is_absent() {
            self.absent + 1
        } else {
            0
        };
        push_kept(&mut self.samples, sample);
    }
}

/// Appends `item`, dropping the oldest once [`KEPT`] are there: the ring never grows.
fn push_kept<T>(ring: &mut VecDeque<T>, item: T) {
    if ring.len() == KEPT {
        ring.pop_front();
    }
    ring.push_back(item);
}

// === impl Point, Sample ===

impl Point {
    fn of(status: &Status, at: u32) -> Point {
        let phase = Phase::ALL.iter().position(|p| *p == status.phase);
        Point {
            at,
            weight: status.weight as f32,
            mirror: status.mirror as f32,
            phase: phase.unwrap_or(0) as u8,
        }
    }
}

impl Sample {
    /// The sample of a backend its route did not name at that tick.
    const ABSENT: Sample = Sample {
        rps: f32::NAN,
        mirrored_rps: f32::NAN,
        error_rate: f32::NAN,
        p50_ms: f32::NAN,
        p99_ms: f32::NAN,
        shadow_agreement: f32::NAN,
        output_drift: f32::NAN,
        accuracy: f32::NAN,
        labels: NO_LABELS,
    };

    /// `backend`'s figures in the last complete bucket of its window before `now`.
    fn of(route: &Route, backend: &Backend, now: Instant) -> Sample {
        let bucket = backend.window.bucket();
        let last = now.checked_sub(bucket).unwrap_or(now);
        let summary = backend.window.summary(last, Duration::ZERO);
        let ms = |q| summary.quantile(q).map(|d| d.as_secs_f64() * 1e3);
        let (output_drift, accuracy, labels) = model_figures(route, backend, now);
        let per_second = |n: u64| (n as f64 / bucket.as_secs_f64()) as f32;
        let mirrored = summary.mirrored.min(summary.requests);
        Sample {
            rps: per_second(summary.requests - mirrored),
            mirrored_rps: per_second(mirrored),
            error_rate: stored(summary.error_rate()),
            p50_ms: stored(ms(0.5)),
            p99_ms: stored(ms(0.99)),
            shadow_agreement: stored(summary.shadow_agreement()),
            output_drift: stored(output_drift),
            accuracy: stored(accuracy),
            labels: labels.map_or(NO_LABELS, |n| {
                u32::try_from(n).unwrap_or(NO_LABELS - 1).min(NO_LABELS - 1)
            }),
        }
    }

    fn is_absent(&self) -> bool {
        self.rps.is_nan()
    }
}

/// A backend's model figures at `now`: its output drift against the route's stable, its
/// accuracy on the labels fed back, and how many labels that is (`None` without feedback).
fn model_figures(
    route: &Route,
    backend: &Backend,
    now: Instant,
) -> (Option<f64>, Option<f64>, Option<u64>) {
    let Some(o) = route.observers.as_deref() else {
        return (None, None, None);
    };
    let drift = route
        .candidate
        .as_ref()
        .filter(|c| c.name == backend.name)
        .and_then(|c| o.output_drift(&route.stable.name, &c.name, now));
    let score = o.accuracy(&backend.name, now, route.window);
    let labels = o.feedback().is_some().then(|| score.labels());
    (drift, score.accuracy(), labels)
}

/// A figure as stored: NaN for none.
fn stored(figure: Option<f64>) -> f32 {
    figure.map_or(f32::NAN, |f| f as f32)
}

/// A stored figure as shown: `None` (`null`) for NaN.
fn shown(figure: f32) -> Option<f32> {
    (!figure.is_nan()).then_some(figure)
}

// === impl Timeline ===

/// One route's points over a span, copied out of its [`History`]; serializes as the
/// `points` of `GET /api/v1/history`.
#[derive(Debug, Default)]
pub struct Timeline {
    points: Vec<Point>,
    /// Per backend, its samples for the newest `samples.len()` points.
    backends: Vec<(Arc<str>, Vec<Sample>)>,
}

/// One backend's figures at one point, as the API shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// Users' requests a second (mirrored copies not counted).
    pub rps: f32,
    /// Mirrored copies a second: requests sent to the backend only to compare its
    /// answers, which no user waited for (the candidate's, while it is mirrored to).
    pub mirrored_rps: f32,
    /// The share of every answer that failed, mirrored copies included as the gates
    /// judge them (so are the latencies); `null` when the backend answered none.
    pub error_rate: Option<f32>,
    pub p50_ms: Option<f32>,
    pub p99_ms: Option<f32>,
    /// `null` when nothing was compared.
    pub shadow_agreement: Option<f32>,
    pub output_drift: Option<f32>,
    pub accuracy: Option<f32>,
    /// The labels joined over the analysis window that `accuracy` is of; `null` when the
    /// route takes no labels.
    pub labels: Option<u32>,
}

impl Timeline {
    /// How many points.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether there are no points.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The figures of each backend at point `i` (oldest first), by name.
    pub fn figures(&self, i: usize) -> impl Iterator<Item = (&str, Figures)> + '_ {
        self.backends.iter().filter_map(move |(name, samples)| {
            let j = (i + samples.len()).checked_sub(self.points.len())?;
            let s = samples.get(j).filter(|s| !s.is_absent())?;
            let figures = Figures {
                rps: s.rps,
                mirrored_rps: s.mirrored_rps,
                error_rate: shown(s.error_rate),
                p50_ms: shown(s.p50_ms),
                p99_ms: shown(s.p99_ms),
                shadow_agreement: shown(s.shadow_agreement),
                output_drift: shown(s.output_drift),
                accuracy: shown(s.accuracy),
                labels: (s.labels != NO_LABELS).then_some(s.labels),
            };
            Some((&**name, figures))
        })
    }
}

impl Serialize for Timeline {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.points.len()))?;
        for i in 0..self.points.len() {
            seq.serialize_element(&Shown(self, i))?;
        }
        seq.end()
    }
}

/// Point `.1` of a timeline, as the API shows it.
struct Shown<'a>(&'a Timeline, usize);

/// The backends of point `.1` of a timeline: `{NAME: Figures}`.
struct ShownBackends<'a>(&'a Timeline, usize);

impl Serialize for Shown<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let p = self.0.points[self.1];
        let mut s = serializer.serialize_struct("Point", 5)?;
        s.serialize_field("at", &p.at)?;
        s.serialize_field("phase", Phase::ALL[usize::from(p.phase)])?;
        s.serialize_field("weight", &p.weight)?;
        s.serialize_field("mirror", &p.mirror)?;
        s.serialize_field("backends", &ShownBackends(self.0, self.1))?;
        s.end()
    }
}

impl Serialize for ShownBackends<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut m = serializer.serialize_map(None)?;
        for (name, figures) in self.0.figures(self.1) {
            m.serialize_entry(name, &figures)?;
        }
        m.end()
    }
}

/// The answer of `GET /api/v1/history`: a route's points over `since` seconds, and its
/// events.
#[derive(Serialize)]
pub struct Answer<'a> {
    pub route: &'a str,
    pub stable: &'a str,
    pub candidate: Option<&'a str>,
    pub since: u64,
    pub points: &'a Timeline,
    pub events: &'a [Event],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::rollout::controller::Controller;

    const SECOND: Duration = Duration::from_secs(1);

    /// A config of routes `names`, each with stable `blue`; the first also a candidate,
    /// `green`, held at 25 %.
    fn published(names: &[&str]) -> Published {
        let mut yaml = String::from(
            "listen: 127.0.0.1:0\nadmin: { listen: 127.0.0.1:0 }\nstate: { path: null }\n\
             backends: { blue: { url: 'http://127.0.0.1:1' }, green: { url: 'http://127.0.0.1:2' } }\n\
             routes:\n",
        );
        for (i, name) in names.iter().enumerate() {
            let rollout = if i == 0 {
                "{ stable: blue, candidate: green, steps: [{ weight: 25, hold: manual }, { weight: 100 }] }"
            } else {
                "{ stable: blue }"
            };
            yaml += &format!(
                "  - {{ name: {name}, match: {{ path_prefix: /{name}/ }}, rollout: {rollout} }}\n"
            );
        }
        let (controller, _control) = Controller::new(parse(&yaml).unwrap(), None);
        controller.published()
    }

    /// Records one point of `published` at the current (paused) time.
    fn tick(history: &History, published: &Published) {
        let (snapshot, statuses) = (published.snapshot.load(), published.status.load());
        history.record(&snapshot, &statuses, Instant::now());
    }

    fn json(timeline: &Timeline) -> serde_json::Value {
        serde_json::to_value(timeline).unwrap()
    }

    #[test]
    fn points_and_samples_are_as_small_as_the_docs_say() {
        assert_eq!(std::mem::size_of::<Point>(), 16);
        assert_eq!(std::mem::size_of::<Sample>(), 36);
    }

    #[tokio::test(start_paused = true)]
    async fn a_point_holds_the_last_complete_second_of_each_backend() {
        let published = published(&["iris"]);
        let history = History::new();
        let snapshot = published.snapshot.load_full();
        let stable = &snapshot.routes[0].stable.window;
        let start = Instant::now();
        tokio::time::advance(SECOND / 2).await;
        for (ms, error) in [(10, false), (20, false), (400, true)] {
            stable.record(Instant::now(), Duration::from_millis(ms), error);
        }
        tokio::time::advance(SECOND / 2).await;
        // This second's requests are not in the point: its bucket is not complete.
        stable.record(Instant::now(), Duration::from_millis(10), false);
        tick(&history, &published);

        let timeline = history.timeline("iris", 60, Instant::now());
        assert_eq!(timeline.len(), 1);
        let point = &json(&timeline)[0];
        let at = history.unix_seconds(start) + 1;
        assert_eq!(point["at"], at);
        assert_eq!(
            (point["phase"].as_str(), point["weight"].as_f64()),
            (Some("progressing"), Some(25.0))
        );
        let blue = &point["backends"]["blue"];
        assert_eq!(blue["rps"], 3.0);
        assert!(
            (blue["error_rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-6,
            "{blue}"
        );
        let p50 = blue["p50_ms"].as_f64().unwrap();
        let p99 = blue["p99_ms"].as_f64().unwrap();
        assert!(
            (19.0..21.0).contains(&p50) && (390.0..410.0).contains(&p99),
            "{blue}"
        );
        for none in ["shadow_agreement", "output_drift", "accuracy", "labels"] {
            assert!(blue[none].is_null(), "{none}: {blue}");
        }
        let green = &point["backends"]["green"];
        assert_eq!(
            (green["rps"].as_f64(), green["error_rate"].is_null()),
            (Some(0.0), true)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_route_keeps_an_hour_and_since_takes_the_newest() {
        let published = published(&["iris"]);
        let history = History::new();
        for i in 0..KEPT + 10 {
            if i > 0 {
                tokio::time::advance(SECOND).await;
            }
            tick(&history, &published);
        }
        let now = Instant::now();
        let hour = history.timeline("iris", KEPT as u64, now);
        assert_eq!(hour.len(), KEPT);
        let routes = history.routes.lock().unwrap();
        let iris = &routes["iris"];
        assert_eq!(iris.points.len(), KEPT);
        assert!(iris.points.capacity() < 2 * KEPT, "the ring grew");
        assert!(iris.backends.iter().all(|b| b.samples.len() == KEPT));
        drop(routes);

        // since=3: the points of this second and the two before.
        let three = history.timeline("iris", 3, now);
        let newest = history.unix_seconds(now);
        let ats: Vec<_> = json(&three)
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["at"].as_u64().unwrap())
            .collect();
        assert_eq!(ats, [newest - 2, newest - 1, newest]);
        assert_eq!(
            three.figures(2).count(),
            2,
            "stable and candidate at each point"
        );
        assert!(history.timeline("chat", 3, now).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn routes_a_reload_removes_go_at_the_next_tick() {
        let both = published(&["iris", "chat"]);
        let history = History::new();
        tick(&history, &both);
        let mut names = history.routes();
        names.sort();
        assert_eq!(names, [Arc::from("chat"), Arc::from("iris")]);

        tokio::time::advance(SECOND).await;
        let iris_only = published(&["iris"]);
        tick(&history, &iris_only);
        assert_eq!(history.routes(), [Arc::from("iris")]);
        assert_eq!(history.timeline("iris", 60, Instant::now()).len(), 2);
        assert!(history.timeline("chat", 60, Instant::now()).is_empty());
    }

    #[test]
    fn a_backend_no_longer_named_goes_once_it_has_only_absent_samples() {
        let point = Point {
            at: 1,
            weight: 0.0,
            mirror: 0.0,
            phase: 0,
        };
        let sample = Sample {
            rps: 1.0,
            ..Sample::ABSENT
        };
        let (blue, green): (Arc<str>, Arc<str>) = ("blue".into(), "green".into());
        let mut h = RouteHistory::new();
        h.push(point, &[(blue.clone(), sample), (green.clone(), sample)]);
        for _ in 0..KEPT - 1 {
            h.push(point, &[(blue.clone(), sample)]);
        }
        let names = |h: &RouteHistory| {
            h.backends
                .iter()
                .map(|b| b.name.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&h),
            ["blue", "green"],
            "green's one sample is still kept"
        );
        let timeline = Timeline {
            points: h.points.iter().copied().collect(),
            backends: h
                .backends
                .iter()
                .map(|b| (b.name.clone(), b.samples.iter().copied().collect()))
                .collect(),
        };
        assert_eq!(timeline.figures(0).count(), 2);
        assert_eq!(
            timeline.figures(1).map(|(n, _)| n).collect::<Vec<_>>(),
            ["blue"]
        );
        h.push(point, &[(blue.clone(), sample)]);
        assert_eq!(names(&h), ["blue"]);
    }
}
