//! switchyard's integration tests, one module per capability, in one test binary: each
//! file directly under `tests/` is a crate of its own that links the whole library, so
//! one binary links once where twenty would link twenty times.
//!
//! [`support`] is the one harness: model servers, a switchyard running in process on a
//! config file it watches ([`support::ProxyHarness`]) or as the real binary
//! ([`support::process`]), the test configs, and `/metrics` reading. The metrics
//! recorder is process-wide, so a test reads only series labelled with its own route or
//! backend names, or waits for a value to be reached rather than asserting a total.
//!
//! Run one capability with a filter: `cargo test --test it routes::`. Three binaries stay
//! apart: `tests/fuzz` (properties, run many more times in CI, addressed by name),
//! `tests/judgment_load.rs` (it takes both cores and floods; beside other tests it would
//! slow them and they it) and `tests/reload_alone.rs` (it asserts that a series without a
//! route label, which other tests move on purpose, stays put).

mod support;

mod admin;
mod attribution;
mod baseline;
mod config_examples;
mod dashboard;
mod demo;
mod deploy;
mod docs_examples;
mod fleet;
mod layers;
mod limits;
mod memory;
mod monitoring;
mod proxy;
mod reload;
mod rollback;
mod rollout;
mod routes;
mod security;
mod shadow;
mod state;
mod streaming;
mod upstream;
mod validate_cli;
