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

    fn best(&self, values: &[f64]) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, v) in values.iter().enumerate() {
            if v.is_nan() {
                continue;
            }
            if best.is_none_or(|b| self.objective.better(*v, values[b])) {
                best = Some(i);
            }
        }
        best
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
        let fmt_row = |f: &mut fmt::Formatter<'_>,
                       name: &str,
                       values: &[f64],
                       reference: Option<f64>|
         -> fmt::Result {
            write!(f, "     {name:<name_w$}")?;
            let best = self.best(values);
            for (i, v) in values.iter().enumerate() {
                let mark = if Some(i) == best && values.len() > 1 {
                    "*"
                } else {
                    " "
                };
                write!(f, " {:>10}{mark}", format_metric(*v))?;
            }
            if let Some(r) = reference {
                write!(f, " {:>14}", format_metric(r))?;
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
            writeln!(f, "(* best per row)")?;
        }
        Ok(())
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
