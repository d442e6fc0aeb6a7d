//! The per-element math of a gated training step: gates, their derivatives, the optimizer
//! rules and the mask regularisers, as loops over plain slices that the compiler vectorises.
//!
//! The optimizer rules (PyTorch's momentum form, Adam with per-parameter step counts) are the
//! only ones in gatekit: the candle reference updates the [`crate::params::ParamStore`] with
//! them too ([`update`] for `f32`, [`crate::optim::update_f64`] for `f64` runs).

use crate::gate::GateMode;
use crate::gate::Regularizer;
use crate::optim::OptimizerKind;

/// Defines `fn name(args)` three times over the same body: compiled for AVX-512, for AVX2 + FMA,
/// and for the baseline target, and picks the widest the CPU has at run time (the release build
/// targets plain x86-64, whose 4-wide SSE2 halves or quarters the throughput of these loops).
/// The loops have no reductions, so every version computes bit-identical results.
macro_rules! widest {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F, checked just above.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU supports AVX2 and FMA, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

/// `eˣ` for `x` in f32 without a libm call, so loops over it vectorise: Cephes' `expf`
/// (range reduction by ln 2, degree-6 polynomial, exponent by bit assembly). Relative error
/// below 2e-7 over the clamped range [-87, 88].
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer without a `round` call.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    // The integer n sits in the low mantissa bits of t: no float-to-int conversion (Rust's
    // saturating `as` does not vectorise well).
    let ni = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits((ni.wrapping_add(127) << 23) as u32)
}

/// σ(x) = 1 / (1 + e⁻ˣ).
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

widest! {
/// Writes the forward gate values `g(m)` of a mask and the effective parameter `θ = W ⊙ g`, in
/// one pass.
pub(crate) fn gate_values(
    mode: GateMode,
    scale: f32,
    mask: &[f32],
    w: &[f32],
    gate: &mut [f32],
    theta: &mut [f32],
) {
    let n = mask.len();
    let (mask, w, gate, theta) = (&mask[..n], &w[..n], &mut gate[..n], &mut theta[..n]);
    match mode {
        GateMode::Sigmoid => {
            for i in 0..n {
                let g = sigmoid(mask[i]);
                gate[i] = g;
                theta[i] = w[i] * g;
            }
        }
        GateMode::Hat => {
            for i in 0..n {
                let g = sigmoid(scale * mask[i]);
                gate[i] = g;
                theta[i] = w[i] * g;
            }
        }
        GateMode::Ste => {
            for i in 0..n {
                let g = if mask[i] > 0.0 { 1.0 } else { 0.0 };
                gate[i] = g;
                theta[i] = w[i] * g;
            }
        }
    }
}
}

widest! {
/// Splits `∂θ` into `∂W = ∂θ ⊙ g` (written over `dtheta`) and `∂M = ∂θ ⊙ W ⊙ g'(M)` plus the
/// regulariser's gradient (written to `dmask`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gate_gradients(
    mode: GateMode,
    scale: f32,
    w: &[f32],
    mask: &[f32],
    gate: &[f32],
    dtheta: &mut [f32],
    dmask: &mut [f32],
    regularizer: Regularizer,
    reg_weight: f32,
) {
    let n = w.len();
    let (w, mask, gate, dmask) = (&w[..n], &mask[..n], &gate[..n], &mut dmask[..n]);
    let dtheta = &mut dtheta[..n];
    match mode {
        GateMode::Sigmoid => {
            for i in 0..n {
                let (g, d) = (gate[i], dtheta[i]);
                dmask[i] = d * w[i] * g * (1.0 - g);
                dtheta[i] = d * g;
            }
        }
        GateMode::Hat => {
            for i in 0..n {
                let (g, d) = (gate[i], dtheta[i]);
                dmask[i] = d * w[i] * scale * g * (1.0 - g);
                dtheta[i] = d * g;
            }
        }
        GateMode::Ste => {
            for i in 0..n {
                let (g, d) = (gate[i], dtheta[i]);
                let s = sigmoid(mask[i]);
                dmask[i] = d * w[i] * s * (1.0 - s);
                dtheta[i] = d * g;
            }
        }
    }
    match regularizer {
        _ if reg_weight == 0.0 => {}
        Regularizer::None => {}
        // d/dm e^{-|m|} = -sign(m) e^{-|m|} (0 at m = 0, like candle's abs).
        Regularizer::Abs => {
            for (d, &m) in dmask.iter_mut().zip(mask) {
                let sign = if m > 0.0 {
                    1.0
                } else if m < 0.0 {
                    -1.0
                } else {
                    0.0
                };
                *d -= reg_weight * sign * exp(-m.abs());
            }
        }
        Regularizer::Sq => {
            for (d, &m) in dmask.iter_mut().zip(mask) {
                *d -= reg_weight * 2.0 * m * exp(-m * m);
            }
        }
    }
}
}

/// One parameter's optimizer state in `f32`.
pub(crate) type Slot = crate::optim::Slot<f32>;

/// An optimizer's rule and hyperparameters for one update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rule {
    pub kind: OptimizerKind,
    pub lr: f32,
    pub momentum: f32,
    pub beta2: f32,
}

const EPS: f32 = 1e-8;

/// Updates `p` in place with gradient `g` under `rule`, advancing `slot`.
pub(crate) fn update(p: &mut [f32], g: &[f32], slot: &mut Slot, rule: Rule) {
    slot.steps += 1;
    if rule.kind != OptimizerKind::Sgd && slot.first.len() != p.len() {
        slot.first = vec![0.0; p.len()];
    }
    if rule.kind == OptimizerKind::Adam && slot.second.len() != p.len() {
        slot.second = vec![0.0; p.len()];
    }
    let t = slot.steps.min(i32::MAX as u64) as i32;
    apply_rule(p, g, &mut slot.first, &mut slot.second, rule, t);
}

widest! {
/// The update rule's loop over one parameter (the moments already sized).
fn apply_rule(p: &mut [f32], g: &[f32], first: &mut [f32], second: &mut [f32], rule: Rule, t: i32) {
    let lr = rule.lr;
    match rule.kind {
        OptimizerKind::Sgd => {
            for (p, &g) in p.iter_mut().zip(g) {
                *p -= lr * g;
            }
        }
        OptimizerKind::Momentum => {
            let mu = rule.momentum;
            for ((p, &g), b) in p.iter_mut().zip(g).zip(first.iter_mut()) {
                *b = mu * *b + g;
                *p -= lr * *b;
            }
        }
        OptimizerKind::Adam => {
            let (b1, b2) = (rule.momentum, rule.beta2);
            let c1 = 1.0 / (1.0 - (b1 as f64).powi(t)) as f32;
            let c2 = 1.0 / (1.0 - (b2 as f64).powi(t)) as f32;
            for (((p, &g), m), v) in p
                .iter_mut()
                .zip(g)
                .zip(first.iter_mut())
                .zip(second.iter_mut())
            {
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                *p -= lr * (*m * c1) / ((*v * c2).sqrt() + EPS);
            }
        }
        OptimizerKind::Rmsprop => {
            // The square average lives in `first` (RMSProp has no first moment).
            let a = crate::optim::RMSPROP_ALPHA as f32;
            for ((p, &g), v) in p.iter_mut().zip(g).zip(first.iter_mut()) {
                *v = a * *v + (1.0 - a) * g * g;
                *p -= lr * g / (v.sqrt() + EPS);
            }
        }
    }
}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_paths_match_the_baseline_build_bit_for_bit() {
        // gate_values runs its AVX-512 or AVX2 version on CPUs that have them; the scalar
        // `sigmoid` here is compiled for the baseline target.
        let mask: Vec<f32> = (0..1003).map(|i| (i as f32 - 501.0) * 0.0371).collect();
        let w: Vec<f32> = (0..1003).map(|i| (i as f32 * 0.7).sin()).collect();
        let (mut gate, mut theta) = (vec![0.0; 1003], vec![0.0; 1003]);
        gate_values(GateMode::Sigmoid, 1.0, &mask, &w, &mut gate, &mut theta);
        for i in 0..mask.len() {
            let g = sigmoid(mask[i]);
            assert_eq!(gate[i].to_bits(), g.to_bits(), "gate {i}");
            assert_eq!(theta[i].to_bits(), (w[i] * g).to_bits(), "theta {i}");
        }
        let g: Vec<f32> = w.iter().map(|v| v * 0.3).collect();
        let mut p = w.clone();
        let mut slot = Slot::default();
        let rule = Rule {
            kind: OptimizerKind::Adam,
            lr: 0.01,
            momentum: 0.9,
            beta2: 0.999,
        };
        update(&mut p, &g, &mut slot, rule);
        for i in 0..p.len() {
            let m = (1.0 - 0.9f32) * g[i];
            let v = (1.0 - 0.999f32) * g[i] * g[i];
            let c1 = 1.0 / (1.0 - 0.9f32 as f64) as f32;
            let c2 = 1.0 / (1.0 - 0.999f32 as f64) as f32;
            let want = w[i] - 0.01 * (m * c1) / ((v * c2).sqrt() + EPS);
            assert_eq!(p[i].to_bits(), want.to_bits(), "adam {i}");
        }
    }

    /// RMSProp in `f32` follows PyTorch's formula over two steps, the square average kept in
    /// the slot's `first` moment.
    #[test]
    fn rmsprop_follows_pytorch() {
        let (mut p, mut slot) = (vec![1.0f32, -2.0], Slot::default());
        let rule = Rule {
            kind: OptimizerKind::Rmsprop,
            lr: 0.01,
            momentum: 0.9,
            beta2: 0.999,
        };
        let (mut want, mut v) = (p.clone(), [0.0f32; 2]);
        for g in [[0.5f32, -3.0], [0.25, 1.0]] {
            update(&mut p, &g, &mut slot, rule);
            for i in 0..2 {
                v[i] = 0.99 * v[i] + (1.0 - 0.99) * g[i] * g[i];
                want[i] -= 0.01 * g[i] / (v[i].sqrt() + EPS);
            }
        }
        assert_eq!(p, want);
        assert_eq!(slot.first, v.to_vec());
        assert!(slot.second.is_empty());
    }

    #[test]
    fn exp_and_sigmoid_match_libm() {
        let mut worst: f32 = 0.0;
        let mut x = -80.0f32;
        while x < 80.0 {
            let rel = (exp(x) - x.exp()).abs() / x.exp();
            worst = worst.max(rel);
            let s = 1.0 / (1.0 + (-x).exp());
            assert!((sigmoid(x) - s).abs() <= 1e-7 + 2e-7 * s, "σ({x})");
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
        assert_eq!(exp(-1000.0), exp(-87.0));
        assert!(exp(1000.0).is_finite());
    }
}
