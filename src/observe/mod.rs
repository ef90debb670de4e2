//! One tap, several observers: what a route does with the exchanges it samples.
//!
//! The live path only draws whether a request is observed ([`Observers::roll`], a few
//! nanoseconds) and tees its answer; once the answer has gone to the client a
//! low-priority thread hands the [`Seen`] exchange to [`Observers::observe`], which parses its bodies
//! once ([`Payload::parse`]) and gives the parsed form to each observer whose own sample
//! takes it:
//!
//! - the **monitor** (`monitor:`): payload statistics, drift, output drift;
//! - the **capture** (`capture:`): the prediction log, redacted, written by its own thread;
//! - the **feedback** store (`feedback:`): the predicted label, remembered by request id.
//!
//! One draw decides for all three: a request is observed when its draw is below the
//! largest sample, and each observer takes it when the draw is below its own. So with
//! `monitor.sample: 10` and `capture.sample: 1`, the captured requests are among the
//! monitored ones.
//!
//! A mirrored request that is observed brings the shadow's answer too: the monitor counts
//! it as the candidate's (so output drift is measured in the shadow phase, on the very
//! requests the stable answered), and the capture record carries it under `shadow`.
//!
//! [`Hub`] keeps what outlives one config: the capture logs (one writer per directory),
//! the feedback store, and each route's monitor and counters, reused by name across
//! reloads when their settings and the stable model are unchanged (a new monitor of the
//! same stable model takes over the reference it built).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::Value;
use tokio::time::Instant;

use crate::capture::{self, Capture, RouteCapture};
use crate::config::{self, CaptureConfig, Config, FeedbackConfig, MonitorConfig};
use crate::feedback::{self, Feedback, Predicted};
use crate::monitor::Monitor;
use crate::telemetry::Pairs;
use crate::wire::{Answer, Exchange, Payload};

pub(crate) use crate::wire::MAX_BODY;

/// The request id whose observation panics, in unit tests (the observer thread's panic
/// handling is tested with it).
#[cfg(test)]
pub(crate) const PANIC_FOR_TESTS: &str = "test:panic-while-observing";

/// A draw is in parts per million: `sample: 0.01` (one request in ten thousand) still counts.
const PPM: u32 = 1_000_000;

/// A percentage as parts per million, 0..=1 000 000.
fn ppm(percent: f64) -> u32 {
    (percent.clamp(0.0, 100.0) * 10_000.0).round() as u32
}

// === Observers ===

/// One route's observers, as a snapshot holds them.
pub struct Observers {
    route: Arc<str>,
    /// The largest of the three samples: a draw below it is observed.
    sample: u32,
    monitor_sample: u32,
    capture_sample: u32,
    feedback_sample: u32,
    monitor: Option<Arc<Watch>>,
    capture: Option<RouteCapture>,
    feedback: Option<Arc<Feedback>>,
    /// Exchanges dropped before any observer saw them (their queue was full).
    dropped: Arc<AtomicU64>,
}

/// A route's monitor, kept across reloads while its settings and its stable model hold.
pub(crate) struct Watch {
    settings: MonitorConfig,
    stable: Box<str>,
    /// The stable backend's URL: with its name, the stable model the reference is of.
    stable_url: Box<str>,
    monitor: Mutex<Monitor>,
    /// The rollout whose start last began a reference.
    rollout: AtomicU64,
    /// The step of that rollout whose answers the output counts hold.
    step: AtomicU64,
}

/// One observed exchange, after its answer has gone to the client.
pub struct Seen<'a> {
    /// The request's draw (from [`Observers::roll`]).
    pub draw: u32,
    pub request_id: &'a str,
    pub path: &'a str,
    /// When the request arrived.
    pub at: SystemTime,
    /// From the request to the answer's end.
    pub latency: Duration,
    pub request: &'a Bytes,
    /// The request body was not copied whole (over the cap, or it never ended).
    pub request_truncated: bool,
    /// The backend that answered the client.
    pub backend: &'a Arc<str>,
    pub answer: Answered<'a>,
    /// The mirror's answer, when the request was mirrored: its backend, and its answer
    /// (`None` when none came).
    pub shadow: Option<(&'a Arc<str>, Option<Answered<'a>>)>,
    /// Whether the gates read the answer, and the mirror's: a client over its share of a
    /// backend's window is served and captured, but neither monitored nor remembered for
    /// labels ([`Shares`](crate::telemetry::share::Shares)).
    pub judged: bool,
    pub shadow_judged: bool,
}

/// An answer as the tee captured it.
#[derive(Clone, Copy)]
pub struct Answered<'a> {
    pub status: u16,
    pub body: &'a Bytes,
    /// Cut at the tee's cap, or the client went away before its end.
    pub truncated: bool,
}

impl Observers {
    /// Draws whether a request is observed: `Some(draw)` when it is.
    #[inline]
    pub fn roll(&self) -> Option<u32> {
        if self.sample == 0 {
            return None;
        }
        let draw = rand::random_range(0..PPM);
        (draw < self.sample).then_some(draw)
    }

    /// Counts an exchange dropped on its way to the observers.
    pub fn drop_one(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Exchanges dropped on their way to the observers.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The route's monitor, when monitoring is on.
    pub fn monitor(&self) -> Option<MutexGuard<'_, Monitor>> {
        self.monitor.as_deref().map(Watch::lock)
    }

    /// The route's capture sender, when it captures.
    pub fn capture(&self) -> Option<&RouteCapture> {
        self.capture.as_ref()
    }

    /// The feedback store, when the route takes labels.
    pub fn feedback(&self) -> Option<&Arc<Feedback>> {
        self.feedback.as_ref()
    }

    /// The candidate's output drift against the stable over the monitor's window; `None`
    /// without a figure (no monitor, no reference yet, or too few values).
    pub fn output_drift(&self, stable: &str, candidate: &str, now: Instant) -> Option<f64> {
        let monitor = self.monitor()?;
        monitor.output_drift(stable, candidate, now)?.value()
    }

    /// Why the candidate's output drift has no figure yet, for the gate's detail: the
    /// values each figure has and needs, and what is short; `None` when there is a figure
    /// (or no monitor, or no reference).
    pub fn output_drift_wait(
        &self,
        stable: &str,
        candidate: &str,
        now: Instant,
    ) -> Option<DriftWait> {
        let d = self.monitor()?.output_drift(stable, candidate, now)?;
        if d.value().is_some() {
            return None;
        }
        [d.label, d.score].into_iter().flatten().find_map(|f| {
            f.reason.map(|reason| DriftWait {
                samples: f.samples,
                needed: f.needed,
                reason,
            })
        })
    }

    /// `backend`'s live accuracy from labels over `span`, and how many labels it rests on.
    pub fn accuracy(&self, backend: &str, now: Instant, span: Duration) -> feedback::Score {
        self.feedback.as_ref().map_or_else(Default::default, |f| {
            f.score(&self.route, backend, now, span)
        })
    }

    /// `backend`'s label verdicts since the label store began: read at a step's start and
    /// later, the difference is the step's ([`Feedback::score_total`]).
    pub fn accuracy_total(&self, backend: &str) -> feedback::Score {
        self.feedback
            .as_ref()
            .map_or_else(Default::default, |f| f.score_total(&self.route, backend))
    }

    /// The labelled requests within `span` that both `stable` and `candidate` answered
    /// (the candidate as the mirror), by which got the class right: for the paired
    /// `accuracy.max_drop` test in a shadow step ([`Feedback::pairs`]); empty without labels.
    pub fn pairs(&self, stable: &str, candidate: &str, now: Instant, span: Duration) -> Pairs {
        self.feedback.as_ref().map_or_else(Default::default, |f| {
            f.pairs(&self.route, stable, candidate, now, span)
        })
    }

    /// As [`pairs`](Observers::pairs), counted since the feedback store began: read it at a
    /// step's start and later and take the difference ([`Pairs::since`]) to judge a step
    /// longer than the analysis window on one growing sample ([`Feedback::pairs_total`]).
    pub fn pairs_total(&self, stable: &str, candidate: &str) -> Pairs {
        self.feedback.as_ref().map_or_else(Default::default, |f| {
            f.pairs_total(&self.route, stable, candidate)
        })
    }

    /// Tells the monitor which rollout the route is on; a new one (a new candidate, a
    /// retry) forgets the features found in requests (so the slots an earlier request
    /// took are free again) and empties the drift windows, so that the `output_drift`
    /// gate judges it on its own answers, not on those of the attempt before it. The
    /// reference stays: it is of the stable model, built once per stable (see
    /// [`Monitor::begin_rollout`]), so drift that happened before the rollout still shows
    /// as drift. A new `step` of the same rollout (the controller's step index, or past
    /// the last once promoted) empties the candidate's output counts, so that the gate
    /// reads its answers under the current step only (see [`Monitor::clear_outputs`]).
    pub fn rollout(&self, id: u64, step: u64) {
        if let Some(w) = &self.monitor {
            let new_rollout = w.rollout.swap(id, Ordering::Relaxed) != id;
            let new_step = w.step.swap(step, Ordering::Relaxed) != step;
            if new_rollout {
                w.lock().begin_rollout(&w.stable);
            } else if new_step {
                w.lock().clear_outputs(&w.stable);
            }
        }
    }

    /// Hands one exchange to each observer whose sample takes its draw; its bodies are
    /// parsed once, and only when an observer reads them here.
    pub fn observe(&self, seen: &Seen<'_>) {
        #[cfg(test)]
        if seen.request_id == PANIC_FOR_TESTS {
            panic!("a panic forced for a test");
        }
        let monitored = self.monitor.is_some() && seen.draw < self.monitor_sample && seen.judged;
        let remembered = self.feedback.is_some() && seen.draw < self.feedback_sample && seen.judged;
        let captured = self.capture.is_some() && seen.draw < self.capture_sample;
        let now = Instant::now();
        let live = exchange(&self.route, seen.backend, seen, seen.answer);
        let mut payload = (monitored || remembered).then(|| Payload::parse(&live, self.protocol()));
        let mut shadow_payload = None;
        if let (Some(p), Some(w)) = (&mut payload, self.monitor.as_deref().filter(|_| monitored)) {
            let mut monitor = w.lock();
            monitor.observe(&live, p, now);
            if let Some((backend, Some(answer))) = seen.shadow.filter(|_| seen.shadow_judged) {
                let copy = exchange(&self.route, backend, seen, answer);
                let request = p.request.take();
                let s = Payload::with_answer(request, p.protocol, &copy);
                monitor.observe(&copy, &s, now);
                monitor.pair((seen.backend, p), (backend, &s), now);
                shadow_payload = Some(s);
            }
        }
        if let (Some(p), Some(f)) = (&payload, self.feedback.as_ref().filter(|_| remembered)) {
            if let Some(served) = predicted(p) {
                // A mirror's answer is the same exchange: remembered with the served one, so
                // one label scores both and the id is not "seen twice".
                let parsed;
                let judged_shadow = seen.shadow.filter(|_| seen.shadow_judged);
                let mirror_payload = match (&shadow_payload, judged_shadow) {
                    (Some(s), _) => Some(s),
                    (None, Some((backend, Some(answer)))) => {
                        let copy = exchange(&self.route, backend, seen, answer);
                        parsed = Payload::with_answer(None, p.protocol, &copy);
                        Some(&parsed)
                    }
                    _ => None,
                };
                let mirror = judged_shadow
                    .zip(mirror_payload.and_then(predicted))
                    .map(|((backend, _), m)| (&**backend, m));
                let served = (&**seen.backend, served);
                f.remember_exchange(seen.request_id, &self.route, served, mirror, now);
            }
        }
        if captured {
            self.record(seen, payload, shadow_payload);
        }
    }

    /// The protocol the monitor reads exchanges under.
    fn protocol(&self) -> crate::wire::Protocol {
        self.monitor
            .as_ref()
            .map_or(crate::wire::Protocol::Auto, |w| w.settings.protocol)
    }

    /// Queues the capture record of an exchange, with whatever was parsed of it.
    fn record(&self, seen: &Seen<'_>, live: Option<Payload>, shadow: Option<Payload>) {
        let Some(capture) = &self.capture else {
            return;
        };
        let (mut request, response) = bodies(seen.answer.body, live);
        let shadow = seen.shadow.map(|(backend, answer)| {
            let (moved, response) = match answer {
                Some(a) => bodies(a.body, shadow),
                None => (None, capture::Body::default()),
            };
            // The request parsed once travels with whichever payload held it last.
            if let Some(r) = moved {
                request = Some(r);
            }
            capture::Shadow {
                backend: backend.clone(),
                status: answer.map(|a| a.status),
                response,
            }
        });
        let request = match request {
            Some(json) => capture::Body::parsed(seen.request.clone(), Arc::new(json)),
            None => capture::Body::bytes(seen.request.clone()),
        };
        capture.try_send(capture::Record {
            at: seen.at,
            request_id: seen.request_id.to_owned(),
            backend: seen.backend.clone(),
            status: seen.answer.status,
            latency: seen.latency,
            request,
            response,
            shadow,
        });
    }
}

/// A payload's parsed request (moved out) and its answer as a capture body.
fn bodies(answer: &Bytes, payload: Option<Payload>) -> (Option<Value>, capture::Body) {
    match payload {
        Some(p) => {
            let response = match p.answer {
                Answer::Json(v) => capture::Body::parsed(answer.clone(), Arc::new(v)),
                _ => capture::Body::bytes(answer.clone()),
            };
            (p.request, response)
        }
        None => (None, capture::Body::bytes(answer.clone())),
    }
}

/// The monitor's view of one answer to the request.
fn exchange<'a>(
    route: &'a str,
    backend: &'a str,
    seen: &'a Seen<'_>,
    answer: Answered<'a>,
) -> Exchange<'a> {
    Exchange {
        route,
        backend,
        path: seen.path,
        status: answer.status,
        request: seen.request,
        request_truncated: seen.request_truncated,
        answer: answer.body,
        answer_truncated: answer.truncated,
    }
}

/// What the answer predicted, for the feedback join: its first row's class, else its
/// first row's number. A label is for the request as a whole, so for its first row.
fn predicted(p: &Payload) -> Option<Predicted> {
    let first = p.predictions.first()?;
    match (&first.label, first.score) {
        (Some(label), _) => Some(Predicted::Class(label.clone())),
        (None, Some(v)) => Some(Predicted::Value(v)),
        (None, None) => None,
    }
}

impl Watch {
    fn lock(&self) -> MutexGuard<'_, Monitor> {
        self.monitor.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// === Hub ===

/// What outlives one config: capture logs by directory, the feedback store, and per route
/// its monitor and counters (see the module docs).
#[derive(Default)]
pub(crate) struct Hub {
    captures: HashMap<PathBuf, (CaptureConfig, Arc<Capture>)>,
    feedback: Option<(feedback::Settings, Arc<Feedback>)>,
    routes: HashMap<String, Kept>,
}

/// A route's observers' state kept across reloads.
#[derive(Clone)]
struct Kept {
    monitor: Option<Arc<Watch>>,
    capture_counts: Arc<capture::Counts>,
    dropped: Arc<AtomicU64>,
}

impl Hub {
    /// The hub of `config`, reusing from `previous` every log, store and monitor whose
    /// settings did not change.
    pub(crate) fn new(config: &Config, previous: Option<&Hub>) -> Hub {
        let routes = config.routes();
        let mut hub = Hub {
            captures: HashMap::new(),
            feedback: feedback_store(&routes, previous),
            routes: HashMap::new(),
        };
        for route in &routes {
            if let Some(c) = &route.capture {
                hub.capture_log(c, previous);
            }
            let before = previous.and_then(|p| p.routes.get(&route.name));
            let stable_url = config
                .backends
                .get(&route.rollout.stable)
                .map_or("", |b| b.url.as_str());
            let kept = Kept {
                monitor: watch(route, stable_url, before.and_then(|k| k.monitor.as_ref())),
                capture_counts: before.map_or_else(Default::default, |k| k.capture_counts.clone()),
                dropped: before.map_or_else(Default::default, |k| k.dropped.clone()),
            };
            hub.routes.insert(route.name.clone(), kept);
        }
        hub
    }

    /// Starts (or keeps from `previous`) the log writing into `c.path`.
    fn capture_log(&mut self, c: &CaptureConfig, previous: Option<&Hub>) {
        if self.captures.contains_key(&c.path) {
            return;
        }
        let reused = previous
            .and_then(|p| p.captures.get(&c.path))
            .filter(|(was, _)| same_log(was, c))
            .cloned();
        let log = match reused {
            Some(log) => Some(log),
            None => start_capture(c).map(|log| (c.clone(), Arc::new(log))),
        };
        if let Some(log) = log {
            self.captures.insert(c.path.clone(), log);
        }
    }

    /// The observers of one route of this hub's config; `None` when nothing observes it.
    pub(crate) fn observers(&self, route: &config::Route) -> Option<Arc<Observers>> {
        let kept = self.routes.get(&route.name)?;
        let name: Arc<str> = route.name.as_str().into();
        let capture = route.capture.as_ref().and_then(|c| {
            let (_, log) = self.captures.get(&c.path)?;
            Some(log.route(name.clone(), kept.capture_counts.clone()))
        });
        let feedback = route
            .feedback
            .as_ref()
            .and_then(|_| self.feedback.as_ref().map(|(_, f)| f.clone()));
        let monitor_sample = kept.monitor.as_ref().map_or(0, |w| ppm(w.settings.sample));
        // An observer that could not start (a capture log that failed) samples nothing.
        let capture_sample = match (&capture, &route.capture) {
            (Some(_), Some(c)) => ppm(c.sample),
            _ => 0,
        };
        let feedback_sample = match (&feedback, &route.feedback) {
            (Some(_), Some(f)) => ppm(f.sample),
            _ => 0,
        };
        let sample = monitor_sample.max(capture_sample).max(feedback_sample);
        (sample > 0).then(|| {
            Arc::new(Observers {
                route: name,
                sample,
                monitor_sample,
                capture_sample,
                feedback_sample,
                monitor: kept.monitor.clone(),
                capture,
                feedback,
                dropped: kept.dropped.clone(),
            })
        })
    }

    /// The feedback store, when any route takes labels.
    pub(crate) fn feedback(&self) -> Option<&Arc<Feedback>> {
        self.feedback.as_ref().map(|(_, f)| f)
    }
}

/// Whether a log can keep writing under changed settings: only when nothing changed but
/// the sample (which the log never reads).
fn same_log(was: &CaptureConfig, now: &CaptureConfig) -> bool {
    was.redact == now.redact && was.max_file == now.max_file && was.keep == now.keep
}

/// Starts a capture log; a log that cannot start is logged, and its route captures nothing.
fn start_capture(c: &CaptureConfig) -> Option<Capture> {
    let mut settings = capture::Settings::new(&c.path);
    settings.redact = c.redact.clone();
    settings.max_file = c.max_file.0;
    settings.keep = c.keep;
    match Capture::start(settings) {
        Ok(log) => Some(log),
        Err(e) => {
            tracing::error!(target: "switchyard::capture", path = %c.path.display(), "capture not started: {e}");
            None
        }
    }
}

/// The route's monitor under its resolved settings: `previous` when they and the stable
/// model (its backend's name and URL) are unchanged, a new one otherwise; `None` when
/// monitoring is off (`sample: 0`) or cannot start.
///
/// A reference built `from: stable` is of the stable model: a new monitor of the same
/// stable model, built the same way (other drift levels, another window or sample), takes
/// over the previous one's reference; a new stable model (another name or URL) builds its
/// own from its first requests.
fn watch(
    route: &config::Route,
    stable_url: &str,
    previous: Option<&Arc<Watch>>,
) -> Option<Arc<Watch>> {
    let settings = monitor_settings(route);
    if settings.sample <= 0.0 {
        return None;
    }
    let stable = route.rollout.stable.as_str();
    let same_stable = |w: &&Arc<Watch>| *w.stable == *stable && *w.stable_url == *stable_url;
    let previous = previous.filter(same_stable);
    if let Some(w) = previous.filter(|w| w.settings == settings) {
        return Some(w.clone());
    }
    match Monitor::new(settings.clone()) {
        Ok(mut monitor) => {
            let kept = previous
                .filter(|w| same_reference_basis(&w.settings, &settings))
                .and_then(|w| w.lock().reference());
            match kept {
                Some(reference) => monitor.set_reference(reference),
                None => monitor.start_reference(stable),
            }
            monitor.log_warnings(&route.name);
            Some(Arc::new(Watch {
                settings,
                stable: stable.into(),
                stable_url: stable_url.into(),
                monitor: Mutex::new(monitor),
                rollout: AtomicU64::new(0),
                step: AtomicU64::new(0),
            }))
        }
        Err(e) => {
            tracing::error!(target: "switchyard::monitor", route = %route.name, "monitor not started: {e}");
            None
        }
    }
}

/// Whether a reference built under `was` is what `now` would build from the same stable:
/// both build it (no file), from as many requests, reading the same features the same way.
fn same_reference_basis(was: &MonitorConfig, now: &MonitorConfig) -> bool {
    was.reference.file.is_none()
        && was.reference == now.reference
        && was.protocol == now.protocol
        && was.features == now.features
        && was.max_features == now.max_features
        && was.redact == now.redact
}

/// A route's `monitor` settings with its drift window fixed by the analysis (the
/// analysis window, slid in sixths, and the analysis' fewest samples) and the route's
/// `redact` pointers (the capture's and the comparison's), whose values it never shows.
pub(crate) fn monitor_settings(route: &config::Route) -> MonitorConfig {
    let mut s = route.monitor.clone();
    s.redact = route
        .capture
        .iter()
        .flat_map(|c| c.redact.iter())
        .chain(&route.shadow.compare.redact)
        .cloned()
        .collect();
    if let Some(a) = &route.rollout.analysis {
        s.window = a.window.0;
        s.bucket = Duration::from_secs(a.window.0.as_secs().div_ceil(6).max(1));
        s.min_samples = a.min_samples.max(1);
    }
    s
}

/// The one feedback store: kept from `previous` while its bounds hold (a new analysis
/// window only reshapes it). Its bounds are the largest any `feedback` block gives, its
/// window the longest analysis window.
fn feedback_store(
    routes: &[config::Route],
    previous: Option<&Hub>,
) -> Option<(feedback::Settings, Arc<Feedback>)> {
    let blocks: Vec<&FeedbackConfig> = routes.iter().filter_map(|r| r.feedback.as_ref()).collect();
    if blocks.is_empty() {
        return None;
    }
    let settings = feedback::Settings {
        retain: blocks.iter().map(|f| f.retain.0).max().unwrap_or_default(),
        max_pending: blocks.iter().map(|f| f.max_pending).max().unwrap_or(1),
        window: routes
            .iter()
            .filter_map(|r| r.rollout.analysis.as_ref().map(|a| a.window.0))
            .max()
            .unwrap_or(Duration::from_secs(60)),
        max_body: blocks
            .iter()
            .map(|f| f.max_body.as_usize())
            .max()
            .unwrap_or(feedback::DEFAULT_MAX_BODY),
    };
    match previous.and_then(|p| p.feedback.as_ref()) {
        // The same bounds: the predictions waiting for their labels are kept, and only
        // the windows reshaped when the analysis window changed.
        Some((was, store))
            if was.retain == settings.retain && was.max_pending == settings.max_pending =>
        {
            store.set_window(settings.window);
            store.set_max_body(settings.max_body);
            Some((settings, store.clone()))
        }
        _ => {
            let store = Arc::new(Feedback::new(settings.clone()));
            Some((settings, store))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(window: &str, retain: &str) -> Config {
        let yaml = format!(
            "backends: {{ blue: {{ url: 'http://127.0.0.1:1' }} }}\n\
             rollout: {{ stable: blue, analysis: {{ interval: 1s, window: {window} }} }}\n\
             feedback: {{ retain: {retain} }}\n"
        );
        config::parse(&yaml).unwrap()
    }

    #[test]
    fn a_new_analysis_window_keeps_the_predictions_waiting_for_their_labels() {
        let hub = Hub::new(&config("1m", "1h"), None);
        let store = hub.feedback().unwrap().clone();
        let now = Instant::now();
        store.remember("r-1", "default", "blue", Predicted::Class("a".into()), now);
        assert_eq!(store.counts().pending, 1);

        let wider = Hub::new(&config("5m", "1h"), Some(&hub));
        let kept = wider.feedback().unwrap();
        assert!(Arc::ptr_eq(kept, &store), "the same store, reshaped");
        assert_eq!(kept.counts().pending, 1);

        let shorter = Hub::new(&config("5m", "10m"), Some(&wider));
        assert!(
            !Arc::ptr_eq(shorter.feedback().unwrap(), &store),
            "new bounds: a new store"
        );
    }

    /// Hands `request` (a V2 body) to the route's observers as blue's exchange.
    fn observe_request(o: &Observers, request: &str) {
        let request = Bytes::from(request.to_owned());
        let backend: Arc<str> = "blue".into();
        let body = Bytes::from_static(b"{}");
        o.observe(&Seen {
            draw: 0,
            request_id: "r",
            path: "/v2/models/m/infer",
            at: SystemTime::now(),
            latency: Duration::from_millis(1),
            request: &request,
            request_truncated: false,
            backend: &backend,
            answer: Answered {
                status: 200,
                body: &body,
                truncated: false,
            },
            shadow: None,
            judged: true,
            shadow_judged: true,
        });
    }

    #[test]
    fn mirrored_answers_are_paired_for_the_paired_accuracy_test() {
        let yaml = "backends: { blue: { url: 'http://127.0.0.1:1' }, green: { url: 'http://127.0.0.1:2' } }\n\
                    rollout: { stable: blue, candidate: green, steps: [{ weight: 0, mirror: 100 }] }\n\
                    feedback: {}\n";
        let config = config::parse(yaml).unwrap();
        let hub = Hub::new(&config, None);
        let o = hub.observers(&config.routes()[0]).unwrap();
        let (blue, green): (Arc<str>, Arc<str>) = ("blue".into(), "green".into());
        let request = Bytes::from_static(br#"{"instances": [[1, 2]]}"#);
        let (a, b) = (
            Bytes::from_static(br#"{"predictions": ["a"]}"#),
            Bytes::from_static(br#"{"predictions": ["b"]}"#),
        );
        let answered = |body| Answered {
            status: 200,
            body,
            truncated: false,
        };
        let ids: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
        for (i, id) in ids.iter().enumerate() {
            // The stable right every time, the candidate's copy wrong on 3 of 10.
            let copy = if i < 3 { &b } else { &a };
            o.observe(&Seen {
                draw: 0,
                request_id: id,
                path: "/v1/models/m:predict",
                at: SystemTime::now(),
                latency: Duration::from_millis(1),
                request: &request,
                request_truncated: false,
                backend: &blue,
                answer: answered(&a),
                shadow: Some((&green, Some(answered(copy)))),
                judged: true,
                shadow_judged: true,
            });
        }
        let body: Vec<_> = ids
            .iter()
            .map(|id| serde_json::json!({"request_id": id, "label": "a"}))
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({ "feedback": body })).unwrap();
        let now = Instant::now();
        let joined = o.feedback().unwrap().join_body(&body, now).unwrap();
        assert_eq!(joined.matched, 10);
        let pairs = o.pairs("blue", "green", now, Duration::from_secs(60));
        assert_eq!(
            (pairs.pairs, pairs.stable_only, pairs.candidate_only),
            (10, 3, 0)
        );
        assert_eq!(o.accuracy("green", now, Duration::from_secs(60)).correct, 7);
        assert_eq!(o.pairs_total("blue", "green"), pairs);
    }

    /// A V2 request of one row of `cols` columns of tensor `name`.
    fn wide(name: &str, cols: usize) -> String {
        let data = vec!["1"; cols].join(",");
        format!(
            r#"{{"inputs":[{{"name":"{name}","shape":[1,{cols}],"datatype":"INT32","data":[{data}]}}]}}"#
        )
    }

    fn feature_names(o: &Observers) -> Vec<String> {
        let report = o.monitor().unwrap().report(Instant::now(), None);
        report.backends[0]
            .features
            .iter()
            .map(|f| f.name.clone())
            .collect()
    }

    /// Hands a request to the route's observers as blue's answer, mirrored to green.
    fn observe_mirrored(o: &Observers, request: &str, answer: &str) {
        let request = Bytes::from(request.to_owned());
        let (blue, green): (Arc<str>, Arc<str>) = ("blue".into(), "green".into());
        let body = Bytes::from(answer.to_owned());
        let answered = Answered {
            status: 200,
            body: &body,
            truncated: false,
        };
        o.observe(&Seen {
            draw: 0,
            request_id: "r",
            path: "/v2/models/m/infer",
            at: SystemTime::now(),
            latency: Duration::from_millis(1),
            request: &request,
            request_truncated: false,
            backend: &blue,
            answer: answered,
            shadow: Some((&green, Some(answered))),
            judged: true,
            shadow_judged: true,
        });
    }

    #[test]
    fn a_new_step_empties_what_the_output_drift_gate_reads() {
        let yaml = "backends: { blue: { url: 'http://127.0.0.1:1' }, green: { url: 'http://127.0.0.1:2' } }\n\
                    rollout: { stable: blue, candidate: green, steps: [{ weight: 0, mirror: 100 }, { weight: 100 }] }\n\
                    monitor: { sample: 100, protocol: v2, reference: { requests: 10 } }\n";
        let config = config::parse(yaml).unwrap();
        let hub = Hub::new(&config, None);
        let o = hub.observers(&config.routes()[0]).unwrap();
        let answer =
            r#"{"outputs":[{"name":"label","shape":[1,1],"datatype":"INT64","data":[1]}]}"#;
        o.rollout(1, 0);
        for _ in 0..(10 + crate::monitor::drift::MIN_COUNT) {
            observe_mirrored(&o, &wide("x", 1), answer);
        }
        let now = Instant::now();
        assert_eq!(
            o.output_drift("blue", "green", now),
            Some(0.0),
            "the shadow step's answers"
        );

        o.rollout(1, 0);
        assert_eq!(
            o.output_drift("blue", "green", now),
            Some(0.0),
            "the same step"
        );

        o.rollout(1, 1);
        assert_eq!(
            o.output_drift("blue", "green", now),
            None,
            "the next step starts empty"
        );
        let report = o.monitor().unwrap().report(now, None);
        let x = &report.backends[0].features[0];
        assert_eq!(
            x.drift.and_then(|d| d.value),
            Some(0.0),
            "feature drift stays: {x:?}"
        );
    }

    /// A V2 request of one row, one column of tensor `x`.
    fn one_value(x: f64) -> String {
        format!(r#"{{"inputs":[{{"name":"x","shape":[1,1],"datatype":"FP64","data":[{x}]}}]}}"#)
    }

    /// The route's monitor config, its stable `blue` at `url`, with `extra` monitor keys.
    fn stable_at(url: &str, extra: &str) -> Config {
        let yaml = format!(
            "backends: {{ blue: {{ url: '{url}' }}, green: {{ url: 'http://127.0.0.1:2' }} }}\n\
             rollout: {{ stable: blue, candidate: green, steps: [{{ weight: 0 }}] }}\n\
             monitor: {{ sample: 100, protocol: v2, reference: {{ requests: 10 }}{extra} }}\n"
        );
        config::parse(&yaml).unwrap()
    }

    fn reference(o: &Observers) -> Option<crate::monitor::Reference> {
        o.monitor().unwrap().reference()
    }

    #[test]
    fn the_reference_is_kept_per_stable_model_not_per_rollout() {
        let config = stable_at("http://127.0.0.1:1", "");
        let hub = Hub::new(&config, None);
        let o = hub.observers(&config.routes()[0]).unwrap();
        o.rollout(1, 0);
        for i in 0..10 {
            observe_request(&o, &one_value(f64::from(i)));
        }
        let built = reference(&o).expect("built from the stable's first 10 requests");

        // Drift, then a retry (a new rollout id), then a new candidate: the same reference.
        for _ in 0..10 {
            observe_request(&o, &one_value(100.0));
        }
        o.rollout(2, 0);
        assert_eq!(reference(&o), Some(built.clone()), "a retry keeps it");
        for _ in 0..10 {
            observe_request(&o, &one_value(100.0));
        }
        o.rollout(3, 0);
        assert_eq!(
            reference(&o),
            Some(built.clone()),
            "a new candidate keeps it"
        );

        // Other drift levels: a new monitor of the same stable model takes it over.
        let levels = stable_at("http://127.0.0.1:1", ", drift: { warn: 0.2, alert: 0.4 }");
        let hub = Hub::new(&levels, Some(&hub));
        let o = hub.observers(&levels.routes()[0]).unwrap();
        o.rollout(3, 0);
        assert_eq!(reference(&o), Some(built.clone()), "a reload keeps it");

        // The stable's URL changed: another model, whose reference is built anew.
        let moved = stable_at("http://127.0.0.1:3", ", drift: { warn: 0.2, alert: 0.4 }");
        let hub = Hub::new(&moved, Some(&hub));
        let o = hub.observers(&moved.routes()[0]).unwrap();
        o.rollout(3, 0);
        assert_eq!(reference(&o), None, "a new stable model builds its own");
        for _ in 0..10 {
            observe_request(&o, &one_value(100.0));
        }
        assert_ne!(reference(&o), Some(built));
    }

    #[test]
    fn a_reference_being_built_when_a_rollout_starts_starts_over() {
        let config = stable_at("http://127.0.0.1:1", "");
        let hub = Hub::new(&config, None);
        let o = hub.observers(&config.routes()[0]).unwrap();
        o.rollout(1, 0);
        for i in 0..5 {
            observe_request(&o, &one_value(f64::from(i)));
        }
        o.rollout(2, 0);
        let report = o.monitor().unwrap().report(Instant::now(), None);
        let building = report.reference.building.expect("still building");
        assert_eq!((building.requests, building.target), (0, 10));
    }

    #[test]
    fn a_new_rollout_frees_the_feature_slots_an_earlier_request_took() {
        let yaml = "backends: { blue: { url: 'http://127.0.0.1:1' } }\n\
                    rollout: { stable: blue }\n\
                    monitor: { sample: 100, protocol: v2, max_features: 16 }\n";
        let config = config::parse(yaml).unwrap();
        let hub = Hub::new(&config, None);
        let o = hub.observers(&config.routes()[0]).unwrap();
        o.rollout(1, 0);
        observe_request(&o, &wide("wide", 300));
        observe_request(&o, &wide("x", 2));
        assert!(!feature_names(&o).iter().any(|n| n.starts_with("x[")));

        o.rollout(1, 0);
        observe_request(&o, &wide("x", 2));
        assert!(
            !feature_names(&o).iter().any(|n| n.starts_with("x[")),
            "the same rollout"
        );

        o.rollout(2, 0);
        observe_request(&o, &wide("x", 2));
        assert_eq!(feature_names(&o), ["x[0]", "x[1]"]);
    }
}

/// Why an output drift figure is not given yet: the values it has (the smaller side), the
/// values it needs a side, and what is short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriftWait {
    pub samples: u64,
    pub needed: u64,
    pub reason: &'static str,
}
