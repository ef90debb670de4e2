//! Monitoring through the proxy: sampled exchanges reach the monitor, the prediction log
//! and the feedback store, off the live path; the gates that read them decide rollouts.

mod capture;
mod drift;
mod feedback;
mod gates;
mod hostile;
mod reference;
mod stats;
mod wiring;

use std::time::Duration;

use http::Method;
use serde_json::Value;

use crate::support::{eventually, ProxyHarness};

/// `GET /api/v1/monitor` once the monitor has parsed `n` requests.
pub(crate) async fn monitor_after(h: &ProxyHarness, n: u64) -> Value {
    eventually(
        &format!("{n} parsed samples"),
        Duration::from_millis(20),
        || async {
            let m = h
                .admin(Method::GET, "/api/v1/monitor", None, "")
                .await
                .json();
            match m["samples"]["parsed"].as_u64() {
                Some(p) if p == n => Ok(m),
                _ => Err(format!("{m:#}")),
            }
        },
    )
    .await
}
