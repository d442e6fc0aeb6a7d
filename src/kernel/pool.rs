//! Non-overlapping max pooling as a candle custom op whose gradient goes to one element per
//! window.
//!
//! # Shapes
//! - input `[n, c, h, w]`, output `[n, c, ⌊h/k⌋, ⌊w/k⌋]`: window = stride = `k`; trailing rows
//!   and columns that do not fill a window are dropped (PyTorch's floor mode)
//!
//! # Math
//! ```text
//! y[n, c, i, j]  = x[n, c, a, b]      with (a, b) = the first maximum of the window
//!                                        rows k·i..k·i+k, cols k·j..k·j+k, in row-major order
//! ∂x[n, c, a, b] = ∂y[n, c, i, j]     at that (a, b), 0 everywhere else
//! ```
//!
//! The same rule as PyTorch: on ties exactly one element, the first, gets the gradient (candle
//! 0.11.1's `max_pool2d` instead scales by the share of maxima, and a reshape + `max` gives the
//! full gradient to every tied element). A NaN counts as the maximum, so it propagates.
//!
//! The backward pass recomputes the positions from the input rather than storing them: one more
//! scan of `x`, no index tensor kept alive by the graph.

use super::{Real, chunk_len, dense, for_each_chunk};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, bail};

/// Non-overlapping `k×k` max pooling (window = stride = `k`) of `x` `[n, c, h, w]` to
/// `[n, c, h/k, w/k]`, rounding down (trailing rows and columns are dropped).
///
/// The gradient goes to the first maximum of each window in row-major order, like PyTorch. On
/// the CPU in F32/F64 this is a custom op (see the [module docs](super)); elsewhere it is built
/// from candle ops (window argmax + gather) with the same routing.
///
/// A `k` of 0 or larger than the image is an error.
pub fn max_pool2d(x: &Tensor, k: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if k == 0 {
        bail!("max_pool2d: window size must be at least 1");
    }
    if h < k || w < k {
        bail!("max_pool2d: window {k}x{k} larger than the {h}x{w} input");
    }
    if !x.device().is_cpu() || !matches!(x.dtype(), DType::F32 | DType::F64) {
        return max_pool2d_candle(x, k);
    }
    x.apply_op1(MaxPool { k })
}

/// The same pooling from candle ops, for devices without the CPU kernel: the windows become the
/// last axis, `argmax` picks one element per window (candle's CPU argmax keeps the first of
/// equal values) and `gather`'s backward routes the gradient to it alone.
pub(crate) fn max_pool2d_candle(x: &Tensor, k: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (ho, wo) = (h / k, w / k);
    let windows = x
        .narrow(2, 0, ho * k)?
        .narrow(3, 0, wo * k)?
        .reshape((n, c, ho, k, wo, k))?
        .permute((0, 1, 2, 4, 3, 5))?
        .reshape((n, c, ho, wo, k * k))?;
    let first = windows.argmax_keepdim(4)?;
    windows.gather(&first, 4)?.squeeze(4)
}

/// The forward op; its `bwd` applies [`MaxPoolBackward`].
struct MaxPool {
    k: usize,
}

/// The backward op on `(x, ∂y)`, giving `∂x`.
struct MaxPoolBackward {
    k: usize,
}

/// `y[i, j] = max` of window `(i, j)` of one `[h, w]` plane (row length `w`), NaN winning.
///
/// Values only, streamed one input row at a time, so the compiler can keep the running maxima
/// in registers; which element was the maximum only matters to the backward pass.
fn pool_plane<T: Real>(x: &[T], w: usize, k: usize, y: &mut [T]) {
    let wo = w / k;
    for (i, y_row) in y.chunks_exact_mut(wo).enumerate() {
        for r in 0..k {
            let row = &x[(i * k + r) * w..][..wo * k];
            for (top, window_row) in y_row.iter_mut().zip(row.chunks_exact(k)) {
                let mut t = if r == 0 { window_row[0] } else { *top };
                for &v in window_row {
                    t = if v > t || v.is_nan() { v } else { t };
                }
                *top = t;
            }
        }
    }
}

/// Calls `visit(out, at)` for every window of one `[h, w]` plane (row length `w`): `out` is the
/// window's index in the `[h/k, w/k]` output, `at` the plane position of its first maximum.
fn for_each_window_max<T: Real>(x: &[T], w: usize, k: usize, mut visit: impl FnMut(usize, usize)) {
    let (ho, wo) = (x.len() / w / k, w / k);
    for i in 0..ho {
        let band = &x[i * k * w..][..k * w];
        for j in 0..wo {
            let (mut best, mut top) = (j * k, band[j * k]);
            for r in 0..k {
                let row = r * w + j * k;
                for (at, &v) in band[row..row + k].iter().enumerate() {
                    // Strictly greater keeps the first of equal values; once a NaN is held
                    // nothing compares greater, so the first NaN wins. Non-short-circuit `|`,
                    // `&` and the selects below compile to conditional moves: with random data
                    // the winner is unpredictable, and the branchy form was 4x slower.
                    let take = (v > top) | (v.is_nan() & !top.is_nan());
                    best = if take { row + at } else { best };
                    top = if take { v } else { top };
                }
            }
            visit(i * wo + j, i * k * w + best);
        }
    }
}

/// The sizes `(planes, h, w, h_out, w_out)` for window `k`, from a 4-D layout.
fn plane_dims(layout: &Layout, k: usize) -> Result<(usize, usize, usize, usize, usize)> {
    let (n, c, h, w) = layout.shape().dims4()?;
    if k == 0 || h < k || w < k {
        bail!("max_pool2d: window {k}x{k} does not fit the {h}x{w} input");
    }
    Ok((n * c, h, w, h / k, w / k))
}

impl MaxPool {
    fn fwd<T: Real>(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let k = self.k;
        let (planes, h, w, ho, wo) = plane_dims(l, k)?;
        let x = dense::<T>(s, l)?;
        let mut y = vec![T::ZERO; planes * ho * wo];
        let per = chunk_len(planes);
        for_each_chunk(&mut y, per * ho * wo, |(ci, y_chunk)| {
            for (p, yp) in y_chunk.chunks_exact_mut(ho * wo).enumerate() {
                let xp = &x[(ci * per + p) * h * w..][..h * w];
                pool_plane(xp, w, k, yp);
            }
        });
        let dims = l.dims();
        let shape = Shape::from((dims[0], dims[1], ho, wo));
        Ok((T::to_cpu_storage_owned(y), shape))
    }
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "gatekit-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        match s {
            CpuStorage::F32(_) => self.fwd::<f32>(s, l),
            CpuStorage::F64(_) => self.fwd::<f64>(s, l),
            _ => bail!("max_pool2d: the CPU kernel takes F32 or F64"),
        }
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        // This op is only in the graph when x is tracked, so x always wants its gradient.
        Ok(Some(
            x.apply_op2_no_bwd(dy, &MaxPoolBackward { k: self.k })?,
        ))
    }
}

impl MaxPoolBackward {
    fn bwd<T: Real>(
        &self,
        (sx, lx): (&CpuStorage, &Layout),
        (sd, ld): (&CpuStorage, &Layout),
    ) -> Result<(CpuStorage, Shape)> {
        let k = self.k;
        let (planes, h, w, ho, wo) = plane_dims(lx, k)?;
        let dims = lx.dims();
        if ld.dims() != [dims[0], dims[1], ho, wo] {
            bail!(
                "max_pool2d backward: gradient shape {:?} does not match the output {:?}",
                ld.dims(),
                [dims[0], dims[1], ho, wo]
            );
        }
        let (x, dy) = (dense::<T>(sx, lx)?, dense::<T>(sd, ld)?);
        let mut dx = vec![T::ZERO; planes * h * w];
        let per = chunk_len(planes);
        for_each_chunk(&mut dx, per * h * w, |(ci, dx_chunk)| {
            for (p, dxp) in dx_chunk.chunks_exact_mut(h * w).enumerate() {
                let plane = ci * per + p;
                let xp = &x[plane * h * w..][..h * w];
                let dyp = &dy[plane * ho * wo..][..ho * wo];
                // Windows do not overlap: each input element gets at most one write.
                for_each_window_max(xp, w, k, |out, at| dxp[at] = dyp[out]);
            }
        });
        Ok((T::to_cpu_storage_owned(dx), lx.shape().clone()))
    }
}

impl CustomOp2 for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "gatekit-max-pool2d-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => self.bwd::<f32>((s1, l1), (s2, l2)),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => self.bwd::<f64>((s1, l1), (s2, l2)),
            _ => bail!("max_pool2d backward: the CPU kernel takes F32 or F64 for both inputs"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::test_util::randn;
    use crate::rng::Rng;
    use candle_core::{Device, Var};

    /// The reshape + max reduction the network used before: the forward reference.
    fn reshape_max(x: &Tensor, k: usize) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let (ho, wo) = (h / k, w / k);
        x.narrow(2, 0, ho * k)?
            .narrow(3, 0, wo * k)?
            .reshape((n, c, ho, k, wo, k))?
            .max(5)?
            .max(3)
    }

    fn flat(t: &Tensor) -> Result<Vec<f64>> {
        t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()
    }

    #[test]
    fn forward_equals_reshape_max() -> Result<()> {
        let mut rng = Rng::new(7);
        for dtype in [DType::F32, DType::F64] {
            // Even sizes, odd sizes that drop a trailing row/column, k = 1 and k = 3, and a
            // transposed (strided) input.
            for (dims, k) in [
                ([3, 4, 8, 8], 2),
                ([2, 3, 5, 5], 2),
                ([2, 2, 7, 6], 3),
                ([1, 2, 4, 3], 1),
            ] {
                let x = randn(&mut rng, &dims, 1.0, dtype)?;
                assert_eq!(flat(&max_pool2d(&x, k)?)?, flat(&reshape_max(&x, k)?)?);
                let xt = x.transpose(2, 3)?;
                assert_eq!(flat(&max_pool2d(&xt, k)?)?, flat(&reshape_max(&xt, k)?)?);
            }
        }
        let x = Tensor::zeros((2, 3, 5, 5), DType::F32, &Device::Cpu)?;
        assert_eq!(max_pool2d(&x, 2)?.dims(), &[2, 3, 2, 2]);
        Ok(())
    }

    /// One 4x6 plane of 2x2 windows with ties: all equal, two equal maxima in the second row,
    /// on the diagonal, in the first row, and a NaN (the maximum) after an equal pair.
    #[rustfmt::skip]
    fn tied_plane() -> Vec<f64> {
        let nan = f64::NAN;
        vec![
            1.0, 1.0,   0.0, 1.0,   3.0, 0.0,
            1.0, 1.0,   2.0, 2.0,   0.0, 3.0,
            5.0, 5.0,   4.0, 4.0,  -1.0, -2.0,
            5.0, 0.0,   4.0, nan,  -3.0, -1.0,
        ]
    }

    /// The gradient the tied plane must get when window `i` receives `10 + i`.
    #[rustfmt::skip]
    const TIED_GRAD: [f64; 24] = [
        10.0, 0.0,  0.0, 0.0,  12.0, 0.0,
         0.0, 0.0, 11.0, 0.0,   0.0, 0.0,
        13.0, 0.0,  0.0, 0.0,  15.0, 0.0,
         0.0, 0.0,  0.0, 14.0,  0.0, 0.0,
    ];

    #[test]
    fn gradient_goes_to_the_first_maximum_of_each_window() -> Result<()> {
        for dtype in [DType::F32, DType::F64] {
            let x = Var::from_tensor(
                &Tensor::from_vec(tied_plane(), (1, 1, 4, 6), &Device::Cpu)?.to_dtype(dtype)?,
            )?;
            let y = max_pool2d(&x, 2)?;
            let yv = flat(&y)?;
            assert_eq!(&yv[..4], &[1.0, 2.0, 3.0, 5.0]);
            assert!(yv[4].is_nan() && yv[5] == -1.0);
            let r = Tensor::new(&[10.0f64, 11., 12., 13., 14., 15.], &Device::Cpu)?
                .reshape((1, 1, 2, 3))?
                .to_dtype(dtype)?;
            let grads = (&y * &r)?.sum_all()?.backward()?;
            assert_eq!(flat(grads.get(&x).unwrap())?, TIED_GRAD);
        }
        Ok(())
    }

    #[test]
    fn gradient_matches_finite_differences_without_ties() -> Result<()> {
        let mut rng = Rng::new(8);
        let (dims, k) = ([2, 2, 5, 7], 2);
        let x = randn(&mut rng, &dims, 1.0, DType::F64)?;
        let xv = Var::from_tensor(&x)?;
        let y = max_pool2d(&xv, k)?;
        let r = randn(&mut rng, y.dims(), 1.0, DType::F64)?;
        let grad = flat((&y * &r)?.sum_all()?.backward()?.get(&xv).unwrap())?;
        let values = flat(&x)?;
        let loss = |v: &[f64]| -> Result<f64> {
            let t = Tensor::from_slice(v, &dims, &Device::Cpu)?;
            (max_pool2d(&t, k)? * &r)?.sum_all()?.to_scalar::<f64>()
        };
        // Random normals are distinct, so a 1e-6 step never changes which element is largest.
        let eps = 1e-6;
        for (i, &g) in grad.iter().enumerate() {
            let (mut up, mut down) = (values.clone(), values.clone());
            up[i] += eps;
            down[i] -= eps;
            let fd = (loss(&up)? - loss(&down)?) / (2.0 * eps);
            assert!(
                (g - fd).abs() <= 1e-6 * fd.abs().max(1.0),
                "element {i}: {g} vs {fd}"
            );
        }
        // Exactly one nonzero per window; the trailing row (5 = 2·2 + 1) and column get none.
        let nonzero = grad.iter().filter(|g| **g != 0.0).count();
        assert_eq!(nonzero, 2 * 2 * 2 * 3);
        for plane in grad.chunks(5 * 7) {
            assert!(plane[4 * 7..].iter().all(|g| *g == 0.0));
            assert!(plane.chunks(7).all(|row| row[6] == 0.0));
        }
        Ok(())
    }

    #[test]
    fn candle_fallback_routes_like_the_kernel() -> Result<()> {
        let x = Var::from_tensor(
            &Tensor::from_vec(tied_plane(), (1, 1, 4, 6), &Device::Cpu)?.narrow(2, 0, 3)?,
        )?;
        let mut rng = Rng::new(9);
        let r = randn(&mut rng, &[1, 1, 1, 3], 1.0, DType::F64)?;
        let (ours, fallback) = (max_pool2d(&x, 2)?, max_pool2d_candle(&x, 2)?);
        assert_eq!(flat(&ours)?, flat(&fallback)?);
        let g_ours = (&ours * &r)?.sum_all()?.backward()?;
        let g_fallback = (&fallback * &r)?.sum_all()?.backward()?;
        assert_eq!(
            flat(g_ours.get(&x).unwrap())?,
            flat(g_fallback.get(&x).unwrap())?
        );
        Ok(())
    }

    #[test]
    fn other_dtypes_fall_back_to_candle_ops() -> Result<()> {
        let x = Tensor::from_vec(tied_plane(), (1, 1, 4, 6), &Device::Cpu)?.narrow(2, 0, 2)?;
        let y = max_pool2d(&x.to_dtype(DType::F16)?, 2)?;
        assert_eq!(y.dtype(), DType::F16);
        assert_eq!(flat(&y)?, [1.0, 2.0, 3.0]);
        Ok(())
    }

    #[test]
    fn bad_windows_are_errors() -> Result<()> {
        let x = Tensor::zeros((1, 1, 4, 3), DType::F32, &Device::Cpu)?;
        assert!(max_pool2d(&x, 0).is_err());
        assert!(max_pool2d(&x, 4).is_err());
        assert!(max_pool2d(&x.squeeze(0)?, 2).is_err());
        assert!(max_pool2d(&x, 3).is_ok());
        Ok(())
    }
}
