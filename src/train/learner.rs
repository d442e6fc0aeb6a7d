//! The strategies behind one interface: `gated` (shared W, one mask set per task), `shared`
//! (one plain model, task ignored), `separate` (one plain model per task), and for the
//! sequential schedule `finetune` and `joint` (one plain model each). They all
//! run the same [`Network`] code; only the gate and the parameter set differ.

use super::continual::TaskOrder;
use crate::engine::{Engine, Plan, Rule, Slot, StepRules, Targets, TaskMasks};
use crate::gate::Regularizer;
use crate::gate::{GateMode, GateView, MaskBank, MaskInit, MaskStats, TaskGate};
use crate::model::{ModelSpec, NetState, Network, WeightInit};
use crate::optim::{Optimizer, OptimizerConfig};
use crate::params::{MASK_SLOTS, ParamKey, TaskId, W_SLOTS, slot_prefix};
use crate::rng::Rng;
use crate::task::{Batch, Objective};
use crate::train::{EngineChoice, RunConfig};
use candle_core::{CpuStorage, DType, Device, Result, Storage, Tensor, Var};
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

/// Where a learner's tensors live: each one once, in the backend that trains them.
#[derive(Debug, Clone)]
enum Backend {
    /// The fast engine's `f32` buffers hold the weights, masks, layer state and optimizer
    /// slots; candle tensors are made from them only when something reads them.
    Engine(Box<Engine>),
    /// Candle `Var`s and optimizers (f64, other devices, `engine = "reference"`, a model the
    /// engine refuses).
    Reference(Box<Reference>),
}

/// The reference backend's tensors.
#[derive(Debug, Clone)]
struct Reference {
    nets: Vec<Network>,
    masks: Option<MaskBank>,
    /// The layers' per-task state: one set per task when gated, else one per model.
    states: Vec<Vec<Var>>,
    w_opt: Optimizer,
    mask_opt: Optimizer,
}

/// One strategy's models, masks and optimizers.
///
/// Training steps run on the fast [`Engine`] when it covers the run (f32 on the CPU), else on
/// candle's autograd over the [`Network`] (the reference). Either backend holds every tensor
/// once; what the rest of gatekit reads (a [`Network`], a [`MaskBank`], checkpoint tensors) is
/// made from it when asked, so there is nothing to keep in step.
#[derive(Debug, Clone)]
pub struct Learner {
    strategy: Strategy,
    task_names: Vec<String>,
    spec: ModelSpec,
    dtype: DType,
    device: Device,
    /// How a task's masks start (also for a task the engine has not trained yet).
    mask_init: MaskInit,
    seed: u64,
    w_config: OptimizerConfig,
    mask_config: OptimizerConfig,
    gate: GateMode,
    regularizer: (Regularizer, f64),
    backend: Backend,
    /// Why `engine = "fast"` fell back to the reference (none when it did not).
    engine_refusal: Option<String>,
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
        let plan = match (run.engine, dtype, device) {
            (EngineChoice::Fast, DType::F32, Device::Cpu) => match Plan::compile(spec) {
                Ok(plan) => Some(plan),
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
        let backend = match plan {
            Some(plan) => Backend::Engine(Box::new(Engine::new(
                plan,
                nets.iter().map(weights_of).collect::<Result<Vec<_>>>()?,
                states.iter().map(|s| f32_vecs(s)).collect::<Result<_>>()?,
                task_names.len(),
                layout.gated,
            ))),
            None => Backend::Reference(Box::new(Reference {
                masks: layout.gated.then(|| {
                    MaskBank::new(
                        &nets[0].param_shapes(),
                        run.mask_init(),
                        run.seed,
                        dtype,
                        device,
                    )
                }),
                nets,
                states,
                w_opt: Optimizer::new(run.w_optimizer()),
                mask_opt: Optimizer::new(run.mask_optimizer()),
            })),
        };
        Ok(Learner {
            strategy,
            task_names: task_names.to_vec(),
            spec: spec.clone(),
            dtype,
            device: device.clone(),
            mask_init: run.mask_init(),
            seed: run.seed,
            w_config: run.w_optimizer(),
            mask_config: run.mask_optimizer(),
            gate: run.gate,
            regularizer: (run.mask_regularizer, run.mask_regularizer_weight),
            backend,
            engine_refusal,
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
        learner.w_config = optimizers.0;
        learner.mask_config = optimizers.1;
        match &mut learner.backend {
            Backend::Engine(engine) => {
                engine.models[0] = weights_of(start)?;
                if let Some(masks) = masks {
                    let values = masks
                        .iter()
                        .map(|m| m.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>())
                        .collect::<Result<Vec<_>>>()?;
                    let lens: Vec<usize> = engine.models[0].iter().map(Vec::len).collect();
                    if values.iter().map(Vec::len).ne(lens.iter().copied()) {
                        candle_core::bail!("starting masks do not match the network's parameters");
                    }
                    let slots = vec![Slot::default(); values.len()];
                    engine.masks[0] = Some(TaskMasks { values, slots });
                }
            }
            Backend::Reference(r) => {
                r.w_opt = Optimizer::new(optimizers.0);
                r.mask_opt = Optimizer::new(optimizers.1);
                for ((_, dst), (_, src)) in r.nets[0].params().iter().zip(start.params()) {
                    dst.set(src.as_tensor())?;
                }
                if let (Some(bank), Some(masks)) = (&mut r.masks, masks) {
                    bank.insert(0, masks)?;
                }
            }
        }
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
        match self.backend {
            Backend::Engine(_) => "fast",
            Backend::Reference(_) => "reference",
        }
    }

    /// Why the run asked for the fast engine but trains on the reference (the model has a layer
    /// or shape the engine does not cover, f64, another device); `None` otherwise.
    pub fn engine_refusal(&self) -> Option<&str> {
        self.engine_refusal.as_deref()
    }

    fn gated(&self) -> bool {
        self.strategy.layout().gated
    }

    /// The network that serves task `task`, with its current weights.
    pub fn network(&self, task: TaskId) -> Result<Network> {
        self.model(self.strategy.layout().model_of(task.index()))
    }

    /// Model `model`'s network: the reference's own (sharing its storage), or one made from
    /// the engine's weights.
    fn model(&self, model: usize) -> Result<Network> {
        match &self.backend {
            Backend::Reference(r) => Ok(r.nets[model].clone()),
            Backend::Engine(engine) => {
                let net = Network::new(
                    &self.spec,
                    WeightInit::Zeros,
                    &mut Rng::new(0),
                    self.dtype,
                    &self.device,
                )?;
                for ((_, var), w) in net.params().iter().zip(&engine.models[model]) {
                    var.set(&Tensor::from_slice(w, var.shape(), &self.device)?)?;
                }
                Ok(net)
            }
        }
    }

    /// A bank that draws masks as every task's start ([`MaskBank::ensure`]).
    fn fresh_bank(&self) -> Result<MaskBank> {
        let shapes = self.model(0)?.param_shapes();
        Ok(MaskBank::new(
            &shapes,
            self.mask_init,
            self.seed,
            self.dtype,
            &self.device,
        ))
    }

    /// Every task's masks (gated only): the reference's bank, or one made from the engine's.
    pub fn masks(&self) -> Result<Option<MaskBank>> {
        if !self.gated() {
            return Ok(None);
        }
        match &self.backend {
            Backend::Reference(r) => Ok(r.masks.clone()),
            Backend::Engine(engine) => {
                let mut bank = self.fresh_bank()?;
                let shapes = self.model(0)?.param_shapes();
                for (task, m) in engine.masks.iter().enumerate() {
                    if let Some(m) = m {
                        let masks = (m.values.iter().zip(&shapes))
                            .map(|(v, (_, shape))| Tensor::from_slice(v, shape, &self.device))
                            .collect::<Result<Vec<_>>>()?;
                        bank.insert(task, masks)?;
                    }
                }
                Ok(Some(bank))
            }
        }
    }

    /// Task `task`'s masks (gated only); a task never picked yet gets the masks it would be
    /// given.
    fn task_masks(&self, task: usize) -> Result<Option<Vec<Var>>> {
        if !self.gated() {
            return Ok(None);
        }
        let stored = match &self.backend {
            Backend::Reference(r) => r
                .masks
                .as_ref()
                .and_then(|b| b.get(task))
                .map(<[Var]>::to_vec),
            Backend::Engine(engine) => match &engine.masks[task] {
                None => None,
                Some(m) => {
                    let shapes = self.model(0)?.param_shapes();
                    Some(
                        (m.values.iter().zip(&shapes))
                            .map(|(v, (_, shape))| {
                                Var::from_tensor(&Tensor::from_slice(v, shape, &self.device)?)
                            })
                            .collect::<Result<Vec<_>>>()?,
                    )
                }
            },
        };
        match stored {
            Some(m) => Ok(Some(m)),
            None => Ok(Some(self.fresh_bank()?.ensure(task)?.to_vec())),
        }
    }

    /// The state set of task `task`: its own when gated, else its model's.
    fn state_set(&self, task: usize) -> usize {
        if self.gated() {
            task
        } else {
            self.strategy.layout().model_of(task)
        }
    }

    /// Task `task`'s layer state ([`Network::state_specs`]; empty for a model without
    /// stateful layers).
    pub fn layer_state(&self, task: TaskId) -> Result<Vec<Tensor>> {
        self.state_of_set(self.state_set(task.index()))
    }

    fn state_of_set(&self, set: usize) -> Result<Vec<Tensor>> {
        match &self.backend {
            Backend::Reference(r) => Ok(r.states[set]
                .iter()
                .map(|v| v.as_tensor().clone())
                .collect()),
            Backend::Engine(engine) => {
                let net = self.model(0)?;
                (net.state_specs().iter().zip(&engine.states[set]))
                    .map(|((_, spec), v)| {
                        Tensor::from_slice(v, spec.shape.as_slice(), &self.device)
                    })
                    .collect()
            }
        }
    }

    /// Number of scalars trained (W plus every task's masks, or every model).
    pub fn param_count(&self) -> usize {
        let per_model: usize = self
            .spec
            .param_counts()
            .map_or(0, |c| c.iter().map(|(_, n)| *n as usize).sum());
        let models = self.strategy.layout().model_count(self.task_names.len());
        if self.gated() {
            per_model * (1 + self.task_names.len())
        } else {
            per_model * models
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
        if let Backend::Engine(_) = self.backend {
            let loss = self.engine_step(task, batch, objective, at)?;
            let Backend::Engine(engine) = &self.backend else {
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
        let model = self.strategy.layout().model_of(task);
        let set = self.state_set(task);
        let keys: Vec<String> = self.model_keys(model);
        let task_name = self.task_names[task].clone();
        let (gate_mode, regularizer) = (self.gate, self.regularizer);
        let Backend::Reference(r) = &mut self.backend else {
            candle_core::bail!("no reference backend");
        };
        let scale = at.gate_scale;
        let masks: Vec<Var> = match &mut r.masks {
            Some(bank) => bank.ensure(task)?.to_vec(),
            None => Vec::new(),
        };
        let net = &r.nets[model];
        let gate = TaskGate {
            masks: &masks,
            mode: gate_mode,
            scale,
            view: GateView::Trained,
        };
        let mut state: Vec<Tensor> = r.states[set]
            .iter()
            .map(|v| v.as_tensor().clone())
            .collect();
        let out = net.forward_with_state(
            &batch.x,
            r.masks.is_some().then_some(&gate),
            NetState::Train(&mut state),
        )?;
        for (var, value) in r.states[set].iter().zip(&state) {
            var.set(&value.detach())?;
        }
        let metric = objective.metric_sum(&out.detach(), &batch.y)?;
        let loss = objective.loss(&out, &batch.y)?;
        let value = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        let total = match regularizer {
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
        for ((_, var), key) in net.params().iter().zip(&keys) {
            if let Some(g) = grads.get(var) {
                r.w_opt.step(key, var, g, at.w_lr_factor)?;
            }
        }
        if let Some(bank) = r.masks.as_ref().filter(|_| at.mask_lr_factor > 0.0) {
            for (m, pname) in masks.iter().zip(bank.param_names()) {
                if let Some(g) = grads.get(m) {
                    r.mask_opt.step(
                        &ParamKey::Mask {
                            param: pname,
                            task: &task_name,
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
        let needs_masks = match &self.backend {
            Backend::Engine(engine) => self.gated() && engine.masks[task].is_none(),
            Backend::Reference(_) => candle_core::bail!("no engine"),
        };
        let first_masks = if needs_masks {
            Some(f32_vecs(self.fresh_bank()?.ensure(task)?)?)
        } else {
            None
        };
        let rule = |c: OptimizerConfig, factor: f64| Rule {
            kind: c.kind,
            lr: (c.lr * factor) as f32,
            momentum: c.momentum as f32,
            beta2: c.beta2 as f32,
        };
        let gated = self.gated();
        let model = self.strategy.layout().model_of(task);
        let (w_config, mask_config, gate, regularizer) =
            (self.w_config, self.mask_config, self.gate, self.regularizer);
        let Backend::Engine(engine) = &mut self.backend else {
            candle_core::bail!("no engine");
        };
        if let Some(values) = first_masks {
            let slots = vec![Slot::default(); values.len()];
            engine.masks[task] = Some(TaskMasks { values, slots });
        }
        let count: usize = engine.models[0].iter().map(Vec::len).sum();
        let rules = StepRules {
            w: rule(w_config, at.w_lr_factor),
            mask: (gated && at.mask_lr_factor > 0.0).then(|| rule(mask_config, at.mask_lr_factor)),
            gate,
            gate_scale: at.gate_scale as f32,
            regularizer: regularizer.0,
            reg_weight: (regularizer.1 / count.max(1) as f64) as f32,
        };
        let (xs, xl) = batch.x.storage_and_layout();
        let (ys, yl) = batch.y.storage_and_layout();
        let x = f32_slice(&xs, xl)?;
        let targets = targets_of(objective, &ys, yl)?;
        engine
            .train_step(model, TaskId(task), x, targets, rules)
            .map_err(candle_core::Error::wrap)
    }

    /// The key of state tensor `name` of state set `set` ([`Learner::state_set`]).
    fn state_key<'a>(&'a self, set: usize, name: &'a str) -> ParamKey<'a> {
        if self.gated() {
            ParamKey::TaskState {
                param: name,
                task: &self.task_names[set],
            }
        } else {
            self.param_key(set, name)
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

    /// The optimizer keys (inside the strategy) of model `model`'s parameters.
    fn model_keys(&self, model: usize) -> Vec<String> {
        self.param_names()
            .iter()
            .map(|name| self.param_key(model, name).to_string())
            .collect()
    }

    /// The parameters' names (`fc1.weight`, …), in order.
    fn param_names(&self) -> Vec<String> {
        match &self.backend {
            Backend::Reference(r) => r.nets[0].params().iter().map(|(n, _)| n.clone()).collect(),
            Backend::Engine(_) => self
                .model(0)
                .map(|n| n.params().iter().map(|(n, _)| n.clone()).collect())
                .unwrap_or_default(),
        }
    }

    /// The model's output for task `task` (no training) under a view of the gates.
    pub fn predict(&self, task: TaskId, x: &Tensor, scale: f64, view: GateView) -> Result<Tensor> {
        if let Backend::Engine(engine) = &self.backend {
            return self.engine_predict(engine, task, x, scale, view);
        }
        let net = self.network(task)?;
        let state = self.layer_state(task)?;
        let state = NetState::Eval(&state);
        match self.task_masks(task.index())? {
            None => net.forward_with_state(x, None, state),
            Some(masks) => {
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
        matches!(self.backend, Backend::Engine(_))
    }

    /// The effective parameters `W ⊙ g(M_task)` (or `W`) of task `task` under `view`, followed
    /// by the task's layer state, as the engine reads them: computed once per evaluation and
    /// reused for every batch, with the same candle gate code as [`Learner::predict`] (so
    /// every [`GateView`] means the same).
    pub fn eval_params(&self, task: TaskId, scale: f64, view: GateView) -> Result<Vec<Vec<f32>>> {
        let net = self.network(task)?;
        let masks = self.task_masks(task.index())?;
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
        for t in self.layer_state(task)? {
            params.push(t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?);
        }
        Ok(params)
    }

    /// The engine's outputs `[n, outputs]` for `n` inputs `x` (flat `f32`) under each of
    /// several parameter sets from [`Learner::eval_params`] (of this learner or of another
    /// learner of the same model), in one pass over `x` on all threads; `None` without an
    /// engine.
    pub fn predict_batch(&self, params: &[&[Vec<f32>]], x: &[f32]) -> Option<Vec<Vec<f32>>> {
        let Backend::Engine(engine) = &self.backend else {
            return None;
        };
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
        task: TaskId,
        x: &Tensor,
        scale: f64,
        view: GateView,
    ) -> Result<Tensor> {
        let theta = self.eval_params(task, scale, view)?;
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
        match self.masks()? {
            None => Ok(Vec::new()),
            Some(bank) => Ok(bank
                .param_names()
                .iter()
                .cloned()
                .zip(bank.stats(task, self.gate, scale)?)
                .collect()),
        }
    }

    /// Every tensor of this learner (weights, masks, layer state, optimizer state) keyed under
    /// `{strategy}/`: `gated/fc1.weight`, `gated/fc1.weight.mask.{task}`,
    /// `separate/{task}/fc1.weight`, `{strategy}/optim.w/...`, `gated/optim.mask/...`. The same
    /// names and layout from either backend, so a checkpoint does not depend on which one
    /// trained it.
    pub fn tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let s = self.strategy.as_str();
        let mut out = Vec::new();
        let models = self.strategy.layout().model_count(self.task_names.len());
        for t in 0..models {
            let net = self.model(t)?;
            for (name, var) in net.params() {
                out.push((
                    self.param_key(t, name).in_strategy(s),
                    var.as_tensor().clone(),
                ));
            }
        }
        if let Some(bank) = self.masks()? {
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
        let state_names: Vec<String> = (self.model(0)?.state_specs().iter())
            .map(|(n, _)| n.clone())
            .collect();
        let sets = match &self.backend {
            Backend::Reference(r) => r.states.len(),
            Backend::Engine(engine) => engine.states.len(),
        };
        for set in 0..sets {
            for (name, t) in state_names.iter().zip(self.state_of_set(set)?) {
                out.push((self.state_key(set, name).in_strategy(s), t));
            }
        }
        match &self.backend {
            Backend::Engine(engine) => out.extend(self.engine_state_tensors(engine)?),
            Backend::Reference(r) => {
                out.extend(
                    r.w_opt
                        .state_tensors(&slot_prefix(s, W_SLOTS), &self.device)?,
                );
                out.extend(
                    r.mask_opt
                        .state_tensors(&slot_prefix(s, MASK_SLOTS), &self.device)?,
                );
            }
        }
        Ok(out)
    }

    /// The engine's optimizer state under the names and layout of [`Optimizer::state_tensors`].
    fn engine_state_tensors(&self, engine: &Engine) -> Result<Vec<(String, Tensor)>> {
        let s = self.strategy.as_str();
        let shapes = self.model(0)?.param_shapes();
        let mut entries: Vec<(String, &Slot, candle_core::Shape)> = Vec::new();
        for (t, slots) in engine.w_slots.iter().enumerate() {
            for ((name, shape), slot) in shapes.iter().zip(slots) {
                entries.push((
                    self.param_key(t, name).slot(s, W_SLOTS),
                    slot,
                    shape.clone(),
                ));
            }
        }
        for (task, m) in engine.masks.iter().enumerate() {
            let Some(m) = m else { continue };
            let tname = &self.task_names[task];
            for ((pname, shape), slot) in shapes.iter().zip(&m.slots) {
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
        let device = &self.device;
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

    /// Restores what [`Learner::tensors`] wrote, into whichever backend this learner has.
    /// Every weight must be present with its shape; masks and layer state of a task that has
    /// none keep their start.
    pub fn load(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        let s = self.strategy.as_str();
        let dtype = self.dtype;
        let get = |key: &str, shape: &candle_core::Shape| -> Result<Option<Tensor>> {
            let Some(src) = tensors.get(key) else {
                return Ok(None);
            };
            if src.shape() != shape || src.dtype() != dtype {
                candle_core::bail!(
                    "`{key}` is {:?} {:?}, expected {:?} {:?}",
                    src.dtype(),
                    src.dims(),
                    dtype,
                    shape.dims()
                );
            }
            Ok(Some(src.clone()))
        };
        let require = |key: &str, shape: &candle_core::Shape| -> Result<Tensor> {
            get(key, shape)?
                .ok_or_else(|| candle_core::Error::msg(format!("missing tensor `{key}`")))
        };
        let shapes = self.model(0)?.param_shapes();
        let models = self.strategy.layout().model_count(self.task_names.len());
        let weights: Vec<Vec<Tensor>> = (0..models)
            .map(|t| {
                (shapes.iter())
                    .map(|(name, shape)| require(&self.param_key(t, name).in_strategy(s), shape))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        // Per task: all of its masks, or none (a task never trained).
        let mut masks: Vec<Option<Vec<Tensor>>> = Vec::new();
        for tname in &self.task_names {
            let first = ParamKey::Mask {
                param: &shapes[0].0,
                task: tname,
            };
            if !self.gated() || !tensors.contains_key(&first.in_strategy(s)) {
                masks.push(None);
                continue;
            }
            masks.push(Some(
                (shapes.iter())
                    .map(|(p, shape)| {
                        require(
                            &ParamKey::Mask {
                                param: p,
                                task: tname,
                            }
                            .in_strategy(s),
                            shape,
                        )
                    })
                    .collect::<Result<Vec<_>>>()?,
            ));
        }
        let state_specs: Vec<(String, candle_core::Shape)> = (self.model(0)?.state_specs().iter())
            .map(|(n, spec)| (n.clone(), candle_core::Shape::from(spec.shape.clone())))
            .collect();
        let sets = if self.gated() {
            self.task_names.len()
        } else {
            models
        };
        let states: Vec<Vec<Option<Tensor>>> = (0..sets)
            .map(|set| {
                (state_specs.iter())
                    .map(|(n, shape)| get(&self.state_key(set, n).in_strategy(s), shape))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        let mut w_opt = Optimizer::new(self.w_config);
        let mut mask_opt = Optimizer::new(self.mask_config);
        w_opt.load_state(&slot_prefix(s, W_SLOTS), tensors)?;
        mask_opt.load_state(&slot_prefix(s, MASK_SLOTS), tensors)?;
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
        let w_slots: Vec<Vec<Slot>> = (0..models)
            .map(|t| {
                self.model_keys(t)
                    .iter()
                    .map(|k| slot(&w_opt, k))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        let mask_slots: Vec<Vec<Slot>> = (self.task_names.iter())
            .map(|tname| {
                (shapes.iter())
                    .map(|(p, _)| {
                        slot(
                            &mask_opt,
                            &ParamKey::Mask {
                                param: p,
                                task: tname,
                            }
                            .to_string(),
                        )
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        let flat = |t: &Tensor| t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>();
        match &mut self.backend {
            Backend::Engine(engine) => {
                for (t, ws) in weights.iter().enumerate() {
                    engine.models[t] = ws.iter().map(flat).collect::<Result<_>>()?;
                }
                engine.w_slots = w_slots;
                for (task, (m, slots)) in masks.into_iter().zip(mask_slots).enumerate() {
                    engine.masks[task] = match m {
                        None => None,
                        Some(m) => Some(TaskMasks {
                            values: m.iter().map(flat).collect::<Result<_>>()?,
                            slots,
                        }),
                    };
                }
                for (set, values) in states.iter().enumerate() {
                    for (k, v) in values.iter().enumerate() {
                        if let Some(v) = v {
                            engine.states[set][k] = flat(v)?;
                        }
                    }
                }
            }
            Backend::Reference(r) => {
                for (net, ws) in r.nets.iter().zip(&weights) {
                    for ((_, var), w) in net.params().iter().zip(ws) {
                        var.set(w)?;
                    }
                }
                if let Some(bank) = &mut r.masks {
                    for (task, m) in masks.into_iter().enumerate() {
                        if let Some(m) = m {
                            bank.insert(task, m)?;
                        }
                    }
                }
                for (vars, values) in r.states.iter().zip(&states) {
                    for (var, v) in vars.iter().zip(values) {
                        if let Some(v) = v {
                            var.set(v)?;
                        }
                    }
                }
                r.w_opt = w_opt;
                r.mask_opt = mask_opt;
            }
        }
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
