//! Statistics over seeds: mean, sample standard deviation, Student-t confidence intervals and
//! the paired t-test. The t distribution and the incomplete beta function are `statrs`'s
//! (without its default `nalgebra` feature: it adds `approx` and `num-traits` only); the unit
//! tests below pin them to t tables and closed forms.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};
use statrs::function::beta::beta_reg;

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

/// Student's t with `df` degrees of freedom (`df` > 0, checked by the callers).
fn students_t(df: f64) -> Option<StudentsT> {
    StudentsT::new(0.0, 1.0, df).ok()
}

/// P(T ≤ t) for Student's t with `df` degrees of freedom.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    students_t(df).map_or(f64::NAN, |d| d.cdf(t))
}

/// The `p` quantile of Student's t with `df` degrees of freedom (0 < p < 1).
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    students_t(df).map_or(f64::NAN, |d| d.inverse_cdf(p))
}

/// Two-sided p-value of a t statistic with `df` degrees of freedom:
/// P(|T| > |t|) = I_{df/(df+t²)}(df/2, 1/2), the regularized incomplete beta function.
pub fn two_sided_p(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if t.is_infinite() {
        return 0.0;
    }
    beta_reg(df / 2.0, 0.5, df / (df + t * t))
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
