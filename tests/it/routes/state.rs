//! Every route's rollout state survives a restart, each route restored on its own.

use super::harness::{events_of, placement, route, Route, Routed};

const BACKENDS: [&str; 7] = [
    "iris-v1", "iris-v2", "chat-a", "chat-b", "fraud-v6", "embed-a", "embed-b",
];

/// iris: a manual ramp 10 → 50 → 100 %; chat: a canary at 25 %; fraud: nothing to roll
/// out; embed: blue-green.
fn routes(iris_steps: &str) -> Vec<Route> {
    vec![
        route("iris").when("{ model: iris }").rollout(format!(
            "{{ stable: iris-v1, candidate: iris-v2, steps: {iris_steps} }}"
        )),
        route("chat").when("{ model: llama-3-8b }").rollout(
            "{ stable: chat-a, candidate: chat-b, \
             steps: [{ weight: 25, hold: manual }, { weight: 100 }] }",
        ),
        route("fraud")
            .when("{ path_prefix: /fraud/ }")
            .rollout("{ stable: fraud-v6 }"),
        route("embed")
            .when("{ model: e5-small }")
            .rollout("{ stable: embed-a, candidate: embed-b, strategy: blue-green }"),
    ]
}

const RAMP: &str = "[{ weight: 10, hold: manual }, { weight: 50, hold: manual }, { weight: 100 }]";

/// iris at step 1 paused, chat rolled back, embed promoted, fraud idle.
async fn spread(h: &Routed) {
    for (name, action, body) in [
        ("iris", "promote", ""),
        ("iris", "pause", r#"{"reason":"lunch"}"#),
        ("chat", "rollback", r#"{"reason":"bad answers"}"#),
        ("embed", "promote", ""),
    ] {
        let a = h.control(name, action, body).await;
        assert_eq!(
            a.status,
            http::StatusCode::OK,
            "{action} {name}: {}",
            String::from_utf8_lossy(&a.body)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_comes_back_where_it_was_after_a_restart() {
    let mut h = Routed::start(&BACKENDS, &routes(RAMP)).await;
    spread(&h).await;
    h.shutdown().await;
    h.boot().await;

    let iris = h.status("iris").await;
    assert_eq!(placement(&iris), ("paused".into(), 1, 50.0), "{iris:#}");
    assert_eq!(iris["reason"], "lunch");
    assert!(events_of(&iris, "restored") >= 1, "{:#}", iris["events"]);

    let chat = h.status("chat").await;
    assert_eq!(placement(&chat), ("rolled_back".into(), 0, 0.0), "{chat:#}");
    assert_eq!(chat["reason"], "bad answers");

    let embed = h.status("embed").await;
    let e = placement(&embed);
    assert_eq!((e.0.as_str(), e.2), ("promoted", 100.0), "{embed:#}");

    assert_eq!(placement(&h.status("fraud").await), ("idle".into(), 0, 0.0));

    // The traffic is restored too.
    let chat_by = h.served(20, || h.chat("llama-3-8b")).await;
    assert!(chat_by.iter().all(|b| b == "chat-a"), "{chat_by:?}");
    let body = r#"{"model":"e5-small","input":"x"}"#;
    let embed_by = h
        .served(20, || {
            h.send(http::Method::POST, "/v1/embeddings", &[], body)
        })
        .await;
    assert!(embed_by.iter().all(|b| b == "embed-b"), "{embed_by:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_whose_rollout_changed_while_stopped_starts_over_and_the_others_are_restored() {
    let mut h = Routed::start(&BACKENDS, &routes(RAMP)).await;
    spread(&h).await;
    h.shutdown().await;
    // New steps for iris: a new revision, which its saved state does not apply to.
    h.write_config(&routes(
        "[{ weight: 20, hold: manual }, { weight: 60, hold: manual }, { weight: 100 }]",
    ));
    h.boot().await;

    let iris = h.status("iris").await;
    assert_eq!(
        placement(&iris),
        ("progressing".into(), 0, 20.0),
        "{iris:#}"
    );
    let chat = h.status("chat").await;
    assert_eq!(placement(&chat), ("rolled_back".into(), 0, 0.0), "{chat:#}");
    assert_eq!(chat["reason"], "bad answers");
    let embed = placement(&h.status("embed").await);
    assert_eq!((embed.0.as_str(), embed.2), ("promoted", 100.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_whose_entry_makes_no_sense_starts_on_its_stable_and_the_others_are_restored() {
    let mut h = Routed::start(&BACKENDS, &routes(RAMP)).await;
    spread(&h).await;
    h.shutdown().await;
    // chat's entry says a step its plan does not have.
    let path = h.dir.path().join("state.json");
    let mut file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let chat = file["routes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["route"] == "chat")
        .unwrap();
    chat["step"] = 99.into();
    let evidence = serde_json::to_vec_pretty(&file).unwrap();
    std::fs::write(&path, &evidence).unwrap();
    h.boot().await;

    let chat = h.status("chat").await;
    assert_eq!(placement(&chat), ("paused".into(), 0, 0.0), "{chat:#}");
    let reason = chat["reason"].as_str().unwrap();
    assert!(reason.contains("route chat"), "{reason}");
    assert!(reason.contains("step 99"), "{reason}");
    assert!(reason.contains("state.json.corrupt"), "{reason}");
    assert_eq!(events_of(&chat, "state"), 1, "{:#}", chat["events"]);
    let aside = h.dir.path().join("state.json.corrupt");
    assert_eq!(std::fs::read(aside).unwrap(), evidence);
    let chat_by = h.served(20, || h.chat("llama-3-8b")).await;
    assert!(chat_by.iter().all(|b| b == "chat-a"), "{chat_by:?}");

    // The other routes' entries make sense: they are restored.
    let iris = h.status("iris").await;
    assert_eq!(placement(&iris), ("paused".into(), 1, 50.0), "{iris:#}");
    assert_eq!(iris["reason"], "lunch");
    let embed = placement(&h.status("embed").await);
    assert_eq!((embed.0.as_str(), embed.2), ("promoted", 100.0));
    assert_eq!(placement(&h.status("fraud").await), ("idle".into(), 0, 0.0));

    // Resumed, chat goes on from step 0 at its own split.
    let resumed = h.control("chat", "resume", "").await;
    assert_eq!(resumed.status, http::StatusCode::OK);
    assert_eq!(placement(&resumed.json()), ("progressing".into(), 0, 25.0));
}
