//! Per-op timing of the fast engine's training step, for `cargo bench --bench peak`.
//!
//! Off unless a benchmark calls [`enable`]: each hook in the engine then costs one relaxed
//! atomic load. When on, every phase of every op (the im2col of the first convolution, its
//! GEMM, the fused bias + ReLU + pool, …) adds its wall time and its floating-point operation
//! count to one counter per (op, phase), so a profile of many steps says where a step's time
//! goes and how close each GEMM runs to the core's measured peak ([`super::peak`]).
//!
//! At more than one thread the phases that run inside a batch-parallel op add every thread's
//! time (CPU time, not wall time); profile at `RAYON_NUM_THREADS=1` for a wall-time breakdown.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

/// One phase of an op's forward or backward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `g(M)` and `θ = W ⊙ g(M)` for every parameter (once per step).
    Gate,
    /// Forward: the im2col of a convolution's input.
    Im2col,
    /// Forward: the layer's GEMM (a dense layer's includes its bias).
    Gemm,
    /// Forward: a convolution block's bias, ReLU and max-pool sweep.
    BiasReluPool,
    /// An elementwise activation (forward).
    Act,
    /// The loss and its gradient.
    Loss,
    /// Backward: an activation's or pool's gradient (a conv block's ∂y scattered to ∂z).
    ActBack,
    /// Backward: the im2col rebuilt for the weight gradient.
    Im2colBack,
    /// Backward: `∂W` GEMM.
    GemmDw,
    /// Backward: `∂b`.
    BiasBack,
    /// Backward: `∂x` GEMM (`θWᵀ ∂z` for a convolution).
    GemmDx,
    /// Backward: col2im of a convolution's `∂cols`.
    Col2im,
    /// Backward: the partial `∂W`, `∂b` of the batch's chunks summed.
    Reduce,
    /// `∂θ` split into `∂W` and `∂M` (gated runs).
    GateBack,
    /// The optimizer update of W and the masks.
    Update,
}

const PHASES: [Phase; 15] = [
    Phase::Gate,
    Phase::Im2col,
    Phase::Gemm,
    Phase::BiasReluPool,
    Phase::Act,
    Phase::Loss,
    Phase::ActBack,
    Phase::Im2colBack,
    Phase::GemmDw,
    Phase::BiasBack,
    Phase::GemmDx,
    Phase::Col2im,
    Phase::Reduce,
    Phase::GateBack,
    Phase::Update,
];

impl Phase {
    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Gate => "gate W⊙g(M)",
            Phase::Im2col => "fwd im2col",
            Phase::Gemm => "fwd GEMM",
            Phase::BiasReluPool => "fwd bias+ReLU+pool",
            Phase::Act => "fwd activation",
            Phase::Loss => "loss",
            Phase::ActBack => "bwd act/unpool",
            Phase::Im2colBack => "bwd im2col",
            Phase::GemmDw => "bwd ∂W GEMM",
            Phase::BiasBack => "bwd ∂b",
            Phase::GemmDx => "bwd ∂x GEMM",
            Phase::Col2im => "bwd col2im",
            Phase::Reduce => "bwd chunk sum",
            Phase::GateBack => "gate ∂W,∂M",
            Phase::Update => "update",
        }
    }
}

/// Op slots; the last one holds the per-parameter work (gates, update) and the loss.
const OPS: usize = 32;
/// The slot of the work that is not one op's.
pub const STEP: usize = OPS - 1;

static ON: AtomicBool = AtomicBool::new(false);
static OP: AtomicUsize = AtomicUsize::new(STEP);
static NANOS: [AtomicU64; OPS * PHASES.len()] = [const { AtomicU64::new(0) }; OPS * 15];
static FLOPS: [AtomicU64; OPS * PHASES.len()] = [const { AtomicU64::new(0) }; OPS * 15];
static CALLS: [AtomicU64; OPS * PHASES.len()] = [const { AtomicU64::new(0) }; OPS * 15];
static KINDS: Mutex<[&str; OPS]> = Mutex::new([""; OPS]);

/// Turns the hooks on or off (process-wide).
pub fn enable(on: bool) {
    ON.store(on, Relaxed);
}

/// Whether the hooks record.
#[inline(always)]
pub(crate) fn on() -> bool {
    ON.load(Relaxed)
}

/// Sets the op the next phases belong to (`STEP` for the per-parameter work), with a kind
/// name for the table. Called from the engine's sequential loops, before an op's threads start.
#[inline(always)]
pub(crate) fn set_op(op: usize, kind: &'static str) {
    if on() {
        let op = op.min(STEP);
        OP.store(op, Relaxed);
        if let Ok(mut k) = KINDS.lock() {
            k[op] = kind;
        }
    }
}

/// Runs `f`, adding its wall time and `flops` to the current op's `phase` when profiling.
#[inline(always)]
pub(crate) fn timed<R>(phase: Phase, flops: usize, f: impl FnOnce() -> R) -> R {
    if !on() {
        return f();
    }
    let start = Instant::now();
    let r = f();
    let ns = start.elapsed().as_nanos() as u64;
    let slot = OP.load(Relaxed) * PHASES.len() + phase as usize;
    NANOS[slot].fetch_add(ns, Relaxed);
    FLOPS[slot].fetch_add(flops as u64, Relaxed);
    CALLS[slot].fetch_add(1, Relaxed);
    r
}

/// One (op, phase) total since the last [`take`].
#[derive(Debug, Clone)]
pub struct Entry {
    /// The op's index in the engine's plan ([`STEP`]: the per-parameter work and the loss).
    pub op: usize,
    /// What kind of op (`conv`, `dense`, `act`, …; `step` for [`STEP`]).
    pub kind: &'static str,
    /// The phase.
    pub phase: Phase,
    /// Seconds spent (summed over threads).
    pub seconds: f64,
    /// Floating-point operations done (a multiply-add counts 2).
    pub flops: f64,
    /// How many times the phase ran.
    pub calls: u64,
}

/// The recorded totals in op order (forward phases first within an op), and resets them.
pub fn take() -> Vec<Entry> {
    let kinds = KINDS.lock().map(|k| *k).unwrap_or([""; OPS]);
    let mut out = Vec::new();
    for (op, &kind) in kinds.iter().enumerate() {
        for (p, &phase) in PHASES.iter().enumerate() {
            let slot = op * PHASES.len() + p;
            let calls = CALLS[slot].swap(0, Relaxed);
            let ns = NANOS[slot].swap(0, Relaxed);
            let flops = FLOPS[slot].swap(0, Relaxed);
            if calls > 0 {
                out.push(Entry {
                    op,
                    kind: if op == STEP { "step" } else { kind },
                    phase,
                    seconds: ns as f64 * 1e-9,
                    flops: flops as f64,
                    calls,
                });
            }
        }
    }
    out
}
