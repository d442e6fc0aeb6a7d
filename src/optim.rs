//! Optimizer settings: SGD, SGD with momentum (PyTorch's form: `buf = μ·buf + g`,
//! `p -= lr·buf`) and Adam, and learning-rate schedules.
//!
//! The rules themselves run in one place, on the flat buffers of a
//! [`crate::params::ParamStore`] (the engine's `update` module), for both training backends.
//! Their state is one [`crate::params::Slot`] per parameter, so a parameter that gets no
//! gradient in a step (another task's mask, another task's model under `separate`) keeps its
//! state untouched, and Adam counts steps per parameter so its bias correction is right for
//! masks picked rarely.

use serde::{Deserialize, Serialize};

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Plain SGD.
    Sgd,
    /// SGD with (heavy-ball) momentum.
    Momentum,
    /// Adam (Kingma & Ba), ε = 1e-8.
    Adam,
    /// RMSProp in PyTorch's form (`v = α·v + (1 − α)·g²`, `p -= lr·g / (√v + ε)`, α = 0.99,
    /// ε = 1e-8, no momentum): SupSup's optimizer for masks on permuted MNIST.
    Rmsprop,
}

/// RMSProp's smoothing constant α (PyTorch's default, which SupSup keeps).
pub const RMSPROP_ALPHA: f64 = 0.99;

/// How a learning rate changes over training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// The same rate throughout.
    #[default]
    Constant,
    /// Cosine decay from the rate to 0 over the run (`CosineAnnealingLR` with `T_max` = steps).
    Cosine,
}

impl Schedule {
    /// Multiplier of the base rate for the step after `step` of `total` steps, ramped up
    /// linearly over the first `warmup` steps.
    pub fn factor(self, step: usize, total: usize, warmup: usize) -> f64 {
        let ramp = if step < warmup {
            (step + 1) as f64 / (warmup + 1) as f64
        } else {
            1.0
        };
        ramp * match self {
            Schedule::Constant => 1.0,
            Schedule::Cosine => {
                0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total.max(1) as f64).cos())
            }
        }
    }
}

/// An optimizer's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OptimizerConfig {
    /// Update rule.
    pub kind: OptimizerKind,
    /// Learning rate.
    pub lr: f64,
    /// Momentum μ, or Adam's β₁.
    pub momentum: f64,
    /// Adam's β₂.
    pub beta2: f64,
}

/// One parameter's optimizer state: momentum / Adam first moment, Adam second moment, and the
/// number of updates it has had (empty vectors until first needed).
#[derive(Debug, Clone, PartialEq)]
pub struct Slot<T> {
    /// Momentum buffer, or Adam's first moment.
    pub first: Vec<T>,
    /// Adam's second moment.
    pub second: Vec<T>,
    /// Updates so far.
    pub steps: u64,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            first: Vec::new(),
            second: Vec::new(),
            steps: 0,
        }
    }
}

const EPS: f64 = 1e-8;

/// One update of `p` with gradient `g` under rule `kind` with `(lr, momentum or β₁, β₂)`,
/// advancing `slot`, in `f64` throughout: the rule of `f64` runs and of `gtk adapt`'s own
/// small optimisations (mixture logits, first-order MAML's outer step). The engine has the
/// same rule for `f32` buffers, vectorised. The operations are in the order of the candle
/// tensor code this replaced, so `f64` runs train bit for bit as before.
pub fn update_f64(
    p: &mut [f64],
    g: &[f64],
    slot: &mut Slot<f64>,
    kind: OptimizerKind,
    (lr, momentum, beta2): (f64, f64, f64),
) {
    slot.steps += 1;
    if kind != OptimizerKind::Sgd && slot.first.len() != p.len() {
        slot.first = vec![0.0; p.len()];
    }
    if kind == OptimizerKind::Adam && slot.second.len() != p.len() {
        slot.second = vec![0.0; p.len()];
    }
    let t = slot.steps.min(i32::MAX as u64) as i32;
    match kind {
        OptimizerKind::Sgd => {
            for (p, &g) in p.iter_mut().zip(g) {
                *p -= g * lr;
            }
        }
        OptimizerKind::Momentum => {
            for ((p, &g), b) in p.iter_mut().zip(g).zip(slot.first.iter_mut()) {
                *b = *b * momentum + g;
                *p -= *b * lr;
            }
        }
        OptimizerKind::Adam => {
            let c1 = 1.0 / (1.0 - momentum.powi(t));
            let c2 = 1.0 / (1.0 - beta2.powi(t));
            for (((p, &g), m), v) in p
                .iter_mut()
                .zip(g)
                .zip(slot.first.iter_mut())
                .zip(slot.second.iter_mut())
            {
                *m = *m * momentum + g * (1.0 - momentum);
                *v = *v * beta2 + (g * g) * (1.0 - beta2);
                *p -= ((*m * c1) / ((*v * c2).sqrt() + EPS)) * lr;
            }
        }
        OptimizerKind::Rmsprop => {
            // The square average lives in `first` (RMSProp has no first moment).
            let a = RMSPROP_ALPHA;
            for ((p, &g), v) in p.iter_mut().zip(g).zip(slot.first.iter_mut()) {
                *v = *v * a + (g * g) * (1.0 - a);
                *p -= (g / (v.sqrt() + EPS)) * lr;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimises (p − 3)² with the `f64` rule.
    fn quadratic(kind: OptimizerKind, steps: usize) -> f64 {
        let (mut p, mut slot) = (vec![0.0f64], Slot::default());
        for _ in 0..steps {
            let g = [2.0 * (p[0] - 3.0)];
            update_f64(&mut p, &g, &mut slot, kind, (0.1, 0.9, 0.999));
        }
        p[0]
    }

    #[test]
    fn f64_rules_converge_and_follow_pytorch() {
        assert!((quadratic(OptimizerKind::Sgd, 100) - 3.0).abs() < 1e-6);
        assert!((quadratic(OptimizerKind::Momentum, 300) - 3.0).abs() < 1e-4);
        assert!((quadratic(OptimizerKind::Adam, 500) - 3.0).abs() < 1e-2);
        assert!((quadratic(OptimizerKind::Rmsprop, 500) - 3.0).abs() < 0.1);
        // RMSProp's first step is lr · g / (√((1 − α)·g²) + ε) ≈ lr / √0.01 = 10·lr per unit sign.
        let (mut p, mut slot) = (vec![0.0f64, 0.0], Slot::default());
        let rule = (0.01, 0.9, 0.999);
        update_f64(
            &mut p,
            &[0.5, -2.0],
            &mut slot,
            OptimizerKind::Rmsprop,
            rule,
        );
        assert!(
            (p[0] + 0.1).abs() < 1e-6 && (p[1] - 0.1).abs() < 1e-6,
            "{p:?}"
        );
        // Adam's first bias-corrected step is lr · sign(g).
        let (mut p, mut slot) = (vec![1.0f64, -1.0], Slot::default());
        update_f64(
            &mut p,
            &[0.5, -2.0],
            &mut slot,
            OptimizerKind::Adam,
            (0.1, 0.9, 0.999),
        );
        assert!(
            (p[0] - 0.9).abs() < 1e-6 && (p[1] + 0.9).abs() < 1e-6,
            "{p:?}"
        );
        // PyTorch's momentum: buf = μ·buf + g, p -= lr·buf.
        let (mut p, mut slot) = (vec![0.0f64], Slot::default());
        for _ in 0..2 {
            let rule = (1.0, 0.5, 0.999);
            update_f64(&mut p, &[1.0], &mut slot, OptimizerKind::Momentum, rule);
        }
        assert_eq!(p, vec![-2.5]);
        assert_eq!(slot.steps, 2);
    }
}
