//! What a commit holds besides the tensors (`state` in `state.json`), and the read-only view of
//! a committed run that the trainer, the checkpoint reader and `gtk report` share.

use super::evaluation::BatchSums;
use super::record::{MetricsLog, Record};
use super::sampler::TaskSampler;
use crate::data::{DataChange, DataFingerprint};
use crate::error::Result;
use crate::learn::Strategy;
use crate::run_folder::Snapshot;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The trainer's part of a commit (`state` in `state.json`): what a resumed run needs besides
/// the tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunState {
    pub(crate) sampler: TaskSampler,
    pub(crate) strategies: Vec<Strategy>,
    /// Training losses since the last `log_every` boundary, so a resumed run logs the same
    /// means as an uninterrupted one.
    #[serde(default)]
    pub(crate) train_loss: TrainLoss,
    /// The training batches since the last probe (its train split), so a resumed run logs
    /// the same probes as an uninterrupted one.
    #[serde(default)]
    pub(crate) probe_train: BatchSums,
    /// The `joint` strategy's own random schedule in a sequential run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) joint_sampler: Option<TaskSampler>,
    /// Fingerprints of the data files the run reads, recorded when it was created (or when a
    /// resume accepted changed data), so resume and the readers can refuse other data. None
    /// for tasks that generate their data, and for runs created before they were recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) data: Vec<DataFingerprint>,
    /// Data changes a resume accepted (`--allow-changed-data`), oldest first: the run trained
    /// on the `before` data up to `step` and on the `after` data from there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) data_changes: Vec<DataChange>,
}

impl RunState {
    /// The strategies of the run, in training order.
    pub fn strategies(&self) -> &[Strategy] {
        &self.strategies
    }

    /// The data files' fingerprints the run recorded (empty for generated data and old runs).
    pub fn data(&self) -> &[DataFingerprint] {
        &self.data
    }

    /// The data changes resumes accepted, oldest first.
    pub fn data_changes(&self) -> &[DataChange] {
        &self.data_changes
    }
}

/// A run folder's committed state as the trainer stores it.
pub type RunSnapshot = Snapshot<RunState>;

/// Running sums of each strategy's batch losses between two training-loss records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrainLoss {
    pub(crate) sums: Vec<(Strategy, f64)>,
    pub(crate) count: usize,
}

impl TrainLoss {
    pub(crate) fn add(&mut self, losses: &[(Strategy, f64)]) {
        if self.sums.len() != losses.len() {
            self.sums = losses.iter().map(|(s, _)| (*s, 0.0)).collect();
        }
        for (sum, (_, l)) in self.sums.iter_mut().zip(losses) {
            sum.1 += l;
        }
        self.count += 1;
    }

    pub(crate) fn drain(&mut self, step: usize) -> Vec<Record> {
        let n = self.count.max(1) as f64;
        let out = self
            .sums
            .iter()
            .map(|(s, sum)| Record::Train {
                step,
                strategy: s.to_string(),
                loss: sum / n,
            })
            .collect();
        *self = TrainLoss::default();
        out
    }
}

// Reading a committed log needs the verified snapshot, which knows the state's type.
impl MetricsLog {
    /// The committed records of the run folder `run_dir` (verified read, nothing written).
    pub fn read_committed(run_dir: &Path) -> Result<Vec<Record>> {
        let snapshot = RunSnapshot::open(run_dir)?;
        Self::parse(
            &snapshot.metrics,
            &run_dir.join(crate::run_folder::files::METRICS),
        )
    }
}
