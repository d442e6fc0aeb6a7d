//! [`Learner`]: one strategy's models, masks and optimizer state behind one interface, for
//! every strategy ([`Strategy`]) and both backends ([`Backend`]).

use super::backend::{Backend, Ctx, Elem, Reference, Store, values_of, with_store};
use super::head::{Head, HeadRows};
use super::strategy::{Models, StepSettings, Strategy};
use crate::config::{EngineChoice, RunConfig};
use crate::engine::{Engine, Plan};
use crate::gate::Regularizer;
use crate::gate::{GateMode, GateView, MaskBank, MaskStats};
use crate::model::{ModelSpec, Network, WeightInit};
use crate::optim::{OptimizerConfig, Slot};
use crate::params::{
    Anchor, Consolidation, MASK_SLOTS, ModelId, ParamKey, ParamStore, Penalty, TaskId, TaskMasks,
    W_SLOTS,
};
use crate::rng::Rng;
use crate::task::{Batch, Objective};
use candle_core::{DType, Device, Result, Shape, Tensor};
use std::collections::HashMap;

/// Which backend trains a learner.
#[derive(Debug, Clone)]
enum Trains {
    Fast(Box<Engine>),
    Reference(Reference),
}

impl Trains {
    fn get(&self) -> &dyn Backend {
        match self {
            Trains::Fast(engine) => engine.as_ref(),
            Trains::Reference(r) => r,
        }
    }

    fn get_mut(&mut self) -> &mut dyn Backend {
        match self {
            Trains::Fast(engine) => engine.as_mut(),
            Trains::Reference(r) => r,
        }
    }
}

/// One strategy's models, masks and optimizers.
///
/// Every tensor lives once, in a [`ParamStore`]. Training steps run on the fast [`Engine`]
/// when it covers the run (f32 on the CPU), which updates the store's buffers in place, else
/// on candle's autograd (the reference), which builds its graph from the store for each step
/// and writes the update back with the same update rules; both implement [`Backend`]. What the
/// rest of gatekit reads (a [`Network`], a [`MaskBank`], checkpoint tensors) is made from the
/// store when asked.
#[derive(Debug, Clone)]
pub struct Learner {
    ctx: Ctx,
    store: Store,
    backend: Trains,
    /// Why `engine = "fast"` fell back to the reference (none when it did not).
    engine_refusal: Option<String>,
}

impl Learner {
    /// The task of a one-task learner ([`Learner::starting_from`]): the new task that
    /// `gtk adapt` trains a mask or a baseline for.
    pub const NEW_TASK: TaskId = TaskId(0);

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
        let mut store = match dtype {
            DType::F64 => Store::F64(store_of(&nets, &initial, sets, task_names.len())?),
            _ => Store::F32(store_of(&nets, &initial, sets, task_names.len())?),
        };
        if let Some(penalty) = strategy.penalty() {
            with_store!(&mut store, s => {
                s.consolidation = Some(new_consolidation(penalty, run, &s.models[0]));
            });
        }
        let mut engine_refusal = None;
        let backend = match (run.engine, dtype, device) {
            (EngineChoice::Fast, DType::F32, Device::Cpu) => match Plan::compile(spec) {
                Ok(plan) => Trains::Fast(Box::new(Engine::new(plan, layout.gated))),
                Err(why) => {
                    engine_refusal = Some(why.to_string());
                    Trains::Reference(Reference)
                }
            },
            (EngineChoice::Fast, DType::F32, _) => {
                engine_refusal = Some("the engine runs on the CPU only".into());
                Trains::Reference(Reference)
            }
            (EngineChoice::Fast, dtype, _) => {
                engine_refusal = Some(format!("the engine runs in f32 only, the run is {dtype:?}"));
                Trains::Reference(Reference)
            }
            (EngineChoice::Reference, ..) => Trains::Reference(Reference),
        };
        let ctx = Ctx {
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
            // XdG's gates are binary: the STE gate's forward value is exactly 1[M > 0].
            gate: if layout.fixed_gates {
                GateMode::Ste
            } else {
                run.gates.mode
            },
            regularizer: if layout.fixed_gates {
                (Regularizer::None, 0.0)
            } else {
                (
                    run.gates.mask_regularizer,
                    run.gates.mask_regularizer_weight,
                )
            },
            heads: None,
            head_params: super::xdg::output_layer(&nets[0].param_shapes()),
            xdg_share_off: run.continual.xdg_share_off,
            xdg_gate_bias: run.continual.xdg_gate_bias,
        };
        Ok(Learner {
            ctx,
            store,
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
        let mut run = run.clone();
        run.w_init = WeightInit::Zeros;
        run.gates.mask_regularizer = Regularizer::None;
        let mut learner =
            Learner::new(strategy, &run, start.spec(), &["new".to_string()], &device)?;
        learner.ctx.w_config = optimizers.0;
        learner.ctx.mask_config = optimizers.1;
        let gated = learner.ctx.gated();
        fn fill<T: Elem>(
            store: &mut ParamStore<T>,
            start: &Network,
            masks: Option<Vec<Tensor>>,
            gated: bool,
        ) -> Result<()> {
            let model = &mut store.models[ModelId::ONLY.index()];
            *model = (start.params().iter())
                .map(|(_, v)| values_of::<T>(v))
                .collect::<Result<_>>()?;
            if let (true, Some(masks)) = (gated, masks) {
                if masks.len() != model.len() {
                    candle_core::bail!("starting masks do not match the network's parameters");
                }
                let values = masks
                    .iter()
                    .map(values_of::<T>)
                    .collect::<Result<Vec<_>>>()?;
                let slots = values.iter().map(|_| Slot::default()).collect();
                store.masks[Learner::NEW_TASK.index()] = Some(TaskMasks { values, slots });
            }
            Ok(())
        }
        with_store!(&mut learner.store, s => fill(s, start, masks, gated))?;
        Ok(learner)
    }

    /// Changes the gate function (the trainer switches to the STE gate at `binarize_after`);
    /// XdG's fixed binary gates keep theirs.
    pub fn set_gate_mode(&mut self, mode: GateMode) {
        if !self.ctx.strategy.layout().fixed_gates {
            self.ctx.gate = mode;
        }
    }

    /// The learner with Task-IL's output heads, one per task ([`super::heads_for`]; `None`:
    /// one head shared by every task).
    pub fn with_heads(mut self, heads: Option<Vec<Head>>) -> Self {
        self.ctx.heads = heads;
        self
    }

    /// Task `task`'s output head (Task-IL only): the units its logits are read from, and the
    /// offset that names its labels' units.
    pub fn head(&self, task: TaskId) -> Option<&Head> {
        self.ctx.head(task)
    }

    /// Forgets every mask's optimizer state (momentum, Adam's moments, its step count), as if
    /// the masks had never been updated: used when the gate function changes under them.
    pub fn reset_mask_optimizer(&mut self) {
        with_store!(&mut self.store, s => {
            for m in s.masks.iter_mut().flatten() {
                for slot in &mut m.slots {
                    *slot = Default::default();
                }
            }
        });
    }

    /// The current gate function.
    pub fn gate_mode(&self) -> GateMode {
        self.ctx.gate
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.ctx.strategy
    }

    /// `"fast"` when training steps run on gatekit's own engine, `"reference"` when on candle's
    /// autograd (f64 runs, non-CPU devices, `engine = "reference"`).
    pub fn engine_name(&self) -> &'static str {
        self.backend.get().name()
    }

    /// Why the run asked for the fast engine but trains on the reference (the model has a layer
    /// or shape the engine does not cover, f64, another device); `None` otherwise.
    pub fn engine_refusal(&self) -> Option<&str> {
        self.engine_refusal.as_deref()
    }

    /// The network that serves task `task`, with its current weights (gated: `W`, without
    /// the task's masks).
    pub fn network(&self, task: TaskId) -> Result<Network> {
        self.model(self.model_of(task))
    }

    /// Model `model`'s network with its current weights: [`ModelId::ONLY`] is "the model" of a
    /// one-model strategy (gated's `W`, the plain model of shared, finetune and joint). An
    /// error for a model the strategy does not have.
    pub fn model(&self, model: ModelId) -> Result<Network> {
        self.ctx.model(&self.store, model)
    }

    /// The model that answers task `task` ([`Strategy::model_of`]).
    pub fn model_of(&self, task: TaskId) -> ModelId {
        self.ctx.strategy.model_of(task)
    }

    /// Every task's masks (gated only), made from the store.
    pub fn masks(&self) -> Result<Option<MaskBank>> {
        self.ctx
            .masks(&self.store, (0..self.ctx.task_names.len()).map(TaskId))
    }

    /// The tasks that have masks (gated only: the tasks trained so far), without copying them.
    pub fn masked_tasks(&self) -> Vec<TaskId> {
        with_store!(&self.store, s => (s.masks.iter().enumerate())
            .filter_map(|(t, m)| m.as_ref().map(|_| TaskId(t)))
            .collect())
    }

    /// Task `task`'s layer state ([`Network::state_specs`]; empty for a model without
    /// stateful layers).
    pub fn layer_state(&self, task: TaskId) -> Result<Vec<Tensor>> {
        (self.ctx).state_of_set(&self.store, self.ctx.state_set(task))
    }

    /// Whether the model keeps per-task layer state (batch norm's running statistics).
    pub fn has_layer_state(&self) -> bool {
        !self.ctx.state_specs.is_empty()
    }

    /// Task `task`'s layer state re-estimated from `batches` (inputs of the task's training
    /// data) under `view` of its gates: each batch goes through the network in training mode
    /// (every batch-norm layer normalizes with the batch's own statistics, as when the state
    /// was first gathered) and the state is the plain average of the batches' statistics
    /// (mean, unbiased variance): PyTorch's cumulative average (`momentum=None`), not the
    /// exponential one training uses. Why: the binarized model `W ⊙ 1[M > 0]` scales every
    /// layer differently from the soft gates the running statistics were gathered under, so
    /// its batch norms need statistics of their own. Reads the store, never writes it; a model
    /// without layer state gets an empty list.
    pub fn estimate_state(
        &self,
        task: TaskId,
        scale: f64,
        view: GateView,
        batches: &[Tensor],
    ) -> Result<Vec<Tensor>> {
        if !self.has_layer_state() || batches.is_empty() {
            return self.layer_state(task);
        }
        // The same network with every batch norm's momentum at 1: after a training-mode pass
        // its state is exactly that batch's statistics.
        let mut spec = self.ctx.spec.clone();
        for layer in &mut spec.layers {
            match layer {
                crate::layers::LayerSpec::BatchNorm1d(bn) => bn.momentum = 1.0,
                crate::layers::LayerSpec::BatchNorm2d(bn) => bn.momentum = 1.0,
                _ => {}
            }
        }
        let net = self.ctx.model(&self.store, self.model_of(task))?;
        let params = net.params().iter().map(|(_, v)| v.clone()).collect();
        let net = Network::from_params(&spec, params)?;
        let masks = self.ctx.task_masks(&self.store, task)?;
        let gate = masks.as_deref().map(|masks| crate::gate::TaskGate {
            masks,
            mode: self.ctx.gate,
            scale,
            view,
        });
        let mut sums: Option<Vec<Tensor>> = None;
        for x in batches {
            let mut state = self.layer_state(task)?;
            net.forward_with_state(x, gate.as_ref(), crate::model::NetState::Train(&mut state))?;
            sums = Some(match sums {
                None => state
                    .iter()
                    .map(|s| s.to_dtype(DType::F64))
                    .collect::<Result<_>>()?,
                Some(sums) => sums
                    .iter()
                    .zip(&state)
                    .map(|(a, b)| a + b.to_dtype(DType::F64)?)
                    .collect::<Result<_>>()?,
            });
        }
        let n = batches.len() as f64;
        sums.unwrap_or_default()
            .iter()
            .map(|s| (s / n)?.to_dtype(self.ctx.dtype))
            .collect()
    }

    /// Replaces task `task`'s layer state (e.g. with [`Learner::estimate_state`]'s, on a copy
    /// of a learner that measures or exports the binarized model).
    pub fn set_layer_state(&mut self, task: TaskId, state: &[Tensor]) -> Result<()> {
        let set = self.ctx.state_set(task);
        if state.len() != self.ctx.state_specs.len() {
            candle_core::bail!(
                "{} state tensors given, the model keeps {}",
                state.len(),
                self.ctx.state_specs.len()
            );
        }
        fn put<T: Elem>(store: &mut ParamStore<T>, set: usize, state: &[Tensor]) -> Result<()> {
            let values = state
                .iter()
                .map(values_of::<T>)
                .collect::<Result<Vec<_>>>()?;
            store.states[set] = values;
            Ok(())
        }
        with_store!(&mut self.store, s => put(s, set, state))
    }

    /// Number of scalars trained (W plus every task's masks, or every model).
    pub fn param_count(&self) -> usize {
        let per_model: usize = self.ctx.params.iter().map(|(_, s)| s.elem_count()).sum();
        let tasks = self.ctx.task_names.len();
        if self.ctx.gated() {
            per_model * (1 + tasks)
        } else {
            per_model * self.ctx.strategy.layout().model_count(tasks)
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
        self.ctx.ensure_masks(&mut self.store, task)?;
        let Some(head) = self.ctx.head(task) else {
            return (self.backend.get_mut()).train_step(
                &self.ctx,
                &mut self.store,
                task,
                batch,
                objective,
                at,
            );
        };
        // The other tasks' heads keep their weights and optimizer state through the step.
        let (model, params) = (self.ctx.model_of(task), &self.ctx.head_params);
        let kept =
            with_store!(&self.store, s => Kept::from(HeadRows::keep(s, model, params, head)));
        let out = (self.backend.get_mut()).train_step(
            &self.ctx,
            &mut self.store,
            task,
            batch,
            objective,
            at,
        );
        match (kept, &mut self.store) {
            (Kept::F32(k), Store::F32(s)) => k.restore(s, model, head),
            (Kept::F64(k), Store::F64(s)) => k.restore(s, model, head),
            _ => {}
        }
        out
    }

    /// The end of task `task` for a strategy with a penalty against forgetting (`ewc`,
    /// `online-ewc`, `si`; nothing for the others): EWC estimates the task's diagonal Fisher
    /// at `examples` (training examples of the task, one per row; see
    /// `Ctx::diagonal_fisher`) and adds its term, online EWC folds it into the running one,
    /// SI turns the task's path integral into importance. The trainer calls it at the end of
    /// every phase but the last.
    pub fn end_task(&mut self, task: TaskId, examples: Option<&Tensor>) -> Result<()> {
        let Some(penalty) = self.ctx.strategy.penalty() else {
            return Ok(());
        };
        let fisher = match (penalty, examples) {
            (Penalty::Si, _) => None,
            (_, Some(x)) => Some(self.ctx.diagonal_fisher(&self.store, task, x)?),
            (_, None) => candle_core::bail!(
                "`{}` needs the finished task's training examples to estimate its Fisher",
                self.ctx.strategy
            ),
        };
        fn end<T: Elem>(store: &mut ParamStore<T>, fisher: Option<Vec<Vec<f64>>>) {
            let fisher = fisher.map(|f| {
                f.into_iter()
                    .map(|v| v.into_iter().map(T::from_f64).collect())
                    .collect()
            });
            if let Some(c) = store.consolidation.as_mut() {
                c.end_task(&store.models[0], fisher);
            }
        }
        with_store!(&mut self.store, s => end(s, fisher));
        Ok(())
    }

    /// The penalty against forgetting's value at the current weights (0 without one): what
    /// the penalised strategies add to the task loss, which the training loss leaves out.
    pub fn penalty_value(&self) -> f64 {
        with_store!(&self.store, s => s
            .consolidation
            .as_ref()
            .map_or(0.0, |c| c.value(&s.models[0])))
    }

    /// The model's output for task `task` (no training) under a view of the gates; in Task-IL
    /// the units outside the task's head read [`super::head::OFF`] (its labels' units are
    /// [`Head::labels`]).
    pub fn predict(&self, task: TaskId, x: &Tensor, scale: f64, view: GateView) -> Result<Tensor> {
        let out = (self.backend.get()).predict(&self.ctx, &self.store, task, x, scale, view)?;
        match self.ctx.head(task) {
            Some(h) => h.mask_tensor(&out),
            None => Ok(out),
        }
    }

    /// Whether evaluation can run on the fast engine ([`Learner::eval_params`] and
    /// [`Learner::predict_batch`]); the reference path (f64, other devices) evaluates through
    /// [`Learner::predict`].
    pub fn has_engine(&self) -> bool {
        matches!(self.backend, Trains::Fast(_))
    }

    /// The effective parameters `W ⊙ g(M_task)` (or `W`) of task `task` under `view`, followed
    /// by the task's layer state, as the engine reads them: computed once per evaluation and
    /// reused for every batch, with the same candle gate code as [`Learner::predict`] (so
    /// every [`GateView`] means the same).
    pub fn eval_params(&self, task: TaskId, scale: f64, view: GateView) -> Result<Vec<Vec<f32>>> {
        self.ctx.eval_params(&self.store, task, scale, view)
    }

    /// The engine's outputs `[n, outputs]` for `n` inputs `x` (flat `f32`) under each of
    /// several parameter sets from [`Learner::eval_params`] (of this learner or of another
    /// learner of the same model), in one pass over `x` on all threads; `None` without an
    /// engine.
    pub fn predict_batch(&self, params: &[&[Vec<f32>]], x: &[f32]) -> Option<Vec<Vec<f32>>> {
        let Trains::Fast(engine) = &self.backend else {
            return None;
        };
        let params: Vec<Vec<&[f32]>> = params
            .iter()
            .map(|p| p.iter().map(Vec::as_slice).collect())
            .collect();
        Some(engine.predict_batch_many(&params, x))
    }

    /// Off/undecided shares per gated parameter for task `task` (empty unless gated and picked).
    pub fn mask_stats(&self, task: TaskId, scale: f64) -> Result<Vec<(String, MaskStats)>> {
        match self.ctx.masks(&self.store, [task])? {
            None => Ok(Vec::new()),
            Some(bank) => Ok(bank
                .param_names()
                .iter()
                .cloned()
                .zip(bank.stats(task, self.ctx.gate, scale)?)
                .collect()),
        }
    }

    /// The key of state tensor `name` of state set `set` ([`Ctx::state_set`]).
    fn state_key<'a>(&'a self, set: usize, name: &'a str) -> ParamKey<'a> {
        if self.ctx.gated() {
            ParamKey::TaskState {
                param: name,
                task: &self.ctx.task_names[set],
            }
        } else {
            self.param_key(ModelId(set), name)
        }
    }

    /// The key of parameter `name` of model `model`: a per-task model's is under its task's
    /// name.
    fn param_key<'a>(&'a self, model: ModelId, name: &'a str) -> ParamKey<'a> {
        match self.ctx.strategy.layout().models {
            Models::PerTask => ParamKey::TaskWeight {
                task: &self.ctx.task_names[model.index()],
                param: name,
            },
            Models::One => ParamKey::Weight { param: name },
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
        let s = self.ctx.strategy.as_str();
        let device = &self.ctx.device;
        let mut out = Vec::new();
        let mut slots: Vec<(String, &Slot<T>, &Shape)> = Vec::new();
        for (t, (weights, w_slots)) in store.models.iter().zip(&store.w_slots).enumerate() {
            for (((name, shape), w), slot) in self.ctx.params.iter().zip(weights).zip(w_slots) {
                let key = self.param_key(ModelId(t), name);
                out.push((key.in_strategy(s), Tensor::from_slice(w, shape, device)?));
                slots.push((key.slot(s, W_SLOTS), slot, shape));
            }
        }
        for (task, m) in store.masks.iter().enumerate() {
            let Some(m) = m else { continue };
            let tname = &self.ctx.task_names[task];
            for (((name, shape), v), slot) in self.ctx.params.iter().zip(&m.values).zip(&m.slots) {
                let key = ParamKey::Mask {
                    param: name,
                    task: tname,
                };
                out.push((key.in_strategy(s), Tensor::from_slice(v, shape, device)?));
                slots.push((key.slot(s, MASK_SLOTS), slot, shape));
            }
        }
        for (set, values) in store.states.iter().enumerate() {
            for ((name, shape), v) in self.ctx.state_specs.iter().zip(values) {
                let key = self.state_key(set, name).in_strategy(s);
                out.push((key, Tensor::from_slice(v, shape, device)?));
            }
        }
        if let Some(c) = &store.consolidation {
            let shapes = &self.ctx.params;
            for (k, term) in c.terms.iter().enumerate() {
                for (((name, shape), imp), anchor) in
                    shapes.iter().zip(&term.importance).zip(&term.anchor)
                {
                    let key = format!("{s}/{PENALTY}.{k}/{name}");
                    out.push((
                        format!("{key}.importance"),
                        Tensor::from_slice(imp, shape, device)?,
                    ));
                    out.push((
                        format!("{key}.anchor"),
                        Tensor::from_slice(anchor, shape, device)?,
                    ));
                }
            }
            if let Some(path) = &c.path {
                for (((name, shape), omega), start) in
                    shapes.iter().zip(&path.omega).zip(&path.start)
                {
                    let key = format!("{s}/{PATH}/{name}");
                    out.push((
                        format!("{key}.omega"),
                        Tensor::from_slice(omega, shape, device)?,
                    ));
                    out.push((
                        format!("{key}.start"),
                        Tensor::from_slice(start, shape, device)?,
                    ));
                }
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
        let s = self.ctx.strategy.as_str();
        let dtype = self.ctx.dtype;
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
            for (p, (name, shape)) in self.ctx.params.iter().enumerate() {
                let key = self.param_key(ModelId(t), name);
                store.models[t][p] = require(&key.in_strategy(s), shape)?;
                store.w_slots[t][p] = slot(&key.slot(s, W_SLOTS))?;
            }
        }
        for (task, tname) in self.ctx.task_names.iter().enumerate() {
            // A task has all its masks or none (never trained).
            let trained = self.ctx.params.first().is_some_and(|(param, _)| {
                tensors.contains_key(&ParamKey::Mask { param, task: tname }.in_strategy(s))
            });
            if !self.ctx.gated() || !trained {
                continue;
            }
            let mut values = Vec::with_capacity(self.ctx.params.len());
            let mut slots = Vec::with_capacity(self.ctx.params.len());
            for (name, shape) in &self.ctx.params {
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
            for (k, (name, shape)) in self.ctx.state_specs.iter().enumerate() {
                if let Some(v) = get(&self.state_key(set, name).in_strategy(s), shape)? {
                    store.states[set][k] = v;
                }
            }
        }
        self.load_consolidation(store, tensors)
    }

    /// Restores a penalty against forgetting ([`Learner::tensors`] wrote it): the terms
    /// `{s}/penalty.{k}/…` in order until the first missing one, and SI's running sums; a
    /// checkpoint without them (before the first task ended) keeps the fresh penalty, whose
    /// SI start is the loaded weights.
    fn load_consolidation<T: Elem>(
        &self,
        store: &mut ParamStore<T>,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<()> {
        let Some(c) = store.consolidation.as_mut() else {
            return Ok(());
        };
        let s = self.ctx.strategy.as_str();
        let get = |key: &str, shape: &Shape| -> Result<Option<Vec<T>>> {
            match tensors.get(key) {
                None => Ok(None),
                Some(t) if t.shape() != shape || t.dtype() != self.ctx.dtype => {
                    candle_core::bail!(
                        "`{key}` is {:?} {:?}, expected {:?} {:?}",
                        t.dtype(),
                        t.dims(),
                        self.ctx.dtype,
                        shape.dims()
                    )
                }
                Some(t) => values_of::<T>(t).map(Some),
            }
        };
        let require = |key: &str, shape: &Shape| -> Result<Vec<T>> {
            get(key, shape)?
                .ok_or_else(|| candle_core::Error::msg(format!("missing tensor `{key}`")))
        };
        let params = &self.ctx.params;
        let mut terms = Vec::new();
        for k in 0.. {
            let first =
                (params.first()).map(|(name, _)| format!("{s}/{PENALTY}.{k}/{name}.importance"));
            if !first.is_some_and(|key| tensors.contains_key(&key)) {
                break;
            }
            let mut term = Anchor {
                importance: Vec::new(),
                anchor: Vec::new(),
            };
            for (name, shape) in params {
                let key = format!("{s}/{PENALTY}.{k}/{name}");
                term.importance
                    .push(require(&format!("{key}.importance"), shape)?);
                term.anchor.push(require(&format!("{key}.anchor"), shape)?);
            }
            terms.push(term);
        }
        c.terms = terms;
        if let Some(path) = c.path.as_mut() {
            for (p, (name, shape)) in params.iter().enumerate() {
                let key = format!("{s}/{PATH}/{name}");
                path.omega[p] = get(&format!("{key}.omega"), shape)?
                    .unwrap_or_else(|| vec![T::from_f64(0.0); shape.elem_count()]);
                path.start[p] = get(&format!("{key}.start"), shape)?
                    .unwrap_or_else(|| store.models[0][p].clone());
            }
        }
        Ok(())
    }
}

/// [`HeadRows`] of a store in either float type.
enum Kept {
    F32(HeadRows<f32>),
    F64(HeadRows<f64>),
}

impl From<HeadRows<f32>> for Kept {
    fn from(k: HeadRows<f32>) -> Self {
        Kept::F32(k)
    }
}

impl From<HeadRows<f64>> for Kept {
    fn from(k: HeadRows<f64>) -> Self {
        Kept::F64(k)
    }
}

/// `{strategy}/penalty.{k}/{param}.importance` and `.anchor`: term `k` of a penalty against
/// forgetting ([`Consolidation`]) in a checkpoint.
const PENALTY: &str = "penalty";
/// `{strategy}/path/{param}.omega` and `.start`: SI's running path integral in a checkpoint.
const PATH: &str = "path";

/// The penalty of `penalty` for a model starting at `weights`, with the run's settings: EWC's
/// strength λ/2, online EWC's λγ/2 (the running Fisher weighed by γ, as Schwarz et al. and
/// the reference code do), SI's c.
fn new_consolidation<T: Elem>(
    penalty: Penalty,
    run: &RunConfig,
    weights: &[Vec<T>],
) -> Consolidation<T> {
    let c = &run.continual;
    let strength = match penalty {
        Penalty::Ewc => c.ewc_lambda / 2.0,
        Penalty::OnlineEwc => c.ewc_lambda * c.ewc_gamma / 2.0,
        Penalty::Si => c.si_c,
    };
    Consolidation::new(penalty, strength, c.ewc_gamma, c.si_xi, weights)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskSet;

    /// The batched Fisher of a linear network (`(δ ∘ δ)ᵀ (a ∘ a)` per chunk of examples) is the
    /// per-example one: 600 examples (two full chunks and a partial one) through a
    /// 6-16-12-5 ReLU net, in f64.
    #[test]
    fn batched_fisher_equals_the_per_example_one() -> Result<()> {
        let text = "[run]\nschedule = \"sequential\"\nphase_steps = 5\ndtype = \"f64\"\n\
            [model]\nname = \"mlp\"\ninput = [6]\n\
            [[model.layer]]\ntype = \"linear\"\nout = 16\n[[model.layer]]\ntype = \"relu\"\n\
            [[model.layer]]\ntype = \"linear\"\nout = 12\n[[model.layer]]\ntype = \"relu\"\n\
            [[model.layer]]\ntype = \"linear\"\nout = 5\n\
            [defaults]\nkind = \"linear\"\ninputs = 6\noutputs = 5\n[[task]]\nname = \"a\"\n";
        let set = TaskSet::parse_with(
            text,
            std::path::Path::new("mlp.toml"),
            &|_: &str| unreachable!(),
        )
        .expect("set parses");
        let learner = Learner::new(
            Strategy::Ewc,
            &set.run,
            &set.model,
            &["a".to_string()],
            &Device::Cpu,
        )?;
        let mut rng = Rng::stream(7, "fisher-test", 0);
        let xs: Vec<f64> = (0..600 * 6).map(|_| rng.normal() * 1.5).collect();
        let x = Tensor::from_vec(xs, (600, 6), &Device::Cpu)?;
        let batched = learner.ctx.diagonal_fisher(&learner.store, TaskId(0), &x)?;
        let looped = (learner.ctx).diagonal_fisher_per_example(&learner.store, TaskId(0), &x)?;
        assert_eq!(batched.len(), 6);
        let mut largest = 0f64;
        for (b, l) in batched.iter().zip(&looped) {
            assert_eq!(b.len(), l.len());
            for (b, l) in b.iter().zip(l) {
                assert!((b - l).abs() <= 1e-10 * (1.0 + l.abs()), "{b} vs {l}");
                largest = largest.max(*l);
            }
        }
        assert!(
            largest > 1e-3,
            "a Fisher of all zeros proves nothing: {largest}"
        );
        Ok(())
    }
}
