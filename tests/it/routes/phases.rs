//! Several rollouts at once, each in its own phase, each route's traffic split by its
//! own rollout.

use std::collections::BTreeSet;

use http::{Method, StatusCode};

use super::harness::{listed, placement, route, Route, Routed};

const BACKENDS: [&str; 7] = [
    "iris-v1", "iris-v2", "fraud-v6", "chat-a", "chat-b", "embed-a", "embed-b",
];

/// iris: a canary held by hand at 50 %; fraud: nothing to roll out; chat: a three-step
/// canary; embed: blue-green waiting for its switch.
fn routes() -> Vec<Route> {
    vec![
        route("iris").when("{ model: iris }").rollout(
            "{ stable: iris-v1, candidate: iris-v2, \
             steps: [{ weight: 50, hold: manual }, { weight: 100 }] }",
        ),
        route("fraud")
            .when("{ path_prefix: /fraud/ }")
            .rollout("{ stable: fraud-v6 }"),
        route("chat").when("{ model: llama-3-8b }").rollout(
            "{ stable: chat-a, candidate: chat-b, steps: [{ weight: 10, hold: manual }, \
             { weight: 50, hold: manual }, { weight: 100 }] }",
        ),
        route("embed")
            .when("{ model: e5-small }")
            .rollout("{ stable: embed-a, candidate: embed-b, strategy: blue-green }"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_run_their_rollouts_in_different_phases_at_once() {
    let h = Routed::start(&BACKENDS, &routes()).await;
    let promoted = h.control("chat", "promote", r#"{"full": true}"#).await;
    assert_eq!(
        promoted.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&promoted.body)
    );
    assert_eq!(
        promoted.json()["route"],
        "chat",
        "the answer is chat's status"
    );
    assert_eq!(placement(&promoted.json()).0, "promoted");

    let all = h.routes().await;
    let names: BTreeSet<&str> = all.iter().filter_map(|r| r["route"].as_str()).collect();
    assert_eq!(names, BTreeSet::from(["chat", "embed", "fraud", "iris"]));

    let iris = listed(&all, "iris");
    assert_eq!(placement(iris), ("progressing".into(), 0, 50.0), "{iris:#}");
    assert_eq!(
        (&iris["stable"], &iris["candidate"], &iris["steps"]),
        (&"iris-v1".into(), &"iris-v2".into(), &2.into())
    );
    assert_eq!(iris["manual_hold"], true, "{iris:#}");

    let fraud = listed(&all, "fraud");
    assert_eq!(placement(fraud), ("idle".into(), 0, 0.0), "{fraud:#}");
    assert_eq!(fraud["stable"], "fraud-v6");
    assert!(fraud["candidate"].is_null(), "{fraud:#}");

    let chat = listed(&all, "chat");
    assert_eq!(
        (placement(chat).0.as_str(), placement(chat).2),
        ("promoted", 100.0),
        "{chat:#}"
    );

    let embed = listed(&all, "embed");
    assert_eq!(
        placement(embed),
        ("progressing".into(), 0, 0.0),
        "{embed:#}"
    );
    assert_eq!(
        (&embed["strategy"], &embed["steps"]),
        (&"blue-green".into(), &1.into())
    );

    // Each route's own status path says the same as the list.
    for name in ["iris", "fraud", "chat", "embed"] {
        let own = h.status(name).await;
        assert_eq!(own["route"], name);
        assert_eq!(placement(&own), placement(listed(&all, name)), "{name}");
    }
    // The events are each route's own: only chat was promoted.
    let promotions = |s: &serde_json::Value| {
        s["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "promoted")
            .count()
    };
    assert_eq!(promotions(chat), 1, "{:#}", chat["events"]);
    for name in ["iris", "fraud", "embed"] {
        assert_eq!(promotions(listed(&all, name)), 0, "{name} was promoted");
    }

    // And the traffic follows each route's phase.
    let iris_by = h.served(60, || h.infer("iris")).await;
    let iris_set: BTreeSet<&str> = iris_by.iter().map(String::as_str).collect();
    assert_eq!(
        iris_set,
        BTreeSet::from(["iris-v1", "iris-v2"]),
        "a 50 % split over 60 requests"
    );
    let chat_by = h.served(20, || h.chat("llama-3-8b")).await;
    assert!(chat_by.iter().all(|b| b == "chat-b"), "{chat_by:?}");
    let embed_body = r#"{"model":"e5-small","input":"hello"}"#;
    let embed_by = h
        .served(20, || {
            h.send(Method::POST, "/v1/embeddings", &[], embed_body)
        })
        .await;
    assert!(embed_by.iter().all(|b| b == "embed-a"), "{embed_by:?}");
    let fraud_by = h
        .served(10, || h.send(Method::POST, "/fraud/score", &[], "{}"))
        .await;
    assert!(fraud_by.iter().all(|b| b == "fraud-v6"), "{fraud_by:?}");
}
