//! Statistics over seeds: mean, sample standard deviation, Student-t confidence intervals and
//! the paired t-test. Written out here (log-gamma, the regularized incomplete beta function
//! and a bisection for the t quantile) so that no statistics crate is needed and every number
//! in a summary can be traced to these few functions.

use serde::{Deserialize, Serialize};

/// Mean of `xs` (NaN when empty).
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample standard deviation (divisor n − 1; NaN for fewer than two values).
pub fn sample_std(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return f64::NAN;
    }
    let m = mean(xs);
    let ss: f64 = xs.iter().map(|x| (x - m).powi(2)).sum();
    (ss / (xs.len() - 1) as f64).sqrt()
}

/// ln Γ(x) for x > 0 (Lanczos approximation, g = 7, 9 terms; about 15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Continued fraction of the incomplete beta function (modified Lentz).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let nonzero = |v: f64| if v.abs() < TINY { TINY } else { v };
    // One term `aa` of the fraction: updates Lentz's c and d and returns the factor for h.
    let step = |aa: f64, c: &mut f64, d: &mut f64| -> f64 {
        *d = 1.0 / nonzero(1.0 + aa * *d);
        *c = nonzero(1.0 + aa / *c);
        *d * *c
    };
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 / nonzero(1.0 - qab * x / qap);
    let mut h = d;
    for m in 1..=300 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        h *= step(m * (b - m) * x / ((qam + m2) * (a + m2)), &mut c, &mut d);
        let del = step(
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
            &mut c,
            &mut d,
        );
        h *= del;
        if (del - 1.0).abs() < 1e-16 {
            break;
        }
    }
    h
}

/// The regularized incomplete beta function I_x(a, b).
fn inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, 1.0 - x) / b
    }
}

/// P(T ≤ t) for Student's t with `df` degrees of freedom.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if t.is_infinite() {
        return if t > 0.0 { 1.0 } else { 0.0 };
    }
    // P(|T| > |t|) = I_{df/(df+t²)}(df/2, 1/2).
    let tail = inc_beta(df / 2.0, 0.5, df / (df + t * t));
    if t >= 0.0 {
        1.0 - tail / 2.0
    } else {
        tail / 2.0
    }
}

/// The `p` quantile of Student's t with `df` degrees of freedom (0 < p < 1), by bisection of
/// [`t_cdf`] to full double precision.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if p == 0.5 {
        return 0.0;
    }
    if p < 0.5 {
        return -t_quantile(1.0 - p, df);
    }
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    while t_cdf(hi, df) < p {
        hi *= 2.0;
        if hi > 1e12 {
            return f64::INFINITY;
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Two-sided p-value of a t statistic with `df` degrees of freedom.
pub fn two_sided_p(t: f64, df: f64) -> f64 {
    if t.is_nan() {
        return f64::NAN;
    }
    if t.is_infinite() {
        return 0.0;
    }
    inc_beta(df / 2.0, 0.5, df / (df + t * t))
}

/// Mean of a sample with its Student-t confidence interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Number of values (seeds).
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (n − 1); null with one value.
    pub std: Option<f64>,
    /// Half-width of the interval: t_{(1+c)/2, n−1} · std / √n; null with one value.
    pub half_width: Option<f64>,
    /// Lower end (mean − half-width).
    pub low: Option<f64>,
    /// Upper end.
    pub high: Option<f64>,
}

impl Interval {
    /// The `confidence` (e.g. 0.95) interval of the mean of `xs`.
    pub fn of(xs: &[f64], confidence: f64) -> Self {
        let n = xs.len();
        let m = mean(xs);
        if n < 2 {
            return Interval {
                n,
                mean: m,
                std: None,
                half_width: None,
                low: None,
                high: None,
            };
        }
        let s = sample_std(xs);
        let t = t_quantile(0.5 + confidence / 2.0, (n - 1) as f64);
        let h = t * s / (n as f64).sqrt();
        Interval {
            n,
            mean: m,
            std: Some(s),
            half_width: Some(h),
            low: Some(m - h),
            high: Some(m + h),
        }
    }
}

/// The paired t-test of `a − b` (the same seeds in the same order): the mean difference with
/// its interval, the t statistic and the two-sided p-value of "no difference".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedTest {
    /// Per-seed differences a − b.
    pub differences: Vec<f64>,
    /// Mean difference and its interval.
    pub interval: Interval,
    /// t = mean / (std / √n); null with fewer than two seeds, infinite when every
    /// difference is the same non-zero number.
    pub t: Option<f64>,
    /// Degrees of freedom (n − 1).
    pub df: usize,
    /// Two-sided p-value; null with fewer than two seeds.
    pub p: Option<f64>,
}

impl PairedTest {
    /// Tests `a − b`; `a` and `b` must have the same length.
    pub fn of(a: &[f64], b: &[f64], confidence: f64) -> Self {
        let differences: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
        let interval = Interval::of(&differences, confidence);
        let n = differences.len();
        let (t, p) = match interval.std {
            Some(s) if n >= 2 => {
                let t = if s == 0.0 {
                    if interval.mean == 0.0 {
                        0.0
                    } else {
                        interval.mean.signum() * f64::INFINITY
                    }
                } else {
                    interval.mean / (s / (n as f64).sqrt())
                };
                let p = if t.is_infinite() {
                    0.0
                } else {
                    two_sided_p(t, (n - 1) as f64)
                };
                // JSON has no infinity: a zero-variance difference is reported with p = 0
                // and the largest finite t.
                (
                    Some(if t.is_infinite() {
                        t.signum() * f64::MAX
                    } else {
                        t
                    }),
                    Some(p),
                )
            }
            _ => (None, None),
        };
        PairedTest {
            differences,
            interval,
            t,
            df: n.saturating_sub(1),
            p,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }

    #[test]
    fn t_quantiles_match_the_tables() {
        // Two-sided 95 % critical values from any t table.
        close(t_quantile(0.975, 1.0), 12.706_204_736, 1e-8);
        close(t_quantile(0.975, 2.0), 4.302_652_730, 1e-8);
        close(t_quantile(0.975, 4.0), 2.776_445_105, 1e-8);
        close(t_quantile(0.975, 9.0), 2.262_157_163, 1e-8);
        close(t_quantile(0.975, 29.0), 2.045_229_642, 1e-8);
        close(t_quantile(0.995, 4.0), 4.604_094_871, 1e-8);
        close(t_quantile(0.025, 4.0), -2.776_445_105, 1e-8);
        // df = 1 is the Cauchy distribution: quantile tan(π (p − ½)).
        close(
            t_quantile(0.9, 1.0),
            (std::f64::consts::PI * 0.4).tan(),
            1e-9,
        );
        // df = 2 has a closed form: t = (2p − 1) √(2 / (4p(1 − p))).
        let p: f64 = 0.8;
        close(
            t_quantile(p, 2.0),
            (2.0 * p - 1.0) * (2.0 / (4.0 * p * (1.0 - p))).sqrt(),
            1e-10,
        );
    }

    #[test]
    fn t_cdf_is_symmetric_and_matches_closed_forms() {
        // df = 1: 1/2 + atan(t)/π.
        for t in [-3.0, -0.5, 0.0, 0.7, 4.0] {
            close(
                t_cdf(t, 1.0),
                0.5 + f64::atan(t) / std::f64::consts::PI,
                1e-12,
            );
            close(t_cdf(t, 6.0) + t_cdf(-t, 6.0), 1.0, 1e-12);
        }
    }

    #[test]
    fn interval_of_a_hand_computed_sample() {
        // xs = 1, 2, 3, 4, 5: mean 3, sample variance 10/4 = 2.5, std √2.5 = 1.5811388,
        // standard error 1.5811388 / √5 = 0.7071068, t_{0.975,4} = 2.7764451,
        // half-width 2.7764451 · 0.7071068 = 1.9632432.
        let i = Interval::of(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.95);
        assert_eq!(i.n, 5);
        close(i.mean, 3.0, 1e-15);
        close(i.std.unwrap(), 2.5f64.sqrt(), 1e-15);
        close(i.half_width.unwrap(), 1.963_243_161, 1e-8);
        close(i.low.unwrap(), 3.0 - 1.963_243_161, 1e-8);
        close(i.high.unwrap(), 3.0 + 1.963_243_161, 1e-8);
        let one = Interval::of(&[0.25], 0.95);
        assert_eq!((one.mean, one.std, one.half_width), (0.25, None, None));
    }

    #[test]
    fn paired_test_of_a_hand_computed_case() {
        // a − b = 0.1, 0.3, 0.2, 0.4, 0.0: mean 0.2, sample variance
        // (0.01 + 0.01 + 0 + 0.04 + 0.04) / 4 = 0.025, std 0.1581139, standard error
        // 0.0707107, t = 2.8284271 on 4 df; two-sided p (from a t table /
        // scipy.stats.ttest_rel: 0.0474207), half-width 2.7764451 · 0.0707107 = 0.1963243.
        let a = [1.1, 1.3, 1.2, 1.4, 1.0];
        let b = [1.0, 1.0, 1.0, 1.0, 1.0];
        let p = PairedTest::of(&a, &b, 0.95);
        close(p.interval.mean, 0.2, 1e-12);
        close(p.t.unwrap(), 8f64.sqrt(), 1e-9);
        assert_eq!(p.df, 4);
        close(p.p.unwrap(), 0.047_420_656, 1e-8);
        close(p.interval.half_width.unwrap(), 0.196_324_316, 1e-8);
        // No difference at all: t = 0, p = 1.
        let same = PairedTest::of(&a, &a, 0.95);
        assert_eq!((same.t, same.p), (Some(0.0), Some(1.0)));
    }
}
