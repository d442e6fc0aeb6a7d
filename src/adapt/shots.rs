//! The K labelled examples a new task is adapted on, batches drawn from them, and test-set
//! evaluation of any forward function.

use crate::error::Result;
use crate::rng::Rng;
use crate::task::{Batch, Objective, Split, Task};
use candle_core::{DType, Device, Tensor};

/// Examples per forward pass when evaluating.
const EVAL_CHUNK: usize = 1000;

/// K training examples of one task: the first K of a seeded shuffle of its training split.
pub struct Shots<'a> {
    task: &'a dyn Task,
    indices: Vec<usize>,
    device: Device,
    dtype: DType,
}

impl<'a> Shots<'a> {
    /// Draws `k` distinct training examples of `task` (`k` ≤ the split's size; the caller
    /// checks).
    pub fn draw(
        task: &'a dyn Task,
        k: usize,
        rng: &mut Rng,
        device: &Device,
        dtype: DType,
    ) -> Self {
        let n = task.len(Split::Train);
        let mut all: Vec<usize> = (0..n).collect();
        // Partial Fisher–Yates: the first k entries are a uniform sample without replacement.
        for i in 0..k.min(n) {
            let j = i + rng.below(n - i);
            all.swap(i, j);
        }
        all.truncate(k.min(n));
        Shots {
            task,
            indices: all,
            device: device.clone(),
            dtype,
        }
    }

    /// K.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether there are no shots.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The task the shots come from.
    pub fn task(&self) -> &dyn Task {
        self.task
    }

    /// `size` shots drawn with replacement.
    pub fn batch(&self, size: usize, rng: &mut Rng) -> Result<Batch> {
        let idx: Vec<usize> = (0..size)
            .map(|_| self.indices[rng.below(self.indices.len())])
            .collect();
        self.task
            .batch(Split::Train, &idx, &self.device, self.dtype)
    }

    /// The first `limit` shots (all when K ≤ limit), in one batch.
    pub fn head(&self, limit: usize) -> Result<Batch> {
        let idx = &self.indices[..self.indices.len().min(limit)];
        self.task.batch(Split::Train, idx, &self.device, self.dtype)
    }

    /// `size` random training examples, without labels being used (for the entropy signal).
    pub fn unlabelled(&self, size: usize, rng: &mut Rng) -> Result<Tensor> {
        let n = self.task.len(Split::Train);
        let idx: Vec<usize> = (0..size).map(|_| rng.below(n)).collect();
        Ok(self
            .task
            .batch(Split::Train, &idx, &self.device, self.dtype)?
            .x)
    }
}

/// Test metric (accuracy or MSE) of `forward` on the whole test split of `task`.
pub fn test_metric(
    task: &dyn Task,
    device: &Device,
    dtype: DType,
    forward: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<f64> {
    let n = task.len(Split::Test);
    let objective: Objective = task.objective();
    let indices: Vec<usize> = (0..n).collect();
    let mut sum = 0.0;
    for chunk in indices.chunks(EVAL_CHUNK) {
        let batch = task.batch(Split::Test, chunk, device, dtype)?;
        let out = forward(&batch.x)?.detach();
        sum += objective.metric_sum(&out, &batch.y)?;
    }
    Ok(sum / n.max(1) as f64)
}
