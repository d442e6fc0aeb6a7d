//! The per-task comparison of strategies printed at the end of `gtk train --strategy all`
//! and by `gtk eval`.

use super::record::Record;
use crate::task::Objective;
use std::fmt;

/// Final test metrics: one row per task, one column per strategy.
#[derive(Debug, Clone, PartialEq)]
pub struct ComparisonTable {
    /// Decides which value is best.
    pub objective: Objective,
    /// Column names (strategies).
    pub columns: Vec<String>,
    /// Task name and one value per column (NaN if missing).
    pub rows: Vec<(String, Vec<f64>)>,
    /// Optional reference column (test MSE of predicting the training mean).
    pub reference: Option<(String, Vec<f64>)>,
}

impl ComparisonTable {
    /// Builds the table from the test-split eval records of the last step.
    pub fn from_records(
        objective: Objective,
        tasks: &[String],
        columns: &[String],
        records: &[Record],
    ) -> Self {
        let last = records
            .iter()
            .filter(|r| matches!(r, Record::Eval { .. }))
            .map(Record::step)
            .max()
            .unwrap_or(0);
        let rows = tasks
            .iter()
            .map(|task| {
                let values = columns
                    .iter()
                    .map(|col| {
                        records
                            .iter()
                            .find_map(|r| match r {
                                Record::Eval {
                                    step,
                                    strategy,
                                    task: t,
                                    split,
                                    metric,
                                    ..
                                } if *step == last
                                    && strategy == col
                                    && t == task
                                    && split == "test" =>
                                {
                                    Some(*metric)
                                }
                                _ => None,
                            })
                            .unwrap_or(f64::NAN)
                    })
                    .collect();
                (task.clone(), values)
            })
            .collect();
        ComparisonTable {
            objective,
            columns: columns.to_vec(),
            rows,
            reference: None,
        }
    }

    /// Mean over tasks per column.
    pub fn means(&self) -> Vec<f64> {
        (0..self.columns.len())
            .map(|c| {
                self.rows.iter().map(|(_, v)| v[c]).sum::<f64>() / self.rows.len().max(1) as f64
            })
            .collect()
    }

    /// The columns holding the best value of a row: every one of them when several tie.
    pub fn best(&self, values: &[f64]) -> Vec<usize> {
        self.objective.best(values)
    }

    /// The one number format of the whole table (3 significant digits of its smallest value,
    /// at least 4 decimals).
    pub fn number_format(&self) -> NumberFormat {
        let mut all: Vec<f64> = self
            .rows
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .collect();
        all.extend(self.means());
        if let Some((_, r)) = &self.reference {
            all.extend(r.iter().copied());
        }
        NumberFormat::for_values(&all, 3, 4)
    }
}

impl fmt::Display for ComparisonTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name_w = self
            .rows
            .iter()
            .map(|(n, _)| n.len())
            .max()
            .unwrap_or(4)
            .max(4);
        write!(
            f,
            "test {:<w$}",
            self.objective.metric_name(),
            w = name_w.saturating_sub(0)
        )?;
        for c in &self.columns {
            write!(f, " {c:>11}")?;
        }
        if let Some((name, _)) = &self.reference {
            write!(f, " {name:>14}")?;
        }
        writeln!(f)?;
        let number = self.number_format();
        let fmt_row = |f: &mut fmt::Formatter<'_>,
                       name: &str,
                       values: &[f64],
                       reference: Option<f64>|
         -> fmt::Result {
            write!(f, "     {name:<name_w$}")?;
            let best = self.best(values);
            for (i, v) in values.iter().enumerate() {
                let mark = if best.contains(&i) && values.len() > 1 {
                    "*"
                } else {
                    " "
                };
                write!(f, " {:>10}{mark}", number.show(*v))?;
            }
            if let Some(r) = reference {
                write!(f, " {:>14}", number.show(r))?;
            }
            writeln!(f)
        };
        for (i, (name, values)) in self.rows.iter().enumerate() {
            fmt_row(f, name, values, self.reference.as_ref().map(|(_, r)| r[i]))?;
        }
        if self.rows.len() > 1 {
            let reference_mean = self
                .reference
                .as_ref()
                .map(|(_, r)| r.iter().sum::<f64>() / r.len().max(1) as f64);
            fmt_row(f, "mean", &self.means(), reference_mean)?;
        }
        if self.columns.len() > 1 {
            writeln!(f, "(* best per row; every column of a tie)")?;
        }
        Ok(())
    }
}

/// One number format for every number of a table, so its columns can be compared digit by
/// digit: fixed with a number of decimals, or scientific with a number of mantissa decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberFormat {
    /// `{:.d}`.
    Fixed(usize),
    /// `{:.de}`.
    Scientific(usize),
}

impl NumberFormat {
    /// The format that shows each of `values` with at least `significant` significant digits
    /// (and at least `min_decimals` decimals), fixed unless that would take more than 8
    /// decimals or a value is 10⁵ or larger; then scientific for the whole table. Zero, NaN
    /// and infinite values do not decide it.
    pub fn for_values(values: &[f64], significant: usize, min_decimals: usize) -> Self {
        let mags: Vec<f64> = values
            .iter()
            .copied()
            .filter(|v| v.is_finite() && *v != 0.0)
            .map(f64::abs)
            .collect();
        let sig = significant.max(1) as i32;
        if mags.iter().any(|&v| v >= 1e5) {
            return NumberFormat::Scientific(sig as usize - 1);
        }
        let decimals = mags
            .iter()
            .map(|v| sig - 1 - v.log10().floor() as i32)
            .max()
            .unwrap_or(0)
            .max(min_decimals as i32);
        if decimals > 8 {
            NumberFormat::Scientific(sig as usize - 1)
        } else {
            NumberFormat::Fixed(decimals as usize)
        }
    }

    /// One number (`-` for NaN).
    pub fn show(self, v: f64) -> String {
        if v.is_nan() {
            return "-".into();
        }
        match self {
            NumberFormat::Fixed(d) => format!("{v:.d$}"),
            NumberFormat::Scientific(d) => format!("{v:.d$e}"),
        }
    }
}

/// A metric for humans: 4 decimals, or scientific notation for very small or large values.
pub fn format_metric(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e5) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

/// `v` to `digits` significant digits (at least; a value ≥ 10^digits keeps its integer
/// digits), with a `+` for positive values when `signed`; `-` for NaN. One-seed measures
/// (a single run's average, BWT, forgetting) print this way: their seed-to-seed noise is far
/// above a fourth digit.
pub fn format_significant(v: f64, digits: usize, signed: bool) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    // −0 (a difference of two equal values, negated for MSE) prints as 0.
    let v = if v == 0.0 { 0.0 } else { v };
    let magnitude = if v == 0.0 {
        0
    } else {
        v.abs().log10().floor() as i64
    };
    let decimals = (digits as i64 - 1 - magnitude).max(0) as usize;
    if signed {
        format!("{v:+.decimals$}")
    } else {
        format!("{v:.decimals$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn significant_digits() {
        assert_eq!(format_significant(0.20684, 3, false), "0.207");
        assert_eq!(format_significant(-0.22981, 3, true), "-0.230");
        assert_eq!(format_significant(0.051_53, 3, false), "0.0515");
        assert_eq!(format_significant(0.0, 3, true), "+0.00");
        assert_eq!(format_significant(-0.0, 3, true), "+0.00");
        assert_eq!(format_significant(97.684, 3, false), "97.7");
        assert_eq!(format_significant(0.012_34, 3, true), "+0.0123");
        assert_eq!(format_significant(1234.5, 3, false), "1234");
        assert_eq!(format_significant(f64::NAN, 3, false), "-");
    }

    #[test]
    fn one_number_format_per_table() {
        // 4.897e-4 next to 0.0288: both fixed, with the small one's three digits.
        let f = NumberFormat::for_values(&[4.897e-4, 0.0288, 0.0], 3, 4);
        assert_eq!(f, NumberFormat::Fixed(6));
        assert_eq!(
            (f.show(4.897e-4), f.show(0.0288)),
            ("0.000490".into(), "0.028800".into())
        );
        assert_eq!(f.show(0.0), "0.000000");
        assert_eq!(
            NumberFormat::for_values(&[0.95, 0.5], 3, 4),
            NumberFormat::Fixed(4)
        );
        assert_eq!(
            NumberFormat::for_values(&[1e-12, 0.5], 3, 4),
            NumberFormat::Scientific(2)
        );
        assert_eq!(NumberFormat::Scientific(2).show(1.234e-12), "1.23e-12");
    }

    #[test]
    fn ties_are_starred_in_every_column() {
        let t = ComparisonTable {
            objective: Objective::Classification,
            columns: vec!["gated".into(), "separate".into(), "joint".into()],
            rows: vec![
                ("a".into(), vec![0.9, 0.9, 0.5]),
                ("b".into(), vec![0.7, 0.8, 0.8]),
            ],
            reference: None,
        };
        assert_eq!(t.best(&[0.9, 0.9, 0.5]), vec![0, 1]);
        let text = t.to_string();
        let a = text
            .lines()
            .find(|l| l.trim_start().starts_with("a "))
            .unwrap();
        assert_eq!(a.matches('*').count(), 2, "{text}");
        let b = text
            .lines()
            .find(|l| l.trim_start().starts_with("b "))
            .unwrap();
        assert!(
            b.contains("0.8000*") && b.matches('*').count() == 2,
            "{text}"
        );
    }
}
