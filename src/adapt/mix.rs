//! `mix`: learn the weights of a softmax combination of the stored masks on K labelled
//! examples, W and the masks frozen: `α = softmax(a)`, gate `Σ α_i g(M_i)`, Adam on `a`.
//! (This is the `--method mix` of `gtk adapt`, like `pick.rs` and `meta.rs`; the mixture of
//! masks itself and its α-gradient, which all three use, is [`super::mask_mixture`].)
//!
//! The logits' gradient follows from the mixture's α-gradient through the softmax Jacobian:
//! `∂L/∂a_j = α_j (∂L/∂α_j − Σ_i α_i ∂L/∂α_i)`.

use super::mask_mixture::{Mixture, Target};
use super::shots::Shots;
use crate::error::Result;
use crate::optim::{OptimizerKind, Slot, update_f64};
use crate::rng::Rng;

/// `softmax(a)`.
pub fn softmax(a: &[f64]) -> Vec<f64> {
    let max = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = a.iter().map(|v| (v - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// Learns α with `steps` Adam steps at `lr` on batches of `batch` shots; returns α. Starts
/// from the uniform mixture.
pub fn learn_mixture(
    mix: &Mixture,
    shots: &Shots,
    steps: usize,
    lr: f64,
    batch: usize,
    rng: &mut Rng,
    on_step: &mut dyn FnMut(),
) -> Result<Vec<f64>> {
    let objective = shots.task().objective();
    let mut logits = vec![0.0f64; mix.tasks()];
    let mut slot = Slot::default();
    for _ in 0..steps {
        let alpha = softmax(&logits);
        let b = shots.batch(batch, rng)?;
        let (_, g) = mix.grad(&alpha, &b.x, Target::Loss(objective, &b.y))?;
        let mean: f64 = alpha.iter().zip(&g).map(|(a, g)| a * g).sum();
        let da: Vec<f64> = alpha.iter().zip(&g).map(|(a, g)| a * (g - mean)).collect();
        update_f64(
            &mut logits,
            &da,
            &mut slot,
            OptimizerKind::Adam,
            (lr, 0.9, 0.999),
        );
        on_step();
    }
    Ok(softmax(&logits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_a_distribution_and_shift_invariant() {
        let a = softmax(&[1.0, 2.0, 3.0]);
        let b = softmax(&[101.0, 102.0, 103.0]);
        assert!((a.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-12);
        }
        assert!(a[2] > a[1] && a[1] > a[0]);
    }
}
