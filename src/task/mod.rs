//! Tasks: what a task is ([`Task`]), the registry of task kinds ([`TaskKind`], filled by
//! `inventory::submit!` from each kind's file) and a task entry of a task set ([`TaskEntry`]).
//! Task-set files themselves, with their `[run]` table, are [`crate::config::TaskSet`].
//!
//! A task owns its data, its loss and its metric. Synthetic kinds (`linear`, `sinusoid`) draw
//! their data from the task set's seed, so a run folder only needs the resolved config to
//! rebuild them.

mod entry;
mod held_out;
mod image;
mod linear;
mod mnist;
mod permuted;
mod registry;
mod regression;
mod rotated;
mod sinusoid;
mod split_mnist;
pub mod tensors;

pub use entry::{MAX_NAME_LEN, NameError, TaskEntry, check_portable_name};
pub use held_out::{HeldOut, held_out, split_positions};
pub use image::{Colour, ImageTask, Resample};
pub use permuted::permutation;
pub use registry::{ParamSpec, ParamType, Params, TaskContext, TaskKind, find_kind, kinds};
pub use regression::RegressionTask;
pub use rotated::rotation_map;
pub use tensors::{Standardize, TensorsTask};

use crate::error::Result;
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

/// Which part of a task's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training examples.
    Train,
    /// Held-out examples.
    Test,
}

impl Split {
    /// 0 for train, 1 for test: the index of a split in `[train, test]` pairs.
    pub fn index(self) -> usize {
        match self {
            Split::Train => 0,
            Split::Test => 1,
        }
    }

    /// `"train"` or `"test"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// The loss a task trains with and the metric it reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Mean squared error; the metric is the MSE (lower is better).
    Regression,
    /// Cross-entropy on logits with `u32` class labels; the metric is accuracy (higher is better).
    Classification,
}

impl Objective {
    /// The metric's name in logs and tables.
    pub fn metric_name(self) -> &'static str {
        match self {
            Objective::Regression => "mse",
            Objective::Classification => "accuracy",
        }
    }

    /// Whether a larger metric is better (accuracy) or worse (MSE).
    pub fn higher_is_better(self) -> bool {
        self == Objective::Classification
    }

    /// Whether `a` is a better metric value than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Objective::Regression => a < b,
            Objective::Classification => a > b,
        }
    }

    /// The positions of the best values (every one of them on a tie; NaN never counts), so a
    /// table stars each tied cell instead of the first.
    pub fn best(self, values: &[f64]) -> Vec<usize> {
        let mut best: Option<usize> = None;
        for (i, v) in values.iter().enumerate() {
            if v.is_nan() {
                continue;
            }
            if best.is_none_or(|b| self.better(*v, values[b])) {
                best = Some(i);
            }
        }
        let Some(b) = best else {
            return Vec::new();
        };
        (0..values.len())
            .filter(|&i| values[i] == values[b])
            .collect()
    }

    /// The objective whose [`Objective::metric_name`] is `name` (`accuracy` or `mse`).
    pub fn from_metric_name(name: &str) -> Option<Objective> {
        [Objective::Regression, Objective::Classification]
            .into_iter()
            .find(|o| o.metric_name() == name)
    }

    /// The training loss of `out` against `y`.
    pub fn loss(self, out: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Objective::Regression => candle_nn::loss::mse(out, y),
            Objective::Classification => candle_nn::loss::cross_entropy(out, y),
        }
    }

    /// Sum of the per-example metric over a batch (squared error summed over outputs and
    /// divided by the output count, or the number of correct predictions), so batches can be
    /// accumulated.
    pub fn metric_sum(self, out: &Tensor, y: &Tensor) -> candle_core::Result<f64> {
        match self {
            Objective::Regression => {
                let outputs = out.dim(1)? as f64;
                let se = (out - y)?
                    .sqr()?
                    .to_dtype(DType::F64)?
                    .sum_all()?
                    .to_scalar::<f64>()?;
                Ok(se / outputs)
            }
            Objective::Classification => {
                let pred = out.argmax(1)?;
                let hits = pred
                    .eq(y)?
                    .to_dtype(DType::F64)?
                    .sum_all()?
                    .to_scalar::<f64>()?;
                Ok(hits)
            }
        }
    }
}

/// A batch of examples: inputs `[n, ..input_shape]` and targets (`[n, outputs]` floats for
/// regression, `[n]` `u32` labels for classification).
#[derive(Debug, Clone)]
pub struct Batch {
    /// Inputs.
    pub x: Tensor,
    /// Targets.
    pub y: Tensor,
}

/// The ground-truth binary gates of a task generated by masking a shared linear map: what a
/// gated single linear layer should recover (the paper's noise-free claim).
#[derive(Debug, Clone, PartialEq)]
pub struct TrueMask {
    /// `[outputs * inputs]`, row-major like the weight.
    pub weight: Vec<bool>,
    /// `[outputs]`.
    pub bias: Vec<bool>,
    /// The shared A (`[outputs * inputs]`) followed by the shared b (`[outputs]`): a mask entry
    /// over a near-zero value hardly changes the function, so it is not identifiable.
    pub values: Vec<f64>,
}

impl TrueMask {
    /// Smallest |A| (or |b|) for which an entry counts as identifiable: below it the entry
    /// changes the test MSE by less than ~1e-7, under the noise-free claim's 1e-8 target only
    /// when the model errs on it for every input.
    pub const IDENTIFIABLE_MIN: f64 = 1e-3;
}

/// One task: its data, loss and metric.
pub trait Task: Send + Sync {
    /// The task's name in the task set.
    fn name(&self) -> &str;
    /// Shape of one input example (no batch axis).
    fn input_shape(&self) -> &[usize];
    /// Width of the model's output for this task (targets or classes).
    fn outputs(&self) -> usize;
    /// Loss and metric.
    fn objective(&self) -> Objective;
    /// The class labels this task uses, when only some of `0..outputs()` (split MNIST's
    /// digits); `None`: every one. Task-IL gives a task its own output head from this.
    fn classes(&self) -> Option<Vec<u32>> {
        None
    }
    /// Number of examples in a split.
    fn len(&self, split: Split) -> usize;
    /// The examples at `indices` of a split, as tensors of `dtype` on `device`.
    fn batch(
        &self,
        split: Split,
        indices: &[usize],
        device: &Device,
        dtype: DType,
    ) -> Result<Batch>;
    /// The generating binary masks, for kinds that have them.
    fn true_mask(&self) -> Option<TrueMask> {
        None
    }
    /// Parameters the task derived from its data that the run must store so that re-opening
    /// it (eval, export, adapt, resume) rebuilds the same task, e.g. the standardisation
    /// statistics of the `tensors` kind. [`TaskSet::pin`] writes them into the task's
    /// parameters before `gtk train` saves `config.toml`.
    fn pinned_params(&self) -> Option<toml::Table> {
        None
    }
    /// Fingerprints of the files the task reads its data from (none for kinds that generate
    /// their data from the seed). `gtk train` records them in the run, and resume, eval,
    /// export and adapt refuse a run whose files now hold other bytes: same-shape data passes
    /// every other check, and would silently mix two data sets in one run.
    fn data_fingerprints(&self) -> Result<Vec<crate::data::DataFingerprint>> {
        Ok(Vec::new())
    }
    /// With a validation split (`val_fraction`): the same task whose `Test` split is the
    /// held-out training examples, for evaluating on them; none without one.
    fn validation(&self) -> Option<Box<dyn Task>> {
        None
    }
}

/// Test MSE (averaged over outputs) of predicting the training targets' mean: the bar every
/// regression model must clear. Batches of 4096 examples, so a task over a file larger than
/// memory never materialises a split.
pub fn mean_predictor_mse(task: &dyn Task) -> Result<f64> {
    const CHUNK: usize = 4096;
    let device = Device::Cpu;
    let targets = |split, from: usize| -> Result<Tensor> {
        let idx: Vec<usize> = (from..task.len(split).min(from + CHUNK)).collect();
        Ok(task.batch(split, &idx, &device, DType::F64)?.y)
    };
    let (n_train, n_test) = (task.len(Split::Train), task.len(Split::Test));
    let mut sum: Option<Tensor> = None;
    for from in (0..n_train).step_by(CHUNK) {
        let s = targets(Split::Train, from)?.sum_keepdim(0)?;
        sum = Some(match sum {
            Some(acc) => (acc + s)?,
            None => s,
        });
    }
    let Some(sum) = sum else {
        return Ok(f64::NAN);
    };
    let mean = (sum / n_train as f64)?;
    let mut se = 0.0;
    let mut count = 0usize;
    for from in (0..n_test).step_by(CHUNK) {
        let y = targets(Split::Test, from)?;
        count += y.elem_count();
        se += y
            .broadcast_sub(&mean)?
            .sqr()?
            .sum_all()?
            .to_scalar::<f64>()?;
    }
    Ok(se / count.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::Objective;

    #[test]
    fn best_marks_every_tie_and_skips_nan() {
        let acc = Objective::Classification;
        assert_eq!(acc.best(&[0.5, 0.9, f64::NAN, 0.9]), vec![1, 3]);
        let mse = Objective::Regression;
        assert_eq!(mse.best(&[f64::NAN, 0.2, 0.1]), vec![2]);
        assert!(mse.best(&[f64::NAN]).is_empty());
        assert_eq!(Objective::from_metric_name("accuracy"), Some(acc));
        assert_eq!(Objective::from_metric_name("mse"), Some(mse));
        assert_eq!(Objective::from_metric_name("loss"), None);
    }
}
