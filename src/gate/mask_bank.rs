//! The per-task masks of a gated network, created the first time a task is picked.
//!
//! A task's masks are drawn from a random stream keyed by (seed, task index), so they are the
//! same whenever the task is first picked: runs are reproducible and resumable without saving
//! any generator state for masks.

use crate::params::TaskId;
use crate::rng::Rng;
use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::GateMode;

/// Masks start i.i.d. `N(mean, std²)`. The paper uses N(0, 1), which halves every gated
/// layer's signal at init (σ(0) = 0.5); gatekit's default N(2, 1) starts gates near 0.88.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MaskInit {
    /// Mean of the initial mask entries.
    pub mean: f64,
    /// Standard deviation of the initial mask entries.
    pub std: f64,
}

/// Share of a mask's entries that are switched off, and still undecided.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MaskStats {
    /// Share of entries with `M < 0` (off after binarization).
    pub off: f64,
    /// Share of entries with gate value in (0.1, 0.9).
    pub undecided: f64,
}

/// One mask per gated parameter, per task.
#[derive(Debug, Clone)]
pub struct MaskBank {
    names: Vec<String>,
    shapes: Vec<Shape>,
    init: MaskInit,
    seed: u64,
    dtype: DType,
    device: Device,
    masks: BTreeMap<TaskId, Vec<Var>>,
}

impl MaskBank {
    /// An empty bank for parameters with these names and shapes.
    pub fn new(
        params: &[(String, Shape)],
        init: MaskInit,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Self {
        MaskBank {
            names: params.iter().map(|(n, _)| n.clone()).collect(),
            shapes: params.iter().map(|(_, s)| s.clone()).collect(),
            init,
            seed,
            dtype,
            device: device.clone(),
            masks: BTreeMap::new(),
        }
    }

    /// Task `task`'s masks, created on first use.
    pub fn ensure(&mut self, task: TaskId) -> Result<&[Var]> {
        if !self.masks.contains_key(&task) {
            let mut rng = Rng::stream(self.seed, "mask", task.index() as u64);
            let mut vars = Vec::with_capacity(self.shapes.len());
            for shape in &self.shapes {
                let values: Vec<f64> = (0..shape.elem_count())
                    .map(|_| self.init.mean + self.init.std * rng.normal())
                    .collect();
                let t =
                    Tensor::from_vec(values, shape.clone(), &self.device)?.to_dtype(self.dtype)?;
                vars.push(Var::from_tensor(&t)?);
            }
            self.masks.insert(task, vars);
        }
        Ok(&self.masks[&task])
    }

    /// Task `task`'s masks if it has been picked.
    pub fn get(&self, task: TaskId) -> Option<&[Var]> {
        self.masks.get(&task).map(|v| v.as_slice())
    }

    /// Replaces task `task`'s masks (loading a checkpoint). Shapes must match.
    pub fn insert(&mut self, task: TaskId, masks: Vec<Tensor>) -> Result<()> {
        if masks.len() != self.shapes.len() {
            candle_core::bail!("expected {} masks, got {}", self.shapes.len(), masks.len());
        }
        let mut vars = Vec::with_capacity(masks.len());
        for ((m, shape), name) in masks.iter().zip(&self.shapes).zip(&self.names) {
            if m.shape() != shape {
                candle_core::bail!(
                    "mask for {name}: shape {:?}, expected {:?}",
                    m.dims(),
                    shape.dims()
                );
            }
            vars.push(Var::from_tensor(&m.to_dtype(self.dtype)?)?);
        }
        self.masks.insert(task, vars);
        Ok(())
    }

    /// The tasks that have masks, ascending.
    pub fn tasks(&self) -> Vec<TaskId> {
        self.masks.keys().copied().collect()
    }

    /// The gated parameters' names, in network order.
    pub fn param_names(&self) -> &[String] {
        &self.names
    }

    /// Off and undecided shares per parameter for one task.
    pub fn stats(&self, task: TaskId, mode: GateMode, scale: f64) -> Result<Vec<MaskStats>> {
        let Some(masks) = self.get(task) else {
            return Ok(Vec::new());
        };
        masks
            .iter()
            .map(|m| {
                let m = m.as_tensor().detach();
                let n = m.elem_count() as f64;
                let off = m
                    .lt(0.0)?
                    .to_dtype(DType::F64)?
                    .sum_all()?
                    .to_scalar::<f64>()?
                    / n;
                // The STE gate's forward value is binary; its decisiveness is σ(M).
                let mode = if mode == GateMode::Ste {
                    GateMode::Sigmoid
                } else {
                    mode
                };
                let g = mode.gate_value(&m, scale)?;
                let mid = (g.gt(0.1)?.to_dtype(DType::F64)? * g.lt(0.9)?.to_dtype(DType::F64)?)?;
                let undecided = mid.sum_all()?.to_scalar::<f64>()? / n;
                Ok(MaskStats { off, undecided })
            })
            .collect()
    }
}
