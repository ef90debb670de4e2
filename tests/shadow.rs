//! Shadow traffic: copies go to the candidate, answers are compared off the live path,
//! and a slow or failing shadow never touches the live response.

mod support;

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::Value;
use support::{shadow, Harness};
use switchyard::demo::model::{Model, ModelServer};

const INFER: &str =
    r#"{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[0.1,0.2,0.3,-1,-2,-3]}]}"#;

async fn comparisons(h: &Harness, n: usize) -> Vec<Value> {
    // The comparison finishes after the live answer: wait for it (bounded).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let d = h
            .admin(Method::GET, "/api/v1/shadow/diffs?limit=100", None, "")
            .await
            .json();
        let diffs = d["diffs"].as_array().unwrap().clone();
        if diffs.len() >= n || tokio::time::Instant::now() > deadline {
            return diffs;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_copies_reach_the_candidate_and_disagreements_are_listed() {
    let h = Harness::start(&shadow("")).await;
    let a = h
        .send(
            Method::POST,
            "/echo?q=1",
            &[("x-request-id", "shadow-1")],
            "same body",
        )
        .await;
    assert_eq!((a.status, a.variant()), (StatusCode::OK, "blue"));
    let diffs = comparisons(&h, 1).await;
    assert_eq!(diffs.len(), 1, "the echo answers differ by backend name");
    let d = &diffs[0];
    assert_eq!(d["request_id"], "shadow-1");
    let paths: Vec<&str> = d["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["path"].as_str().unwrap())
        .collect();
    // Same method, path, query and body reached both; the shadow copy is marked.
    assert!(paths.contains(&"/backend"), "{paths:?}");
    assert!(paths.contains(&"/headers/x-switchyard-shadow"), "{paths:?}");
    assert!(
        !paths
            .iter()
            .any(|p| p.starts_with("/body") || p.starts_with("/path") || p.starts_with("/query")),
        "{paths:?}"
    );
    assert_eq!(d["shadow"]["body"]["body"], "same body");
    assert_eq!(h.green.behavior().shadow_hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_models_agree_despite_random_ids_and_different_ones_do_not() {
    let blue = ModelServer::start("blue", Model::default()).await.unwrap();
    let green = ModelServer::start(
        "green",
        Model {
            weight: 3.0,
            bias: 0.5,
        },
    )
    .await
    .unwrap();
    let h = Harness::start_with(&shadow(""), blue, green).await;
    for _ in 0..5 {
        assert_eq!(
            h.send(Method::POST, "/v2/models/m/infer", &[], INFER)
                .await
                .status,
            StatusCode::OK
        );
    }
    let diffs = comparisons(&h, 5).await;
    assert_eq!(
        diffs.len(),
        5,
        "a different model disagrees on every request"
    );
    let d = &diffs[0];
    assert_eq!(d["protocol"], "v2");
    assert!(
        d["differences"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["path"] != "/id"),
        "{d:#}"
    );
    let probs = d["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "probabilities")
        .unwrap();
    assert_eq!(probs["agree"], false);
    assert!(probs["max_abs_diff"].as_f64().unwrap() > 0.01);

    // Same model: the random `id` in each answer does not make them disagree.
    let same = Harness::start(&shadow("")).await;
    for _ in 0..5 {
        same.send(Method::POST, "/v2/models/m/infer", &[], INFER)
            .await;
    }
    let tally = same
        .wait_shadow("5 comparisons", |t| t["agree"].as_u64().unwrap_or(0) >= 5)
        .await;
    assert_eq!(tally["agree"], 5, "{tally}");
    assert_eq!(tally["disagree"], 0, "identical models disagreed: {tally}");
    assert!(comparisons(&same, 0).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_shadow_never_delays_the_live_answer_and_excess_mirrors_are_dropped() {
    let h = Harness::start(&shadow("  max_in_flight: 4")).await;
    h.green.behavior().set_delay(Duration::from_secs(3));
    for _ in 0..20 {
        let a = h.send(Method::POST, "/v2/models/m/infer", &[], INFER).await;
        assert_eq!((a.status, a.variant()), (StatusCode::OK, "blue"));
    }
    // All twenty live answers came back while the shadows were still sleeping: had the
    // live path waited for its shadow, comparisons would already be counted.
    let tally = &h.status().await["window"]["candidate"]["shadow"];
    assert_eq!(
        tally["agree"], 0,
        "a comparison finished before the live answers: {tally}"
    );
    assert_eq!(tally["incomparable"], 0, "{tally}");
    // Only max_in_flight copies were sent; the rest were dropped, not queued.
    assert_eq!(h.green.behavior().shadow_hits(), 4);
    // And those four do finish, later, and agree (identical models).
    let tally = h
        .wait_shadow("the slow shadows", |t| {
            t["agree"].as_u64().unwrap_or(0) >= 4
        })
        .await;
    assert_eq!(tally["agree"], 4, "{tally}");
    let m = h.admin(Method::GET, "/metrics", None, "").await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains("switchyard_shadow_requests_total{outcome=\"dropped\"}"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_unreachable_shadow_is_incomparable_and_invisible_to_users() {
    let h = Harness::start(&shadow("")).await;
    h.green.behavior().set_error_rate(1.0);
    for _ in 0..10 {
        let a = h.send(Method::POST, "/v2/models/m/infer", &[], INFER).await;
        assert_eq!((a.status, a.variant()), (StatusCode::OK, "blue"));
        assert_eq!(a.json()["outputs"][0]["name"], "probabilities");
    }
    h.wait_shadow("10 incomparable", |t| {
        t["incomparable"].as_u64().unwrap_or(0) >= 10
    })
    .await;
    h.green.stop();
    for _ in 0..10 {
        let a = h.send(Method::POST, "/v2/models/m/infer", &[], INFER).await;
        assert_eq!((a.status, a.variant()), (StatusCode::OK, "blue"));
    }
    // A status mismatch or an unreachable shadow is never agreement.
    let shadow = &h.status().await["window"]["candidate"]["shadow"];
    assert_eq!(shadow["agree"], 0, "{shadow}");
    assert_eq!(shadow["disagree"], 0, "{shadow}");
    assert!(shadow["incomparable"].as_u64().unwrap() >= 10, "{shadow}");
}
