//! [`ParamStore`]: every tensor of one strategy, once. Both training backends work on it: the
//! fast engine reads and updates its `f32` buffers in place, the candle reference builds its
//! graph from it for each step and writes the update back, and everything else (evaluation,
//! checkpoints, export) reads it. Tensors are addressed by position here and named by
//! [`super::ParamKey`] wherever they leave the store.

use super::Consolidation;
use crate::optim::Slot;

/// A gated task's masks with their optimizer state.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMasks<T> {
    /// One mask per parameter, in the network's parameter order.
    pub values: Vec<Vec<T>>,
    /// One optimizer slot per mask.
    pub slots: Vec<Slot<T>>,
}

/// The weights of one strategy's models (one, or one per task for `separate`), the gated
/// tasks' masks, the layers' per-task state and all optimizer state, as flat buffers in the
/// network's parameter order.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamStore<T> {
    /// Per model, per parameter (weight, bias, weight, …).
    pub models: Vec<Vec<Vec<T>>>,
    /// Per model, per parameter.
    pub w_slots: Vec<Vec<Slot<T>>>,
    /// Per task, once it has masks (gated only).
    pub masks: Vec<Option<TaskMasks<T>>>,
    /// Per state set (a task when gated, else a model), per state tensor of the layers.
    pub states: Vec<Vec<Vec<T>>>,
    /// The penalty against forgetting of `ewc`, `online-ewc` and `si` (their one model's).
    pub consolidation: Option<Consolidation<T>>,
}

impl<T> ParamStore<T> {
    /// A store of `models` with fresh optimizer state, no masks yet for `tasks` tasks, and the
    /// layers' starting state per set.
    pub fn new(models: Vec<Vec<Vec<T>>>, states: Vec<Vec<Vec<T>>>, tasks: usize) -> Self {
        let w_slots = models
            .iter()
            .map(|m| m.iter().map(|_| Slot::default()).collect())
            .collect();
        ParamStore {
            models,
            w_slots,
            masks: (0..tasks).map(|_| None).collect(),
            states,
            consolidation: None,
        }
    }
}
