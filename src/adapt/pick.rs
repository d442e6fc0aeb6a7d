//! `pick`: choose one stored mask for a new task from one gradient (SupSup, Wortsman et al.
//! 2020, "Supermasks in Superposition", one-shot and binary-search inference).
//!
//! With α = 1/T on every stored mask, the effective model uses `Σ α_i g(M_i)`; the gradient
//! `∂H/∂α_i` of the objective H (the mean output entropy, or the loss on labelled shots) says how
//! much giving mask i more weight lowers H, and the mask with the most negative gradient is
//! chosen. The halving variant repeats this on the surviving candidates (α = 1/|C| on C, 0
//! elsewhere), keeping the better half each round, so ⌈log₂ T⌉ gradients decide.

use super::config::PickVariant;
use super::mask_mixture::{Mixture, Target};
use candle_core::{Result, Tensor};

/// The choice of one pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// Position of the chosen mask among the mixture's stored tasks.
    pub chosen: usize,
    /// Gradients computed.
    pub rounds: usize,
}

/// Picks one stored mask for the batch `x` (with `target`).
pub fn pick(mix: &Mixture, x: &Tensor, target: Target, variant: PickVariant) -> Result<Choice> {
    let t = mix.tasks();
    let mut candidates: Vec<usize> = (0..t).collect();
    let mut rounds = 0;
    while candidates.len() > 1 {
        let mut alpha = vec![0.0; t];
        for &c in &candidates {
            alpha[c] = 1.0 / candidates.len() as f64;
        }
        let (_, grad) = mix.grad(&alpha, x, target)?;
        rounds += 1;
        // Most negative gradient first; ties keep the lower index (stable sort).
        candidates.sort_by(|&a, &b| grad[a].total_cmp(&grad[b]));
        let keep = match variant {
            PickVariant::OneShot => 1,
            PickVariant::Halving => candidates.len().div_ceil(2),
        };
        candidates.truncate(keep);
        candidates.sort_unstable();
    }
    Ok(Choice {
        chosen: candidates.first().copied().unwrap_or(0),
        rounds,
    })
}
