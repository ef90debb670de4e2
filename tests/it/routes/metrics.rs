//! `/metrics` with routes: per-backend and rollout series carry a `route` label.
//!
//! The metrics recorder is process-wide and the other tests of this binary run beside
//! this one, so its routes and backends have names no other test uses.

use std::time::Duration;

use super::harness::{route, series, Routed};
use crate::support::eventually;

/// The sum of the series of `name` with `labels` on `h`'s `/metrics`, once it equals
/// `want` (series are recorded as answers finish: this waits, bounded).
async fn wait_series(h: &Routed, name: &str, labels: &[(&str, &str)], want: f64) {
    eventually(
        &format!("{name}{labels:?} = {want}"),
        Duration::from_millis(20),
        || async {
            let text = h.metrics_text().await;
            let found = series(&text, name, labels);
            if !found.is_empty() && found.iter().sum::<f64>() == want {
                Ok(())
            } else {
                let relevant: Vec<&str> = text.lines().filter(|l| l.starts_with(name)).collect();
                Err(format!("found {found:?} in\n{}", relevant.join("\n")))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_backend_and_rollout_metrics_carry_the_route() {
    // metered-v1 is the stable of both routes: its series are told apart by route.
    let routes = [
        route("metered-iris").when("{ model: iris }").rollout(
            "{ stable: metered-v1, candidate: metered-v2, \
             steps: [{ weight: 50, hold: manual }, { weight: 100 }] }",
        ),
        route("metered-chat")
            .when("{ model: llama-3-8b }")
            .rollout("{ stable: metered-v1 }"),
    ];
    let h = Routed::start(&["metered-v1", "metered-v2"], &routes).await;
    let iris_by = h.served(30, || h.infer("iris")).await;
    let on_v1 = iris_by.iter().filter(|b| *b == "metered-v1").count() as f64;
    h.served(7, || h.chat("llama-3-8b")).await;

    let requests = "switchyard_requests_total";
    let ok = ("code", "200");
    for (backend, route, n) in [
        ("metered-v1", "metered-iris", on_v1),
        ("metered-v2", "metered-iris", 30.0 - on_v1),
        ("metered-v1", "metered-chat", 7.0),
    ] {
        let labels = [("backend", backend), ok, ("route", route)];
        wait_series(&h, requests, &labels, n).await;
    }
    let durations = "switchyard_request_duration_seconds_count";
    let labels = [("backend", "metered-v1"), ("route", "metered-chat")];
    wait_series(&h, durations, &labels, 7.0).await;
    let none = series(
        &h.metrics_text().await,
        requests,
        &[("backend", "metered-v2"), ("route", "metered-chat")],
    );
    assert!(none.is_empty(), "chat never used metered-v2: {none:?}");

    let weight = "switchyard_rollout_weight";
    wait_series(&h, weight, &[("route", "metered-iris")], 50.0).await;
    wait_series(&h, weight, &[("route", "metered-chat")], 0.0).await;
    let phase = "switchyard_rollout_phase";
    let progressing = ("phase", "progressing");
    wait_series(&h, phase, &[progressing, ("route", "metered-iris")], 1.0).await;
    wait_series(
        &h,
        phase,
        &[("phase", "idle"), ("route", "metered-chat")],
        1.0,
    )
    .await;

    // A rollback is counted on its route, and moves only that route's gauges.
    let a = h.control("metered-iris", "rollback", "").await;
    assert_eq!(a.status, http::StatusCode::OK);
    let manual = [("trigger", "manual"), ("route", "metered-iris")];
    wait_series(&h, "switchyard_rollbacks_total", &manual, 1.0).await;
    wait_series(&h, weight, &[("route", "metered-iris")], 0.0).await;
    let rolled_back = [("phase", "rolled_back"), ("route", "metered-iris")];
    wait_series(&h, phase, &rolled_back, 1.0).await;
    wait_series(&h, phase, &[progressing, ("route", "metered-iris")], 0.0).await;
    wait_series(
        &h,
        phase,
        &[("phase", "idle"), ("route", "metered-chat")],
        1.0,
    )
    .await;
    let chat_rollbacks = series(
        &h.metrics_text().await,
        "switchyard_rollbacks_total",
        &[("route", "metered-chat")],
    );
    assert_eq!(
        chat_rollbacks.iter().sum::<f64>(),
        0.0,
        "{chat_rollbacks:?}"
    );
}
