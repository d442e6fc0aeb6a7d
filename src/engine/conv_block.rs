//! The fused convolution block `pool(relu(conv(x, θW) + θb))`: one pass over the batch in the
//! forward direction and one in the backward direction, with the batch split into one
//! contiguous chunk per thread inside the op (each chunk owns its scratch and its partial
//! `∂W`, `∂b`, summed in chunk order afterwards, so results depend only on the thread count).
//!
//! Per sub-batch of `m` samples (as many as keep `cols` within [`COLS_BUDGET`]), with `cols` the
//! `[c·k·k, m·h_out·w_out]` matrix holding every sample's im2col side by side (so the products
//! are few and wide; one GEMM per sample, the first version, ran at about 180 against 212
//! loop steps/s in an A/B under the same load):
//! - forward: `z = θW · cols` (one GEMM), then bias, ReLU and max-pool in one sweep over `z`
//!   that records where each output's maximum came from;
//! - backward: scatter `∂y` to those positions (`∂z`), `∂W = ∂z · colsᵀ`, `∂b = Σ ∂z`, and
//!   `∂x = col2im(θWᵀ ∂z)` only when the block's input needs a gradient (never for the
//!   network's first layer). Each sub-batch's `cols` is rebuilt for this, in cache, rather than
//!   kept from the forward pass (measured faster, see [`COLS_BUDGET`]).

use super::pointwise::{NO_ARG, Planes, pool_sample, pool_sample_values};
use crate::kernel::direct;
use crate::kernel::im2col::{ConvGeom, col2im_strided, im2col_strided};
use crate::kernel::profile::{self, Phase};
use crate::kernel::{Mat, Order, chunk_len, matmul};
use gemm::Parallelism;
use rayon::prelude::*;

/// The sizes of one fused block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Block {
    pub geom: ConvGeom,
    pub c_out: usize,
    pub relu: bool,
    pub pool: usize,
    /// Run the direct kernels ([`direct`]) instead of im2col + GEMM: the network's first
    /// layer (no `∂x`) when [`direct::fits`] its geometry.
    pub direct: bool,
}

impl Block {
    fn hw(&self) -> usize {
        self.geom.cols()
    }

    fn out_len(&self) -> usize {
        self.c_out * (self.geom.h_out / self.pool) * (self.geom.w_out / self.pool)
    }
}

/// Values of `cols` one sub-batch may hold: 64 Ki floats (256 KiB, a quarter of this machine's
/// 1 MiB L2 per core), so the im2col writes and the GEMM's reads of it stay in cache, and the
/// backward pass rebuilds each sub-batch's `cols` instead of keeping the batch's. Measured on
/// the gated LeNet-5 step at batch 32, 1 thread (loop steps/s, two alternating rounds under
/// the same load): budgets of 16–128 Ki floats within noise of each other (about 240–260),
/// 512 Ki 226–236, and 2 Mi floats (the whole batch's `cols` kept from the forward pass,
/// 7.5 MB for the first layer) 147–157: the copy turns memory-bound.
const COLS_BUDGET: usize = 64 * 1024;

/// One chunk's buffers: one sub-batch's `cols` and pre-activation `z` (reused as `∂z`) and
/// `∂cols`, the argmax of every output of the chunk, partial `∂W` and `∂b`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chunk {
    cols: Vec<f32>,
    z: Vec<f32>,
    arg: Vec<u32>,
    dcols: Vec<f32>,
    dw: Vec<f32>,
    db: Vec<f32>,
    /// `∂z` in the direct kernel's plane layout, for a `∂W` without im2col.
    dzp: Vec<f32>,
}

/// Buffers a block keeps between its forward and backward pass, one [`Chunk`] per thread.
#[derive(Debug, Clone, Default)]
pub(crate) struct BlockBuffers {
    chunks: Vec<Chunk>,
    /// `θW` rotated by 180° with its channel axes swapped, for a direct `∂x` ([`direct_dx`]).
    rotated: Vec<f32>,
}

fn resize<T: Clone + Default>(v: &mut Vec<T>, len: usize) {
    if v.len() != len {
        v.resize(len, T::default());
    }
}

/// Runs `f` over `items`: inline for one, on rayon's threads otherwise.
fn run<I, F>(items: Vec<I>, f: F)
where
    I: Send,
    F: Fn(I) + Send + Sync,
{
    if items.len() <= 1 {
        items.into_iter().for_each(f);
    } else {
        items.into_par_iter().for_each(f);
    }
}

/// The im2col of every sample of `x` side by side in `cols` (`[rows, m·h_out·w_out]`).
fn fill_cols(b: &Block, x: &[f32], cols: &mut [f32]) {
    let (in_len, hw) = (b.geom.sample_len(), b.hw());
    let width = x.len() / in_len * hw;
    for (s, x_s) in x.chunks_exact(in_len).enumerate() {
        im2col_strided(&b.geom, x_s, &mut cols[s * hw..], width, 0.0);
    }
}

/// `z = θW · cols`: the pre-activations `[c_out, width]` of the samples whose im2col `cols`
/// (`[rows, width]`) holds.
fn conv_product(b: &Block, w: &[f32], cols: &[f32], z: &mut [f32]) {
    let rows = b.geom.rows();
    let width = cols.len() / rows;
    matmul(
        (b.c_out, width, rows),
        (z, Order::RowMajor),
        Mat::new(w, rows),
        Mat::new(cols, width),
        false,
        Parallelism::None,
    );
}

/// Forward pass over a batch: `x` `[n, c, h, w]` → `out` `[n, c_out, h_out/pool, w_out/pool]`.
/// `split`: the batch is split across rayon's threads (training); evaluation runs whole
/// pieces per thread and passes `false`.
pub(crate) fn forward(
    b: &Block,
    (x, w, bias): (&[f32], &[f32], &[f32]),
    out: &mut [f32],
    buf: &mut BlockBuffers,
    split: bool,
) {
    if b.direct {
        return forward_direct(b, (x, w, bias), out, buf, split);
    }
    let in_len = b.geom.sample_len();
    let n = x.len() / in_len;
    let chunk = if split { chunk_len(n) } else { n.max(1) };
    let count = n.div_ceil(chunk);
    if buf.chunks.len() < count {
        buf.chunks.resize_with(count, Chunk::default);
    }
    let (rows, hw, out_len) = (b.geom.rows(), b.hw(), b.out_len());
    let sub = (COLS_BUDGET / (rows * hw)).max(1);
    let items: Vec<_> = x
        .chunks(chunk * in_len)
        .zip(out.chunks_mut(chunk * out_len))
        .zip(buf.chunks.iter_mut())
        .collect();
    run(items, |((x, out), c)| {
        // Evaluation (`split` off) needs no argmax for a backward pass.
        resize(
            &mut c.arg,
            if split { x.len() / in_len * out_len } else { 0 },
        );
        let mut args = c.arg.chunks_mut(sub * out_len);
        for (x, out) in x.chunks(sub * in_len).zip(out.chunks_mut(sub * out_len)) {
            let m = x.len() / in_len;
            let width = m * hw;
            resize(&mut c.cols, rows * width);
            resize(&mut c.z, b.c_out * width);
            profile::timed(Phase::Im2col, 0, || fill_cols(b, x, &mut c.cols));
            profile::timed(Phase::Gemm, 2 * b.c_out * rows * width, || {
                conv_product(b, w, &c.cols, &mut c.z)
            });
            let mut arg = args.next();
            profile::timed(Phase::BiasReluPool, 0, || {
                for s in 0..m {
                    let dims = (b.c_out, b.geom.h_out, b.geom.w_out, b.pool);
                    let planes = Planes {
                        offset: s * hw,
                        stride: width,
                        row: b.geom.w_out,
                    };
                    let out = &mut out[s * out_len..(s + 1) * out_len];
                    match arg.as_deref_mut() {
                        // Relative to this sub-batch's `z`; the backward pass splits alike.
                        Some(arg) if split => {
                            let arg = &mut arg[s * out_len..(s + 1) * out_len];
                            pool_sample(dims, &c.z, planes, Some(bias), b.relu, out, arg);
                        }
                        _ => pool_sample_values(dims, &c.z, planes, Some(bias), b.relu, out),
                    }
                }
            });
        }
    });
}

/// Evaluation forward of the block for several models (parameter sets `(θW, θb)`) on the same
/// input, on the calling thread: each sub-batch's `cols` is built once and multiplied by every
/// model's weights while it is in cache (the im2col is as costly as the product on LeNet-5's
/// first layer). `outs[k]` receives model k's outputs.
pub(crate) fn forward_many(
    b: &Block,
    x: &[f32],
    params: &[(&[f32], &[f32])],
    outs: &mut [&mut [f32]],
    buf: &mut BlockBuffers,
) {
    let in_len = b.geom.sample_len();
    let (rows, hw, out_len) = (b.geom.rows(), b.hw(), b.out_len());
    let sub = (COLS_BUDGET / (rows * hw)).max(1);
    if buf.chunks.is_empty() {
        buf.chunks.push(Chunk::default());
    }
    let c = &mut buf.chunks[0];
    let dims = (b.c_out, b.geom.h_out, b.geom.w_out, b.pool);
    if b.direct {
        // One padded copy of each sample, multiplied by every model's weights.
        let g = &b.geom;
        let planes = direct_planes(g);
        resize(&mut c.cols, direct::input_len(g));
        resize(&mut c.z, b.c_out * direct::plane_len(g));
        for (s, x_s) in x.chunks_exact(in_len).enumerate() {
            direct::pad_input(g, x_s, &mut c.cols);
            for ((w, bias), out) in params.iter().zip(outs.iter_mut()) {
                direct::forward(g, b.c_out, w, &c.cols, &mut c.z);
                let out = &mut out[s * out_len..][..out_len];
                pool_sample_values(dims, &c.z, planes, Some(bias), b.relu, out);
            }
        }
        return;
    }
    for (piece, x) in x.chunks(sub * in_len).enumerate() {
        let m = x.len() / in_len;
        let width = m * hw;
        resize(&mut c.cols, rows * width);
        resize(&mut c.z, b.c_out * width);
        fill_cols(b, x, &mut c.cols);
        for ((w, bias), out) in params.iter().zip(outs.iter_mut()) {
            conv_product(b, w, &c.cols, &mut c.z);
            let out = &mut out[piece * sub * out_len..][..m * out_len];
            for (s, out) in out.chunks_exact_mut(out_len).enumerate() {
                let planes = Planes {
                    offset: s * hw,
                    stride: width,
                    row: b.geom.w_out,
                };
                pool_sample_values(dims, &c.z, planes, Some(bias), b.relu, out);
            }
        }
    }
}

/// Backward pass after [`forward`] on the same batch (same `x`): writes `∂W`, `∂b` and, when
/// given, `∂x`.
pub(crate) fn backward(
    b: &Block,
    (x, w): (&[f32], &[f32]),
    dy: &[f32],
    (dw, db): (&mut [f32], &mut [f32]),
    dx: Option<&mut [f32]>,
    buf: &mut BlockBuffers,
) {
    if b.direct {
        debug_assert!(
            dx.is_none(),
            "the direct path is for a first layer, without ∂x"
        );
        return backward_direct(b, x, dy, (dw, db), buf);
    }
    let (rows, hw, out_len, in_len) = (b.geom.rows(), b.hw(), b.out_len(), b.geom.sample_len());
    let n = dy.len() / out_len;
    let chunk = chunk_len(n);
    let count = n.div_ceil(chunk);
    let sub = (COLS_BUDGET / (rows * hw)).max(1);
    let mut dx_chunks: Vec<Option<&mut [f32]>> = match dx {
        Some(dx) => dx.chunks_mut(chunk * in_len).map(Some).collect(),
        None => (0..count).map(|_| None).collect(),
    };
    // ∂x as a direct convolution where it pays (the AVX-512 path): no ∂x GEMM, no col2im.
    let dx_direct = direct_dx_geom(b).filter(|_| dx_chunks.iter().any(Option::is_some));
    if let Some(gt) = &dx_direct {
        resize(&mut buf.rotated, b.geom.c * gt.rows());
        rotate_weights(b, w, &mut buf.rotated);
    }
    let rotated = &buf.rotated;
    let items: Vec<_> = dy
        .chunks(chunk * out_len)
        .zip(x.chunks(chunk * in_len))
        .zip(buf.chunks.iter_mut())
        .zip(dx_chunks.iter_mut())
        .enumerate()
        .collect();
    // ∂W straight from the input (no im2col) where the direct kernel computes this geometry.
    let dw_direct = direct::supports(&b.geom);
    let (x_all, lp) = (x, direct::plane_len(&b.geom));
    run(items, |(ci, (((dy, x), c), dx))| {
        resize(&mut c.dw, b.c_out * rows);
        resize(&mut c.db, b.c_out);
        c.dw.fill(0.0);
        c.db.fill(0.0);
        let Chunk {
            cols,
            z: dz,
            arg,
            dcols,
            dw: cdw,
            db: cdb,
            dzp,
        } = c;
        for (piece, (x, (dy, arg))) in x
            .chunks(sub * in_len)
            .zip(dy.chunks(sub * out_len).zip(arg.chunks(sub * out_len)))
            .enumerate()
        {
            let m = x.len() / in_len;
            let width = m * hw;
            resize(dz, b.c_out * width);
            if !dw_direct {
                resize(cols, rows * width);
                profile::timed(Phase::Im2colBack, 0, || fill_cols(b, x, cols));
            }
            profile::timed(Phase::ActBack, 0, || {
                dz.fill(0.0);
                for (&a, &g) in arg.iter().zip(dy) {
                    if a != NO_ARG {
                        dz[a as usize] += g;
                    }
                }
            });
            let flops = 2 * b.c_out * rows * width;
            if dw_direct {
                // ∂z in the direct kernel's plane layout, then ∂W from the block's input.
                resize(dzp, m * b.c_out * lp);
                profile::timed(Phase::ActBack, 0, || to_planes(b, dz, dzp));
                let start = (ci * chunk + piece * sub) * in_len;
                profile::timed(Phase::GemmDw, flops, || {
                    direct_dw(b, &x_all[start..], m, dzp, cols, cdw)
                });
            } else {
                // ∂W += ∂z · colsᵀ (∂Wᵀ = cols · ∂zᵀ measured the same: 3.03 vs 3.02 ms/step).
                profile::timed(Phase::GemmDw, flops, || {
                    matmul(
                        (b.c_out, rows, width),
                        (cdw, Order::RowMajor),
                        Mat::new(dz, width),
                        Mat::t(cols, width),
                        true,
                        Parallelism::None,
                    )
                });
            }
            profile::timed(Phase::BiasBack, 0, || {
                for (d, row) in cdb.iter_mut().zip(dz.chunks_exact(width)) {
                    *d += row.iter().sum::<f32>();
                }
            });
            if let Some(dx) = dx.as_deref_mut() {
                let dx = &mut dx[piece * sub * in_len..][..m * in_len];
                let direct = dx_direct.as_ref().map(|gt| (gt, rotated.as_slice()));
                input_gradient(b, w, dz, direct, dcols, dx);
            }
        }
    });
    reduce(&buf.chunks[..count], dw, db);
}

/// `∂x` (`[m, c, h, w]`, overwritten) of the samples whose `∂z` lie side by side in `dz`: by
/// the direct kernel when `direct` gives its geometry and rotated weights, else as
/// `θWᵀ ∂z` into `dcols` and col2im.
fn input_gradient(
    b: &Block,
    w: &[f32],
    dz: &[f32],
    direct: Option<(&ConvGeom, &[f32])>,
    dcols: &mut Vec<f32>,
    dx: &mut [f32],
) {
    let (rows, hw, in_len) = (b.geom.rows(), b.hw(), b.geom.sample_len());
    let width = dz.len() / b.c_out;
    let flops = 2 * b.c_out * rows * width;
    if let Some((gt, rotated)) = direct {
        profile::timed(Phase::GemmDx, flops, || {
            direct_dx(b, gt, rotated, dz, dcols, dx)
        });
        return;
    }
    resize(dcols, rows * width);
    profile::timed(Phase::GemmDx, flops, || {
        matmul(
            (rows, width, b.c_out),
            (dcols, Order::RowMajor),
            Mat::t(w, rows),
            Mat::new(dz, width),
            false,
            Parallelism::None,
        )
    });
    profile::timed(Phase::Col2im, 0, || {
        for (s, dx_s) in dx.chunks_exact_mut(in_len).enumerate() {
            dx_s.fill(0.0);
            col2im_strided(&b.geom, &dcols[s * hw..], width, dx_s);
        }
    });
}

/// The forward geometry whose convolution is this block's `∂x`, when the direct kernels compute
/// it on the AVX-512 path: `∂z` (`c_out` planes of `h_out × w_out`) zero-padded by `k − 1` on
/// every side, so the output is `h × w`. On the AVX2 and portable paths `∂x` stays a GEMM and
/// col2im (their numbers stay as they were; on AVX2 the direct kernel, at half the lanes,
/// would do about as well as the GEMM it replaces).
fn direct_dx_geom(b: &Block) -> Option<ConvGeom> {
    let g = &b.geom;
    if direct::active_path() != crate::kernel::peak::Isa::Avx512 || !direct::supports(g) {
        return None;
    }
    let k1 = g.k - 1;
    ConvGeom::new(b.c_out, g.h_out + 2 * k1, g.w_out + 2 * k1, g.k, 1, 0).ok()
}

/// `rotated[ci, (o, a, b)] = w[o, (ci, k−1−a, k−1−b)]`: the weights of [`direct_dx_geom`]'s
/// convolution (`[c, c_out·k·k]`) from the block's `θW` (`[c_out, c·k·k]`).
fn rotate_weights(b: &Block, w: &[f32], rotated: &mut [f32]) {
    let (c, k) = (b.geom.c, b.geom.k);
    let kk = k * k;
    for ci in 0..c {
        for o in 0..b.c_out {
            for a in 0..k {
                for bb in 0..k {
                    rotated[(ci * b.c_out + o) * kk + a * k + bb] =
                        w[(o * c + ci) * kk + (k - 1 - a) * k + (k - 1 - bb)];
                }
            }
        }
    }
}

/// `∂x` of the samples whose `∂z` lie side by side in `dz` (`[c_out, m·h_out·w_out]`), by the
/// direct forward kernel on geometry `gt` ([`direct_dx_geom`]) with the `rotated` weights:
/// per sample, `∂z` zero-padded by `k − 1` into the first part of `scratch`, convolved into its
/// second part, and the valid columns copied to `dx` (`[m, c, h, w]`, overwritten).
/// Each element sums its `c_out·k·k` taps in the kernel's tap order.
fn direct_dx(
    b: &Block,
    gt: &ConvGeom,
    rotated: &[f32],
    dz: &[f32],
    scratch: &mut Vec<f32>,
    dx: &mut [f32],
) {
    let g = &b.geom;
    let (hw, k1, lp) = (b.hw(), g.k - 1, direct::plane_len(gt));
    let width = dz.len() / b.c_out;
    let pin = direct::input_len(gt);
    resize(scratch, pin + g.c * lp);
    let (padded, out) = scratch.split_at_mut(pin);
    // The borders and the tail stay 0; every sample overwrites the same interior.
    padded.fill(0.0);
    for (s, dx_s) in dx.chunks_exact_mut(g.sample_len()).enumerate() {
        for o in 0..b.c_out {
            let src = &dz[o * width + s * hw..][..hw];
            for (oh, row) in src.chunks_exact(g.w_out).enumerate() {
                let at = (o * gt.h + oh + k1) * gt.w + k1;
                padded[at..at + g.w_out].copy_from_slice(row);
            }
        }
        direct::forward(gt, g.c, rotated, padded, out);
        for (plane, dst) in out.chunks_exact(lp).zip(dx_s.chunks_exact_mut(g.h * g.w)) {
            for (src, dst) in plane.chunks(gt.w).zip(dst.chunks_exact_mut(g.w)) {
                dst.copy_from_slice(&src[..g.w]);
            }
        }
    }
}

/// Copies `∂z` (`[c_out, m·h_out·w_out]`, the samples side by side) into the direct kernel's
/// plane layout `dzp` (`[m, c_out, plane_len]`); the ignored columns of `dzp` are never
/// written, so they keep the zeros they were created with.
fn to_planes(b: &Block, dz: &[f32], dzp: &mut [f32]) {
    let (g, hw, lp) = (&b.geom, b.hw(), direct::plane_len(&b.geom));
    let width = dz.len() / b.c_out;
    for (i, plane) in dzp.chunks_exact_mut(lp).enumerate() {
        let (s, o) = (i / b.c_out, i % b.c_out);
        let src = &dz[o * width + s * hw..][..hw];
        for (dst, src) in plane.chunks_mut(g.w).zip(src.chunks_exact(g.w_out)) {
            dst[..g.w_out].copy_from_slice(src);
        }
    }
}

/// `∂W += Σ ∂z ⋆ x` over `m` samples through the direct kernel: `x` starts at the first sample
/// and runs on to the end of the layer's input (the kernel reads a few values past each
/// sample, multiplied by the zero columns of `∂z`); the last sample is copied with a zero
/// tail (into `scratch`) when the input ends too soon after it.
fn direct_dw(b: &Block, x: &[f32], m: usize, dzp: &[f32], scratch: &mut Vec<f32>, dw: &mut [f32]) {
    let g = &b.geom;
    let (sl, plane) = (g.sample_len(), b.c_out * direct::plane_len(g));
    let fits = |k: usize| k > 0 && x.len() >= (k - 1) * sl + direct::input_len(g);
    if fits(m) {
        direct::backward_dw(g, b.c_out, m, dzp, x, dw);
        return;
    }
    if m > 1 {
        direct::backward_dw(g, b.c_out, m - 1, dzp, x, dw);
    }
    resize(scratch, direct::input_len(g));
    direct::pad_input(g, &x[(m - 1) * sl..], scratch);
    direct::backward_dw(g, b.c_out, 1, &dzp[(m - 1) * plane..], scratch, dw);
}

/// `∂W`, `∂b` as the chunks' partial sums added in chunk order.
fn reduce(chunks: &[Chunk], dw: &mut [f32], db: &mut [f32]) {
    profile::timed(Phase::Reduce, 0, || {
        dw.fill(0.0);
        db.fill(0.0);
        for c in chunks {
            for (d, &p) in dw.iter_mut().zip(&c.dw) {
                *d += p;
            }
            for (d, &p) in db.iter_mut().zip(&c.db) {
                *d += p;
            }
        }
    });
}

/// Where the direct kernel's output planes sit in its `z` (one sample).
fn direct_planes(g: &ConvGeom) -> Planes {
    Planes {
        offset: 0,
        stride: direct::plane_len(g),
        row: g.w,
    }
}

/// [`forward`] through the direct kernel, one sample at a time: the sample copied with a
/// zero tail (`cols` holds the copy), `z` its output planes, then bias, ReLU and pool as in
/// the GEMM path (the argmax indices are into the sample's `z`).
fn forward_direct(
    b: &Block,
    (x, w, bias): (&[f32], &[f32], &[f32]),
    out: &mut [f32],
    buf: &mut BlockBuffers,
    split: bool,
) {
    let g = &b.geom;
    let (in_len, out_len) = (g.sample_len(), b.out_len());
    let n = x.len() / in_len;
    let chunk = if split { chunk_len(n) } else { n.max(1) };
    let count = n.div_ceil(chunk);
    if buf.chunks.len() < count {
        buf.chunks.resize_with(count, Chunk::default);
    }
    let dims = (b.c_out, g.h_out, g.w_out, b.pool);
    let planes = direct_planes(g);
    let flops = 2 * b.c_out * g.rows() * g.cols();
    let items: Vec<_> = x
        .chunks(chunk * in_len)
        .zip(out.chunks_mut(chunk * out_len))
        .zip(buf.chunks.iter_mut())
        .collect();
    run(items, |((x, out), c)| {
        let Chunk { cols, z, arg, .. } = c;
        resize(arg, if split { x.len() / in_len * out_len } else { 0 });
        resize(cols, direct::input_len(g));
        resize(z, b.c_out * direct::plane_len(g));
        for (s, (x_s, out_s)) in x
            .chunks_exact(in_len)
            .zip(out.chunks_exact_mut(out_len))
            .enumerate()
        {
            profile::timed(Phase::Im2col, 0, || direct::pad_input(g, x_s, cols));
            profile::timed(Phase::Gemm, flops, || {
                direct::forward(g, b.c_out, w, cols, z)
            });
            profile::timed(Phase::BiasReluPool, 0, || {
                if split {
                    let arg = &mut arg[s * out_len..][..out_len];
                    pool_sample(dims, z, planes, Some(bias), b.relu, out_s, arg);
                } else {
                    pool_sample_values(dims, z, planes, Some(bias), b.relu, out_s);
                }
            });
        }
    });
}

/// [`backward`] through the direct kernel (no `∂x`): per sample, `∂y` scattered to the
/// maxima in the plane layout (the ignored columns stay 0) with `∂b` summed on the way, then
/// `∂W` from the padded copy of the sample.
fn backward_direct(
    b: &Block,
    x: &[f32],
    dy: &[f32],
    (dw, db): (&mut [f32], &mut [f32]),
    buf: &mut BlockBuffers,
) {
    let g = &b.geom;
    let (in_len, out_len) = (g.sample_len(), b.out_len());
    let n = dy.len() / out_len;
    let chunk = chunk_len(n);
    let count = n.div_ceil(chunk);
    let per_plane = out_len / b.c_out;
    let flops = 2 * b.c_out * g.rows() * g.cols();
    let items: Vec<_> = dy
        .chunks(chunk * out_len)
        .zip(x.chunks(chunk * in_len))
        .zip(buf.chunks.iter_mut())
        .collect();
    run(items, |((dy, x), c)| {
        let Chunk {
            cols,
            z: dz,
            arg,
            dw: cdw,
            db: cdb,
            ..
        } = c;
        resize(cdw, b.c_out * g.rows());
        resize(cdb, b.c_out);
        cdw.fill(0.0);
        cdb.fill(0.0);
        resize(cols, direct::input_len(g));
        resize(dz, b.c_out * direct::plane_len(g));
        // Zero once (the forward pass left z here); after each sample only the positions it
        // wrote are reset.
        dz.fill(0.0);
        for ((x_s, dy_s), arg_s) in x
            .chunks_exact(in_len)
            .zip(dy.chunks_exact(out_len))
            .zip(arg.chunks_exact(out_len))
        {
            profile::timed(Phase::Im2colBack, 0, || direct::pad_input(g, x_s, cols));
            profile::timed(Phase::ActBack, 0, || {
                for ((d, a), gy) in cdb
                    .iter_mut()
                    .zip(arg_s.chunks_exact(per_plane))
                    .zip(dy_s.chunks_exact(per_plane))
                {
                    let mut sum = 0.0f32;
                    for (&a, &gv) in a.iter().zip(gy) {
                        if a != NO_ARG {
                            dz[a as usize] += gv;
                            sum += gv;
                        }
                    }
                    *d += sum;
                }
            });
            profile::timed(Phase::GemmDw, flops, || {
                direct::backward_dw(g, b.c_out, 1, dz, cols, cdw)
            });
            for &a in arg_s {
                if a != NO_ARG {
                    dz[a as usize] = 0.0;
                }
            }
        }
    });
    reduce(&buf.chunks[..count], dw, db);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct `∂x` equals the GEMM + col2im one (LeNet's conv2 and an odd geometry), on
    /// whichever path the direct kernel takes here.
    #[test]
    fn direct_dx_matches_gemm_and_col2im() -> candle_core::Result<()> {
        let mut rng = crate::rng::Rng::new(5);
        for (c, h, w, k, c_out, m) in [(6, 14, 14, 5, 16, 3), (2, 9, 11, 3, 5, 2)] {
            let geom = ConvGeom::new(c, h, w, k, 1, 0)?;
            let b = Block {
                geom,
                c_out,
                relu: false,
                pool: 1,
                direct: false,
            };
            let (rows, hw) = (geom.rows(), b.hw());
            let width = m * hw;
            let mut normal =
                |n: usize| -> Vec<f32> { (0..n).map(|_| rng.normal() as f32).collect() };
            let wts = normal(c_out * rows);
            let dz = normal(c_out * width);
            // GEMM + col2im.
            let mut dcols = vec![0.0f32; rows * width];
            matmul(
                (rows, width, c_out),
                (&mut dcols, Order::RowMajor),
                Mat::t(&wts, rows),
                Mat::new(&dz, width),
                false,
                Parallelism::None,
            );
            let mut want = vec![0.0f32; m * geom.sample_len()];
            for (s, dx_s) in want.chunks_exact_mut(geom.sample_len()).enumerate() {
                col2im_strided(&geom, &dcols[s * hw..], width, dx_s);
            }
            // Direct.
            let k1 = k - 1;
            let gt = ConvGeom::new(c_out, geom.h_out + 2 * k1, geom.w_out + 2 * k1, k, 1, 0)?;
            let mut rotated = vec![0.0f32; c * gt.rows()];
            rotate_weights(&b, &wts, &mut rotated);
            let (mut scratch, mut got) = (Vec::new(), vec![f32::NAN; want.len()]);
            direct_dx(&b, &gt, &rotated, &dz, &mut scratch, &mut got);
            for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                    "{c}x{h}x{w} [{i}]: {g} vs {e}"
                );
            }
        }
        Ok(())
    }
}
