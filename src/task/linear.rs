//! `linear`: y = (A ⊙ A_M^t) x + b ⊙ b_M^t (+ noise), the paper's regression with binary task
//! masks. A and b are shared by every `linear` task of a set with the same sizes (drawn from
//! the set's seed); the binary masks A_M^t, b_M^t are drawn per task.

use super::registry::{ParamSpec, ParamType, TaskContext, TaskKind};
use super::{RegressionTask, Task, TrueMask};
use crate::error::Result;
use crate::rng::Rng;

pub(super) const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "inputs",
        ty: ParamType::Int,
        default: Some("8"),
        help: "input dimension",
    },
    ParamSpec {
        name: "outputs",
        ty: ParamType::Int,
        default: Some("4"),
        help: "output dimension",
    },
    ParamSpec {
        name: "train",
        ty: ParamType::Int,
        default: Some("20"),
        help: "training examples per task",
    },
    ParamSpec {
        name: "test",
        ty: ParamType::Int,
        default: Some("500"),
        help: "test examples per task",
    },
    ParamSpec {
        name: "x_range",
        ty: ParamType::FloatList,
        default: Some("[-1.0, 1.0]"),
        help: "inputs are uniform on [lo, hi]",
    },
    ParamSpec {
        name: "noise",
        ty: ParamType::Float,
        default: Some("0.0"),
        help: "std of Gaussian noise on train and test targets",
    },
    ParamSpec {
        name: "mask_prob",
        ty: ParamType::Float,
        default: Some("0.5"),
        help: "probability that an entry of the task mask is 1",
    },
    ParamSpec {
        name: "mask_id",
        ty: ParamType::Int,
        default: Some("-1"),
        help: "which binary mask to draw (tasks with equal ids are identical); -1 = the task's position",
    },
];

/// The common settings of the masked-linear generators (`linear`, and `sinusoid` in its
/// default form).
pub(super) struct MaskedLinear {
    pub inputs: usize,
    pub outputs: usize,
    pub train: usize,
    pub test: usize,
    pub x_range: (f64, f64),
    pub noise: f64,
    pub mask_prob: f64,
    pub mask_id: u64,
}

impl MaskedLinear {
    pub fn from_params(ctx: &TaskContext) -> Result<Self> {
        let p = ctx.params;
        let x_range = p.f64_list("x_range")?;
        let [lo, hi] = x_range[..] else {
            return Err(p.invalid("x_range", format!("must be [lo, hi], got {x_range:?}")));
        };
        if !(lo < hi && lo.is_finite() && hi.is_finite()) {
            return Err(p.invalid("x_range", format!("needs finite lo < hi, got [{lo}, {hi}]")));
        }
        let noise = p.f64("noise")?;
        if !(noise >= 0.0 && noise.is_finite()) {
            return Err(p.invalid("noise", format!("must be ≥ 0, got {noise}")));
        }
        let mask_prob = p.f64("mask_prob")?;
        if !(0.0..=1.0).contains(&mask_prob) {
            return Err(p.invalid("mask_prob", format!("must be in [0, 1], got {mask_prob}")));
        }
        let mask_id = p.i64("mask_id")?;
        let mask_id = if mask_id < 0 {
            ctx.index as u64
        } else {
            mask_id as u64
        };
        Ok(MaskedLinear {
            inputs: p.positive("inputs")?,
            outputs: p.positive("outputs")?,
            train: p.positive("train")?,
            test: p.positive("test")?,
            x_range: (lo, hi),
            noise,
            mask_prob,
            mask_id,
        })
    }

    /// Builds the task; `link` maps the masked linear target (e.g. `sin`).
    pub fn build(&self, ctx: &TaskContext, family: &str, link: fn(f64) -> f64) -> RegressionTask {
        let (i_n, o_n) = (self.inputs, self.outputs);
        let mut shared = Rng::stream(
            ctx.seed,
            &format!("{family}/shared"),
            (i_n as u64) << 32 | o_n as u64,
        );
        let a: Vec<f64> = (0..i_n * o_n).map(|_| shared.normal()).collect();
        let b: Vec<f64> = (0..o_n).map(|_| shared.normal()).collect();
        let mut masks = Rng::stream(ctx.seed, &format!("{family}/mask"), self.mask_id);
        let am: Vec<bool> = (0..i_n * o_n)
            .map(|_| masks.bernoulli(self.mask_prob))
            .collect();
        let bm: Vec<bool> = (0..o_n).map(|_| masks.bernoulli(self.mask_prob)).collect();
        let mut data = Rng::stream(ctx.seed, &format!("{family}/data"), ctx.index as u64);
        let mut make = |n: usize| {
            let x: Vec<f64> = (0..n * i_n)
                .map(|_| data.uniform_in(self.x_range.0, self.x_range.1))
                .collect();
            let mut y = Vec::with_capacity(n * o_n);
            for row in x.chunks(i_n) {
                for o in 0..o_n {
                    let mut v = if bm[o] { b[o] } else { 0.0 };
                    for (j, xj) in row.iter().enumerate() {
                        if am[o * i_n + j] {
                            v += a[o * i_n + j] * xj;
                        }
                    }
                    y.push(link(v) + self.noise * data.normal());
                }
            }
            (x, y)
        };
        let (xtr, ytr) = make(self.train);
        let (xte, yte) = make(self.test);
        RegressionTask::new(
            ctx.name,
            i_n,
            o_n,
            [xtr, xte],
            [ytr, yte],
            Some(TrueMask {
                weight: am,
                bias: bm,
                values: a.iter().chain(&b).copied().collect(),
            }),
        )
    }
}

fn build(ctx: &TaskContext) -> Result<Box<dyn Task>> {
    let spec = MaskedLinear::from_params(ctx)?;
    Ok(Box::new(spec.build(ctx, "linear", |v| v)))
}

inventory::submit! {
    TaskKind {
        name: "linear",
        summary: "y = (A ⊙ A_M) x + b ⊙ b_M (+ noise): shared A, b and a binary mask per task (the paper's regression)",
        params: PARAMS,
        build,
    }
}
