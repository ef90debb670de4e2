//! `GET /api/v1/history`: each route's last hour, one point a second, with its events.
//!
//! On the real clock, for a few seconds: the proxy, its mock backends and the client talk
//! over loopback sockets on one runtime, and a paused clock jumps ahead whenever that
//! runtime waits on a socket, firing the header, body and client timeouts at once.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::Value;

use super::harness::{route, Route, Routed};
use crate::support::eventually;

fn iris() -> Route {
    route("iris").when("{ model: iris }").rollout(
        "{ stable: iris-v1, candidate: iris-v2, \
         steps: [{ weight: 50, hold: manual }, { weight: 100 }] }",
    )
}

fn fraud() -> Route {
    route("fraud")
        .when("{ path_prefix: /fraud/ }")
        .rollout("{ stable: fraud-v6 }")
}

/// `GET path` on the admin API: its status and JSON body.
async fn get(h: &Routed, path: &str) -> (StatusCode, Value) {
    let a = h.admin(Method::GET, path, "").await;
    (a.status, a.json())
}

/// The points of a history answer.
fn points(history: &Value) -> &Vec<Value> {
    history["points"]
        .as_array()
        .unwrap_or_else(|| panic!("no points: {history:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_shows_each_route_by_the_second_and_forgets_removed_ones() {
    let h = Routed::start(&["iris-v1", "iris-v2", "fraud-v6"], &[iris(), fraud()]).await;
    let history = eventually(
        "a point with iris traffic",
        Duration::from_millis(50),
        || async {
            h.served(5, || h.infer("iris")).await;
            let (status, history) = get(&h, "/api/v1/routes/iris/history").await;
            assert_eq!(status, StatusCode::OK, "{history:#}");
            let served = points(&history)
                .iter()
                .any(|p| p["backends"]["iris-v1"]["rps"].as_f64() > Some(0.0));
            if served {
                Ok(history)
            } else {
                Err(format!("no iris-v1 traffic yet: {history:#}"))
            }
        },
    )
    .await;
    eprintln!("{}", serde_json::to_string(&history).unwrap());
    let status = h.status("iris").await;
    assert_eq!(
        (history["route"].as_str(), history["since"].as_u64()),
        (Some("iris"), Some(300))
    );
    assert_eq!(
        (history["stable"].as_str(), history["candidate"].as_str()),
        (Some("iris-v1"), Some("iris-v2"))
    );
    for p in points(&history) {
        assert_eq!(p["weight"], status["weight"], "{p}");
        assert_eq!(
            (p["phase"].as_str(), p["mirror"].as_f64()),
            (Some("progressing"), Some(0.0))
        );
        assert!(p["at"].as_u64().is_some_and(|at| at > 1_700_000_000), "{p}");
        let candidate = &p["backends"]["iris-v2"];
        assert!(
            candidate["rps"].is_number() && candidate["shadow_agreement"].is_null(),
            "{p}"
        );
    }
    assert!(
        !history["events"].as_array().unwrap().is_empty(),
        "{history:#}"
    );
    assert_eq!(history["events"], status["events"]);

    // Two routes, none `default`: the unscoped path names them.
    let (code, body) = get(&h, "/api/v1/history").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["routes"], serde_json::json!(["iris", "fraud"]));
    let (code, body) = get(&h, "/api/v1/routes/iris/history?since=abc").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("since")),
        "{body}"
    );
    let (code, recent) = get(&h, "/api/v1/routes/iris/history?since=1").await;
    assert_eq!(code, StatusCode::OK);
    assert!(points(&recent).len() <= 1, "{recent:#}");
    let (code, fraud) = get(&h, "/api/v1/routes/fraud/history").await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        points(&fraud)
            .iter()
            .all(|p| p["backends"].get("iris-v1").is_none()),
        "{fraud:#}"
    );

    // A reload removes fraud: its history goes, and iris is now the only route.
    h.write_config(&[iris()]);
    h.wait_status("iris", "generation 2", |s| s["config"]["generation"] == 2)
        .await;
    let (code, body) = get(&h, "/api/v1/routes/fraud/history").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    let (code, only) = get(&h, "/api/v1/history").await;
    assert_eq!(
        (code, only["route"].as_str()),
        (StatusCode::OK, Some("iris")),
        "{only}"
    );
    assert!(!points(&only).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_copies_are_counted_apart_from_users_requests() {
    // Every user on the stable; every request mirrored to the candidate.
    let shadowed = route("iris").when("{ model: iris }").rollout(
        "{ stable: iris-v1, candidate: iris-v2, \
         steps: [{ weight: 0, mirror: 100, hold: manual }, { weight: 100 }] }",
    );
    let h = Routed::start(&["iris-v1", "iris-v2"], &[shadowed]).await;
    let history = eventually(
        "a point with mirrored copies",
        Duration::from_millis(50),
        || async {
            h.served(5, || h.infer("iris")).await;
            let (status, history) = get(&h, "/api/v1/routes/iris/history").await;
            assert_eq!(status, StatusCode::OK, "{history:#}");
            let mirrored = points(&history)
                .iter()
                .any(|p| p["backends"]["iris-v2"]["mirrored_rps"].as_f64() > Some(0.0));
            if mirrored {
                Ok(history)
            } else {
                Err(format!("no mirrored copies yet: {history:#}"))
            }
        },
    )
    .await;
    for p in points(&history) {
        let (stable, candidate) = (&p["backends"]["iris-v1"], &p["backends"]["iris-v2"]);
        // No user reached the candidate: its users' rate stays 0 while copies arrive.
        assert_eq!(candidate["rps"].as_f64(), Some(0.0), "{p}");
        assert!(candidate["mirrored_rps"].as_f64() >= Some(0.0), "{p}");
        assert_eq!(stable["mirrored_rps"].as_f64(), Some(0.0), "{p}");
    }
    assert!(
        points(&history)
            .iter()
            .any(|p| p["backends"]["iris-v1"]["rps"].as_f64() > Some(0.0)),
        "the users' requests are the stable's: {history:#}"
    );
}
