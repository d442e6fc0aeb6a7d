//! Whether the deployed 1-bit model `W ⊙ 1[M > 0]` is much worse than the trained gated model,
//! and what to change when it is. Under the sigmoid gate the two can differ a lot (undecided
//! gates near 0.5 are rounded to 0 or 1), and the binarized model is what `gtk export
//! --binarize` ships, so `gtk train`, `gtk eval` and `gtk export` print this warning instead of
//! letting a ruined model ship silently.

use super::record::Record;
use super::table::format_metric;
use crate::config::RunConfig;
use crate::gate::{GateMode, Regularizer};
use crate::learn::Strategy;
use std::collections::BTreeMap;

/// An MSE counts as much worse above this multiple of the soft model's.
pub const MSE_RATIO: f64 = 1.5;
/// An accuracy counts as much worse more than this far (2 points) below the soft model's.
pub const ACCURACY_DROP: f64 = 0.02;

/// The rule in words, for messages and the book.
pub const RULE: &str =
    "binarized MSE above 1.5× the soft one, or accuracy more than 2 points lower";

/// Whether `binarized` is much worse than `soft` for the metric `metric_name` (`mse` or
/// `accuracy`): see [`MSE_RATIO`] and [`ACCURACY_DROP`]. NaN is never much worse.
pub fn much_worse(metric_name: &str, soft: f64, binarized: f64) -> bool {
    if metric_name == "accuracy" {
        binarized < soft - ACCURACY_DROP
    } else {
        binarized > MSE_RATIO * soft
    }
}

/// A warning that the binarized gated model is much worse than the trained one, with the
/// numbers behind it and what helps for this run's settings. Its `Display` is the text the CLI
/// prints (several lines, the first starting with `warning:`).
#[derive(Debug, Clone, PartialEq)]
pub struct BinarizationWarning {
    /// `mse` or `accuracy`.
    pub metric_name: String,
    /// Mean test metric of the trained gated model over the tasks compared.
    pub soft: f64,
    /// Mean test metric of `W ⊙ 1[M > 0]` over the same tasks.
    pub binarized: f64,
    /// Mean test metric of the rescaled binarized model, when measured (export).
    pub rescaled: Option<f64>,
    /// Smallest and largest per-layer share of undecided gates (0.1 < σ(M) < 0.9), each the
    /// mean over tasks, at the last mask record; `None` when the log has none.
    pub undecided: Option<(f64, f64)>,
    /// What to change, for this run's settings (the first items are the most direct).
    pub advice: Vec<String>,
}

impl BinarizationWarning {
    /// The warning for means over tasks, or `None` when the binarized model is close enough.
    pub fn check(
        metric_name: &str,
        soft: f64,
        binarized: f64,
        rescaled: Option<f64>,
        undecided: Option<(f64, f64)>,
        run: &RunConfig,
    ) -> Option<Self> {
        much_worse(metric_name, soft, binarized).then(|| BinarizationWarning {
            metric_name: metric_name.into(),
            soft,
            binarized,
            rescaled,
            undecided,
            advice: advice(run, metric_name, rescaled),
        })
    }

    /// The warning for one full evaluation's records (the last step that has
    /// [`Record::Binarized`] records): the gated model's test metric against the binarized one,
    /// averaged over the same tasks.
    pub fn from_records(records: &[Record], run: &RunConfig) -> Option<Self> {
        let step = records
            .iter()
            .filter_map(|r| match r {
                Record::Binarized { step, .. } => Some(*step),
                _ => None,
            })
            .max()?;
        let binarized: BTreeMap<&str, f64> = records
            .iter()
            .filter_map(|r| match r {
                Record::Binarized {
                    step: s,
                    task,
                    metric,
                    ..
                } if *s == step => Some((task.as_str(), *metric)),
                _ => None,
            })
            .collect();
        let mut metric_name = None;
        let (mut soft, mut bin) = (Vec::new(), Vec::new());
        for r in records {
            if let Record::Eval {
                step: s,
                strategy,
                task,
                split,
                metric,
                metric_name: name,
                ..
            } = r
                && *s == step
                && strategy == Strategy::Gated.as_str()
                && split == "test"
                && let Some(&b) = binarized.get(task.as_str())
            {
                soft.push(*metric);
                bin.push(b);
                metric_name = Some(name.as_str());
            }
        }
        Self::check(
            metric_name?,
            mean(&soft)?,
            mean(&bin)?,
            None,
            undecided_range(records),
            run,
        )
    }

    /// The first line: the numbers and the rule they broke.
    pub fn headline(&self) -> String {
        let worse = if self.metric_name == "accuracy" {
            format!("{:.1} points lower", 100.0 * (self.soft - self.binarized))
        } else {
            format!("{:.1}× the soft one", self.binarized / self.soft)
        };
        let undecided = match self.undecided {
            Some((lo, hi)) if (hi - lo) < 0.005 => {
                format!("; {:.0}% of the gates are undecided", 100.0 * hi)
            }
            Some((lo, hi)) => format!(
                "; {:.0}–{:.0}% of the gates per layer are undecided",
                100.0 * lo,
                100.0 * hi
            ),
            None => String::new(),
        };
        format!(
            "warning: the binarized gated model W ⊙ 1[M > 0] is much worse than the trained one: \
             test {m} {b} against {s} ({worse}; warned when {RULE}){undecided}",
            m = self.metric_name,
            b = format_metric(self.binarized),
            s = format_metric(self.soft),
        )
    }
}

impl std::fmt::Display for BinarizationWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.headline())?;
        if !self.advice.is_empty() {
            write!(f, "\n  what helps (book: Concepts, \"Binarization\"):")?;
            for a in &self.advice {
                write!(f, "\n  - {a}")?;
            }
        }
        Ok(())
    }
}

/// What helps, given the run's settings: only settings it does not use yet are suggested.
fn advice(run: &RunConfig, metric_name: &str, rescaled: Option<f64>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(r) = rescaled {
        out.push(format!(
            "`gtk export --binarize --rescale` scales the kept weights by their mean gate: test \
             {metric_name} {}",
            format_metric(r)
        ));
    }
    if run.gates.mode == GateMode::Sigmoid && run.gates.binarize_after.is_none() {
        let at = (run.steps * 3 / 4).max(1);
        out.push(format!(
            "`binarize_after = {at}` in [run]: the masks are frozen binary from that step on and \
             W is fitted to the 1-bit model (or `gate = \"ste\"`: the trained model is the \
             binarized one)"
        ));
    }
    if run.gates.mask_regularizer == Regularizer::None || run.gates.mask_regularizer_weight == 0.0 {
        out.push(
            "`mask_regularizer = \"abs\"` with `mask_regularizer_weight = 1.0` in [run] pushes \
             the masks away from 0, where the gates are undecided"
                .into(),
        );
    }
    out.push(format!(
        "train longer (this run: {} steps): the gates keep moving towards 0 or 1",
        run.steps
    ));
    out
}

/// Per layer the mean undecided share over tasks at the last mask record; the smallest and
/// largest of those.
pub fn undecided_range(records: &[Record]) -> Option<(f64, f64)> {
    let step = records
        .iter()
        .filter_map(|r| match r {
            Record::Mask { step, .. } => Some(*step),
            _ => None,
        })
        .max()?;
    let mut per_param: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in records {
        if let Record::Mask {
            step: s,
            param,
            undecided,
            ..
        } = r
            && *s == step
        {
            per_param.entry(param).or_default().push(*undecided);
        }
    }
    let means: Vec<f64> = per_param.values().filter_map(|v| mean(v)).collect();
    let lo = means.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = means.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo.is_finite() && hi.is_finite()).then_some((lo, hi))
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TaskSet;

    fn run() -> RunConfig {
        TaskSet::builtin().expect("builtin set").run
    }

    fn records(soft: f64, binarized: f64, metric_name: &str) -> Vec<Record> {
        let mut out = Vec::new();
        for (i, task) in ["a", "b"].iter().enumerate() {
            // Task b is 0.01 apart from task a in both, so the means are soft and binarized.
            let d = if i == 0 { -0.01 } else { 0.01 };
            out.push(Record::Eval {
                step: 40,
                strategy: "gated".into(),
                task: (*task).into(),
                split: "test".into(),
                loss: 0.0,
                metric: soft + d,
                metric_name: metric_name.into(),
            });
            // The train split and another strategy must not count.
            out.push(Record::Eval {
                step: 40,
                strategy: "shared".into(),
                task: (*task).into(),
                split: "test".into(),
                loss: 0.0,
                metric: 100.0,
                metric_name: metric_name.into(),
            });
            out.push(Record::Eval {
                step: 40,
                strategy: "gated".into(),
                task: (*task).into(),
                split: "train".into(),
                loss: 0.0,
                metric: 100.0,
                metric_name: metric_name.into(),
            });
            out.push(Record::Binarized {
                step: 40,
                task: (*task).into(),
                loss: 0.0,
                metric: binarized + d,
            });
            for (param, u) in [("fc1.weight", 0.40), ("fc2.weight", 0.57)] {
                out.push(Record::Mask {
                    step: 40,
                    task: (*task).into(),
                    param: param.into(),
                    off: 0.1,
                    undecided: u + d,
                });
            }
        }
        out
    }

    #[test]
    fn warns_with_the_numbers_when_binarized_mse_is_much_worse() {
        let w = BinarizationWarning::from_records(&records(0.0288, 0.1148, "mse"), &run())
            .expect("4x worse warns");
        assert!((w.soft - 0.0288).abs() < 1e-12, "{}", w.soft);
        assert!((w.binarized - 0.1148).abs() < 1e-12, "{}", w.binarized);
        let (lo, hi) = w.undecided.expect("mask records");
        assert!((lo - 0.40).abs() < 1e-12 && (hi - 0.57).abs() < 1e-12);
        let text = w.to_string();
        assert!(text.starts_with("warning: "), "{text}");
        assert!(
            text.contains("test mse 0.1148 against 0.0288 (4.0× the soft one"),
            "{text}"
        );
        assert!(text.contains("40–57% of the gates per layer"), "{text}");
        // The builtin set uses the sigmoid gate, no regulariser, 4000 steps.
        assert!(text.contains("`binarize_after = 3000`"), "{text}");
        assert!(text.contains("mask_regularizer = \"abs\""), "{text}");
        assert!(text.contains("this run: 4000 steps"), "{text}");
    }

    #[test]
    fn silent_when_close() {
        assert_eq!(
            BinarizationWarning::from_records(&records(0.0288, 0.0400, "mse"), &run()),
            None
        );
        assert_eq!(
            BinarizationWarning::from_records(&records(0.90, 0.885, "accuracy"), &run()),
            None
        );
        // No binarized records (no gated model): nothing to compare.
        let plain: Vec<Record> = records(0.1, 0.9, "mse")
            .into_iter()
            .filter(|r| !matches!(r, Record::Binarized { .. }))
            .collect();
        assert_eq!(BinarizationWarning::from_records(&plain, &run()), None);
    }

    #[test]
    fn accuracy_rule_is_two_points() {
        let w = BinarizationWarning::from_records(&records(0.90, 0.85, "accuracy"), &run())
            .expect("5 points lower warns");
        assert!(
            w.to_string()
                .contains("test accuracy 0.8500 against 0.9000 (5.0 points lower"),
            "{w}"
        );
        assert!(much_worse("accuracy", 0.90, 0.879));
        assert!(!much_worse("accuracy", 0.90, 0.881));
        assert!(much_worse("mse", 0.1, 0.151));
        assert!(!much_worse("mse", 0.1, 0.149));
        assert!(!much_worse("mse", 0.1, f64::NAN));
    }

    #[test]
    fn advice_leaves_out_what_the_run_already_uses() {
        let mut r = run();
        r.gates.mode = GateMode::Hat;
        r.gates.mask_regularizer = Regularizer::Abs;
        r.gates.mask_regularizer_weight = 1.0;
        let w =
            BinarizationWarning::check("mse", 0.01, 0.05, Some(0.012), None, &r).expect("5x worse");
        assert_eq!(w.advice.len(), 2, "{:?}", w.advice);
        assert!(w.advice[0].contains("--rescale") && w.advice[0].contains("0.0120"));
        assert!(w.advice[1].contains("train longer"));
        assert!(!w.to_string().contains("undecided"), "{w}");
    }
}
