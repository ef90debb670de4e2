//! Sequential decisions for the relative gates: tests that stay valid however often they are looked at.
//!
//! Each gate compares the candidate with the stable and has a threshold on
//! the difference: `error_rate.max_increase`, `latency_p99.max_ratio` (with
//! `min_difference`), `accuracy.max_drop`, `shadow_agreement.min` against the
//! noise floor. A fixed-window gate that compares the window's figure with
//! the threshold at every evaluation fails a healthy candidate whenever noise
//! crosses the line once (or `failure_limit` times), and the more often it
//! looks the likelier that is. The decisions here instead rest on
//! *confidence sequences*: intervals that cover the true figure at every
//! sample size at once with probability at least `confidence`, so a healthy
//! candidate is failed with probability at most `1 - confidence` over the
//! whole rollout, however many evaluations read it.
//!
//! # Decisions
//!
//! For an effect θ (candidate minus stable, in the gate's own terms) with an
//! allowance δ (the threshold; θ ≤ δ is fine), at level α = 1 - confidence:
//!
//! * **fail** when the lower bound of θ is above δ: the data show, at
//!   `confidence`, the candidate beyond the threshold;
//! * **pass** when the upper bound of θ is at or below δ: the data show it
//!   within; or when the candidate has served `planned` samples, enough to
//!   catch a *breach* (θ = `breach` × δ, twice the allowance by default) with
//!   probability `power` (80 % by default), and none was shown. So a healthy
//!   candidate passes in a bounded number of samples, computed from the
//!   threshold and the stable's observed baseline;
//! * **inconclusive** otherwise, with `needed`: about how many more candidate
//!   samples would decide it (the sooner of the sample size at which the
//!   interval would clear δ if the current estimate held, and `planned`).
//!
//! Each bound holds at `confidence` on its own (it is one side of a region
//! valid at level α), so a failure of a candidate within the threshold has
//! probability at most α, and so has a "shown within" pass of a candidate
//! beyond it. Passing at `planned` lets a candidate just beyond the
//! threshold through more often: a breach of `breach` × δ gets through with
//! probability about 1 - `power`.
//!
//! # Counts: mixture martingales
//!
//! Every bound here comes from a nonnegative (super)martingale M_n with
//! M_0 = 1 under the value it tests, and Ville's inequality
//! `P(∃n: M_n ≥ 1/α) ≤ α`: the values it ever rejects are rejected wrongly
//! with probability at most α, however often it is looked at (the mixture
//! SPRT of Robbins, used for A/B tests by Johari et al. 2017, "Peeking at A/B
//! tests", and for deployments by Lindon, Sanden & Shirikian 2022, "Rapid
//! regression detection in software deployments through sequential testing").
//!
//! * **A binomial share** (errors of requests, wrong answers of labelled
//!   ones, disagreements of comparisons), x events of n: for each share p,
//!   `M_n(p) = B(x + rp, n - x + r(1-p)) / B(rp, r(1-p)) / (p^x (1-p)^{n-x})`,
//!   the likelihood ratio of Beta(rp, r(1-p)) alternatives centred on p, as an
//!   even mixture of a prior tuned to the threshold δ (r = 1/(16δ²)) and a
//!   broad one (r = 2, which catches large departures within a few dozen
//!   samples). The shares with `M_n(p) < 1/α` form the interval
//!   ([`Share`](mixture::Share)).
//! * **The candidate's share of user requests** (`sample_ratio`), against
//!   its weight: one share's interval at α, failing when it lies wholly
//!   outside `weight ± tolerance` and passing when wholly within.
//! * **A difference of two shares**, candidate minus stable: each share's
//!   interval at α/2, `lower = lower_c - upper_s`, `upper = upper_c - lower_s`.
//!   - `error_rate.max_increase`: errors of requests, θ = p_candidate - p_stable.
//!   - `accuracy.max_drop`, unpaired: wrong answers of labelled ones, θ =
//!     accuracy_stable - accuracy_candidate.
//!   - `shadow_agreement` against the noise floor: θ = the candidate's
//!     disagreement rate minus the stable's disagreement with itself (its
//!     calibration), allowance 1 - `min`; while no floor is measured, the
//!     candidate's disagreement rate alone at α. The figure shown is agreement
//!     with the floor credited, `1 - θ` (at most 1), as the fixed-window gate
//!     shows it.
//! * **Paired accuracy** (`accuracy.max_drop` when both models answered the
//!   same requests and each answer was scored against the same label): of n
//!   pairs, b had only the stable right and c only the candidate, and
//!   θ = (b - c)/n is the mean of D ∈ {+1, -1, 0} per pair. For each θ, a
//!   gambler betting a fraction λ ≥ 0 on D exceeding θ multiplies its wealth
//!   by `1 + λ(D - θ)`, a supermartingale whenever the mean is at most θ; the
//!   even mixture of 20 fixed fractions `λ_j = c_j/(1 + θ)`,
//!   `M⁺(θ) = Σ_j (1 + λ_j(1-θ))^b (1 - λ_j(1+θ))^c (1 - λ_j θ)^{n-b-c} / 20`,
//!   decreases in θ and rejects the means below the lower bound; bets on D
//!   below θ give the upper bound ([`Bets`](mixture::Bets); Waudby-Smith &
//!   Ramdas 2024, "Estimating means of bounded random variables by betting").
//!   Only the discordant pairs carry the difference: its variance is
//!   (π_b + π_c - θ²)/n, not the two accuracies' variances added, so for two
//!   models that mostly agree it needs a fraction of the labels.
//!
//! The plans (`planned`, `needed`) use the Gaussian forms of the same
//! boundaries (the normal mixture `√((V+ρ) ln((V+ρ)/(ρα²)))`), scaled to the
//! exact bound at the current sample size; they are forecasts, the decisions
//! themselves use only the exact bounds.
//!
//! # Latency: a confidence sequence for the p99
//!
//! For any latency distribution, the count of samples above its p99 is
//! binomial with share at most 1 % and the count at or above it binomial with
//! share at least 1 %. A beta-binomial mixture centred on 1 % bounds, at
//! every n at once, how many samples a 1 % tail allows: k_lo(n) ≤ K_n ≤
//! k_hi(n) ([`Tail`](mixture::Tail)). So the p99 is at least the
//! lowest latency of the histogram bucket where more than k_hi samples lie at
//! or above it, and below the upper edge of the bucket above which fewer than
//! k_lo lie (Howard & Ramdas 2022, "Sequential estimation of quantiles with
//! applications to A/B-testing and best-arm identification"). The bounds come
//! from the window's log-bucket histogram, so they are as coarse as its
//! buckets (1/16 of a power of two) and never tighter than the truth. Each arm
//! gets α/2. With `limit(q) = max(max_ratio · q, q + min_difference)`:
//! fail when the candidate's lower bound exceeds `limit(stable's upper
//! bound)`, pass when its upper bound is at most `limit(stable's lower
//! bound)`. A breach for the plan is the stable's latencies made
//! `1 + breach · (max_ratio - 1)` times slower (and `breach · min_difference`
//! later).
//!
//! # Inputs
//!
//! Only counts and histograms, which merge exactly across replicas and time
//! spans ([`Summary::merge`]). A confidence sequence is valid over *one*
//! growing sample: feed each gate everything since the test began (the
//! step, or the candidate's first sample at this weight), not a sliding
//! window, whose samples leave as well as arrive.

mod mixture;
mod special;
#[cfg(test)]
mod tests;

use crate::telemetry::Pairs;
use serde::Serialize;
use tokio::time::Duration;

use crate::telemetry::window::Summary;
use mixture::{bets_reach, prior_for, share_reach, smallest_n, Bets, Share, Tail};
use special::normal_quantile;

// === impl Settings ===

/// How sure a decision must be and how a healthy candidate's passing is planned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// `analysis.confidence`: each decision holds at this confidence at every look (0.5 to 0.999 999 999).
    pub confidence: f64,
    /// The chance that a breach is caught before a candidate that showed none passes (0.5 to 0.999).
    pub power: f64,
    /// How far beyond the threshold a breach lies, as a multiple of the allowance (2: twice the
    /// allowed increase, ratio or drop); at 1 or below no pass is planned and only "shown within" passes.
    pub breach: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            confidence: 0.95,
            power: 0.8,
            breach: 2.0,
        }
    }
}

impl Settings {
    /// The level α = 1 - confidence, kept within (1e-9, 0.5].
    fn alpha(&self) -> f64 {
        let c = if self.confidence.is_nan() {
            0.95
        } else {
            self.confidence
        };
        (1.0 - c).clamp(1e-9, 0.5)
    }

    /// The normal quantile of the power.
    fn z_power(&self) -> f64 {
        let p = if self.power.is_nan() { 0.8 } else { self.power };
        normal_quantile(p.clamp(0.5, 0.999))
    }

    /// The breach multiple, when a pass can be planned.
    fn breach(&self) -> Option<f64> {
        (self.breach > 1.0 && self.breach.is_finite()).then_some(self.breach)
    }
}

// === inputs ===

/// A count of events among samples, as the windows and the label store keep them: `count` of `of`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// The events (errors, right answers, agreements).
    pub count: u64,
    /// The samples they were counted among (requests, labels, comparisons).
    pub of: u64,
}

impl Counts {
    /// `count` of `of`, the count clamped to `of`.
    pub fn new(count: u64, of: u64) -> Counts {
        Counts {
            count: count.min(of),
            of,
        }
    }

    /// The samples without the event.
    fn rest(self) -> u64 {
        self.of - self.count.min(self.of)
    }
}

// === outputs ===

/// What a sequential test decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The data show, at the confidence, the candidate beyond the threshold.
    Fail,
    /// The data show it within, or enough samples to catch a breach showed none.
    Pass,
    /// Neither yet: hold.
    Inconclusive,
}

impl Outcome {
    /// The outcome as the status JSON spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Fail => "fail",
            Outcome::Pass => "pass",
            Outcome::Inconclusive => "inconclusive",
        }
    }
}

/// Where a figure lies at the confidence, at every look: `low ≤ figure ≤ high`, each end holding on its own.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub low: f64,
    /// May be infinite (a latency ratio whose stable p99 has no lower bound yet).
    pub high: f64,
}

/// A sequential gate's decision, with what it rests on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub outcome: Outcome,
    /// True when the interval itself decided; false for a pass because `planned`
    /// samples showed no breach (and for inconclusive).
    pub shown: bool,
    /// The gate's figure (increase, ratio, drop, agreement), when there is one.
    pub value: Option<f64>,
    /// Where the figure lies at the confidence.
    pub interval: Interval,
    /// The gate's threshold, in the figure's terms.
    pub threshold: f64,
    /// Candidate samples the decision rests on (requests, labels, pairs, comparisons).
    pub samples: u64,
    /// Candidate samples after which a candidate that showed no breach passes, when known.
    pub planned: Option<u64>,
    /// While inconclusive: about how many more candidate samples would decide it, when known.
    pub needed: Option<u64>,
    /// The test, in a few words.
    pub test: &'static str,
    /// A sentence for people.
    pub detail: String,
}

// === the gates ===

/// `error_rate.max_increase`: is the candidate's error rate more than `max_increase` above the stable's?
///
/// `candidate` and `stable` are errors of requests since the test began.
///
/// ```
/// use switchyard::rollout::sequential::{error_rate_increase, Counts, Outcome, Settings};
///
/// let bad = error_rate_increase(Counts::new(60, 1_000), Counts::new(90, 9_000), 0.005, &Settings::default());
/// assert_eq!(bad.outcome, Outcome::Fail); // 6 % against 1 %
/// let early = error_rate_increase(Counts::new(1, 100), Counts::new(9, 900), 0.005, &Settings::default());
/// assert_eq!(early.outcome, Outcome::Inconclusive);
/// assert!(early.needed.is_some());
/// ```
pub fn error_rate_increase(
    candidate: Counts,
    stable: Counts,
    max_increase: f64,
    settings: &Settings,
) -> Decision {
    let ev = difference(candidate, Some(stable), max_increase, settings);
    let shown = |v| {
        format!(
            "error rate {} against the stable's {}: {}",
            pct(share(candidate)),
            pct(share(stable)),
            signed_pct(v)
        )
    };
    let words = ("no candidate requests yet", "increase", "an increase");
    share_difference(&ev, shown, words, max_increase, settings)
}

/// `accuracy.max_drop` on labels of each model's own answers: is the candidate's accuracy more than `max_drop` below the stable's?
///
/// `candidate` and `stable` are right answers of labelled ones. When both
/// models answered the same requests (a shadow step), use
/// [`accuracy_drop_paired`]: it needs far fewer labels.
pub fn accuracy_drop(
    candidate: Counts,
    stable: Counts,
    max_drop: f64,
    settings: &Settings,
) -> Decision {
    let wrong = |c: Counts| Counts::new(c.rest(), c.of);
    let ev = difference(wrong(candidate), Some(wrong(stable)), max_drop, settings);
    let shown = |v| {
        format!(
            "accuracy {} against the stable's {}: {}",
            pct(share(candidate)),
            pct(share(stable)),
            below(v)
        )
    };
    let words = ("no labels of the candidate's answers yet", "drop", "a drop");
    share_difference(&ev, shown, words, max_drop, settings)
}

/// The decision of a difference of two shares against `max` (its allowance): the figure
/// `shown` of the estimate with its interval (`none` before any sample), the limit
/// `max {name} max`, and a breach of `{breach} of` the planned multiple of `max`.
fn share_difference(
    ev: &Evidence,
    shown: impl FnOnce(f64) -> String,
    (none, name, breach): (&str, &str, &str),
    max: f64,
    settings: &Settings,
) -> Decision {
    const TEST: &str = "mixture SPRT (binomial difference)";
    let figure = ev.estimate.map_or_else(
        || none.to_string(),
        |v| {
            format!(
                "{} ({} interval {} to {})",
                shown(v),
                level(settings),
                signed_pct(ev.low),
                signed_pct(ev.high)
            )
        },
    );
    let limit = format!("max {name} {}", pct(max));
    let breach = settings
        .breach()
        .map(|b| format!("{breach} of {}", pct(b * max)));
    ev.decision(TEST, figure, (&limit, max), breach, settings, |x| x)
}

/// `accuracy.max_drop` on pairs: both models' answers to the very same requests, scored against the same labels.
///
/// ```
/// use switchyard::rollout::sequential::{accuracy_drop_paired, Outcome, Settings};
/// use switchyard::telemetry::Pairs;
///
/// // 400 labelled mirrored requests: 120 only the stable got right, 4 only the candidate.
/// let pairs = Pairs { pairs: 400, stable_only: 120, candidate_only: 4 };
/// let d = accuracy_drop_paired(pairs, 0.02, &Settings::default());
/// assert_eq!(d.outcome, Outcome::Fail);
/// assert!((d.value.unwrap() - 0.29).abs() < 1e-12);
/// ```
pub fn accuracy_drop_paired(pairs: Pairs, max_drop: f64, settings: &Settings) -> Decision {
    const TEST: &str = "mixture SPRT (paired, discordant pairs)";
    let ev = paired(pairs, max_drop, settings);
    let figure = match ev.estimate {
        Some(v) => format!(
            "accuracy {} the stable's on the same {} requests (only the stable right on {}, only the candidate on {}; {} interval {} to {})",
            below(v),
            ev.samples,
            pairs.stable_only,
            pairs.candidate_only,
            level(settings),
            signed_pct(ev.low),
            signed_pct(ev.high)
        ),
        None => "no labelled requests both models answered yet".to_string(),
    };
    let limit = format!("max drop {}", pct(max_drop));
    let breach = settings
        .breach()
        .map(|b| format!("a drop of {}", pct(b * max_drop)));
    ev.decision(TEST, figure, (&limit, max_drop), breach, settings, |x| x)
}

/// `shadow_agreement.min` against the noise floor: does the candidate disagree with the stable more than the stable disagrees with itself, by more than `1 - min`?
///
/// `candidate` is agreements of compared mirrored answers; `noise` the
/// stable's agreements with itself of its self-comparisons (`shadow.calibrate`),
/// `None` while no floor is measured (then the candidate's disagreement alone
/// is judged, as the fixed-window gate does). The figure is agreement with
/// the floor credited, `1 - (candidate's disagreement - stable's)`, capped at 1.
pub fn shadow_agreement(
    candidate: Counts,
    noise: Option<Counts>,
    min: f64,
    settings: &Settings,
) -> Decision {
    let disagree = |c: Counts| Counts::new(c.rest(), c.of);
    let allowance = 1.0 - min;
    let ev = difference(
        disagree(candidate),
        noise.map(disagree),
        allowance,
        settings,
    );
    let test = match noise {
        Some(_) => "mixture SPRT (binomial difference, noise floor)",
        None => "mixture SPRT (binomial)",
    };
    let credited = |theta: f64| (1.0 - theta).min(1.0);
    let figure = match (ev.estimate, noise) {
        (Some(v), Some(n)) => format!(
            "shadow agreement {} with the noise floor credited ({} agreed, the stable with itself {}; {} interval {} to {})",
            pct(credited(v)),
            pct(share(candidate)),
            pct(share(n)),
            level(settings),
            pct(credited(ev.high)),
            pct(credited(ev.low))
        ),
        (Some(v), None) => format!(
            "shadow agreement {} ({} of {} compared; {} interval {} to {})",
            pct(credited(v)),
            candidate.count,
            candidate.of,
            level(settings),
            pct(credited(ev.high)),
            pct(credited(ev.low))
        ),
        (None, _) => "no compared shadow answers yet".to_string(),
    };
    let limit = format!("min {}", pct(min));
    let breach = settings
        .breach()
        .map(|b| format!("an agreement of {}", pct(1.0 - b * allowance)));
    let mut d = ev.decision(test, figure, (&limit, min), breach, settings, credited);
    // In agreement terms the bounds swap ends.
    d.interval = Interval {
        low: credited(ev.high),
        high: credited(ev.low),
    };
    d
}

/// `latency_p99.max_ratio` (with `min_difference`): is the candidate's p99 more than `max_ratio` times the stable's, and more than `min_difference` above it?
///
/// `candidate` and `stable` are the window summaries (their latency
/// histograms) of everything since the test began. The figure is the ratio
/// of the two histograms' p99s; the interval bounds the true ratio.
pub fn latency_p99_ratio(
    candidate: &Summary,
    stable: &Summary,
    max_ratio: f64,
    min_difference: Duration,
    settings: &Settings,
) -> Decision {
    const TEST: &str = "quantile confidence sequence (p99 ratio)";
    let ev = latency(candidate, stable, max_ratio, min_difference, settings);
    let m = min_difference.as_secs_f64();
    let figure = match (ev.estimate, candidate.quantile(P99), stable.quantile(P99)) {
        (Some(r), Some(c), Some(s)) => format!(
            "p99 {} is {r:.2}× the stable's {} ({} interval {:.2}× to {})",
            ms(c.as_secs_f64()),
            ms(s.as_secs_f64()),
            level(settings),
            ev.low,
            if ev.high.is_finite() {
                format!("{:.2}×", ev.high)
            } else {
                "unbounded".to_string()
            }
        ),
        _ if candidate.requests == 0 => "no candidate requests yet".to_string(),
        _ => "no stable requests yet".to_string(),
    };
    let limit = if m > 0.0 {
        format!("max {max_ratio}× or {} more", ms(m))
    } else {
        format!("max {max_ratio}×")
    };
    let breach = settings.breach().map(|b| {
        let ratio = 1.0 + b * (max_ratio - 1.0);
        if m > 0.0 {
            format!("a p99 {ratio:.2}× and {} above the stable's", ms(b * m))
        } else {
            format!("a p99 {ratio:.2}× the stable's")
        }
    });
    ev.decision(TEST, figure, (&limit, max_ratio), breach, settings, |x| x)
}

/// `sample_ratio`: did the candidate serve a share of the route's user requests far from its weight?
///
/// Of the user requests the route's split sent to a backend since the test
/// began, `candidate` went to the candidate and `stable` to the stable
/// (requests forced by the override header and mirrored copies are not
/// counted: see [`Backend::served`](crate::snapshot::Backend::served)); the
/// candidate's share should be `weight / 100`. A sticky split gives each
/// user's requests to one side, so the share it serves only approaches the
/// weight: the test allows a mismatch of 20 % of the smaller side's expected
/// share, and at least one percentage point ([`ratio_tolerance`]: ±1 point at
/// weights 5 and 95, ±2 at 10, ±10 at 50). It fails when the share's
/// confidence sequence ([`Share`], at `confidence`, valid at every look)
/// lies wholly outside `weight ± tolerance`, passes when it lies wholly
/// within, or when enough requests to catch a mismatch of `breach` times the
/// tolerance have shown none; otherwise it is inconclusive with `needed`
/// (requests of both backends, as are `samples` and `planned`). The figure
/// is the candidate's share, the threshold the expected share. A failure
/// means the comparisons of this step are biased, not that the candidate is
/// bad. A weight that is not a number is never judged (inconclusive).
///
/// ```
/// use switchyard::rollout::sequential::{sample_ratio, Outcome, Settings};
///
/// // At weight 5 % the candidate served 150 of 1 000 requests.
/// let skewed = sample_ratio(150, 850, 5.0, &Settings::default());
/// assert_eq!(skewed.outcome, Outcome::Fail);
/// assert_eq!(skewed.threshold, 0.05);
/// let fine = sample_ratio(10_000, 90_000, 10.0, &Settings::default());
/// assert_eq!(fine.outcome, Outcome::Pass);
/// let early = sample_ratio(6, 94, 5.0, &Settings::default());
/// assert_eq!(early.outcome, Outcome::Inconclusive);
/// assert!(early.needed.is_some());
/// ```
pub fn sample_ratio(candidate: u64, stable: u64, weight: f64, settings: &Settings) -> Decision {
    const TEST: &str = "mixture SPRT (binomial share)";
    let total = candidate.saturating_add(stable);
    let served = Counts::new(candidate, total);
    if weight.is_nan() {
        return Decision {
            outcome: Outcome::Inconclusive,
            shown: false,
            value: (total > 0).then(|| share(served)),
            interval: Interval {
                low: 0.0,
                high: 1.0,
            },
            threshold: f64::NAN,
            samples: total,
            planned: None,
            needed: None,
            test: TEST,
            detail: "no weight to compare the candidate's share with".to_string(),
        };
    }
    let expected = (weight / 100.0).clamp(0.0, 1.0);
    let tolerance = ratio_tolerance(expected);
    let ev = ratio(served, expected, tolerance, settings);
    let figure = match ev.estimate {
        Some(v) => format!(
            "the candidate served {} of {} user requests ({} interval {} to {})",
            pct(v),
            total,
            level(settings),
            pct(ev.low),
            pct(ev.high)
        ),
        None => "no user requests yet".to_string(),
    };
    let limit = format!("its weight's {} ± {}", pct(expected), pct(tolerance));
    let breach = settings
        .breach()
        .map(|b| format!("a share {} off", pct(b * tolerance)));
    ev.decision(TEST, figure, (&limit, expected), breach, settings, |x| x)
}

/// The mismatch `sample_ratio` allows around an `expected` share: 20 % of the smaller side's share (`min(expected, 1 - expected)`), at least one percentage point.
///
/// ```
/// use switchyard::rollout::sequential::ratio_tolerance;
/// assert_eq!(ratio_tolerance(0.02), 0.01); // a point at least
/// assert!((ratio_tolerance(0.05) - 0.01).abs() < 1e-12);
/// assert!((ratio_tolerance(0.5) - 0.1).abs() < 1e-12);
/// assert!((ratio_tolerance(0.9) - 0.02).abs() < 1e-12);
/// ```
pub fn ratio_tolerance(expected: f64) -> f64 {
    const RELATIVE: f64 = 0.2;
    const ABSOLUTE: f64 = 0.01;
    let smaller = expected.min(1.0 - expected).max(0.0);
    (RELATIVE * smaller).max(ABSOLUTE)
}

// === impl Evidence ===

/// What a test found, in terms of an excess θ over an allowance δ (θ ≤ δ is fine).
struct Evidence {
    estimate: Option<f64>,
    low: f64,
    high: f64,
    /// The fail test: true when the data show θ > δ.
    beyond: bool,
    /// The pass test: true when the data show θ ≤ δ.
    within: bool,
    samples: u64,
    planned: Option<u64>,
    /// About the sample size at which the interval would decide, if the estimate held.
    decide_at: Option<u64>,
}

impl Evidence {
    /// The decision on this evidence, its figure in the gate's terms (`show` maps θ to them).
    fn decision(
        &self,
        test: &'static str,
        figure: String,
        (limit, threshold): (&str, f64),
        breach: Option<String>,
        settings: &Settings,
        show: impl Fn(f64) -> f64,
    ) -> Decision {
        let planned_reached = self.planned.is_some_and(|p| self.samples >= p);
        let (outcome, shown) = if self.beyond {
            (Outcome::Fail, true)
        } else if self.within {
            (Outcome::Pass, true)
        } else if planned_reached {
            (Outcome::Pass, false)
        } else {
            (Outcome::Inconclusive, false)
        };
        let needed = match outcome {
            Outcome::Inconclusive => {
                let at = match (self.decide_at, self.planned) {
                    (Some(a), Some(p)) => Some(a.min(p)),
                    (a, p) => a.or(p),
                };
                at.map(|at| at.saturating_sub(self.samples).max(1))
            }
            _ => None,
        };
        let verdict = match outcome {
            Outcome::Fail => format!("beyond {limit}"),
            Outcome::Pass if shown => format!("within {limit}"),
            Outcome::Pass => format!(
                "nothing beyond {limit} shown in {} samples, enough to catch {} {} of the time",
                self.samples,
                breach.as_deref().unwrap_or("a breach"),
                pct(settings.power.clamp(0.5, 0.999))
            ),
            Outcome::Inconclusive => match needed {
                Some(n) => {
                    format!("not yet shown beyond or within {limit}: about {n} more samples")
                }
                None => format!("not yet shown beyond or within {limit}"),
            },
        };
        Decision {
            outcome,
            shown,
            value: self.estimate.map(&show),
            interval: Interval {
                low: show(self.low),
                high: show(self.high),
            },
            threshold,
            samples: self.samples,
            planned: self.planned,
            needed,
            test,
            detail: format!("{figure}: {verdict}"),
        }
    }
}

/// The Jeffreys-smoothed share of a count, (x + ½)/(n + 1): never 0 or 1, for plans.
fn smoothed(c: Counts) -> f64 {
    (c.count as f64 + 0.5) / (c.of as f64 + 1.0)
}

/// A share as a fraction, 0 without samples.
fn share(c: Counts) -> f64 {
    if c.of == 0 {
        0.0
    } else {
        c.count as f64 / c.of as f64
    }
}

/// How much wider the exact bound is than its approximation at the current sample size (within ½ and 3), to scale the approximation's forecasts.
fn calibration(exact: f64, approx: f64) -> f64 {
    if approx > 0.0 && exact.is_finite() {
        (exact / approx).clamp(0.5, 3.0)
    } else {
        1.0
    }
}

/// Rounds a planned sample size to a count.
fn count(n: f64) -> u64 {
    n.ceil().min(u64::MAX as f64) as u64
}

/// The difference of two binomial shares, candidate minus `base` (or the candidate's share alone without one), against `allowance`.
///
/// Each share gets its own confidence sequence ([`Share`]), at α/2 when there
/// are two, so the difference's bounds `lower(candidate) - upper(base)` and
/// `upper(candidate) - lower(base)` each hold at α.
fn difference(cand: Counts, base: Option<Counts>, allowance: f64, s: &Settings) -> Evidence {
    let alpha = s.alpha();
    let arm_alpha = if base.is_some() { alpha / 2.0 } else { alpha };
    let prior = prior_for(allowance);
    let c = Share::new(cand.count, cand.of, prior, arm_alpha);
    let (estimate, low, high) = match base {
        None if cand.of == 0 => (None, 0.0, 1.0),
        None => (Some(share(cand)), c.lower(), c.upper()),
        Some(b) if cand.of == 0 || b.of == 0 => (None, -1.0, 1.0),
        Some(b) => {
            let sb = Share::new(b.count, b.of, prior, arm_alpha);
            (
                Some(share(cand) - share(b)),
                c.lower() - sb.upper(),
                c.upper() - sb.lower(),
            )
        }
    };

    // Plans: the Gaussian reach of each share's bound at the sample sizes to come (the
    // base growing with the candidate as it has so far).
    let n1 = cand.of as f64;
    let base_share = base.map_or(0.0, smoothed);
    let per_cand = base.map(|b| b.of as f64 / n1.max(1.0));
    let plannable = per_cand.is_none_or(|k| k > 0.0);
    let base_var = base_share * (1.0 - base_share);
    let reach_at = |pc: f64, n: f64| {
        let own = share_reach(n, pc * (1.0 - pc), prior, arm_alpha);
        own + per_cand.map_or(0.0, |k| share_reach(k * n, base_var, prior, arm_alpha))
    };
    let spread_at = |pc: f64, n: f64| {
        (pc * (1.0 - pc) / n + per_cand.map_or(0.0, |k| base_var / (k * n))).sqrt()
    };
    let planned = match s.breach() {
        Some(b) if allowance > 0.0 && plannable => {
            let pc = (base_share + b * allowance).min(1.0 - 1e-9);
            let alt = pc - base_share;
            let z = s.z_power();
            smallest_n(1.0, |n| {
                alt - reach_at(pc, n) - z * spread_at(pc, n) >= allowance
            })
            .map(count)
        }
        _ => None,
    };
    let decide_at = match estimate {
        Some(e) if plannable && e != allowance => {
            let gap = (e - allowance).abs();
            let pc = smoothed(cand);
            // Scale the approximation to the exact bound on the side that would decide.
            let exact = if e > allowance { e - low } else { high - e };
            let scale = calibration(exact, reach_at(pc, n1));
            smallest_n(n1 * 1.01, |n| scale * reach_at(pc, n) < gap).map(count)
        }
        _ => None,
    };
    Evidence {
        estimate,
        low,
        high,
        beyond: estimate.is_some() && low > allowance,
        within: estimate.is_some() && high <= allowance,
        samples: cand.of,
        planned,
        decide_at,
    }
}

/// The share `served.count / served.of` against `expected ± tolerance`, by its confidence sequence ([`Share`]) at α.
///
/// Fails when the interval lies wholly above `expected + tolerance` or
/// wholly below `expected - tolerance` (the true share is in neither unless
/// the interval misses it, which happens at some look with probability at
/// most α), passes when it lies wholly within.
fn ratio(served: Counts, expected: f64, tolerance: f64, s: &Settings) -> Evidence {
    let alpha = s.alpha();
    let prior = prior_for(tolerance);
    let (from, to) = (expected - tolerance, expected + tolerance);
    let (estimate, low, high) = if served.of == 0 {
        (None, 0.0, 1.0)
    } else {
        let c = Share::new(served.count, served.of, prior, alpha);
        (Some(share(served)), c.lower(), c.upper())
    };
    let n0 = served.of as f64;
    let reach_at = |p: f64, n: f64| share_reach(n, p * (1.0 - p), prior, alpha);

    // Plans: the requests after which a share `breach` tolerances off (on whichever side
    // takes longer to show, within 0 and 1) would be shown beyond with the power.
    let planned = match s.breach() {
        Some(b) => {
            let z = s.z_power();
            let off = b * tolerance;
            [expected - off, expected + off]
                .into_iter()
                .filter(|p| *p > 0.0 && *p < 1.0)
                .filter_map(|p| {
                    let spread = |n: f64| (p * (1.0 - p) / n).sqrt();
                    smallest_n(1.0, |n| off - reach_at(p, n) - z * spread(n) >= tolerance)
                })
                .reduce(f64::max)
                .map(count)
        }
        None => None,
    };
    let decide_at = estimate.and_then(|e| {
        // How far the interval must still shrink on the side that would decide.
        let (gap, exact) = if e > to {
            (e - to, e - low)
        } else if e < from {
            (from - e, high - e)
        } else {
            ((e - from).min(to - e), (high - e).max(e - low))
        };
        if gap <= 0.0 {
            return None;
        }
        let p = smoothed(served);
        let scale = calibration(exact, reach_at(p, n0));
        smallest_n(n0 * 1.01, |n| scale * reach_at(p, n) < gap).map(count)
    });
    Evidence {
        estimate,
        low,
        high,
        beyond: estimate.is_some() && (low > to || high < from),
        within: estimate.is_some() && low >= from && high <= to,
        samples: served.of,
        planned,
        decide_at,
    }
}

/// The paired difference (stable_only - candidate_only)/pairs against `allowance`, by betting ([`Bets`]): each bound at α.
fn paired(p: Pairs, allowance: f64, s: &Settings) -> Evidence {
    let alpha = s.alpha();
    let b = p.stable_only;
    let c = p.candidate_only.min(u64::MAX - b);
    let n = p.pairs.max(b + c);
    let (xb, xc, nf) = (b as f64, c as f64, n as f64);
    let (estimate, low, high) = if n == 0 {
        (None, -1.0, 1.0)
    } else {
        let bets = Bets::new(b, c, n - b - c, alpha);
        (Some((xb - xc) / nf), bets.lower(), bets.upper())
    };

    // Plans: σ² = π_b + π_c - θ² per pair.
    let smooth = |x: f64| (x + 0.5) / (nf + 1.5);
    let pc = smooth(xc);
    let planned = match s.breach() {
        Some(m) if allowance > 0.0 => {
            let alt = (m * allowance).min(1.0 - 2.0 * pc);
            let var = (pc + alt + pc - alt * alt).max(1e-12);
            let z = s.z_power();
            smallest_n(1.0, |n| {
                alt - bets_reach(n, var, alpha) - z * (var / n).sqrt() >= allowance
            })
            .map(count)
        }
        _ => None,
    };
    let decide_at = match estimate {
        Some(e) if e != allowance => {
            let gap = (e - allowance).abs();
            let var = (smooth(xb) + pc - e * e).max(1e-12);
            let exact = if e > allowance { e - low } else { high - e };
            let scale = calibration(exact, bets_reach(nf, var, alpha));
            smallest_n(nf * 1.01, |n| scale * bets_reach(n, var, alpha) < gap).map(count)
        }
        _ => None,
    };
    Evidence {
        estimate,
        low,
        high,
        beyond: estimate.is_some() && low > allowance,
        within: estimate.is_some() && high <= allowance,
        samples: n,
        planned,
        decide_at,
    }
}

/// The quantile the latency gate compares.
const P99: f64 = 0.99;

/// The p99 ratio test on two latency histograms.
fn latency(
    candidate: &Summary,
    stable: &Summary,
    max_ratio: f64,
    min_difference: Duration,
    s: &Settings,
) -> Evidence {
    let alpha = s.alpha();
    let p = 1.0 - P99;
    let tail = Tail::new(p, alpha / 2.0);
    let (c, st) = (Histogram::of(candidate), Histogram::of(stable));
    let m = min_difference.as_secs_f64();
    let limit = |q: f64| (max_ratio * q).max(q + m);

    let (c_lo, c_hi) = tail.allowed(c.total);
    let (s_lo, s_hi) = tail.allowed(st.total);
    let (lc, uc) = (c.lower(c_hi), c.upper(c_lo));
    let (ls, us) = (st.lower(s_hi), st.upper(s_lo));
    let estimate = match (candidate.quantile(P99), stable.quantile(P99)) {
        (Some(a), Some(b)) if b > Duration::ZERO => Some(a.as_secs_f64() / b.as_secs_f64()),
        _ => None,
    };
    let low = if us.is_finite() { lc / us } else { 0.0 };
    let high = if ls > 0.0 { uc / ls } else { f64::INFINITY };
    let beyond = estimate.is_some() && us.is_finite() && lc > limit(us);
    let within = estimate.is_some() && uc.is_finite() && uc <= limit(ls);

    // Plans: the exact tail counts at the sample sizes to come, on the histograms' present
    // shapes. The stable's upper bound at ns samples: the upper edge of the bucket above
    // which its histogram holds fewer than k_lo(ns) of ns.
    let per_cand = st.total as f64 / (c.total.max(1)) as f64;
    let stable_upper = |ns: f64| {
        let (fewest, _) = tail.allowed(count(ns));
        if fewest == 0 {
            f64::INFINITY
        } else {
            st.edge_over(st.above(fewest as f64 / ns))
        }
    };
    let planned = match s.breach() {
        Some(b) if st.total > 0 && (max_ratio > 1.0 || m > 0.0) => {
            let ratio = 1.0 + b * (max_ratio - 1.0);
            let z = s.z_power();
            smallest_n(1.0, |n| {
                let us = stable_upper(per_cand * n);
                if !us.is_finite() {
                    return false;
                }
                // A breach: the stable's latencies x made max(ratio·x, x + b·m); its
                // samples surely above limit(us) are the stable's surely above y.
                let x = limit(us);
                let y = (x / ratio.max(1.0)).min(x - b * m);
                let g = if y <= 0.0 { 1.0 } else { st.share_from(y) };
                let (_, most) = tail.allowed(count(n));
                n * g - z * (n * g * (1.0 - g)).sqrt() > most as f64
            })
            .map(count)
        }
        _ => None,
    };
    // When would the exact test decide if the candidate's histogram kept its shape? Failing
    // needs more than k_hi(n) samples in buckets wholly above limit(stable's upper bound),
    // passing fewer than k_lo(n) in buckets reaching above limit(stable's lower bound).
    let upper_at = |n: f64| {
        if us.is_finite() {
            us
        } else {
            stable_upper(per_cand * n)
        }
    };
    let n0 = c.total as f64;
    let decide_at = match stable.quantile(P99) {
        Some(q) if c.total > 0 => {
            let lean = c.share_above(limit(q.as_secs_f64()));
            let counted = |n: f64| tail.allowed(count(n));
            if lean > p {
                smallest_n(n0 * 1.01, |n| {
                    let us = upper_at(n);
                    let g = c.share_from(limit(us));
                    us.is_finite() && n * g > counted(n).1 as f64
                })
            } else {
                let g = c.share_reaching(limit(ls));
                (g < p)
                    .then(|| smallest_n(n0 * 1.01, |n| n * g < counted(n).0 as f64))
                    .flatten()
            }
            .map(count)
        }
        _ => None,
    };
    Evidence {
        estimate,
        low,
        high,
        beyond,
        within,
        samples: c.total,
        planned,
        decide_at,
    }
}

// === impl Histogram ===

/// A summary's latency histogram in seconds: non-empty buckets, fastest first.
struct Histogram {
    /// (lowest latency, first latency above — infinite for the top bucket —, samples).
    buckets: Vec<(f64, f64, u64)>,
    total: u64,
}

impl Histogram {
    fn of(s: &Summary) -> Histogram {
        let buckets: Vec<(f64, f64, u64)> = s
            .latency_buckets()
            .map(|(low, high, n)| {
                let high = high.map_or(f64::INFINITY, |h| h.as_secs_f64());
                (low.as_secs_f64(), high, n)
            })
            .collect();
        let total = buckets.iter().fold(0u64, |t, b| t.saturating_add(b.2));
        Histogram { buckets, total }
    }

    /// A lower bound of the quantile when at most `most` samples may lie above it: the lowest
    /// latency of the highest bucket at or above which more than `most` lie (0 when none).
    fn lower(&self, most: u64) -> f64 {
        let mut above = 0u64;
        for &(low, _, n) in self.buckets.iter().rev() {
            above = above.saturating_add(n);
            if above > most {
                return low;
            }
        }
        0.0
    }

    /// An upper bound of the quantile when at least `fewest` samples lie at or above it: the
    /// upper edge of the lowest bucket above which fewer than `fewest` lie (infinite when none).
    fn upper(&self, fewest: u64) -> f64 {
        if fewest == 0 {
            return f64::INFINITY;
        }
        let mut below = 0u64;
        for &(_, high, n) in &self.buckets {
            below = below.saturating_add(n);
            if self.total - below < fewest {
                return high;
            }
        }
        f64::INFINITY
    }

    /// The share of samples in buckets whose lowest latency is above `x` (surely above it).
    fn share_from(&self, x: f64) -> f64 {
        self.share(|low, _| low > x)
    }

    /// The share of samples in buckets that reach above `x` (possibly above it).
    fn share_reaching(&self, x: f64) -> f64 {
        self.share(|_, high| high > x)
    }

    fn share(&self, counts: impl Fn(f64, f64) -> bool) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let n: u64 = self
            .buckets
            .iter()
            .filter(|b| counts(b.0, b.1))
            .map(|b| b.2)
            .sum();
        n as f64 / self.total as f64
    }

    /// The upper edge of the bucket holding `x` (`x` itself between buckets).
    fn edge_over(&self, x: f64) -> f64 {
        match self.buckets.iter().find(|b| b.1 > x) {
            Some(&(low, high, _)) if low <= x => high,
            _ => x,
        }
    }

    /// The share of samples above `x`, spreading each bucket's samples evenly across it.
    fn share_above(&self, x: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let mut above = 0.0;
        for &(low, high, n) in &self.buckets {
            if low >= x {
                above += n as f64;
            } else if high > x && high.is_finite() {
                above += n as f64 * (high - x) / (high - low);
            }
        }
        above / self.total as f64
    }

    /// The latency above which a share `share` of the samples lies (the inverse of `share_above`).
    fn above(&self, share: f64) -> f64 {
        let target = share * self.total as f64;
        let mut seen = 0.0;
        for &(low, high, n) in self.buckets.iter().rev() {
            let n = n as f64;
            if seen + n >= target {
                if !high.is_finite() {
                    return low;
                }
                return high - (target - seen) / n * (high - low);
            }
            seen += n;
        }
        self.buckets.first().map_or(0.0, |b| b.0)
    }
}

// === text ===

/// The confidence as a percentage ("95%", "99.9%").
fn level(s: &Settings) -> String {
    let c = ((1.0 - s.alpha()) * 1000.0).round() / 10.0;
    format!("{c}%")
}

/// A share as a percentage with two decimals.
fn pct(share: f64) -> String {
    format!("{:.2}%", share * 100.0)
}

/// A difference of shares as a signed percentage with two decimals.
fn signed_pct(share: f64) -> String {
    format!("{:+.2}%", share * 100.0)
}

/// A drop in accuracy as words: "2.00% below", or "1.00% above" for a gain.
fn below(drop: f64) -> String {
    if drop >= 0.0 {
        format!("{} below", pct(drop))
    } else {
        format!("{} above", pct(-drop))
    }
}

/// Seconds as milliseconds with one decimal.
fn ms(seconds: f64) -> String {
    format!("{:.1}ms", seconds * 1000.0)
}
