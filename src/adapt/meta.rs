//! First-order MAML and Reptile: meta-learning baselines run in-house, so `gtk adapt` compares
//! its masks with meta-learned initialisations trained here on the same tasks, network, K and
//! adaptation steps, instead of with numbers quoted from papers.
//!
//! Both meta-train one initialisation θ of the plain network on the run's training tasks.
//! Each meta-iteration draws `tasks_per_iteration` tasks; for each, K shots are drawn from its
//! training split and a copy φ of θ takes the adaptation's `steps` SGD steps (`inner_lr`) on
//! them — exactly what happens to θ at test time on a new task. Then:
//!
//! - **first-order MAML** (Finn et al. 2017, §5.2's first-order approximation): the gradient of
//!   the loss at φ on a second draw of K shots (the query set) is applied to θ (Adam,
//!   `outer_lr`), averaged over the tasks;
//! - **Reptile** (Nichol et al. 2018): θ ← θ + `reptile_step` · mean(φ − θ).
//!
//! Only ordinary gradients are needed: the same forward/backward as every other baseline.

use super::baseline::{copy_network, train_plain};
use super::config::MetaConfig;
use super::mask_mixture::Target;
use super::shots::Shots;
use crate::config::{OptimizerConfig, RunConfig};
use crate::error::Result;
use crate::model::Network;
use crate::optim::{OptimizerKind, Slot, update_f64};
use crate::rng::Rng;
use crate::task::Task;
use candle_core::{DType, Device, Tensor};

/// Which meta-learner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaMethod {
    /// First-order MAML.
    FoMaml,
    /// Reptile.
    Reptile,
}

impl MetaMethod {
    /// Both, in table order.
    pub const ALL: [MetaMethod; 2] = [MetaMethod::FoMaml, MetaMethod::Reptile];

    /// The row name in `gtk adapt`'s table.
    pub fn as_str(self) -> &'static str {
        match self {
            MetaMethod::FoMaml => "first-order MAML",
            MetaMethod::Reptile => "Reptile",
        }
    }
}

/// Plain SGD at `lr`: the inner loop of both meta-learners, in meta-training and at test time.
pub fn inner_optimizer(lr: f64) -> OptimizerConfig {
    OptimizerConfig {
        kind: OptimizerKind::Sgd,
        lr,
        momentum: 0.0,
        beta2: 0.999,
    }
}

/// What meta-training needs besides the settings.
pub struct MetaJob<'a> {
    /// The trained run's configuration (precision and engine of the inner steps).
    pub run: &'a RunConfig,
    /// The run's training tasks.
    pub tasks: &'a [Box<dyn Task>],
    /// The initialisation to meta-train (changed in place).
    pub init: &'a Network,
    /// K.
    pub shots: usize,
    /// Inner SGD steps.
    pub steps: usize,
    /// Examples per inner step (drawn from the K shots with replacement).
    pub batch: usize,
    /// Seed of the task, shot and batch draws.
    pub seed: u64,
    /// Device and dtype of the tasks' batches.
    pub device: &'a Device,
    /// Batch dtype.
    pub dtype: DType,
}

/// Meta-trains `job.init` with `method`; `on_iteration` is called after each meta-iteration.
pub fn meta_train(
    method: MetaMethod,
    job: &MetaJob,
    cfg: &MetaConfig,
    on_iteration: &mut dyn FnMut(),
) -> Result<()> {
    let mut rng = Rng::stream(job.seed, "adapt/meta", method as u64);
    // First-order MAML's outer step: Adam with β₁ = 0 (RMSprop with bias correction), one
    // slot per parameter.
    let n = job.tasks.len();
    let params = job.init.params();
    let mut outer: Vec<Slot<f64>> = params.iter().map(|_| Slot::default()).collect();
    for _ in 0..cfg.iterations {
        let mut sums: Vec<Option<Tensor>> = vec![None; params.len()];
        for _ in 0..cfg.tasks_per_iteration {
            let task: &dyn Task = job.tasks[rng.below(n)].as_ref();
            let k = job.shots.min(task.len(crate::task::Split::Train));
            let support = Shots::draw(task, k, &mut rng, job.device, job.dtype);
            let phi = copy_network(job.init)?;
            train_plain(
                job.run,
                &phi,
                &support,
                job.steps,
                inner_optimizer(cfg.inner_lr),
                job.batch,
                &mut rng,
                &mut || {},
            )?;
            let contribution: Vec<Tensor> = match method {
                MetaMethod::FoMaml => {
                    let query = Shots::draw(task, k, &mut rng, job.device, job.dtype);
                    let b = query.head(k)?;
                    let out = phi.forward(&b.x, None)?;
                    let grads = Target::Loss(task.objective(), &b.y)
                        .value(&out)?
                        .backward()?;
                    phi.params()
                        .iter()
                        .map(|(_, v)| match grads.get(v) {
                            Some(g) => Ok(g.detach()),
                            None => Ok(v.as_tensor().zeros_like()?),
                        })
                        .collect::<Result<_>>()?
                }
                MetaMethod::Reptile => phi
                    .params()
                    .iter()
                    .zip(params.iter())
                    .map(|((_, p), (_, t))| Ok((p.as_tensor() - t.as_tensor())?.detach()))
                    .collect::<Result<_>>()?,
            };
            for (sum, c) in sums.iter_mut().zip(contribution) {
                *sum = Some(match sum.take() {
                    Some(s) => (s + c)?,
                    None => c,
                });
            }
        }
        let scale = 1.0 / cfg.tasks_per_iteration as f64;
        for (((_, var), sum), slot) in params.iter().zip(sums).zip(&mut outer) {
            let Some(sum) = sum else { continue };
            let mean = (sum * scale)?;
            match method {
                MetaMethod::FoMaml => {
                    let f64s = |t: &Tensor| t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>();
                    let (mut p, g) = (f64s(var.as_tensor())?, f64s(&mean)?);
                    update_f64(
                        &mut p,
                        &g,
                        slot,
                        OptimizerKind::Adam,
                        (cfg.outer_lr, 0.0, 0.999),
                    );
                    let p =
                        Tensor::from_vec(p, var.shape(), var.device())?.to_dtype(var.dtype())?;
                    var.set(&p)?
                }
                MetaMethod::Reptile => {
                    var.set(&(var.as_tensor() + (mean * cfg.reptile_step)?)?.detach())?
                }
            }
        }
        on_iteration();
    }
    for (name, var) in params {
        let sum = var
            .as_tensor()
            .abs()?
            .sum_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
        if !sum.is_finite() {
            return Err(crate::error::Error::config(
                "adapt",
                "adapt.meta.inner_lr",
                format!(
                    "{} meta-training diverged (parameter `{name}` is not finite); lower adapt.meta.inner_lr ({}) or adapt.meta.outer_lr ({})",
                    method.as_str(),
                    cfg.inner_lr,
                    cfg.outer_lr
                ),
            ));
        }
    }
    Ok(())
}
