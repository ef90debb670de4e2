//! switchyard: a traffic router for model servers.
//!
//! Shadow mirroring with output comparison, weighted canary with sticky assignment,
//! blue-green switch, automatic analysis and atomic rollback, in one reverse proxy.
//! See `README.md` for the tour and `../shared/SPEC.md` for the contract.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

pub mod admin;
pub mod app;
mod capture;
pub mod compare;
pub mod config;
pub mod demo;
mod error;
pub mod feedback;
pub mod monitor;
mod observe;
pub mod proxy;
pub mod rollout;
mod server;
mod shadow;
pub mod snapshot;
pub mod store;
pub mod telemetry;
mod upstream;
pub mod wire;
