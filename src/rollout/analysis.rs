//! Analysis gates: each evaluation reads the candidate's (and the stable's) window and
//! gives every configured gate pass / fail / inconclusive / skipped.
//!
//! ```
//! use switchyard::config::{ErrorRateGate, GatesConfig};
//! use switchyard::rollout::analysis::{evaluate, Gate, Scope, Verdict};
//! use switchyard::telemetry::window::Window;
//! use tokio::time::{Duration, Instant};
//!
//! let now = Instant::now();
//! let w = Window::new(Duration::from_secs(1), 61);
//! for i in 0..100 { w.record(now, Duration::from_millis(5), i % 10 == 0); }
//! let error_rate = Some(ErrorRateGate { max: Some(0.05), max_increase: None });
//! let gates = GatesConfig { error_rate, ..Default::default() };
//! let stable = w.summary(now, Duration::from_secs(60));
//! let a = evaluate(&gates, 50, &stable, &stable, Scope::default());
//! assert_eq!(a.verdict, Verdict::Fail); // 10 % errors > 5 %
//! assert_eq!(a.gates[0].gate, Gate::ErrorRate);
//! ```

use serde::{Deserialize, Serialize};
use tokio::time::Duration;

use super::sequential::{self, Counts, Decision, Interval, Outcome, Settings};
use crate::config::GatesConfig;
use crate::feedback::Score;
use crate::observe::DriftWait;
use crate::telemetry::now_rfc3339;
use crate::telemetry::window::Summary;
use crate::telemetry::Pairs;

/// The outcome of one evaluation as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    /// Too few samples: hold, never pass, never fail.
    Inconclusive,
}

impl Verdict {
    /// The verdict as the status JSON and the metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
        }
    }

    /// The verdict on `gates`: any failure fails; too few candidate samples (`!enough`) or
    /// any inconclusive gate holds; skipped gates neither hold nor fail.
    /// A failed `sample_ratio` holds: the split, not the candidate, is at fault (the
    /// controller pauses the rollout).
    fn of(gates: &[GateResult], enough: bool) -> Verdict {
        let failed = |g: &&GateResult| g.outcome == GateOutcome::Fail;
        if gates
            .iter()
            .filter(failed)
            .any(|g| g.gate != Gate::SampleRatio)
        {
            Verdict::Fail
        } else if !enough
            || gates
                .iter()
                .any(|g| g.outcome == GateOutcome::Inconclusive || failed(&g))
        {
            Verdict::Inconclusive
        } else {
            Verdict::Pass
        }
    }
}

/// The outcome of one gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GateOutcome {
    Pass,
    Fail,
    Inconclusive,
    /// The gate cannot apply to this step; it neither holds nor fails.
    Skipped,
}

impl GateOutcome {
    /// The outcome as the status JSON spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            GateOutcome::Pass => "pass",
            GateOutcome::Fail => "fail",
            GateOutcome::Inconclusive => "inconclusive",
            GateOutcome::Skipped => "skipped",
        }
    }
}

/// The name of a gate, as `rollout.analysis.gates`, the status JSON and the metrics'
/// `gate` label spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// The candidate's share of errors, at most `error_rate.max`.
    ErrorRate,
    /// The candidate's error rate minus the stable's, at most `error_rate.max_increase`.
    ErrorRateIncrease,
    /// The candidate's p99 latency, at most `latency_p99.max`.
    LatencyP99,
    /// The candidate's p99 over the stable's, at most `latency_p99.max_ratio`.
    LatencyP99Ratio,
    /// The share of mirrored requests the candidate answered like the stable, at least
    /// `shadow_agreement.min`.
    ShadowAgreement,
    /// The candidate's outputs against the stable's (PSI or Jensen-Shannon distance), at
    /// most `output_drift.max`.
    OutputDrift,
    /// The candidate's accuracy on labels, at least `accuracy.min`.
    Accuracy,
    /// How far the candidate's accuracy is below the stable's, at most `accuracy.max_drop`.
    AccuracyDrop,
    /// The candidate's share of the route's user requests, near its weight (`sample_ratio`).
    SampleRatio,
}

impl Gate {
    /// Every gate, in the order an evaluation lists them.
    pub const ALL: [Gate; 9] = [
        Gate::ErrorRate,
        Gate::ErrorRateIncrease,
        Gate::LatencyP99,
        Gate::LatencyP99Ratio,
        Gate::ShadowAgreement,
        Gate::OutputDrift,
        Gate::Accuracy,
        Gate::AccuracyDrop,
        Gate::SampleRatio,
    ];

    /// The gate's name as the config, the status JSON and the metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Gate::ErrorRate => "error_rate",
            Gate::ErrorRateIncrease => "error_rate_increase",
            Gate::LatencyP99 => "latency_p99",
            Gate::LatencyP99Ratio => "latency_p99_ratio",
            Gate::ShadowAgreement => "shadow_agreement",
            Gate::OutputDrift => "output_drift",
            Gate::Accuracy => "accuracy",
            Gate::AccuracyDrop => "accuracy_drop",
            Gate::SampleRatio => "sample_ratio",
        }
    }

    /// Which side of its threshold passes.
    pub fn bound(self) -> Bound {
        match self {
            Gate::ShadowAgreement | Gate::Accuracy => Bound::Min,
            Gate::ErrorRate
            | Gate::ErrorRateIncrease
            | Gate::LatencyP99
            | Gate::LatencyP99Ratio
            | Gate::OutputDrift
            | Gate::AccuracyDrop => Bound::Max,
            Gate::SampleRatio => Bound::Near,
        }
    }
}

/// Which side of a gate's threshold passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bound {
    /// The figure passes at or below the threshold.
    Max,
    /// The figure passes at or above the threshold.
    Min,
    /// The figure passes near the threshold (within a tolerance the detail states).
    Near,
}

impl Bound {
    /// The bound as the status JSON spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Bound::Max => "max",
            Bound::Min => "min",
            Bound::Near => "near",
        }
    }
}

/// Lets a name be compared with its spelling (`result.gate == "error_rate"`), as callers
/// that hold a name from a config, a URL or a test do.
macro_rules! eq_spelling {
    ($($name:ty),*) => {$(
        impl PartialEq<str> for $name {
            fn eq(&self, spelling: &str) -> bool {
                self.as_str() == spelling
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, spelling: &&str) -> bool {
                self.as_str() == *spelling
            }
        }
    )*};
}

eq_spelling!(Gate, Bound);

/// One gate's figure, threshold and outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub gate: Gate,
    /// The measured figure (ratio, or seconds for latency), when there was one.
    pub value: Option<f64>,
    pub threshold: f64,
    /// Which side of the threshold passes.
    pub bound: Bound,
    pub outcome: GateOutcome,
    /// A sentence for people.
    pub detail: String,
    /// A relative gate's sequential test: where its figure lies at `confidence`, the test,
    /// the samples it rests on and, while inconclusive, about how many more would decide it.
    #[serde(default, flatten)]
    pub sequential: Option<SequentialFigures>,
}

/// What a relative gate's sequential decision rests on, as `analysis.last` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequentialFigures {
    /// Where the figure lies at `confidence`, at every look.
    pub interval: Bounds,
    /// The test, in a few words.
    pub test: String,
    /// Candidate samples since the step began (requests, compared answers, labels or pairs).
    pub samples: u64,
    /// Candidate samples after which a candidate that showed no breach passes, when known.
    pub planned: Option<u64>,
    /// While inconclusive: about how many more candidate samples would decide it.
    pub needed: Option<u64>,
    /// The confidence the decision holds at.
    pub confidence: f64,
}

/// The `min_samples` floor under a sequential gate: the candidate's samples of `what` in
/// the window (the step's are the decision's own).
struct Floor<'a> {
    what: &'a str,
    window: u64,
    min: u64,
}

/// An interval as the status JSON shows it: `high` is `null` when unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    pub low: f64,
    pub high: Option<f64>,
}

impl From<Interval> for Bounds {
    fn from(i: Interval) -> Bounds {
        Bounds {
            low: i.low,
            high: i.high.is_finite().then_some(i.high),
        }
    }
}

impl GateResult {
    /// A result of `gate`, whose bound is the gate's own.
    fn new(gate: Gate, value: Option<f64>, threshold: f64, judged: Judged) -> GateResult {
        let (outcome, detail) = judged;
        GateResult {
            gate,
            value,
            threshold,
            bound: gate.bound(),
            outcome,
            detail,
            sequential: None,
        }
    }

    /// The result of `gate` decided sequentially by `d`, held inconclusive (never passed,
    /// never failed) while the window or the step holds fewer than `min_samples` of the
    /// candidate's samples.
    fn decided(gate: Gate, d: Decision, floor: Floor, settings: &Settings) -> GateResult {
        let Floor { what, window, min } = floor;
        let held = if window < min {
            Some((
                window,
                format!("{window} {what} in the window, {min} needed"),
            ))
        } else if d.samples < min {
            let n = d.samples;
            Some((n, format!("{n} {what} since the step began, {min} needed")))
        } else {
            None
        };
        let (outcome, detail, needed) = match held {
            Some((have, why)) => {
                let short = min - have;
                let needed = d.needed.map_or(short, |n| n.max(short));
                let detail = format!("{}; held: {why}", d.detail);
                (GateOutcome::Inconclusive, detail, Some(needed))
            }
            None => {
                let outcome = match d.outcome {
                    Outcome::Pass => GateOutcome::Pass,
                    Outcome::Fail => GateOutcome::Fail,
                    Outcome::Inconclusive => GateOutcome::Inconclusive,
                };
                (outcome, d.detail, d.needed)
            }
        };
        GateResult {
            gate,
            value: d.value,
            threshold: d.threshold,
            bound: gate.bound(),
            outcome,
            detail,
            sequential: Some(SequentialFigures {
                interval: d.interval.into(),
                test: d.test.to_string(),
                samples: d.samples,
                planned: d.planned,
                needed: needed.filter(|_| outcome == GateOutcome::Inconclusive),
                confidence: settings.confidence,
            }),
        }
    }

    /// The same result, skipped for `why`.
    fn skipped(gate: Gate, threshold: f64, why: &str) -> GateResult {
        GateResult::new(
            gate,
            None,
            threshold,
            (GateOutcome::Skipped, why.to_string()),
        )
    }
}

/// One evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// RFC 3339.
    pub at: String,
    pub verdict: Verdict,
    pub gates: Vec<GateResult>,
    /// Candidate samples in the window.
    pub samples: u64,
    pub stable_samples: u64,
    pub min_samples: u64,
}

impl Analysis {
    /// The failing gates as one line, for a rollback reason.
    pub fn failing(&self) -> String {
        self.gates
            .iter()
            .filter(|g| g.outcome == GateOutcome::Fail)
            .map(|g| g.detail.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Shadow agreement with the noise floor credited: the candidate is not blamed for the
/// share `floor` of requests on which the stable disagrees with itself (at most 100 %).
pub fn above_floor(agreement: f64, floor: f64) -> f64 {
    (agreement + floor).min(1.0)
}

/// What the current step does, as far as the gates care: which gates apply to it and
/// what the stable's window holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scope {
    /// The step mirrors traffic (else `shadow_agreement` is skipped).
    pub mirroring: bool,
    /// `shadow.calibrate` is on: the stable's window holds its comparisons with itself,
    /// the noise floor that `shadow_agreement` does not blame on the candidate.
    pub calibrating: bool,
    /// After promotion: relative gates are skipped.
    pub absolute_only: bool,
    /// The step sends the candidate neither users nor mirrored copies: no answer of its
    /// can be labelled, and the accuracy gates are skipped. (A shadow step's mirrored
    /// answers are remembered for labels like served ones: there the accuracy gates judge
    /// the candidate before any user gets it.)
    pub unanswered: bool,
    /// The step serves the candidate no users, only mirrored copies: each of its labelled
    /// answers has the stable's beside it, and `accuracy.max_drop` is judged on pairs.
    pub shadow_only: bool,
}

/// What the monitor and the labels say of the window, for the `output_drift` and
/// `accuracy` gates.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Model {
    /// The candidate's output drift against the stable; `None` without a figure (no
    /// reference yet, or too few sampled answers on either side).
    pub output_drift: Option<f64>,
    /// Why there is no output drift figure yet, when the monitor says.
    pub output_drift_wait: Option<DriftWait>,
    /// The labels the candidate's predictions got in the window.
    pub candidate_labels: Score,
    /// The labels the stable's predictions got in the window.
    pub stable_labels: Score,
}

/// What the relative gates read: everything since the current step began (a confidence
/// sequence is valid over one growing sample, never a sliding window).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    /// The candidate's requests, latencies and shadow comparisons since the step began.
    pub candidate: Summary,
    /// The stable's, over the same span (its self-comparisons when calibrating).
    pub stable: Summary,
    /// The labels the candidate's predictions got since the step began.
    pub candidate_labels: Score,
    /// The labels the stable's predictions got since the step began.
    pub stable_labels: Score,
    /// Labelled requests both models answered (a shadow step's mirrored requests), when
    /// the label store counts them: `accuracy.max_drop` is then judged on pairs.
    pub pairs: Option<Pairs>,
    /// User requests the split sent to the candidate and to the stable since the step
    /// began (override-forced ones and mirrored copies not counted), for `sample_ratio`.
    pub served: (u64, u64),
    /// The step's weight (percent): the candidate's expected share of `served`.
    pub weight: f64,
}

/// Everything one evaluation reads.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// `analysis.min_samples`: a floor under every gate.
    pub min_samples: u64,
    /// How sure the relative gates must be (`analysis.confidence`).
    pub settings: Settings,
    pub scope: Scope,
    /// The candidate's window: what the absolute gates read.
    pub candidate: &'a Summary,
    /// The stable's window.
    pub stable: &'a Summary,
    /// What the monitor and the labels say of the window.
    pub model: &'a Model,
    /// Everything since the step began: what the relative gates read.
    pub step: &'a Step,
}

/// Evaluates `gates` on the candidate's and the stable's window summaries (the gates
/// that read the monitor and the labels see nothing: see [`evaluate_with`]).
pub fn evaluate(
    gates: &GatesConfig,
    min_samples: u64,
    candidate: &Summary,
    stable: &Summary,
    scope: Scope,
) -> Analysis {
    evaluate_with(
        gates,
        min_samples,
        candidate,
        stable,
        scope,
        &Model::default(),
    )
}

/// Evaluates `gates` on the candidate's and the stable's window summaries and on what the
/// monitor and the labels say of the same window, as if the step had begun with the
/// window (the relative gates read the same summaries, at the default confidence).
fn evaluate_with(
    gates: &GatesConfig,
    min_samples: u64,
    candidate: &Summary,
    stable: &Summary,
    scope: Scope,
    model: &Model,
) -> Analysis {
    let step = Step {
        candidate: candidate.clone(),
        stable: stable.clone(),
        candidate_labels: model.candidate_labels,
        stable_labels: model.stable_labels,
        pairs: None,
        served: (0, 0),
        weight: 0.0,
    };
    judge(
        gates,
        &Inputs {
            min_samples,
            settings: Settings::default(),
            scope,
            candidate,
            stable,
            model,
            step: &step,
        },
    )
}

/// Evaluates `gates` on everything one evaluation reads: the absolute gates on the
/// window, the relative ones sequentially on everything since the step began.
pub fn judge(gates: &GatesConfig, inputs: &Inputs) -> Analysis {
    let e = Evidence {
        candidate: inputs.candidate,
        stable: inputs.stable,
        min_samples: inputs.min_samples,
        scope: inputs.scope,
        step: inputs.step,
        settings: inputs.settings,
    };
    let model = inputs.model;
    let mut results = Vec::new();
    if let Some(g) = &gates.error_rate {
        if let Some(max) = g.max {
            results.push(error_rate(max, &e));
        }
        if let Some(increase) = g.max_increase {
            results.push(error_rate_increase(increase, &e));
        }
    }
    if let Some(g) = &gates.latency_p99 {
        if let Some(max) = g.max {
            results.push(latency_p99(max.0, &e));
        }
        if let Some(ratio) = g.max_ratio {
            let floor = g.min_difference.map_or(Duration::ZERO, |d| d.0);
            results.push(latency_p99_ratio(ratio, floor, &e));
        }
    }
    if let Some(g) = &gates.shadow_agreement {
        results.push(shadow_agreement(g.min, &e));
    }
    if let Some(g) = &gates.output_drift {
        results.push(output_drift(g.max, &e, model));
    }
    if let Some(g) = &gates.accuracy {
        if let Some(min) = g.min {
            results.push(accuracy(min, &e, model));
        }
        if let Some(max) = g.max_drop {
            results.push(accuracy_drop(max, &e, model));
        }
    }
    if gates.sample_ratio.is_some() {
        let ratio = sample_ratio(&e);
        if ratio.outcome == GateOutcome::Fail {
            hold_relative(&mut results);
        }
        results.push(ratio);
    }
    Analysis {
        at: now_rfc3339(),
        verdict: Verdict::of(&results, e.enough()),
        gates: results,
        samples: inputs.candidate.requests,
        stable_samples: inputs.stable.requests,
        min_samples: inputs.min_samples,
    }
}

/// A gate's outcome and the sentence that explains it.
type Judged = (GateOutcome, String);

/// What every gate reads: both windows, how many samples make a figure, the scope, and
/// for the relative gates everything since the step began and how sure to be.
struct Evidence<'a> {
    candidate: &'a Summary,
    stable: &'a Summary,
    min_samples: u64,
    scope: Scope,
    step: &'a Step,
    settings: Settings,
}

impl Evidence<'_> {
    /// True when the candidate served `min_samples` requests in the window.
    fn enough(&self) -> bool {
        self.candidate.requests >= self.min_samples
    }

    /// Inconclusive: only `n` of `what` in the window.
    fn too_few(&self, what: &str, n: u64) -> Judged {
        let needed = self.min_samples;
        let detail = format!("{n} {what} in the window, {needed} needed");
        (GateOutcome::Inconclusive, detail)
    }

    /// Inconclusive: too few candidate samples.
    fn too_few_samples(&self) -> Judged {
        self.too_few("samples", self.candidate.requests)
    }

    /// The `min_samples` floor of `what`, of which the window holds `window`.
    fn floor<'w>(&self, what: &'w str, window: u64) -> Floor<'w> {
        Floor {
            what,
            window,
            min: self.min_samples,
        }
    }

    /// Why a relative gate cannot apply: after promotion, or when the stable served
    /// nothing (`stable_requests`) since the step began to compare with.
    fn relative_skip(&self, stable_requests: u64) -> Option<&'static str> {
        if self.scope.absolute_only {
            Some("relative gate not applied after promotion")
        } else if stable_requests == 0 {
            Some("the stable served nothing since the step began")
        } else {
            None
        }
    }

    /// True when the candidate has `min_samples` requests with a clean latency.
    fn enough_timed(&self) -> bool {
        self.candidate.timed() >= self.min_samples
    }

    /// Inconclusive: too few candidate samples with a clean latency.
    fn too_few_timed(&self) -> Judged {
        let (outcome, detail) = self.too_few("samples", self.candidate.timed());
        (outcome, detail + &untimed(self.candidate, ""))
    }
}

/// What a latency gate's detail says of the requests it left out (`whose`: "" for the
/// candidate's): those whose latency could not be measured as the backend's own ("" when
/// there were none).
fn untimed(s: &Summary, whose: &str) -> String {
    match s.untimed {
        0 => String::new(),
        n => format!("; {n} {whose}without a clean latency left out"),
    }
}

/// [`Gate::ErrorRate`]: the candidate's share of errors, at most `max`.
fn error_rate(max: f64, e: &Evidence) -> GateResult {
    let c = e.candidate;
    let value = c.error_rate();
    let judged = match value {
        Some(v) if e.enough() => {
            let ok = v <= max;
            let (errors, requests) = (c.errors, c.requests);
            let detail = format!(
                "error rate {} {} max {} ({errors} of {requests})",
                pct(v),
                at_most(ok),
                pct(max),
            );
            (pass_fail(ok), detail)
        }
        _ => e.too_few_samples(),
    };
    GateResult::new(Gate::ErrorRate, value, max, judged)
}

/// [`Gate::LatencyP99`]: the candidate's p99, at most `max`.
fn latency_p99(max: Duration, e: &Evidence) -> GateResult {
    let max_s = max.as_secs_f64();
    let p99 = p99_seconds(e.candidate);
    let judged = match p99 {
        Some(v) if e.enough_timed() => {
            let ok = v <= max_s;
            let detail = format!("p99 {} {} max {}", ms(v), at_most(ok), ms(max_s));
            (pass_fail(ok), detail + &untimed(e.candidate, ""))
        }
        _ => e.too_few_timed(),
    };
    GateResult::new(Gate::LatencyP99, p99, max_s, judged)
}

/// [`Gate::ErrorRateIncrease`]: the candidate's error rate minus the stable's since the
/// step began, at most `max`, decided sequentially. Skipped after promotion and when the
/// stable served nothing since the step began.
fn error_rate_increase(max: f64, e: &Evidence) -> GateResult {
    let gate = Gate::ErrorRateIncrease;
    let (c, s) = (&e.step.candidate, &e.step.stable);
    if let Some(why) = e.relative_skip(s.requests) {
        return GateResult::skipped(gate, max, why);
    }
    let d = sequential::error_rate_increase(
        Counts::new(c.errors, c.requests),
        Counts::new(s.errors, s.requests),
        max,
        &e.settings,
    );
    GateResult::decided(
        gate,
        d,
        e.floor("samples", e.candidate.requests),
        &e.settings,
    )
}

/// [`Gate::LatencyP99Ratio`]: the candidate's p99 over the stable's since the step began,
/// at most `max` unless within `min_difference` of it, decided sequentially. Skipped
/// after promotion and when the stable served nothing since the step began.
fn latency_p99_ratio(max: f64, min_difference: Duration, e: &Evidence) -> GateResult {
    let gate = Gate::LatencyP99Ratio;
    let (c, s) = (&e.step.candidate, &e.step.stable);
    if let Some(why) = e.relative_skip(s.requests) {
        return GateResult::skipped(gate, max, why);
    }
    let d = sequential::latency_p99_ratio(c, s, max, min_difference, &e.settings);
    let floor = e.floor("samples with a clean latency", e.candidate.timed());
    let mut r = GateResult::decided(gate, d, floor, &e.settings);
    r.detail += &untimed(c, "");
    r.detail += &untimed(s, "of the stable's ");
    r
}

/// [`Gate::ShadowAgreement`]: the share of compared shadow answers since the step began
/// that agreed, with the noise floor credited while calibrating, at least `min`, decided
/// sequentially. Skipped when the step mirrors nothing; needs `min_samples` compared
/// answers.
fn shadow_agreement(min: f64, e: &Evidence) -> GateResult {
    let gate = Gate::ShadowAgreement;
    if !e.scope.mirroring {
        // Shown all the same: what the window holds of comparisons, if anything.
        let value = e.candidate.shadow_agreement();
        let skipped = (
            GateOutcome::Skipped,
            "this step mirrors nothing".to_string(),
        );
        return GateResult::new(gate, value, min, skipped);
    }
    let (c, s) = (&e.step.candidate, &e.step.stable);
    let agreed = |s: &Summary| Counts::new(s.shadow_agree, compared_answers(s));
    // The stable's disagreement with itself, once it has compared anything.
    let noise = (e.scope.calibrating && compared_answers(s) > 0).then(|| agreed(s));
    let d = sequential::shadow_agreement(agreed(c), noise, min, &e.settings);
    let floor = e.floor("compared shadow answers", compared_answers(e.candidate));
    let mut r = GateResult::decided(gate, d, floor, &e.settings);
    if e.scope.calibrating && noise.is_none() {
        r.detail
            .push_str("; noise floor not measured yet (no self-comparisons), not credited");
    }
    r
}

/// [`Gate::OutputDrift`]: the candidate's outputs against the stable's over the same
/// window, at most `max`. Skipped after promotion and when the stable served nothing in
/// the window (a step at 100 %): there is nothing to compare with.
fn output_drift(max: f64, e: &Evidence, model: &Model) -> GateResult {
    let judged = match model.output_drift {
        _ if e.scope.absolute_only => (
            GateOutcome::Skipped,
            "relative gate not applied after promotion".to_string(),
        ),
        // A step at 100 % (and not mirroring): nothing of the stable's to compare with.
        _ if e.stable.requests == 0 => (
            GateOutcome::Skipped,
            "the stable served nothing in the window".to_string(),
        ),
        Some(v) if v > max => match better_by_labels(e, model) {
            // Outputs that differ from the stable's are what a better model gives too:
            // where the labels say so, drift is a signal, not a verdict.
            Some(why) => (
                GateOutcome::Pass,
                format!("output drift {v:.3} > max {max}, not failed: {why}"),
            ),
            None => (GateOutcome::Fail, format!("output drift {v:.3} > max {max}")),
        },
        Some(v) => (GateOutcome::Pass, format!("output drift {v:.3} ≤ max {max}")),
        None => (
            GateOutcome::Inconclusive,
            match model.output_drift_wait {
                Some(w) => format!(
                    "no output drift figure yet: {} ({} of {} answers a side)",
                    w.reason, w.samples, w.needed
                ),
                None => "no output drift figure yet: the reference is being built, or no answers of both models in the window".to_string(),
            },
        ),
    };
    GateResult::new(Gate::OutputDrift, model.output_drift, max, judged)
}

/// Why the labels excuse the candidate's output drift: in the window, both models got at
/// least `min_samples` class labels and the candidate's accuracy is at least the
/// stable's. `None` otherwise (no labels, too few, or the candidate less accurate).
fn better_by_labels(e: &Evidence, model: &Model) -> Option<String> {
    let (c, s) = (&model.candidate_labels, &model.stable_labels);
    let floor = e.min_samples.max(1);
    if c.classified < floor || s.classified < floor {
        return None;
    }
    let (ca, sa) = (c.accuracy()?, s.accuracy()?);
    (ca >= sa).then(|| {
        format!(
            "labels show the candidate at least as accurate as the stable ({} of {} against {} of {})",
            pct(ca),
            c.classified,
            pct(sa),
            s.classified
        )
    })
}

/// [`Gate::Accuracy`]: the share of the candidate's labelled predictions that were
/// right, at least `min`; needs `min_samples` labels.
fn accuracy(min: f64, e: &Evidence, model: &Model) -> GateResult {
    let c = &model.candidate_labels;
    let value = c.accuracy();
    let judged = match value {
        _ if e.scope.unanswered => no_answers(),
        _ if c.classified == 0 && c.valued > 0 => numeric_labels(),
        Some(v) if c.classified >= e.min_samples => {
            let ok = v >= min;
            let detail = format!(
                "accuracy {} {} min {} ({} of {} labels right)",
                pct(v),
                at_least(ok),
                pct(min),
                c.correct,
                c.classified
            );
            (pass_fail(ok), detail)
        }
        _ => e.too_few("labels", c.classified),
    };
    GateResult::new(Gate::Accuracy, value, min, judged)
}

/// [`Gate::AccuracyDrop`]: how far the candidate's accuracy is below the stable's since
/// the step began, at most `max`, decided sequentially: on pairs (both models' answers to
/// the same labelled requests) in a step that serves the candidate no users, else on
/// each model's own labels. Skipped after promotion, on numeric labels, and when the
/// stable got no labels.
fn accuracy_drop(max: f64, e: &Evidence, model: &Model) -> GateResult {
    let gate = Gate::AccuracyDrop;
    let (c, s) = (&e.step.candidate_labels, &e.step.stable_labels);
    if e.scope.absolute_only {
        return GateResult::skipped(gate, max, "relative gate not applied after promotion");
    }
    if e.scope.unanswered {
        return GateResult::new(gate, None, max, no_answers());
    }
    if c.classified == 0 && c.valued > 0 {
        return GateResult::new(gate, None, max, numeric_labels());
    }
    match e.step.pairs {
        Some(pairs) if e.scope.shadow_only => {
            let d = sequential::accuracy_drop_paired(pairs, max, &e.settings);
            let what = "labelled requests both models answered";
            GateResult::decided(gate, d, e.floor(what, pairs.pairs), &e.settings)
        }
        _ if s.classified == 0 => {
            GateResult::skipped(gate, max, "the stable got no labels since the step began")
        }
        _ => {
            let right = |s: &Score| Counts::new(s.correct, s.classified);
            let d = sequential::accuracy_drop(right(c), right(s), max, &e.settings);
            let floor = e.floor("labels", model.candidate_labels.classified);
            GateResult::decided(gate, d, floor, &e.settings)
        }
    }
}

/// [`Gate::SampleRatio`]: the candidate's share of the route's user requests since the
/// step began against its weight, decided sequentially. Skipped after promotion and at
/// weights 0 and 100 (every user goes to one side: there is no share to compare).
fn sample_ratio(e: &Evidence) -> GateResult {
    let gate = Gate::SampleRatio;
    let weight = e.step.weight;
    let expected = weight / 100.0;
    if e.scope.absolute_only {
        return GateResult::skipped(gate, expected, "not applied after promotion");
    }
    if !(weight > 0.0 && weight < 100.0) {
        let why = "the split sends every user to one side: no share to compare with the weight";
        return GateResult::skipped(gate, expected, why);
    }
    let (c, s) = e.step.served;
    let d = sequential::sample_ratio(c, s, weight, &e.settings);
    let floor = e.floor("user requests", d.samples);
    let mut r = GateResult::decided(gate, d, floor, &e.settings);
    if r.outcome == GateOutcome::Fail {
        r.detail.push_str(
            ": the split is skewed (sticky keys, a client pinning itself), so comparisons on it are biased; the rollout pauses, the candidate is not blamed",
        );
    }
    r
}

/// A skewed split biases every comparison: the relative gates' decisions are held
/// inconclusive while `sample_ratio` fails.
fn hold_relative(results: &mut [GateResult]) {
    for g in results.iter_mut().filter(|g| g.sequential.is_some()) {
        if matches!(g.outcome, GateOutcome::Pass | GateOutcome::Fail) {
            g.outcome = GateOutcome::Inconclusive;
            g.detail
                .push_str("; held: the candidate's share of requests does not match its weight (sample_ratio)");
        }
    }
}

/// Skipped: the step sends the candidate no users, so no label can reach its answers.
fn no_answers() -> Judged {
    (
        GateOutcome::Skipped,
        "this step sends the candidate neither users nor mirrored copies: none of its answers can be labelled".to_string(),
    )
}

/// Skipped: the labels are numbers (scored by mean absolute error, shown in the monitor).
fn numeric_labels() -> Judged {
    (
        GateOutcome::Skipped,
        "the labels are numbers: accuracy applies to classes (mean absolute error is in /api/v1/monitor)".to_string(),
    )
}

/// Shadow answers compared (agreed or not) in a window.
fn compared_answers(s: &Summary) -> u64 {
    s.shadow_agree + s.shadow_disagree
}

/// The window's p99 latency in seconds, when it served anything.
fn p99_seconds(s: &Summary) -> Option<f64> {
    s.quantile(0.99).map(|d| d.as_secs_f64())
}

/// Pass when the figure is on the passing side of its threshold.
fn pass_fail(ok: bool) -> GateOutcome {
    if ok {
        GateOutcome::Pass
    } else {
        GateOutcome::Fail
    }
}

/// The comparison a `max` gate's detail shows.
fn at_most(ok: bool) -> &'static str {
    if ok {
        "≤"
    } else {
        ">"
    }
}

/// The comparison a `min` gate's detail shows.
fn at_least(ok: bool) -> &'static str {
    if ok {
        "≥"
    } else {
        "<"
    }
}

/// A share as a percentage with two decimals.
fn pct(share: f64) -> String {
    format!("{:.2}%", share * 100.0)
}

/// Seconds as milliseconds with one decimal.
fn ms(seconds: f64) -> String {
    format!("{:.1}ms", seconds * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        AccuracyGate, AgreementGate, Dur, ErrorRateGate, LatencyGate, OutputDriftGate,
    };
    use crate::telemetry::window::{ShadowOutcome, Window};
    use tokio::time::Instant;

    /// What a window saw, as a case describes it.
    #[derive(Clone, Copy, Default)]
    struct Traffic {
        requests: u64,
        errors: u64,
        latency_ms: u64,
        agree: u64,
        disagree: u64,
    }

    impl Traffic {
        fn summary(self) -> Summary {
            let now = Instant::now();
            let w = Window::new(Duration::from_secs(1), 61);
            for i in 0..self.requests {
                w.record(now, Duration::from_millis(self.latency_ms), i < self.errors);
            }
            for _ in 0..self.agree {
                w.record_shadow(now, ShadowOutcome::Agree);
            }
            for _ in 0..self.disagree {
                w.record_shadow(now, ShadowOutcome::Disagree);
            }
            w.summary(now, Duration::from_secs(60))
        }
    }

    /// `n` requests at `ms` each, `errors` of them failed.
    fn served(n: u64, errors: u64, ms: u64) -> Traffic {
        Traffic {
            requests: n,
            errors,
            latency_ms: ms,
            ..Traffic::default()
        }
    }

    /// 200 requests and a shadow tally of `agree` against `disagree`.
    fn mirrored(agree: u64, disagree: u64) -> Traffic {
        Traffic {
            agree,
            disagree,
            ..served(200, 0, 5)
        }
    }

    /// Shadow comparisons only, as the stable's window holds them while calibrating.
    fn self_compared(agree: u64, disagree: u64) -> Traffic {
        Traffic {
            agree,
            disagree,
            ..Traffic::default()
        }
    }

    fn max_errors(max: f64) -> GatesConfig {
        GatesConfig {
            error_rate: Some(ErrorRateGate {
                max: Some(max),
                max_increase: None,
            }),
            ..GatesConfig::default()
        }
    }

    fn max_increase(max: f64) -> GatesConfig {
        GatesConfig {
            error_rate: Some(ErrorRateGate {
                max: None,
                max_increase: Some(max),
            }),
            ..GatesConfig::default()
        }
    }

    fn max_p99(ms: u64) -> GatesConfig {
        let max = Some(Dur(Duration::from_millis(ms)));
        GatesConfig {
            latency_p99: Some(LatencyGate {
                max,
                max_ratio: None,
                min_difference: None,
            }),
            ..GatesConfig::default()
        }
    }

    fn max_ratio(ratio: f64) -> GatesConfig {
        GatesConfig {
            latency_p99: Some(LatencyGate {
                max: None,
                max_ratio: Some(ratio),
                min_difference: None,
            }),
            ..GatesConfig::default()
        }
    }

    fn max_ratio_above(ratio: f64, min_difference_ms: u64) -> GatesConfig {
        GatesConfig {
            latency_p99: Some(LatencyGate {
                max: None,
                max_ratio: Some(ratio),
                min_difference: Some(Dur(Duration::from_millis(min_difference_ms))),
            }),
            ..GatesConfig::default()
        }
    }

    fn min_agreement(min: f64) -> GatesConfig {
        GatesConfig {
            shadow_agreement: Some(AgreementGate { min }),
            ..GatesConfig::default()
        }
    }

    fn max_drift(max: f64) -> GatesConfig {
        GatesConfig {
            output_drift: Some(OutputDriftGate { max }),
            ..GatesConfig::default()
        }
    }

    fn min_accuracy(min: f64) -> GatesConfig {
        GatesConfig {
            accuracy: Some(AccuracyGate {
                min: Some(min),
                max_drop: None,
            }),
            ..GatesConfig::default()
        }
    }

    fn max_drop(max: f64) -> GatesConfig {
        GatesConfig {
            accuracy: Some(AccuracyGate {
                min: None,
                max_drop: Some(max),
            }),
            ..GatesConfig::default()
        }
    }

    /// What the monitor says: an output drift figure, or none yet.
    fn drift(figure: Option<f64>) -> Model {
        Model {
            output_drift: figure,
            ..Model::default()
        }
    }

    /// `correct` of `of` class labels right.
    fn right(correct: u64, of: u64) -> Score {
        Score {
            classified: of,
            correct,
            ..Score::default()
        }
    }

    /// `n` labels of value predictions (scored by mean absolute error).
    fn numbers(n: u64) -> Score {
        Score {
            valued: n,
            abs_error: n as f64 * 0.5,
            ..Score::default()
        }
    }

    /// An output drift figure beside the labels both models' predictions got.
    fn drift_with(figure: f64, candidate: Score, stable: Score) -> Model {
        Model {
            output_drift: Some(figure),
            candidate_labels: candidate,
            stable_labels: stable,
            ..Model::default()
        }
    }

    /// The labels the candidate's and the stable's predictions got.
    fn labels(candidate: Score, stable: Score) -> Model {
        Model {
            candidate_labels: candidate,
            stable_labels: stable,
            ..Model::default()
        }
    }

    /// A step that only splits traffic.
    const SPLIT: Scope = Scope {
        mirroring: false,
        calibrating: false,
        absolute_only: false,
        unanswered: false,
        shadow_only: false,
    };
    /// A step that mirrors to the candidate.
    const MIRRORING: Scope = Scope {
        mirroring: true,
        ..SPLIT
    };
    /// A step that mirrors, with the stable compared with itself.
    const CALIBRATING: Scope = Scope {
        calibrating: true,
        ..MIRRORING
    };
    /// After promotion.
    const PROMOTED: Scope = Scope {
        absolute_only: true,
        ..SPLIT
    };

    /// The stable's window when a case says nothing else: plenty of quick answers.
    const STABLE: Traffic = Traffic {
        requests: 200,
        errors: 0,
        latency_ms: 5,
        agree: 0,
        disagree: 0,
    };

    /// A stable with enough quick answers to bound its p99 tightly.
    const BUSY: Traffic = Traffic {
        requests: 2000,
        ..STABLE
    };

    /// A case's inputs: its name, the one gate configured, `min_samples`, the step's
    /// scope, and what the candidate's and the stable's windows saw.
    struct Given(&'static str, GatesConfig, u64, Scope, Traffic, Traffic);

    /// What the case must give: the gate, its outcome, its figure (within the latency
    /// histogram's 1/32, twice that for a ratio), a part of the detail that only this
    /// outcome gives, and the verdict.
    struct Then(Gate, GateOutcome, Option<f64>, &'static str, Verdict);

    /// Every gate's pass, fail, inconclusive and (where it can be) skipped.
    #[rustfmt::skip]
    fn cases() -> Vec<(Given, Then)> {
        use Gate::{ErrorRate, ErrorRateIncrease, LatencyP99, LatencyP99Ratio, ShadowAgreement};
        use GateOutcome::{Fail, Inconclusive, Pass, Skipped};
        let none = Traffic::default();
        vec![
            (Given("errors under max", max_errors(0.05), 100, SPLIT, served(200, 2, 5), STABLE),
             Then(ErrorRate, Pass, Some(0.01), "error rate 1.00% ≤ max 5.00% (2 of 200)", Verdict::Pass)),
            (Given("errors over max", max_errors(0.05), 100, SPLIT, served(200, 20, 5), STABLE),
             Then(ErrorRate, Fail, Some(0.1), "error rate 10.00% > max 5.00% (20 of 200)", Verdict::Fail)),
            (Given("errors below min_samples", max_errors(0.05), 100, SPLIT, served(99, 99, 5), STABLE),
             Then(ErrorRate, Inconclusive, Some(1.0), "99 samples in the window, 100 needed", Verdict::Inconclusive)),
            (Given("errors with no request at all", max_errors(0.05), 0, SPLIT, none, STABLE),
             Then(ErrorRate, Inconclusive, None, "0 samples in the window, 0 needed", Verdict::Inconclusive)),
            (Given("p99 under max", max_p99(10), 100, SPLIT, served(200, 0, 5), STABLE),
             Then(LatencyP99, Pass, Some(0.005), "≤ max 10.0ms", Verdict::Pass)),
            (Given("p99 over max", max_p99(10), 100, SPLIT, served(200, 0, 20), STABLE),
             Then(LatencyP99, Fail, Some(0.02), "> max 10.0ms", Verdict::Fail)),
            (Given("p99 below min_samples", max_p99(10), 100, SPLIT, served(10, 0, 20), STABLE),
             Then(LatencyP99, Inconclusive, Some(0.02), "10 samples in the window, 100 needed", Verdict::Inconclusive)),
            (Given("increase within max", max_increase(0.05), 100, SPLIT, served(2000, 40, 5), served(2000, 20, 5)),
             Then(ErrorRateIncrease, Pass, Some(0.01), "within max increase 5.00%", Verdict::Pass)),
            (Given("increase beyond max", max_increase(0.005), 100, SPLIT, served(2000, 120, 5), served(18000, 180, 5)),
             Then(ErrorRateIncrease, Fail, Some(0.05), "beyond max increase 0.50%", Verdict::Fail)),
            (Given("increase not yet decided", max_increase(0.005), 100, SPLIT, served(200, 2, 5), served(1800, 18, 5)),
             Then(ErrorRateIncrease, Inconclusive, Some(0.0), "more samples", Verdict::Inconclusive)),
            (Given("increase below min_samples", max_increase(0.005), 100, SPLIT, served(99, 99, 5), STABLE),
             Then(ErrorRateIncrease, Inconclusive, Some(0.99), "held: 99 samples in the window, 100 needed", Verdict::Inconclusive)),
            (Given("increase skipped when the stable served nothing", max_increase(0.005), 100, SPLIT, served(200, 0, 5), none),
             Then(ErrorRateIncrease, Skipped, None, "the stable served nothing since the step began", Verdict::Pass)),
            (Given("increase skipped after promotion", max_increase(0.005), 100, PROMOTED, served(200, 20, 5), STABLE),
             Then(ErrorRateIncrease, Skipped, None, "not applied after promotion", Verdict::Pass)),
            (Given("ratio within max", max_ratio(1.5), 100, SPLIT, served(2000, 0, 6), BUSY),
             Then(LatencyP99Ratio, Pass, Some(1.2), ": within max 1.5×", Verdict::Pass)),
            (Given("ratio beyond max", max_ratio(1.5), 100, SPLIT, served(2000, 0, 10), BUSY),
             Then(LatencyP99Ratio, Fail, Some(2.0), ": beyond max 1.5×", Verdict::Fail)),
            (Given("ratio beyond max by less than min_difference", max_ratio_above(1.5, 8), 100, SPLIT, served(2000, 0, 10), BUSY),
             Then(LatencyP99Ratio, Pass, Some(2.0), "within max 1.5× or 8.0ms more", Verdict::Pass)),
            (Given("ratio beyond max by more than min_difference", max_ratio_above(1.5, 3), 100, SPLIT, served(2000, 0, 10), BUSY),
             Then(LatencyP99Ratio, Fail, Some(2.0), "beyond max 1.5× or 3.0ms more", Verdict::Fail)),
            (Given("ratio not yet decided on a few hundred samples", max_ratio(1.5), 100, SPLIT, served(200, 0, 10), STABLE),
             Then(LatencyP99Ratio, Inconclusive, Some(2.0), "interval 0.00× to unbounded", Verdict::Inconclusive)),
            (Given("ratio below min_samples", max_ratio(1.5), 100, SPLIT, served(10, 0, 10), STABLE),
             Then(LatencyP99Ratio, Inconclusive, Some(2.0), "held: 10 samples with a clean latency in the window, 100 needed", Verdict::Inconclusive)),
            (Given("ratio skipped when the stable served nothing", max_ratio(1.5), 100, SPLIT, served(200, 0, 10), none),
             Then(LatencyP99Ratio, Skipped, None, "the stable served nothing", Verdict::Pass)),
            (Given("a skipped ratio still holds on min_samples", max_ratio(1.5), 100, SPLIT, served(10, 0, 10), none),
             Then(LatencyP99Ratio, Skipped, None, "the stable served nothing", Verdict::Inconclusive)),
            (Given("ratio skipped after promotion", max_ratio(1.5), 100, PROMOTED, served(200, 0, 10), STABLE),
             Then(LatencyP99Ratio, Skipped, None, "not applied after promotion", Verdict::Pass)),
            (Given("agreement within min", min_agreement(0.9), 100, MIRRORING, mirrored(990, 10), STABLE),
             Then(ShadowAgreement, Pass, Some(0.99), "(990 of 1000 compared; 95% interval", Verdict::Pass)),
            (Given("agreement beyond min", min_agreement(0.9), 100, MIRRORING, mirrored(1700, 300), STABLE),
             Then(ShadowAgreement, Fail, Some(0.85), "beyond min 90.00%", Verdict::Fail)),
            (Given("agreement not yet decided", min_agreement(0.9), 100, MIRRORING, mirrored(180, 20), STABLE),
             Then(ShadowAgreement, Inconclusive, Some(0.9), "more samples", Verdict::Inconclusive)),
            (Given("agreement below min_samples compared", min_agreement(0.9), 100, MIRRORING, mirrored(99, 0), STABLE),
             Then(ShadowAgreement, Inconclusive, Some(1.0), "held: 99 compared shadow answers in the window, 100 needed", Verdict::Inconclusive)),
            (Given("agreement skipped when nothing is mirrored", min_agreement(0.9), 100, SPLIT, mirrored(170, 30), STABLE),
             Then(ShadowAgreement, Skipped, Some(0.85), "this step mirrors nothing", Verdict::Pass)),
            (Given("the noise floor is credited", min_agreement(0.9), 100, CALIBRATING, mirrored(6800, 1200), self_compared(7200, 800)),
             Then(ShadowAgreement, Pass, Some(0.95), "with the noise floor credited (85.00% agreed, the stable with itself 90.00%", Verdict::Pass)),
            (Given("no floor is credited before the stable compared itself", min_agreement(0.9), 100, CALIBRATING, mirrored(1700, 300), STABLE),
             Then(ShadowAgreement, Fail, Some(0.85), "noise floor not measured yet", Verdict::Fail)),
            (Given("no noise floor without calibration", min_agreement(0.9), 100, MIRRORING, mirrored(1700, 300), self_compared(1800, 200)),
             Then(ShadowAgreement, Fail, Some(0.85), "(1700 of 2000 compared", Verdict::Fail)),
            (Given("the credit stops at 100 %", min_agreement(0.9), 100, CALIBRATING, mirrored(2000, 0), self_compared(1800, 200)),
             Then(ShadowAgreement, Pass, Some(1.0), "within min 90.00%", Verdict::Pass)),
        ]
    }

    /// The gates that read the monitor and the labels: pass, fail, inconclusive (no
    /// figure, too few labels) and skipped (after promotion, numeric labels, a stable
    /// without labels). The candidate served 200 requests unless a case says otherwise.
    #[rustfmt::skip]
    fn model_cases() -> Vec<(Given, Model, Then)> {
        use Gate::{Accuracy, AccuracyDrop, OutputDrift};
        use GateOutcome::{Fail, Inconclusive, Pass, Skipped};
        let busy = served(200, 0, 5);
        let none = Score::default();
        vec![
            (Given("drift under max", max_drift(0.2), 100, SPLIT, busy, STABLE), drift(Some(0.05)),
             Then(OutputDrift, Pass, Some(0.05), "output drift 0.050 ≤ max 0.2", Verdict::Pass)),
            (Given("drift over max", max_drift(0.2), 100, SPLIT, busy, STABLE), drift(Some(0.43)),
             Then(OutputDrift, Fail, Some(0.43), "output drift 0.430 > max 0.2", Verdict::Fail)),
            (Given("drift of a model the labels show better", max_drift(0.2), 100, SPLIT, busy, STABLE), drift_with(0.43, right(959, 1000), right(770, 1000)),
             Then(OutputDrift, Pass, Some(0.43), "not failed: labels show the candidate at least as accurate as the stable (95.90% of 1000 against 77.00% of 1000)", Verdict::Pass)),
            (Given("drift of a model the labels show worse", max_drift(0.2), 100, SPLIT, busy, STABLE), drift_with(0.43, right(700, 1000), right(770, 1000)),
             Then(OutputDrift, Fail, Some(0.43), "output drift 0.430 > max 0.2", Verdict::Fail)),
            (Given("drift with too few labels to excuse it", max_drift(0.2), 100, SPLIT, busy, STABLE), drift_with(0.43, right(99, 99), right(70, 99)),
             Then(OutputDrift, Fail, Some(0.43), "output drift 0.430 > max 0.2", Verdict::Fail)),
            (Given("no drift figure while the candidate's answers are few", max_drift(0.2), 100, SPLIT, busy, STABLE),
             Model { output_drift_wait: Some(DriftWait { samples: 115, needed: 200, reason: "too few candidate answers in the window" }), ..Model::default() },
             Then(OutputDrift, Inconclusive, None, "no output drift figure yet: too few candidate answers in the window (115 of 200 answers a side)", Verdict::Inconclusive)),
            (Given("drift while shadowing", max_drift(0.2), 100, MIRRORING, busy, STABLE), drift(Some(0.43)),
             Then(OutputDrift, Fail, Some(0.43), "> max 0.2", Verdict::Fail)),
            (Given("no drift figure yet", max_drift(0.2), 100, SPLIT, busy, STABLE), drift(None),
             Then(OutputDrift, Inconclusive, None, "no output drift figure yet", Verdict::Inconclusive)),
            (Given("a passing drift still holds on min_samples", max_drift(0.2), 100, SPLIT, served(10, 0, 5), STABLE), drift(Some(0.05)),
             Then(OutputDrift, Pass, Some(0.05), "≤ max 0.2", Verdict::Inconclusive)),
            (Given("drift skipped at 100 %", max_drift(0.2), 100, SPLIT, busy, Traffic::default()), drift(None),
             Then(OutputDrift, Skipped, None, "the stable served nothing in the window", Verdict::Pass)),
            (Given("drift skipped after promotion", max_drift(0.2), 100, PROMOTED, busy, STABLE), drift(Some(0.43)),
             Then(OutputDrift, Skipped, Some(0.43), "not applied after promotion", Verdict::Pass)),
            (Given("accuracy over min", min_accuracy(0.9), 100, SPLIT, busy, STABLE), labels(right(95, 100), none),
             Then(Accuracy, Pass, Some(0.95), "accuracy 95.00% ≥ min 90.00% (95 of 100 labels right)", Verdict::Pass)),
            (Given("accuracy under min", min_accuracy(0.9), 100, SPLIT, busy, STABLE), labels(right(80, 100), none),
             Then(Accuracy, Fail, Some(0.8), "accuracy 80.00% < min 90.00% (80 of 100 labels right)", Verdict::Fail)),
            (Given("accuracy on too few labels", min_accuracy(0.9), 100, SPLIT, busy, STABLE), labels(right(10, 99), none),
             Then(Accuracy, Inconclusive, Some(10.0 / 99.0), "99 labels in the window, 100 needed", Verdict::Inconclusive)),
            (Given("accuracy without labels", min_accuracy(0.9), 100, SPLIT, busy, STABLE), labels(none, none),
             Then(Accuracy, Inconclusive, None, "0 labels in the window, 100 needed", Verdict::Inconclusive)),
            (Given("accuracy skipped on numeric labels", min_accuracy(0.9), 100, SPLIT, busy, STABLE), labels(numbers(100), none),
             Then(Accuracy, Skipped, None, "the labels are numbers", Verdict::Pass)),
            (Given("accuracy still applies after promotion", min_accuracy(0.9), 100, PROMOTED, busy, STABLE), labels(right(80, 100), none),
             Then(Accuracy, Fail, Some(0.8), "< min 90.00%", Verdict::Fail)),
            (Given("drop within max", max_drop(0.05), 100, SPLIT, busy, STABLE), labels(right(3800, 4000), right(3880, 4000)),
             Then(AccuracyDrop, Pass, Some(0.02), "accuracy 95.00% against the stable's 97.00%: 2.00% below", Verdict::Pass)),
            (Given("drop beyond max", max_drop(0.05), 100, SPLIT, busy, STABLE), labels(right(800, 1000), right(970, 1000)),
             Then(AccuracyDrop, Fail, Some(0.17), "17.00% below (95% interval", Verdict::Fail)),
            (Given("drop not yet decided", max_drop(0.05), 100, SPLIT, busy, STABLE), labels(right(95, 100), right(97, 100)),
             Then(AccuracyDrop, Inconclusive, Some(0.02), "more samples", Verdict::Inconclusive)),
            (Given("drop on too few candidate labels", max_drop(0.05), 100, SPLIT, busy, STABLE), labels(right(10, 50), right(97, 100)),
             Then(AccuracyDrop, Inconclusive, Some(0.77), "held: 50 labels in the window, 100 needed", Verdict::Inconclusive)),
            (Given("drop skipped when the stable got no labels", max_drop(0.05), 100, SPLIT, busy, STABLE), labels(right(10, 100), none),
             Then(AccuracyDrop, Skipped, None, "the stable got no labels since the step began", Verdict::Pass)),
            (Given("drop skipped on numeric labels", max_drop(0.05), 100, SPLIT, busy, STABLE), labels(numbers(100), numbers(100)),
             Then(AccuracyDrop, Skipped, None, "the labels are numbers", Verdict::Pass)),
            (Given("drop skipped after promotion", max_drop(0.05), 100, PROMOTED, busy, STABLE), labels(right(10, 100), right(97, 100)),
             Then(AccuracyDrop, Skipped, None, "not applied after promotion", Verdict::Pass)),
        ]
    }

    #[test]
    fn every_gate_gives_its_outcome_and_figure() {
        let plain = cases().into_iter().map(|(g, t)| (g, Model::default(), t));
        for (given, model, then) in plain.chain(model_cases()) {
            let Given(name, gates, min_samples, scope, candidate, stable) = given;
            let Then(gate, outcome, value, detail, verdict) = then;
            let (candidate, stable) = (candidate.summary(), stable.summary());
            let a = evaluate_with(&gates, min_samples, &candidate, &stable, scope, &model);
            let [g] = a.gates.as_slice() else {
                panic!("{name}: one gate configured, {} evaluated", a.gates.len());
            };
            assert_eq!((g.gate, g.outcome), (gate, outcome), "{name}: {}", g.detail);
            match (g.value, value) {
                (Some(got), Some(want)) => {
                    // A ratio of two quantiles takes the error of both.
                    let error = if gate == Gate::LatencyP99Ratio {
                        1.0 / 16.0
                    } else {
                        1.0 / 32.0
                    };
                    assert!(
                        (got - want).abs() <= want * error,
                        "{name}: {got} for {want}"
                    )
                }
                (got, want) => assert_eq!(got, want, "{name}"),
            }
            assert!(g.detail.contains(detail), "{name}: {}", g.detail);
            assert_eq!(g.bound, gate.bound(), "{name}");
            assert_eq!(a.verdict, verdict, "{name}: {}", g.detail);
        }
    }

    #[test]
    fn a_shadow_step_judges_the_drop_on_pairs_and_shows_its_test_interval_and_needs() {
        let gates = max_drop(0.02);
        let (c, s) = (served(500, 0, 5).summary(), STABLE.summary());
        let shadow = Scope {
            mirroring: true,
            shadow_only: true,
            ..SPLIT
        };
        let judged = |pairs: Pairs, candidate: Score, stable: Score| {
            let step = Step {
                candidate: c.clone(),
                stable: s.clone(),
                candidate_labels: candidate,
                stable_labels: stable,
                pairs: Some(pairs),
                served: (0, 0),
                weight: 0.0,
            };
            let inputs = Inputs {
                min_samples: 50,
                settings: Settings::default(),
                scope: shadow,
                candidate: &c,
                stable: &s,
                model: &Model::default(),
                step: &step,
            };
            judge(&gates, &inputs).gates.remove(0)
        };
        // 400 labelled mirrored requests; the candidate 30 % wrong where the stable was right.
        let bad = Pairs {
            pairs: 400,
            stable_only: 120,
            candidate_only: 0,
        };
        let g = judged(bad, right(250, 400), right(370, 400));
        assert_eq!(g.outcome, GateOutcome::Fail, "{}", g.detail);
        let seq = g
            .sequential
            .as_ref()
            .expect("a sequential gate shows its test");
        assert_eq!(seq.test, "mixture SPRT (paired, discordant pairs)");
        assert!(seq.interval.low > 0.02, "{:?}", seq.interval);
        assert_eq!(seq.needed, None, "decided: nothing more needed");
        // The same accuracies on fewer pairs: not decided yet, and says about how many more.
        let early = Pairs {
            pairs: 60,
            stable_only: 3,
            candidate_only: 2,
        };
        let g = judged(early, right(55, 60), right(56, 60));
        assert_eq!(g.outcome, GateOutcome::Inconclusive, "{}", g.detail);
        let json = serde_json::to_value(&g).unwrap();
        assert!(json["needed"].as_u64().is_some_and(|n| n > 0), "{json}");
        assert_eq!(json["samples"], 60, "{json}");
        assert!(json["interval"]["low"].is_number(), "{json}");
        assert_eq!(serde_json::from_value::<GateResult>(json).unwrap(), g);
    }

    #[test]
    fn latency_gates_read_only_clean_latencies_and_say_how_many_they_left_out() {
        let now = Instant::now();
        let w = Window::new(Duration::from_secs(1), 61);
        for _ in 0..60 {
            w.record(now, Duration::from_millis(20), false);
        }
        // Answers the kernel did not stamp: requests for the error rate, no latency.
        for i in 0..50 {
            w.record_untimed(now, i < 1);
        }
        let c = w.summary(now, Duration::from_secs(60));
        let gates = GatesConfig {
            error_rate: max_errors(0.05).error_rate,
            ..max_p99(100)
        };
        let s = STABLE.summary();
        let a = evaluate_with(&gates, 100, &c, &s, SPLIT, &Model::default());
        let [errors, p99] = a.gates.as_slice() else {
            panic!("two gates: {:?}", a.gates);
        };
        assert_eq!(errors.outcome, GateOutcome::Pass, "{}", errors.detail);
        assert!(errors.detail.contains("(1 of 110)"), "{}", errors.detail);
        assert_eq!(p99.outcome, GateOutcome::Inconclusive, "{}", p99.detail);
        assert_eq!(
            p99.detail,
            "60 samples in the window, 100 needed; 50 without a clean latency left out"
        );
        // The ratio, decided sequentially, on enough clean latencies to bound both p99s.
        for _ in 0..540 {
            w.record(now, Duration::from_millis(20), false);
        }
        let c = w.summary(now, Duration::from_secs(60));
        let s = BUSY.summary();
        let a = evaluate_with(&max_ratio(1.5), 50, &c, &s, SPLIT, &Model::default());
        assert_eq!(
            a.gates[0].outcome,
            GateOutcome::Fail,
            "{}",
            a.gates[0].detail
        );
        assert!(
            a.gates[0]
                .detail
                .ends_with("; 50 without a clean latency left out"),
            "{}",
            a.gates[0].detail
        );
    }

    #[test]
    fn accuracy_gates_are_skipped_when_no_answer_of_the_candidate_can_be_labelled() {
        let gates = GatesConfig {
            accuracy: Some(crate::config::AccuracyGate {
                min: Some(0.9),
                max_drop: Some(0.05),
            }),
            ..GatesConfig::default()
        };
        let (c, s) = (served(100, 0, 5).summary(), STABLE.summary());
        let outcomes = |scope| {
            evaluate_with(&gates, 20, &c, &s, scope, &Model::default())
                .gates
                .iter()
                .map(|g| g.outcome)
                .collect::<Vec<_>>()
        };
        let unanswered = Scope {
            unanswered: true,
            ..SPLIT
        };
        assert_eq!(outcomes(unanswered), [GateOutcome::Skipped; 2]);
        assert_eq!(outcomes(SPLIT)[0], GateOutcome::Inconclusive);
    }

    #[test]
    fn gates_are_named_as_the_config_spells_them() {
        let spelled = [
            (Gate::ErrorRate, "error_rate", "max"),
            (Gate::ErrorRateIncrease, "error_rate_increase", "max"),
            (Gate::LatencyP99, "latency_p99", "max"),
            (Gate::LatencyP99Ratio, "latency_p99_ratio", "max"),
            (Gate::ShadowAgreement, "shadow_agreement", "min"),
            (Gate::OutputDrift, "output_drift", "max"),
            (Gate::Accuracy, "accuracy", "min"),
            (Gate::AccuracyDrop, "accuracy_drop", "max"),
            (Gate::SampleRatio, "sample_ratio", "near"),
        ];
        assert_eq!(spelled.map(|(g, ..)| g), Gate::ALL);
        for (gate, name, bound) in spelled {
            assert_eq!(gate.as_str(), name);
            assert_eq!(serde_json::to_value(gate).unwrap(), name);
            assert_eq!(serde_json::from_value::<Gate>(name.into()).unwrap(), gate);
            assert!(gate == name && gate == *name);
            assert_eq!(serde_json::to_value(gate.bound()).unwrap(), bound);
            assert_eq!(gate.bound(), bound);
        }
    }
}
