//! switchyard: a traffic router for model servers.
//!
//! Shadow mirroring with output comparison, weighted canary with sticky assignment,
//! blue-green switch, automatic analysis and atomic rollback, in one reverse proxy.
//! See `README.md` for the tour and `../shared/SPEC.md` for the contract.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod capture;
pub mod compare;
pub mod config;
pub mod demo;
pub mod error;
pub mod feedback;
pub mod monitor;
pub mod observe;
pub mod proxy;
pub mod rollout;
pub mod server;
pub mod shadow;
pub mod snapshot;
pub mod store;
pub mod telemetry;
pub mod upstream;
pub mod wire;
