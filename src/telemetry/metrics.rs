//! Every Prometheus metric switchyard exports, by name, in one place.
//!
//! The recorder is process-global (the `metrics` crate's model); [`install`] sets it up
//! once and returns the handle `/metrics` renders from. Hot-path metrics are resolved to
//! handles once per backend ([`BackendMetrics`]) so recording a request never builds labels.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Gauge, Histogram, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const REQUESTS_TOTAL: &str = "switchyard_requests_total";
const REQUEST_DURATION_SECONDS: &str = "switchyard_request_duration_seconds";
const UPSTREAM_ERRORS_TOTAL: &str = "switchyard_upstream_errors_total";
const FALLBACKS_TOTAL: &str = "switchyard_fallbacks_total";
const SAMPLES_LEFT_OUT_TOTAL: &str = "switchyard_samples_left_out_total";
const ROLLOUT_WEIGHT: &str = "switchyard_rollout_weight";
const ROLLOUT_MIRROR: &str = "switchyard_rollout_mirror";
const ROLLOUT_STEP: &str = "switchyard_rollout_step";
const ROLLOUT_PHASE: &str = "switchyard_rollout_phase";
const SHADOW_REQUESTS_TOTAL: &str = "switchyard_shadow_requests_total";
const SHADOW_COMPARISONS_TOTAL: &str = "switchyard_shadow_comparisons_total";
const SHADOW_OUTPUT_COMPARISONS_TOTAL: &str = "switchyard_shadow_output_comparisons_total";
const SHADOW_CALIBRATION_TOTAL: &str = "switchyard_shadow_calibration_total";
const ROLLBACKS_TOTAL: &str = "switchyard_rollbacks_total";
const CONFIG_RELOADS_TOTAL: &str = "switchyard_config_reloads_total";
const CONFIG_GENERATION: &str = "switchyard_config_generation";
const ANALYSIS_GATE_VALUE: &str = "switchyard_analysis_gate_value";
const ANALYSIS_GATE_THRESHOLD: &str = "switchyard_analysis_gate_threshold";
const ANALYSIS_EVALUATIONS_TOTAL: &str = "switchyard_analysis_evaluations_total";
const STATE_WRITE_ERRORS_TOTAL: &str = "switchyard_state_write_errors_total";
const FLEET_STORE_UP: &str = "switchyard_fleet_store_up";
const FLEET_STORE_ERRORS_TOTAL: &str = "switchyard_fleet_store_errors_total";
const CONNECTIONS_OPEN: &str = "switchyard_connections_open";
const CONNECTIONS_TOTAL: &str = "switchyard_connections_total";
const CONNECTIONS_CUT_OFF_TOTAL: &str = "switchyard_connections_cut_off_total";
const CONNECTIONS_IDLE: &str = "switchyard_connections_idle";
const CONNECTIONS_REFUSED_TOTAL: &str = "switchyard_connections_refused_total";
const CONNECTIONS_SEND_TIMEOUT_TOTAL: &str = "switchyard_connections_send_timeout_total";
const CONNECTIONS_EVICTED_TOTAL: &str = "switchyard_connections_evicted_total";
const CLIENT_ERRORS_TOTAL: &str = "switchyard_client_errors_total";
const FEATURE_DRIFT: &str = "switchyard_feature_drift";
const FEATURE_MISSING_TOTAL: &str = "switchyard_feature_missing_total";
const OUTPUT_DRIFT: &str = "switchyard_output_drift";
const ACCURACY: &str = "switchyard_accuracy";
const MEAN_ABSOLUTE_ERROR: &str = "switchyard_mean_absolute_error";
const FEEDBACK_TOTAL: &str = "switchyard_feedback_total";
const CAPTURE_RECORDS_TOTAL: &str = "switchyard_capture_records_total";
const MONITOR_SAMPLES_TOTAL: &str = "switchyard_monitor_samples_total";
const OBSERVER_PANICS_TOTAL: &str = "switchyard_observer_panics_total";

/// Upper bounds (seconds) of the request-duration histogram buckets.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often buffered histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the process-wide Prometheus recorder (once) and returns its handle.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(REQUEST_DURATION_SECONDS.to_string()),
                    DURATION_BUCKETS,
                )
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding application):
            // then ours still renders what is recorded through `handle`'s registry only.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            // Histogram samples are buffered until drained into their buckets; without
            // upkeep they pile up (about 24 bytes a request) whenever nobody scrapes
            // /metrics. The exporter's own `install` runs the same loop on a thread.
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                });
            if let Err(e) = spawned {
                tracing::warn!(target: "switchyard::metrics", "cannot start the metrics upkeep thread: {e}");
            }
            handle
        })
        .clone()
}

/// Gives every metric its help text (and unit), once.
fn describe() {
    describe_requests();
    describe_rollout();
    describe_shadow();
    describe_connections();
    describe_monitoring();
}

/// Help texts of requests, upstream errors, fallbacks and client faults.
fn describe_requests() {
    describe_counter!(
        REQUESTS_TOTAL,
        "Proxied requests by the backend that answered and the status code."
    );
    describe_histogram!(
        REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time to the upstream response head, by backend."
    );
    describe_counter!(
        UPSTREAM_ERRORS_TOTAL,
        "Upstream failures by backend and kind (connect, timeout, protocol, status, truncated, saturated)."
    );
    describe_counter!(
        FALLBACKS_TOTAL,
        "Failed candidate requests retried on the stable backend."
    );
    describe_counter!(
        SAMPLES_LEFT_OUT_TOTAL,
        "Samples served but left out of what the gates read: their client was over analysis.max_client_share of the backend's window."
    );
    describe_counter!(
        CLIENT_ERRORS_TOTAL,
        "Requests refused or cut short by the client's fault, by reason; never counted against a backend."
    );
}

/// Help texts of the rollout, its analysis and config reloads.
fn describe_rollout() {
    describe_gauge!(
        ROLLOUT_WEIGHT,
        "Percent of user traffic served by the candidate."
    );
    describe_gauge!(
        ROLLOUT_MIRROR,
        "Percent of stable-served requests mirrored to the candidate."
    );
    describe_gauge!(ROLLOUT_STEP, "Current rollout step, from 0.");
    describe_gauge!(
        ROLLOUT_PHASE,
        "1 for the current rollout phase, 0 for the others."
    );
    describe_counter!(
        ROLLBACKS_TOTAL,
        "Rollbacks by trigger (auto, fast, manual)."
    );
    describe_counter!(
        CONFIG_RELOADS_TOTAL,
        "Config reloads by result (applied, rejected)."
    );
    describe_gauge!(CONFIG_GENERATION, "Generation of the config in force.");
    describe_gauge!(
        ANALYSIS_GATE_VALUE,
        "Last figure measured by each analysis gate."
    );
    describe_gauge!(ANALYSIS_GATE_THRESHOLD, "Threshold of each analysis gate.");
    describe_counter!(
        ANALYSIS_EVALUATIONS_TOTAL,
        "Analysis evaluations by verdict."
    );
    describe_counter!(
        STATE_WRITE_ERRORS_TOTAL,
        "Failed writes of the rollout state file (state.path); /api/v1/status says why in state.last_error."
    );
    describe_gauge!(
        FLEET_STORE_UP,
        "1 while the last call to the shared state store (state.store: etcd) succeeded, 0 once one failed."
    );
    describe_counter!(
        FLEET_STORE_ERRORS_TOTAL,
        "Failed calls to the shared state store, by operation (load, save, watch, put_aside)."
    );
}

/// Help texts of mirrors and comparisons.
fn describe_shadow() {
    describe_counter!(
        SHADOW_REQUESTS_TOTAL,
        "Mirrored requests by outcome (compared, dropped, error)."
    );
    describe_counter!(
        SHADOW_COMPARISONS_TOTAL,
        "Shadow comparisons by result (agree, disagree, incomparable)."
    );
    describe_counter!(
        SHADOW_OUTPUT_COMPARISONS_TOTAL,
        "Compared output tensors by output name (the first 32 names, then other) and result (agree, disagree)."
    );
    describe_counter!(
        SHADOW_CALIBRATION_TOTAL,
        "Noise-floor comparisons of the stable against itself, by result (agree, disagree, incomparable, dropped)."
    );
}

/// Help texts of client connections.
fn describe_monitoring() {
    describe_gauge!(
        FEATURE_DRIFT,
        "Drift of an input feature against the reference over the analysis window (PSI for numbers, Jensen-Shannon distance for categories)."
    );
    describe_counter!(
        FEATURE_MISSING_TOTAL,
        "Missing values (null, NaN, absent) of an input feature in sampled requests."
    );
    describe_gauge!(
        OUTPUT_DRIFT,
        "The candidate's outputs against the stable's over the analysis window (output: label or score)."
    );
    describe_gauge!(
        ACCURACY,
        "Share of a backend's labelled predictions that were right, over the analysis window."
    );
    describe_gauge!(
        MEAN_ABSOLUTE_ERROR,
        "Mean absolute error of a backend's numeric predictions against their labels, over the analysis window."
    );
    describe_counter!(
        FEEDBACK_TOTAL,
        "Labels posted to /api/v1/feedback, by result (matched, unmatched, ambiguous)."
    );
    describe_counter!(
        CAPTURE_RECORDS_TOTAL,
        "Prediction log records, by result (written, dropped, error)."
    );
    describe_counter!(
        MONITOR_SAMPLES_TOTAL,
        "Sampled exchanges handed to the monitor, by result (parsed, unparseable, dropped)."
    );
    describe_counter!(
        OBSERVER_PANICS_TOTAL,
        "Panics caught while observing an exchange (the observers went on with the next one)."
    );
}

fn describe_connections() {
    describe_gauge!(
        CONNECTIONS_OPEN,
        "Client connections open, by listener (data, admin)."
    );
    describe_counter!(
        CONNECTIONS_TOTAL,
        "Client connections accepted, by listener (data, admin)."
    );
    describe_counter!(
        CONNECTIONS_CUT_OFF_TOTAL,
        "Client connections closed for not sending a request head within limits.header_timeout (silent or slow), by listener."
    );
    describe_gauge!(
        CONNECTIONS_IDLE,
        "HTTP/1 client connections idle between requests, holding only their socket (hyper's buffers released), by listener."
    );
    describe_counter!(
        CONNECTIONS_REFUSED_TOTAL,
        "Client connections closed as soon as they were accepted because limits.max_connections were open (admin: 256, all serving a request), by listener."
    );
    describe_counter!(
        CONNECTIONS_SEND_TIMEOUT_TOTAL,
        "Client connections closed because the client took no answer bytes for limits.send_timeout, by listener."
    );
    describe_counter!(
        CONNECTIONS_EVICTED_TOTAL,
        "Idle admin connections closed to admit a new one while 256 were open (the longest idle first), by listener."
    );
}

/// Metric handles of one listener's client connections, resolved once so accepting and
/// closing a connection only increments.
#[derive(Debug)]
pub struct ConnectionMetrics {
    open: Gauge,
    total: Counter,
    cut_off: Counter,
    idle: Gauge,
    refused: Counter,
    send_timeout: Counter,
    evicted: Counter,
}

impl ConnectionMetrics {
    /// The handles for `listener` (`data`, `admin`).
    pub fn new(listener: &'static str) -> Self {
        // Handles bind to the recorder present when they are made: make sure it is ours.
        install();
        ConnectionMetrics {
            open: gauge!(CONNECTIONS_OPEN, "listener" => listener),
            total: counter!(CONNECTIONS_TOTAL, "listener" => listener),
            cut_off: counter!(CONNECTIONS_CUT_OFF_TOTAL, "listener" => listener),
            idle: gauge!(CONNECTIONS_IDLE, "listener" => listener),
            refused: counter!(CONNECTIONS_REFUSED_TOTAL, "listener" => listener),
            send_timeout: counter!(CONNECTIONS_SEND_TIMEOUT_TOTAL, "listener" => listener),
            evicted: counter!(CONNECTIONS_EVICTED_TOTAL, "listener" => listener),
        }
    }

    /// Counts a connection accepted.
    pub fn opened(&self) {
        self.total.increment(1);
        self.open.increment(1.0);
    }

    /// Counts a connection parked idle (`true`) or woken by its next request (`false`).
    pub fn parked(&self, parked: bool) {
        self.idle.increment(if parked { 1.0 } else { -1.0 });
    }

    /// Counts a connection closed; `cut_off` when it was closed for not sending a
    /// request head in time.
    pub fn closed(&self, cut_off: bool) {
        self.open.decrement(1.0);
        if cut_off {
            self.cut_off.increment(1);
        }
    }

    /// Counts a connection closed as soon as it was accepted: too many were open. It is
    /// not counted as accepted, open or closed.
    pub fn refused(&self) {
        self.refused.increment(1);
    }

    /// Counts a connection (already counted closed) that was cut off because its client
    /// took no answer bytes for `limits.send_timeout`.
    pub fn send_timed_out(&self) {
        self.send_timeout.increment(1);
    }

    /// Counts an idle connection told to close so that a new one could be admitted to a
    /// full listener (admin only).
    pub fn evicted(&self) {
        self.evicted.increment(1);
    }
}

/// Why an upstream call failed, as the `kind` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Connect,
    Timeout,
    Protocol,
    /// The upstream answered 5xx.
    Status,
    /// The upstream cut its answer off mid-body.
    Truncated,
    /// Every connection the backend's `max_connections` allows stayed busy for its whole
    /// timeout: the request was never sent.
    Saturated,
}

impl ErrorKind {
    /// Every kind, in the order of their discriminants.
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::Protocol,
        ErrorKind::Status,
        ErrorKind::Truncated,
        ErrorKind::Saturated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Status => "status",
            ErrorKind::Truncated => "truncated",
            ErrorKind::Saturated => "saturated",
        }
    }
}

/// Metric handles of one backend as it serves one route, resolved once so the request
/// path only increments. Every series carries the `route` and `backend` labels.
#[derive(Debug)]
pub struct BackendMetrics {
    route: Arc<str>,
    name: Arc<str>,
    duration: Histogram,
    /// `requests_total{code}` by status code 100..=599, created on first use.
    codes: Box<[OnceLock<Counter>]>,
    errors: [Counter; ErrorKind::ALL.len()],
    fallbacks: Counter,
    left_out: Counter,
}

impl BackendMetrics {
    pub fn new(route: &str, name: &str) -> Self {
        // Handles bind to the recorder present when they are made: make sure it is ours,
        // whoever builds the first backend.
        install();
        let (route, name): (Arc<str>, Arc<str>) = (route.into(), name.into());
        let labels = |kind: ErrorKind| counter!(UPSTREAM_ERRORS_TOTAL, "backend" => name.clone(), "kind" => kind.as_str(), "route" => route.clone());
        Self {
            duration: histogram!(REQUEST_DURATION_SECONDS, "backend" => name.clone(), "route" => route.clone()),
            codes: (100..600).map(|_| OnceLock::new()).collect(),
            errors: ErrorKind::ALL.map(labels),
            fallbacks: counter!(FALLBACKS_TOTAL, "backend" => name.clone(), "route" => route.clone()),
            left_out: counter!(SAMPLES_LEFT_OUT_TOTAL, "backend" => name.clone(), "route" => route.clone()),
            route,
            name,
        }
    }

    /// Counts one response sent to a client with `code`, produced by this backend.
    pub fn response(&self, code: u16) {
        let i = usize::from(code.clamp(100, 599) - 100);
        self.codes[i]
            .get_or_init(|| counter!(REQUESTS_TOTAL, "backend" => self.name.clone(), "code" => code.to_string(), "route" => self.route.clone()))
            .increment(1);
    }

    /// Records the time to the upstream response head.
    pub fn latency(&self, d: std::time::Duration) {
        self.duration.record(d.as_secs_f64());
    }

    pub fn error(&self, kind: ErrorKind) {
        self.errors[kind as usize].increment(1);
    }

    /// Counts one failed request of this backend (the candidate) retried on the stable.
    pub fn fallback(&self) {
        self.fallbacks.increment(1);
    }

    /// Counts one sample left out of the gates' figures: its client was over its share.
    pub fn left_out(&self) {
        self.left_out.increment(1);
    }
}

/// Counts one mirrored request by outcome: `compared`, `dropped`, `error` (the shadow
/// failed) or `abandoned` (the live answer never completed).
pub fn shadow_request(route: &Arc<str>, outcome: &'static str) {
    counter!(SHADOW_REQUESTS_TOTAL, "outcome" => outcome, "route" => route.clone()).increment(1);
}

/// Counts one shadow comparison by result.
pub fn shadow_comparison(route: &Arc<str>, result: &'static str) {
    counter!(SHADOW_COMPARISONS_TOTAL, "result" => result, "route" => route.clone()).increment(1);
}

/// Counts one output tensor of a compared pair (v2 outputs, v1 predictions) by `agree`/`disagree`.
pub fn shadow_output(route: &Arc<str>, output: &str, agree: bool) {
    let result = if agree { "agree" } else { "disagree" };
    counter!(SHADOW_OUTPUT_COMPARISONS_TOTAL, "output" => output_label(output), "result" => result, "route" => route.clone())
        .increment(1);
}

/// How many distinct output names get their own metric label; later ones are `other`,
/// so a model with odd output names cannot grow the metrics without bound.
const OUTPUT_LABELS: usize = 32;

/// The `output` label for output `name`: itself while fewer than [`OUTPUT_LABELS`] names
/// have been seen, else `other`.
fn output_label(name: &str) -> Arc<str> {
    static SEEN: Mutex<Vec<Arc<str>>> = Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
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

/// Counts one noise-floor comparison (the stable against itself) by result, or `dropped`.
pub fn shadow_calibration(route: &Arc<str>, result: &'static str) {
    counter!(SHADOW_CALIBRATION_TOTAL, "result" => result, "route" => route.clone()).increment(1);
}

/// Why a request was the client's fault, as the `reason` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// The body is over `limits.max_body` (413).
    BodyTooLarge,
    /// The body broke off or was malformed (400).
    BodyAborted,
    /// The body was not fully received within `limits.body_timeout` (408).
    BodyTimeout,
    /// A method switchyard never forwards (`CONNECT`, 405).
    Method,
    /// More than one `Host` (400).
    DuplicateHost,
    /// No route takes the request (404).
    NoRoute,
}

impl ClientFault {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientFault::BodyTooLarge => "body_too_large",
            ClientFault::BodyAborted => "body_aborted",
            ClientFault::BodyTimeout => "body_timeout",
            ClientFault::Method => "method",
            ClientFault::DuplicateHost => "duplicate_host",
            ClientFault::NoRoute => "no_route",
        }
    }
}

/// Counts one request that failed by the client's fault.
pub fn client_error(fault: ClientFault) {
    counter!(CLIENT_ERRORS_TOTAL, "reason" => fault.as_str()).increment(1);
}

pub fn rollback(route: &str, trigger: &'static str) {
    counter!(ROLLBACKS_TOTAL, "trigger" => trigger, "route" => route.to_string()).increment(1);
}

pub fn config_reload(result: &'static str) {
    counter!(CONFIG_RELOADS_TOTAL, "result" => result).increment(1);
}

/// What the rollout gauges of one route show.
pub struct RolloutGauges<'a> {
    pub route: &'a str,
    pub phase: &'a str,
    pub all_phases: &'a [&'static str],
    pub step: usize,
    pub weight: f64,
    pub mirror: f64,
}

/// Publishes the rollout gauges of one route.
pub fn rollout(g: RolloutGauges<'_>) {
    let route = g.route.to_string();
    gauge!(ROLLOUT_WEIGHT, "route" => route.clone()).set(g.weight);
    gauge!(ROLLOUT_MIRROR, "route" => route.clone()).set(g.mirror);
    gauge!(ROLLOUT_STEP, "route" => route.clone()).set(g.step as f64);
    for p in g.all_phases {
        gauge!(ROLLOUT_PHASE, "phase" => *p, "route" => route.clone()).set(if *p == g.phase {
            1.0
        } else {
            0.0
        });
    }
}

/// Publishes the generation of the config in force.
pub fn generation(generation: u64) {
    gauge!(CONFIG_GENERATION).set(generation as f64);
}

/// Publishes one gate's last figure and threshold, for one route.
pub fn gate(route: &str, gate: &'static str, value: Option<f64>, threshold: f64) {
    if let Some(v) = value {
        gauge!(ANALYSIS_GATE_VALUE, "gate" => gate, "route" => route.to_string()).set(v);
    }
    gauge!(ANALYSIS_GATE_THRESHOLD, "gate" => gate, "route" => route.to_string()).set(threshold);
}

pub fn evaluation(route: &str, verdict: &'static str) {
    counter!(ANALYSIS_EVALUATIONS_TOTAL, "verdict" => verdict, "route" => route.to_string())
        .increment(1);
}

// === monitoring: read from the observers when /metrics is rendered ===

/// One input feature's figures on one backend of a route.
pub fn feature(route: &str, backend: &str, feature: &str, drift: Option<f64>, missing: u64) {
    let labels = [
        ("backend", backend.to_string()),
        ("feature", feature.to_string()),
        ("route", route.to_string()),
    ];
    if let Some(d) = drift {
        gauge!(FEATURE_DRIFT, &labels).set(d);
    }
    counter!(FEATURE_MISSING_TOTAL, &labels).absolute(missing);
}

/// A route's output drift, candidate against stable (`output`: `label` or `score`).
pub fn output_drift(route: &str, output: &'static str, value: f64) {
    gauge!(OUTPUT_DRIFT, "output" => output, "route" => route.to_string()).set(value);
}

/// A backend's live accuracy (classes) or mean absolute error (numbers) from labels.
pub fn accuracy(route: &str, backend: &str, accuracy: Option<f64>, mae: Option<f64>) {
    let labels = [
        ("backend", backend.to_string()),
        ("route", route.to_string()),
    ];
    if let Some(a) = accuracy {
        gauge!(ACCURACY, &labels).set(a);
    }
    if let Some(m) = mae {
        gauge!(MEAN_ABSOLUTE_ERROR, &labels).set(m);
    }
}

/// Labels joined to a route's predictions since the start.
pub fn feedback_matched(route: &str, matched: u64) {
    counter!(FEEDBACK_TOTAL, "result" => "matched", "route" => route.to_string()).absolute(matched);
}

/// Labels for a route's predictions whose request id was seen on more than one exchange
/// (never scored), since the start.
pub fn feedback_ambiguous(route: &str, ambiguous: u64) {
    counter!(FEEDBACK_TOTAL, "result" => "ambiguous", "route" => route.to_string())
        .absolute(ambiguous);
}

/// Counts labels that matched no prediction, for the route a post addressed (`""` when
/// it addressed none: such a label's route is unknown).
pub fn feedback_unmatched(route: &str, n: u64) {
    counter!(FEEDBACK_TOTAL, "result" => "unmatched", "route" => route.to_string()).increment(n);
}

/// A route's prediction log records since the start.
pub fn capture_records(route: &str, written: u64, dropped: u64, error: u64) {
    for (result, n) in [("written", written), ("dropped", dropped), ("error", error)] {
        counter!(CAPTURE_RECORDS_TOTAL, "result" => result, "route" => route.to_string())
            .absolute(n);
    }
}

/// A route's sampled exchanges since the start, by what the monitor made of them.
pub fn monitor_samples(route: &str, parsed: u64, unparseable: u64, dropped: u64) {
    for (result, n) in [
        ("parsed", parsed),
        ("unparseable", unparseable),
        ("dropped", dropped),
    ] {
        counter!(MONITOR_SAMPLES_TOTAL, "result" => result, "route" => route.to_string())
            .absolute(n);
    }
}

/// Panics caught in the observer thread since the start.
pub fn observer_panics(n: u64) {
    counter!(OBSERVER_PANICS_TOTAL).absolute(n);
}

/// Counts one failed write of the rollout state file.
pub fn state_write_error() {
    counter!(STATE_WRITE_ERRORS_TOTAL).increment(1);
}

/// Says whether the last call to the shared state store succeeded.
pub fn fleet_store_up(up: bool) {
    gauge!(FLEET_STORE_UP).set(if up { 1.0 } else { 0.0 });
}

/// Counts one failed call to the shared state store, by its operation (`load`, `save`,
/// `watch`, `put_aside`).
pub fn fleet_store_error(op: &'static str) {
    counter!(FLEET_STORE_ERRORS_TOTAL, "op" => op).increment(1);
}

/// The Prometheus text `text` without the samples of routes and backends that are no
/// longer configured: `live(route, backend)` says whether a sample's `route` label (and
/// its `backend` label, when it has one) is still in the config. Samples without a
/// `route` label, and the `# HELP`/`# TYPE` lines, are kept.
///
/// The exporter keeps every series it has seen and cannot forget one
/// (metrics-rs/metrics#243), so a removed route's or backend's series are left out
/// when rendered instead; those of a name that comes back go on counting.
///
/// ```
/// use switchyard::telemetry::metrics::without_removed;
/// let text = "# TYPE x counter\nx{backend=\"a\",route=\"r\"} 1\nx{backend=\"b\",route=\"r\"} 2\ny 3\n";
/// let kept = without_removed(text, |route, backend| route == "r" && backend != Some("b"));
/// assert_eq!(kept, "# TYPE x counter\nx{backend=\"a\",route=\"r\"} 1\ny 3\n");
/// ```
pub fn without_removed(text: &str, live: impl Fn(&str, Option<&str>) -> bool) -> String {
    let mut kept = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let labels = line
            .split_once('{')
            .filter(|_| !line.starts_with('#'))
            .map(|(_, rest)| rest);
        let keep = match labels.and_then(|l| label(l, "route")) {
            Some(route) => {
                let backend = labels.and_then(|l| label(l, "backend")).map(unescape);
                live(&unescape(route), backend.as_deref())
            }
            None => true,
        };
        if keep {
            kept.push_str(line);
        }
    }
    kept
}

/// The value of label `name` in the label set `labels` (`a="1",b="2"} ...`), as
/// written (escapes left in place).
fn label<'t>(labels: &'t str, name: &str) -> Option<&'t str> {
    let mut rest = labels;
    loop {
        let (key, after) = rest.split_once("=\"")?;
        let bytes = after.as_bytes();
        let mut end = 0;
        while end < bytes.len() && bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        let value = after.get(..end)?;
        if key.trim_start_matches(',') == name {
            return Some(value);
        }
        rest = after.get(end + 1..)?;
        if rest.starts_with('}') {
            return None;
        }
    }
}

/// A label value as configured: the exposition format's escapes (`\\`, `\"`, `\n`) undone.
fn unescape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains('\\') {
        return value.into();
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(escaped) => out.push(escaped),
            None => {}
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_label_values_are_compared_as_configured() {
        assert_eq!(unescape(r#"a\"b\\c\nd"#), "a\"b\\c\nd");
        let text = "x{backend=\"say \\\"hi\\\"\",route=\"r\"} 1\n";
        assert_eq!(without_removed(text, |_, b| b == Some("say \"hi\"")), text);
    }

    #[test]
    fn labels_are_read_by_name_whatever_their_order_and_escapes() {
        let l = r#"backend="a\"b",code="200",route="iris"} 4"#;
        assert_eq!(label(l, "route"), Some("iris"));
        assert_eq!(label(l, "backend"), Some(r#"a\"b"#));
        assert_eq!(label(l, "code"), Some("200"));
        assert_eq!(label(l, "kind"), None);
        assert_eq!(label(r#"le="0.5",route="r"} 1"#, "route"), Some("r"));
    }

    #[test]
    fn removed_routes_and_backends_are_left_out_and_the_rest_kept() {
        let text = "# HELP w weight\n# TYPE w gauge\nw{route=\"gone\"} 1\nw{route=\"iris\"} 2\n\
                    d_bucket{backend=\"old\",route=\"iris\",le=\"0.5\"} 3\n\
                    d_bucket{backend=\"v2\",route=\"iris\",le=\"0.5\"} 4\n\
                    c{listener=\"data\"} 5\nplain 6\n";
        let kept = without_removed(text, |route, backend| {
            route == "iris" && backend.is_none_or(|b| b == "v2")
        });
        assert_eq!(
            kept,
            "# HELP w weight\n# TYPE w gauge\nw{route=\"iris\"} 2\n\
             d_bucket{backend=\"v2\",route=\"iris\",le=\"0.5\"} 4\n\
             c{listener=\"data\"} 5\nplain 6\n"
        );
    }
}
