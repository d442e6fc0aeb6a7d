//! What a run logs to `metrics.jsonl`: one JSON object per line, tagged by `record`.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One line of `metrics.jsonl`.
///
/// Two tiers of evaluation: [`Record::Probe`] every `eval_every` steps (a fixed test subset
/// and the training batches) and the full evaluation ([`Record::Eval`] on whole splits, with
/// [`Record::Binarized`], [`Record::Mask`], [`Record::Histogram`], [`Record::Recovery`]) every
/// `full_eval_every` steps and at the end. Runs made before probes existed hold only the full
/// kinds and read as before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "lowercase")]
pub enum Record {
    /// Loss and metric of one strategy on one task's split.
    Eval {
        /// Steps completed.
        step: usize,
        /// gated, shared or separate.
        strategy: String,
        /// Task name.
        task: String,
        /// train or test.
        split: String,
        /// Mean loss (MSE or cross-entropy).
        loss: f64,
        /// MSE or accuracy.
        metric: f64,
        /// `"mse"` or `"accuracy"`.
        metric_name: String,
    },
    /// The cheap evaluation every `eval_every` steps. Test split: one strategy on the fixed
    /// subset of one task's test split ([`Record::ProbeSet`]). Train split: the mean loss and
    /// metric of the training batches of that task since the previous probe (no extra
    /// forward pass; a task without a batch in that window has no train-split probe).
    Probe {
        /// Steps completed.
        step: usize,
        /// gated, shared or separate.
        strategy: String,
        /// Task name.
        task: String,
        /// train or test.
        split: String,
        /// Mean loss.
        loss: f64,
        /// MSE or accuracy.
        metric: f64,
        /// `"mse"` or `"accuracy"`.
        metric_name: String,
        /// Examples behind the numbers.
        examples: usize,
    },
    /// The test examples every probe of one task uses (positions in its test split), logged
    /// once before the first probe: curves of runs with the same subset are comparable.
    #[serde(rename = "probe_set")]
    ProbeSet {
        /// Steps completed when it was logged (0, or the step a pre-probe run resumed at).
        step: usize,
        /// Task name.
        task: String,
        /// Examples in the task's whole test split.
        of: usize,
        /// Seed of the draw.
        seed: u64,
        /// Positions in the test split, ascending.
        indices: Vec<usize>,
    },
    /// Mean training loss of one strategy over the last `log_every` steps (the batches it
    /// trained on): a cheap training curve between full evaluations.
    Train {
        /// Steps completed.
        step: usize,
        /// gated, shared or separate.
        strategy: String,
        /// Mean batch loss.
        loss: f64,
    },
    /// Share of one task's mask entries that are off / undecided, per parameter.
    Mask {
        /// Steps completed.
        step: usize,
        /// Task name.
        task: String,
        /// Parameter, e.g. `fc1.weight`.
        param: String,
        /// Share with M < 0.
        off: f64,
        /// Share with gate in (0.1, 0.9).
        undecided: f64,
    },
    /// Gated model on the binarized mask `W ⊙ 1[M > 0]`.
    Binarized {
        /// Steps completed.
        step: usize,
        /// Task name.
        task: String,
        /// Test loss.
        loss: f64,
        /// Test metric.
        metric: f64,
    },
    /// Histogram snapshot of one parameter: the effective weights (`W ⊙ g(M_t)` for gated,
    /// `W` for the plain models) or the gate values `g(M_t)`. Snapshots instead of full weights
    /// keep the log small while still showing how distributions move (the paper's Figure 2).
    Histogram {
        /// Steps completed.
        step: usize,
        /// gated, shared or separate.
        strategy: String,
        /// Task name (the model serving it).
        task: String,
        /// Parameter, e.g. `conv1.weight`.
        param: String,
        /// `"effective"` or `"gate"`.
        of: String,
        /// Lower edge of the first bin.
        lo: f64,
        /// Upper edge of the last bin.
        hi: f64,
        /// Counts of equal-width bins over [lo, hi].
        counts: Vec<u32>,
    },
    /// Sequential schedule: one strategy's full test metric on one task at the end of a
    /// phase (an entry `R[phase-1][task]` of the accuracy matrix). Every task is measured,
    /// also those whose phase has not come yet.
    Phase {
        /// Steps completed (the phase's last step; 0 for phase 0).
        step: usize,
        /// Phase number, from 1 (phase `i` trains the `i`-th task of the file); 0 is the
        /// measurement before the first step (the metric at initialisation, GEM's `b_j`).
        phase: usize,
        /// The strategy.
        strategy: String,
        /// Task name.
        task: String,
        /// Test metric on the whole test split.
        metric: f64,
        /// `"mse"` or `"accuracy"`.
        metric_name: String,
    },
    /// How many of the generating mask's entries the binarized learned mask matches.
    Recovery {
        /// Steps completed.
        step: usize,
        /// Task name.
        task: String,
        /// Share of all entries recovered.
        all: f64,
        /// Share recovered among identifiable entries (on for at least one task).
        identifiable: f64,
    },
}

impl Record {
    /// Steps completed when the record was made.
    pub fn step(&self) -> usize {
        match self {
            Record::Eval { step, .. }
            | Record::Mask { step, .. }
            | Record::Binarized { step, .. }
            | Record::Histogram { step, .. }
            | Record::Train { step, .. }
            | Record::Probe { step, .. }
            | Record::ProbeSet { step, .. }
            | Record::Phase { step, .. }
            | Record::Recovery { step, .. } => *step,
        }
    }
}

impl Record {
    /// Whether every number of the record is finite (JSON cannot hold the others: they
    /// would be written as `null`).
    pub fn is_finite(&self) -> bool {
        match self {
            Record::Eval { loss, metric, .. }
            | Record::Binarized { loss, metric, .. }
            | Record::Probe { loss, metric, .. } => loss.is_finite() && metric.is_finite(),
            Record::ProbeSet { .. } => true,
            Record::Train { loss, .. } => loss.is_finite(),
            Record::Phase { metric, .. } => metric.is_finite(),
            Record::Mask { off, undecided, .. } => off.is_finite() && undecided.is_finite(),
            Record::Histogram { lo, hi, .. } => lo.is_finite() && hi.is_finite(),
            Record::Recovery {
                all, identifiable, ..
            } => all.is_finite() && identifiable.is_finite(),
        }
    }

    /// The record's kind as written in the `record` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Eval { .. } => "eval",
            Record::Train { .. } => "train",
            Record::Probe { .. } => "probe",
            Record::ProbeSet { .. } => "probe_set",
            Record::Mask { .. } => "mask",
            Record::Binarized { .. } => "binarized",
            Record::Histogram { .. } => "histogram",
            Record::Phase { .. } => "phase",
            Record::Recovery { .. } => "recovery",
        }
    }

    /// The strategy and task a record is about (`gated` for the gated-only kinds, `all` when
    /// it covers every task).
    pub fn strategy_and_task(&self) -> (String, String) {
        match self {
            Record::Eval { strategy, task, .. }
            | Record::Histogram { strategy, task, .. }
            | Record::Probe { strategy, task, .. }
            | Record::Phase { strategy, task, .. } => (strategy.clone(), task.clone()),
            Record::ProbeSet { task, .. } => ("all".into(), task.clone()),
            Record::Train { strategy, .. } => (strategy.clone(), "all".into()),
            Record::Mask { task, .. }
            | Record::Binarized { task, .. }
            | Record::Recovery { task, .. } => ("gated".into(), task.clone()),
        }
    }
}

/// The test-split metrics of `strategy` among `records`, in record order (one per task and
/// evaluation).
pub fn test_metrics<'a>(
    records: &'a [Record],
    strategy: &'a str,
) -> impl Iterator<Item = f64> + 'a {
    records.iter().filter_map(move |r| match r {
        Record::Eval {
            strategy: s,
            split,
            metric,
            ..
        } if s == strategy && split == "test" => Some(*metric),
        _ => None,
    })
}

/// Mean of [`test_metrics`] (NaN when there are none).
pub fn mean_test_metric(records: &[Record], strategy: &str) -> f64 {
    mean(test_metrics(records, strategy)).unwrap_or(f64::NAN)
}

/// The mean of `values` (`None` when there are none).
fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values
        .into_iter()
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// What a run's records say about its gated model beyond the comparison table: means over
/// tasks of the binarized model's test metric, of each parameter's share of weights switched
/// off, and of the recovered generating-mask entries (tasks with known masks).
#[derive(Debug, Clone, PartialEq)]
pub struct GatedSummary {
    /// Mean test metric of `W ⊙ 1[M > 0]`.
    pub binarized_metric: Option<f64>,
    /// Per parameter, the mean share of its weights a task switches off (0..1).
    pub off_share: Vec<(String, f64)>,
    /// Mean share of identifiable generating-mask entries recovered (0..1).
    pub recovered: Option<f64>,
}

impl GatedSummary {
    /// The summary of `records` (a run's log).
    pub fn of(records: &[Record]) -> Self {
        let mut per_param: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
        for r in records {
            if let Record::Mask { param, off, .. } = r {
                per_param.entry(param).or_default().push(*off);
            }
        }
        GatedSummary {
            binarized_metric: mean(records.iter().filter_map(|r| match r {
                Record::Binarized { metric, .. } => Some(*metric),
                _ => None,
            })),
            off_share: per_param
                .into_iter()
                .filter_map(|(p, offs)| Some((p.to_string(), mean(offs)?)))
                .collect(),
            recovered: mean(records.iter().filter_map(|r| match r {
                Record::Recovery { identifiable, .. } => Some(*identifiable),
                _ => None,
            })),
        }
    }
}

/// Encoding and decoding of `metrics.jsonl` (the run folder's writer appends the lines and
/// decides which of them are committed).
#[derive(Debug, Clone)]
pub struct MetricsLog;

impl MetricsLog {
    /// Records as lines of JSON, each ending in a newline.
    pub fn encode(records: &[Record]) -> Result<String> {
        let mut text = String::new();
        for r in records {
            let line = serde_json::to_string(r)
                .map_err(|e| Error::encode("metrics.jsonl", "a record", e))?;
            text.push_str(&line);
            text.push('\n');
        }
        Ok(text)
    }

    /// The records of `text` (the committed part of a log); `path` is for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Vec<Record>> {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| Error::json(path, format!("line {}", i + 1), e))
            })
            .collect()
    }
}
