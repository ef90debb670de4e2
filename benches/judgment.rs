//! Simulated rollouts judged by the sequential gates and by fixed-window gates on the same draws: how often a good candidate is failed, how soon a bad one is caught.
//!
//! Every rollout draws its requests from known distributions, a batch per
//! evaluation (the default `analysis.interval` of 10 s), and hands the same
//! batches to both judges:
//!
//! * **sequential**: `rollout::sequential` on everything since the step
//!   began, evaluated after every batch until it passes or fails, with the
//!   `min_samples` floor of 50;
//! * **fixed window**: the threshold compared with the figure of the last
//!   60 s (six batches) once the window holds `min_samples` (50), a rollback
//!   after `failure_limit` (3) failed evaluations in a row, as
//!   `rollout::analysis` judges `error_rate`, `latency_p99_ratio` and
//!   `accuracy_drop`.
//!
//! Run with `cargo bench --bench judgment` (about a minute in release; no
//! network). Pass a number to change the rollouts per row (default 1 000).

use std::collections::VecDeque;
use std::time::Instant as Clock;

use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Binomial, Distribution, LogNormal};
use switchyard::rollout::sequential::{
    accuracy_drop, accuracy_drop_paired, error_rate_increase, latency_p99_ratio, Counts, Outcome,
    Settings,
};
use switchyard::telemetry::window::{Summary, Window};
use switchyard::telemetry::Pairs;
use tokio::time::{Duration, Instant};

/// Candidate samples per evaluation (requests, labels or labelled pairs).
const BATCH: u64 = 50;
/// Stable samples per candidate sample in a canary step at 10 %.
const CANARY_STABLE: u64 = 9;
/// Batches a 60 s window holds at a 10 s interval.
const WINDOW: usize = 6;
/// `min_samples`.
const MIN_SAMPLES: u64 = 50;
/// `failure_limit`.
const FAILURE_LIMIT: u32 = 3;
/// Evaluations in a 5-minute and a 15-minute step.
const SHORT_STEP: usize = 30;
const LONG_STEP: usize = 90;
/// Evaluations after which an undecided sequential test is given up (100 000 candidate samples).
const CAP: usize = 2_000;

/// The allowances of the gates simulated.
const MAX_INCREASE: f64 = 0.005;
const MAX_RATIO: f64 = 1.5;
const MAX_DROP: f64 = 0.02;

// === the world ===

/// What a candidate is, against a stable, in one gate's terms.
#[derive(Clone, Copy)]
enum Truth {
    /// Error rates of stable and candidate; 9 stable requests per candidate request.
    Errors { stable: f64, candidate: f64 },
    /// Lognormal latencies (median ms, log-spread); the candidate's are the stable's
    /// made `scale` times slower and `shift_ms` later.
    Latency {
        median_ms: f64,
        sigma: f64,
        scale: f64,
        shift_ms: f64,
    },
    /// Labelled pairs: shares with only the stable right and only the candidate right.
    Paired {
        stable_only: f64,
        candidate_only: f64,
    },
    /// Accuracies of each model's own labelled answers; 9 stable labels per candidate label.
    Unpaired { stable: f64, candidate: f64 },
}

/// One evaluation's new samples.
enum Batch {
    Counts { candidate: Counts, stable: Counts },
    Latency { candidate: Summary, stable: Summary },
    Pairs(Pairs),
}

/// Draws batches for one rollout.
struct World {
    truth: Truth,
    rng: StdRng,
    windows: (Window, Window),
    epoch: u64,
    t0: Instant,
}

impl World {
    fn new(truth: Truth, seed: u64) -> World {
        let t0 = Instant::now();
        let one = || Window::with_origin(t0, Duration::from_secs(1), 1);
        World {
            truth,
            rng: StdRng::seed_from_u64(seed),
            windows: (one(), one()),
            epoch: 0,
            t0,
        }
    }

    fn batch(&mut self) -> Batch {
        let rng = &mut self.rng;
        match self.truth {
            Truth::Errors { stable, candidate } => Batch::Counts {
                candidate: Counts::new(binomial(rng, BATCH, candidate), BATCH),
                stable: Counts::new(
                    binomial(rng, BATCH * CANARY_STABLE, stable),
                    BATCH * CANARY_STABLE,
                ),
            },
            Truth::Unpaired { stable, candidate } => Batch::Counts {
                candidate: Counts::new(binomial(rng, BATCH, candidate), BATCH),
                stable: Counts::new(
                    binomial(rng, BATCH * CANARY_STABLE, stable),
                    BATCH * CANARY_STABLE,
                ),
            },
            Truth::Paired {
                stable_only,
                candidate_only,
            } => {
                let b = binomial(rng, BATCH, stable_only);
                let c = binomial(rng, BATCH - b, candidate_only / (1.0 - stable_only));
                Batch::Pairs(Pairs {
                    pairs: BATCH,
                    stable_only: b,
                    candidate_only: c,
                })
            }
            Truth::Latency {
                median_ms,
                sigma,
                scale,
                shift_ms,
            } => {
                // Each batch in its own epoch of a one-slot window: the slot starts empty.
                self.epoch += 1;
                let at = self.t0 + Duration::from_secs(self.epoch);
                let (c, s) = &self.windows;
                for _ in 0..BATCH {
                    let x = lognormal(rng, median_ms, sigma) * scale + shift_ms;
                    c.record(at, Duration::from_secs_f64(x / 1000.0), false);
                }
                for _ in 0..BATCH * CANARY_STABLE {
                    let x = lognormal(rng, median_ms, sigma);
                    s.record(at, Duration::from_secs_f64(x / 1000.0), false);
                }
                Batch::Latency {
                    candidate: c.summary(at, Duration::ZERO),
                    stable: s.summary(at, Duration::ZERO),
                }
            }
        }
    }
}

/// Draws how many of `n` Bernoulli(`p`) trials succeed.
fn binomial(rng: &mut StdRng, n: u64, p: f64) -> u64 {
    Binomial::new(n, p).expect("a probability").sample(rng)
}

/// A lognormal draw in ms with median `median_ms` and log-spread `sigma`.
fn lognormal(rng: &mut StdRng, median_ms: f64, sigma: f64) -> f64 {
    LogNormal::new(median_ms.ln(), sigma)
        .expect("a spread")
        .sample(rng)
}

// === the judges ===

/// Everything a judge has seen: running totals, or a window's worth.
#[derive(Default, Clone)]
struct Seen {
    candidate: Counts,
    stable: Counts,
    pairs: Pairs,
    candidate_latency: Summary,
    stable_latency: Summary,
}

impl Seen {
    fn add(&mut self, batch: &Batch) {
        match batch {
            Batch::Counts { candidate, stable } => {
                self.candidate = Counts::new(
                    self.candidate.count + candidate.count,
                    self.candidate.of + candidate.of,
                );
                self.stable =
                    Counts::new(self.stable.count + stable.count, self.stable.of + stable.of);
            }
            Batch::Pairs(p) => {
                self.pairs.pairs += p.pairs;
                self.pairs.stable_only += p.stable_only;
                self.pairs.candidate_only += p.candidate_only;
            }
            Batch::Latency { candidate, stable } => {
                self.candidate_latency.merge(candidate);
                self.stable_latency.merge(stable);
            }
        }
    }

    /// Candidate samples seen.
    fn samples(&self, truth: Truth) -> u64 {
        match truth {
            Truth::Errors { .. } | Truth::Unpaired { .. } => self.candidate.of,
            Truth::Paired { .. } => self.pairs.pairs,
            Truth::Latency { .. } => self.candidate_latency.requests,
        }
    }

    /// The sequential decision on everything seen.
    fn sequential(&self, truth: Truth, settings: &Settings) -> Outcome {
        match truth {
            Truth::Errors { .. } => {
                error_rate_increase(self.candidate, self.stable, MAX_INCREASE, settings).outcome
            }
            Truth::Unpaired { .. } => {
                // Counts of right answers.
                accuracy_drop(self.candidate, self.stable, MAX_DROP, settings).outcome
            }
            Truth::Paired { .. } => accuracy_drop_paired(self.pairs, MAX_DROP, settings).outcome,
            Truth::Latency { .. } => {
                latency_p99_ratio(
                    &self.candidate_latency,
                    &self.stable_latency,
                    MAX_RATIO,
                    Duration::ZERO,
                    settings,
                )
                .outcome
            }
        }
    }

    /// The fixed-window evaluation of this window: `Some(true)` failed, `Some(false)`
    /// passed, `None` too few samples.
    fn fixed(&self, truth: Truth) -> Option<bool> {
        if self.samples(truth) < MIN_SAMPLES {
            return None;
        }
        let share = |c: Counts| c.count as f64 / c.of.max(1) as f64;
        Some(match truth {
            Truth::Errors { .. } => share(self.candidate) - share(self.stable) > MAX_INCREASE,
            Truth::Unpaired { .. } => share(self.stable) - share(self.candidate) > MAX_DROP,
            Truth::Paired { .. } => {
                let p = self.pairs;
                (p.stable_only as f64 - p.candidate_only as f64) / p.pairs as f64 > MAX_DROP
            }
            Truth::Latency { .. } => {
                let c = self.candidate_latency.quantile(0.99)?.as_secs_f64();
                let s = self.stable_latency.quantile(0.99)?.as_secs_f64();
                c / s > MAX_RATIO
            }
        })
    }
}

/// What became of one rollout under each judge.
struct Rollout {
    /// The sequential outcome and the candidate samples it took (`Inconclusive` at the cap).
    sequential: (Outcome, u64),
    /// The fixed-window rollback: evaluation number and candidate samples, if any within `LONG_STEP`.
    fixed: Option<(usize, u64)>,
}

fn rollout(truth: Truth, seed: u64, settings: &Settings) -> Rollout {
    let mut world = World::new(truth, seed);
    let mut total = Seen::default();
    let mut recent: VecDeque<Batch> = VecDeque::with_capacity(WINDOW);
    let mut sequential = None;
    let (mut fixed, mut failures) = (None, 0u32);
    for evaluation in 1..=CAP {
        let batch = world.batch();
        total.add(&batch);
        if recent.len() == WINDOW {
            recent.pop_front();
        }
        recent.push_back(batch);

        if sequential.is_none() && total.samples(truth) >= MIN_SAMPLES {
            let outcome = total.sequential(truth, settings);
            if outcome != Outcome::Inconclusive {
                sequential = Some((outcome, total.samples(truth)));
            }
        }
        if fixed.is_none() && evaluation <= LONG_STEP {
            let mut window = Seen::default();
            for b in &recent {
                window.add(b);
            }
            match window.fixed(truth) {
                Some(true) => failures += 1,
                Some(false) => failures = 0,
                None => {}
            }
            if failures >= FAILURE_LIMIT {
                fixed = Some((evaluation, total.samples(truth)));
            }
        }
        if sequential.is_some() && (fixed.is_some() || evaluation >= LONG_STEP) {
            break;
        }
    }
    Rollout {
        sequential: sequential.unwrap_or((Outcome::Inconclusive, total.samples(truth))),
        fixed,
    }
}

// === the table ===

struct Row {
    gate: &'static str,
    candidate: &'static str,
    /// True when the candidate is within the threshold (failing it is an error).
    good: bool,
    truth: Truth,
}

fn median(mut v: Vec<u64>) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(v[v.len() / 2])
}

fn pct(n: usize, of: usize) -> String {
    format!("{:.1} %", 100.0 * n as f64 / of as f64)
}

fn or_dash(v: Option<u64>) -> String {
    v.map_or("–".to_string(), |v| v.to_string())
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000);
    let settings = Settings::default();
    let errors = |candidate| Truth::Errors {
        stable: 0.01,
        candidate,
    };
    let latency = |sigma, scale, shift_ms| Truth::Latency {
        median_ms: 20.0,
        sigma,
        scale,
        shift_ms,
    };
    let paired = |drop: f64| Truth::Paired {
        stable_only: 0.03 + drop,
        candidate_only: 0.03,
    };
    let unpaired = |candidate| Truth::Unpaired {
        stable: 0.9,
        candidate,
    };
    #[rustfmt::skip]
    let rows = [
        Row { gate: "error_rate max_increase 0.5 %", candidate: "1 % (same as stable)", good: true, truth: errors(0.01) },
        Row { gate: "error_rate max_increase 0.5 %", candidate: "1.25 % (within)", good: true, truth: errors(0.0125) },
        Row { gate: "error_rate max_increase 0.5 %", candidate: "2 % (breach: twice the allowance)", good: false, truth: errors(0.02) },
        Row { gate: "error_rate max_increase 0.5 %", candidate: "3 %", good: false, truth: errors(0.03) },
        Row { gate: "error_rate max_increase 0.5 %", candidate: "6 %", good: false, truth: errors(0.06) },
        Row { gate: "latency_p99 max_ratio 1.5", candidate: "same (σ 0.5)", good: true, truth: latency(0.5, 1.0, 0.0) },
        Row { gate: "latency_p99 max_ratio 1.5", candidate: "same, heavy tail (σ 1.0)", good: true, truth: latency(1.0, 1.0, 0.0) },
        Row { gate: "latency_p99 max_ratio 1.5", candidate: "1.25× slower", good: true, truth: latency(0.5, 1.25, 0.0) },
        Row { gate: "latency_p99 max_ratio 1.5", candidate: "2× slower (breach)", good: false, truth: latency(0.5, 2.0, 0.0) },
        Row { gate: "latency_p99 max_ratio 1.5", candidate: "60 ms slower (p99 1.9×)", good: false, truth: latency(0.5, 1.0, 60.0) },
        Row { gate: "latency_p99 max_ratio 1.5", candidate: "3× slower", good: false, truth: latency(0.5, 3.0, 0.0) },
        Row { gate: "accuracy max_drop 2 %, paired (shadow)", candidate: "same accuracy", good: true, truth: paired(0.0) },
        Row { gate: "accuracy max_drop 2 %, paired (shadow)", candidate: "1 % less accurate (within)", good: true, truth: paired(0.01) },
        Row { gate: "accuracy max_drop 2 %, paired (shadow)", candidate: "4 % less (breach)", good: false, truth: paired(0.04) },
        Row { gate: "accuracy max_drop 2 %, paired (shadow)", candidate: "10 % less", good: false, truth: paired(0.10) },
        Row { gate: "accuracy max_drop 2 %, paired (shadow)", candidate: "20 % less (70 % accurate)", good: false, truth: paired(0.20) },
        Row { gate: "accuracy max_drop 2 %, unpaired (canary)", candidate: "same accuracy", good: true, truth: unpaired(0.9) },
        Row { gate: "accuracy max_drop 2 %, unpaired (canary)", candidate: "4 % less (breach)", good: false, truth: unpaired(0.86) },
        Row { gate: "accuracy max_drop 2 %, unpaired (canary)", candidate: "10 % less", good: false, truth: unpaired(0.80) },
    ];

    let started = Clock::now();
    println!("{runs} rollouts per row; {BATCH} candidate samples per evaluation (10 s); confidence {}, power {}, breach ×{}\n", settings.confidence, settings.power, settings.breach);
    println!("| gate | candidate | sequential: failed | sequential: median samples to decide | sequential: undecided at {} samples | fixed window: failed in 5 min | in 15 min | fixed window: median samples to roll back |", CAP as u64 * BATCH);
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (i, row) in rows.iter().enumerate() {
        let results: Vec<Rollout> = (0..runs)
            .map(|r| rollout(row.truth, (i * 1_000_003 + r) as u64, &settings))
            .collect();
        let failed = results
            .iter()
            .filter(|r| r.sequential.0 == Outcome::Fail)
            .count();
        let undecided = results
            .iter()
            .filter(|r| r.sequential.0 == Outcome::Inconclusive)
            .count();
        // Good candidates: samples to pass; bad ones: samples to be failed.
        let wanted = if row.good {
            Outcome::Pass
        } else {
            Outcome::Fail
        };
        let to_decide = median(
            results
                .iter()
                .filter(|r| r.sequential.0 == wanted)
                .map(|r| r.sequential.1)
                .collect(),
        );
        let fixed_short = results
            .iter()
            .filter(|r| r.fixed.is_some_and(|(e, _)| e <= SHORT_STEP))
            .count();
        let fixed_long = results.iter().filter(|r| r.fixed.is_some()).count();
        let fixed_samples = median(
            results
                .iter()
                .filter_map(|r| r.fixed.map(|f| f.1))
                .collect(),
        );
        let decided = if row.good { "pass" } else { "fail" };
        println!(
            "| {} | {} | {}{} | {} ({decided}) | {} | {} | {} | {} |",
            row.gate,
            row.candidate,
            pct(failed, runs),
            if row.good {
                " (good: should be ≤ 5 %)"
            } else {
                ""
            },
            or_dash(to_decide),
            pct(undecided, runs),
            pct(fixed_short, runs),
            pct(fixed_long, runs),
            or_dash(fixed_samples),
        );
    }
    println!("\n{:.0} s", started.elapsed().as_secs_f64());
}
