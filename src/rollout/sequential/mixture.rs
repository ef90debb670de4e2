//! The machinery of the sequential gates: mixture martingales over counts, the confidence bounds they give at every sample size at once, and the approximations plans use.
//!
//! Each test here is a nonnegative (super)martingale M_n under its null
//! hypothesis, with M_0 = 1, so by Ville's inequality `P(∃n: M_n ≥ 1/α) ≤ α`:
//! the null values it rejects at some sample size are rejected wrongly with
//! probability at most α, whenever and however often it is looked at.

use super::special::ln_beta;

/// Bisection steps for a bound: exact to 2⁻⁴⁴ of its range, far below any figure shown.
const STEPS: u32 = 44;

// === impl Share ===

/// A confidence sequence for one binomial share p (errors of requests, wrong answers of labelled ones): x events of n.
///
/// For each value p it tests, the beta-binomial mixture centred on p,
///
/// ```text
/// M_n(p) = B(x + rp, n - x + r(1-p)) / B(rp, r(1-p)) / (p^x (1-p)^{n-x}),
/// ```
///
/// is the likelihood ratio of Beta(rp, r(1-p))-distributed alternatives
/// against p: a martingale with mean 1 under p. The test uses the even
/// mixture of two such priors, one tuned to the gate's threshold (weight
/// `r`) and one broad (weight 2), so large departures are caught within a few
/// dozen samples too, for ln 2 of budget. The shares it does not reject,
/// `{p : M_n(p) < 1/α}`, form an interval around x/n (each ln M_n is convex in
/// p, and so is their log-sum-exp; it is at most 0 at x/n) that covers the
/// true share at every n at once with probability at least 1 - α. The tuned
/// weight sets where the bound is tightest: about where n·p(1-p) is ten times
/// r·p(1-p), the normal-mixture optimum (Howard, Ramdas, McAuliffe & Sekhon
/// 2021, "Time-uniform, nonparametric, nonasymptotic confidence sequences",
/// §3.5).
pub(super) struct Share {
    events: f64,
    trials: f64,
    prior: f64,
    threshold: f64,
}

impl Share {
    /// `events` of `trials`, tested at level `alpha` with prior weight `prior`.
    pub(super) fn new(events: u64, trials: u64, prior: f64, alpha: f64) -> Share {
        let trials_f = trials as f64;
        Share {
            events: (events.min(trials) as f64).min(trials_f),
            trials: trials_f,
            prior,
            threshold: (1.0 / alpha).ln(),
        }
    }

    /// ln M_n(p), for 0 < p < 1: the even mixture of the tuned and the broad prior.
    fn ln_mixture(&self, p: f64) -> f64 {
        let (x, n) = (self.events, self.trials);
        let data = x * p.ln() + (n - x) * (1.0 - p).ln();
        let with = |r: f64| {
            ln_beta(x + r * p, n - x + r * (1.0 - p)) - ln_beta(r * p, r * (1.0 - p)) - data
        };
        let (a, b) = (with(self.prior), with(BROAD_PRIOR));
        let top = a.max(b);
        top + (0.5 * ((a - top).exp() + (b - top).exp())).ln()
    }

    /// The observed share, x/n (0 without trials).
    fn observed(&self) -> f64 {
        if self.trials > 0.0 {
            self.events / self.trials
        } else {
            0.0
        }
    }

    /// The smallest share not rejected.
    pub(super) fn lower(&self) -> f64 {
        if self.events == 0.0 {
            return 0.0;
        }
        self.edge(0.0)
    }

    /// The largest share not rejected.
    pub(super) fn upper(&self) -> f64 {
        if self.events == self.trials {
            return 1.0;
        }
        self.edge(1.0)
    }

    /// The edge of the interval between x/n and `end` (0 or 1, never in it here): the
    /// last point found outside it, so the bound is never tighter than the interval.
    fn edge(&self, end: f64) -> f64 {
        let (mut outside, mut inside) = (end, self.observed());
        for _ in 0..STEPS {
            let mid = 0.5 * (outside + inside);
            if self.ln_mixture(mid) < self.threshold {
                inside = mid;
            } else {
                outside = mid;
            }
        }
        outside
    }
}

/// The weight of the broad prior of a [`Share`]: Beta(2p, 2(1-p)).
const BROAD_PRIOR: f64 = 2.0;

/// The prior weight r of a [`Share`] for a test whose threshold is `allowance`: 1/(16·allowance²), within 10 and 10⁸.
///
/// The mixture is tightest near n ≈ 10 r, about the sample size at which a
/// difference of `allowance` between shares near ½ is first shown, and close
/// to it (the loss grows with the logarithm of the mismatch) for the smaller
/// shares of errors and wrong answers.
pub(super) fn prior_for(allowance: f64) -> f64 {
    let a = allowance.abs();
    if a > 0.0 && a.is_finite() {
        (1.0 / (16.0 * a * a)).clamp(10.0, 1e8)
    } else {
        1e4
    }
}

/// About how far a [`Share`]'s bound reaches from x/n at `n` samples of variance `v` per sample, for plans: the nearer of the normal-mixture boundaries `√((V+ρ) ln((V+ρ)/(ρ(α/2)²)))/n` (V = nv, ρ = rv) of its two halves, their Gaussian forms.
pub(super) fn share_reach(n: f64, v: f64, prior: f64, alpha: f64) -> f64 {
    let half = |r: f64| {
        let (big_v, rho) = (n * v, r * v);
        ((big_v + rho) * (((big_v + rho) / rho).ln() + 2.0 * (2.0 / alpha).ln())).sqrt() / n
    };
    half(prior).min(half(BROAD_PRIOR))
}

// === impl Bets ===

/// One-sided confidence bounds for the mean of paired differences D ∈ {-1, 0, +1} (b of +1, c of -1, the rest 0), by betting.
///
/// For a value θ, a gambler who bets a fraction λ ≥ 0 on each D exceeding θ
/// multiplies its wealth by `1 + λ(D - θ)`; if E[D] ≤ θ that has mean at most
/// 1, so its wealth is a test supermartingale for "mean ≤ θ", whatever the
/// distribution of D. After b, c and z = n - b - c of each value, the wealth
/// of an even mixture over fixed fractions λ_j = c_j/(1 + θ) is
///
/// ```text
/// M⁺_n(θ) = Σ_j w_j (1 + λ_j(1-θ))^b (1 - λ_j(1+θ))^c (1 - λ_j θ)^z,
/// ```
///
/// decreasing in θ; the means it rejects at level α (`M⁺ ≥ 1/α`) lie below
/// the lower bound. The upper bound is the mirror image (bets λ ≤ 0)
/// (Waudby-Smith & Ramdas 2024, "Estimating means of bounded random variables
/// by betting", JRSS B; the mixture of constant bets of their §5). It needs
/// only the three counts, so it merges across replicas.
pub(super) struct Bets {
    up: f64,
    down: f64,
    zero: f64,
    threshold: f64,
}

/// The bets' fractions c_j = 0.9 · 2^(-j/2), j = 0..20 (0.9 down to 0.0013), weighed evenly.
const BETS: usize = 20;

impl Bets {
    /// `up` samples of +1, `down` of -1 and `zero` of 0, tested at level `alpha` on each side.
    pub(super) fn new(up: u64, down: u64, zero: u64, alpha: f64) -> Bets {
        Bets {
            up: up as f64,
            down: down as f64,
            zero: zero as f64,
            threshold: (1.0 / alpha).ln(),
        }
    }

    /// The observed mean (b - c)/n (0 without samples).
    fn observed(&self) -> f64 {
        let n = self.up + self.down + self.zero;
        if n > 0.0 {
            (self.up - self.down) / n
        } else {
            0.0
        }
    }

    /// ln M⁺(θ) (`rising`: bets on D above θ) or ln M⁻(θ) (bets on D below θ), for -1 < θ < 1.
    fn ln_wealth(&self, theta: f64, rising: bool) -> f64 {
        // Mirror the counts and θ for the bets on D below θ.
        let (up, down, theta) = if rising {
            (self.up, self.down, theta)
        } else {
            (self.down, self.up, -theta)
        };
        let mut logs = [0.0f64; BETS];
        for (j, log) in logs.iter_mut().enumerate() {
            let c = 0.9 * (-(j as f64) / 2.0).exp2();
            let lambda = c / (1.0 + theta);
            *log = up * (lambda * (1.0 - theta)).ln_1p()
                + down * (-c).ln_1p()
                + self.zero * (-lambda * theta).ln_1p();
        }
        let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        top + (logs.iter().map(|l| (l - top).exp()).sum::<f64>() / BETS as f64).ln()
    }

    /// The lower confidence bound of the mean.
    pub(super) fn lower(&self) -> f64 {
        self.edge(-1.0, true)
    }

    /// The upper confidence bound of the mean.
    pub(super) fn upper(&self) -> f64 {
        self.edge(1.0, false)
    }

    fn edge(&self, end: f64, rising: bool) -> f64 {
        let start = self.observed();
        // Only the end's own value observed: nothing can be rejected on that side.
        if start == end {
            return end;
        }
        let (mut outside, mut inside) = (end, start);
        for _ in 0..STEPS {
            let mid = 0.5 * (outside + inside);
            if self.ln_wealth(mid, rising) < self.threshold {
                inside = mid;
            } else {
                outside = mid;
            }
        }
        outside
    }
}

/// About how far a [`Bets`] bound reaches from the mean at `n` samples of variance `v`, for plans: `√(2 (ln(1/α) + ln 20) v / n)` (the even mixture over 20 bets costs at most ln 20 against the best of them).
pub(super) fn bets_reach(n: f64, v: f64, alpha: f64) -> f64 {
    (2.0 * ((1.0 / alpha).ln() + (BETS as f64).ln()) * v / n).sqrt()
}

// === impl Tail ===

/// A time-uniform test of one tail share: the counts of samples beyond a fixed quantile that a share `p` allows at every sample size.
///
/// The count K_n of samples above the true (1 - p)-quantile is binomial(n, p)
/// (at most p above, at least p at or above, for any distribution). The mixture
/// `M_n(k) = B(k + rp, n - k + r(1-p)) / B(rp, r(1-p)) / (p^k (1-p)^{n-k})` over a
/// Beta(rp, r(1-p)) prior centred on p is a martingale under p, so every
/// count with `M_n(k) ≥ 1/α` is ruled out at level α at every n at once
/// (Howard & Ramdas 2022, "Sequential estimation of quantiles with
/// applications to A/B-testing and best-arm identification", Bernoulli). Its
/// prior weight `r = PRIOR_EVENTS / p` makes the boundary tightest around the
/// few thousand samples a p99 is judged on.
pub(super) struct Tail {
    p: f64,
    prior: f64,
    ln_prior: f64,
    threshold: f64,
}

/// Tail samples the prior weighs as much as: ρ = r·p(1-p) ≈ 2.
const PRIOR_EVENTS: f64 = 2.0;

impl Tail {
    /// The test of tail share `p` at level `alpha`.
    pub(super) fn new(p: f64, alpha: f64) -> Tail {
        let prior = PRIOR_EVENTS / p;
        Tail {
            p,
            prior,
            ln_prior: ln_beta(prior * p, prior * (1.0 - p)),
            threshold: (1.0 / alpha).ln(),
        }
    }

    /// ln M_n(k).
    fn ln_mixture(&self, n: f64, k: f64) -> f64 {
        ln_beta(k + self.prior * self.p, n - k + self.prior * (1.0 - self.p))
            - self.ln_prior
            - k * self.p.ln()
            - (n - k) * (1.0 - self.p).ln()
    }

    /// The fewest and the most tail samples among `n` that the share allows: (k_lo, k_hi).
    pub(super) fn allowed(&self, n: u64) -> (u64, u64) {
        let nf = n as f64;
        let rejects = |k: u64| self.ln_mixture(nf, k as f64) >= self.threshold;
        // ln M is convex in k: its minimum is next to np.
        let mid = ((nf * self.p).floor() as u64).min(n);
        let mid =
            if mid < n && self.ln_mixture(nf, (mid + 1) as f64) < self.ln_mixture(nf, mid as f64) {
                mid + 1
            } else {
                mid
            };
        if rejects(mid) {
            return (mid, mid);
        }
        // The largest allowed count at or above mid.
        let high = if !rejects(n) {
            n
        } else {
            let (mut ok, mut bad) = (mid, n);
            while bad - ok > 1 {
                let m = ok + (bad - ok) / 2;
                if rejects(m) {
                    bad = m;
                } else {
                    ok = m;
                }
            }
            ok
        };
        let low = if !rejects(0) {
            0
        } else {
            let (mut bad, mut ok) = (0, mid);
            while ok - bad > 1 {
                let m = bad + (ok - bad) / 2;
                if rejects(m) {
                    bad = m;
                } else {
                    ok = m;
                }
            }
            ok
        };
        (low, high)
    }
}

// === planning ===

/// The smallest sample size from `from` on at which `ok` holds, assuming it holds from some point on; `None` beyond 10¹².
///
/// Doubles until `ok`, then bisects to within 1 %.
pub(super) fn smallest_n(from: f64, ok: impl Fn(f64) -> bool) -> Option<f64> {
    const LIMIT: f64 = 1e12;
    let mut lo = from.max(1.0);
    if lo > LIMIT {
        return None;
    }
    if ok(lo) {
        return Some(lo);
    }
    let mut hi = lo * 2.0;
    while !ok(hi) {
        lo = hi;
        hi *= 2.0;
        if hi > LIMIT {
            return None;
        }
    }
    while hi - lo > 1.0 && hi > lo * 1.01 {
        let mid = 0.5 * (lo + hi);
        if ok(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi.ceil())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_bounds_bracket_the_share_and_shrink_with_samples() {
        let r = prior_for(0.005);
        let small = Share::new(10, 1_000, r, 0.05);
        let (lo, hi) = (small.lower(), small.upper());
        assert!(
            lo > 0.0 && lo < 0.01 && 0.01 < hi && hi < 0.05,
            "{lo}..{hi}"
        );
        let large = Share::new(100, 10_000, r, 0.05);
        let (lo2, hi2) = (large.lower(), large.upper());
        assert!(
            lo < lo2 && lo2 < 0.01 && 0.01 < hi2 && hi2 < hi,
            "{lo2}..{hi2}"
        );
        // The normal-mixture reach used for plans is close to the exact one.
        let exact = 0.5 * (hi2 - lo2);
        let approx = share_reach(10_000.0, 0.0099, r, 0.05);
        assert!((exact / approx - 1.0).abs() < 0.15, "{exact} vs {approx}");
        // Between the bounds every share is accepted, just outside none is.
        for k in 1..100 {
            let p = lo2 + (hi2 - lo2) * k as f64 / 100.0;
            assert!(large.ln_mixture(p) < large.threshold, "{p}");
        }
        assert!(large.ln_mixture(lo2 * 0.999) >= large.threshold);
        assert!(large.ln_mixture(hi2 * 1.001) >= large.threshold);
    }

    #[test]
    fn share_bounds_handle_empty_and_extreme_counts() {
        let none = Share::new(0, 0, 100.0, 0.05);
        assert_eq!((none.lower(), none.upper()), (0.0, 1.0));
        let clean = Share::new(0, 2_000, prior_for(0.005), 0.05);
        assert_eq!(clean.lower(), 0.0);
        assert!(
            clean.upper() > 0.0 && clean.upper() < 0.01,
            "{}",
            clean.upper()
        );
        let all = Share::new(50, 50, 100.0, 0.05);
        assert!(all.lower() > 0.8 && all.upper() == 1.0, "{}", all.lower());
        // The broad half of the mixture catches a share far from the tuned scale early:
        // 15 of 50 is shown above 5 %.
        let far = Share::new(15, 50, prior_for(0.005), 0.05);
        assert!(far.lower() > 0.05, "{}", far.lower());
        let clamped = Share::new(9, 3, 100.0, 0.05);
        assert_eq!(clamped.upper(), 1.0);
    }

    #[test]
    fn bets_bound_the_paired_mean() {
        let b = Bets::new(120, 4, 276, 0.05);
        let (lo, hi) = (b.lower(), b.upper());
        assert!(lo > 0.2 && lo < 0.29 && hi > 0.29 && hi < 0.4, "{lo}..{hi}");
        // Symmetric counts, symmetric bounds.
        let s = Bets::new(300, 300, 19_400, 0.05);
        assert!(
            (s.lower() + s.upper()).abs() < 1e-9,
            "{} {}",
            s.lower(),
            s.upper()
        );
        assert!(s.upper() > 0.0 && s.upper() < 0.01, "{}", s.upper());
        // All +1 or nothing at all.
        let up = Bets::new(10, 0, 0, 0.05);
        assert_eq!(up.upper(), 1.0);
        assert!(up.lower() > -1.0);
        let none = Bets::new(0, 0, 0, 0.05);
        assert_eq!((none.lower(), none.upper()), (-1.0, 1.0));
        // Near its approximation.
        let approx = bets_reach(20_000.0, 0.03, 0.05);
        assert!(
            s.upper() < approx * 1.1 && s.upper() > approx * 0.5,
            "{} vs {approx}",
            s.upper()
        );
    }

    #[test]
    fn tail_counts_bracket_the_expected_count() {
        let tail = Tail::new(0.01, 0.025);
        let (lo, hi) = tail.allowed(100);
        assert_eq!(lo, 0, "100 samples cannot show a 1 % tail is missing");
        assert!((2..=8).contains(&hi), "{hi}");
        let (lo, hi) = tail.allowed(100_000);
        assert!(lo < 1_000 && hi > 1_000);
        assert!(lo > 850 && hi < 1_150, "{lo}..{hi}");
        let (lo2, hi2) = tail.allowed(200_000);
        assert!(lo2 > 2 * lo && hi2 < 2 * hi, "relative reach shrinks");
        assert_eq!(tail.allowed(0), (0, 0));
    }

    /// Bernoulli(`p`) draws, `per_look` at a time, for `looks` looks of each of `runs` runs:
    /// the share of runs in which `missed(events, trials)` held at some look.
    fn miss_rate(p: f64, per_look: u64, looks: usize, missed: impl Fn(u64, u64) -> bool) -> f64 {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        const RUNS: usize = 500;
        let mut rng = StdRng::seed_from_u64(9);
        let mut misses = 0;
        for _ in 0..RUNS {
            let (mut x, mut n) = (0u64, 0u64);
            for _ in 0..looks {
                x += (0..per_look).filter(|_| rng.random_bool(p)).count() as u64;
                n += per_look;
                if missed(x, n) {
                    misses += 1;
                    break;
                }
            }
        }
        misses as f64 / RUNS as f64
    }

    /// At most 5 % of 500 runs, with three standard errors of Monte Carlo slack.
    const AT_MOST_ALPHA: f64 = 0.05 + 3.0 * 0.009_75;

    #[test]
    fn share_bounds_cover_the_true_share_at_every_look() {
        // 100 looks of 50 draws at p = 2 %: the interval misses 2 % at some look in at most
        // 5 % of runs (an interval valid for one sample size would miss far more often).
        let rate = miss_rate(0.02, 50, 100, |x, n| {
            let s = Share::new(x, n, prior_for(0.01), 0.05);
            s.lower() > 0.02 || s.upper() < 0.02
        });
        assert!(rate <= AT_MOST_ALPHA, "missed in {rate} of runs");
    }

    #[test]
    fn tail_counts_hold_the_true_count_at_every_look() {
        // Samples beyond a p99 are 1 % of all: over 100 looks of 100 samples, their count
        // leaves [k_lo, k_hi] at some look in at most 5 % of runs.
        let tail = Tail::new(0.01, 0.05);
        let rate = miss_rate(0.01, 100, 100, |x, n| {
            let (lo, hi) = tail.allowed(n);
            x < lo || x > hi
        });
        assert!(rate <= AT_MOST_ALPHA, "missed in {rate} of runs");
    }

    #[test]
    fn smallest_n_finds_the_threshold() {
        let n = smallest_n(1.0, |n| n >= 1_000.0).unwrap();
        assert!((1_000.0..=1_011.0).contains(&n), "{n}");
        assert_eq!(smallest_n(5_000.0, |n| n >= 1_000.0), Some(5_000.0));
        assert_eq!(smallest_n(1.0, |_| false), None);
    }
}
