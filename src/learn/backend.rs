//! The learner's two backends over one [`ParamStore`]: the fast [`Engine`] (default) and the
//! candle reference ([`Reference`]) implement one [`Backend`] trait for a training step and a
//! prediction, and keep no tensors of their own. [`Ctx`] makes what the rest of gatekit reads
//! (a [`Network`], a [`MaskBank`], a task's layer state, evaluation parameters) from the store.

use super::head::Head;
use super::strategy::StepSettings;
use super::strategy::Strategy;
use crate::engine::{Engine, Rule, StepRules, Targets};
use crate::gate::{GateMode, GateView, MaskBank, MaskInit, Regularizer, TaskGate};
use crate::model::{ModelSpec, NetState, Network};
use crate::optim::{OptimizerConfig, Slot};
use crate::params::{ModelId, ParamStore, TaskId, TaskMasks};
use crate::task::{Batch, Objective};
use candle_core::{CpuStorage, DType, Device, Result, Shape, Storage, Tensor, Var};

/// A strategy's [`ParamStore`] in the run's float type.
#[derive(Debug, Clone)]
pub(crate) enum Store {
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
pub(crate) use with_store;

/// A float type a store can hold, with the update rule for it.
pub(crate) trait Elem: candle_core::WithDType {
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

/// Buffers of a store as candle variables of the given shapes (one copy each).
fn vars<T: Elem>(
    values: &[Vec<T>],
    shapes: &[(String, Shape)],
    device: &Device,
) -> Result<Vec<Var>> {
    (values.iter().zip(shapes))
        .map(|(v, (_, shape))| Var::from_slice(v, shape, device))
        .collect()
}

/// A tensor's values as a flat vector of `T`.
pub(crate) fn values_of<T: Elem>(t: &Tensor) -> Result<Vec<T>> {
    t.flatten_all()?.to_dtype(T::DTYPE)?.to_vec1::<T>()
}

/// Examples per backward pass of the batched EWC Fisher ([`Ctx::diagonal_fisher`]).
const FISHER_BATCH: usize = 256;

/// Sums over `n` examples turned into means.
fn mean_over(mut sums: Vec<Vec<f64>>, n: usize) -> Vec<Vec<f64>> {
    let scale = 1.0 / n.max(1) as f64;
    for v in sums.iter_mut().flatten() {
        *v *= scale;
    }
    sums
}

/// What a learner is, apart from its tensors and its backend: the model, the tasks, the run's
/// settings, and the views of a [`Store`] everything else reads.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub strategy: Strategy,
    pub task_names: Vec<String>,
    pub spec: ModelSpec,
    pub dtype: DType,
    pub device: Device,
    /// The parameters' names and shapes, in the network's order.
    pub params: Vec<(String, Shape)>,
    /// The layers' per-task state tensors' names and shapes.
    pub state_specs: Vec<(String, Shape)>,
    /// How a task's masks start.
    pub mask_init: MaskInit,
    pub seed: u64,
    pub w_config: OptimizerConfig,
    pub mask_config: OptimizerConfig,
    pub gate: GateMode,
    pub regularizer: (Regularizer, f64),
    /// Task-IL's output head per task (none: one head shared by every task).
    pub heads: Option<Vec<Head>>,
    /// The output layer's parameters (their first dimension is the output units).
    pub head_params: Vec<usize>,
    /// XdG's share of hidden units off per task (read by XdG only).
    pub xdg_share_off: f64,
    /// Whether XdG switches off an off unit's bias too (read by XdG only).
    pub xdg_gate_bias: bool,
}

impl Ctx {
    pub fn gated(&self) -> bool {
        self.strategy.layout().gated
    }

    /// Task `task`'s output head (Task-IL only).
    pub fn head(&self, task: TaskId) -> Option<&Head> {
        self.heads.as_ref().and_then(|h| h.get(task.index()))
    }

    /// The model that serves task `task`.
    pub fn model_of(&self, task: TaskId) -> ModelId {
        self.strategy.model_of(task)
    }

    /// The state set of task `task` (an index into the store's `states`): its own when
    /// gated, else its model's.
    pub fn state_set(&self, task: TaskId) -> usize {
        if self.gated() {
            task.index()
        } else {
            self.model_of(task).index()
        }
    }

    /// Model `model`'s network, its weights made from the store.
    pub fn model(&self, store: &Store, model: ModelId) -> Result<Network> {
        let (i, count) = (model.index(), with_store!(store, s => s.models.len()));
        if i >= count {
            candle_core::bail!("`{}` has {count} model(s), no {model}", self.strategy);
        }
        let params = with_store!(store, s => vars(&s.models[i], &self.params, &self.device))?;
        Network::from_params(&self.spec, params)
    }

    /// A bank that draws masks as every task's start ([`MaskBank::ensure`]).
    pub fn fresh_bank(&self) -> MaskBank {
        MaskBank::new(
            &self.params,
            self.mask_init,
            self.seed,
            self.dtype,
            &self.device,
        )
    }

    /// Task `task`'s stored masks, if it has any.
    pub fn stored_masks(&self, store: &Store, task: TaskId) -> Result<Option<Vec<Var>>> {
        with_store!(store, s => s.masks[task.index()]
            .as_ref()
            .map(|m| vars(&m.values, &self.params, &self.device))
            .transpose())
    }

    /// The stored masks of `tasks` (those that have any) in a bank (gated only).
    pub fn masks(
        &self,
        store: &Store,
        tasks: impl IntoIterator<Item = TaskId>,
    ) -> Result<Option<MaskBank>> {
        if !self.gated() {
            return Ok(None);
        }
        let mut bank = self.fresh_bank();
        for task in tasks {
            if let Some(masks) = self.stored_masks(store, task)? {
                bank.insert(task, masks.iter().map(|v| v.as_tensor().clone()).collect())?;
            }
        }
        Ok(Some(bank))
    }

    /// Task `task`'s masks (gated only); a task never picked yet gets the masks it would be
    /// given.
    pub fn task_masks(&self, store: &Store, task: TaskId) -> Result<Option<Vec<Var>>> {
        if !self.gated() {
            return Ok(None);
        }
        match self.stored_masks(store, task)? {
            Some(masks) => Ok(Some(masks)),
            None => Ok(Some(self.drawn_masks(task)?)),
        }
    }

    /// The masks task `task` starts from: the seeded draw of the mask bank, or XdG's fixed
    /// unit gates ([`super::xdg::unit_gates`]) for a strategy whose gates are not trained.
    pub fn drawn_masks(&self, task: TaskId) -> Result<Vec<Var>> {
        if !self.strategy.layout().fixed_gates {
            return Ok(self.fresh_bank().ensure(task)?.to_vec());
        }
        let gates = super::xdg::unit_gates(
            &self.params,
            self.xdg_share_off,
            self.xdg_gate_bias,
            self.seed,
            task,
        );
        (gates.iter().zip(&self.params))
            .map(|(g, (_, shape))| {
                Var::from_tensor(&Tensor::from_slice(g, shape, &self.device)?.to_dtype(self.dtype)?)
            })
            .collect()
    }

    /// A task's first step: its masks start from their seeded draw.
    pub fn ensure_masks(&self, store: &mut Store, task: TaskId) -> Result<()> {
        let has = with_store!(&*store, s => s.masks[task.index()].is_some());
        if !self.gated() || has {
            return Ok(());
        }
        let drawn: Vec<Tensor> = (self.drawn_masks(task)?.iter())
            .map(|v| v.as_tensor().clone())
            .collect();
        fn put<T: Elem>(store: &mut ParamStore<T>, task: TaskId, drawn: &[Tensor]) -> Result<()> {
            let values = drawn
                .iter()
                .map(values_of::<T>)
                .collect::<Result<Vec<_>>>()?;
            let slots = values.iter().map(|_| Slot::default()).collect();
            store.masks[task.index()] = Some(TaskMasks { values, slots });
            Ok(())
        }
        with_store!(store, s => put(s, task, &drawn))
    }

    /// The layers' state of state set `set`.
    pub fn state_of_set(&self, store: &Store, set: usize) -> Result<Vec<Tensor>> {
        fn get<T: Elem>(
            values: &[Vec<T>],
            specs: &[(String, Shape)],
            device: &Device,
        ) -> Result<Vec<Tensor>> {
            (values.iter().zip(specs))
                .map(|(v, (_, shape))| Tensor::from_slice(v, shape, device))
                .collect()
        }
        with_store!(store, s => get(&s.states[set], &self.state_specs, &self.device))
    }

    /// The diagonal Fisher information of the model that serves `task`, estimated at the
    /// examples `x` (one per row of its first dimension) as van de Ven & Tolias's reference
    /// code does for EWC: per example, the squared gradient of the log-likelihood of the
    /// class the model itself predicts (`−log softmax(f(x))_ŷ`, `ŷ = argmax f(x)`), averaged
    /// over the examples. This is the Fisher at the model's own most likely label, not the
    /// empirical Fisher (which would use the true label). Layer state in evaluation mode.
    /// Computed by candle's autograd whichever backend trains, so both agree by construction.
    ///
    /// A network of linear layers (and parameter-free ones) takes batches of
    /// [`FISHER_BATCH`] examples: one backward pass of the summed log-likelihoods gives every
    /// example's gradient at each layer's output (δ), and the sum of squared per-example
    /// weight gradients is `(δ ∘ δ)ᵀ (a ∘ a)` (a the layer's input), so the reference code's
    /// Fisher over all 60 000 training examples costs seconds, not an hour. Other networks
    /// take one backward pass per example ([`Ctx::diagonal_fisher_per_example`]).
    pub fn diagonal_fisher(
        &self,
        store: &Store,
        task: TaskId,
        x: &Tensor,
    ) -> Result<Vec<Vec<f64>>> {
        let net = self.model(store, self.model_of(task))?;
        let n = x.dim(0)?;
        let mut sums = self.zero_per_param();
        let mut start = 0;
        while start < n {
            let len = FISHER_BATCH.min(n - start);
            let xb = x.narrow(0, start, len)?;
            let Some((mut out, taps)) = net.forward_linear_taps(&xb)? else {
                return self.diagonal_fisher_per_example(store, task, x);
            };
            if let Some(h) = self.head(task) {
                out = h.mask_tensor(&out)?;
            }
            let labels = out.argmax_keepdim(1)?;
            let nll = candle_nn::ops::log_softmax(&out, 1)?
                .gather(&labels, 1)?
                .sum_all()?
                .neg()?;
            let grads = nll.backward()?;
            for tap in &taps {
                let Some(delta) = grads.get(tap.probe.as_tensor()) else {
                    continue;
                };
                let d2 = delta.sqr()?;
                let weight = d2.t()?.matmul(&tap.input.sqr()?)?;
                let bias = d2.sum(0)?;
                for (index, g) in [(tap.weight, weight), (tap.weight + 1, bias)] {
                    for (s, g) in sums[index].iter_mut().zip(values_of::<f64>(&g)?) {
                        *s += g;
                    }
                }
            }
            start += len;
        }
        Ok(mean_over(sums, n))
    }

    /// One zero per scalar of every parameter, in parameter order (a Fisher's running sums).
    fn zero_per_param(&self) -> Vec<Vec<f64>> {
        (self.params.iter())
            .map(|(_, shape)| vec![0.0; shape.elem_count()])
            .collect()
    }

    /// [`Ctx::diagonal_fisher`] by one backward pass per example: any network.
    pub fn diagonal_fisher_per_example(
        &self,
        store: &Store,
        task: TaskId,
        x: &Tensor,
    ) -> Result<Vec<Vec<f64>>> {
        let net = self.model(store, self.model_of(task))?;
        let state = self.state_of_set(store, self.state_set(task))?;
        let n = x.dim(0)?;
        let mut sums = self.zero_per_param();
        for i in 0..n {
            let xi = x.narrow(0, i, 1)?;
            let mut out = net.forward_with_state(&xi, None, NetState::Eval(&state))?;
            if let Some(h) = self.head(task) {
                out = h.mask_tensor(&out)?;
            }
            let out = out.flatten_all()?;
            let label = out.argmax(0)?.to_scalar::<u32>()? as usize;
            let nll = candle_nn::ops::log_softmax(&out, 0)?.get(label)?.neg()?;
            let grads = nll.backward()?;
            for (sum, (_, var)) in sums.iter_mut().zip(net.params()) {
                if let Some(g) = grads.get(var) {
                    for (s, g) in sum.iter_mut().zip(values_of::<f64>(g)?) {
                        *s += g * g;
                    }
                }
            }
        }
        Ok(mean_over(sums, n))
    }

    /// The effective parameters `W ⊙ g(M_task)` (or `W`) of task `task` under `view`, followed
    /// by the task's layer state, as the engine reads them.
    pub fn eval_params(
        &self,
        store: &Store,
        task: TaskId,
        scale: f64,
        view: GateView,
    ) -> Result<Vec<Vec<f32>>> {
        let net = self.model(store, self.model_of(task))?;
        let masks = self.task_masks(store, task)?;
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
        for t in self.state_of_set(store, self.state_set(task))? {
            params.push(values_of::<f32>(&t)?);
        }
        Ok(params)
    }
}

/// A training step and a prediction over a learner's [`Store`]: the fast [`Engine`] or the
/// candle reference ([`Reference`]). Neither keeps a tensor of its own.
pub(crate) trait Backend: std::fmt::Debug {
    /// `"fast"` or `"reference"`.
    fn name(&self) -> &'static str;

    /// One optimisation step of task `task` (its masks already in the store when gated);
    /// returns the loss (without regulariser) and the batch's summed metric, both from the
    /// forward pass before the update.
    fn train_step(
        &mut self,
        ctx: &Ctx,
        store: &mut Store,
        task: TaskId,
        batch: &Batch,
        objective: Objective,
        at: StepSettings,
    ) -> Result<(f64, f64)>;

    /// Task `task`'s output for `x` under a view of the gates (no training).
    fn predict(
        &self,
        ctx: &Ctx,
        store: &Store,
        task: TaskId,
        x: &Tensor,
        scale: f64,
        view: GateView,
    ) -> Result<Tensor>;
}

/// candle's autograd: builds the graph from the store for each step and writes the update
/// back with the same rules as the engine. Runs what the engine does not (f64, another
/// device, `engine = "reference"`, a model the engine refuses).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reference;

impl Backend for Reference {
    fn name(&self) -> &'static str {
        "reference"
    }

    fn train_step(
        &mut self,
        ctx: &Ctx,
        store: &mut Store,
        task: TaskId,
        batch: &Batch,
        objective: Objective,
        at: StepSettings,
    ) -> Result<(f64, f64)> {
        match store {
            Store::F32(_) => reference_step::<f32>(ctx, store, task, batch, objective, at),
            Store::F64(_) => reference_step::<f64>(ctx, store, task, batch, objective, at),
        }
    }

    fn predict(
        &self,
        ctx: &Ctx,
        store: &Store,
        task: TaskId,
        x: &Tensor,
        scale: f64,
        view: GateView,
    ) -> Result<Tensor> {
        let net = ctx.model(store, ctx.model_of(task))?;
        let state = ctx.state_of_set(store, ctx.state_set(task))?;
        let state = NetState::Eval(&state);
        match ctx.task_masks(store, task)? {
            None => net.forward_with_state(x, None, state),
            Some(masks) => {
                let gate = TaskGate {
                    masks: &masks,
                    mode: ctx.gate,
                    scale,
                    view,
                };
                net.forward_with_state(x, Some(&gate), state)
            }
        }
    }
}

/// [`Reference::train_step`] for a store of `T`.
fn reference_step<T: Elem>(
    ctx: &Ctx,
    store: &mut Store,
    task: TaskId,
    batch: &Batch,
    objective: Objective,
    at: StepSettings,
) -> Result<(f64, f64)> {
    let model = ctx.model_of(task);
    let set = ctx.state_set(task);
    let net = ctx.model(store, model)?;
    let masks: Vec<Var> = ctx.task_masks(store, task)?.unwrap_or_default();
    let gate = TaskGate {
        masks: &masks,
        mode: ctx.gate,
        scale: at.gate_scale,
        view: GateView::Trained,
    };
    let mut state = ctx.state_of_set(store, set)?;
    let out = net.forward_with_state(
        &batch.x,
        ctx.gated().then_some(&gate),
        NetState::Train(&mut state),
    )?;
    let (out, y) = match ctx.head(task) {
        Some(h) => (h.mask_tensor(&out)?, h.labels_tensor(&batch.y)?),
        None => (out, batch.y.clone()),
    };
    let metric = objective.metric_sum(&out.detach(), &y)?;
    let loss = objective.loss(&out, &y)?;
    let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let total = match ctx.regularizer {
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
    let Some(store) = T::store_mut(store) else {
        candle_core::bail!("the store's float type is not the step's");
    };
    for (p, (_, var)) in net.params().iter().enumerate() {
        if let Some(g) = grads.get(var) {
            let mut g = values_of::<T>(g)?;
            let w = &mut store.models[model.index()][p];
            // The penalty against forgetting joins the gradient here, as on the engine.
            if let Some(c) = store.consolidation.as_mut() {
                c.before_update(p, w, &mut g);
            }
            let slot = &mut store.w_slots[model.index()][p];
            T::update(w, &g, slot, ctx.w_config, at.w_lr_factor);
            if let Some(c) = store.consolidation.as_mut() {
                c.after_update(p, w);
            }
        }
    }
    let masks_train = at.mask_lr_factor > 0.0 && !ctx.strategy.layout().fixed_gates;
    if let (Some(stored), true) = (store.masks[task.index()].as_mut(), masks_train) {
        for (p, m) in masks.iter().enumerate() {
            if let Some(g) = grads.get(m) {
                let g = values_of::<T>(g)?;
                let slot = &mut stored.slots[p];
                T::update(
                    &mut stored.values[p],
                    &g,
                    slot,
                    ctx.mask_config,
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

impl Backend for Engine {
    fn name(&self) -> &'static str {
        "fast"
    }

    fn train_step(
        &mut self,
        ctx: &Ctx,
        store: &mut Store,
        task: TaskId,
        batch: &Batch,
        objective: Objective,
        at: StepSettings,
    ) -> Result<(f64, f64)> {
        let Store::F32(store) = store else {
            candle_core::bail!("the engine needs an f32 store");
        };
        // Scalars of one model (every model of a strategy has the same parameters).
        let count: usize = ctx.params.iter().map(|(_, s)| s.elem_count()).sum();
        let rules = StepRules {
            w: rule(ctx.w_config, at.w_lr_factor),
            mask: (ctx.gated() && !ctx.strategy.layout().fixed_gates && at.mask_lr_factor > 0.0)
                .then(|| rule(ctx.mask_config, at.mask_lr_factor)),
            gate: ctx.gate,
            gate_scale: at.gate_scale as f32,
            regularizer: ctx.regularizer.0,
            reg_weight: (ctx.regularizer.1 / count.max(1) as f64) as f32,
        };
        let (xs, xl) = batch.x.storage_and_layout();
        let (ys, yl) = batch.y.storage_and_layout();
        let x = f32_slice(&xs, xl)?;
        let targets = targets_of(objective, &ys, yl)?;
        let head = ctx.head(task);
        let shifted;
        let targets = match (head, targets) {
            (Some(h), Targets::Labels(y)) if h.offset > 0 => {
                shifted = h.labels(y);
                Targets::Labels(&shifted)
            }
            (_, t) => t,
        };
        let model = ctx.model_of(task);
        let active = head.map(|h| h.active.as_slice());
        let loss = Engine::train_step(self, store, model, task, x, targets, rules, active)
            .map_err(candle_core::Error::wrap)?;
        let metric = crate::engine::score(self.last_outputs(), targets, self.output_len())
            .map_err(candle_core::Error::wrap)?
            .1;
        Ok((loss, metric))
    }

    /// The effective parameters come from the same candle gate code as the reference (so
    /// every [`GateView`] means the same), the forward pass from the engine.
    fn predict(
        &self,
        ctx: &Ctx,
        store: &Store,
        task: TaskId,
        x: &Tensor,
        scale: f64,
        view: GateView,
    ) -> Result<Tensor> {
        let theta = ctx.eval_params(store, task, scale, view)?;
        let params: Vec<&[f32]> = theta.iter().map(Vec::as_slice).collect();
        let n = x.dim(0)?;
        let input = x.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        if input.len() != n * self.input_len() {
            candle_core::bail!(
                "input {:?} does not match the model's input of {} values",
                x.dims(),
                self.input_len()
            );
        }
        let out = Engine::predict(self, &params, &input, PREDICT_CHUNK);
        let outputs = out.len() / n.max(1);
        Tensor::from_vec(out, (n, outputs), x.device())
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

/// Examples per engine forward pass in [`Backend::predict`].
const PREDICT_CHUNK: usize = 64;

/// The contiguous `f32` values of a CPU tensor's storage.
pub(crate) fn f32_slice<'a>(
    storage: &'a Storage,
    layout: &candle_core::Layout,
) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("batch inputs are not contiguous f32 values on the CPU"),
    }
}
