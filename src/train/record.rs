//! What a run logs to `metrics.jsonl`: one JSON object per line, tagged by `record`.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One line of `metrics.jsonl`.
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
            | Record::Recovery { step, .. } => *step,
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
    let (sum, n) = test_metrics(records, strategy).fold((0.0, 0usize), |(s, n), m| (s + m, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// Appends records to a run's `metrics.jsonl`.
#[derive(Debug, Clone)]
pub struct MetricsLog {
    path: PathBuf,
}

impl MetricsLog {
    /// The log at `path`.
    pub fn new(path: PathBuf) -> Self {
        MetricsLog { path }
    }

    /// Appends records, one line each.
    pub fn append(&self, records: &[Record]) -> Result<()> {
        let mut text = String::new();
        for r in records {
            text.push_str(&serde_json::to_string(r).map_err(|e| Error::io(&self.path, e.into()))?);
            text.push('\n');
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        f.write_all(text.as_bytes())
            .map_err(|e| Error::io(&self.path, e))
    }

    /// All records in the file.
    pub fn read(path: &Path) -> Result<Vec<Record>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(path, e)),
        };
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| Error::Run {
                    path: path.into(),
                    message: format!("line {}: {e}", i + 1),
                })
            })
            .collect()
    }

    /// Drops records made after `step` (a resumed run redoes them), atomically. Kept lines are
    /// copied byte for byte, so a resumed run's log equals an uninterrupted run's.
    pub fn truncate_after(&self, step: usize) -> Result<()> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        let mut kept = String::with_capacity(text.len());
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let record: Record = serde_json::from_str(line).map_err(|e| Error::Run {
                path: self.path.clone(),
                message: format!("line {}: {e}", i + 1),
            })?;
            if record.step() <= step {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        crate::atomic::write_atomic(&self.path, kept.as_bytes())
    }
}
