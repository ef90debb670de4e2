//! The `output_drift` and `accuracy` gates decide a rollout: a candidate whose label mix
//! moves away from the stable's, or whose predictions are less often right on the labels
//! posted to `/api/v1/feedback`, is rolled back by the analysis; one that predicts like
//! the stable is promoted. In the shadow phase the mirrored answers are the candidate's
//! outputs, so a drifting candidate is rolled back before any user sees it.
//!
//! The model servers are the demo's: label 1 when `weight · sum(row) + bias ≥ 0`. The
//! stable is the default model; a bad candidate has both signs flipped, so it predicts
//! the other class for every row.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use switchyard::demo::model::{Model, ModelServer};

use crate::support::config::{step, Analysis, TestConfig};
use crate::support::{eventually_within, Answer, ProxyHarness};

/// The sums of the rows the tests send, in turn: the stable labels them 0, 1, 1, 1.
const SUMS: [f64; 4] = [-1.0, 0.5, 1.0, 2.0];

/// How long a test drives traffic before it gives up on the rollout ending.
const LIMIT: Duration = Duration::from_secs(30);

/// The stable's class for a row summing to `sum`: the ground truth the tests post.
fn truth(sum: f64) -> i64 {
    let m = Model::default();
    i64::from(m.weight * sum + m.bias >= 0.0)
}

/// A candidate that predicts the other class for every row the tests send.
fn flipped() -> Model {
    let m = Model::default();
    Model {
        weight: -m.weight,
        bias: -m.bias,
    }
}

/// A V2 inference body of one row of three features summing to `sum`.
fn row(sum: f64) -> String {
    json!({ "inputs": [{ "name": "x", "shape": [1, 3], "datatype": "FP32", "data": [sum, 0.0, 0.0] }] })
        .to_string()
}

/// The class an answer predicted (the demo model's `label` output).
fn predicted(a: &Answer) -> i64 {
    let body = a.json();
    body["outputs"][1]["data"][0]
        .as_i64()
        .unwrap_or_else(|| panic!("no label in {body:#}"))
}

/// Starts switchyard in front of the default model as `blue` and `candidate` as `green`.
async fn harness(config: &TestConfig, candidate: Model) -> ProxyHarness {
    let blue = ModelServer::start("blue", Model::default()).await.unwrap();
    let green = ModelServer::start("green", candidate).await.unwrap();
    ProxyHarness::start_with(config, blue, green).await
}

/// Sends one request for a row summing to `sum`, with `headers`; it must succeed.
async fn infer(h: &ProxyHarness, sum: f64, headers: &[(&str, &str)]) -> Answer {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let a = h
        .send(Method::POST, "/v2/models/m/infer", &all, &row(sum))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    a
}

/// Runs `round` (which sends traffic) until the rollout's phase is `want`, at most
/// [`LIMIT`]; the status then. Ending in the other final phase fails at once.
async fn drive_until<F, Fut>(h: &ProxyHarness, want: &str, mut round: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let what = format!("phase {want}");
    eventually_within(&what, Duration::from_millis(1), LIMIT, || {
        let sent = round();
        async move {
            sent.await;
            let s = h.status().await;
            match s["phase"].as_str() {
                Some(p) if p == want => Ok(s),
                Some("promoted" | "rolled_back") => panic!("ended otherwise: {s:#}"),
                _ => Err(format!("status: {s:#}")),
            }
        }
    })
    .await
}

/// The gate `name` of the last evaluation in `status`.
fn gate<'a>(status: &'a Value, name: &str) -> &'a Value {
    let gates = status["analysis"]["last"]["gates"]
        .as_array()
        .unwrap_or_else(|| panic!("no evaluation: {status:#}"));
    gates
        .iter()
        .find(|g| g["gate"] == name)
        .unwrap_or_else(|| panic!("no {name} gate: {status:#}"))
}

/// The figure a gate result shows.
fn figure(g: &Value) -> f64 {
    g["value"]
        .as_f64()
        .unwrap_or_else(|| panic!("no figure: {g:#}"))
}

// === output_drift ===

/// Half the users on the candidate, gated on output drift only; the reference is the
/// stable's first 50 answers. The step passes (and so promotes) only on a passing
/// evaluation; no watch after promotion, so the status keeps the evaluation that promoted.
/// One user on each side stands for all of that side's users: no share bound.
fn drift_canary() -> TestConfig {
    let analysis = Analysis::new("200ms", "30s", 20, 2).after_promotion("0s");
    TestConfig::new()
        .steps([step(50.0).hold("1s")])
        .sticky_header("x-user-id")
        .monitor(json!({ "sample": 100, "reference": { "requests": 50 } }))
        .analysis(analysis.max_client_share(1.0))
        .gate("output_drift", json!({ "max": 0.2 }))
}

/// A user the sticky split sends to `blue` and one it sends to `green`, found by asking.
async fn one_user_each(h: &ProxyHarness) -> (String, String) {
    let (mut blue, mut green) = (None, None);
    for i in 0..200 {
        let user = format!("user-{i}");
        let a = infer(h, SUMS[i % SUMS.len()], &[("x-user-id", &user)]).await;
        match a.variant() {
            "blue" => blue = blue.or(Some(user)),
            "green" => green = green.or(Some(user)),
            other => panic!("served by {other:?}"),
        }
        if let (Some(b), Some(g)) = (&blue, &green) {
            return (b.clone(), g.clone());
        }
    }
    panic!("200 users and not one on each side of a 50 % split");
}

/// Every row once as each of the two users: both sides see exactly the same inputs, so
/// only the model can make their outputs differ.
async fn same_rows_to_both(h: &ProxyHarness, users: &(String, String)) {
    for sum in SUMS {
        for user in [&users.0, &users.1] {
            infer(h, sum, &[("x-user-id", user)]).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_whose_label_mix_shifts_is_rolled_back_by_output_drift() {
    let h = harness(&drift_canary(), flipped()).await;
    let users = one_user_each(&h).await;
    let s = drive_until(&h, "rolled_back", || same_rows_to_both(&h, &users)).await;

    let reason = s["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("output drift"), "{s:#}");
    let drift = gate(&s, "output_drift");
    assert_eq!(drift["outcome"], "fail", "{drift:#}");
    assert!(figure(drift) > 0.2, "{drift:#}");
    assert_eq!(s["analysis"]["last"]["verdict"], "fail");
    assert_eq!(s["weight"], 0.0, "all traffic back on the stable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_that_predicts_like_the_stable_passes_output_drift_and_is_promoted() {
    let h = harness(&drift_canary(), Model::default()).await;
    let users = one_user_each(&h).await;
    let s = drive_until(&h, "promoted", || same_rows_to_both(&h, &users)).await;

    assert_eq!(s["analysis"]["last"]["verdict"], "pass", "{s:#}");
    let drift = gate(&s, "output_drift");
    assert_eq!(drift["outcome"], "pass", "{drift:#}");
    assert!(figure(drift) < 0.2, "{drift:#}");
    assert_eq!(s["weight"], 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drifting_candidate_is_rolled_back_while_it_only_shadows() {
    let config = TestConfig::new()
        .steps([step(0.0).mirror(100.0).manual(), step(100.0)])
        .monitor(json!({ "sample": 100, "reference": { "requests": 50 } }))
        // The test's one client stands for every user: no share bound.
        .analysis(Analysis::new("200ms", "30s", 20, 2).max_client_share(1.0))
        .gate("output_drift", json!({ "max": 0.2 }));
    let h = harness(&config, flipped()).await;
    let hr = &h;
    let s = drive_until(&h, "rolled_back", move || async move {
        for sum in SUMS {
            let a = infer(hr, sum, &[]).await;
            assert_eq!(
                a.variant(),
                "blue",
                "users stay on the stable while shadowing"
            );
        }
    })
    .await;

    assert_eq!(s["step"], 0, "rolled back from the shadow step: {s:#}");
    let reason = s["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("output drift"), "{s:#}");
    let drift = gate(&s, "output_drift");
    assert_eq!(drift["outcome"], "fail", "{drift:#}");
    assert!(figure(drift) > 0.2, "{drift:#}");
    // The candidate's outputs were its answers to the mirrored copies: nothing else
    // reached it.
    let green = h.green.behavior();
    assert!(green.shadow_hits() > 0);
    assert_eq!(green.hits(), green.shadow_hits());
}

/// One request from each of the users `ids`, their rows spread evenly over sums from -2
/// to 2 (a quarter of them labelled 0, each score its own).
async fn honest(h: &ProxyHarness, ids: std::ops::Range<usize>) {
    for i in ids {
        let sum = -2.0 + 4.0 * (i as f64 * 0.618_033_988_7).fract();
        infer(h, sum, &[("x-user-id", &format!("honest-{i}"))]).await;
    }
}

/// One user whose sticky key lands on the candidate floods it with rows the models both
/// label 0, among honest users who send one request each: unbounded, the flood makes the
/// candidate's label mix its own and a healthy candidate is rolled back; with the
/// default `max_client_share` the flood fills at most a tenth of what the gate reads.
async fn one_user_floods_the_candidate(max_client_share: Option<f64>) -> Value {
    // 300 samples before a figure: with fewer, the score's PSI over ten bins is noisy
    // enough to fail a healthy candidate now and then on its own.
    let mut analysis = Analysis::new("200ms", "30s", 300, 2);
    if let Some(share) = max_client_share {
        analysis = analysis.max_client_share(share);
    }
    let config = TestConfig::new()
        .steps([step(50.0).manual(), step(100.0)])
        .sticky_header("x-user-id")
        // A reference of 200 answers, built before the flood.
        .monitor(json!({ "sample": 100, "reference": { "requests": 200 } }))
        .analysis(analysis)
        .gate("output_drift", json!({ "max": 0.2 }));
    let h = harness(&config, Model::default()).await;
    let (_, attacker) = one_user_each(&h).await;
    // Each round: ten honest users, and eight requests of the one user.
    let round = |n: usize| {
        let (h, attacker) = (&h, &attacker);
        async move {
            honest(h, 800 + n * 10..810 + n * 10).await;
            for _ in 0..8 {
                infer(h, SUMS[0], &[("x-user-id", attacker)]).await;
            }
        }
    };
    // Ordinary traffic first, then the flood within it: 320 requests of one user.
    honest(&h, 0..800).await;
    for n in 0..40 {
        round(n).await;
    }
    // The flood goes on until a decided evaluation, not midway through a run of
    // failures, or the end of the rollout: on a machine so busy that the observers
    // dropped samples (counted, never waited for), the windows still fill.
    let first = h.status().await["analysis"]["last"]["at"].clone();
    let next = std::cell::Cell::new(40);
    eventually_within(
        "an evaluation",
        Duration::from_millis(50),
        LIMIT,
        || async {
            let n = next.replace(next.get() + 1);
            round(n).await;
            let s = h.status().await;
            let evaluated = s["analysis"]["last"]["at"] != first
                && s["analysis"]["failures"] != 1
                && s["analysis"]["last"]["verdict"] != "inconclusive";
            match evaluated || s["phase"] != "progressing" {
                true => Ok(()),
                false => Err(format!("{s:#}")),
            }
        },
    )
    .await;
    let mut s = h.status().await;
    s["left_out"] = json!(h.metrics_text().await.lines().any(|l| {
        l.starts_with("switchyard_samples_left_out_total")
            && l.contains("green")
            && !l.ends_with(" 0")
    }));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_flooding_the_candidate_leaves_a_healthy_candidate_progressing() {
    let s = one_user_floods_the_candidate(None).await;
    assert_eq!(s["phase"], "progressing", "{s:#}");
    let drift = gate(&s, "output_drift");
    assert_eq!(drift["outcome"], "pass", "{drift:#}");
    assert!(figure(drift) < 0.2, "{drift:#}");
    assert_eq!(s["left_out"], true, "the flood's excess is counted: {s:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_share_bound_the_same_flood_rolls_a_healthy_candidate_back() {
    let s = one_user_floods_the_candidate(Some(1.0)).await;
    assert_eq!(s["phase"], "rolled_back", "{s:#}");
    assert!(
        s["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("output drift"),
        "{s:#}"
    );
}

// === accuracy ===

/// Half the requests on the candidate at random, gated on accuracy from posted labels:
/// at least 90 % right and at most 5 points below the stable.
fn accuracy_canary() -> TestConfig {
    TestConfig::new()
        .steps([step(50.0).hold("1s")])
        .feedback(json!({ "retain": "1h" }))
        // One labeller is the only client here: no bound on a client's share, so that the
        // sequential drop gets the labels it needs to decide.
        .analysis(
            Analysis::new("200ms", "30s", 10, 2)
                .after_promotion("0s")
                .max_client_share(1.0),
        )
        .gate("accuracy", json!({ "min": 0.9, "max_drop": 0.2 }))
}

/// A client that labels its own requests: each round sends the rows with ids of its own,
/// notes which backend answered and whether it was right, and posts the truth for the
/// previous round's requests (whose predictions the feedback store has had a round's
/// time to remember).
struct Labeller<'a> {
    h: &'a ProxyHarness,
    sent: usize,
    waiting: Vec<Value>,
    /// (backend, right) per request sent.
    seen: Vec<(String, bool)>,
    matched: u64,
}

impl<'a> Labeller<'a> {
    fn new(h: &'a ProxyHarness) -> Labeller<'a> {
        Labeller {
            h,
            sent: 0,
            waiting: Vec::new(),
            seen: Vec::new(),
            matched: 0,
        }
    }

    /// One round: the rows sent, the previous round's labels posted.
    async fn round(&mut self) {
        let due = std::mem::take(&mut self.waiting);
        for sum in SUMS {
            let id = format!("acc-{}", self.sent);
            self.sent += 1;
            let a = infer(self.h, sum, &[("x-request-id", &id)]).await;
            let right = predicted(&a) == truth(sum);
            self.seen.push((a.variant().to_string(), right));
            self.waiting
                .push(json!({ "request_id": id, "label": truth(sum) }));
        }
        if due.is_empty() {
            return;
        }
        let body = json!({ "feedback": due }).to_string();
        let joined = self
            .h
            .admin(Method::POST, "/api/v1/feedback", None, &body)
            .await;
        assert_eq!(joined.status, StatusCode::OK, "{:?}", joined.body);
        self.matched += joined.json()["matched"].as_u64().unwrap_or(0);
    }

    /// The share of `backend`'s answers that were right, as the test saw them.
    fn accuracy(&self, backend: &str) -> f64 {
        let mine: Vec<bool> = self
            .seen
            .iter()
            .filter(|(b, _)| b == backend)
            .map(|(_, r)| *r)
            .collect();
        mine.iter().filter(|r| **r).count() as f64 / mine.len().max(1) as f64
    }
}

/// A candidate a quarter wrong (its threshold moved: the row summing to 0.5 gets the other
/// class) is rolled back while it only shadows: its mirrored answers are remembered for
/// the labels like the stable's, and no user ever gets one of its answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_wrong_on_labels_is_rolled_back_in_its_shadow_step_before_any_user() {
    let config = TestConfig::new()
        .steps([step(0.0).mirror(100.0).manual(), step(100.0)])
        .feedback(json!({ "retain": "1h" }))
        // The test's one client stands for every user: no share bound.
        .analysis(Analysis::new("200ms", "30s", 10, 2).max_client_share(1.0))
        .gate("accuracy", json!({ "min": 0.9, "max_drop": 0.05 }));
    let quarter_wrong = Model {
        bias: -0.5,
        ..Model::default()
    };
    assert_eq!(quarter_wrong.label(&[0.5]), 1 - truth(0.5));
    let h = harness(&config, quarter_wrong).await;
    let labeller = tokio::sync::Mutex::new(Labeller::new(&h));
    let l = &labeller;
    let s = drive_until(&h, "rolled_back", move || async move {
        l.lock().await.round().await
    })
    .await;
    assert_eq!(s["step"], 0, "rolled back from the shadow step: {s:#}");
    let reason = s["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("accuracy"), "{s:#}");
    // The drop is judged on pairs: both models' answers to the same labelled requests.
    let drop = gate(&s, "accuracy_drop");
    assert_eq!(
        drop["test"], "mixture SPRT (paired, discordant pairs)",
        "{drop:#}"
    );
    assert!(drop["samples"].as_u64().unwrap_or(0) > 0, "{drop:#}");
    let l = labeller.into_inner();
    assert_eq!(l.accuracy("blue"), 1.0);
    assert!(l.seen.iter().all(|(b, _)| b == "blue"), "no user got green");
    let green = h.green.behavior();
    assert!(green.shadow_hits() > 0);
    assert_eq!(
        green.hits(),
        green.shadow_hits(),
        "only mirrored copies reached green"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_less_often_right_on_posted_labels_is_rolled_back_by_accuracy() {
    let h = harness(&accuracy_canary(), flipped()).await;
    let labeller = tokio::sync::Mutex::new(Labeller::new(&h));
    let l = &labeller;
    let s = drive_until(&h, "rolled_back", move || async move {
        l.lock().await.round().await
    })
    .await;
    let l = labeller.into_inner();
    assert_eq!(l.accuracy("blue"), 1.0);
    assert_eq!(l.accuracy("green"), 0.0);
    // Labels that came before their prediction (the observers lagging on a busy machine)
    // are joined once it is remembered, after the post has answered: count what the
    // store scored, not what the posts' answers said.
    let scored = s["monitoring"]["accuracy"]
        .as_array()
        .and_then(|a| a.iter().find(|b| b["backend"] == "green"))
        .and_then(|g| g["labels"].as_u64())
        .unwrap_or(0);
    assert!(
        scored >= 10,
        "{scored} of the candidate's labels scored ({} matched when posted): {s:#}",
        l.matched
    );

    let reason = s["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("accuracy"), "{s:#}");
    let min = gate(&s, "accuracy");
    assert_eq!(min["outcome"], "fail", "{min:#}");
    assert_eq!(figure(min), 0.0, "{min:#}");
    // The drop is decided sequentially: on the few labels that failed `min` it has
    // shown the candidate beyond `max_drop`, or is still deciding, never passed.
    let drop = gate(&s, "accuracy_drop");
    assert!(
        drop["outcome"] == "fail" || drop["outcome"] == "inconclusive",
        "{drop:#}"
    );
    assert_eq!(
        figure(drop),
        1.0,
        "all right on the stable, none on the candidate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_as_accurate_as_the_stable_is_promoted() {
    let h = harness(&accuracy_canary(), Model::default()).await;
    let labeller = tokio::sync::Mutex::new(Labeller::new(&h));
    let l = &labeller;
    let s = drive_until(&h, "promoted", move || async move {
        l.lock().await.round().await
    })
    .await;
    let l = labeller.into_inner();
    assert_eq!((l.accuracy("blue"), l.accuracy("green")), (1.0, 1.0));

    assert_eq!(s["analysis"]["last"]["verdict"], "pass", "{s:#}");
    let min = gate(&s, "accuracy");
    assert_eq!(min["outcome"], "pass", "{min:#}");
    assert_eq!(figure(min), 1.0, "{min:#}");
    let drop = gate(&s, "accuracy_drop");
    assert_eq!(drop["outcome"], "pass", "{drop:#}");
    assert_eq!(figure(drop), 0.0, "{drop:#}");
}

/// A client that knows other requests' ids (here: every other one a labeller got back)
/// resends each with a row the models get wrong until the candidate answers it, hoping
/// to put that wrong answer in place of the one the label is for. The first exchange
/// keeps its id: the labels for replayed ids are counted `ambiguous` and never scored, so
/// the healthy candidate is judged on the others, and promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_request_ids_do_not_poison_a_healthy_candidates_accuracy() {
    #[derive(Default)]
    struct Attack {
        waiting: Vec<Value>,
        /// Ids resent until the candidate answered them.
        replayed: u64,
        matched: u64,
        ambiguous: u64,
        /// Labels that came before their prediction (the observers lagging on a busy
        /// machine): joined to the first exchange when it was remembered.
        waited: u64,
        answers: Vec<Value>,
    }
    // The attacker and the labeller share one address here: no bound on a client's
    // share, so that what is tested is the binding of ids alone.
    let config = accuracy_canary().analysis(
        Analysis::new("200ms", "30s", 10, 2)
            .after_promotion("0s")
            .max_client_share(1.0),
    );
    let h = harness(&config, Model::default()).await;
    let attack = tokio::sync::Mutex::new(Attack::default());
    let (a, hh) = (&attack, &h);
    let s = drive_until(&h, "promoted", move || async move {
        let mut a = a.lock().await;
        let due = std::mem::take(&mut a.waiting);
        for (i, sum) in SUMS.into_iter().enumerate() {
            let served = infer(hh, sum, &[]).await;
            let id = served.headers["x-request-id"].to_str().unwrap().to_string();
            a.waiting
                .push(json!({ "request_id": id, "label": truth(sum) }));
            if i % 2 == 1 {
                continue;
            }
            // A row whose class is the other one, under the same id.
            let wrong = if truth(sum) == 1 { -1.0 } else { 2.0 };
            for _ in 0..30 {
                let r = infer(hh, wrong, &[("x-request-id", &id)]).await;
                assert_eq!(r.headers["x-request-id"], id.as_str());
                if r.variant() == "green" {
                    a.replayed += 1;
                    break;
                }
            }
        }
        if due.is_empty() {
            return;
        }
        let body = json!({ "feedback": due }).to_string();
        let joined = hh
            .admin(Method::POST, "/api/v1/feedback", None, &body)
            .await;
        assert_eq!(joined.status, StatusCode::OK, "{:?}", joined.body);
        let j = joined.json();
        a.matched += j["matched"].as_u64().unwrap_or(0);
        a.ambiguous += j["ambiguous"].as_u64().unwrap_or(0);
        a.waited += j["waiting"].as_u64().unwrap_or(0);
        a.answers.push(j);
    })
    .await;
    let a = attack.into_inner();
    assert!(a.replayed >= 10, "{} ids replayed", a.replayed);
    // The last round's labels are not posted.
    assert!(
        a.ambiguous + a.waited + 2 >= a.replayed,
        "{} ambiguous labels of {} replayed: {:?}",
        a.ambiguous,
        a.replayed,
        a.answers
    );
    assert!(
        a.matched + a.waited >= 10,
        "{} labels matched, {} waited",
        a.matched,
        a.waited
    );

    let min = gate(&s, "accuracy");
    assert_eq!(min["outcome"], "pass", "{min:#}");
    assert_eq!(figure(min), 1.0, "no replayed answer was scored: {min:#}");
    let metrics = h.metrics_text().await;
    assert!(
        metrics.contains(r#"switchyard_feedback_total{result="ambiguous",route="default"}"#),
        "{metrics}"
    );
}
