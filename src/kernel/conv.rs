//! 2-D convolution as a candle custom op, lowered to `gemm` matrix products in both directions.
//!
//! # Shapes
//! - input `x` `[n, c, h, w]`, kernel `W` `[c_out, c, k, k]`, bias `b` `[c_out]`
//! - output `y` `[n, c_out, h_out, w_out]`, `h_out = (h + 2p − k)/s + 1`, `w_out` likewise
//!
//! # Math
//! With `cols(X_n)` the `[c·k·k, h_out·w_out]` im2col matrix of sample `n` (see `im2col`) and `W`
//! viewed as `[c_out, c·k·k]`:
//!
//! ```text
//! forward    Y_n  = W · cols(X_n) + b 1ᵀ                       [c_out, h_out·w_out]
//! backward   ∂W   = Σ_n ∂Y_n · cols(X_n)ᵀ                      [c_out, c·k·k]
//!            ∂b   = Σ_n ∂Y_n · 1                               [c_out]
//!            ∂X_n = col2im(Wᵀ · ∂Y_n)                          [c, h, w]
//! ```
//!
//! `∂X` is computed only when `x` is part of the autograd graph (a variable or the result of
//! tracked ops): a network's input image never needs it, and for LeNet-5's first layer it would
//! be the most expensive of the three products. Likewise `∂W` and `∂b` are skipped for a kernel
//! or bias that is not tracked.
//!
//! Each batch chunk (one per rayon thread) recomputes `cols(X_n)` in the backward pass instead of
//! keeping it from the forward pass: one reusable `[c·k·k, h_out·w_out]` buffer per chunk, and
//! nothing held between calls.

use super::im2col::{ConvGeom, col2im, im2col};
use super::{FloatKernel3, Real, at_float_type, chunk_len, dense, for_each_chunk};
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, bail};
use gemm::Parallelism;
use rayon::prelude::*;

/// `y = conv2d(x, w) + b`: `x` `[n, c_in, h, w]`, `w` `[c_out, c_in, k, k]`, `b` `[c_out]`; a
/// square kernel, the same `stride` and zero `padding` on both axes, no dilation, one group.
///
/// On the CPU in F32/F64 this is a custom op with its own im2col + gemm backward that computes
/// the gradient of `x` only when `x` needs one (the math is in the [module docs](super)). On
/// other devices and dtypes it is candle's `conv2d` followed by a broadcast bias add.
///
/// Shape, dtype and device mismatches are returned as errors.
pub fn conv2d(x: &Tensor, w: &Tensor, b: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    let (_, c, h, wd) = x.dims4()?;
    let (c_out, c_in, kh, kw) = w.dims4()?;
    if kh != kw {
        bail!("conv2d: kernel must be square, got {kh}x{kw}");
    }
    if c_in != c {
        bail!("conv2d: input has {c} channels but the kernel expects {c_in}");
    }
    if b.dims() != [c_out] {
        bail!(
            "conv2d: bias shape {:?} does not match {c_out} output channels",
            b.dims()
        );
    }
    if c_out == 0 {
        bail!("conv2d: the kernel has no output channels");
    }
    if w.dtype() != x.dtype() || b.dtype() != x.dtype() {
        bail!(
            "conv2d: dtypes differ (x {:?}, w {:?}, b {:?})",
            x.dtype(),
            w.dtype(),
            b.dtype()
        );
    }
    if !x.device().same_device(w.device()) || !x.device().same_device(b.device()) {
        bail!("conv2d: x, w and b must be on the same device");
    }
    let geom = ConvGeom::new(c, h, wd, kh, stride, padding)?;
    if !x.device().is_cpu() || !matches!(x.dtype(), DType::F32 | DType::F64) {
        return x
            .conv2d(w, padding, stride, 1, 1)?
            .broadcast_add(&b.reshape((1, c_out, 1, 1))?);
    }
    x.apply_op3(w, b, Conv2d { geom, c_out })
}

/// The forward op; its `bwd` applies [`Conv2dBackward`].
struct Conv2d {
    geom: ConvGeom,
    c_out: usize,
}

/// The backward op on `(x, w, ∂y)`: one flat output `[∂W (if need_w) | ∂b | ∂x (if need_x)]`,
/// so all three come from one pass over the batch.
struct Conv2dBackward {
    geom: ConvGeom,
    c_out: usize,
    need_x: bool,
    need_w: bool,
}

/// A matrix operand for [`matmul`]: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a, T> {
    data: &'a [T],
    rs: usize,
    cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A row-major matrix with `cols` columns.
    pub(crate) fn new(data: &'a [T], cols: usize) -> Self {
        Mat {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns (no copy: gemm takes strides).
    pub(crate) fn t(data: &'a [T], cols: usize) -> Self {
        Mat {
            data,
            rs: 1,
            cs: cols,
        }
    }

    /// Whether an `rows × cols` matrix with these strides lies inside `data`.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// How the `[m, n]` destination of a [`matmul`] is stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// `dst[i·n + j]`.
    RowMajor,
    /// `dst[i + j·m]`, i.e. the transpose stored row-major.
    ColMajor,
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` when `accumulate`; `dst` is `[m, n]` stored in
/// `order`, `lhs` is `[m, k]`, `rhs` is `[k, n]`.
pub(crate) fn matmul<T: Real>(
    (m, n, k): (usize, usize, usize),
    (dst, order): (&mut [T], Order),
    lhs: Mat<T>,
    rhs: Mat<T>,
    accumulate: bool,
    par: Parallelism,
) {
    // These are internal invariants (shapes were checked when the op was built); the asserts
    // make the unsafe call below sound even if one were broken.
    assert!(dst.len() >= m * n && lhs.fits(m, k) && rhs.fits(k, n));
    if m == 0 || n == 0 {
        return;
    }
    let (dst_rs, dst_cs) = match order {
        Order::RowMajor => (n, 1),
        Order::ColMajor => (1, m),
    };
    // SAFETY: every index the product touches was bounds-checked above; T is f32 or f64
    // (the only `Real` impls), the types gemm accepts; dst does not alias lhs or rhs (&mut).
    unsafe {
        super::blocking::gemm_fixed(
            (m, n, k),
            (dst.as_mut_ptr(), dst_rs as isize, dst_cs as isize),
            (lhs.data.as_ptr(), lhs.rs as isize, lhs.cs as isize),
            (rhs.data.as_ptr(), rhs.rs as isize, rhs.cs as isize),
            accumulate,
            T::ONE,
            par,
        );
    }
}

/// Gemm's own threading: only when the whole batch is one chunk (batch 1) but several threads
/// are available; otherwise the threads already work on separate chunks.
fn gemm_parallelism(chunks: usize) -> Parallelism {
    let threads = rayon::current_num_threads();
    if chunks <= 1 && threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

/// Checks that the layouts the op receives are the shapes it was built for.
fn expect_dims(what: &str, layout: &Layout, dims: &[usize]) -> Result<()> {
    if layout.dims() != dims {
        bail!(
            "conv2d: {what} has shape {:?}, expected {dims:?}",
            layout.dims()
        );
    }
    Ok(())
}

impl FloatKernel3 for Conv2d {
    fn run<T: Real>(
        &self,
        (sx, lx): (&CpuStorage, &Layout),
        (sw, lw): (&CpuStorage, &Layout),
        (sb, lb): (&CpuStorage, &Layout),
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geom;
        let (m, kk, l, sl) = (self.c_out, g.rows(), g.cols(), g.sample_len());
        let n = lx.dims()[0];
        expect_dims("x", lx, &[n, g.c, g.h, g.w])?;
        expect_dims("w", lw, &[m, g.c, g.k, g.k])?;
        expect_dims("b", lb, &[m])?;
        let (x, w, b) = (
            dense::<T>(sx, lx)?,
            dense::<T>(sw, lw)?,
            dense::<T>(sb, lb)?,
        );
        let mut y = vec![T::ZERO; n * m * l];
        let per = chunk_len(n);
        let par = gemm_parallelism(n.div_ceil(per));
        let run = |(ci, y_chunk): (usize, &mut [T])| {
            let mut cols = if g.is_pointwise() {
                Vec::new()
            } else {
                vec![T::ZERO; kk * l]
            };
            for (j, y_n) in y_chunk.chunks_exact_mut(m * l).enumerate() {
                let x_n = &x[(ci * per + j) * sl..][..sl];
                let cols_n: &[T] = if g.is_pointwise() {
                    x_n
                } else {
                    im2col(&g, x_n, &mut cols, T::ZERO);
                    &cols
                };
                // Start from the bias so the product accumulates onto it: no second pass.
                for (row, &bo) in y_n.chunks_exact_mut(l).zip(b.iter()) {
                    row.fill(bo);
                }
                matmul(
                    (m, l, kk),
                    (y_n, Order::RowMajor),
                    Mat::new(&w, kk),
                    Mat::new(cols_n, l),
                    true,
                    par,
                );
            }
        };
        for_each_chunk(&mut y, per * m * l, run);
        let shape = Shape::from((n, m, g.h_out, g.w_out));
        Ok((T::to_cpu_storage_owned(y), shape))
    }
}

impl CustomOp3 for Conv2d {
    fn name(&self) -> &'static str {
        "gatekit-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        at_float_type(self, "conv2d", (s1, l1), (s2, l2), (s3, l3))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // `track_op` is true for variables and for results of tracked ops: exactly the tensors
        // that candle's backward pass would propagate a gradient into.
        let (need_x, need_w, need_b) = (x.track_op(), w.track_op(), b.track_op());
        if !(need_x || need_w || need_b) {
            return Ok((None, None, None));
        }
        let op = Conv2dBackward {
            geom: self.geom,
            c_out: self.c_out,
            need_x,
            need_w,
        };
        let flat = x.apply_op3_no_bwd(w, dy, &op)?;
        let nw = if need_w { w.elem_count() } else { 0 };
        let dw = match need_w {
            true => Some(flat.narrow(0, 0, nw)?.reshape(w.shape())?),
            false => None,
        };
        let db = match need_b {
            true => Some(flat.narrow(0, nw, self.c_out)?),
            false => None,
        };
        let dx = match need_x {
            true => Some(
                flat.narrow(0, nw + self.c_out, x.elem_count())?
                    .reshape(x.shape())?,
            ),
            false => None,
        };
        Ok((dx, dw, db))
    }
}

impl FloatKernel3 for Conv2dBackward {
    fn run<T: Real>(
        &self,
        (sx, lx): (&CpuStorage, &Layout),
        (sw, lw): (&CpuStorage, &Layout),
        (sd, ld): (&CpuStorage, &Layout),
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geom;
        let (m, kk, l, sl) = (self.c_out, g.rows(), g.cols(), g.sample_len());
        let n = lx.dims()[0];
        expect_dims("x", lx, &[n, g.c, g.h, g.w])?;
        expect_dims("w", lw, &[m, g.c, g.k, g.k])?;
        expect_dims("the output gradient", ld, &[n, m, g.h_out, g.w_out])?;
        let (w, dy) = (dense::<T>(sw, lw)?, dense::<T>(sd, ld)?);
        // x is only read for ∂W: a broadcast or strided x is not gathered when it is not needed.
        let x = if self.need_w {
            dense::<T>(sx, lx)?
        } else {
            Default::default()
        };
        let nw = if self.need_w { m * kk } else { 0 };
        let nx = if self.need_x { n * sl } else { 0 };
        let mut out = vec![T::ZERO; nw + m + nx];
        let (head, dx) = out.split_at_mut(nw + m);
        let per = chunk_len(n);
        let chunks = n.div_ceil(per);
        let par = gemm_parallelism(chunks);
        // Each chunk writes its own slice of ∂x and returns its partial [∂Wᵀ | ∂b]; partials are
        // summed in chunk order below, so the result depends only on the thread count.
        let run = |(ci, dx_chunk): (usize, Option<&mut [T]>)| -> Vec<T> {
            let mut acc = vec![T::ZERO; nw + m];
            let (dwt, db) = acc.split_at_mut(nw);
            let scratch = || match g.is_pointwise() {
                true => Vec::new(),
                false => vec![T::ZERO; kk * l],
            };
            let mut cols = if self.need_w { scratch() } else { Vec::new() };
            let mut dcols = if self.need_x { scratch() } else { Vec::new() };
            let mut dx_chunk = dx_chunk;
            for s in ci * per..((ci + 1) * per).min(n) {
                let dy_n = &dy[s * m * l..][..m * l];
                for (acc_o, row) in db.iter_mut().zip(dy_n.chunks_exact(l)) {
                    *acc_o += row.iter().fold(T::ZERO, |a, &v| a + v);
                }
                if self.need_w {
                    let x_n = &x[s * sl..][..sl];
                    let cols_n: &[T] = if g.is_pointwise() {
                        x_n
                    } else {
                        im2col(&g, x_n, &mut cols, T::ZERO);
                        &cols
                    };
                    // ∂W is accumulated column-major (as ∂Wᵀ, transposed once at the end):
                    // that way gemm runs it without packing cols(X_n), its largest operand
                    // (measured 1.2-1.8x faster than row-major on LeNet's two convs).
                    let dst = (&mut *dwt, Order::ColMajor);
                    matmul(
                        (m, kk, l),
                        dst,
                        Mat::new(dy_n, l),
                        Mat::t(cols_n, l),
                        true,
                        par,
                    );
                }
                if let Some(dx_chunk) = dx_chunk.as_deref_mut() {
                    let dx_n = &mut dx_chunk[(s - ci * per) * sl..][..sl];
                    let wt = Mat::t(&w, kk);
                    if g.is_pointwise() {
                        // cols(X_n) is X_n itself, so Wᵀ·∂Y_n is ∂X_n: no col2im.
                        let dst = (dx_n, Order::RowMajor);
                        matmul((kk, l, m), dst, wt, Mat::new(dy_n, l), false, par);
                    } else {
                        let dst = (&mut dcols[..], Order::RowMajor);
                        matmul((kk, l, m), dst, wt, Mat::new(dy_n, l), false, par);
                        col2im(&g, &dcols, dx_n);
                    }
                }
            }
            acc
        };
        let parts: Vec<Option<&mut [T]>> = if self.need_x {
            dx.chunks_mut(per * sl).map(Some).collect()
        } else {
            (0..chunks).map(|_| None).collect()
        };
        let partials: Vec<Vec<T>> = if chunks > 1 {
            parts.into_par_iter().enumerate().map(run).collect()
        } else {
            parts.into_iter().enumerate().map(run).collect()
        };
        let mut sum = vec![T::ZERO; nw + m];
        for partial in partials {
            for (t, p) in sum.iter_mut().zip(partial) {
                *t += p;
            }
        }
        // [∂Wᵀ (c·k·k rows of c_out) | ∂b] into [∂W | ∂b].
        let (dwt, db) = sum.split_at(nw);
        for (r, row) in dwt.chunks_exact(m).enumerate() {
            for (o, &v) in row.iter().enumerate() {
                head[o * kk + r] = v;
            }
        }
        head[nw..].copy_from_slice(db);
        let len = out.len();
        Ok((T::to_cpu_storage_owned(out), Shape::from(len)))
    }
}

impl CustomOp3 for Conv2dBackward {
    fn name(&self) -> &'static str {
        "gatekit-conv2d-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        at_float_type(self, "conv2d backward", (s1, l1), (s2, l2), (s3, l3))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::test_util::{assert_close, randn};
    use crate::rng::Rng;
    use candle_core::{Device, Var};

    /// `(batch, c_in, h, w, c_out, k, stride, padding)`.
    type Case = (usize, usize, usize, usize, usize, usize, usize, usize);

    const CASES: &[Case] = &[
        (5, 3, 32, 32, 6, 5, 1, 0),  // LeNet-5 conv1
        (5, 6, 14, 14, 16, 5, 1, 0), // LeNet-5 conv2
        (1, 3, 32, 32, 6, 5, 1, 0),  // batch 1 (gemm's own threads when several)
        (5, 3, 11, 9, 4, 3, 2, 0),   // stride 2, rectangular, (h − k) not a multiple of s
        (1, 2, 10, 10, 3, 3, 2, 1),  // stride 2, padding 1
        (5, 2, 8, 7, 3, 5, 1, 2),    // padding 2
        (5, 4, 6, 6, 2, 1, 1, 0),    // 1x1 kernel: no im2col
        (2, 3, 7, 7, 2, 2, 3, 2),    // stride above the kernel size, padding 2
    ];

    /// candle's own conv2d plus bias: the reference.
    fn reference(x: &Tensor, w: &Tensor, b: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
        x.conv2d(w, pad, stride, 1, 1)?
            .broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?)
    }

    /// Random `x`, `w`, `b` for a case; the kernel is scaled by 1/√fan_in so outputs are O(1).
    fn inputs(rng: &mut Rng, case: Case, dtype: DType) -> Result<(Tensor, Tensor, Tensor)> {
        let (n, c, h, w, m, k, _, _) = case;
        let fan_in = (c * k * k) as f64;
        Ok((
            randn(rng, &[n, c, h, w], 1.0, dtype)?,
            randn(rng, &[m, c, k, k], fan_in.sqrt().recip(), dtype)?,
            randn(rng, &[m], 1.0, dtype)?,
        ))
    }

    #[test]
    fn forward_matches_candle() -> Result<()> {
        let mut rng = Rng::new(1);
        for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-12)] {
            for &case in CASES {
                let (x, w, b) = inputs(&mut rng, case, dtype)?;
                let (s, p) = (case.6, case.7);
                let what = format!("{dtype:?} {case:?}");
                assert_close(
                    &what,
                    &conv2d(&x, &w, &b, s, p)?,
                    &reference(&x, &w, &b, s, p)?,
                    tol,
                )?;
            }
        }
        Ok(())
    }

    #[test]
    fn forward_honours_strided_and_offset_layouts() -> Result<()> {
        let mut rng = Rng::new(2);
        let (n, c, h, wd, m, k) = (3, 3, 9, 8, 4, 3);
        for dtype in [DType::F32, DType::F64] {
            let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
            // A transposed image, a channel slice (offset + gap), a transposed kernel, a bias
            // slice with an offset and a broadcast (stride 0) bias.
            let x_t = randn(&mut rng, &[n, c, wd, h], 1.0, dtype)?.transpose(2, 3)?;
            let x_n = randn(&mut rng, &[n, c + 2, h, wd], 1.0, dtype)?.narrow(1, 1, c)?;
            let w_t = randn(&mut rng, &[c, m, k, k], 0.2, dtype)?.transpose(0, 1)?;
            let b_n = randn(&mut rng, &[2 * m], 1.0, dtype)?.narrow(0, 3, m)?;
            let b_0 = Tensor::new(0.5f64, &Device::Cpu)?
                .to_dtype(dtype)?
                .broadcast_as(m)?;
            assert!(!x_t.is_contiguous() && !x_n.is_contiguous() && !w_t.is_contiguous());
            for (x, b) in [(&x_t, &b_n), (&x_n, &b_0)] {
                for (s, p) in [(1, 0), (2, 1)] {
                    let got = conv2d(x, &w_t, b, s, p)?;
                    assert_close("strided", &got, &reference(x, &w_t, b, s, p)?, tol)?;
                }
            }
        }
        Ok(())
    }

    /// `Σ conv2d(x, w, b) ⊙ r` with plain tensors built from the given values.
    fn loss_at(case: Case, (x, w, b): (&[f64], &[f64], &[f64]), r: &Tensor) -> Result<f64> {
        let (n, c, h, wd, m, k, s, p) = case;
        let dev = &Device::Cpu;
        let y = conv2d(
            &Tensor::from_slice(x, (n, c, h, wd), dev)?,
            &Tensor::from_slice(w, (m, c, k, k), dev)?,
            &Tensor::from_slice(b, m, dev)?,
            s,
            p,
        )?;
        (y * r)?.sum_all()?.to_scalar::<f64>()
    }

    #[test]
    fn gradients_match_finite_differences_f64() -> Result<()> {
        let mut rng = Rng::new(3);
        let cases: &[Case] = &[
            (2, 2, 6, 5, 3, 3, 1, 0),
            (2, 2, 7, 6, 3, 3, 2, 1),
            (1, 3, 5, 5, 2, 2, 2, 2),
            (2, 2, 4, 4, 3, 1, 1, 0),
        ];
        for &case in cases {
            let (x, w, b) = inputs(&mut rng, case, DType::F64)?;
            let (xv, wv, bv) = (
                Var::from_tensor(&x)?,
                Var::from_tensor(&w)?,
                Var::from_tensor(&b)?,
            );
            let y = conv2d(&xv, &wv, &bv, case.6, case.7)?;
            let r = randn(&mut rng, y.dims(), 1.0, DType::F64)?;
            let grads = (&y * &r)?.sum_all()?.backward()?;
            let vals = [&x, &w, &b]
                .iter()
                .map(|t| t.flatten_all()?.to_vec1::<f64>())
                .collect::<Result<Vec<_>>>()?;
            for (which, var) in [&xv, &wv, &bv].into_iter().enumerate() {
                let analytic = grads
                    .get(var)
                    .expect("gradient")
                    .flatten_all()?
                    .to_vec1::<f64>()?;
                let eps = 1e-5;
                let mut worst: f64 = 0.0;
                let mut scale: f64 = 0.0;
                for i in 0..vals[which].len() {
                    let at = |delta: f64| -> Result<f64> {
                        let mut v = vals.clone();
                        v[which][i] += delta;
                        loss_at(case, (&v[0], &v[1], &v[2]), &r)
                    };
                    let fd = (at(eps)? - at(-eps)?) / (2.0 * eps);
                    worst = worst.max((analytic[i] - fd).abs());
                    scale = scale.max(fd.abs());
                }
                let rel = worst / scale;
                assert!(rel < 1e-6, "{case:?} input {which}: relative error {rel:e}");
            }
        }
        Ok(())
    }

    #[test]
    fn gradients_match_candle_autograd_f32() -> Result<()> {
        let mut rng = Rng::new(4);
        for (i, &case) in CASES.iter().enumerate() {
            let (x, w, b) = inputs(&mut rng, case, DType::F32)?;
            let (s, p) = (case.6, case.7);
            let (xv, wv, bv) = (
                Var::from_tensor(&x)?,
                Var::from_tensor(&w)?,
                Var::from_tensor(&b)?,
            );
            let ours = conv2d(&xv, &wv, &bv, s, p)?;
            let theirs = reference(&xv, &wv, &bv, s, p)?;
            // Odd cases use Σy, whose incoming gradient is a broadcast (all strides 0).
            let (g_ours, g_theirs) = if i % 2 == 0 {
                let r = randn(&mut rng, ours.dims(), 1.0, DType::F32)?;
                (
                    (&ours * &r)?.sum_all()?.backward()?,
                    (&theirs * &r)?.sum_all()?.backward()?,
                )
            } else {
                (ours.sum_all()?.backward()?, theirs.sum_all()?.backward()?)
            };
            for (name, var) in [("x", &xv), ("w", &wv), ("b", &bv)] {
                let what = format!("{case:?} d{name}");
                assert_close(
                    &what,
                    g_ours.get(var).unwrap(),
                    g_theirs.get(var).unwrap(),
                    1e-5,
                )?;
            }
        }
        // An input reached through a transpose: the gradient flows back through the view.
        let (x, w, b) = inputs(&mut rng, (2, 3, 8, 8, 4, 3, 1, 1), DType::F32)?;
        let xv = Var::from_tensor(&x)?;
        let xt = xv.transpose(2, 3)?;
        let g_ours = conv2d(&xt, &w, &b, 1, 1)?.sqr()?.sum_all()?.backward()?;
        let g_theirs = reference(&xt, &w, &b, 1, 1)?.sqr()?.sum_all()?.backward()?;
        assert_close(
            "transposed dx",
            g_ours.get(&xv).unwrap(),
            g_theirs.get(&xv).unwrap(),
            1e-5,
        )?;
        Ok(())
    }

    #[test]
    fn no_input_gradient_for_a_plain_input() -> Result<()> {
        let mut rng = Rng::new(5);
        let case = (4, 3, 32, 32, 6, 5, 1, 0);
        let (x, w, b) = inputs(&mut rng, case, DType::F32)?;
        let (wv, bv) = (Var::from_tensor(&w)?, Var::from_tensor(&b)?);
        assert!(!x.track_op());
        let grads = conv2d(&x, &wv, &bv, 1, 0)?.sum_all()?.backward()?;
        assert!(grads.get(&x).is_none(), "the plain input got a gradient");
        let expected = reference(&x, &wv, &bv, 1, 0)?.sum_all()?.backward()?;
        assert_close(
            "dw",
            grads.get(&wv).unwrap(),
            expected.get(&wv).unwrap(),
            1e-5,
        )?;
        assert_close(
            "db",
            grads.get(&bv).unwrap(),
            expected.get(&bv).unwrap(),
            1e-5,
        )?;

        // A plain bias gets nothing either; the kernel still does.
        let grads = conv2d(&x, &wv, &b, 1, 0)?.sum_all()?.backward()?;
        assert!(grads.get(&b).is_none() && grads.get(&x).is_none());
        assert!(grads.get(&wv).is_some());

        // An input that is the result of tracked ops does get one, through those ops.
        let xv = Var::from_tensor(&x)?;
        let hidden = (xv.as_tensor() * 2.0)?;
        assert!(!hidden.is_variable() && hidden.track_op());
        let grads = conv2d(&hidden, &w, &b, 1, 0)?.sum_all()?.backward()?;
        let expected = reference(&hidden, &w, &b, 1, 0)?.sum_all()?.backward()?;
        assert_close(
            "dx",
            grads.get(&xv).unwrap(),
            expected.get(&xv).unwrap(),
            1e-5,
        )?;
        Ok(())
    }

    #[test]
    fn results_are_deterministic_for_a_thread_count() -> Result<()> {
        let mut rng = Rng::new(6);
        let case = (7, 6, 14, 14, 16, 5, 1, 0);
        let (x, w, b) = inputs(&mut rng, case, DType::F32)?;
        let run = |threads: usize| -> Result<Vec<Vec<f32>>> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(candle_core::Error::wrap)?;
            pool.install(|| {
                let vars = [&x, &w, &b].map(|t| Var::from_tensor(t).unwrap());
                let y = conv2d(&vars[0], &vars[1], &vars[2], 1, 0)?;
                let grads = y.sqr()?.sum_all()?.backward()?;
                let mut out = vec![y.flatten_all()?.to_vec1::<f32>()?];
                for v in &vars {
                    out.push(grads.get(v).unwrap().flatten_all()?.to_vec1::<f32>()?);
                }
                Ok(out)
            })
        };
        // 3 threads split 7 samples 3 + 3 + 1: bit-identical on every run.
        assert_eq!(run(3)?, run(3)?);
        let (one, three) = (run(1)?, run(3)?);
        assert_eq!(
            one[0], three[0],
            "the forward pass does not depend on the split"
        );
        for (a, b) in one.iter().zip(&three) {
            let scale = a.iter().fold(1f32, |s, v| s.max(v.abs()));
            assert!(a.iter().zip(b).all(|(p, q)| (p - q).abs() <= 1e-5 * scale));
        }
        Ok(())
    }

    #[test]
    fn other_dtypes_fall_back_to_candle() -> Result<()> {
        // The path a CUDA device takes too: candle's conv2d plus a broadcast bias, with
        // candle's own backward.
        let mut rng = Rng::new(7);
        let (x, w, b) = inputs(&mut rng, (2, 3, 8, 8, 4, 3, 1, 1), DType::F32)?;
        let (xh, wh, bh) = (
            x.to_dtype(DType::F16)?,
            w.to_dtype(DType::F16)?,
            b.to_dtype(DType::F16)?,
        );
        let wv = Var::from_tensor(&wh)?;
        let y = conv2d(&xh, &wv, &bh, 1, 1)?;
        assert_eq!(y.dtype(), DType::F16);
        assert_close("f16", &y, &reference(&x, &w, &b, 1, 1)?, 5e-2)?;
        assert!(y.sum_all()?.backward()?.get(&wv).is_some());
        Ok(())
    }

    #[test]
    fn shape_errors_are_errors() -> Result<()> {
        let dev = &Device::Cpu;
        let t = |dims: &[usize]| Tensor::zeros(dims, DType::F32, dev);
        let (x, w, b) = (t(&[2, 3, 8, 8])?, t(&[4, 3, 3, 3])?, t(&[4])?);
        assert!(conv2d(&x, &w, &b, 1, 0).is_ok());
        assert!(
            conv2d(&t(&[3, 8, 8])?, &w, &b, 1, 0).is_err(),
            "rank 3 input"
        );
        assert!(
            conv2d(&t(&[2, 2, 8, 8])?, &w, &b, 1, 0).is_err(),
            "channel mismatch"
        );
        assert!(
            conv2d(&x, &t(&[4, 3, 3, 2])?, &b, 1, 0).is_err(),
            "non-square kernel"
        );
        assert!(conv2d(&x, &w, &t(&[5])?, 1, 0).is_err(), "bias length");
        assert!(
            conv2d(&x, &t(&[4, 3, 9, 9])?, &b, 1, 0).is_err(),
            "kernel larger than input"
        );
        assert!(conv2d(&x, &w, &b, 0, 0).is_err(), "stride 0");
        assert!(
            conv2d(&t(&[2, 3, 0, 8])?, &w, &b, 1, 2).is_err(),
            "empty image"
        );
        assert!(
            conv2d(&x.to_dtype(DType::F64)?, &w, &b, 1, 0).is_err(),
            "dtype mismatch"
        );
        Ok(())
    }
}
