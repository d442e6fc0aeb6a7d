//! The evaluation forward: every model that is measured on a task's split sees the same
//! rendered batches, one pass over the data.
//!
//! Why a pass of its own instead of the training forward in a loop: evaluation used to be most
//! of a run's wall time (issue 15: 21.5 s for a 2.7 s training loop). Here
//! - a task's examples are rendered once per evaluation (in parallel) and every strategy and
//!   gate view (soft and binarized) runs on that same batch;
//! - the effective parameters `W ⊙ g(M)` are computed once per evaluation, not per batch;
//! - large batches go through the engine on all threads, every model in one pass (the first
//!   convolution's im2col built once for all of them; [`crate::engine`]'s `predict_batch_many`),
//!   and the loss and metric are summed in plain Rust from the logits.
//!
//! The reference path (f64 runs, other devices) keeps candle's forward per batch.
//!
//! Also here: the probe's fixed test subset and the running sums of the training batches
//! that give the training-split curve for free.

use crate::error::Result;
use crate::gate::GateView;
use crate::learn::{Learner, Strategy, targets_of};
use crate::params::TaskId;
use crate::rng::Rng;
use crate::task::{Batch, Split, Task};
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// Examples rendered and run per evaluation batch: enough for every thread to get several
/// engine pieces.
const EVAL_CHUNK: usize = 2048;

/// Seed of the probe subsets. Fixed (not the run's seed), so runs with different seeds, and
/// the PyTorch peer with the same draw, probe the same test examples.
pub const PROBE_SEED: u64 = 0;

/// The probe's test examples of a split with `len` examples: `size` positions drawn without
/// replacement from a stream keyed by [`PROBE_SEED`] and `len`, ascending (all of them when
/// `size` is 0 or at least `len`). Tasks whose test splits have the same length (colour
/// variants of one dataset) probe the same positions.
pub fn probe_subset(len: usize, size: usize) -> Vec<usize> {
    if size == 0 || size >= len {
        return (0..len).collect();
    }
    let mut rng = Rng::stream(PROBE_SEED, "probe", len as u64);
    let mut all: Vec<usize> = (0..len).collect();
    for i in 0..size {
        let j = i + rng.below(len - i);
        all.swap(i, j);
    }
    let mut picked = all[..size].to_vec();
    picked.sort_unstable();
    picked
}

/// Running sums of the training batches per strategy and task since the last probe: the
/// probe's train split (mean batch loss and metric), with no extra forward pass.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchSums {
    /// `(strategy, task, loss × examples, summed metric, examples)`, in the order first seen.
    entries: Vec<(Strategy, TaskId, f64, f64, usize)>,
}

impl BatchSums {
    /// Adds one step's batch of `examples` on task `task`: per strategy its mean loss and
    /// summed metric.
    pub fn add(&mut self, task: TaskId, examples: usize, scored: &[(Strategy, f64, f64)]) {
        for &(s, loss, metric) in scored {
            match self.entries.iter_mut().find(|e| e.0 == s && e.1 == task) {
                Some(e) => {
                    e.2 += loss * examples as f64;
                    e.3 += metric;
                    e.4 += examples;
                }
                None => self
                    .entries
                    .push((s, task, loss * examples as f64, metric, examples)),
            }
        }
    }

    /// Means per strategy and task, in strategy order then task order, and a fresh start.
    pub fn drain(&mut self, strategies: &[Strategy]) -> Vec<(Strategy, TaskId, f64, f64, usize)> {
        let mut out: Vec<_> = std::mem::take(&mut self.entries)
            .into_iter()
            .filter(|e| e.4 > 0)
            .map(|(s, t, loss, metric, n)| (s, t, loss / n as f64, metric / n as f64, n))
            .collect();
        out.sort_by_key(|e| (strategies.iter().position(|s| *s == e.0), e.1));
        out
    }

    /// Why the sums cannot belong to a run with these strategies and task count, if so.
    pub fn check(&self, strategies: &[Strategy], tasks: usize) -> Option<String> {
        self.entries.iter().find_map(|e| {
            if !strategies.contains(&e.0) {
                Some(format!("holds strategy `{}`, not one of the run's", e.0))
            } else if e.1.index() >= tasks {
                Some(format!("holds {} (the run has {tasks} tasks)", e.1))
            } else if !(e.2.is_finite() && e.3.is_finite()) {
                Some("holds a non-finite sum".into())
            } else {
                None
            }
        })
    }
}

/// Images through the engine's evaluation forward and the seconds it took (rendering and
/// scoring excluded): the throughput `timing.json` reports.
#[derive(Debug, Default)]
pub(crate) struct ForwardClock {
    images: AtomicU64,
    nanos: AtomicU64,
}

impl ForwardClock {
    fn add(&self, images: usize, took: std::time::Duration) {
        self.images.fetch_add(images as u64, Ordering::Relaxed);
        self.nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Images and seconds so far.
    pub fn read(&self) -> (u64, f64) {
        (
            self.images.load(Ordering::Relaxed),
            self.nanos.load(Ordering::Relaxed) as f64 * 1e-9,
        )
    }
}

/// What an evaluation pass needs besides the models.
pub(crate) struct Pass<'a> {
    /// The task and its id.
    pub task: (&'a dyn Task, TaskId),
    /// Which split.
    pub split: Split,
    /// Positions in the split.
    pub indices: &'a [usize],
    /// HAT's gate scale at this step.
    pub scale: f64,
    /// Where tensors live and their dtype.
    pub device: &'a Device,
    /// The run's dtype.
    pub dtype: DType,
    /// Where the forward's time goes.
    pub clock: &'a ForwardClock,
}

/// Effective parameters of every `(learner, view)` on task `task` that the engine can run
/// (`None` for the reference path).
pub(crate) type ModelParams = Vec<Option<Vec<Vec<f32>>>>;

/// [`ModelParams`] of `models` on task `task` at gate scale `scale`.
pub(crate) fn model_params(
    models: &[(&Learner, GateView)],
    task: TaskId,
    scale: f64,
) -> Result<ModelParams> {
    Ok(models
        .iter()
        .map(|(l, view)| {
            l.has_engine()
                .then(|| l.eval_params(task, scale, *view))
                .transpose()
        })
        .collect::<candle_core::Result<Vec<_>>>()?)
}

/// Mean loss and metric of each `(learner, view)` on the pass's examples, in one pass over
/// the data (each batch rendered once for all of them). `given`: parameters computed earlier
/// (the step-0 probe, measured after the first steps so they start at once); else they are
/// computed here, once for the whole pass.
pub(crate) fn measure_all(
    pass: &Pass,
    models: &[(&Learner, GateView)],
    given: Option<&ModelParams>,
) -> Result<Vec<(f64, f64)>> {
    let (task, t) = pass.task;
    let objective = task.objective();
    let computed;
    let params = match given {
        Some(p) => p,
        None => {
            computed = model_params(models, t, pass.scale)?;
            &computed
        }
    };
    let mut sums = vec![(0.0f64, 0.0f64); models.len()];
    for chunk in pass.indices.chunks(EVAL_CHUNK) {
        let batch = render(task, pass.split, chunk, pass.device, pass.dtype)?;
        let (xs, xl) = batch.x.storage_and_layout();
        let (ys, yl) = batch.y.storage_and_layout();
        // Every model the engine runs, in one pass over the batch (all learners of a run
        // share one model, so any of their engines runs any of their parameters).
        let on_engine: Vec<usize> = (0..models.len()).filter(|&k| params[k].is_some()).collect();
        let mut engine_out: Vec<Option<Vec<f32>>> = vec![None; models.len()];
        if let (
            Some(&k0),
            candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)),
            Some((a, b)),
        ) = (on_engine.first(), &*xs, xl.contiguous_offsets())
        {
            let sets: Vec<&[Vec<f32>]> = on_engine
                .iter()
                .filter_map(|&k| params[k].as_deref())
                .collect();
            let started = std::time::Instant::now();
            if let Some(outs) = models[k0].0.predict_batch(&sets, &v[a..b]) {
                pass.clock.add(chunk.len() * sets.len(), started.elapsed());
                for (&k, out) in on_engine.iter().zip(outs) {
                    engine_out[k] = Some(out);
                }
            }
        }
        for (k, (learner, view)) in models.iter().enumerate() {
            let head = learner.head(t);
            let (loss, metric) = match engine_out[k].take() {
                Some(mut out) => {
                    let outputs = out.len() / chunk.len().max(1);
                    let targets = targets_of(objective, &ys, yl)?;
                    // Task-IL: the task's head only, its labels on its own units.
                    let shifted;
                    let targets = match (head, targets) {
                        (Some(h), crate::engine::Targets::Labels(y)) => {
                            h.mask_logits(&mut out);
                            shifted = h.labels(y);
                            crate::engine::Targets::Labels(&shifted)
                        }
                        (_, targets) => targets,
                    };
                    crate::engine::score(&out, targets, outputs).map_err(candle_core::Error::msg)?
                }
                None => {
                    let out = learner.predict(t, &batch.x, pass.scale, *view)?.detach();
                    let y = match head {
                        Some(h) => h.labels_tensor(&batch.y)?,
                        None => batch.y.clone(),
                    };
                    let loss = objective
                        .loss(&out, &y)?
                        .to_dtype(DType::F64)?
                        .to_scalar::<f64>()?;
                    (loss * chunk.len() as f64, objective.metric_sum(&out, &y)?)
                }
            };
            sums[k].0 += loss;
            sums[k].1 += metric;
        }
    }
    let n = pass.indices.len().max(1) as f64;
    Ok(sums.into_iter().map(|(l, m)| (l / n, m / n)).collect())
}

/// The examples at `indices` as one batch, rendered in one piece per thread.
fn render(
    task: &dyn Task,
    split: Split,
    indices: &[usize],
    device: &Device,
    dtype: DType,
) -> Result<Batch> {
    let threads = rayon::current_num_threads().max(1);
    let piece = indices.len().div_ceil(threads).max(64);
    if indices.len() <= piece {
        return task.batch(split, indices, device, dtype);
    }
    let pieces = indices
        .par_chunks(piece)
        .map(|p| task.batch(split, p, device, dtype))
        .collect::<Result<Vec<_>>>()?;
    let xs: Vec<&Tensor> = pieces.iter().map(|b| &b.x).collect();
    let ys: Vec<&Tensor> = pieces.iter().map(|b| &b.y).collect();
    Ok(Batch {
        x: Tensor::cat(&xs, 0)?,
        y: Tensor::cat(&ys, 0)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_subset_is_fixed_distinct_and_sorted() {
        let a = probe_subset(10_000, 500);
        assert_eq!(a.len(), 500);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "ascending and distinct");
        assert!(a.iter().all(|&i| i < 10_000));
        assert_eq!(a, probe_subset(10_000, 500), "the same draw every time");
        assert_ne!(
            a,
            probe_subset(10_001, 500)[..],
            "keyed by the split's length"
        );
        // Spread over the split, not its start.
        assert!(
            *a.last().unwrap() > 9_000 && a[0] < 1_000,
            "{:?}",
            (a[0], a[499])
        );
        assert_eq!(probe_subset(30, 0), (0..30).collect::<Vec<_>>());
        assert_eq!(probe_subset(30, 40), (0..30).collect::<Vec<_>>());
    }

    #[test]
    fn batch_sums_average_per_strategy_and_task() {
        let mut s = BatchSums::default();
        let (g, sh) = (Strategy::Gated, Strategy::Shared);
        s.add(TaskId(1), 4, &[(g, 1.0, 2.0), (sh, 3.0, 4.0)]);
        s.add(TaskId(0), 4, &[(g, 0.5, 1.0), (sh, 0.5, 0.0)]);
        s.add(TaskId(1), 4, &[(g, 2.0, 4.0), (sh, 1.0, 0.0)]);
        let out = s.drain(&[g, sh]);
        assert_eq!(
            out,
            vec![
                (g, TaskId(0), 0.5, 0.25, 4),
                (g, TaskId(1), 1.5, 0.75, 8),
                (sh, TaskId(0), 0.5, 0.0, 4),
                (sh, TaskId(1), 2.0, 0.5, 8)
            ]
        );
        assert!(s.drain(&[g, sh]).is_empty());
    }
}
