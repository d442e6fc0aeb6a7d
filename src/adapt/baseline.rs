//! The two baselines of an adaptation, with the same step budget and batches as the methods:
//! a plain model trained from scratch on the K shots (the `separate` strategy for the new
//! task), and the run's `shared` model fine-tuned on them (all weights).

use super::shots::Shots;
use crate::config::{OptimizerConfig, RunConfig};
use crate::error::Result;
use crate::learn::{Learner, StepSettings, Strategy};
use crate::model::Network;
use crate::params::ModelId;
use crate::rng::Rng;

/// Trains every parameter of `net` (plain, no gate) for `steps` steps in place, through the
/// training step of [`Learner`]; returns that learner, which predicts with the trained weights
/// (on the engine where the run has one).
#[allow(clippy::too_many_arguments)]
pub fn train_plain(
    run: &RunConfig,
    net: &Network,
    shots: &Shots,
    steps: usize,
    opt: OptimizerConfig,
    batch: usize,
    rng: &mut Rng,
    on_step: &mut dyn FnMut(),
) -> Result<Learner> {
    let objective = shots.task().objective();
    let mut learner = Learner::starting_from(Strategy::Shared, run, net, None, (opt, opt))?;
    let at = StepSettings {
        gate_scale: 1.0,
        w_lr_factor: 1.0,
        mask_lr_factor: 0.0,
    };
    for _ in 0..steps {
        let b = shots.batch(batch, rng)?;
        learner.train_step(Learner::NEW_TASK, &b, objective, at)?;
        on_step();
    }
    let trained = learner.model(ModelId::ONLY)?;
    for ((_, dst), (_, src)) in net.params().iter().zip(trained.params()) {
        dst.set(src.as_tensor())?;
    }
    Ok(learner)
}

/// A fresh copy of `net` (its own parameter storage) with the same values.
pub fn copy_network(net: &Network) -> Result<Network> {
    let params = net.params();
    let (dtype, device) = (params[0].1.dtype(), params[0].1.device().clone());
    let copy = Network::new(
        net.spec(),
        crate::model::WeightInit::Zeros,
        &mut Rng::new(0),
        dtype,
        &device,
    )?;
    for ((_, dst), (_, src)) in copy.params().iter().zip(params) {
        dst.set(&src.as_tensor().detach().copy()?)?;
    }
    Ok(copy)
}
