//! Batch-norm statistics for the binarized model. A task's running statistics are gathered in
//! training, under the soft gates `W ⊙ σ(M)`; the model that ships is `W ⊙ 1[M > 0]`, which
//! scales every layer differently, so its batch norms normalize with the wrong mean and
//! variance (LeNet-5 + batch norm on colored MNIST: 0.951 soft, 0.79 ± 0.24 binarized over 5
//! seeds before this). Every place that measures, exports or serves the binarized model of a
//! model with layer state re-estimates each task's statistics under its binarized mask from
//! that task's training data ([`Learner::estimate_state`]), on a copy: the run is never
//! written. A model without layer state is left exactly as it was.

use super::Run;
use crate::error::Result;
use crate::gate::GateView;
use crate::learn::Learner;
use crate::params::TaskId;
use crate::rng::Rng;
use crate::task::{Split, Task};
use candle_core::{DType, Device, Tensor};

/// Batches of the run's batch size that re-estimate a task's batch-norm statistics unless
/// told otherwise (`--bn-batches`): 20 × 32 = 640 images for the colors runs, enough that
/// the estimate's noise is far below the gap it closes, and a fraction of a second per task.
pub const DEFAULT_BN_BATCHES: usize = 20;

/// How the binarized model's batch-norm statistics are re-estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BnRecalibration {
    /// Batches of the run's batch size drawn from each task's training split; 0 keeps the
    /// statistics gathered in training (the soft gates').
    pub batches: usize,
}

impl Default for BnRecalibration {
    fn default() -> Self {
        BnRecalibration {
            batches: DEFAULT_BN_BATCHES,
        }
    }
}

/// The inputs of `batches` batches of `batch_size` training examples of `task`, drawn without
/// replacement (with replacement only once the split runs out) from a stream keyed by the run's
/// `seed` and `index` (the task's position), so an export, an evaluation and a server of the
/// same run draw the same examples.
pub fn recalibration_inputs(
    task: &dyn Task,
    seed: u64,
    index: usize,
    (batches, batch_size): (usize, usize),
    device: &Device,
    dtype: DType,
) -> Result<Vec<Tensor>> {
    let len = task.len(Split::Train);
    if len == 0 || batches == 0 || batch_size == 0 {
        return Ok(Vec::new());
    }
    let mut rng = Rng::stream(seed, "bn-recalibrate", index as u64);
    let mut order: Vec<usize> = (0..len).collect();
    let mut drawn = Vec::with_capacity(batches * batch_size);
    while drawn.len() < batches * batch_size {
        // A partial Fisher–Yates shuffle per pass over the split.
        let want = (batches * batch_size - drawn.len()).min(len);
        for i in 0..want {
            let j = i + rng.below(len - i);
            order.swap(i, j);
        }
        drawn.extend_from_slice(&order[..want]);
    }
    drawn
        .chunks(batch_size)
        .map(|chunk| Ok(task.batch(Split::Train, chunk, device, dtype)?.x))
        .collect()
}

impl Run {
    /// A copy of `learner` whose `tasks` have the layer state of their model under `view`
    /// re-estimated from their training data ([`Learner::estimate_state`]); `None` when the
    /// model keeps no layer state, `view` is the trained gate, or `recal.batches` is 0 (then
    /// `learner` itself is the model to measure).
    pub fn recalibrated(
        &self,
        learner: &Learner,
        tasks: &[TaskId],
        view: GateView,
        recal: BnRecalibration,
    ) -> Result<Option<Learner>> {
        if !learner.has_layer_state()
            || view == GateView::Trained
            || recal.batches == 0
            || tasks.is_empty()
        {
            return Ok(None);
        }
        let mut copy = learner.clone();
        let scale = self.hat_scale(self.step);
        for &t in tasks {
            let inputs = recalibration_inputs(
                self.tasks[t.index()].as_ref(),
                self.set.run.seed,
                t.index(),
                (recal.batches, self.set.run.schedule.batch_size),
                &self.device,
                self.dtype(),
            )?;
            let state = learner.estimate_state(t, scale, view, &inputs)?;
            copy.set_layer_state(t, &state)?;
        }
        Ok(Some(copy))
    }
}
