//! What the admin API shows of the observers: `GET /api/v1/monitor`, `POST
//! /api/v1/feedback`, and the monitoring series of `/metrics`.
//!
//! Everything here reads the observers of the published snapshot; nothing runs on the
//! data path. The monitoring metrics are read when `/metrics` is rendered, so they cost
//! nothing between scrapes.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::time::Instant;

use std::sync::Arc;

use crate::feedback::{Feedback, Joined};
use crate::monitor::{Level, Report};
use crate::observe::Observers;
use crate::snapshot::{Route, Snapshot};
use crate::telemetry::metrics;

/// A route's monitoring as `/api/v1/monitor` shows it: per backend its features (with
/// drift and level), outputs and accuracy; the output drift, candidate against stable;
/// and what became of the samples, the capture and the labels.
pub fn report(route: &Route, now: Instant) -> Value {
    let Some(o) = route.observers.as_deref() else {
        return json!({ "route": &*route.name, "enabled": false });
    };
    let mut v = json!({ "route": &*route.name, "enabled": true });
    if let Some(report) = route_report(route, o, now) {
        let mut shown = serde_json::to_value(&report).unwrap_or_default();
        shown["samples"]["dropped"] = json!(report.samples.dropped + o.dropped());
        if let Some(map) = shown.as_object() {
            for (k, val) in map {
                v[k] = val.clone();
            }
        }
    }
    v["accuracy"] = json!(accuracies(route, o, now));
    v["capture"] = json!(o.capture().map(|c| c.counts()));
    v["feedback"] = json!(o.feedback().map(|f| f.counts()));
    v
}

/// The drift reference a route's monitor uses (`GET /api/v1/monitor/reference`), or why
/// there is none: monitoring is off, or the reference is still being built (how far).
pub fn reference(route: &Route) -> Result<crate::monitor::Reference, String> {
    let monitor = route
        .observers
        .as_deref()
        .and_then(Observers::monitor)
        .ok_or_else(|| {
            format!(
                "route {} is not monitored (`monitor.sample: 0`): it has no reference",
                route.name
            )
        })?;
    monitor.reference_in_use()
}

/// What `GET /api/v1/status` shows of a route's monitoring, under `monitoring`: the
/// output drift, each backend's accuracy, the features drifting past `warn`, and what
/// keeps drift from being measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The candidate's outputs against the stable's; `null` without a figure.
    pub output_drift: Option<f64>,
    pub accuracy: Vec<Accuracy>,
    /// Features at `warn` or `alert`, the worst first.
    pub drifting: Vec<Drifting>,
    /// What keeps data drift from being measured although a reference is in use: a
    /// reference whose features share no name with the requests', one of no features.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// One backend's figures from labels over the analysis window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub backend: String,
    pub labels: u64,
    pub accuracy: Option<f64>,
    pub mean_absolute_error: Option<f64>,
}

/// A feature drifting past `warn` on one backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drifting {
    pub backend: String,
    pub feature: String,
    pub value: f64,
    /// `warn` or `alert`.
    pub level: String,
}

/// The status' monitoring summary of a route; `None` when nothing observes it.
pub fn summary(route: &Route, now: Instant) -> Option<Summary> {
    let o = route.observers.as_deref()?;
    let mut s = Summary::default();
    if let Some(report) = route_report(route, o, now) {
        s.output_drift = report.output_drift.as_ref().and_then(|d| d.value());
        s.warnings.clone_from(&report.warnings);
        for b in &report.backends {
            for f in &b.features {
                let Some((d, value)) = f
                    .drift
                    .filter(|d| d.level > Level::Ok)
                    .and_then(|d| Some((d, d.value?)))
                else {
                    continue;
                };
                s.drifting.push(Drifting {
                    backend: b.backend.clone(),
                    feature: f.name.clone(),
                    value,
                    level: serde_json::to_value(d.level)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                });
            }
        }
        s.drifting.sort_by(|a, b| b.value.total_cmp(&a.value));
    }
    if o.feedback().is_some() {
        s.accuracy = accuracies(route, o, now);
    }
    Some(s)
}

/// The route's monitor report at `now`, its candidate's outputs compared with its
/// stable's; `None` when monitoring is off. The monitor is locked only while it reports.
fn route_report(route: &Route, o: &Observers, now: Instant) -> Option<Report> {
    let monitor = o.monitor()?;
    let candidate = route.candidate.as_ref().map(|c| &*c.name);
    Some(monitor.report(now, candidate.map(|c| (&*route.stable.name, c))))
}

/// The stable's and the candidate's figures from labels over the route's analysis window.
fn accuracies(route: &Route, o: &Observers, now: Instant) -> Vec<Accuracy> {
    route
        .backends
        .iter()
        .map(|b| {
            let score = o.accuracy(&b.name, now, route.window);
            Accuracy {
                backend: b.name.to_string(),
                labels: score.labels(),
                accuracy: score.accuracy(),
                mean_absolute_error: score.mean_absolute_error(),
            }
        })
        .collect()
}

/// The feedback store a `POST /api/v1/feedback` joins labels with (the one every route
/// with a `feedback:` block shares), or why there is none: the 409's message. A post
/// that addresses `route` needs that route to remember predictions.
pub fn feedback_store(snap: &Snapshot, route: Option<&str>) -> Result<Arc<Feedback>, String> {
    let remembering = |r: &Route| {
        r.observers
            .as_deref()
            .and_then(Observers::feedback)
            .cloned()
    };
    if let Some(name) = route {
        return snap
            .route(name)
            .and_then(|r| remembering(r))
            .ok_or_else(|| {
                format!(
                    "route {name} remembers no predictions: labels need a `feedback:` block \
                 (the route's or the top-level one)"
                )
            });
    }
    snap.routes
        .iter()
        .find_map(|r| remembering(r))
        .ok_or_else(|| {
            "no route remembers predictions: labels need a `feedback:` block (top-level or a \
         route's)"
                .to_string()
        })
}

/// Counts a post's labels that matched nothing, under the route it addressed (`""` for
/// none); matched and ambiguous ones are counted per route from the store.
pub fn feedback_counted(route: Option<&str>, joined: &Joined) {
    if joined.unmatched > 0 {
        metrics::feedback_unmatched(route.unwrap_or(""), joined.unmatched);
    }
}

/// Sets the monitoring series from every route's observers, before `/metrics` renders.
pub fn export(snap: &Snapshot, now: Instant) {
    metrics::observer_panics(crate::shadow::observed::panics());
    for route in snap.routes.iter() {
        let Some(o) = route.observers.as_deref() else {
            continue;
        };
        let name = &*route.name;
        if let Some(report) = route_report(route, o, now) {
            let s = report.samples;
            metrics::monitor_samples(name, s.parsed, s.unparseable, s.dropped + o.dropped());
            for b in &report.backends {
                for f in &b.features {
                    let missing = f.missing.null + f.missing.nan + f.missing.absent;
                    metrics::feature(
                        name,
                        &b.backend,
                        &f.name,
                        f.drift.and_then(|d| d.value),
                        missing,
                    );
                }
            }
            if let Some(d) = &report.output_drift {
                for (output, drift) in [("label", d.label), ("score", d.score)] {
                    if let Some(value) = drift.and_then(|d| d.value) {
                        metrics::output_drift(name, output, value);
                    }
                }
            }
        }
        if let Some(c) = o.capture() {
            let c = c.counts();
            metrics::capture_records(name, c.written, c.dropped, c.error);
        }
        if let Some(f) = o.feedback() {
            for a in accuracies(route, o, now) {
                metrics::accuracy(name, &a.backend, a.accuracy, a.mean_absolute_error);
            }
            let counts = f.backend_counts();
            let mine = counts.iter().filter(|c| *c.route == *name);
            // A label joined to an answer and its mirror's is one label.
            let matched = mine.clone().map(|c| c.matched - c.mirrored).sum();
            metrics::feedback_matched(name, matched);
            metrics::feedback_ambiguous(name, mine.map(|c| c.ambiguous).sum());
        }
    }
    if let Some(f) = snap
        .routes
        .iter()
        .find_map(|r| r.observers.as_deref()?.feedback())
    {
        // Labels that waited for a prediction in vain: unmatched, of no known route.
        let expired = f.take_unreported();
        if expired > 0 {
            metrics::feedback_unmatched("", expired);
        }
    }
}
