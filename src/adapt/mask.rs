//! `mask`: learn a new task's own real-valued mask on K labelled examples, W and the stored
//! masks frozen, through the training step itself ([`Learner::train_step`]: the fast engine for
//! f32 runs on the CPU, candle's autograd otherwise). The mask starts where the learned mixture is: `M₀ = g⁻¹(Σ α_i g(M_i))`, so the
//! first step's model is the mixture's model.

use super::shots::Shots;
use crate::config::{OptimizerConfig, RunConfig};
use crate::error::Result;
use crate::gate::GateMode;
use crate::learn::{Learner, StepSettings, Strategy};
use crate::model::Network;
use crate::rng::Rng;
use candle_core::{Tensor, Var};

/// Gates are clamped into [ε, 1 − ε] before inverting, so a mixture that agrees on 0 or 1
/// starts at a finite mask (|M| ≤ 9.2 for the sigmoid gate).
const GATE_EPS: f64 = 1e-4;

/// The mask whose gate under `mode` (at HAT scale `scale`) is `gate`.
pub fn mask_for_gate(gate: &Tensor, mode: GateMode, scale: f64) -> Result<Tensor> {
    let g = gate.clamp(GATE_EPS, 1.0 - GATE_EPS)?;
    // logit(g) = ln g − ln(1 − g)
    let logit = (g.log()? - g.affine(-1.0, 1.0)?.log()?)?;
    Ok(match mode {
        GateMode::Hat => (logit / scale)?,
        GateMode::Sigmoid | GateMode::Ste => logit,
    })
}

/// Trains masks starting at `init` for `steps` steps with `opt` on batches of `batch` shots
/// (W frozen), through the training step of [`Learner`]; returns them.
#[allow(clippy::too_many_arguments)]
pub fn learn_mask(
    run: &RunConfig,
    net: &Network,
    init: Vec<Tensor>,
    mode: GateMode,
    scale: f64,
    shots: &Shots,
    steps: usize,
    opt: OptimizerConfig,
    batch: usize,
    rng: &mut Rng,
    on_step: &mut dyn FnMut(),
) -> Result<Vec<Var>> {
    let objective = shots.task().objective();
    let mut learner = Learner::starting_from(
        Strategy::Gated,
        run,
        net,
        Some(init),
        (run.w_optimizer(), opt),
    )?;
    learner.set_gate_mode(mode);
    let at = StepSettings {
        gate_scale: scale,
        w_lr_factor: 0.0,
        mask_lr_factor: 1.0,
    };
    for _ in 0..steps {
        let b = shots.batch(batch, rng)?;
        learner.train_step(Learner::NEW_TASK, &b, objective, at)?;
        on_step();
    }
    Ok(learner
        .masks()?
        .and_then(|bank| bank.get(Learner::NEW_TASK).map(<[Var]>::to_vec))
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn mask_for_gate_inverts_each_gate() -> Result<()> {
        let g = Tensor::new(&[0.1f64, 0.5, 0.88], &Device::Cpu)?;
        for (mode, scale) in [(GateMode::Sigmoid, 1.0), (GateMode::Hat, 7.0)] {
            let m = mask_for_gate(&g, mode, scale)?;
            let back = mode.gate_value(&m, scale)?.to_vec1::<f64>()?;
            for (a, b) in back.iter().zip([0.1, 0.5, 0.88]) {
                assert!((a - b).abs() < 1e-12, "{mode:?}: {a} vs {b}");
            }
        }
        Ok(())
    }
}
