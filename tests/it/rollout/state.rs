//! Persisted state: a restart of the same revision resumes where the rollout was; a state
//! file that cannot be used starts the route paused on its stable and is kept aside; one
//! that cannot be written shows in the status.

use std::path::{Path, PathBuf};

use serde_json::Value;
use switchyard::rollout::Action;

use super::harness::{assert_not_allowed, kinds, timed_then_manual, ControllerHarness};
use crate::support::config::{step, TestConfig};

#[tokio::test(start_paused = true)]
async fn state_survives_a_restart_of_the_same_revision_and_a_promotion_of_the_same_models() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("rollout.json");
    let config = timed_then_manual().state_path(&path);

    let h = ControllerHarness::start(&config);
    let s = h.status_at(25.0).await;
    assert_eq!((s.phase.as_str(), s.step), ("progressing", 2));
    drop(h);
    assert!(path.exists());

    // Same config: same phase and step, the timeline kept and a `restored` event.
    let h = ControllerHarness::start(&config);
    let s = h.status();
    assert_eq!(
        (s.phase.as_str(), s.step, s.weight),
        ("progressing", 2, 60.0)
    );
    assert_eq!(h.weight_bp(), 6_000);
    assert_eq!(kinds(&s), ["start", "step", "step", "restored"]);
    // Promote and restart again: promoted survives too.
    h.send(Action::Promote { full: true }).await.unwrap();
    drop(h);
    let h = ControllerHarness::start(&config);
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.weight), ("promoted", 100.0));
    drop(h);

    // Changed steps of the promoted rollout (the same stable and candidate): a restart
    // sends nobody back either.
    let changed = TestConfig::new()
        .steps([
            step(10.0).hold("10s"),
            step(30.0).hold("20s"),
            step(60.0).manual(),
            step(100.0),
        ])
        .state_path(&path);
    let h = ControllerHarness::start(&changed);
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.weight), ("promoted", 100.0));
    assert_eq!(h.weight_bp(), 10_000);
    drop(h);

    // Another candidate: a new revision, the state file is not consulted.
    let other = changed.backend_url("green", "http://127.0.0.1:18003");
    let h = ControllerHarness::start(&other);
    let s = h.status();
    assert_eq!(
        (s.phase.as_str(), s.step, s.weight),
        ("progressing", 0, 10.0)
    );
    let last = s.events.last().unwrap();
    assert_eq!(last.kind, "restored");
    assert!(last.message.contains("another revision"), "{last:?}");
    // Another revision is no corruption: nothing is kept aside.
    assert!(!aside(&path).exists());
}

#[tokio::test(start_paused = true)]
async fn rolled_back_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = timed_then_manual().state_path(&dir.path().join("rollout.json"));
    let h = ControllerHarness::start(&config);
    h.send(Action::Rollback {
        reason: Some("p99 too high".into()),
    })
    .await
    .unwrap();
    drop(h);

    let h = ControllerHarness::start(&config);
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.weight), ("rolled_back", 0.0));
    assert_eq!(s.reason.as_deref(), Some("p99 too high"));
    assert_eq!(h.weight_bp(), 0);
    let s = h.send(Action::Retry).await.unwrap();
    assert_eq!((s.phase.as_str(), s.step), ("progressing", 0));
}

// === a state file that cannot be used ===

/// 10 % (half of the rest mirrored) and 30 % on 10 s holds, then 60 % until a promote,
/// then 100 %.
fn mirrored_ramp() -> TestConfig {
    TestConfig::new().steps([
        step(10.0).mirror(50.0).hold("10s"),
        step(30.0).hold("10s"),
        step(60.0).manual(),
        step(100.0),
    ])
}

/// The bytes of a good state file for `config`, its rollout at step 2.
async fn good_state(config: &TestConfig, path: &Path) -> Vec<u8> {
    let h = ControllerHarness::start(config);
    assert_eq!(h.status_at(25.0).await.step, 2);
    drop(h);
    std::fs::read(path).unwrap()
}

/// Asserts that the route started paused with all its traffic on the stable, because of
/// the state file at `path`, now kept aside as `PATH.corrupt` with the bytes `evidence`.
fn assert_started_safe(h: &ControllerHarness, path: &Path, evidence: &[u8], case: &str) {
    let s = h.status();
    let placement = (s.phase.as_str(), s.step, s.weight, s.mirror);
    assert_eq!(placement, ("paused", 0, 0.0, 0.0), "{case}: {s:#?}");
    assert_eq!((h.weight_bp(), h.mirror_bp()), (0, 0), "{case}");
    let aside = aside(path);
    let reason = s.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains(&path.display().to_string()),
        "{case}: {reason}"
    );
    assert!(
        reason.contains(&aside.display().to_string()),
        "{case}: {reason}"
    );
    let last = s.events.last().unwrap();
    assert_eq!(last.kind, "state", "{case}: {last:?}");
    assert!(last.message.contains(reason), "{case}: {last:?}");
    assert_eq!(std::fs::read(&aside).unwrap(), evidence, "{case}");
}

/// `PATH.corrupt`, where an unusable state file at `path` is kept.
fn aside(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.corrupt", path.display()))
}

#[tokio::test(start_paused = true)]
async fn an_unusable_state_file_starts_paused_on_the_stable_and_resume_goes_on_from_step_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("rollout.json");
    let config = mirrored_ramp().state_path(&path);
    let good = good_state(&config, &path).await;
    let mut nonsense: Value = serde_json::from_slice(&good).unwrap();
    nonsense["routes"][0]["step"] = 99.into();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("not JSON", b"rollout: step 2\n".to_vec(), "not JSON"),
        ("cut in half", good[..good.len() / 2].to_vec(), "not JSON"),
        (
            "another shape",
            b"[\"default\", 2]".to_vec(),
            "not a rollout state file",
        ),
        (
            "a step beyond the plan",
            serde_json::to_vec_pretty(&nonsense).unwrap(),
            "step 99 of a plan of 4 steps",
        ),
    ];
    for (case, bytes, why) in cases {
        std::fs::write(&path, &bytes).unwrap();
        let h = ControllerHarness::start(&config);
        assert_started_safe(&h, &path, &bytes, case);
        let reason = h.status().reason.clone().unwrap();
        assert!(reason.contains(why), "{case}: {reason}");

        // The new file, written after the evidence was moved, keeps the route safe.
        drop(h);
        let h = ControllerHarness::start(&config);
        let s = h.status();
        assert_eq!((s.phase.as_str(), h.weight_bp()), ("paused", 0), "{case}");
        assert_eq!(std::fs::read(aside(&path)).unwrap(), bytes, "{case}");

        // Resumed, the rollout goes on from step 0 with its own split and holds.
        let s = h.send(Action::Resume).await.unwrap();
        let placement = (s.phase.as_str(), s.step, s.weight, s.mirror);
        assert_eq!(placement, ("progressing", 0, 10.0, 50.0), "{case}");
        assert_eq!((h.weight_bp(), h.mirror_bp()), (1_000, 5_000), "{case}");
        let resumed = h.elapsed().as_secs_f64();
        let s = h.status_at(resumed + 10.5).await;
        assert_eq!((s.step, h.weight_bp()), (1, 3_000), "{case}");
        std::fs::remove_file(&path).unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn from_a_safe_start_an_operator_may_promote_or_roll_back_but_not_pause() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollout.json");
    let config = mirrored_ramp().state_path(&path);
    std::fs::write(&path, "{\"routes\": [").unwrap();

    let h = ControllerHarness::start(&config);
    assert_not_allowed(
        h.send(Action::Pause { reason: None }).await,
        "pause",
        "paused",
    );
    // A promote passes step 0: still paused, now at the next step's split.
    let s = h.send(Action::Promote { full: false }).await.unwrap();
    assert_eq!((s.phase.as_str(), s.step, s.weight), ("paused", 1, 30.0));
    assert_eq!(h.weight_bp(), 3_000);
    drop(h);

    std::fs::write(&path, "{\"routes\": [").unwrap();
    let h = ControllerHarness::start(&config);
    h.send(Action::Rollback { reason: None }).await.unwrap();
    h.assert_rolled_back("manual", "manual rollback");
    let s = h.send(Action::Retry).await.unwrap();
    assert_eq!(
        (s.phase.as_str(), s.step, s.weight),
        ("progressing", 0, 10.0)
    );
}

#[tokio::test(start_paused = true)]
async fn an_older_copy_kept_aside_is_replaced_and_a_route_without_candidate_stays_idle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollout.json");
    std::fs::write(aside(&path), "an older copy").unwrap();
    std::fs::write(&path, "\u{0}\u{0}\u{0}").unwrap();

    let h = ControllerHarness::start(&TestConfig::stable_only().state_path(&path));
    let s = h.status();
    assert_eq!(
        (s.phase.as_str(), s.weight, s.reason.as_deref()),
        ("idle", 0.0, None)
    );
    let last = s.events.last().unwrap();
    assert_eq!(last.kind, "state");
    assert!(last.message.contains("no candidate"), "{last:?}");
    assert_eq!(std::fs::read(aside(&path)).unwrap(), b"\0\0\0");
    // The file written since is a good one: the next start restores it.
    drop(h);
    let h = ControllerHarness::start(&TestConfig::stable_only().state_path(&path));
    assert_eq!(h.status().events.last().unwrap().kind, "restored");
}

#[tokio::test(start_paused = true)]
async fn a_state_file_that_cannot_be_written_shows_in_status_until_a_write_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the state's directory should be: no write succeeds, not even
    // as root.
    let blocker = dir.path().join("state");
    std::fs::write(&blocker, "not a directory").unwrap();
    let path = blocker.join("rollout.json");
    let errors_before = state_write_errors();

    let h = ControllerHarness::start(&timed_then_manual().state_path(&path));
    let s = h.status();
    assert_eq!(s.state.path.as_deref(), Some(&*path.display().to_string()));
    let error = s.state.last_error.as_deref().expect("the write failed");
    assert!(error.contains(&blocker.display().to_string()), "{error}");
    assert_eq!(s.state.last_written, None);
    // A control is in force all the same, and says the write failed.
    let s = h.send(Action::Pause { reason: None }).await.unwrap();
    assert_eq!(s.phase, "paused");
    assert!(s.state.last_error.is_some());
    assert!(state_write_errors() >= errors_before + 2.0);

    // Once the directory can be made, the next write succeeds and clears the error.
    std::fs::remove_file(&blocker).unwrap();
    let s = h.send(Action::Resume).await.unwrap();
    assert_eq!(s.state.last_error, None);
    assert!(s.state.last_written.is_some());
    let written: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(written["routes"][0]["phase"], "progressing");
}

/// `switchyard_state_write_errors_total`, as `/metrics` would show it now.
fn state_write_errors() -> f64 {
    let text = switchyard::telemetry::metrics::install().render();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("switchyard_state_write_errors_total ")?
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}
