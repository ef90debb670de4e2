//! The two special functions the sequential tests need: the log-gamma function and the normal quantile.

use std::f64::consts::PI;

/// Returns ln Γ(x) for x > 0, to about 1e-13 relative: the normalizers of the beta and Dirichlet mixtures.
///
/// Shifts x up to at least 10 with Γ(x) = Γ(x + k) / (x (x+1) … (x+k-1)), then
/// sums Stirling's series `(x - ½) ln x - x + ½ ln 2π + 1/12x - 1/360x³ + 1/1260x⁵ - 1/1680x⁷
/// + 1/1188x⁹ - 691/360360x¹¹`, whose first omitted term is below 1e-14 at x = 10.
pub(super) fn ln_gamma(x: f64) -> f64 {
    debug_assert!(x > 0.0, "ln_gamma({x})");
    let mut x = x;
    let mut product = 1.0;
    while x < 10.0 {
        product *= x;
        x += 1.0;
    }
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    let series = inv
        * (1.0 / 12.0
            - inv2
                * (1.0 / 360.0
                    - inv2
                        * (1.0 / 1260.0
                            - inv2
                                * (1.0 / 1680.0
                                    - inv2 * (1.0 / 1188.0 - inv2 * 691.0 / 360_360.0)))));
    (x - 0.5) * x.ln() - x + 0.5 * (2.0 * PI).ln() + series - product.ln()
}

/// Returns ln B(a, b) = ln Γ(a) + ln Γ(b) - ln Γ(a + b), for a, b > 0.
pub(super) fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// Returns the standard normal quantile z with Φ(z) = p, for 0 < p < 1 (Acklam's rational approximation, 1.2e-9 relative).
pub(super) fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.024_25;
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_matches_factorials_and_known_values() {
        let mut factorial = 1.0f64;
        for n in 1..30u32 {
            // Γ(n) = (n-1)!
            let exact = factorial.ln();
            assert!(
                (ln_gamma(f64::from(n)) - exact).abs() <= 1e-12 * exact.abs().max(1.0),
                "ln Γ({n}) = {} vs {exact}",
                ln_gamma(f64::from(n))
            );
            factorial *= f64::from(n);
        }
        assert!((ln_gamma(0.5) - PI.sqrt().ln()).abs() < 1e-13);
        assert!((ln_gamma(1.5) - (PI.sqrt() / 2.0).ln()).abs() < 1e-13);
        // Γ(0.01) = 99.432 585 119 150 6...
        assert!((ln_gamma(0.01) - 99.432_585_119_150_6f64.ln()).abs() < 1e-12);
        // ln Γ(1e6) = 12 815 504.569 147 6...
        assert!((ln_gamma(1e6) - 12_815_504.569_147_6).abs() < 1e-6);
        // ln B(½, ½) = ln π
        assert!((ln_beta(0.5, 0.5) - PI.ln()).abs() < 1e-13);
    }

    #[test]
    fn normal_quantile_matches_the_table() {
        for (p, z) in [
            (0.5, 0.0),
            (0.8, 0.841_621_233_572_914),
            (0.95, 1.644_853_626_951_472),
            (0.975, 1.959_963_984_540_054),
            (0.01, -2.326_347_874_040_841),
            (1e-6, -4.753_424_308_822_899),
        ] {
            assert!(
                (normal_quantile(p) - z).abs() < 1e-8,
                "Φ⁻¹({p}) = {}",
                normal_quantile(p)
            );
        }
    }
}
