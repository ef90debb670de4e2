//! What flows through, per route and backend: payload statistics and drift, off the live path.
//!
//! One [`Monitor`] watches one route. The tap hands each sampled
//! [`Exchange`](crate::wire::Exchange) to the observers after the answer has gone to the client;
//! [`Payload::parse`](crate::wire::Payload::parse) reads its bodies once, and every observer reads that
//! [`Payload`](crate::wire::Payload). [`Monitor::observe`] then counts, per backend:
//!
//! - per input feature ([`features`]): values, missing values (`null`, NaN,
//!   absent) and unusable ones, quantiles of numbers, most frequent
//!   categories ([`stats`]);
//! - per answer: predictions (class mix, scores), empty and null ones; rows
//!   per request; body sizes;
//! - once a [`Reference`] exists, each feature's and output's recent values
//!   over the reference's bins, for data drift (PSI, Jensen-Shannon
//!   distance) and output drift, candidate against stable ([`drift`]).
//!
//! [`Monitor::report`] gives all of it, for the admin API and the metrics;
//! [`Monitor::output_drift`] is what the `output_drift` gate reads.
//!
//! # Memory
//!
//! Bounded by construction: at most `max_features` features and
//! [`MAX_BACKENDS`] backends per route; per backend and numeric feature one
//! sketch (at most [`stats::Sketch::MAX_HEAP_BYTES`], 28 KiB; 2–4 KiB for
//! values spanning a few decades), per categorical feature one
//! [`stats::TopK`] (at most 4 KiB); per backend a drift window of
//! `slots × bins` 4-byte counters (10 s buckets over 60 s and 10 bins:
//! 240 bytes a feature). Building a reference keeps at most
//! [`drift::RESERVOIR`] numbers (8 KiB) per numeric feature until it is
//! done. `docs/monitoring.md` has the measured figures.
//!
//! # Example
//!
//! ```
//! use switchyard::monitor::{Monitor, Settings};
//! use switchyard::wire::Exchange;
//! use tokio::time::Instant;
//!
//! let mut monitor = Monitor::new(Settings::default()).unwrap();
//! monitor.start_reference("blue");
//! let exchange = Exchange {
//!     route: "default",
//!     backend: "blue",
//!     path: "/v1/models/iris:predict",
//!     status: 200,
//!     request: br#"{"instances":[{"sepal_length":5.1,"species_hint":"setosa"}]}"#,
//!     request_truncated: false,
//!     answer: br#"{"predictions":[0]}"#,
//!     answer_truncated: false,
//! };
//! let payload = monitor.parse(&exchange);
//! monitor.observe(&exchange, &payload, Instant::now());
//!
//! let report = monitor.report(Instant::now(), None);
//! let blue = &report.backends[0];
//! assert_eq!(blue.features.len(), 2);
//! assert_eq!(blue.outputs.labels[0].value, "0");
//! ```

pub mod baseline;
pub mod drift;
pub mod features;
pub mod report;
mod route;
pub mod stats;

#[cfg(test)]
mod tests;

/// The `monitor:` block of the config: what the monitor reads, as configured.
pub use crate::config::{
    FeatureKind as Kind, FeatureSpec, MonitorConfig as Settings, ReferenceFrom, ReferenceSettings,
    Thresholds,
};
pub use drift::{Bins, Drift, Level, Metric, OutputBins, Reference};
pub use report::{BackendReport, FeatureReport, OutputDrift, OutputReport, Report};
pub use route::{reference_problems, Monitor, Samples, Warning, MAX_BACKENDS};
pub use stats::{Missing, Quantiles, TopValue};
