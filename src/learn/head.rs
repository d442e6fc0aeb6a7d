//! Output heads of Task-IL ([`Scenario::Task`]): every task answers with its own units of
//! the model's last layer, and the softmax runs over them only, as van de Ven & Tolias's
//! "multi-headed" Task-IL does. Two layouts:
//! - the tasks' classes are disjoint (split MNIST: {0, 1}, {2, 3}, …) and the model has one
//!   unit per class: task `t`'s head is the units of its own classes, labels unchanged;
//! - the tasks share their labels (permuted MNIST: every task is 0–9) and the model has
//!   `T × C` outputs for `C` classes: task `t` owns units `tC..tC + C`, and its label `y` is
//!   unit `tC + y`.
//!
//! A head is applied to the logits before the loss and the metric: the units outside it are
//! set to [`OFF`], so the softmax gives them probability 0 and their gradient is exactly 0.
//! On top of that the learner keeps the weights of the other tasks' units (and their optimizer
//! state) unchanged through a step ([`HeadRows`]): with momentum or Adam a zero gradient would
//! still move them, and a head is then what it is in a network with one output layer per task
//! (PyTorch never updates a head that is not in the graph): changed only by its own task.

use crate::config::Scenario;
use crate::params::{ModelId, ParamStore};
use crate::task::Task;
use candle_core::{Result, Tensor};

/// The logit given to the units outside a head: far below any logit, yet finite (so `0 ×`
/// it in a gradient stays 0, never NaN).
pub const OFF: f32 = -1e30;

/// One task's output head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Per output unit, whether it belongs to the head.
    pub active: Vec<bool>,
    /// Added to the task's labels to name their units (`tC` in the `T × C` layout, else 0).
    pub offset: u32,
}

impl Head {
    /// Sets the logits outside the head to [`OFF`] in `out` (`[n, outputs]`, row-major).
    pub fn mask_logits(&self, out: &mut [f32]) {
        let width = self.active.len().max(1);
        for row in out.chunks_exact_mut(width) {
            for (v, &on) in row.iter_mut().zip(&self.active) {
                if !on {
                    *v = OFF;
                }
            }
        }
    }

    /// The task's labels as units of the model's output.
    pub fn labels(&self, y: &[u32]) -> Vec<u32> {
        y.iter().map(|&l| l + self.offset).collect()
    }

    /// The head's output units, in order: what a task's exported model answers with (its
    /// ONNX output is these units alone, so an argmax over it needs no task id).
    pub fn units(&self) -> Vec<usize> {
        (0..self.active.len()).filter(|&u| self.active[u]).collect()
    }

    /// The task's labels as positions in [`Head::units`]: the labels of a model whose output
    /// is the head alone. `None` for a label whose unit is outside the head.
    pub fn local_labels(&self, y: &[u32]) -> Option<Vec<u32>> {
        let mut position = vec![u32::MAX; self.active.len()];
        for (i, u) in self.units().into_iter().enumerate() {
            position[u] = i as u32;
        }
        (self.labels(y).into_iter())
            .map(|unit| {
                position
                    .get(unit as usize)
                    .copied()
                    .filter(|&p| p != u32::MAX)
            })
            .collect()
    }

    /// [`Head::mask_logits`] on a tensor `[n, outputs]` (kept in the graph: the units off get
    /// gradient 0).
    pub fn mask_tensor(&self, out: &Tensor) -> Result<Tensor> {
        let keep: Vec<f32> = self
            .active
            .iter()
            .map(|&on| f32::from(u8::from(on)))
            .collect();
        let keep =
            Tensor::from_vec(keep, self.active.len(), out.device())?.to_dtype(out.dtype())?;
        let off = ((keep.ones_like()? - &keep)? * f64::from(OFF))?;
        out.broadcast_mul(&keep)?.broadcast_add(&off)
    }

    /// [`Head::labels`] on a `u32` tensor.
    pub fn labels_tensor(&self, y: &Tensor) -> Result<Tensor> {
        if self.offset == 0 {
            return Ok(y.clone());
        }
        let shifted = self.labels(&y.to_vec1::<u32>()?);
        Tensor::from_vec(shifted, y.dims1()?, y.device())
    }
}

/// Why a task set cannot have Task-IL heads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "scenario = \"task\": {0} (each task needs output units of its own: disjoint classes on one unit per class, or tasks × classes outputs)"
)]
pub struct HeadError(pub String);

/// The heads of `tasks` under `scenario` for a model with `outputs` output units: one per
/// task in Task-IL, none in the other scenarios (one head shared by every task) or without a
/// scenario.
pub fn heads_for(
    scenario: Option<Scenario>,
    tasks: &[Box<dyn Task>],
    outputs: usize,
) -> std::result::Result<Option<Vec<Head>>, HeadError> {
    if scenario != Some(Scenario::Task) || tasks.is_empty() {
        return Ok(None);
    }
    let per_task = tasks[0].outputs();
    let labels: Vec<Vec<u32>> = (tasks.iter())
        .map(|t| {
            t.classes()
                .unwrap_or_else(|| (0..t.outputs() as u32).collect())
        })
        .collect();
    let count = tasks.len();
    if outputs == count * per_task && count > 1 {
        let heads = labels.iter().enumerate().map(|(t, l)| {
            let offset = (t * per_task) as u32;
            let mut active = vec![false; outputs];
            for &y in l {
                active[(offset + y) as usize] = true;
            }
            Head { active, offset }
        });
        return Ok(Some(heads.collect()));
    }
    if outputs != per_task {
        return Err(HeadError(format!(
            "the model has {outputs} outputs; the tasks need {per_task} (disjoint classes) or {} ({count} tasks × {per_task})",
            count * per_task
        )));
    }
    let mut owner: Vec<Option<usize>> = vec![None; outputs];
    for (t, l) in labels.iter().enumerate() {
        for &y in l {
            if let Some(o) = owner[y as usize] {
                return Err(HeadError(format!(
                    "tasks `{}` and `{}` share class {y} on a model of {outputs} outputs; give the model {} outputs ({count} tasks × {per_task}) for one block per task",
                    tasks[o].name(),
                    tasks[t].name(),
                    count * per_task
                )));
            }
            owner[y as usize] = Some(t);
        }
    }
    Ok(Some(
        (0..count)
            .map(|t| Head {
                active: owner.iter().map(|&o| o == Some(t)).collect(),
                offset: 0,
            })
            .collect(),
    ))
}

/// One head parameter's kept rows: its index, the kept values, first and second moments
/// (empty when the slot had none yet).
type KeptRows<T> = (usize, Vec<T>, Vec<T>, Vec<T>);

/// The rows of the output layer outside a head, with their optimizer state, kept through a
/// step and put back after it.
pub(crate) struct HeadRows<T> {
    kept: Vec<KeptRows<T>>,
}

impl<T: candle_core::WithDType> HeadRows<T> {
    /// Keeps the rows outside `head` of the parameters `params` (the output layer's, whose
    /// first dimension is the output units) of model `model`.
    pub fn keep(store: &ParamStore<T>, model: ModelId, params: &[usize], head: &Head) -> Self {
        let model = model.index();
        let pick = |v: &[T]| -> Vec<T> {
            if v.is_empty() {
                return Vec::new();
            }
            let row = v.len() / head.active.len().max(1);
            (v.chunks_exact(row.max(1)).zip(&head.active))
                .filter(|(_, on)| !**on)
                .flat_map(|(r, _)| r.iter().copied())
                .collect()
        };
        let kept = params
            .iter()
            .map(|&p| {
                let slot = &store.w_slots[model][p];
                (
                    p,
                    pick(&store.models[model][p]),
                    pick(&slot.first),
                    pick(&slot.second),
                )
            })
            .collect();
        HeadRows { kept }
    }

    /// Writes the kept rows back (a moment that had no buffer before the step gets zeros,
    /// its value before it existed).
    pub fn restore(self, store: &mut ParamStore<T>, model: ModelId, head: &Head) {
        let model = model.index();
        let put = |v: &mut [T], kept: &[T]| {
            if v.is_empty() {
                return;
            }
            let row = (v.len() / head.active.len().max(1)).max(1);
            let mut src = kept.chunks_exact(row);
            for (r, &on) in v.chunks_exact_mut(row).zip(&head.active) {
                if on {
                    continue;
                }
                match src.next() {
                    Some(k) => r.copy_from_slice(k),
                    None => r.fill(T::from_f64(0.0)),
                }
            }
        };
        for (p, values, first, second) in self.kept {
            put(&mut store.models[model][p], &values);
            let slot = &mut store.w_slots[model][p];
            put(&mut slot.first, &first);
            put(&mut slot.second, &second);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_labels_are_positions_within_the_head() {
        // Disjoint classes on one unit per class: task {2, 3} of ten units.
        let mut active = vec![false; 10];
        active[2] = true;
        active[3] = true;
        let head = Head { active, offset: 0 };
        assert_eq!(head.units(), vec![2, 3]);
        assert_eq!(head.local_labels(&[3, 2, 3]), Some(vec![1, 0, 1]));
        assert_eq!(head.local_labels(&[4]), None);
        // Tasks × classes: task 1 of three with two classes owns units 2..4, label y is 2 + y.
        let head = Head {
            active: (0..6).map(|u| (2..4).contains(&u)).collect(),
            offset: 2,
        };
        assert_eq!(head.local_labels(&[0, 1]), Some(vec![0, 1]));
        assert_eq!(head.local_labels(&[2]), None);
    }
}
