//! Reloads with routes: a new revision of one route restarts that route's rollout only,
//! and adding or removing a route leaves the others where they are.

use http::StatusCode;
use serde_json::Value;

use super::harness::{events_of, placement, route, Route, Routed};

const RAMP: &str = "[{ weight: 10, hold: manual }, { weight: 50, hold: manual }, { weight: 100 }]";

fn iris(steps: &str) -> Route {
    route("iris").when("{ model: iris }").rollout(format!(
        "{{ stable: iris-v1, candidate: iris-v2, steps: {steps} }}"
    ))
}

fn chat() -> Route {
    route("chat").when("{ model: llama-3-8b }").rollout(format!(
        "{{ stable: chat-a, candidate: chat-b, steps: {RAMP} }}"
    ))
}

fn fraud() -> Route {
    route("fraud")
        .when("{ path_prefix: /fraud/ }")
        .rollout("{ stable: fraud-v6 }")
}

/// Passes the first manual step of each of `names`: each at step 1, 50 %.
async fn to_step_1(h: &Routed, names: &[&str]) {
    for name in names {
        let a = h.control(name, "promote", "").await;
        assert_eq!(
            a.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(placement(&a.json()), ("progressing".into(), 1, 50.0));
    }
}

/// Waits until a reload to config `generation` is applied (as route `name` reports it).
async fn reloaded(h: &Routed, name: &str, generation: u64) -> Value {
    h.wait_status(name, &format!("generation {generation}"), |s| {
        s["config"]["generation"] == generation
    })
    .await
}

/// Asserts route `name` is at step 1, 50 %, with `events` unchanged since `before`.
async fn assert_kept(h: &Routed, name: &str, before: &Value) {
    let now = h.status(name).await;
    assert_eq!(
        placement(&now),
        ("progressing".into(), 1, 50.0),
        "{name}: {now:#}"
    );
    assert_eq!(
        events_of(&now, "reload"),
        events_of(before, "reload"),
        "a new reload event on {name}: {:#}",
        now["events"]
    );
    assert_eq!(
        now["revision"], before["revision"],
        "{name}'s revision changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_steps_on_one_route_restart_that_route_only() {
    let backends = ["iris-v1", "iris-v2", "chat-a", "chat-b"];
    let h = Routed::start(&backends, &[iris(RAMP), chat()]).await;
    to_step_1(&h, &["iris", "chat"]).await;
    let chat_before = h.status("chat").await;

    let new_steps = "[{ weight: 20, hold: manual }, { weight: 60, hold: manual }, { weight: 100 }]";
    h.write_config(&[iris(new_steps), chat()]);
    let iris_now = reloaded(&h, "iris", 2).await;
    assert_eq!(
        placement(&iris_now),
        ("progressing".into(), 0, 20.0),
        "{iris_now:#}"
    );
    assert_eq!(
        events_of(&iris_now, "reload"),
        1,
        "{:#}",
        iris_now["events"]
    );
    assert_kept(&h, "chat", &chat_before).await;
    let chat_by = h.served(40, || h.chat("llama-3-8b")).await;
    assert!(chat_by.iter().any(|b| b == "chat-b"), "{chat_by:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_url_for_one_routes_candidate_restarts_that_route_only() {
    let backends = ["iris-v1", "iris-v2", "chat-a", "chat-b"];
    let mut h = Routed::start(&backends, &[iris(RAMP), chat()]).await;
    to_step_1(&h, &["iris", "chat"]).await;
    let iris_before = h.status("iris").await;

    // chat-b is redeployed elsewhere: the same name, a new URL, a new revision of chat.
    h.replace_backend("chat-b").await;
    h.write_config(&[iris(RAMP), chat()]);
    let chat_now = reloaded(&h, "chat", 2).await;
    assert_eq!(
        placement(&chat_now),
        ("progressing".into(), 0, 10.0),
        "{chat_now:#}"
    );
    assert_eq!(
        events_of(&chat_now, "reload"),
        1,
        "{:#}",
        chat_now["events"]
    );
    assert_kept(&h, "iris", &iris_before).await;

    // chat's candidate is now the new server.
    let a = h.control("chat", "promote", r#"{"full":true}"#).await;
    assert_eq!(a.status, StatusCode::OK);
    let chat_by = h.served(10, || h.chat("llama-3-8b")).await;
    assert!(chat_by.iter().all(|b| b == "chat-b"), "{chat_by:?}");
    assert_eq!(
        h.backend("chat-b").live().len(),
        10,
        "the new chat-b served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_and_removing_a_route_leaves_the_others_where_they_are() {
    let backends = ["iris-v1", "iris-v2", "chat-a", "chat-b"];
    let mut h = Routed::start(&backends, &[iris(RAMP), chat()]).await;
    to_step_1(&h, &["iris", "chat"]).await;
    let (iris_before, chat_before) = (h.status("iris").await, h.status("chat").await);

    // fraud goes in between: the routes after it move down the list.
    h.add_backend("fraud-v6").await;
    h.write_config(&[iris(RAMP), fraud(), chat()]);
    reloaded(&h, "iris", 2).await;
    assert_kept(&h, "iris", &iris_before).await;
    assert_kept(&h, "chat", &chat_before).await;
    assert_eq!(placement(&h.status("fraud").await), ("idle".into(), 0, 0.0));
    let fraud_by = h
        .served(3, || h.send(http::Method::POST, "/fraud/score", &[], "{}"))
        .await;
    assert_eq!(fraud_by, ["fraud-v6"; 3]);

    // Then chat goes: its traffic has no route now, and iris stays put.
    h.write_config(&[iris(RAMP), fraud()]);
    reloaded(&h, "iris", 3).await;
    assert_kept(&h, "iris", &iris_before).await;
    let names: Vec<Value> = h
        .routes()
        .await
        .iter()
        .map(|r| r["route"].clone())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(!names.contains(&"chat".into()), "{names:?}");
    let gone = h
        .admin(http::Method::GET, "/api/v1/routes/chat/status", "")
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(h.chat("llama-3-8b").await.status, StatusCode::NOT_FOUND);
}
