//! Monitoring through the proxy: sampled exchanges reach the monitor, the prediction log
//! and the feedback store, off the live path.

#[path = "../support/mod.rs"]
mod support;

mod capture;
mod stats;
mod wiring;
