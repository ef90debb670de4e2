//! Analysis gates: too little traffic holds, a healthy candidate walks, a failing gate
//! rolls back after `failure_limit` evaluations in a row, a skipped gate does not hold,
//! and pause stops the steps but not the analysis.

use switchyard::rollout::analysis::{GateOutcome, Verdict};
use switchyard::rollout::Action;
use tokio::time::{sleep, Duration};

use super::harness::{assert_outcomes, gate, kinds, verdict, ControllerHarness, Traffic};
use crate::support::config::{step, Analysis, TestConfig};

#[tokio::test(start_paused = true)]
async fn too_little_traffic_is_inconclusive_and_holds_forever() {
    let h = ControllerHarness::start(
        &TestConfig::new()
            .steps([step(10.0).hold("20s"), step(100.0)])
            .analysis(Analysis::every_10s())
            .gate_error_rate(0.01)
            .gate_latency_p99(Some("300ms"), Some(1.5)),
    );

    // Under min_samples (20 in a 30 s window), every candidate request failing and slow.
    h.until(0.5).await;
    h.drive_until(600.5, |t| {
        if t.second() % 3 == 0 {
            t.candidate(1, 1, 900);
            t.stable(5, 20);
        }
    })
    .await;

    let s = h.status();
    assert_eq!(
        (s.phase.as_str(), s.step, s.weight),
        ("progressing", 0, 10.0)
    );
    assert_eq!(s.analysis.failures, 0);
    assert_eq!(kinds(&s), ["start"]);
    let last = s.analysis.last.as_ref().unwrap();
    assert_eq!(last.verdict, Verdict::Inconclusive);
    assert!(last.samples < 20 && last.samples > 0, "{last:?}");
    assert_eq!(last.min_samples, 20);
    let names: Vec<_> = last.gates.iter().map(|g| g.gate).collect();
    assert_eq!(names, ["error_rate", "latency_p99", "latency_p99_ratio"]);
    for g in &last.gates {
        assert_eq!(g.outcome, GateOutcome::Inconclusive, "{g:?}");
        assert_eq!(g.bound, "max");
        assert!(g.detail.contains("20 needed"), "{g:?}");
    }
    // The figures and thresholds are shown all the same.
    let e = gate(&s, "error_rate");
    assert_eq!((e.value, e.threshold), (Some(1.0), 0.01));
    let l = gate(&s, "latency_p99");
    assert_eq!(l.threshold, 0.3);
    let p99 = l.value.unwrap();
    assert!((p99 - 0.9).abs() < 0.02, "{p99}");
    assert_eq!(gate(&s, "latency_p99_ratio").threshold, 1.5);
}

#[tokio::test(start_paused = true)]
async fn healthy_candidate_with_analysis_walks_to_promotion() {
    let h = ControllerHarness::start(
        &TestConfig::new()
            .steps([
                step(0.0).mirror(100.0).hold("20s"),
                step(10.0).hold("20s"),
                step(50.0).hold("20s"),
                step(100.0),
            ])
            .analysis(Analysis::every_10s())
            .gate_error_rate(0.01)
            .gate_latency_p99(Some("300ms"), Some(1.5))
            .gate_shadow_agreement(0.95),
    );

    h.until(0.5).await;
    let mut seen = Vec::new();
    for _ in 0..120 {
        // Enough traffic for the sequential ratio to bound both p99s within a hold: a
        // p99 needs a few hundred samples a side before its interval closes.
        let t = h.traffic();
        t.candidate(100, 0, 22);
        t.stable(100, 20);
        if t.mirroring() {
            t.shadow(100, 100);
        }
        let s = h.status();
        if seen.last() != Some(&(s.phase.clone(), s.step)) {
            seen.push((s.phase.clone(), s.step));
        }
        if s.phase == "promoted" {
            break;
        }
        sleep(Duration::from_secs(1)).await;
    }
    let s = h.status();
    assert_eq!(s.phase, "promoted", "{:#?}", s.events);
    assert_eq!(s.weight, 100.0);
    assert_eq!(h.weight_bp(), 10_000);
    assert_eq!(
        seen,
        [
            ("progressing".to_string(), 0),
            ("progressing".to_string(), 1),
            ("progressing".to_string(), 2),
            ("progressing".to_string(), 3),
            ("promoted".to_string(), 3),
        ]
    );
    assert_eq!(
        kinds(&s)[..5],
        ["start", "step", "step", "step", "promoted"]
    );
    assert!(
        s.events[1].message.contains("analysis passed"),
        "{:?}",
        s.events[1]
    );
    assert_eq!(s.analysis.failures, 0);
    assert_eq!(verdict(&s), Verdict::Pass);
    // Holds of 20 s with evaluations every 10 s: steps at 20, 40, 60, promotion at the next pass.
    assert!(h.elapsed() <= Duration::from_secs(71), "{:?}", h.elapsed());
}

/// A candidate that fails one gate on every evaluation, for three evaluations.
struct FailingGate {
    name: &'static str,
    config: TestConfig,
    /// One second's traffic.
    traffic: fn(&Traffic),
    /// The gate that fails, its figure (within `within`) and its threshold.
    gate: &'static str,
    value: f64,
    within: f64,
    threshold: f64,
    /// The other gates and how they came out.
    others: &'static [(&'static str, GateOutcome)],
    /// What the rollback reason says about the figure.
    reason: &'static [&'static str],
}

#[tokio::test(start_paused = true)]
async fn a_failing_gate_rolls_back_after_failure_limit_evaluations() {
    let cases = [
        FailingGate {
            name: "20 % errors",
            config: TestConfig::new()
                .steps([step(20.0).hold("10m"), step(100.0)])
                .analysis(Analysis::every_10s())
                .gate_error_rate(0.01),
            traffic: |t| t.candidate(10, 2, 20),
            gate: "error_rate",
            value: 0.2,
            within: 1e-9,
            threshold: 0.01,
            others: &[],
            reason: &["error rate 20.00%", "max 1.00%"],
        },
        FailingGate {
            // 3× the stable's latency, under the absolute 300 ms.
            name: "latency regression relative to stable",
            config: TestConfig::new()
                .steps([step(20.0).hold("10m")])
                .analysis(Analysis::every_10s())
                .gate_latency_p99(Some("300ms"), Some(1.5)),
            // The stable busy enough for its p99 to be bounded by the first evaluation.
            traffic: |t| {
                t.candidate(10, 0, 60);
                t.stable(100, 20);
            },
            gate: "latency_p99_ratio",
            value: 3.0,
            within: 0.1,
            threshold: 1.5,
            others: &[("latency_p99", GateOutcome::Pass)],
            reason: &["stable's", "max 1.5×"],
        },
        FailingGate {
            // Only the candidate serves: the ratio is skipped, the absolute bound applies.
            name: "absolute latency with the ratio skipped",
            config: TestConfig::new()
                .steps([step(100.0).hold("10m")])
                .analysis(Analysis::every_10s())
                .gate_latency_p99(Some("300ms"), Some(1.5)),
            traffic: |t| t.candidate(10, 0, 500),
            gate: "latency_p99",
            value: 0.5,
            within: 0.02,
            threshold: 0.3,
            others: &[("latency_p99_ratio", GateOutcome::Skipped)],
            reason: &["max 300.0ms"],
        },
        FailingGate {
            // Mirrored answers: healthy, but only 80 % agree with the stable's.
            name: "low shadow agreement on a mirror step",
            config: TestConfig::new()
                .steps([step(0.0).mirror(100.0).hold("10m"), step(100.0)])
                .analysis(Analysis::every_10s())
                .gate_error_rate(0.01)
                .gate_shadow_agreement(0.98),
            traffic: |t| {
                t.candidate(10, 0, 20);
                t.stable(10, 20);
                t.shadow(10, 8);
            },
            gate: "shadow_agreement",
            value: 0.8,
            within: 1e-9,
            threshold: 0.98,
            others: &[("error_rate", GateOutcome::Pass)],
            reason: &["shadow agreement 80.00%"],
        },
    ];
    for case in cases {
        failing_gate_rolls_back(case).await;
    }
}

async fn failing_gate_rolls_back(case: FailingGate) {
    let name = case.name;
    let h = ControllerHarness::start(&case.config);
    h.until(0.5).await;
    let split = (h.weight_bp(), h.mirror_bp());

    // Evaluations at 10, 20, 30 s: failures 1, 2, then the rollback.
    h.drive_until(10.5, case.traffic).await;
    let s = h.status();
    assert_eq!(s.phase, "progressing", "{name}");
    assert_eq!(s.analysis.failures, 1, "{name}");
    assert_eq!(verdict(&s), Verdict::Fail, "{name}");
    let g = gate(&s, case.gate);
    assert_eq!(g.outcome, GateOutcome::Fail, "{name}: {g:?}");
    assert_eq!(g.threshold, case.threshold, "{name}: {g:?}");
    let value = g
        .value
        .unwrap_or_else(|| panic!("{name}: no figure in {g:?}"));
    assert!((value - case.value).abs() < case.within, "{name}: {g:?}");
    assert_outcomes(&s, case.others, name);

    h.drive_until(20.5, case.traffic).await;
    let s = h.status();
    assert_eq!(
        (s.phase.as_str(), s.analysis.failures),
        ("progressing", 2),
        "{name}"
    );
    assert_eq!((h.weight_bp(), h.mirror_bp()), split, "{name}");

    h.drive_until(30.5, case.traffic).await;
    let s = h.status();
    assert_eq!(s.phase, "rolled_back", "{name}");
    assert_eq!((s.weight, s.mirror), (0.0, 0.0), "{name}");
    assert_eq!((h.weight_bp(), h.mirror_bp()), (0, 0), "{name}");
    assert_eq!(s.analysis.failures, 3, "{name}");
    let reason = s.reason.as_deref().unwrap();
    assert!(reason.contains("3 times in a row"), "{name}: {reason}");
    for says in case.reason {
        assert!(reason.contains(says), "{name}: {reason}");
    }
    let last = s.events.last().unwrap();
    assert_eq!(last.kind, "rollback", "{name}");
    assert!(last.message.contains("(auto)"), "{name}: {last:?}");
    assert!(last.message.contains(reason), "{name}: {last:?}");

    // After the rollback, analysis stops: the verdict stays as it was.
    h.drive_until(120.0, case.traffic).await;
    let after = h.status();
    assert_eq!(after.phase, "rolled_back", "{name}");
    assert_eq!(after.analysis.last, s.analysis.last, "{name}");
}

#[tokio::test(start_paused = true)]
async fn a_pass_in_between_resets_the_failure_count() {
    let h = ControllerHarness::start(
        &TestConfig::new()
            .steps([step(20.0).hold("10m")])
            .analysis(Analysis::new("10s", "10s", 20, 3))
            .gate_error_rate(0.05),
    );
    h.until(0.5).await;
    let failing = |t: &Traffic| t.candidate(10, 1, 20);
    let healthy = |t: &Traffic| t.candidate(10, 0, 20);
    // Fail at 10 and 20 s (10 % errors), pass at 30 s, fail at 40 and 50 s: never 3 in a row.
    h.drive_until(20.5, failing).await;
    assert_eq!(h.status().analysis.failures, 2);
    h.drive_until(30.5, healthy).await;
    let s = h.status();
    assert_eq!(verdict(&s), Verdict::Pass);
    assert_eq!((s.phase.as_str(), s.analysis.failures), ("progressing", 0));
    h.drive_until(50.5, failing).await;
    let s = h.status();
    assert_eq!(verdict(&s), Verdict::Fail);
    assert_eq!((s.phase.as_str(), s.analysis.failures), ("progressing", 2));
    assert_eq!(s.analysis.failure_limit, 3);
}

/// A gate that cannot apply to the step, on a candidate that passes the others.
struct SkippedGate {
    name: &'static str,
    config: TestConfig,
    traffic: fn(&Traffic),
    gate: &'static str,
    /// The skipped gate's figure, shown all the same when there is one.
    value: Option<f64>,
    threshold: f64,
    bound: &'static str,
    /// Why it was skipped.
    detail: &'static str,
    /// The other gates and how they came out.
    others: &'static [(&'static str, GateOutcome)],
}

#[tokio::test(start_paused = true)]
async fn a_skipped_gate_neither_fails_nor_holds() {
    let cases = [
        SkippedGate {
            // Only the candidate serves (weight 100); it is fast in absolute terms.
            name: "latency ratio when the stable served nothing",
            config: TestConfig::new()
                .steps([step(100.0).hold("15s")])
                .analysis(Analysis::every_10s())
                .gate_latency_p99(Some("300ms"), Some(1.5)),
            traffic: |t| t.candidate(10, 0, 60),
            gate: "latency_p99_ratio",
            value: None,
            threshold: 1.5,
            bound: "max",
            detail: "stable served nothing",
            others: &[("latency_p99", GateOutcome::Pass)],
        },
        SkippedGate {
            // Even recorded disagreements do not count on a step that mirrors nothing.
            name: "shadow agreement without mirroring",
            config: TestConfig::new()
                .steps([step(10.0).mirror(0.0).hold("15s"), step(100.0)])
                .analysis(Analysis::every_10s())
                .gate_error_rate(0.01)
                .gate_shadow_agreement(0.98),
            traffic: |t| {
                t.candidate(10, 0, 20);
                t.shadow(10, 1);
            },
            gate: "shadow_agreement",
            value: Some(0.1),
            threshold: 0.98,
            bound: "min",
            detail: "mirrors nothing",
            others: &[("error_rate", GateOutcome::Pass)],
        },
    ];
    for case in cases {
        let name = case.name;
        let h = ControllerHarness::start(&case.config);
        h.until(0.5).await;
        h.drive_until(10.5, case.traffic).await;
        let s = h.status();
        let g = gate(&s, case.gate);
        assert_eq!(g.outcome, GateOutcome::Skipped, "{name}: {g:?}");
        assert_eq!(g.value, case.value, "{name}: {g:?}");
        assert_eq!(g.threshold, case.threshold, "{name}");
        assert_eq!(g.bound, case.bound, "{name}");
        assert!(g.detail.contains(case.detail), "{name}: {g:?}");
        assert_outcomes(&s, case.others, name);
        assert_eq!(verdict(&s), Verdict::Pass, "{name}");
        // Neither case sends the stable anything.
        assert_eq!(
            s.analysis.last.as_ref().unwrap().stable_samples,
            0,
            "{name}"
        );
        // Skipped does not hold: the step passes at the first pass after its hold.
        h.drive_until(20.5, case.traffic).await;
        assert_eq!(h.status().phase, "promoted", "{name}");
    }
}

/// A canary at 20 % for 10 s, gated on errors, paused at once.
async fn paused_with_an_error_gate() -> ControllerHarness {
    let h = ControllerHarness::start(
        &TestConfig::new()
            .steps([step(20.0).hold("10s"), step(100.0)])
            .analysis(Analysis::every_10s())
            .gate_error_rate(0.01),
    );
    h.until(0.5).await;
    let s = h.send(Action::Pause { reason: None }).await.unwrap();
    assert_eq!(s.phase, "paused");
    h
}

#[tokio::test(start_paused = true)]
async fn pause_does_not_stop_automatic_rollback() {
    let h = paused_with_an_error_gate().await;
    h.drive_until(30.5, |t| t.candidate(10, 5, 20)).await;
    let s = h.assert_rolled_back("auto", "error rate");
    assert_eq!(kinds(&s), ["start", "paused", "rollback"]);
}

#[tokio::test(start_paused = true)]
async fn paused_healthy_candidate_is_evaluated_but_does_not_advance() {
    let h = paused_with_an_error_gate().await;
    let healthy = |t: &Traffic| t.candidate(10, 0, 20);
    h.drive_until(60.5, healthy).await;
    let s = h.status();
    assert_eq!((s.phase.as_str(), s.step), ("paused", 0));
    assert_eq!(verdict(&s), Verdict::Pass);
    // Resumed with 9.5 s of hold left: step 1 at 70 s, which passes on its own first pass at 80 s.
    h.send(Action::Resume).await.unwrap();
    h.drive_until(69.5, healthy).await;
    assert_eq!(h.status().step, 0);
    h.drive_until(70.5, healthy).await;
    let s = h.status();
    assert_eq!(
        (s.phase.as_str(), s.step, s.weight),
        ("progressing", 1, 100.0)
    );
    h.drive_until(80.5, healthy).await;
    assert_eq!(h.status().phase, "promoted");
}

/// A sticky split that gives the candidate 30 % of the users at weight 10 % (a few heavy
/// users hashed to it) biases every comparison: `sample_ratio` fails, the relative gates
/// are held, and the rollout pauses with the reason instead of rolling back (the
/// candidate is not at fault). The split stays as it was.
#[tokio::test(start_paused = true)]
async fn a_skewed_sticky_split_pauses_on_sample_ratio_and_blames_nobody() {
    let h = ControllerHarness::start(
        &TestConfig::new()
            .steps([step(10.0).hold("1m"), step(100.0)])
            .analysis(Analysis::every_10s())
            .gate("error_rate", serde_json::json!({ "max_increase": 0.5 }))
            .gate("sample_ratio", serde_json::json!({})),
    );
    h.until(0.5).await;
    // A healthy candidate on a skewed sample: no comparison counts, passing ones neither.
    let skewed = |t: &Traffic| {
        t.served(30, 70);
        t.candidate(30, 0, 20);
        t.stable(70, 20);
    };
    h.drive_until(10.5, skewed).await;
    let s = h.status();
    assert_eq!(
        (s.phase.as_str(), s.weight),
        ("paused", 10.0),
        "{:#?}",
        s.analysis
    );
    let reason = s.reason.as_deref().unwrap_or_default();
    assert!(reason.starts_with("sample_ratio: "), "{reason}");
    assert!(reason.contains("the split is skewed"), "{reason}");
    assert_eq!(kinds(&s), ["start", "paused"]);
    let ratio = gate(&s, "sample_ratio");
    assert_eq!(ratio.outcome, GateOutcome::Fail, "{ratio:?}");
    assert_eq!((ratio.threshold, ratio.bound.as_str()), (0.1, "near"));
    assert!((ratio.value.unwrap() - 0.3).abs() < 1e-9, "{ratio:?}");
    // The error-rate increase would have passed: held instead, and the verdict holds.
    let errors = gate(&s, "error_rate_increase");
    assert_eq!(errors.outcome, GateOutcome::Inconclusive, "{errors:?}");
    assert!(errors.detail.contains("(sample_ratio)"), "{errors:?}");
    assert_eq!(verdict(&s), Verdict::Inconclusive);
    assert_eq!(s.analysis.failures, 0);
    // Paused is not stopped: more of the same never rolls back, and the split stays.
    h.drive_until(60.5, skewed).await;
    let s = h.status();
    assert_eq!(
        (s.phase.as_str(), s.weight, h.weight_bp()),
        ("paused", 10.0, 1_000)
    );
    // The operator fixes the split and resumes: the split is judged as it is from then on,
    // not on the skew it paused for.
    h.send(Action::Resume).await.unwrap();
    h.drive_until(90.5, |t| {
        t.served(10, 90);
        t.candidate(10, 0, 20);
        t.stable(90, 20);
    })
    .await;
    let s = h.status();
    assert_eq!(s.phase, "progressing", "{:?}", s.reason);
    assert_ne!(gate(&s, "sample_ratio").outcome, GateOutcome::Fail);
}

/// A split that matches its weight passes `sample_ratio` and walks on.
#[tokio::test(start_paused = true)]
async fn a_split_at_its_weight_passes_sample_ratio() {
    let h = ControllerHarness::start(
        &TestConfig::new()
            .steps([step(10.0).hold("30s"), step(100.0)])
            .analysis(Analysis::every_10s())
            .gate("sample_ratio", serde_json::json!({})),
    );
    h.until(0.5).await;
    h.drive_until(30.5, |t| {
        t.served(100, 900);
        t.candidate(100, 0, 20);
        t.stable(900, 20);
    })
    .await;
    let s = h.status();
    assert_eq!(s.step, 1, "{:#?}", s.analysis);
    let ratio = gate(&s, "sample_ratio");
    assert_eq!(ratio.outcome, GateOutcome::Pass, "{ratio:?}");
    assert!((ratio.value.unwrap() - 0.1).abs() < 1e-9, "{ratio:?}");
    assert!(
        s.events[1].message.contains("analysis passed"),
        "{:?}",
        s.events
    );
}
