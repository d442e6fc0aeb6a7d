//! The per-element math of a gated training step: gates, their derivatives, the optimizer
//! rules and the mask regularisers, as loops over plain slices that the compiler vectorises.
//!
//! The optimizer rules (PyTorch's momentum form, Adam with per-parameter step counts) are the
//! only ones in gatekit: the candle reference updates the [`crate::params::ParamStore`] with
//! them too ([`update`] for `f32`, [`crate::optim::update_f64`] for `f64` runs).

use crate::gate::GateMode;
use crate::gate::Regularizer;
use crate::optim::OptimizerKind;
use rayon::prelude::*;

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
/// [`gate_values`] on one piece.
fn gate_values_on(
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
/// [`gate_gradients`] on one piece.
#[allow(clippy::too_many_arguments)]
fn gate_gradients_on(
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

/// Elements from which the loops here use every rayon thread: a 1000×1000 layer's gates and
/// Adam update (about 1 ms on one core) are bound by memory, and one core alone does not
/// reach a server socket's bandwidth; LeNet's largest layer (48 000 weights) stays on the
/// calling thread, where a fork-join would cost more than the loop. On the 2-core Zen 5 VM of
/// issue 28 the split gained nothing (its bandwidth did not grow with the second core). Every
/// element is computed alone, so the split changes no number.
const THREADED_LEN: usize = 1 << 17;

/// The piece length that gives each rayon thread one piece of `n` elements (a multiple of 64,
/// so pieces start on cache lines), or `None` to run on the calling thread.
fn piece_len(n: usize) -> Option<usize> {
    let threads = rayon::current_num_threads();
    (threads > 1 && n >= THREADED_LEN).then(|| n.div_ceil(threads).next_multiple_of(64))
}

/// `s` cut into `pieces` slices of `len` (the last shorter), or `pieces` empty slices when
/// `s` is empty (an optimizer state the rule does not use).
fn cut(s: &mut [f32], len: usize, pieces: usize) -> Vec<&mut [f32]> {
    if s.is_empty() {
        (0..pieces).map(|_| Default::default()).collect()
    } else {
        s.chunks_mut(len).collect()
    }
}

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
    let Some(len) = piece_len(mask.len()) else {
        return gate_values_on(mode, scale, mask, w, gate, theta);
    };
    let n = mask.len();
    mask.par_chunks(len)
        .zip(w[..n].par_chunks(len))
        .zip(gate[..n].par_chunks_mut(len))
        .zip(theta[..n].par_chunks_mut(len))
        .for_each(|(((m, w), g), t)| gate_values_on(mode, scale, m, w, g, t));
}

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
    let Some(len) = piece_len(w.len()) else {
        return gate_gradients_on(
            mode,
            scale,
            w,
            mask,
            gate,
            dtheta,
            dmask,
            regularizer,
            reg_weight,
        );
    };
    let n = w.len();
    w.par_chunks(len)
        .zip(mask[..n].par_chunks(len))
        .zip(gate[..n].par_chunks(len))
        .zip(dtheta[..n].par_chunks_mut(len))
        .zip(dmask[..n].par_chunks_mut(len))
        .for_each(|((((w, m), g), dt), dm)| {
            gate_gradients_on(mode, scale, w, m, g, dt, dm, regularizer, reg_weight)
        });
}

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
    let Some(len) = piece_len(p.len()) else {
        return apply_rule(p, g, &mut slot.first, &mut slot.second, rule, t);
    };
    let (n, pieces) = (p.len(), p.len().div_ceil(len));
    let first = cut(&mut slot.first, len, pieces);
    let second = cut(&mut slot.second, len, pieces);
    p.par_chunks_mut(len)
        .zip(g[..n].par_chunks(len))
        .zip(first)
        .zip(second)
        .for_each(|(((p, g), m), v)| apply_rule(p, g, m, v, rule, t));
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

    /// Above [`THREADED_LEN`] the loops run in one piece per thread: at 3 threads the gates,
    /// the gradients and every rule's update (SGD with no moments, Adam with two) equal one
    /// thread's bit for bit, an uneven length included.
    #[test]
    fn threaded_loops_equal_one_thread() {
        let n = 3 * THREADED_LEN + 77;
        let mask: Vec<f32> = (0..n).map(|i| ((i % 997) as f32 - 498.0) * 0.01).collect();
        let w: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        let dy: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
        let run = || {
            let (mut gate, mut theta) = (vec![0.0; n], vec![0.0; n]);
            gate_values(GateMode::Sigmoid, 1.0, &mask, &w, &mut gate, &mut theta);
            let (mut dtheta, mut dmask) = (dy.clone(), vec![0.0; n]);
            let (reg, weight) = (Regularizer::Sq, 0.01);
            gate_gradients(
                GateMode::Sigmoid,
                1.0,
                &w,
                &mask,
                &gate,
                &mut dtheta,
                &mut dmask,
                reg,
                weight,
            );
            let mut out = vec![gate, theta, dtheta.clone(), dmask.clone()];
            for kind in [OptimizerKind::Sgd, OptimizerKind::Adam] {
                let (mut p, mut slot) = (w.clone(), Slot::default());
                let rule = Rule {
                    kind,
                    lr: 0.01,
                    momentum: 0.9,
                    beta2: 0.999,
                };
                update(&mut p, &dtheta, &mut slot, rule);
                update(&mut p, &dmask, &mut slot, rule);
                out.extend([p, slot.first, slot.second]);
            }
            out.iter()
                .map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>())
                .collect::<Vec<_>>()
        };
        let pool = |t| rayon::ThreadPoolBuilder::new().num_threads(t).build();
        let one = pool(1).expect("pool").install(run);
        let three = pool(3).expect("pool").install(run);
        assert_eq!(one.len(), three.len());
        for (k, (a, b)) in one.iter().zip(&three).enumerate() {
            assert_eq!(a, b, "output {k}");
        }
        // Adam's moments are full length, SGD's empty: both layouts were exercised.
        assert_eq!((one[5].len(), one[6].len()), (0, 0));
        assert_eq!((one[8].len(), one[9].len()), (n, n));
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
