//! What each stored mask does to the output scale, on its own task's data and on the others':
//! the numbers that explain which mask an entropy gradient prefers.
//!
//! The one-shot pick takes the mask i with the most negative `∂H/∂α_i` at α = 1/T. That
//! gradient is large for a mask that raises the logit scale (and so lowers the entropy) on any
//! input, not only on its own task's: a denser mask, or one trained together with `W`, can win
//! every vote. Per mask this measures its density (share of entries with `M > 0`), its mean
//! gate, and its "output gain": the mean logit norm and mean max-softmax under that mask on its
//! own task's test data and on other tasks' test data.

use crate::error::Result;
use crate::gate::{GateMode, GateView};
use crate::learn::Learner;
use crate::params::TaskId;
use crate::task::{Split, Task};
use candle_core::{D, DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

/// Other tasks whose data each mask is measured on (the next ones in run order, cyclically).
pub const OTHER_TASKS: usize = 9;

/// One stored mask's density and output gain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskProfile {
    /// The mask's task.
    pub task: String,
    /// Share of mask entries with `M > 0` (kept by the binarized gate).
    pub density: f64,
    /// Mean gate value (σ(M) for the sigmoid gate; the density for `ste`).
    pub mean_gate: f64,
    /// Mean L2 norm of the logits on the task's own test data.
    pub own_logit_norm: f64,
    /// Mean max-softmax on the task's own test data.
    pub own_max_softmax: f64,
    /// Mean L2 norm of the logits on other tasks' test data.
    pub other_logit_norm: f64,
    /// Mean max-softmax on other tasks' test data.
    pub other_max_softmax: f64,
}

/// Profiles every stored mask on `examples` test examples of its own task and of up to
/// [`OTHER_TASKS`] others (inputs in `dtype`); `tasks[k]` is stored task `stored[k]`, whose
/// masks are `masks[k]`.
#[allow(clippy::too_many_arguments)]
pub fn profile_masks(
    learner: &Learner,
    tasks: &[&dyn Task],
    stored: &[TaskId],
    masks: &[&[Var]],
    mode: GateMode,
    scale: f64,
    view: GateView,
    (examples, dtype): (usize, DType),
) -> Result<Vec<MaskProfile>> {
    let inputs: Vec<Tensor> = tasks
        .iter()
        .map(|t| {
            let n = examples.min(t.len(Split::Test));
            let idx: Vec<usize> = (0..n).collect();
            Ok(t.batch(Split::Test, &idx, &Device::Cpu, dtype)?.x)
        })
        .collect::<Result<_>>()?;
    let t = stored.len();
    let others = OTHER_TASKS.min(t.saturating_sub(1));
    let mut profiles = Vec::with_capacity(t);
    for (k, &task) in stored.iter().enumerate() {
        let (density, mean_gate) = density(masks[k], mode, scale, view)?;
        let gain = |x: &Tensor| -> Result<(f64, f64)> {
            let out = learner
                .predict(task, x, scale, view)?
                .to_dtype(DType::F64)?;
            let norm = out.sqr()?.sum(D::Minus1)?.sqrt()?.mean_all()?;
            let top = candle_nn::ops::softmax(&out, D::Minus1)?
                .max(D::Minus1)?
                .mean_all()?;
            Ok((norm.to_scalar::<f64>()?, top.to_scalar::<f64>()?))
        };
        let (own_norm, own_top) = gain(&inputs[k])?;
        let (mut norm, mut top) = (0.0, 0.0);
        for o in 1..=others {
            let (n, m) = gain(&inputs[(k + o) % t])?;
            norm += n / others as f64;
            top += m / others as f64;
        }
        profiles.push(MaskProfile {
            task: tasks[k].name().to_string(),
            density,
            mean_gate,
            own_logit_norm: own_norm,
            own_max_softmax: own_top,
            other_logit_norm: norm,
            other_max_softmax: top,
        });
    }
    Ok(profiles)
}

/// Share of entries kept (`M > 0`) and mean gate value over all of one task's masks.
fn density(masks: &[Var], mode: GateMode, scale: f64, view: GateView) -> Result<(f64, f64)> {
    let (mut kept, mut gate, mut n) = (0.0, 0.0, 0.0);
    for m in masks {
        let m = m.as_tensor().detach();
        n += m.elem_count() as f64;
        kept += m
            .gt(0.0)?
            .to_dtype(DType::F64)?
            .sum_all()?
            .to_scalar::<f64>()?;
        let g = match view {
            GateView::Trained => mode.gate_value(&m, scale)?,
            GateView::Binary | GateView::BinaryRescaled => m.gt(0.0)?.to_dtype(m.dtype())?,
        };
        gate += g.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
    }
    Ok((kept / n.max(1.0), gate / n.max(1.0)))
}
