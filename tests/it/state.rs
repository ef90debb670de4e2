//! The rollout state file as an SRE meets it on a running proxy: one that cannot be used
//! after a rollback never sends users back to the rolled-back candidate, and one that
//! cannot be written shows in the status, the metrics and the controls' answers.

use crate::support;

use http::{Method, StatusCode};
use support::config::TestConfig;
use support::{has_event, ProxyHarness};

/// Requests from `n` different users; the variants that answered them.
async fn served(h: &ProxyHarness, n: usize) -> Vec<String> {
    let mut by = Vec::new();
    for i in 0..n {
        let a = h.infer(Some(&format!("user-{i}"))).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        by.push(a.variant().to_string());
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_candidate_gets_no_traffic_after_a_restart_on_a_corrupt_state_file() {
    let mut h = ProxyHarness::start(&TestConfig::canary(50.0)).await;
    assert!(served(&h, 40).await.iter().any(|v| v == "green"));
    let body = r#"{"reason":"wrong answers"}"#;
    let a = h.admin(Method::POST, "/api/v1/rollback", None, body).await;
    assert_eq!(a.status, StatusCode::OK);
    h.shutdown().await;

    // The file is damaged while switchyard is down: its end is lost.
    let path = h.dir.path().join("state.json");
    let good = std::fs::read(&path).unwrap();
    let damaged = good[..good.len() - 40].to_vec();
    std::fs::write(&path, &damaged).unwrap();
    let green_before = h.green.behavior().hits();
    h.boot().await;

    let by = served(&h, 100).await;
    assert!(by.iter().all(|v| v == "blue"), "{by:?}");
    assert_eq!(h.green.behavior().hits(), green_before);
    let s = h.status().await;
    let placement = (
        s["phase"].as_str(),
        s["weight"].as_f64(),
        s["mirror"].as_f64(),
    );
    assert_eq!(placement, (Some("paused"), Some(0.0), Some(0.0)), "{s:#}");
    let aside = h.dir.path().join("state.json.corrupt");
    let reason = s["reason"].as_str().unwrap();
    assert!(reason.contains(&aside.display().to_string()), "{reason}");
    assert!(
        has_event(&s, "state", "cannot be used"),
        "{:#}",
        s["events"]
    );
    // The evidence of the rollback is kept as it was found.
    let kept = std::fs::read(&aside).unwrap();
    assert_eq!(kept, damaged);
    assert!(String::from_utf8_lossy(&kept).contains("\"rolled_back\""));

    // The operator decides: the rollback stands.
    let a = h.admin(Method::POST, "/api/v1/rollback", None, body).await;
    assert_eq!(
        (a.status, &a.json()["phase"]),
        (StatusCode::OK, &"rolled_back".into())
    );
    assert!(served(&h, 20).await.iter().all(|v| v == "blue"));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_that_cannot_be_written_shows_and_controls_say_they_are_not_persisted() {
    // A regular file where the state's directory should be: no write succeeds, not even
    // as root.
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("state");
    std::fs::write(&blocker, "not a directory").unwrap();
    let path = blocker.join("rollout.json");
    let mut h = ProxyHarness::start(&TestConfig::canary(50.0).state_path(&path)).await;

    let s = h.status().await;
    assert_eq!(s["state"]["path"], path.display().to_string());
    let error = s["state"]["last_error"].as_str().expect("the write failed");
    assert!(error.contains(&blocker.display().to_string()), "{error}");
    assert!(s["state"]["last_written"].is_null());
    const ERRORS: &str = "switchyard_state_write_errors_total";
    h.wait_metric(ERRORS, 1.0).await;
    // The series is the process's: count this harness's next failed write from here.
    let before = h.metric(ERRORS).await;

    // A control is in force, and its answer says it is not persisted.
    let a = h.admin(Method::POST, "/api/v1/pause", None, "").await;
    assert_eq!(a.status, StatusCode::OK);
    let answer = a.json();
    assert_eq!(answer["phase"], "paused");
    assert_eq!(answer["persisted"], false);
    let warning = answer["warning"].as_str().unwrap();
    assert!(
        warning.starts_with("in force but not persisted: "),
        "{warning}"
    );
    assert!(
        warning.contains(&blocker.display().to_string()),
        "{warning}"
    );
    assert_eq!(h.status().await["phase"], "paused");
    h.wait_metric(ERRORS, before + 1.0).await;

    // Once the directory can be made, the next write succeeds and clears the error.
    std::fs::remove_file(&blocker).unwrap();
    let a = h.admin(Method::POST, "/api/v1/resume", None, "").await;
    let answer = a.json();
    assert_eq!(
        (a.status, &answer["phase"]),
        (StatusCode::OK, &"progressing".into())
    );
    assert!(answer.get("persisted").is_none() && answer.get("warning").is_none());
    assert!(answer["state"]["last_error"].is_null());
    assert!(answer["state"]["last_written"].is_string());
    assert!(path.exists());
    h.shutdown().await;
}
