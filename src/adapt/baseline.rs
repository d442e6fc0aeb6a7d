//! The two baselines of an adaptation, with the same step budget and batches as the methods:
//! a plain model trained from scratch on the K shots (the `separate` strategy for the new
//! task), and the run's `shared` model fine-tuned on them (all weights).

use super::mixture::Target;
use super::shots::Shots;
use crate::error::Result;
use crate::model::Network;
use crate::rng::Rng;
use crate::train::{Optimizer, OptimizerConfig};

/// Trains every parameter of `net` (plain, no gate) for `steps` steps in place.
pub fn train_plain(
    net: &Network,
    shots: &Shots,
    steps: usize,
    opt: OptimizerConfig,
    batch: usize,
    rng: &mut Rng,
    on_step: &mut dyn FnMut(),
) -> Result<()> {
    let objective = shots.task().objective();
    let mut opt = Optimizer::new(opt);
    for _ in 0..steps {
        let b = shots.batch(batch, rng)?;
        let out = net.forward(&b.x, None)?;
        let grads = Target::Loss(objective, &b.y).value(&out)?.backward()?;
        for (name, var) in net.params() {
            if let Some(g) = grads.get(var) {
                opt.step(name, var, g, 1.0)?;
            }
        }
        on_step();
    }
    Ok(())
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
