//! What the admin API shows of the observers: `GET /api/v1/monitor`, `POST
//! /api/v1/feedback`, and the monitoring series of `/metrics`.
//!
//! Everything here reads the observers of the published snapshot; nothing runs on the
//! data path. The monitoring metrics are read when `/metrics` is rendered, so they cost
//! nothing between scrapes.

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::feedback::{parse_labels, Joined};
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
    let stable = &*route.stable.name;
    let candidate = route.candidate.as_ref().map(|c| &*c.name);
    let mut v = json!({ "route": &*route.name, "enabled": true });
    if let Some(monitor) = o.monitor() {
        let report = monitor.report(now, candidate.map(|c| (stable, c)));
        drop(monitor);
        let mut shown = serde_json::to_value(&report).unwrap_or_default();
        shown["samples"]["dropped"] = json!(report.samples.dropped + o.dropped());
        if let Some(map) = shown.as_object() {
            for (k, val) in map {
                v[k] = val.clone();
            }
        }
    }
    let backends = std::iter::once(stable).chain(candidate);
    let accuracy: Vec<Value> = backends
        .map(|b| {
            let score = o.accuracy(b, now, route.window);
            json!({
                "backend": b,
                "labels": score.labels(),
                "accuracy": score.accuracy(),
                "mean_absolute_error": score.mean_absolute_error(),
            })
        })
        .collect();
    v["accuracy"] = json!(accuracy);
    v["capture"] = json!(o.capture().map(|c| c.counts()));
    v["feedback"] = json!(o.feedback().map(|f| f.counts()));
    v
}

/// Joins the labels of a `POST /api/v1/feedback` body to the remembered predictions;
/// `route` is the route the post addressed, if any (it only labels the unmatched count).
/// `Err` is the 400's message: the body is not a label or a batch of labels.
pub fn feedback(snap: &Snapshot, route: Option<&str>, body: &[u8]) -> Result<Joined, String> {
    let labels = parse_labels(body)?;
    let store = snap
        .routes
        .iter()
        .filter_map(|r| r.observers.as_deref().and_then(Observers::feedback))
        .next();
    let joined = match store {
        Some(store) => store.join(&labels, Instant::now()),
        None => Joined {
            matched: 0,
            unmatched: labels.len() as u64,
        },
    };
    if joined.unmatched > 0 {
        metrics::feedback_unmatched(route.unwrap_or(""), joined.unmatched);
    }
    Ok(joined)
}

/// Sets the monitoring series from every route's observers, before `/metrics` renders.
pub fn export(snap: &Snapshot, now: Instant) {
    for route in snap.routes.iter() {
        let Some(o) = route.observers.as_deref() else {
            continue;
        };
        let name = &*route.name;
        if let Some(monitor) = o.monitor() {
            let candidate = route.candidate.as_ref().map(|c| &*c.name);
            let report = monitor.report(now, candidate.map(|c| (&*route.stable.name, c)));
            drop(monitor);
            let s = report.samples;
            metrics::monitor_samples(name, s.parsed, s.unparseable, s.dropped + o.dropped());
            for b in &report.backends {
                for f in &b.features {
                    let missing = f.missing.null + f.missing.nan + f.missing.absent;
                    metrics::feature(name, &b.backend, &f.name, f.drift.map(|d| d.value), missing);
                }
            }
            if let Some(d) = &report.output_drift {
                for (output, drift) in [("label", d.label), ("score", d.score)] {
                    if let Some(drift) = drift {
                        metrics::output_drift(name, output, drift.value);
                    }
                }
            }
        }
        if let Some(c) = o.capture() {
            let c = c.counts();
            metrics::capture_records(name, c.written, c.dropped, c.error);
        }
        if let Some(f) = o.feedback() {
            for b in route.backends.iter() {
                let score = o.accuracy(&b.name, now, route.window);
                metrics::accuracy(name, &b.name, score.accuracy(), score.mean_absolute_error());
            }
            let matched = f
                .backend_counts()
                .iter()
                .filter(|c| *c.route == *name)
                .map(|c| c.matched)
                .sum();
            metrics::feedback_matched(name, matched);
        }
    }
}
