//! The admin API with routes: controls under `/api/v1/routes/NAME/`, 404 for a route
//! that does not exist, and the unscoped paths, which address `default` or the only
//! route and otherwise refuse to guess.

use std::collections::BTreeSet;

use http::{Method, StatusCode};
use serde_json::Value;

use super::harness::{
    events_of, held_canaries as routes, placement, route, Routed, HELD_BACKENDS as BACKENDS,
};
use crate::support::Answer;

fn text(a: &Answer) -> String {
    String::from_utf8_lossy(&a.body).into_owned()
}

/// Asserts a control answered 200 with route `name`'s status, and returns that status.
fn ok_status(a: Answer, name: &str) -> Value {
    assert_eq!(a.status, StatusCode::OK, "{}", text(&a));
    let s = a.json();
    assert_eq!(s["route"], name, "{s:#}");
    s
}

/// Asserts chat is where it started: step 0 at 25 %, no control ever applied to it.
async fn assert_chat_untouched(h: &Routed) {
    let chat = h.status("chat").await;
    assert_eq!(
        placement(&chat),
        ("progressing".into(), 0, 25.0),
        "{chat:#}"
    );
    for kind in ["paused", "resumed", "rollback", "retry", "step", "promoted"] {
        assert_eq!(events_of(&chat, kind), 0, "chat has a {kind} event");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_rollback_and_retry_act_on_their_route_only() {
    let h = Routed::start(&BACKENDS, &routes()).await;

    let s = ok_status(
        h.control("iris", "pause", r#"{"reason":"checking iris"}"#)
            .await,
        "iris",
    );
    assert_eq!(placement(&s), ("paused".into(), 0, 50.0));
    assert_eq!(s["reason"], "checking iris");
    assert_chat_untouched(&h).await;

    let s = ok_status(h.control("iris", "resume", "").await, "iris");
    assert_eq!(placement(&s), ("progressing".into(), 0, 50.0));
    assert_chat_untouched(&h).await;

    let s = ok_status(
        h.control("iris", "rollback", r#"{"reason":"bad petals"}"#)
            .await,
        "iris",
    );
    assert_eq!(placement(&s), ("rolled_back".into(), 0, 0.0));
    assert_eq!(s["reason"], "bad petals");
    // At once: the answer came after the switch.
    let iris_by = h.served(20, || h.infer("iris")).await;
    assert!(iris_by.iter().all(|b| b == "iris-v1"), "{iris_by:?}");
    assert_chat_untouched(&h).await;
    let chat_by = h.served(80, || h.chat("llama-3-8b")).await;
    let chat_set: BTreeSet<&str> = chat_by.iter().map(String::as_str).collect();
    assert_eq!(
        chat_set,
        BTreeSet::from(["chat-a", "chat-b"]),
        "chat's 25 % split over 80 requests"
    );

    let s = ok_status(h.control("iris", "retry", "{}").await, "iris");
    assert_eq!(placement(&s), ("progressing".into(), 0, 50.0));
    assert_chat_untouched(&h).await;
    assert_eq!(placement(&h.status("fraud").await), ("idle".into(), 0, 0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_its_routes_phase_does_not_allow_is_refused_there_alone() {
    let h = Routed::start(&BACKENDS, &routes()).await;
    // fraud has nothing to roll out: nothing to pause or roll back.
    for action in ["pause", "rollback", "promote"] {
        let a = h.control("fraud", action, "").await;
        assert_eq!(a.status, StatusCode::CONFLICT, "{action}: {}", text(&a));
    }
    // iris is progressing: nothing to resume or retry.
    for action in ["resume", "retry"] {
        let a = h.control("iris", action, "").await;
        assert_eq!(a.status, StatusCode::CONFLICT, "{action}: {}", text(&a));
    }
    assert_eq!(placement(&h.status("fraud").await), ("idle".into(), 0, 0.0));
    assert_eq!(
        placement(&h.status("iris").await),
        ("progressing".into(), 0, 50.0)
    );
    assert_chat_untouched(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_route_is_404_on_every_path_and_changes_nothing() {
    let h = Routed::start(&BACKENDS, &routes()).await;
    let reads = ["status", "shadow/diffs"];
    for what in reads {
        let a = h
            .admin(Method::GET, &format!("/api/v1/routes/nope/{what}"), "")
            .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{what}: {}", text(&a));
    }
    for action in ["promote", "pause", "resume", "rollback", "retry"] {
        let a = h.control("nope", action, "{}").await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{action}: {}", text(&a));
    }
    // A route's name is matched exactly.
    let a = h.control("IRIS", "rollback", "").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", text(&a));
    assert_eq!(
        placement(&h.status("iris").await),
        ("progressing".into(), 0, 50.0)
    );
    assert_chat_untouched(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unscoped_paths_answer_400_naming_the_routes_when_several_could_be_meant() {
    let h = Routed::start(&BACKENDS, &routes()).await;
    let calls = [
        (Method::GET, "/api/v1/status"),
        (Method::GET, "/api/v1/shadow/diffs"),
        (Method::POST, "/api/v1/promote"),
        (Method::POST, "/api/v1/pause"),
        (Method::POST, "/api/v1/rollback"),
    ];
    for (method, path) in calls {
        let a = h.admin(method, path, "").await;
        let said = text(&a);
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}: {said}");
        for name in ["iris", "chat", "fraud"] {
            assert!(said.contains(name), "{path} does not name {name}: {said}");
        }
    }
    assert_eq!(
        placement(&h.status("iris").await),
        ("progressing".into(), 0, 50.0)
    );
    assert_chat_untouched(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unscoped_paths_address_the_route_named_default() {
    let routes = [
        route("iris").when("{ model: iris }").rollout(
            "{ stable: iris-v1, candidate: iris-v2, \
             steps: [{ weight: 50, hold: manual }, { weight: 100 }] }",
        ),
        route("default").rollout(
            "{ stable: chat-a, candidate: chat-b, \
             steps: [{ weight: 25, hold: manual }, { weight: 100 }] }",
        ),
    ];
    let h = Routed::start(&BACKENDS, &routes).await;
    let s = h.admin(Method::GET, "/api/v1/status", "").await;
    assert_eq!(s.status, StatusCode::OK, "{}", text(&s));
    assert_eq!(
        (&s.json()["route"], &s.json()["stable"]),
        (&"default".into(), &"chat-a".into())
    );
    let paused = ok_status(h.admin(Method::POST, "/api/v1/pause", "").await, "default");
    assert_eq!(placement(&paused), ("paused".into(), 0, 25.0));
    assert_eq!(h.status("default").await["phase"], "paused");
    let iris = h.status("iris").await;
    assert_eq!(placement(&iris), ("progressing".into(), 0, 50.0));
    assert_eq!(events_of(&iris, "paused"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unscoped_paths_address_the_only_route() {
    let routes = [route("iris").when("{ model: iris }").rollout(
        "{ stable: iris-v1, candidate: iris-v2, \
         steps: [{ weight: 50, hold: manual }, { weight: 100 }] }",
    )];
    let h = Routed::start(&["iris-v1", "iris-v2"], &routes).await;
    let s = h.admin(Method::GET, "/api/v1/status", "").await;
    assert_eq!(s.status, StatusCode::OK, "{}", text(&s));
    assert_eq!(s.json()["route"], "iris");
    let s = ok_status(
        h.admin(Method::POST, "/api/v1/rollback", r#"{"reason":"only one"}"#)
            .await,
        "iris",
    );
    assert_eq!(placement(&s), ("rolled_back".into(), 0, 0.0));
    let listed = h.routes().await;
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(placement(&listed[0]).0, "rolled_back");
}
