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

use std::ops::Range;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::Value;

use crate::support::{eventually, ProxyHarness};

/// `GET /api/v1/monitor` once the monitor has parsed `n` requests.
pub(crate) async fn monitor_after(h: &ProxyHarness, n: u64) -> Value {
    monitor_when(h, &format!("{n} parsed samples"), |parsed| parsed == n).await
}

/// `GET /api/v1/monitor` once its count of parsed requests satisfies `done` (`what` says
/// what is waited for).
pub(crate) async fn monitor_when(
    h: &ProxyHarness,
    what: &str,
    done: impl Fn(u64) -> bool,
) -> Value {
    eventually(what, Duration::from_millis(20), || async {
        let m = h
            .admin(Method::GET, "/api/v1/monitor", None, "")
            .await
            .json();
        match m["samples"]["parsed"].as_u64() {
            Some(p) if done(p) => Ok(m),
            _ => Err(format!("{m:#}")),
        }
    })
    .await
}

/// Sends one V2 inference request of body `body(i)` for each `i` of `range`; each must
/// succeed.
pub(crate) async fn send_v2(h: &ProxyHarness, range: Range<u64>, body: impl Fn(u64) -> String) {
    for i in range {
        let a = h
            .send(
                Method::POST,
                "/v2/models/m/infer",
                &[("content-type", "application/json")],
                &body(i),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    }
}
