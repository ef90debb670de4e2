use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Binomial, Distribution, LogNormal};
use tokio::time::Instant;

use super::*;
use crate::telemetry::window::Window;

const SETTINGS: Settings = Settings {
    confidence: 0.95,
    power: 0.8,
    breach: 2.0,
};

/// The Monte Carlo slack on a rate of at most 5 % estimated from `runs` runs: three standard errors.
fn slack(runs: usize) -> f64 {
    3.0 * (0.05f64 * 0.95 / runs as f64).sqrt()
}

/// Draws how many of `n` Bernoulli(`p`) trials succeed.
fn binomial(rng: &mut StdRng, n: u64, p: f64) -> u64 {
    Binomial::new(n, p).expect("a probability").sample(rng)
}

/// A lognormal latency with median `median_ms` and log-spread `sigma`.
fn lognormal(rng: &mut StdRng, median_ms: f64, sigma: f64) -> Duration {
    let ms: f64 = LogNormal::new(median_ms.ln(), sigma)
        .expect("a spread")
        .sample(rng);
    Duration::from_secs_f64(ms / 1000.0)
}

/// A summary holding `latencies`.
fn summary_of(latencies: impl IntoIterator<Item = Duration>) -> Summary {
    let t0 = Instant::now();
    let w = Window::with_origin(t0, Duration::from_secs(1), 1);
    for latency in latencies {
        w.record(t0, latency, false);
    }
    w.summary(t0, Duration::ZERO)
}

// === error_rate.max_increase ===

#[test]
fn error_rate_clear_cases_decide() {
    let fine = error_rate_increase(
        Counts::new(200, 20_000),
        Counts::new(1_800, 180_000),
        0.005,
        &SETTINGS,
    );
    assert_eq!(fine.outcome, Outcome::Pass, "{}", fine.detail);
    assert!(fine.shown, "the interval itself shows it within");
    assert!(
        fine.interval.low < 0.0 && fine.interval.high <= 0.005,
        "{:?}",
        fine.interval
    );
    assert_eq!(fine.value, Some(0.0));
    assert_eq!(fine.threshold, 0.005);
    assert_eq!(fine.test, "mixture SPRT (binomial difference)");
    assert!(
        fine.detail.contains("within max increase 0.50%"),
        "{}",
        fine.detail
    );

    let bad = error_rate_increase(
        Counts::new(60, 1_000),
        Counts::new(90, 9_000),
        0.005,
        &SETTINGS,
    );
    assert_eq!(bad.outcome, Outcome::Fail, "{}", bad.detail);
    assert!(bad.interval.low > 0.005);
    assert!(
        bad.detail.contains("beyond max increase 0.50%"),
        "{}",
        bad.detail
    );
    assert_eq!(bad.needed, None);
}

#[test]
fn error_rate_with_few_samples_is_inconclusive_and_needed_shrinks() {
    let mut last = u64::MAX;
    // Both at 1 %, as more and more requests come in.
    for n in [100u64, 400, 1_600] {
        let d = error_rate_increase(
            Counts::new(n / 100, n),
            Counts::new(9 * n / 100, 9 * n),
            0.005,
            &SETTINGS,
        );
        assert_eq!(d.outcome, Outcome::Inconclusive, "{n}: {}", d.detail);
        let needed = d.needed.expect("a sample count");
        assert!(needed < last, "needed {needed} after {n}, {last} before");
        assert!(
            d.samples + needed <= d.planned.unwrap(),
            "never beyond the plan"
        );
        assert!(
            d.detail.contains(&format!("about {needed} more samples")),
            "{}",
            d.detail
        );
        last = needed;
    }
    let none = error_rate_increase(Counts::new(0, 0), Counts::new(10, 1_000), 0.005, &SETTINGS);
    assert_eq!(none.outcome, Outcome::Inconclusive);
    assert_eq!(none.value, None);
    assert_eq!(
        none.needed, none.planned,
        "from nothing, the plan is what is needed"
    );
}

/// Feeds an error-rate test 100 candidate and 900 stable requests per look until it
/// decides; returns the decision and the plan it had after 2 000 candidate requests.
fn run_error_rate(seed: u64, p_stable: f64, p_candidate: f64, allowance: f64) -> (Decision, u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut c, mut s) = (Counts::default(), Counts::default());
    let mut early_plan = None;
    loop {
        c = Counts::new(c.count + binomial(&mut rng, 100, p_candidate), c.of + 100);
        s = Counts::new(s.count + binomial(&mut rng, 900, p_stable), s.of + 900);
        let d = error_rate_increase(c, s, allowance, &SETTINGS);
        if c.of == 2_000 {
            early_plan = d.planned;
        }
        if d.outcome != Outcome::Inconclusive || c.of >= 200_000 {
            return (d, early_plan.expect("undecided after 2 000 samples"));
        }
    }
}

#[test]
fn a_healthy_candidate_passes_within_the_plan() {
    // Equal error rates of 1 % against an allowed increase of 0.5 %.
    for seed in 0..5 {
        let (d, plan) = run_error_rate(seed, 0.01, 0.01, 0.005);
        assert_eq!(d.outcome, Outcome::Pass, "{}", d.detail);
        assert!(
            d.samples as f64 <= plan as f64 * 1.3,
            "passed at {}, planned {plan}",
            d.samples
        );
    }
}

#[test]
fn a_candidate_just_within_the_threshold_passes_at_the_planned_count() {
    // 0.4 % worse with 0.5 % allowed: the interval takes long to show it within, so the
    // plan decides, at about the count it announced early on.
    let (d, plan) = run_error_rate(11, 0.01, 0.014, 0.005);
    assert_eq!(d.outcome, Outcome::Pass, "{}", d.detail);
    assert!(!d.shown, "{}", d.detail);
    assert!(d.samples >= d.planned.unwrap(), "{d:?}");
    let moved = d.samples as f64 / plan as f64;
    assert!(
        (0.7..1.4).contains(&moved),
        "planned {plan}, passed at {}",
        d.samples
    );
    assert!(
        d.detail
            .contains("enough to catch an increase of 1.00% 80.00% of the time"),
        "{}",
        d.detail
    );
}

/// Runs error-rate rollouts of 200 candidate and 1 800 stable requests per look: the share
/// failed at any of `looks` looks (`until_decided`: or until the test passes, as a gate stops).
fn error_rate_fail_rate(
    runs: usize,
    (p_stable, p_candidate): (f64, f64),
    looks: usize,
    until_decided: bool,
    seed: u64,
) -> f64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut failed = 0;
    for _ in 0..runs {
        let (mut c, mut s) = (Counts::default(), Counts::default());
        for _ in 0..looks {
            c = Counts::new(c.count + binomial(&mut rng, 200, p_candidate), c.of + 200);
            s = Counts::new(s.count + binomial(&mut rng, 1_800, p_stable), s.of + 1_800);
            match error_rate_increase(c, s, 0.01, &SETTINGS).outcome {
                Outcome::Fail => {
                    failed += 1;
                    break;
                }
                Outcome::Pass if until_decided => break,
                _ => {}
            }
        }
    }
    failed as f64 / runs as f64
}

#[test]
fn error_rate_fails_a_candidate_within_the_threshold_at_most_one_time_in_twenty() {
    // 500 rollouts whose increase is exactly the threshold (the hardest healthy case),
    // looked at after every one of 60 batches whatever the earlier looks said: failed at
    // most 5 % of the time (+3 standard errors of 500 runs).
    let rate = error_rate_fail_rate(500, (0.02, 0.03), 60, false, 1);
    assert!(rate <= 0.05 + slack(500), "false-fail rate {rate}");
    let aa = error_rate_fail_rate(500, (0.02, 0.02), 60, false, 2);
    assert!(aa <= 0.05 + slack(500), "A/A false-fail rate {aa}");
}

#[test]
fn error_rate_catches_a_breach_with_the_planned_power() {
    // A breach (twice the allowed increase) is failed before the plan passes it, 80 % of
    // the time or more (−3 standard errors of 200 runs).
    let caught = error_rate_fail_rate(200, (0.02, 0.04), 200, true, 3);
    assert!(
        caught >= 0.8 - 3.0 * (0.8f64 * 0.2 / 200.0).sqrt(),
        "caught {caught}"
    );
}

// === accuracy.max_drop ===

#[test]
fn paired_accuracy_clear_cases_decide() {
    let pairs = |n, b, c| Pairs {
        pairs: n,
        stable_only: b,
        candidate_only: c,
    };
    let bad = accuracy_drop_paired(pairs(400, 120, 4), 0.02, &SETTINGS);
    assert_eq!(bad.outcome, Outcome::Fail, "{}", bad.detail);
    assert!(
        bad.interval.low > 0.2 && bad.interval.high < 0.4,
        "{:?}",
        bad.interval
    );
    assert_eq!(bad.test, "mixture SPRT (paired, discordant pairs)");

    let same = accuracy_drop_paired(pairs(20_000, 300, 300), 0.02, &SETTINGS);
    assert_eq!(same.outcome, Outcome::Pass, "{}", same.detail);
    assert!(same.shown);

    let early = accuracy_drop_paired(pairs(60, 2, 1), 0.02, &SETTINGS);
    assert_eq!(early.outcome, Outcome::Inconclusive, "{}", early.detail);
    let later = accuracy_drop_paired(pairs(240, 8, 4), 0.02, &SETTINGS);
    assert!(later.needed.unwrap() < early.needed.unwrap());

    let none = accuracy_drop_paired(pairs(0, 0, 0), 0.02, &SETTINGS);
    assert_eq!((none.outcome, none.value), (Outcome::Inconclusive, None));
    // Inconsistent counts (more discordant than pairs) are read as that many pairs.
    let odd = accuracy_drop_paired(pairs(5, 10, 0), 0.02, &SETTINGS);
    assert_eq!((odd.samples, odd.value), (10, Some(1.0)));
}

#[test]
fn pairing_decides_with_fewer_labels_than_two_samples() {
    // The same models: stable 90 % right, candidate 86 % right (a drop of 4 %, twice the
    // allowed 2 %), mostly right on the same requests (5 % + 1 % discordant). Counted as
    // pairs the drop is shown long before the two accuracies alone show it.
    let first_fail = |paired: bool| {
        (1..200u64)
            .map(|k| k * 100)
            .find(|&n| {
                let d = if paired {
                    accuracy_drop_paired(
                        Pairs {
                            pairs: n,
                            stable_only: n / 20,
                            candidate_only: n / 100,
                        },
                        0.02,
                        &SETTINGS,
                    )
                } else {
                    accuracy_drop(
                        Counts::new(n * 86 / 100, n),
                        Counts::new(n * 90 / 100, n),
                        0.02,
                        &SETTINGS,
                    )
                };
                d.outcome == Outcome::Fail
            })
            .unwrap()
    };
    let (paired, unpaired) = (first_fail(true), first_fail(false));
    assert!(
        paired * 2 < unpaired,
        "paired {paired}, unpaired {unpaired}"
    );
}

#[test]
fn unpaired_accuracy_clear_cases_decide() {
    let bad = accuracy_drop(
        Counts::new(700, 1_000),
        Counts::new(900, 1_000),
        0.02,
        &SETTINGS,
    );
    assert_eq!(bad.outcome, Outcome::Fail, "{}", bad.detail);
    assert!((bad.value.unwrap() - 0.2).abs() < 1e-12);
    let fine = accuracy_drop(
        Counts::new(45_500, 50_000),
        Counts::new(45_000, 50_000),
        0.02,
        &SETTINGS,
    );
    assert_eq!(fine.outcome, Outcome::Pass, "{}", fine.detail);
    assert!(
        fine.detail
            .contains("accuracy 91.00% against the stable's 90.00%"),
        "{}",
        fine.detail
    );
}

#[test]
fn paired_accuracy_fails_a_candidate_within_the_threshold_at_most_one_time_in_twenty() {
    // 500 rollouts of 50 labelled pairs per look, 2 % less accurate (the threshold):
    // 5 % of pairs only the stable got right, 3 % only the candidate. Failed at any of
    // 80 looks at most 5 % of the time (+3 standard errors).
    let runs = 500;
    let mut rng = StdRng::seed_from_u64(4);
    let mut failed = 0;
    for _ in 0..runs {
        let mut p = Pairs::default();
        for _ in 0..80 {
            let b = binomial(&mut rng, 50, 0.05);
            p.pairs += 50;
            p.stable_only += b;
            p.candidate_only += binomial(&mut rng, 50 - b, 0.03 / 0.95);
            if accuracy_drop_paired(p, 0.02, &SETTINGS).outcome == Outcome::Fail {
                failed += 1;
                break;
            }
        }
    }
    let rate = failed as f64 / runs as f64;
    assert!(rate <= 0.05 + slack(runs), "false-fail rate {rate}");
}

// === shadow_agreement ===

#[test]
fn shadow_agreement_credits_the_measured_noise_floor() {
    // The stable disagrees with itself 3 % of the time; the candidate with it 3.5 %.
    let noisy = shadow_agreement(
        Counts::new(19_300, 20_000),
        Some(Counts::new(19_400, 20_000)),
        0.98,
        &SETTINGS,
    );
    assert_eq!(noisy.outcome, Outcome::Pass, "{}", noisy.detail);
    assert!((noisy.value.unwrap() - 0.995).abs() < 1e-9);
    assert!(noisy.interval.low < 0.995 && noisy.interval.high <= 1.0);
    assert_eq!(noisy.threshold, 0.98);
    // Without the floor the same candidate is 96.5 % in agreement: below 98 %.
    let raw = shadow_agreement(Counts::new(19_300, 20_000), None, 0.98, &SETTINGS);
    assert_eq!(raw.outcome, Outcome::Fail, "{}", raw.detail);
    assert_eq!(raw.test, "mixture SPRT (binomial)");
    assert!(raw.interval.high < 0.98);
    // A candidate that disagrees 10 % beyond the floor fails.
    let bad = shadow_agreement(
        Counts::new(870, 1_000),
        Some(Counts::new(970, 1_000)),
        0.98,
        &SETTINGS,
    );
    assert_eq!(bad.outcome, Outcome::Fail, "{}", bad.detail);
    let early = shadow_agreement(
        Counts::new(49, 50),
        Some(Counts::new(48, 50)),
        0.98,
        &SETTINGS,
    );
    assert_eq!(early.outcome, Outcome::Inconclusive, "{}", early.detail);
    assert!(early.needed.is_some());
}

// === latency_p99.max_ratio ===

#[test]
fn latency_clear_cases_decide() {
    let mut rng = StdRng::seed_from_u64(5);
    let stable = summary_of((0..20_000).map(|_| lognormal(&mut rng, 20.0, 0.5)));
    let same = summary_of((0..5_000).map(|_| lognormal(&mut rng, 20.0, 0.5)));
    let fine = latency_p99_ratio(&same, &stable, 1.5, Duration::ZERO, &SETTINGS);
    assert_eq!(fine.outcome, Outcome::Pass, "{}", fine.detail);
    assert!(fine.shown);
    assert!(
        fine.interval.low < 1.0 && 1.0 < fine.interval.high && fine.interval.high <= 1.5,
        "{:?}",
        fine.interval
    );
    assert_eq!(fine.test, "quantile confidence sequence (p99 ratio)");
    assert_eq!(fine.threshold, 1.5);

    // 60 ms slower on every request: its p99 is about 2× the stable's 64 ms.
    let slow =
        summary_of((0..600).map(|_| lognormal(&mut rng, 20.0, 0.5) + Duration::from_millis(60)));
    let bad = latency_p99_ratio(&slow, &stable, 1.5, Duration::ZERO, &SETTINGS);
    assert_eq!(bad.outcome, Outcome::Fail, "{}", bad.detail);
    assert!(bad.interval.low > 1.5, "{:?}", bad.interval);
    assert!(bad.detail.contains("beyond max 1.5×"), "{}", bad.detail);

    let few = summary_of((0..50).map(|_| lognormal(&mut rng, 20.0, 0.5)));
    let early = latency_p99_ratio(&few, &stable, 1.5, Duration::ZERO, &SETTINGS);
    assert_eq!(early.outcome, Outcome::Inconclusive, "{}", early.detail);
    let more = summary_of((0..200).map(|_| lognormal(&mut rng, 20.0, 0.5)));
    let later = latency_p99_ratio(&more, &stable, 1.5, Duration::ZERO, &SETTINGS);
    assert!(
        later.needed.unwrap() < early.needed.unwrap(),
        "{later:?} {early:?}"
    );

    let nothing = latency_p99_ratio(&Summary::default(), &stable, 1.5, Duration::ZERO, &SETTINGS);
    assert_eq!(
        (nothing.outcome, nothing.value),
        (Outcome::Inconclusive, None)
    );
    assert!(
        nothing.detail.starts_with("no candidate requests yet"),
        "{}",
        nothing.detail
    );
}

#[test]
fn latency_ratio_over_a_small_difference_passes() {
    // A fast backend: the stable answers in 2 ms, the candidate in 4 ms (2×), but only
    // 2 ms later: within `min_difference: 5ms`, beyond 1.5× without it.
    let stable = summary_of((0..20_000).map(|_| Duration::from_micros(2_000)));
    let candidate = summary_of((0..3_000).map(|_| Duration::from_micros(4_000)));
    let lenient = latency_p99_ratio(
        &candidate,
        &stable,
        1.5,
        Duration::from_millis(5),
        &SETTINGS,
    );
    assert_eq!(lenient.outcome, Outcome::Pass, "{}", lenient.detail);
    assert!(
        lenient.detail.contains("max 1.5× or 5.0ms more"),
        "{}",
        lenient.detail
    );
    let strict = latency_p99_ratio(&candidate, &stable, 1.5, Duration::ZERO, &SETTINGS);
    assert_eq!(strict.outcome, Outcome::Fail, "{}", strict.detail);
}

#[test]
fn latency_fails_a_candidate_within_the_threshold_at_most_one_time_in_twenty() {
    // 500 rollouts, lognormal latencies with a heavy tail (p99 10× the median), the
    // candidate exactly 1.5× slower (the threshold), 100 candidate and 300 stable
    // requests per look: failed at any of 40 looks at most 5 % of the time (+3 standard
    // errors).
    let runs = 500;
    let mut rng = StdRng::seed_from_u64(6);
    let t0 = Instant::now();
    let mut failed = 0;
    for _ in 0..runs {
        let (c, s) = (
            Window::with_origin(t0, Duration::from_secs(1), 1),
            Window::with_origin(t0, Duration::from_secs(1), 1),
        );
        for _ in 0..40 {
            for _ in 0..100 {
                c.record(t0, lognormal(&mut rng, 20.0, 1.0).mul_f64(1.5), false);
            }
            for _ in 0..300 {
                s.record(t0, lognormal(&mut rng, 20.0, 1.0), false);
            }
            let (cs, ss) = (c.summary(t0, Duration::ZERO), s.summary(t0, Duration::ZERO));
            let d = latency_p99_ratio(&cs, &ss, 1.5, Duration::ZERO, &SETTINGS);
            if d.outcome == Outcome::Fail {
                failed += 1;
                break;
            }
        }
    }
    let rate = failed as f64 / runs as f64;
    assert!(rate <= 0.05 + slack(runs), "false-fail rate {rate}");
}

// === sample_ratio ===

#[test]
fn sample_ratio_clear_cases_decide() {
    // Weight 5 %, the candidate served 15 %: a sticky split skewed by heavy users.
    let skewed = sample_ratio(150, 850, 5.0, &SETTINGS);
    assert_eq!(skewed.outcome, Outcome::Fail, "{}", skewed.detail);
    assert!(skewed.shown);
    assert_eq!((skewed.value, skewed.threshold), (Some(0.15), 0.05));
    assert!(skewed.interval.low > 0.06, "{:?}", skewed.interval);
    assert_eq!(skewed.samples, 1_000);
    assert_eq!(skewed.test, "mixture SPRT (binomial share)");
    assert!(
        skewed
            .detail
            .contains("the candidate served 15.00% of 1000 user requests"),
        "{}",
        skewed.detail
    );
    assert!(
        skewed.detail.contains("beyond its weight's 5.00% ± 1.00%"),
        "{}",
        skewed.detail
    );
    // Too few, on the other side: 20 % at weight 50 (tolerance ±10 points).
    let starved = sample_ratio(200, 800, 50.0, &SETTINGS);
    assert_eq!(starved.outcome, Outcome::Fail, "{}", starved.detail);
    assert!(starved.interval.high < 0.4, "{:?}", starved.interval);

    // 5.2 % of 40 000 at weight 5: within a point, shown.
    let fine = sample_ratio(2_080, 37_920, 5.0, &SETTINGS);
    assert_eq!(fine.outcome, Outcome::Pass, "{}", fine.detail);
    assert!(fine.shown, "{}", fine.detail);
    assert!(fine.interval.low >= 0.04 && fine.interval.high <= 0.06);
    assert!(
        fine.detail.contains("within its weight's 5.00% ± 1.00%"),
        "{}",
        fine.detail
    );
    // A mismatch inside the tolerance (5.8 % at weight 5) is not a failure, however many
    // requests show it: the granularity of a sticky split.
    let granular = sample_ratio(58_000, 942_000, 5.0, &SETTINGS);
    assert_eq!(granular.outcome, Outcome::Pass, "{}", granular.detail);

    let none = sample_ratio(0, 0, 5.0, &SETTINGS);
    assert_eq!((none.outcome, none.value), (Outcome::Inconclusive, None));
    assert_eq!(none.needed, none.planned);
    assert!(
        none.detail.starts_with("no user requests yet"),
        "{}",
        none.detail
    );
}

#[test]
fn sample_ratio_with_few_requests_is_inconclusive_and_needed_shrinks() {
    let mut last = u64::MAX;
    for n in [100u64, 400, 1_600] {
        let d = sample_ratio(n / 10, n - n / 10, 10.0, &SETTINGS);
        assert_eq!(d.outcome, Outcome::Inconclusive, "{n}: {}", d.detail);
        let needed = d.needed.expect("a sample count");
        assert!(needed < last, "needed {needed} after {n}, {last} before");
        assert!(d.samples + needed <= d.planned.unwrap());
        last = needed;
    }
}

/// Runs `runs` rollouts at weight `weight` whose candidate truly gets a share `actual`,
/// `per_look` requests per look for `looks` looks: the share of runs failed at some look
/// (every look taken, whatever the earlier ones said) and the median requests to the
/// first failure among those failed.
fn sample_ratio_fail_rate(
    runs: usize,
    weight: f64,
    actual: f64,
    (per_look, looks): (u64, usize),
    seed: u64,
) -> (f64, u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut at = Vec::new();
    for _ in 0..runs {
        let (mut c, mut n) = (0u64, 0u64);
        for _ in 0..looks {
            c += binomial(&mut rng, per_look, actual);
            n += per_look;
            if sample_ratio(c, n - c, weight, &SETTINGS).outcome == Outcome::Fail {
                at.push(n);
                break;
            }
        }
    }
    at.sort_unstable();
    let median = at.get(at.len() / 2).copied().unwrap_or(0);
    (at.len() as f64 / runs as f64, median)
}

#[test]
fn sample_ratio_fails_a_matching_split_at_most_one_time_in_twenty() {
    // A/A: the candidate truly gets its weight, 500 rollouts of 60 looks of 200 requests.
    let (aa, _) = sample_ratio_fail_rate(500, 10.0, 0.10, (200, 60), 7);
    assert!(aa <= 0.05 + slack(500), "A/A false-fail rate {aa}");
    // The hardest healthy case: a share at the edge of the tolerance (12 % at weight 10).
    let (edge, _) = sample_ratio_fail_rate(500, 10.0, 0.12, (200, 60), 8);
    assert!(
        edge <= 0.05 + slack(500),
        "false-fail rate at the edge {edge}"
    );
}

#[test]
fn sample_ratio_catches_a_skewed_split_within_a_few_hundred_requests() {
    // Weight 5 %, the candidate truly serves 15 %: failed in every run, by the median
    // rollout within 400 requests.
    let (caught, median) = sample_ratio_fail_rate(200, 5.0, 0.15, (50, 100), 9);
    assert_eq!(caught, 1.0);
    assert!(median <= 400, "median {median} requests");
}

// === settings and hostile inputs ===

#[test]
fn odd_settings_and_huge_counts_never_panic() {
    for settings in [
        Settings {
            confidence: f64::NAN,
            power: f64::NAN,
            breach: f64::NAN,
        },
        Settings {
            confidence: 1.0,
            power: 1.0,
            breach: 1.0,
        },
        Settings {
            confidence: 0.0,
            power: 0.0,
            breach: f64::INFINITY,
        },
        Settings {
            confidence: -3.0,
            power: 7.0,
            breach: -1.0,
        },
    ] {
        for (c, s) in [
            (Counts::new(u64::MAX, u64::MAX), Counts::new(0, u64::MAX)),
            (Counts::new(5, 3), Counts::new(0, 0)),
            (Counts::new(0, 1), Counts::new(1, 1)),
        ] {
            for threshold in [0.0, -1.0, 0.01, 2.0, f64::NAN] {
                let _ = error_rate_increase(c, s, threshold, &settings);
                let _ = accuracy_drop(c, s, threshold, &settings);
                let _ = shadow_agreement(c, Some(s), threshold, &settings);
                let _ = shadow_agreement(c, None, threshold, &settings);
                let _ = accuracy_drop_paired(
                    Pairs {
                        pairs: c.of,
                        stable_only: c.count,
                        candidate_only: s.count,
                    },
                    threshold,
                    &settings,
                );
            }
        }
        for weight in [f64::NAN, -5.0, 0.0, 100.0, 250.0, f64::INFINITY] {
            for (c, s) in [(u64::MAX, u64::MAX), (0, 0), (5, 0), (0, 5)] {
                let d = sample_ratio(c, s, weight, &settings);
                assert!(d.interval.low <= d.interval.high, "{d:?}");
            }
        }
        let one = summary_of([Duration::MAX]);
        for ratio in [0.0, 1.0, 1.5, f64::NAN] {
            let _ = latency_p99_ratio(&one, &one, ratio, Duration::MAX, &settings);
            let _ = latency_p99_ratio(&one, &Summary::default(), ratio, Duration::ZERO, &settings);
        }
    }
    // With no planned pass (breach ≤ 1), only the interval passes.
    let d = error_rate_increase(
        Counts::new(10, 1_000),
        Counts::new(90, 9_000),
        0.005,
        &Settings {
            breach: 1.0,
            ..SETTINGS
        },
    );
    assert_eq!((d.outcome, d.planned), (Outcome::Inconclusive, None));
    assert!(d.needed.is_some());
}
