//! The strategies behind one interface: `gated` (shared W, one mask set per task), `shared`
//! (one plain model, task ignored), `separate` (one plain model per task), and for the
//! sequential schedule `finetune` and `joint` (one plain model each). They all
//! run the same [`Network`] code; only the gate and the parameter set differ.

use super::continual::TaskOrder;
use crate::engine::{Engine, Plan, Rule, Slot, StepRules, Targets, TaskMasks};
use crate::gate::Regularizer;
use crate::gate::{GateMode, GateView, MaskBank, MaskStats, TaskGate};
use crate::model::{ModelSpec, NetState, Network, WeightInit};
use crate::optim::{Optimizer, OptimizerConfig};
use crate::params::{MASK_SLOTS, ParamKey, TaskId, W_SLOTS, slot_prefix};
use crate::rng::Rng;
use crate::task::{Batch, Objective};
use crate::train::{EngineChoice, RunConfig};
use candle_core::{CpuStorage, DType, Device, Result, Storage, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

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
    /// Sequential schedule: one plain model trained through the phases in order (the naive
    /// continual-learning lower bound: nothing protects earlier tasks).
    Finetune,
    /// Sequential schedule: one plain model trained on all tasks interleaved, from its own
    /// task sampler (the usual continual-learning upper bound: it sees every task throughout).
    Joint,
}

impl Strategy {
    /// The paper's three, in table order (`--strategy all` with the interleaved schedule).
    pub const ALL: [Strategy; 3] = [Strategy::Gated, Strategy::Shared, Strategy::Separate];

    /// Gated and the continual-learning baselines (`--strategy all` with the sequential
    /// schedule).
    pub const CONTINUAL: [Strategy; 4] = [
        Strategy::Gated,
        Strategy::Finetune,
        Strategy::Separate,
        Strategy::Joint,
    ];

    const EVERY: [Strategy; 5] = [
        Strategy::Gated,
        Strategy::Shared,
        Strategy::Separate,
        Strategy::Finetune,
        Strategy::Joint,
    ];

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Gated => "gated",
            Strategy::Shared => "shared",
            Strategy::Separate => "separate",
            Strategy::Finetune => "finetune",
            Strategy::Joint => "joint",
        }
    }

    /// `--strategy all` for a schedule.
    pub fn all_for(order: TaskOrder) -> Vec<Strategy> {
        match order {
            TaskOrder::Interleaved => Strategy::ALL.to_vec(),
            TaskOrder::Sequential => Strategy::CONTINUAL.to_vec(),
        }
    }

    /// Whether the strategy makes sense with `order`: shared is the interleaved schedule's
    /// plain model; finetune and joint are the sequential schedule's.
    pub fn fits(self, order: TaskOrder) -> bool {
        match self {
            Strategy::Gated | Strategy::Separate => true,
            Strategy::Shared => order == TaskOrder::Interleaved,
            Strategy::Finetune | Strategy::Joint => order == TaskOrder::Sequential,
        }
    }

    /// How the strategy's parameters are laid out: what the learner, the memory estimate and
    /// the histograms work from, so no step branches on the strategy's name.
    pub fn layout(self) -> StrategyLayout {
        match self {
            Strategy::Gated => StrategyLayout {
                models: Models::One,
                gated: true,
            },
            Strategy::Shared | Strategy::Finetune | Strategy::Joint => StrategyLayout {
                models: Models::One,
                gated: false,
            },
            Strategy::Separate => StrategyLayout {
                models: Models::PerTask,
                gated: false,
            },
        }
    }

    /// One plain model serves every task.
    pub fn one_plain_model(self) -> bool {
        self.layout() == StrategyLayout::PLAIN
    }
}

/// How many models a strategy trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Models {
    /// One model (its weights keyed `{param}`).
    One,
    /// One model per task (keyed `{task}/{param}`).
    PerTask,
}

/// A strategy as data: its models, and whether each task gates them with masks of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrategyLayout {
    /// One model or one per task.
    pub models: Models,
    /// Every task has masks over the (one) model's weights.
    pub gated: bool,
}

impl StrategyLayout {
    /// One plain model for every task.
    pub const PLAIN: StrategyLayout = StrategyLayout {
        models: Models::One,
        gated: false,
    };

    /// How many models for `tasks` tasks.
    pub fn model_count(self, tasks: usize) -> usize {
        match self.models {
            Models::One => 1,
            Models::PerTask => tasks,
        }
    }

    /// The model that serves task `task`.
    pub fn model_of(self, task: usize) -> usize {
        match self.models {
            Models::One => 0,
            Models::PerTask => task,
        }
    }
}

/// A strategy name that is none of the five.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown strategy `{0}` (gated, shared, separate, finetune or joint)")]
pub struct UnknownStrategy(pub String);

impl std::str::FromStr for Strategy {
    type Err = UnknownStrategy;

    fn from_str(s: &str) -> std::result::Result<Self, UnknownStrategy> {
        Strategy::EVERY
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownStrategy(s.to_string()))
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

/// Set when the fast engine holds newer weights than the candle `Var`s.
#[derive(Debug, Default)]
struct Stale(AtomicBool);

impl Clone for Stale {
    fn clone(&self) -> Self {
        Stale(AtomicBool::new(self.0.load(Ordering::Relaxed)))
    }
}

/// One strategy's models, masks and optimizers.
///
/// Training steps run on the fast [`Engine`] when it covers the run (f32 on the CPU), else on
/// candle's autograd over the [`Network`] (the reference). With the engine, the candle `Var`s
/// are brought up to date lazily, before anything reads them (evaluation, checkpoints,
/// export), so every other part of gatekit sees one representation.
#[derive(Debug, Clone)]
pub struct Learner {
    strategy: Strategy,
    task_names: Vec<String>,
    nets: Vec<Network>,
    masks: Option<MaskBank>,
    /// The layers' per-task state ([`Network::state_specs`]): one set per task when gated,
    /// else one per model; empty lists for a model without stateful layers.
    states: Vec<Vec<Var>>,
    w_opt: Optimizer,
    mask_opt: Optimizer,
    gate: GateMode,
    regularizer: (Regularizer, f64),
    engine: Option<Box<Engine>>,
    /// Why `engine = "fast"` fell back to the reference (none when it did not).
    engine_refusal: Option<String>,
    stale: Stale,
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
        let layout = strategy.layout();
        let count = layout.model_count(task_names.len());
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
        let masks = layout.gated.then(|| {
            MaskBank::new(
                &nets[0].param_shapes(),
                run.mask_init(),
                run.seed,
                dtype,
                device,
            )
        });
        let sets = if layout.gated {
            task_names.len()
        } else {
            count
        };
        let states = (0..sets)
            .map(|_| {
                nets[0]
                    .initial_state(dtype, device)?
                    .iter()
                    .map(Var::from_tensor)
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let mut engine_refusal = None;
        let engine = match (run.engine, dtype, device) {
            (EngineChoice::Fast, DType::F32, Device::Cpu) => match Plan::compile(spec) {
                Ok(plan) => Some(Box::new(Engine::new(
                    plan,
                    nets.iter().map(weights_of).collect::<Result<Vec<_>>>()?,
                    states.iter().map(|s| f32_vecs(s)).collect::<Result<_>>()?,
                    task_names.len(),
                    layout.gated,
                ))),
                Err(why) => {
                    engine_refusal = Some(why.to_string());
                    None
                }
            },
            (EngineChoice::Fast, DType::F32, _) => {
                engine_refusal = Some("the engine runs on the CPU only".into());
                None
            }
            (EngineChoice::Fast, dtype, _) => {
                engine_refusal = Some(format!("the engine runs in f32 only, the run is {dtype:?}"));
                None
            }
            (EngineChoice::Reference, ..) => None,
        };
        Ok(Learner {
            engine,
            engine_refusal,
            stale: Stale::default(),
            strategy,
            task_names: task_names.to_vec(),
            nets,
            masks,
            states,
            w_opt: Optimizer::new(run.w_optimizer()),
            mask_opt: Optimizer::new(run.mask_optimizer()),
            gate: run.gate,
            regularizer: (run.mask_regularizer, run.mask_regularizer_weight),
        })
    }

    /// A learner for one task whose parameters start at `start`'s (and, gated, whose mask
    /// starts at `masks`), with its own optimizers: `gtk adapt` trains a new task's mask and
    /// its baselines through this, so adapting runs the same step as training, on the engine
    /// where the run's models fit it. No mask regulariser (adapting never used one).
    pub fn starting_from(
        strategy: Strategy,
        run: &RunConfig,
        start: &Network,
        masks: Option<Vec<Tensor>>,
        optimizers: (OptimizerConfig, OptimizerConfig),
    ) -> Result<Self> {
        if strategy.layout().models != Models::One {
            candle_core::bail!("a one-task learner is gated or one plain model, not `{strategy}`");
        }
        let device = start
            .params()
            .first()
            .map(|(_, v)| v.device().clone())
            .unwrap_or(Device::Cpu);
        // Zero weights (no random draws: `start`'s are copied in next) and no regulariser.
        let run = RunConfig {
            w_init: WeightInit::Zeros,
            mask_regularizer: Regularizer::None,
            ..run.clone()
        };
        let mut learner =
            Learner::new(strategy, &run, start.spec(), &["new".to_string()], &device)?;
        learner.w_opt = Optimizer::new(optimizers.0);
        learner.mask_opt = Optimizer::new(optimizers.1);
        for ((_, dst), (_, src)) in learner.nets[0].params().iter().zip(start.params()) {
            dst.set(src.as_tensor())?;
        }
        if let (Some(bank), Some(masks)) = (&mut learner.masks, masks) {
            bank.insert(0, masks)?;
        }
        learner.reload_engine()?;
        Ok(learner)
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

    /// `"fast"` when training steps run on gatekit's own engine, `"reference"` when on candle's
    /// autograd (f64 runs, non-CPU devices, `engine = "reference"`).
    pub fn engine_name(&self) -> &'static str {
        if self.engine.is_some() {
            "fast"
        } else {
            "reference"
        }
    }

    /// Why the run asked for the fast engine but trains on the reference (the model has a layer
    /// or shape the engine does not cover, f64, another device); `None` otherwise.
    pub fn engine_refusal(&self) -> Option<&str> {
        self.engine_refusal.as_deref()
    }

    /// Copies the engine's weights and masks into the candle `Var`s if they are behind.
    fn sync(&self) -> Result<()> {
        let Some(engine) = &self.engine else {
            return Ok(());
        };
        if !self.stale.0.load(Ordering::Acquire) {
            return Ok(());
        }
        for (net, weights) in self.nets.iter().zip(&engine.models) {
            for ((_, var), w) in net.params().iter().zip(weights) {
                var.set(&Tensor::from_slice(w, var.shape(), var.device())?)?;
            }
        }
        for (set, values) in self.states.iter().zip(&engine.states) {
            for (var, v) in set.iter().zip(values) {
                var.set(&Tensor::from_slice(v, var.shape(), var.device())?)?;
            }
        }
        if let Some(bank) = &self.masks {
            for (task, m) in engine.masks.iter().enumerate() {
                let (Some(m), Some(vars)) = (m, bank.get(task)) else {
                    continue;
                };
                for (var, values) in vars.iter().zip(&m.values) {
                    var.set(&Tensor::from_slice(values, var.shape(), var.device())?)?;
                }
            }
        }
        // Only once every Var is written: a failed copy leaves the flag set.
        self.stale.0.store(false, Ordering::Release);
        Ok(())
    }

    /// Brings the candle `Var`s up to date; an error here means the engine's buffers no longer
    /// match the network's shapes, which construction rules out.
    fn synced(&self) -> &Self {
        if let Err(e) = self.sync() {
            panic!("engine buffers out of step with the network: {e}");
        }
        self
    }

    /// The network that serves task `task`.
    pub fn network(&self, task: TaskId) -> &Network {
        let task = task.index();
        self.synced();
        &self.nets[self.strategy.layout().model_of(task)]
    }

    /// The mask bank (gated only).
    pub fn masks(&self) -> Option<&MaskBank> {
        self.synced().masks.as_ref()
    }

    /// The state set of task `task`: its own when gated, else its model's.
    fn state_set(&self, task: usize) -> usize {
        if self.masks.is_some() {
            task
        } else {
            self.strategy.layout().model_of(task)
        }
    }

    /// Task `task`'s layer state ([`Network::state_specs`]; empty for a model without
    /// stateful layers).
    pub fn layer_state(&self, task: TaskId) -> Vec<Tensor> {
        let task = task.index();
        self.synced().states[self.state_set(task)]
            .iter()
            .map(|v| v.as_tensor().clone())
            .collect()
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
        task: TaskId,
        batch: &Batch,
        objective: Objective,
        at: StepSettings,
    ) -> Result<f64> {
        Ok(self.train_step_scored(task, batch, objective, at)?.0)
    }

    /// [`Learner::train_step`], also returning the batch's summed metric (squared errors
    /// averaged over outputs, or correct predictions) from the same forward pass, before the
    /// update: the training curve's points come from the batches trained on.
    pub fn train_step_scored(
        &mut self,
        task: TaskId,
        batch: &Batch,
        objective: Objective,
        at: StepSettings,
    ) -> Result<(f64, f64)> {
        let task = task.index();
        if self.engine.is_some() {
            let loss = self.engine_step(task, batch, objective, at)?;
            let Some(engine) = self.engine.as_deref() else {
                candle_core::bail!("no engine");
            };
            let (ys, yl) = batch.y.storage_and_layout();
            let metric = crate::engine::score(
                engine.last_outputs(),
                targets_of(objective, &ys, yl)?,
                engine.output_len(),
            )
            .map_err(candle_core::Error::wrap)?
            .1;
            return Ok((loss, metric));
        }
        let scale = at.gate_scale;
        let masks: Vec<Var> = match &mut self.masks {
            Some(bank) => bank.ensure(task)?.to_vec(),
            None => Vec::new(),
        };
        let set = self.state_set(task);
        let net = &self.nets[self.strategy.layout().model_of(task)];
        let gate = TaskGate {
            masks: &masks,
            mode: self.gate,
            scale,
            view: GateView::Trained,
        };
        let mut state: Vec<Tensor> = self.states[set]
            .iter()
            .map(|v| v.as_tensor().clone())
            .collect();
        let out = net.forward_with_state(
            &batch.x,
            self.masks.is_some().then_some(&gate),
            NetState::Train(&mut state),
        )?;
        for (var, value) in self.states[set].iter().zip(&state) {
            var.set(&value.detach())?;
        }
        let metric = objective.metric_sum(&out.detach(), &batch.y)?;
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
                self.w_opt.step(
                    &self.param_key(task, name).to_string(),
                    var,
                    g,
                    at.w_lr_factor,
                )?;
            }
        }
        if let Some(bank) = self.masks.as_ref().filter(|_| at.mask_lr_factor > 0.0) {
            let task_name = &self.task_names[task];
            for (m, pname) in masks.iter().zip(bank.param_names()) {
                if let Some(g) = grads.get(m) {
                    self.mask_opt.step(
                        &ParamKey::Mask {
                            param: pname,
                            task: task_name,
                        }
                        .to_string(),
                        m,
                        g,
                        at.mask_lr_factor,
                    )?;
                }
            }
        }
        Ok((value, metric))
    }

    /// [`Learner::train_step`] on the fast engine.
    fn engine_step(
        &mut self,
        task: usize,
        batch: &Batch,
        objective: Objective,
        at: StepSettings,
    ) -> Result<f64> {
        let Some(engine) = self.engine.as_deref_mut() else {
            candle_core::bail!("no engine");
        };
        if let Some(bank) = &mut self.masks
            && engine.masks[task].is_none()
        {
            let values = bank
                .ensure(task)?
                .iter()
                .map(|v| v.flatten_all()?.to_vec1::<f32>())
                .collect::<Result<Vec<_>>>()?;
            let slots = vec![Slot::default(); values.len()];
            engine.masks[task] = Some(TaskMasks { values, slots });
        }
        let rule = |c: OptimizerConfig, factor: f64| Rule {
            kind: c.kind,
            lr: (c.lr * factor) as f32,
            momentum: c.momentum as f32,
            beta2: c.beta2 as f32,
        };
        let count: usize = engine.models[0].iter().map(Vec::len).sum();
        let rules = StepRules {
            w: rule(self.w_opt.config(), at.w_lr_factor),
            mask: (self.masks.is_some() && at.mask_lr_factor > 0.0)
                .then(|| rule(self.mask_opt.config(), at.mask_lr_factor)),
            gate: self.gate,
            gate_scale: at.gate_scale as f32,
            regularizer: self.regularizer.0,
            reg_weight: (self.regularizer.1 / count.max(1) as f64) as f32,
        };
        let model = self.strategy.layout().model_of(task);
        let (xs, xl) = batch.x.storage_and_layout();
        let (ys, yl) = batch.y.storage_and_layout();
        let x = f32_slice(&xs, xl)?;
        let targets = targets_of(objective, &ys, yl)?;
        let loss = engine
            .train_step(model, TaskId(task), x, targets, rules)
            .map_err(candle_core::Error::wrap)?;
        self.stale.0.store(true, Ordering::Release);
        Ok(loss)
    }

    /// The key of state tensor `name` of state set `set` ([`Learner::state_set`]).
    fn state_key<'a>(&'a self, set: usize, name: &'a str) -> ParamKey<'a> {
        match &self.masks {
            Some(_) => ParamKey::TaskState {
                param: name,
                task: &self.task_names[set],
            },
            None => self.param_key(set, name),
        }
    }

    fn param_key<'a>(&'a self, task: usize, name: &'a str) -> ParamKey<'a> {
        match self.strategy.layout().models {
            Models::PerTask => ParamKey::TaskWeight {
                task: &self.task_names[task],
                param: name,
            },
            Models::One => ParamKey::Weight { param: name },
        }
    }

    /// The model's output for task `task` (no training) under a view of the gates.
    pub fn predict(&self, task: TaskId, x: &Tensor, scale: f64, view: GateView) -> Result<Tensor> {
        let net = self.network(task);
        let task = task.index();
        if let Some(engine) = &self.engine {
            return self.engine_predict(engine, task, x, scale, view);
        }
        let state: Vec<Tensor> = self.states[self.state_set(task)]
            .iter()
            .map(|v| v.as_tensor().clone())
            .collect();
        let state = NetState::Eval(&state);
        match &self.masks {
            None => net.forward_with_state(x, None, state),
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
                net.forward_with_state(x, Some(&gate), state)
            }
        }
    }

    /// Whether evaluation can run on the fast engine ([`Learner::eval_params`] and
    /// [`Learner::predict_batch`]); the reference path (f64, other devices) evaluates through
    /// [`Learner::predict`].
    pub fn has_engine(&self) -> bool {
        self.engine.is_some()
    }

    /// The effective parameters `W ⊙ g(M_task)` (or `W`) of task `task` under `view`, followed
    /// by the task's layer state, as the engine reads them: computed once per evaluation and reused for every batch, with the
    /// same candle gate code as [`Learner::predict`] (so every [`GateView`] means the same).
    pub fn eval_params(&self, task: TaskId, scale: f64, view: GateView) -> Result<Vec<Vec<f32>>> {
        self.sync()?;
        let net = self.network(task);
        let task = task.index();
        let masks: Option<Vec<Var>> = match &self.masks {
            None => None,
            Some(bank) => Some(match bank.get(task) {
                Some(m) => m.to_vec(),
                // A task never picked yet runs with the masks it would be given.
                None => bank.clone().ensure(task)?.to_vec(),
            }),
        };
        let gate = masks.as_deref().map(|masks| TaskGate {
            masks,
            mode: self.gate,
            scale,
            view,
        });
        let mut params = net
            .params()
            .iter()
            .enumerate()
            .map(|(i, (_, w))| match &gate {
                Some(g) => g
                    .apply(i, w.as_tensor())?
                    .flatten_all()?
                    .to_dtype(DType::F32)?
                    .to_vec1::<f32>(),
                None => w.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>(),
            })
            .collect::<Result<Vec<_>>>()?;
        params.extend(f32_vecs(&self.states[self.state_set(task)])?);
        Ok(params)
    }

    /// The engine's outputs `[n, outputs]` for `n` inputs `x` (flat `f32`) under each of
    /// several parameter sets from [`Learner::eval_params`] (of this learner or of another
    /// learner of the same model), in one pass over `x` on all threads; `None` without an
    /// engine.
    pub fn predict_batch(&self, params: &[&[Vec<f32>]], x: &[f32]) -> Option<Vec<Vec<f32>>> {
        let engine = self.engine.as_deref()?;
        let params: Vec<Vec<&[f32]>> = params
            .iter()
            .map(|p| p.iter().map(Vec::as_slice).collect())
            .collect();
        Some(engine.predict_batch_many(&params, x))
    }

    /// [`Learner::predict`] on the fast engine: the effective parameters come from the same
    /// candle gate code (so every [`GateView`] means the same), the forward pass from the engine.
    fn engine_predict(
        &self,
        engine: &Engine,
        task: usize,
        x: &Tensor,
        scale: f64,
        view: GateView,
    ) -> Result<Tensor> {
        let theta = self.eval_params(TaskId(task), scale, view)?;
        let params: Vec<&[f32]> = theta.iter().map(Vec::as_slice).collect();
        let n = x.dim(0)?;
        let input = x.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        if input.len() != n * engine.input_len() {
            candle_core::bail!(
                "input {:?} does not match the model's input of {} values",
                x.dims(),
                engine.input_len()
            );
        }
        let out = engine.predict(&params, &input, PREDICT_CHUNK);
        let outputs = out.len() / n.max(1);
        Tensor::from_vec(out, (n, outputs), x.device())
    }

    /// Off/undecided shares per gated parameter for task `task` (empty unless gated and picked).
    pub fn mask_stats(&self, task: TaskId, scale: f64) -> Result<Vec<(String, MaskStats)>> {
        let task = task.index();
        self.sync()?;
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
        self.sync()?;
        let s = self.strategy.as_str();
        let mut out = Vec::new();
        for (t, net) in self.nets.iter().enumerate() {
            for (name, var) in net.params() {
                out.push((
                    self.param_key(t, name).in_strategy(s),
                    var.as_tensor().clone(),
                ));
            }
        }
        if let Some(bank) = &self.masks {
            for task in bank.tasks() {
                let tname = &self.task_names[task];
                for (m, pname) in bank.get(task).unwrap_or(&[]).iter().zip(bank.param_names()) {
                    let key = ParamKey::Mask {
                        param: pname,
                        task: tname,
                    };
                    out.push((key.in_strategy(s), m.as_tensor().clone()));
                }
            }
        }
        for (set, vars) in self.states.iter().enumerate() {
            for ((name, _), var) in self.nets[0].state_specs().iter().zip(vars) {
                out.push((
                    self.state_key(set, name).in_strategy(s),
                    var.as_tensor().clone(),
                ));
            }
        }
        let device = self.nets[0].params()[0].1.device().clone();
        match &self.engine {
            Some(engine) => out.extend(self.engine_state_tensors(engine, &device)?),
            None => {
                out.extend(
                    self.w_opt
                        .state_tensors(&slot_prefix(s, W_SLOTS), &device)?,
                );
                out.extend(
                    self.mask_opt
                        .state_tensors(&slot_prefix(s, MASK_SLOTS), &device)?,
                );
            }
        }
        Ok(out)
    }

    /// The engine's optimizer state under the names and layout of [`Optimizer::state_tensors`],
    /// so a checkpoint does not depend on which implementation trained it.
    fn engine_state_tensors(
        &self,
        engine: &Engine,
        device: &Device,
    ) -> Result<Vec<(String, Tensor)>> {
        let s = self.strategy.as_str();
        let mut entries: Vec<(String, &Slot, candle_core::Shape)> = Vec::new();
        for (t, (net, slots)) in self.nets.iter().zip(&engine.w_slots).enumerate() {
            for ((name, var), slot) in net.params().iter().zip(slots) {
                entries.push((
                    self.param_key(t, name).slot(s, W_SLOTS),
                    slot,
                    var.shape().clone(),
                ));
            }
        }
        if let Some(bank) = &self.masks {
            let shapes = self.nets[0].param_shapes();
            for (task, m) in engine.masks.iter().enumerate() {
                let Some(m) = m else { continue };
                let tname = &self.task_names[task];
                for ((pname, shape), slot) in bank
                    .param_names()
                    .iter()
                    .zip(&shapes)
                    .map(|(p, (_, sh))| (p, sh))
                    .zip(&m.slots)
                {
                    entries.push((
                        ParamKey::Mask {
                            param: pname,
                            task: tname,
                        }
                        .slot(s, MASK_SLOTS),
                        slot,
                        shape.clone(),
                    ));
                }
            }
        }
        let mut out = Vec::new();
        for (key, slot, shape) in entries {
            if slot.steps == 0 {
                continue;
            }
            if !slot.first.is_empty() {
                out.push((
                    format!("{key}.first"),
                    Tensor::from_slice(&slot.first, &shape, device)?,
                ));
            }
            if !slot.second.is_empty() {
                out.push((
                    format!("{key}.second"),
                    Tensor::from_slice(&slot.second, &shape, device)?,
                ));
            }
            out.push((
                format!("{key}.steps"),
                Tensor::new(&[slot.steps as i64], device)?,
            ));
        }
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
                .map(|(name, var)| (self.param_key(t, name).in_strategy(s), var.clone()))
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
                    .map(|p| {
                        ParamKey::Mask {
                            param: p,
                            task: tname,
                        }
                        .in_strategy(s)
                    })
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
        for set in 0..self.states.len() {
            for ((name, _), var) in self.nets[0].state_specs().iter().zip(&self.states[set]) {
                let key = self.state_key(set, name).in_strategy(s);
                if let Some(src) = tensors.get(&key) {
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
        }
        self.w_opt.load_state(&slot_prefix(s, W_SLOTS), tensors)?;
        self.mask_opt
            .load_state(&slot_prefix(s, MASK_SLOTS), tensors)?;
        self.reload_engine()
    }

    /// Rebuilds the engine's buffers from the candle `Var`s and optimizer state (after a load).
    fn reload_engine(&mut self) -> Result<()> {
        let w_keys: Vec<Vec<String>> = (self.nets.iter().enumerate())
            .map(|(t, net)| {
                net.params()
                    .iter()
                    .map(|(name, _)| self.param_key(t, name).to_string())
                    .collect()
            })
            .collect();
        let Some(engine) = self.engine.as_deref_mut() else {
            return Ok(());
        };
        let slot = |opt: &Optimizer, key: &str| -> Result<Slot> {
            Ok(match opt.slot_values(key)? {
                Some((first, second, steps)) => Slot {
                    first,
                    second,
                    steps,
                },
                None => Slot::default(),
            })
        };
        engine.states = self
            .states
            .iter()
            .map(|s| f32_vecs(s))
            .collect::<Result<_>>()?;
        for (t, net) in self.nets.iter().enumerate() {
            engine.models[t] = weights_of(net)?;
            engine.w_slots[t] = w_keys[t]
                .iter()
                .map(|key| slot(&self.w_opt, key))
                .collect::<Result<_>>()?;
        }
        if let Some(bank) = &self.masks {
            for (task, tname) in self.task_names.iter().enumerate() {
                engine.masks[task] = match bank.get(task) {
                    None => None,
                    Some(vars) => Some(TaskMasks {
                        values: vars
                            .iter()
                            .map(|v| v.flatten_all()?.to_vec1::<f32>())
                            .collect::<Result<_>>()?,
                        slots: bank
                            .param_names()
                            .iter()
                            .map(|p| {
                                let key = ParamKey::Mask {
                                    param: p,
                                    task: tname,
                                };
                                slot(&self.mask_opt, &key.to_string())
                            })
                            .collect::<Result<_>>()?,
                    }),
                };
            }
        }
        self.stale.0.store(false, Ordering::Release);
        Ok(())
    }
}

/// A batch's targets as the engine reads them: contiguous `f32` values (regression) or `u32`
/// labels (classification) on the CPU.
pub(crate) fn targets_of<'a>(
    objective: Objective,
    storage: &'a Storage,
    layout: &candle_core::Layout,
) -> Result<Targets<'a>> {
    match (objective, storage, layout.contiguous_offsets()) {
        (Objective::Regression, Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) => {
            Ok(Targets::Values(&v[a..b]))
        }
        (Objective::Classification, Storage::Cpu(CpuStorage::U32(v)), Some((a, b))) => {
            Ok(Targets::Labels(&v[a..b]))
        }
        _ => candle_core::bail!("batch targets are not contiguous f32 values / u32 labels"),
    }
}

/// Examples per engine forward pass in [`Learner::predict`].
const PREDICT_CHUNK: usize = 64;

/// A network's parameters as `f32` vectors, in order.
fn weights_of(net: &Network) -> Result<Vec<Vec<f32>>> {
    net.params()
        .iter()
        .map(|(_, v)| v.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>())
        .collect()
}

/// Tensors as flat `f32` vectors, in order.
fn f32_vecs(vars: &[Var]) -> Result<Vec<Vec<f32>>> {
    vars.iter()
        .map(|v| v.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>())
        .collect()
}

/// The contiguous `f32` values of a CPU tensor's storage.
fn f32_slice<'a>(storage: &'a Storage, layout: &candle_core::Layout) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("batch inputs are not contiguous f32 values on the CPU"),
    }
}
