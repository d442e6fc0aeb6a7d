//! The fast training engine: a sequential model's forward pass, backward pass, gate math and
//! optimizer update written out by hand over plain `f32` buffers that are allocated once.
//!
//! `engine/` versus `kernel/`: the engine is the training step of a whole network and owns its
//! buffers, gates and optimizer state; the single operations it runs (convolution, pooling)
//! are `kernel/`'s, which also serve the candle reference network.
//!
//! Why not candle's autograd for the step: on the models of the paper every candle op costs a
//! dispatch, a fresh tensor and a tape entry, and a gated step has hundreds of them; measured
//! before this engine, a gated LeNet-5 trained at about 95 steps/s against PyTorch's 350–460,
//! and the gated MLP step took 96 µs where this engine takes 9 µs. Here a step is a fixed
//! sequence of GEMMs and fused loops:
//! - convolution + bias + ReLU + max-pool is one op ([`conv_block`]) over L2-sized sub-batches,
//!   with the batch split across threads inside the op;
//! - a gated parameter's gate `g(M)` and effective weight `W ⊙ g` are computed once per step;
//!   after the backward pass one loop splits `∂θ` into `∂W` and `∂M` and the optimizer updates
//!   both in place ([`update`]);
//! - once the buffers have the batch's size, a step allocates no tensors or buffers (only a few
//!   short lists of slices, one per op call).
//!
//! The candle implementation ([`crate::model::Network`] with [`crate::gate::TaskGate`]) stays
//! the reference: the learner falls back to it for what the engine does not cover (f64, a
//! non-CPU device, pooling with a stride other than its window, `engine = "reference"`), and
//! the tests check the engine's outputs, gradients and updates against it.

mod conv_block;
mod dense;
mod error;
mod loss;
mod plan;
mod pointwise;
mod update;

pub(crate) use error::EngineError;
pub(crate) use loss::{Targets, score};
pub(crate) use plan::Plan;
pub(crate) use update::{Rule, update};

use crate::gate::GateMode;
use crate::gate::Regularizer;
use crate::kernel::profile::{self, Phase};
use crate::layers::KernelState;
use crate::params::{ModelId, ParamStore, TaskId};
use conv_block::{Block, BlockBuffers};
use plan::Op;

/// Per-op buffers for one batch size: activations and their gradients, the fused blocks'
/// saved state and the stand-alone pools' argmax.
#[derive(Debug, Clone, Default)]
struct OpBuffers {
    n: usize,
    acts: Vec<Vec<f32>>,
    grads: Vec<Vec<f32>>,
    blocks: Vec<BlockBuffers>,
    pool_args: Vec<Vec<u32>>,
    /// What each layer kernel saved for its backward pass.
    saved: Vec<Vec<f32>>,
}

impl OpBuffers {
    fn new(plan: &Plan) -> Self {
        OpBuffers {
            n: 0,
            acts: vec![Vec::new(); plan.ops.len()],
            grads: vec![Vec::new(); plan.ops.len()],
            blocks: vec![BlockBuffers::default(); plan.ops.len()],
            pool_args: vec![Vec::new(); plan.ops.len()],
            saved: vec![Vec::new(); plan.ops.len()],
        }
    }

    /// Sizes the buffers for a batch of `n`.
    fn prepare(&mut self, plan: &Plan, n: usize, training: bool) {
        if self.n == n {
            return;
        }
        self.n = n;
        for (i, op) in plan.ops.iter().enumerate() {
            let len = n * op.out_len();
            self.acts[i].resize(len, 0.0);
            if training {
                self.grads[i].resize(len, 0.0);
            }
            if let Op::Pool { .. } = op {
                self.pool_args[i].resize(len, 0);
            }
        }
    }
}

/// Per parameter: its gate, effective value `W ⊙ g` and the gradients of θ and of the mask.
#[derive(Debug, Clone, Default)]
struct ParamBuffers {
    gate: Vec<Vec<f32>>,
    theta: Vec<Vec<f32>>,
    dtheta: Vec<Vec<f32>>,
    dmask: Vec<Vec<f32>>,
}

impl ParamBuffers {
    fn new(plan: &Plan, gated: bool) -> Self {
        let params = |on: bool| {
            plan.param_lens
                .iter()
                .map(|&l| vec![0.0; if on { l } else { 0 }])
                .collect()
        };
        ParamBuffers {
            gate: params(gated),
            theta: params(gated),
            dtheta: params(true),
            dmask: params(gated),
        }
    }
}

/// How one training step updates: the rules for W and the masks (`None`: masks frozen), the
/// gate, and the mask regulariser with its weight (already divided by the mask count).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepRules {
    pub w: Rule,
    pub mask: Option<Rule>,
    pub gate: GateMode,
    pub gate_scale: f32,
    pub regularizer: Regularizer,
    pub reg_weight: f32,
}

/// A compiled model and its training workspace. The tensors it trains live in a
/// [`ParamStore`] that each step borrows.
#[derive(Debug, Clone)]
pub(crate) struct Engine {
    plan: Plan,
    gated: bool,
    ops: OpBuffers,
    pb: ParamBuffers,
}

impl Engine {
    /// An engine over `plan`, gated or plain.
    pub fn new(plan: Plan, gated: bool) -> Self {
        Engine {
            ops: OpBuffers::new(&plan),
            pb: ParamBuffers::new(&plan, gated),
            plan,
            gated,
        }
    }

    /// Values per input sample.
    pub fn input_len(&self) -> usize {
        self.plan.input_len
    }

    /// Values per output sample.
    pub fn output_len(&self) -> usize {
        self.plan.output_len
    }

    /// The outputs `[n, outputs]` of the last training step's forward pass (before its
    /// update): what the step's loss was computed from.
    pub fn last_outputs(&self) -> &[f32] {
        self.ops.acts.last().map_or(&[], Vec::as_slice)
    }

    /// One training step of `store`'s model `model` (and task `task`'s masks when gated) on a
    /// batch; returns the batch loss. The task's masks must have been set. `active`: the
    /// output units of the task's head (Task-IL); the others' logits are set to a value far
    /// below every other before the loss, so they get probability and gradient 0.
    #[allow(clippy::too_many_arguments)]
    pub fn train_step(
        &mut self,
        store: &mut ParamStore<f32>,
        model: ModelId,
        task: TaskId,
        x: &[f32],
        targets: Targets,
        rules: StepRules,
        active: Option<&[bool]>,
    ) -> Result<f64, EngineError> {
        let plan = &self.plan;
        let n = x.len() / plan.input_len;
        if n == 0 || n * plan.input_len != x.len() {
            return Err(EngineError::PartialBatch {
                values: x.len(),
                sample: plan.input_len,
            });
        }
        let (ops, pb) = (&mut self.ops, &mut self.pb);
        ops.prepare(plan, n, true);
        let weights = &mut store.models[model.index()];
        let set = if self.gated {
            task.index()
        } else {
            model.index()
        };
        let state = &mut store.states[set];
        profile::set_op(profile::STEP, "step");
        let masks = if self.gated {
            let m = store.masks[task.index()]
                .as_mut()
                .ok_or(EngineError::NoMasks(task))?;
            profile::timed(Phase::Gate, 0, || {
                for (p, w) in weights.iter().enumerate() {
                    update::gate_values(
                        rules.gate,
                        rules.gate_scale,
                        &m.values[p],
                        w,
                        &mut pb.gate[p],
                        &mut pb.theta[p],
                    );
                }
            });
            Some(m)
        } else {
            None
        };
        let loss = {
            let params: Vec<&[f32]> = if self.gated {
                pb.theta.iter().map(Vec::as_slice).collect()
            } else {
                weights.iter().map(Vec::as_slice).collect()
            };
            forward(plan, &params, x, ops, true, 0, PlanState::Train(state));
            let last = plan.ops.len() - 1;
            if let Some(active) = active {
                mask_outputs(&mut ops.acts[last], active);
            }
            profile::set_op(profile::STEP, "step");
            let loss = profile::timed(Phase::Loss, 0, || {
                loss::loss_and_grad(
                    &ops.acts[last],
                    targets,
                    plan.output_len,
                    &mut ops.grads[last],
                )
            })?;
            backward(plan, &params, x, ops, &mut pb.dtheta);
            loss
        };
        profile::set_op(profile::STEP, "step");
        // The penalty against forgetting (ewc, online-ewc, si) joins the task loss's gradient
        // right before the update, as on the reference.
        let mut penalty = store.consolidation.as_mut();
        for (p, w) in weights.iter_mut().enumerate() {
            if let Some(m) = masks.as_deref() {
                profile::timed(Phase::GateBack, 0, || {
                    update::gate_gradients(
                        rules.gate,
                        rules.gate_scale,
                        w,
                        &m.values[p],
                        &pb.gate[p],
                        &mut pb.dtheta[p],
                        &mut pb.dmask[p],
                        rules.regularizer,
                        rules.reg_weight,
                    )
                });
            }
            if let Some(c) = penalty.as_deref_mut() {
                c.before_update(p, w, &mut pb.dtheta[p]);
            }
            profile::timed(Phase::Update, 0, || {
                update::update(
                    w,
                    &pb.dtheta[p],
                    &mut store.w_slots[model.index()][p],
                    rules.w,
                )
            });
            if let Some(c) = penalty.as_deref_mut() {
                c.after_update(p, w);
            }
        }
        if let (Some(m), Some(rule)) = (masks, rules.mask) {
            for (p, values) in m.values.iter_mut().enumerate() {
                profile::timed(Phase::Update, 0, || {
                    update::update(values, &pb.dmask[p], &mut m.slots[p], rule)
                });
            }
        }
        Ok(loss)
    }

    /// The output `[n, outputs]` for inputs `x` with the effective parameters `params`
    /// followed by the task's layer state (no gradients, no state kept), in pieces of at most
    /// `chunk` samples.
    pub fn predict(&self, params: &[&[f32]], x: &[f32], chunk: usize) -> Vec<f32> {
        let plan = &self.plan;
        debug_assert_eq!(params.len(), plan.param_lens.len() + plan.state_lens.len());
        let (params, state) = params.split_at(plan.param_lens.len());
        let n = x.len() / plan.input_len;
        let mut out = Vec::with_capacity(n * plan.output_len);
        let mut ops = OpBuffers::new(plan);
        for piece in x.chunks(chunk.max(1) * plan.input_len) {
            ops.prepare(plan, piece.len() / plan.input_len, false);
            forward(
                plan,
                params,
                piece,
                &mut ops,
                true,
                0,
                PlanState::Eval(state),
            );
            out.extend_from_slice(&ops.acts[plan.ops.len() - 1]);
        }
        out
    }

    /// The outputs `[n, outputs]` of several models (`params[k]`: one effective parameter
    /// set per model followed by its layer state, all of this engine's plan) on one large evaluation batch `x`. The batch
    /// is cut into one contiguous share per rayon thread, and each thread runs its share in
    /// pieces of [`EVAL_PIECE`] samples through its own buffers (the whole model per piece, no
    /// synchronisation between layers, activations in cache). A first convolution block builds
    /// each piece's im2col once for all models. Each sample's output depends only on the
    /// sample and the parameters, not on how the batch was cut.
    pub fn predict_batch_many(&self, params: &[Vec<&[f32]>], x: &[f32]) -> Vec<Vec<f32>> {
        use rayon::prelude::*;
        let plan = &self.plan;
        let (inl, outl) = (plan.input_len, plan.output_len);
        let n = x.len() / inl;
        let mut outs = vec![vec![0.0f32; n * outl]; params.len()];
        if n == 0 || params.is_empty() {
            return outs;
        }
        let threads = rayon::current_num_threads().max(1);
        let share = n.div_ceil(threads).max(1);
        let mut shares: Vec<(&[f32], Vec<&mut [f32]>)> =
            x.chunks(share * inl).map(|x| (x, Vec::new())).collect();
        for out in &mut outs {
            for (i, piece) in out.chunks_mut(share * outl).enumerate() {
                shares[i].1.push(piece);
            }
        }
        let first = match plan.ops[0] {
            Op::Conv { param, .. } => dims(&plan.ops[0], true).map(|b| (b, param)),
            _ => None,
        };
        let run = |(x, mut outs): (&[f32], Vec<&mut [f32]>)| {
            let mut ops: Vec<OpBuffers> = params.iter().map(|_| OpBuffers::new(plan)).collect();
            let mut shared = BlockBuffers::default();
            for (p, piece) in x.chunks(EVAL_PIECE * inl).enumerate() {
                let m = piece.len() / inl;
                ops.iter_mut().for_each(|o| o.prepare(plan, m, false));
                let from = match &first {
                    Some((b, param)) => {
                        let weights: Vec<(&[f32], &[f32])> =
                            params.iter().map(|q| (q[*param], q[param + 1])).collect();
                        let mut acts: Vec<&mut [f32]> =
                            ops.iter_mut().map(|o| &mut o.acts[0][..]).collect();
                        conv_block::forward_many(b, piece, &weights, &mut acts, &mut shared);
                        1
                    }
                    None => 0,
                };
                for ((q, o), dst) in params.iter().zip(&mut ops).zip(outs.iter_mut()) {
                    let (q, state) = q.split_at(plan.param_lens.len());
                    forward(plan, q, piece, o, false, from, PlanState::Eval(state));
                    dst[p * EVAL_PIECE * outl..][..m * outl]
                        .copy_from_slice(&o.acts[plan.ops.len() - 1]);
                }
            }
        };
        if shares.len() == 1 {
            shares.into_iter().for_each(run);
        } else {
            shares.into_par_iter().for_each(run);
        }
        outs
    }
}

/// The fused block of a convolution op; `first`: the network's first op, whose input needs
/// no gradient, so the direct kernel ([`crate::kernel::direct`]) may take it when it fits.
fn dims(op: &Op, first: bool) -> Option<Block> {
    match *op {
        Op::Conv {
            geom,
            c_out,
            relu,
            pool,
            ..
        } => Some(Block {
            geom,
            c_out,
            relu,
            pool,
            direct: first && crate::kernel::direct::fits(&geom),
        }),
        _ => None,
    }
}

/// Samples per forward pass in [`Engine::predict_batch_many`]: LeNet-5's largest activation
/// (6×28×28 before pooling) for 128 samples is 2.4 MB of `z` in sub-batches of the conv
/// block's cache budget, and the dense layers' GEMMs get 128 rows.
pub(crate) const EVAL_PIECE: usize = 128;

/// The layers' state as one forward pass uses it.
enum PlanState<'a, 'b> {
    /// Training: stateful kernels update the task's state.
    Train(&'a mut [Vec<f32>]),
    /// Evaluation: they read it.
    Eval(&'a [&'b [f32]]),
}

/// Runs the ops in order from op `from` (the ones before it already wrote their outputs),
/// keeping what the backward pass needs. `split`: conv blocks split the batch across threads
/// and large dense products use gemm's threads (false inside a parallel region).
fn forward(
    plan: &Plan,
    params: &[&[f32]],
    x: &[f32],
    ops: &mut OpBuffers,
    split: bool,
    from: usize,
    mut state: PlanState<'_, '_>,
) {
    let OpBuffers {
        acts,
        blocks,
        pool_args,
        saved,
        ..
    } = ops;
    for (i, op) in plan.ops.iter().enumerate().skip(from) {
        profile::set_op(i, op.kind());
        let (before, rest) = acts.split_at_mut(i);
        let input: &[f32] = if i == 0 { x } else { &before[i - 1] };
        let out = &mut rest[0];
        match *op {
            Op::Dense {
                inputs,
                outputs,
                param,
            } => {
                let flops = 2 * input.len() * outputs;
                profile::timed(Phase::Gemm, flops, || {
                    dense::forward(
                        (inputs, outputs),
                        input,
                        params[param],
                        params[param + 1],
                        out,
                        split,
                    )
                })
            }
            Op::Conv { param, .. } => {
                let b = dims(op, i == 0).expect("a conv op");
                conv_block::forward(
                    &b,
                    (input, params[param], params[param + 1]),
                    out,
                    &mut blocks[i],
                    split,
                );
            }
            Op::Act { act, .. } => {
                profile::timed(Phase::Act, 0, || pointwise::act_forward(act, input, out))
            }
            Op::Pool { c, h, w, k } => {
                let (il, ol) = (c * h * w, op.out_len());
                for ((x_s, y_s), a_s) in input
                    .chunks_exact(il)
                    .zip(out.chunks_exact_mut(ol))
                    .zip(pool_args[i].chunks_exact_mut(ol))
                {
                    let planes = pointwise::Planes {
                        offset: 0,
                        stride: h * w,
                        row: w,
                    };
                    pointwise::pool_sample((c, h, w, k), x_s, planes, None, false, y_s, a_s);
                }
            }
            Op::Kernel {
                ref kernel,
                param,
                ref state_range,
            } => {
                let p: &[&[f32]] = param.map_or(&[], |p| &params[p..p + 2]);
                let n = out.len() / kernel.out_len().max(1);
                let ks = match &mut state {
                    PlanState::Train(s) => KernelState::Train(&mut s[state_range.clone()]),
                    PlanState::Eval(s) => KernelState::Eval(&s[state_range.clone()]),
                };
                kernel.forward(n, input, p, ks, out, &mut saved[i]);
            }
        }
    }
}

/// Runs the ops backwards from the last op's output gradient, writing `dtheta`.
fn backward(
    plan: &Plan,
    params: &[&[f32]],
    x: &[f32],
    ws: &mut OpBuffers,
    dtheta: &mut [Vec<f32>],
) {
    for (i, op) in plan.ops.iter().enumerate().rev() {
        profile::set_op(i, op.kind());
        let (g_before, g_rest) = ws.grads.split_at_mut(i);
        let dy: &[f32] = &g_rest[0];
        let dx: Option<&mut [f32]> = if i == 0 {
            None
        } else {
            Some(&mut g_before[i - 1][..])
        };
        let input: &[f32] = if i == 0 { x } else { &ws.acts[i - 1] };
        match *op {
            Op::Dense {
                inputs,
                outputs,
                param,
            } => {
                let (dw, db) = dtheta.split_at_mut(param + 1);
                dense::backward(
                    (inputs, outputs),
                    input,
                    params[param],
                    dy,
                    &mut dw[param],
                    &mut db[0],
                    dx,
                );
            }
            Op::Conv { param, .. } => {
                let b = dims(op, i == 0).expect("a conv op");
                let (dw, db) = dtheta.split_at_mut(param + 1);
                conv_block::backward(
                    &b,
                    (input, params[param]),
                    dy,
                    (&mut dw[param], &mut db[0]),
                    dx,
                    &mut ws.blocks[i],
                );
            }
            Op::Act { act, .. } => {
                if let Some(dx) = dx {
                    profile::timed(Phase::ActBack, 0, || {
                        pointwise::act_backward(act, &ws.acts[i], dy, dx)
                    });
                }
            }
            Op::Kernel {
                ref kernel, param, ..
            } => {
                let p: &[&[f32]] = param.map_or(&[], |p| &params[p..p + 2]);
                let dparams = param.map(|p| {
                    let (dw, db) = dtheta.split_at_mut(p + 1);
                    (&mut dw[p][..], &mut db[0][..])
                });
                kernel.backward(ws.n, input, p, &ws.saved[i], dy, dparams, dx);
            }
            Op::Pool { .. } => {
                if let Some(dx) = dx {
                    let (il, ol) = (input.len() / ws.n.max(1), op.out_len());
                    for ((a_s, dy_s), dx_s) in ws.pool_args[i]
                        .chunks_exact(ol)
                        .zip(dy.chunks_exact(ol))
                        .zip(dx.chunks_exact_mut(il))
                    {
                        dx_s.fill(0.0);
                        pointwise::unpool_sample(a_s, dy_s, dx_s);
                    }
                }
            }
        }
    }
}

/// The logit of a unit outside a task's output head (Task-IL): far below any logit, finite.
const HEAD_OFF: f32 = -1e30;

/// Sets the logits of the units not `active` to [`HEAD_OFF`] in `out` (`[n, outputs]`).
fn mask_outputs(out: &mut [f32], active: &[bool]) {
    for row in out.chunks_exact_mut(active.len().max(1)) {
        for (v, &on) in row.iter_mut().zip(active) {
            if !on {
                *v = HEAD_OFF;
            }
        }
    }
}
