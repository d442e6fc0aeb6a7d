//! The three strategies behind one interface: `gated` (shared W, one mask set per task),
//! `shared` (one plain model, task ignored) and `separate` (one plain model per task). They all
//! run the same [`Network`] code; only the gate and the parameter set differ.

use super::optim::{Optimizer, OptimizerConfig};
use crate::gate::{GateMode, GateView, MaskBank, MaskStats, TaskGate};
use crate::model::{ModelSpec, Network};
use crate::rng::Rng;
use crate::task::{Batch, Objective, Regularizer, RunConfig};
use candle_core::{Device, Result, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A training strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Conditional weights: W ⊙ g(M_t).
    Gated,
    /// One plain model for all tasks.
    Shared,
    /// One plain model per task.
    Separate,
}

impl Strategy {
    /// All three, in table order.
    pub const ALL: [Strategy; 3] = [Strategy::Gated, Strategy::Shared, Strategy::Separate];

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Gated => "gated",
            Strategy::Shared => "shared",
            Strategy::Separate => "separate",
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-step settings that change over a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepSettings {
    /// HAT's gate scale `s`.
    pub gate_scale: f64,
    /// Multiplier of W's learning rate (schedule).
    pub w_lr_factor: f64,
    /// Multiplier of the masks' learning rate (schedule).
    pub mask_lr_factor: f64,
}

/// One strategy's models, masks and optimizers.
#[derive(Debug, Clone)]
pub struct Learner {
    strategy: Strategy,
    task_names: Vec<String>,
    nets: Vec<Network>,
    masks: Option<MaskBank>,
    w_opt: Optimizer,
    mask_opt: Optimizer,
    gate: GateMode,
    regularizer: (Regularizer, f64),
}

impl Learner {
    /// Fresh models for `strategy`. Shared and gated start from the same W; separate model t
    /// starts from its own draw (model 0 equals the shared start).
    pub fn new(
        strategy: Strategy,
        run: &RunConfig,
        spec: &ModelSpec,
        task_names: &[String],
        device: &Device,
    ) -> Result<Self> {
        let dtype = run.dtype.dtype();
        let count = if strategy == Strategy::Separate {
            task_names.len()
        } else {
            1
        };
        let nets = (0..count)
            .map(|t| {
                Network::new(
                    spec,
                    run.w_init,
                    &mut Rng::stream(run.seed, "init", t as u64),
                    dtype,
                    device,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let masks = (strategy == Strategy::Gated).then(|| {
            MaskBank::new(
                &nets[0].param_shapes(),
                run.mask_init(),
                run.seed,
                dtype,
                device,
            )
        });
        Ok(Learner {
            strategy,
            task_names: task_names.to_vec(),
            nets,
            masks,
            w_opt: Optimizer::new(OptimizerConfig {
                kind: run.optimizer,
                lr: run.lr,
                momentum: run.momentum,
                beta2: run.adam_beta2,
            }),
            mask_opt: Optimizer::new(OptimizerConfig {
                kind: run.mask_optimizer,
                lr: run.mask_lr,
                momentum: run.momentum,
                beta2: run.adam_beta2,
            }),
            gate: run.gate,
            regularizer: (run.mask_regularizer, run.mask_regularizer_weight),
        })
    }

    /// Changes the gate function (the trainer switches to the STE gate at `binarize_after`).
    pub fn set_gate_mode(&mut self, mode: GateMode) {
        self.gate = mode;
    }

    /// The current gate function.
    pub fn gate_mode(&self) -> GateMode {
        self.gate
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The network that serves task `task`.
    pub fn network(&self, task: usize) -> &Network {
        if self.strategy == Strategy::Separate {
            &self.nets[task]
        } else {
            &self.nets[0]
        }
    }

    /// The mask bank (gated only).
    pub fn masks(&self) -> Option<&MaskBank> {
        self.masks.as_ref()
    }

    /// Number of scalars trained (W plus every task's masks, or every model).
    pub fn param_count(&self) -> usize {
        let w: usize = self.nets.iter().map(Network::param_count).sum();
        match &self.masks {
            Some(_) => w * (1 + self.task_names.len()),
            None => w,
        }
    }

    /// One optimisation step on task `task`; returns the task loss (without regulariser).
    pub fn train_step(
        &mut self,
        task: usize,
        batch: &Batch,
        objective: Objective,
        at: StepSettings,
    ) -> Result<f64> {
        let scale = at.gate_scale;
        let masks: Vec<Var> = match &mut self.masks {
            Some(bank) => bank.ensure(task)?.to_vec(),
            None => Vec::new(),
        };
        let net = if self.strategy == Strategy::Separate {
            &self.nets[task]
        } else {
            &self.nets[0]
        };
        let gate = TaskGate {
            masks: &masks,
            mode: self.gate,
            scale,
            view: GateView::Trained,
        };
        let out = net.forward(&batch.x, self.masks.is_some().then_some(&gate))?;
        let loss = objective.loss(&out, &batch.y)?;
        let value = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        let total = match self.regularizer {
            (Regularizer::None, _) | (_, 0.0) => loss,
            (kind, weight) if !masks.is_empty() => {
                let count: usize = masks.iter().map(|m| m.elem_count()).sum();
                let mut penalty: Option<Tensor> = None;
                for m in &masks {
                    let p = match kind {
                        Regularizer::Abs => m.as_tensor().abs()?.neg()?.exp()?.sum_all()?,
                        _ => m.as_tensor().sqr()?.neg()?.exp()?.sum_all()?,
                    };
                    penalty = Some(match penalty {
                        Some(acc) => (acc + p)?,
                        None => p,
                    });
                }
                match penalty {
                    Some(p) => (loss + (p * (weight / count as f64))?)?,
                    None => loss,
                }
            }
            _ => loss,
        };
        let grads = total.backward()?;
        for (name, var) in net.params() {
            if let Some(g) = grads.get(var) {
                self.w_opt
                    .step(&self.param_key(task, name), var, g, at.w_lr_factor)?;
            }
        }
        if let Some(bank) = self.masks.as_ref().filter(|_| at.mask_lr_factor > 0.0) {
            let task_name = &self.task_names[task];
            for (m, pname) in masks.iter().zip(bank.param_names()) {
                if let Some(g) = grads.get(m) {
                    self.mask_opt.step(
                        &format!("{pname}.mask.{task_name}"),
                        m,
                        g,
                        at.mask_lr_factor,
                    )?;
                }
            }
        }
        Ok(value)
    }

    fn param_key(&self, task: usize, name: &str) -> String {
        match self.strategy {
            Strategy::Separate => format!("{}/{name}", self.task_names[task]),
            _ => name.to_string(),
        }
    }

    /// The model's output for task `task` (no training) under a view of the gates.
    pub fn predict(&self, task: usize, x: &Tensor, scale: f64, view: GateView) -> Result<Tensor> {
        let net = self.network(task);
        match &self.masks {
            None => net.forward(x, None),
            Some(bank) => {
                let masks = match bank.get(task) {
                    Some(m) => m.to_vec(),
                    // A task never picked yet runs with the masks it would be given.
                    None => {
                        let mut fresh = bank.clone();
                        fresh.ensure(task)?.to_vec()
                    }
                };
                let gate = TaskGate {
                    masks: &masks,
                    mode: self.gate,
                    scale,
                    view,
                };
                net.forward(x, Some(&gate))
            }
        }
    }

    /// Off/undecided shares per gated parameter for task `task` (empty unless gated and picked).
    pub fn mask_stats(&self, task: usize, scale: f64) -> Result<Vec<(String, MaskStats)>> {
        match &self.masks {
            None => Ok(Vec::new()),
            Some(bank) => Ok(bank
                .param_names()
                .iter()
                .cloned()
                .zip(bank.stats(task, self.gate, scale)?)
                .collect()),
        }
    }

    /// Every tensor of this learner (weights, masks, optimizer state) keyed under
    /// `{strategy}/`: `gated/fc1.weight`, `gated/fc1.weight.mask.{task}`,
    /// `separate/{task}/fc1.weight`, `{strategy}/optim.w/...`, `gated/optim.mask/...`.
    pub fn tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let s = self.strategy.as_str();
        let mut out = Vec::new();
        for (t, net) in self.nets.iter().enumerate() {
            for (name, var) in net.params() {
                out.push((
                    format!("{s}/{}", self.param_key(t, name)),
                    var.as_tensor().clone(),
                ));
            }
        }
        if let Some(bank) = &self.masks {
            for task in bank.tasks() {
                let tname = &self.task_names[task];
                for (m, pname) in bank.get(task).unwrap_or(&[]).iter().zip(bank.param_names()) {
                    out.push((format!("{s}/{pname}.mask.{tname}"), m.as_tensor().clone()));
                }
            }
        }
        let device = self.nets[0].params()[0].1.device().clone();
        out.extend(
            self.w_opt
                .state_tensors(&format!("{s}/optim.w/"), &device)?,
        );
        out.extend(
            self.mask_opt
                .state_tensors(&format!("{s}/optim.mask/"), &device)?,
        );
        Ok(out)
    }

    /// Restores what [`Learner::tensors`] wrote. Every weight must be present with its shape.
    pub fn load(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        let s = self.strategy.as_str();
        let dtype = self.nets[0].params()[0].1.dtype();
        for t in 0..self.nets.len() {
            let keys: Vec<(String, Var)> = self.nets[t]
                .params()
                .iter()
                .map(|(name, var)| (format!("{s}/{}", self.param_key(t, name)), var.clone()))
                .collect();
            for (key, var) in keys {
                let src = tensors
                    .get(&key)
                    .ok_or_else(|| candle_core::Error::msg(format!("missing tensor `{key}`")))?;
                if src.shape() != var.shape() || src.dtype() != dtype {
                    candle_core::bail!(
                        "`{key}` is {:?} {:?}, expected {:?} {:?}",
                        src.dtype(),
                        src.dims(),
                        dtype,
                        var.dims()
                    );
                }
                var.set(src)?;
            }
        }
        if let Some(bank) = &mut self.masks {
            let names = bank.param_names().to_vec();
            for (task, tname) in self.task_names.iter().enumerate() {
                let keys: Vec<String> = names
                    .iter()
                    .map(|p| format!("{s}/{p}.mask.{tname}"))
                    .collect();
                if !tensors.contains_key(&keys[0]) {
                    continue;
                }
                let masks =
                    keys.iter()
                        .map(|k| {
                            tensors.get(k).cloned().ok_or_else(|| {
                                candle_core::Error::msg(format!("missing tensor `{k}`"))
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                bank.insert(task, masks)?;
            }
        }
        self.w_opt.load_state(&format!("{s}/optim.w/"), tensors)?;
        self.mask_opt
            .load_state(&format!("{s}/optim.mask/"), tensors)?;
        Ok(())
    }
}
