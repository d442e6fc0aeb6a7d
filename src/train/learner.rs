//! The strategies behind one interface: `gated` (shared W, one mask set per task), `shared`
//! (one plain model, task ignored), `separate` (one plain model per task), and for the
//! sequential schedule `finetune` and `joint` (one plain model each). They all
//! run the same [`Network`] code; only the gate and the parameter set differ.

use super::continual::TaskOrder;
use crate::engine::{Engine, Plan, Rule, StepRules, Targets};
use crate::gate::Regularizer;
use crate::gate::{GateMode, GateView, MaskBank, MaskInit, MaskStats, TaskGate};
use crate::model::{ModelSpec, NetState, Network, WeightInit};
use crate::optim::{OptimizerConfig, Slot};
use crate::params::{MASK_SLOTS, ParamKey, ParamStore, TaskId, TaskMasks, W_SLOTS};
use crate::rng::Rng;
use crate::task::{Batch, Objective};
use crate::train::{EngineChoice, RunConfig};
use candle_core::{CpuStorage, DType, Device, Result, Shape, Storage, Tensor, Var};
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

/// A strategy's [`ParamStore`] in the run's float type.
#[derive(Debug, Clone)]
enum Store {
    F32(ParamStore<f32>),
    F64(ParamStore<f64>),
}

/// Runs `$body` with `$s` bound to the store, whichever its float type.
macro_rules! with_store {
    ($store:expr, $s:ident => $body:expr) => {
        match $store {
            Store::F32($s) => $body,
            Store::F64($s) => $body,
        }
    };
}

/// A float type a store can hold, with the update rule for it.
trait Elem: candle_core::WithDType {
    fn store_mut(store: &mut Store) -> Option<&mut ParamStore<Self>>;
    fn update(p: &mut [Self], g: &[Self], slot: &mut Slot<Self>, c: OptimizerConfig, factor: f64);
}

impl Elem for f32 {
    fn store_mut(store: &mut Store) -> Option<&mut ParamStore<f32>> {
        match store {
            Store::F32(s) => Some(s),
            Store::F64(_) => None,
        }
    }

    fn update(p: &mut [f32], g: &[f32], slot: &mut Slot<f32>, c: OptimizerConfig, factor: f64) {
        crate::engine::update(p, g, slot, rule(c, factor));
    }
}

impl Elem for f64 {
    fn store_mut(store: &mut Store) -> Option<&mut ParamStore<f64>> {
        match store {
            Store::F64(s) => Some(s),
            Store::F32(_) => None,
        }
    }

    fn update(p: &mut [f64], g: &[f64], slot: &mut Slot<f64>, c: OptimizerConfig, factor: f64) {
        crate::optim::update_f64(p, g, slot, c.kind, (c.lr * factor, c.momentum, c.beta2));
    }
}

/// The engine's `f32` rule for optimizer `c` at `factor` × its rate.
fn rule(c: OptimizerConfig, factor: f64) -> Rule {
    Rule {
        kind: c.kind,
        lr: (c.lr * factor) as f32,
        momentum: c.momentum as f32,
        beta2: c.beta2 as f32,
    }
}

/// A tensor's values as a flat vector of `T`.
fn values_of<T: Elem>(t: &Tensor) -> Result<Vec<T>> {
    t.flatten_all()?.to_dtype(T::DTYPE)?.to_vec1::<T>()
}

/// One strategy's models, masks and optimizers.
///
/// Every tensor lives once, in a [`ParamStore`]. Training steps run on the fast [`Engine`]
/// when it covers the run (f32 on the CPU), which updates the store's buffers in place, else
/// on candle's autograd (the reference), which builds its graph from the store for each step
/// and writes the update back with the same update rules. What the rest of gatekit reads (a
/// [`Network`], a [`MaskBank`], checkpoint tensors) is made from the store when asked.
#[derive(Debug, Clone)]
pub struct Learner {
    strategy: Strategy,
    task_names: Vec<String>,
    spec: ModelSpec,
    dtype: DType,
    device: Device,
    /// The parameters' names and shapes, in the network's order.
    params: Vec<(String, Shape)>,
    /// The layers' per-task state tensors' names and shapes.
    state_specs: Vec<(String, Shape)>,
    /// How a task's masks start.
    mask_init: MaskInit,
    seed: u64,
    w_config: OptimizerConfig,
    mask_config: OptimizerConfig,
    gate: GateMode,
    regularizer: (Regularizer, f64),
    store: Store,
    /// The fast engine, when it runs this learner's steps.
    engine: Option<Box<Engine>>,
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
        let initial = nets[0].initial_state(dtype, device)?;
        fn store_of<T: Elem>(
            nets: &[Network],
            initial: &[Tensor],
            sets: usize,
            tasks: usize,
        ) -> Result<ParamStore<T>> {
            let models = (nets.iter())
                .map(|n| n.params().iter().map(|(_, v)| values_of::<T>(v)).collect())
                .collect::<Result<Vec<_>>>()?;
            let state = initial
                .iter()
                .map(values_of::<T>)
                .collect::<Result<Vec<_>>>()?;
            Ok(ParamStore::new(models, vec![state; sets], tasks))
        }
        let store = match dtype {
            DType::F64 => Store::F64(store_of(&nets, &initial, sets, task_names.len())?),
            _ => Store::F32(store_of(&nets, &initial, sets, task_names.len())?),
        };
        let mut engine_refusal = None;
        let engine = match (run.engine, dtype, device) {
            (EngineChoice::Fast, DType::F32, Device::Cpu) => match Plan::compile(spec) {
                Ok(plan) => Some(Box::new(Engine::new(plan, layout.gated))),
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
            strategy,
            task_names: task_names.to_vec(),
            spec: spec.clone(),
            dtype,
            device: device.clone(),
            params: nets[0].param_shapes(),
            state_specs: (nets[0].state_specs().iter())
                .map(|(n, s)| (n.clone(), Shape::from(s.shape.clone())))
                .collect(),
            mask_init: run.mask_init(),
            seed: run.seed,
            w_config: run.w_optimizer(),
            mask_config: run.mask_optimizer(),
            gate: run.gate,
            regularizer: (run.mask_regularizer, run.mask_regularizer_weight),
            store,
            engine,
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
        let gated = learner.gated();
        fn fill<T: Elem>(
            store: &mut ParamStore<T>,
            start: &Network,
            masks: Option<Vec<Tensor>>,
            gated: bool,
        ) -> Result<()> {
            store.models[0] = (start.params().iter())
                .map(|(_, v)| values_of::<T>(v))
                .collect::<Result<_>>()?;
            if let (true, Some(masks)) = (gated, masks) {
                if masks.len() != store.models[0].len() {
                    candle_core::bail!("starting masks do not match the network's parameters");
                }
                let values = masks
                    .iter()
                    .map(values_of::<T>)
                    .collect::<Result<Vec<_>>>()?;
                let slots = values.iter().map(|_| Slot::default()).collect();
                store.masks[0] = Some(TaskMasks { values, slots });
            }
            Ok(())
        }
        with_store!(&mut learner.store, s => fill(s, start, masks, gated))?;
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

    fn gated(&self) -> bool {
        self.strategy.layout().gated
    }

    /// The network that serves task `task`, with its current weights.
    pub fn network(&self, task: TaskId) -> Result<Network> {
        self.model(self.strategy.layout().model_of(task.index()))
    }

    /// Model `model`'s network, its weights made from the store.
    fn model(&self, model: usize) -> Result<Network> {
        let net = Network::new(
            &self.spec,
            WeightInit::Zeros,
            &mut Rng::new(0),
            self.dtype,
            &self.device,
        )?;
        fn fill<T: Elem>(net: &Network, values: &[Vec<T>], device: &Device) -> Result<()> {
            for ((_, var), v) in net.params().iter().zip(values) {
                var.set(&Tensor::from_slice(v, var.shape(), device)?)?;
            }
            Ok(())
        }
        with_store!(&self.store, s => fill(&net, &s.models[model], &self.device))?;
        Ok(net)
    }

    /// A bank that draws masks as every task's start ([`MaskBank::ensure`]).
    fn fresh_bank(&self) -> MaskBank {
        MaskBank::new(
            &self.params,
            self.mask_init,
            self.seed,
            self.dtype,
            &self.device,
        )
    }

    /// Task `task`'s stored masks as tensors, if it has any.
    fn stored_masks(&self, task: usize) -> Result<Option<Vec<Tensor>>> {
        fn get<T: Elem>(
            store: &ParamStore<T>,
            task: usize,
            shapes: &[(String, Shape)],
            device: &Device,
        ) -> Result<Option<Vec<Tensor>>> {
            let Some(m) = &store.masks[task] else {
                return Ok(None);
            };
            (m.values.iter().zip(shapes))
                .map(|(v, (_, shape))| Tensor::from_slice(v, shape, device))
                .collect::<Result<Vec<_>>>()
                .map(Some)
        }
        with_store!(&self.store, s => get(s, task, &self.params, &self.device))
    }

    /// Every task's masks (gated only), made from the store.
    pub fn masks(&self) -> Result<Option<MaskBank>> {
        if !self.gated() {
            return Ok(None);
        }
        let mut bank = self.fresh_bank();
        for task in 0..self.task_names.len() {
            if let Some(masks) = self.stored_masks(task)? {
                bank.insert(task, masks)?;
            }
        }
        Ok(Some(bank))
    }

    /// Task `task`'s masks (gated only); a task never picked yet gets the masks it would be
    /// given.
    fn task_masks(&self, task: usize) -> Result<Option<Vec<Var>>> {
        if !self.gated() {
            return Ok(None);
        }
        match self.stored_masks(task)? {
            Some(masks) => Ok(Some(
                masks.iter().map(Var::from_tensor).collect::<Result<_>>()?,
            )),
            None => Ok(Some(self.fresh_bank().ensure(task)?.to_vec())),
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
        fn get<T: Elem>(
            values: &[Vec<T>],
            specs: &[(String, Shape)],
            device: &Device,
        ) -> Result<Vec<Tensor>> {
            (values.iter().zip(specs))
                .map(|(v, (_, shape))| Tensor::from_slice(v, shape, device))
                .collect()
        }
        with_store!(&self.store, s => get(&s.states[set], &self.state_specs, &self.device))
    }

    /// Number of scalars trained (W plus every task's masks, or every model).
    pub fn param_count(&self) -> usize {
        let per_model: usize = self.params.iter().map(|(_, s)| s.elem_count()).sum();
        if self.gated() {
            per_model * (1 + self.task_names.len())
        } else {
            per_model * self.strategy.layout().model_count(self.task_names.len())
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
        if self.gated() && self.stored_masks(task)?.is_none() {
            // A task's first step: its masks start from their seeded draw.
            let drawn: Vec<Tensor> = (self.fresh_bank().ensure(task)?.iter())
                .map(|v| v.as_tensor().clone())
                .collect();
            fn put<T: Elem>(
                store: &mut ParamStore<T>,
                task: usize,
                drawn: &[Tensor],
            ) -> Result<()> {
                let values = drawn
                    .iter()
                    .map(values_of::<T>)
                    .collect::<Result<Vec<_>>>()?;
                let slots = values.iter().map(|_| Slot::default()).collect();
                store.masks[task] = Some(TaskMasks { values, slots });
                Ok(())
            }
            with_store!(&mut self.store, s => put(s, task, &drawn))?;
        }
        if self.engine.is_some() {
            return self.engine_step(task, batch, objective, at);
        }
        match self.store {
            Store::F32(_) => self.reference_step::<f32>(task, batch, objective, at),
            Store::F64(_) => self.reference_step::<f64>(task, batch, objective, at),
        }
    }

    /// [`Learner::train_step_scored`] on candle's autograd: the graph is built from the store,
    /// and the gradients update the store with the engine's rules.
    fn reference_step<T: Elem>(
        &mut self,
        task: usize,
        batch: &Batch,
        objective: Objective,
        at: StepSettings,
    ) -> Result<(f64, f64)> {
        let model = self.strategy.layout().model_of(task);
        let set = self.state_set(task);
        let net = self.model(model)?;
        let masks: Vec<Var> = self.task_masks(task)?.unwrap_or_default();
        let gate = TaskGate {
            masks: &masks,
            mode: self.gate,
            scale: at.gate_scale,
            view: GateView::Trained,
        };
        let mut state = self.state_of_set(set)?;
        let out = net.forward_with_state(
            &batch.x,
            self.gated().then_some(&gate),
            NetState::Train(&mut state),
        )?;
        let metric = objective.metric_sum(&out.detach(), &batch.y)?;
        let loss = objective.loss(&out, &batch.y)?;
        let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
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
        let (w_config, mask_config) = (self.w_config, self.mask_config);
        let Some(store) = T::store_mut(&mut self.store) else {
            candle_core::bail!("the store's float type is not the step's");
        };
        for (p, (_, var)) in net.params().iter().enumerate() {
            if let Some(g) = grads.get(var) {
                let g = values_of::<T>(g)?;
                let slot = &mut store.w_slots[model][p];
                T::update(
                    &mut store.models[model][p],
                    &g,
                    slot,
                    w_config,
                    at.w_lr_factor,
                );
            }
        }
        if let (Some(stored), true) = (store.masks[task].as_mut(), at.mask_lr_factor > 0.0) {
            for (p, m) in masks.iter().enumerate() {
                if let Some(g) = grads.get(m) {
                    let g = values_of::<T>(g)?;
                    let slot = &mut stored.slots[p];
                    T::update(
                        &mut stored.values[p],
                        &g,
                        slot,
                        mask_config,
                        at.mask_lr_factor,
                    );
                }
            }
        }
        for (dst, value) in store.states[set].iter_mut().zip(&state) {
            *dst = values_of::<T>(&value.detach())?;
        }
        Ok((value, metric))
    }

    /// [`Learner::train_step_scored`] on the fast engine, in place on the store.
    fn engine_step(
        &mut self,
        task: usize,
        batch: &Batch,
        objective: Objective,
        at: StepSettings,
    ) -> Result<(f64, f64)> {
        let gated = self.gated();
        let model = self.strategy.layout().model_of(task);
        let (Some(engine), Store::F32(store)) = (self.engine.as_deref_mut(), &mut self.store)
        else {
            candle_core::bail!("the engine needs an f32 store");
        };
        let count: usize = store.models[0].iter().map(Vec::len).sum();
        let rules = StepRules {
            w: rule(self.w_config, at.w_lr_factor),
            mask: (gated && at.mask_lr_factor > 0.0)
                .then(|| rule(self.mask_config, at.mask_lr_factor)),
            gate: self.gate,
            gate_scale: at.gate_scale as f32,
            regularizer: self.regularizer.0,
            reg_weight: (self.regularizer.1 / count.max(1) as f64) as f32,
        };
        let (xs, xl) = batch.x.storage_and_layout();
        let (ys, yl) = batch.y.storage_and_layout();
        let x = f32_slice(&xs, xl)?;
        let loss = engine
            .train_step(
                store,
                model,
                TaskId(task),
                x,
                targets_of(objective, &ys, yl)?,
                rules,
            )
            .map_err(candle_core::Error::wrap)?;
        let metric = crate::engine::score(
            engine.last_outputs(),
            targets_of(objective, &ys, yl)?,
            engine.output_len(),
        )
        .map_err(candle_core::Error::wrap)?
        .1;
        Ok((loss, metric))
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

    /// The model's output for task `task` (no training) under a view of the gates.
    pub fn predict(&self, task: TaskId, x: &Tensor, scale: f64, view: GateView) -> Result<Tensor> {
        if let Some(engine) = &self.engine {
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
        self.engine.is_some()
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
                Some(g) => values_of::<f32>(&g.apply(i, w.as_tensor())?),
                None => values_of::<f32>(w),
            })
            .collect::<Result<Vec<_>>>()?;
        for t in self.layer_state(task)? {
            params.push(values_of::<f32>(&t)?);
        }
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

    /// Every tensor of the store (weights, masks, layer state, optimizer state) keyed under
    /// `{strategy}/`: `gated/fc1.weight`, `gated/fc1.weight.mask.{task}`,
    /// `separate/{task}/fc1.weight`, `gated/bn1.running_mean.state.{task}`,
    /// `{strategy}/optim.w/fc1.weight.first`, `gated/optim.mask/….steps`. The same names and
    /// layout whichever backend trained it.
    pub fn tensors(&self) -> Result<Vec<(String, Tensor)>> {
        with_store!(&self.store, s => self.tensors_of(s))
    }

    fn tensors_of<T: Elem>(&self, store: &ParamStore<T>) -> Result<Vec<(String, Tensor)>> {
        let s = self.strategy.as_str();
        let device = &self.device;
        let mut out = Vec::new();
        let mut slots: Vec<(String, &Slot<T>, &Shape)> = Vec::new();
        for (t, (weights, w_slots)) in store.models.iter().zip(&store.w_slots).enumerate() {
            for (((name, shape), w), slot) in self.params.iter().zip(weights).zip(w_slots) {
                let key = self.param_key(t, name);
                out.push((key.in_strategy(s), Tensor::from_slice(w, shape, device)?));
                slots.push((key.slot(s, W_SLOTS), slot, shape));
            }
        }
        for (task, m) in store.masks.iter().enumerate() {
            let Some(m) = m else { continue };
            let tname = &self.task_names[task];
            for (((name, shape), v), slot) in self.params.iter().zip(&m.values).zip(&m.slots) {
                let key = ParamKey::Mask {
                    param: name,
                    task: tname,
                };
                out.push((key.in_strategy(s), Tensor::from_slice(v, shape, device)?));
                slots.push((key.slot(s, MASK_SLOTS), slot, shape));
            }
        }
        for (set, values) in store.states.iter().enumerate() {
            for ((name, shape), v) in self.state_specs.iter().zip(values) {
                let key = self.state_key(set, name).in_strategy(s);
                out.push((key, Tensor::from_slice(v, shape, device)?));
            }
        }
        for (key, slot, shape) in slots {
            if slot.steps == 0 {
                continue;
            }
            if !slot.first.is_empty() {
                out.push((
                    format!("{key}.first"),
                    Tensor::from_slice(&slot.first, shape, device)?,
                ));
            }
            if !slot.second.is_empty() {
                out.push((
                    format!("{key}.second"),
                    Tensor::from_slice(&slot.second, shape, device)?,
                ));
            }
            out.push((
                format!("{key}.steps"),
                Tensor::new(&[slot.steps as i64], device)?,
            ));
        }
        Ok(out)
    }

    /// Restores what [`Learner::tensors`] wrote into the store. Every weight must be present
    /// with its shape; the masks and layer state of a task without any keep their start.
    pub fn load(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        let mut store = self.store.clone();
        with_store!(&mut store, s => self.load_into(s, tensors))?;
        self.store = store;
        Ok(())
    }

    fn load_into<T: Elem>(
        &self,
        store: &mut ParamStore<T>,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<()> {
        let s = self.strategy.as_str();
        let dtype = self.dtype;
        let get = |key: &str, shape: &Shape| -> Result<Option<Vec<T>>> {
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
            values_of::<T>(src).map(Some)
        };
        let require = |key: &str, shape: &Shape| -> Result<Vec<T>> {
            get(key, shape)?
                .ok_or_else(|| candle_core::Error::msg(format!("missing tensor `{key}`")))
        };
        // An optimizer slot: `{key}.first`, `.second` (any float type: older reference
        // checkpoints), `.steps`.
        let slot = |key: &str| -> Result<Slot<T>> {
            let moment = |suffix: &str| -> Result<Vec<T>> {
                tensors
                    .get(&format!("{key}.{suffix}"))
                    .map_or(Ok(Vec::new()), values_of::<T>)
            };
            let steps = match tensors.get(&format!("{key}.steps")) {
                Some(t) => t
                    .flatten_all()?
                    .to_vec1::<i64>()?
                    .first()
                    .copied()
                    .unwrap_or(0),
                None => 0,
            };
            Ok(Slot {
                first: moment("first")?,
                second: moment("second")?,
                steps: steps.max(0) as u64,
            })
        };
        for t in 0..store.models.len() {
            for (p, (name, shape)) in self.params.iter().enumerate() {
                let key = self.param_key(t, name);
                store.models[t][p] = require(&key.in_strategy(s), shape)?;
                store.w_slots[t][p] = slot(&key.slot(s, W_SLOTS))?;
            }
        }
        for (task, tname) in self.task_names.iter().enumerate() {
            let key = |param: &'_ str| ParamKey::Mask { param, task: tname }.in_strategy(s);
            let Some((first, _)) = self.params.first() else {
                break;
            };
            if !self.gated() || !tensors.contains_key(&key(first)) {
                continue;
            }
            let mut values = Vec::with_capacity(self.params.len());
            let mut slots = Vec::with_capacity(self.params.len());
            for (name, shape) in &self.params {
                let mask = ParamKey::Mask {
                    param: name,
                    task: tname,
                };
                values.push(require(&mask.in_strategy(s), shape)?);
                slots.push(slot(&mask.slot(s, MASK_SLOTS))?);
            }
            store.masks[task] = Some(TaskMasks { values, slots });
        }
        for set in 0..store.states.len() {
            for (k, (name, shape)) in self.state_specs.iter().enumerate() {
                if let Some(v) = get(&self.state_key(set, name).in_strategy(s), shape)? {
                    store.states[set][k] = v;
                }
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

/// The contiguous `f32` values of a CPU tensor's storage.
fn f32_slice<'a>(storage: &'a Storage, layout: &candle_core::Layout) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("batch inputs are not contiguous f32 values on the CPU"),
    }
}
