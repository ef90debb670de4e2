//! What the proxy measures: per-backend sliding windows for the analysis, and Prometheus metrics.

pub mod metrics;
pub mod window;
