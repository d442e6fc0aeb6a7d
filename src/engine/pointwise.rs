//! Elementwise activations and a stand-alone max-pool (for models where the pool does not
//! directly follow a convolution and so is not fused into it).

use super::plan::Act;

/// Marks a pooled output whose gradient goes nowhere (a ReLU that cut it to 0).
pub(crate) const NO_ARG: u32 = u32::MAX;

/// `y = act(x)`.
pub(crate) fn act_forward(act: Act, x: &[f32], y: &mut [f32]) {
    match act {
        Act::Relu => {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = x.max(0.0);
            }
        }
        Act::Tanh => {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = x.tanh();
            }
        }
        Act::Sigmoid => {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = super::update::sigmoid(x);
            }
        }
    }
}

/// `∂x` from `∂y` and the activation's output `y`.
pub(crate) fn act_backward(act: Act, y: &[f32], dy: &[f32], dx: &mut [f32]) {
    let it = dx.iter_mut().zip(y).zip(dy);
    match act {
        Act::Relu => it.for_each(|((d, &y), &g)| *d = if y > 0.0 { g } else { 0.0 }),
        Act::Tanh => it.for_each(|((d, &y), &g)| *d = g * (1.0 - y * y)),
        Act::Sigmoid => it.for_each(|((d, &y), &g)| *d = g * y * (1.0 - y)),
    }
}

/// Where a sample's planes sit in a buffer: row `i` of plane `ch` of the sample is
/// `buf[offset + ch·stride + i·row ..][..w]`. A plain `[c, h, w]` sample has offset 0, stride
/// `h·w` and row `w`; inside a fused block's `[c_out, n·h·w]` matrix the stride is `n·h·w`;
/// the direct convolution's planes have rows of the input's width ([`crate::kernel::direct`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Planes {
    pub offset: usize,
    pub stride: usize,
    pub row: usize,
}

/// [`pool_sample`] for evaluation: the same outputs (the same comparisons, so the same value
/// on ties), without recording where each maximum came from.
pub(crate) fn pool_sample_values(
    (c, h, w, k): (usize, usize, usize, usize),
    x: &[f32],
    planes: Planes,
    bias: Option<&[f32]>,
    relu: bool,
    out: &mut [f32],
) {
    let (ho, wo) = (h / k, w / k);
    let finish = |m: f32, b: f32| {
        let v = m + b;
        if relu && (v <= 0.0 || v.is_nan()) {
            0.0
        } else {
            v
        }
    };
    let rs = planes.row;
    for ch in 0..c {
        let base = planes.offset + ch * planes.stride;
        let plane = &x[base..base + (h - 1) * rs + w];
        let b = bias.map_or(0.0, |b| b[ch]);
        let out = &mut out[ch * ho * wo..(ch + 1) * ho * wo];
        for (oh, out) in out.chunks_exact_mut(wo).enumerate() {
            if k == 2 {
                let r0 = &plane[2 * oh * rs..][..2 * wo];
                let r1 = &plane[(2 * oh + 1) * rs..][..2 * wo];
                for ((o, p0), p1) in out
                    .iter_mut()
                    .zip(r0.chunks_exact(2))
                    .zip(r1.chunks_exact(2))
                {
                    let m0 = if p0[1] > p0[0] { p0[1] } else { p0[0] };
                    let m1 = if p1[1] > p1[0] { p1[1] } else { p1[0] };
                    *o = finish(if m1 > m0 { m1 } else { m0 }, b);
                }
                continue;
            }
            for (ow, o) in out.iter_mut().enumerate() {
                let mut best = f32::NEG_INFINITY;
                for di in 0..k {
                    let row = (oh * k + di) * rs + ow * k;
                    for &v in &plane[row..row + k] {
                        if v > best {
                            best = v;
                        }
                    }
                }
                *o = finish(best, b);
            }
        }
    }
}

/// Max over `k`×`k` windows with stride `k` of one sample's `c` planes of `h`×`w` (plus
/// `bias[c]` and a ReLU when asked), writing the outputs and, per output, the index into `x`
/// of the maximum (the first one on ties, like PyTorch), or [`NO_ARG`] when the ReLU cut it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pool_sample(
    (c, h, w, k): (usize, usize, usize, usize),
    x: &[f32],
    planes: Planes,
    bias: Option<&[f32]>,
    relu: bool,
    out: &mut [f32],
    arg: &mut [u32],
) {
    let (ho, wo) = (h / k, w / k);
    let rs = planes.row;
    for ch in 0..c {
        let base = planes.offset + ch * planes.stride;
        let plane = &x[base..base + (h - 1) * rs + w];
        let b = bias.map_or(0.0, |b| b[ch]);
        let out = &mut out[ch * ho * wo..(ch + 1) * ho * wo];
        let arg = &mut arg[ch * ho * wo..(ch + 1) * ho * wo];
        for oh in 0..ho {
            let (out, arg) = (&mut out[oh * wo..][..wo], &mut arg[oh * wo..][..wo]);
            if k == 2 {
                let r0 = &plane[2 * oh * rs..][..2 * wo];
                let r1 = &plane[(2 * oh + 1) * rs..][..2 * wo];
                for ow in 0..wo {
                    let (a, bb) = (r0[2 * ow], r0[2 * ow + 1]);
                    let (cc, d) = (r1[2 * ow], r1[2 * ow + 1]);
                    let (m0, i0) = if bb > a { (bb, 1) } else { (a, 0) };
                    let (m1, i1) = if d > cc { (d, rs + 1) } else { (cc, rs) };
                    let (m, i) = if m1 > m0 { (m1, i1) } else { (m0, i0) };
                    let v = m + b;
                    let cut = relu && (v <= 0.0 || v.is_nan());
                    out[ow] = if cut { 0.0 } else { v };
                    arg[ow] = if cut {
                        NO_ARG
                    } else {
                        (base + 2 * oh * rs + 2 * ow + i) as u32
                    };
                }
                continue;
            }
            for ow in 0..wo {
                let mut best = f32::NEG_INFINITY;
                let mut at = (oh * k) * rs + ow * k;
                for di in 0..k {
                    let row = (oh * k + di) * rs + ow * k;
                    for (dj, &v) in plane[row..row + k].iter().enumerate() {
                        if v > best {
                            best = v;
                            at = row + dj;
                        }
                    }
                }
                let v = best + b;
                if relu && (v <= 0.0 || v.is_nan()) {
                    out[ow] = 0.0;
                    arg[ow] = NO_ARG;
                } else {
                    out[ow] = v;
                    arg[ow] = (base + at) as u32;
                }
            }
        }
    }
}

/// Routes each output gradient back to the input position `arg` recorded (adds into `dx`).
pub(crate) fn unpool_sample(arg: &[u32], dy: &[f32], dx: &mut [f32]) {
    for (&a, &g) in arg.iter().zip(dy) {
        if a != NO_ARG {
            dx[a as usize] += g;
        }
    }
}
