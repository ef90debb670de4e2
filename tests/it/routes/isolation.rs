//! What happens on one route stays on that route: a failing candidate's rollback, the
//! windows of a backend two routes share, and the shadow disagreements.

use std::collections::BTreeSet;
use std::time::Duration;

use http::Method;
use serde_json::Value;

use super::harness::{events_of, placement, route, series, Routed};
use crate::support::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_candidate_is_rolled_back_on_its_route_while_another_keeps_its_split() {
    let canary = |stable: &str, candidate: &str| {
        format!(
            "{{ stable: {stable}, candidate: {candidate}, \
             steps: [{{ weight: 50, hold: manual }}, {{ weight: 100 }}], \
             fast_rollback: {{ consecutive_errors: 3 }} }}"
        )
    };
    let routes = [
        route("iris")
            .when("{ model: iris }")
            .rollout(canary("iris-v1", "iris-v2")),
        route("chat")
            .when("{ model: llama-3-8b }")
            .rollout(canary("chat-a", "chat-b")),
    ];
    let h = Routed::start(&["iris-v1", "iris-v2", "chat-a", "chat-b"], &routes).await;
    // Both candidates serve before anything fails.
    let chat_before = h.served(40, || h.chat("llama-3-8b")).await;
    assert!(chat_before.iter().any(|b| b == "chat-b"), "{chat_before:?}");

    h.backend("iris-v2").fail(true);
    let iris = eventually("iris's fast rollback", Duration::from_millis(5), || async {
        for _ in 0..5 {
            h.infer("iris").await;
        }
        let s = h.status("iris").await;
        if s["phase"] == "rolled_back" {
            Ok(s)
        } else {
            Err(format!("iris: {s:#}"))
        }
    })
    .await;
    assert_eq!(placement(&iris), ("rolled_back".into(), 0, 0.0));
    assert!(
        iris["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "rollback" && e["message"].as_str().unwrap().contains("(fast)")),
        "{:#}",
        iris["events"]
    );
    let iris_after = h.served(20, || h.infer("iris")).await;
    assert!(iris_after.iter().all(|b| b == "iris-v1"), "{iris_after:?}");

    // chat never moved: same phase, step and weight, no rollback, and its candidate still
    // gets its share.
    let chat = h.status("chat").await;
    assert_eq!(
        placement(&chat),
        ("progressing".into(), 0, 50.0),
        "{chat:#}"
    );
    assert_eq!(events_of(&chat, "rollback"), 0, "{:#}", chat["events"]);
    let chat_after = h.served(40, || h.chat("llama-3-8b")).await;
    let chat_set: BTreeSet<&str> = chat_after.iter().map(String::as_str).collect();
    assert_eq!(chat_set, BTreeSet::from(["chat-a", "chat-b"]));

    let text = h.metrics_text().await;
    let fast = series(
        &text,
        "switchyard_rollbacks_total",
        &[("trigger", "fast"), ("route", "iris")],
    );
    assert_eq!(fast.iter().sum::<f64>(), 1.0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_two_routes_share_has_a_window_per_route() {
    let routes = [
        route("iris")
            .when("{ model: iris }")
            .rollout("{ stable: shared }"),
        route("mnist")
            .when("{ model: mnist }")
            .rollout("{ stable: shared }"),
    ];
    let h = Routed::start(&["shared"], &routes).await;
    for _ in 0..3 {
        h.infer("iris").await;
    }
    for _ in 0..5 {
        h.infer("mnist").await;
    }
    assert_eq!(h.backend("shared").hits(), 8);
    for (name, n) in [("iris", 3), ("mnist", 5)] {
        let s = h
            .wait_status(name, &format!("{n} requests in {name}'s window"), |s| {
                s["window"]["stable"]["requests"].as_u64() >= Some(n)
            })
            .await;
        let w = &s["window"]["stable"];
        assert_eq!(
            (&w["backend"], &w["requests"]),
            (&"shared".into(), &n.into()),
            "{w}"
        );
    }
}

/// The disagreements listed for route `name`, once there are at least `n`.
async fn diffs(h: &Routed, name: &str, n: usize) -> Vec<Value> {
    eventually(
        &format!("{n} diffs on {name}"),
        Duration::from_millis(20),
        || async {
            let path = format!("/api/v1/routes/{name}/shadow/diffs?limit=100");
            let d = h.admin(Method::GET, &path, "").await.json();
            let listed = d["diffs"].as_array().cloned().unwrap_or_default();
            if listed.len() >= n {
                Ok(listed)
            } else {
                Err(format!("{d:#}"))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_route_lists_its_own_shadow_disagreements() {
    // Every request mirrored, each route comparing in its own protocol; the mocks name
    // themselves in their answers, so a stable and its candidate always disagree.
    let shadow = |stable: &str, candidate: &str| {
        format!(
            "{{ stable: {stable}, candidate: {candidate}, \
             steps: [{{ weight: 0, mirror: 100, hold: manual }}, {{ weight: 100 }}] }}"
        )
    };
    let routes = [
        route("iris")
            .when("{ model: iris }")
            .rollout(shadow("iris-v1", "iris-v2"))
            .shadow("{ compare: { protocol: v2 } }"),
        route("chat")
            .when("{ model: llama-3-8b }")
            .rollout(shadow("chat-a", "chat-b"))
            .shadow("{ compare: { protocol: json } }"),
    ];
    let h = Routed::start(&["iris-v1", "iris-v2", "chat-a", "chat-b"], &routes).await;
    let chat_body = r#"{"model":"llama-3-8b","messages":[{"role":"user","content":"hi"}]}"#;
    for i in 0..3 {
        let id = format!("iris-{i}");
        let a = h
            .send(
                Method::POST,
                "/v2/models/iris/infer",
                &[("x-request-id", &id)],
                crate::support::INFER,
            )
            .await;
        assert_eq!(a.variant(), "iris-v1");
        let id = format!("chat-{i}");
        let a = h
            .send(
                Method::POST,
                "/v1/chat/completions",
                &[("x-request-id", &id)],
                chat_body,
            )
            .await;
        assert_eq!(a.variant(), "chat-a");
    }
    for (name, protocol) in [("iris", "v2"), ("chat", "json")] {
        let listed = diffs(&h, name, 3).await;
        assert!(
            listed.iter().all(|d| d["protocol"] == protocol),
            "{name} compares as {protocol}: {listed:#?}"
        );
        let ids: BTreeSet<&str> = listed
            .iter()
            .filter_map(|d| d["request_id"].as_str())
            .collect();
        let want: BTreeSet<String> = (0..3).map(|i| format!("{name}-{i}")).collect();
        let want: BTreeSet<&str> = want.iter().map(String::as_str).collect();
        assert_eq!(ids, want, "{name}'s diffs: {listed:#?}");
    }
}
