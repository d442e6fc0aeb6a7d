//! Hand-written CPU ops with their own backward passes: [`conv2d`] and [`max_pool2d`].
//!
//! `kernel/` versus `engine/`: a kernel is one operation on slices (and a candle custom op for
//! the reference network), knowing nothing of layers, tasks or training; `engine/` is the
//! whole fast training step of one network (forward, backward, gates, optimizer) and calls
//! these kernels.
//!
//! # Why these exist
//! candle 0.11.1 is correct but slow or wrong on the two ops a LeNet-style network spends its
//! time in (measured on a 2-core machine, LeNet-5, batch 32, 3x32x32):
//! - its `max_pool2d` backward multiplies by the share of maxima in each window instead of
//!   routing the gradient, so every 2x2 pool scales the gradient by 1/4;
//! - its CPU conv2d trains at ~30 steps/s where PyTorch does ~350 (1 thread): the backward is a
//!   naive `conv_transpose2d`, and the gradient of the input image is computed even though
//!   nothing needs it.
//!
//! Here both are candle custom ops ([`candle_core::CustomOp3`], [`candle_core::CustomOp1`]), so
//! they sit in candle's autograd graph like any other op.
//!
//! # conv2d
//! `x` `[n, c, h, w]`, `W` `[c_out, c, k, k]`, `b` `[c_out]` → `y` `[n, c_out, h_out, w_out]`
//! with `h_out = (h + 2p − k)/s + 1` (likewise `w_out`). Each sample is lowered to a matrix
//! product ("im2col": `cols(X_n)` is `[c·k·k, h_out·w_out]`, one column per output pixel) and run
//! with the `gemm` crate, the one candle itself uses:
//!
//! ```text
//! Y_n  = W · cols(X_n) + b            ∂W = Σ_n ∂Y_n · cols(X_n)ᵀ      ∂b = Σ_n ∂Y_n · 1
//! ∂X_n = col2im(Wᵀ · ∂Y_n)            only when x needs a gradient
//! ```
//!
//! # max_pool2d
//! `x` `[n, c, h, w]` → `[n, c, ⌊h/k⌋, ⌊w/k⌋]`, window = stride = `k`;
//! `y = max(window)`, and `∂x` is `∂y` at the window's first maximum (row-major), 0 elsewhere.
//!
//! # Speed
//! Forward + backward at batch 32, f32, 1 thread (`benches/kernels.rs`, 2-core machine):
//! LeNet-5's conv1 (3→6, 32x32, image input) ~19x faster than candle's conv2d + autograd
//! (1.5 ms vs 29 ms), conv2 (6→16, 14x14) ~8.5x (1.2 ms vs 10.5 ms); the 2x2 pool 1.25x faster
//! than a reshape + max (0.93 ms vs 1.16 ms), most of what is left being candle's gradient
//! bookkeeping.
//!
//! # Threads
//! The batch is split across rayon's threads (`RAYON_NUM_THREADS`), each thread summing its
//! samples' weight gradients in order and the partial sums being added in chunk order, so results
//! are deterministic for a given thread count. F32 and F64 on the CPU take these paths; any other
//! device or dtype falls back to candle's own ops (with a correct pool), so the crate still works
//! there.

mod blocking;
mod conv;
pub mod direct;
pub mod im2col;
pub mod peak;
mod pool;
pub mod profile;

pub use conv::conv2d;
pub(crate) use conv::{Mat, Order, matmul};
pub use pool::max_pool2d;

use candle_core::{CpuStorage, Layout, Result, WithDType};
use std::borrow::Cow;

/// The float types the CPU kernels run on: exactly those the `gemm` crate takes (it panics on
/// any other type, so keeping this trait private to the two impls below keeps gemm safe).
pub(crate) trait Real: WithDType {
    /// `0` in this type.
    const ZERO: Self;
    /// `1` in this type.
    const ONE: Self;
    /// Whether the value is NaN (the pool treats NaN as the maximum, like PyTorch).
    fn is_nan(self) -> bool;
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
}

/// The elements of a CPU tensor in row-major order: borrowed when the layout is already
/// contiguous (the common case), gathered into a new buffer otherwise (transposed, narrowed or
/// broadcast views, e.g. the gradient of `sum_all`, which has all strides 0).
pub(crate) fn dense<'a, T: WithDType>(
    storage: &'a CpuStorage,
    layout: &Layout,
) -> Result<Cow<'a, [T]>> {
    let data = T::cpu_storage_as_slice(storage)?;
    if let Some((start, end)) = layout.contiguous_offsets() {
        return Ok(Cow::Borrowed(&data[start..end]));
    }
    let mut out = Vec::with_capacity(layout.shape().elem_count());
    gather(
        data,
        layout.dims(),
        layout.stride(),
        layout.start_offset(),
        &mut out,
    );
    Ok(Cow::Owned(out))
}

fn gather<T: Copy>(data: &[T], dims: &[usize], stride: &[usize], offset: usize, out: &mut Vec<T>) {
    match dims {
        [] => out.push(data[offset]),
        [n] => out.extend((0..*n).map(|i| data[offset + i * stride[0]])),
        [n, rest @ ..] => {
            for i in 0..*n {
                gather(data, rest, &stride[1..], offset + i * stride[0], out);
            }
        }
    }
}

/// How many contiguous chunks to split `n` samples into: one per rayon thread, at most one per
/// sample. Depends only on `n` and the thread count, which is what makes results deterministic.
pub(crate) fn chunk_len(n: usize) -> usize {
    let chunks = rayon::current_num_threads().clamp(1, n.max(1));
    n.div_ceil(chunks).max(1)
}

/// Runs `f` on consecutive `chunk`-element pieces of `data` (with the piece's index): on rayon's
/// threads when there is more than one piece, inline otherwise (no pool overhead at 1 thread).
pub(crate) fn for_each_chunk<T: Send>(
    data: &mut [T],
    chunk: usize,
    f: impl Fn((usize, &mut [T])) + Send + Sync,
) {
    if data.is_empty() {
        return;
    }
    if chunk >= data.len() {
        f((0, data));
    } else {
        use rayon::prelude::*;
        data.par_chunks_mut(chunk).enumerate().for_each(f);
    }
}

/// A CPU kernel over three tensors of one float type (a convolution's x, w and b, or its
/// backward pass's inputs), run by [`at_float_type`] at the type the storages hold.
pub(crate) trait FloatKernel3 {
    /// The kernel at element type `T`.
    fn run<T: Real>(
        &self,
        a: (&CpuStorage, &Layout),
        b: (&CpuStorage, &Layout),
        c: (&CpuStorage, &Layout),
    ) -> Result<(CpuStorage, candle_core::Shape)>;
}

/// Runs `kernel` at the float type its three inputs share (F32 or F64); `what` names the op in
/// the error for any other combination.
pub(crate) fn at_float_type<K: FloatKernel3>(
    kernel: &K,
    what: &str,
    a: (&CpuStorage, &Layout),
    b: (&CpuStorage, &Layout),
    c: (&CpuStorage, &Layout),
) -> Result<(CpuStorage, candle_core::Shape)> {
    match (a.0, b.0, c.0) {
        (CpuStorage::F32(_), CpuStorage::F32(_), CpuStorage::F32(_)) => kernel.run::<f32>(a, b, c),
        (CpuStorage::F64(_), CpuStorage::F64(_), CpuStorage::F64(_)) => kernel.run::<f64>(a, b, c),
        _ => {
            candle_core::bail!("{what}: the CPU kernel takes F32 or F64, the same for every input")
        }
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use crate::rng::Rng;
    use candle_core::{DType, Device, Result, Tensor};

    /// `std`·N(0, 1) entries of the given shape and dtype, drawn in f64 from a fixed stream.
    pub fn randn(rng: &mut Rng, dims: &[usize], std: f64, dtype: DType) -> Result<Tensor> {
        let n = dims.iter().product();
        let v: Vec<f64> = (0..n).map(|_| std * rng.normal()).collect();
        Tensor::from_vec(v, dims, &Device::Cpu)?.to_dtype(dtype)
    }

    /// Largest absolute difference, and the largest absolute value of `reference`.
    pub fn max_diff(got: &Tensor, reference: &Tensor) -> Result<(f64, f64)> {
        let a = got.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        let b = reference
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        assert_eq!(a.len(), b.len(), "element counts differ");
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        let scale = b.iter().map(|y| y.abs()).fold(0.0, f64::max);
        Ok((diff, scale))
    }

    /// Asserts `got` equals `reference` within `tol` relative to the reference's largest entry
    /// (or absolutely when that is below 1).
    pub fn assert_close(what: &str, got: &Tensor, reference: &Tensor, tol: f64) -> Result<()> {
        assert_eq!(got.dims(), reference.dims(), "{what}: shapes differ");
        let (diff, scale) = max_diff(got, reference)?;
        assert!(
            diff <= tol * scale.max(1.0),
            "{what}: max difference {diff:e} over scale {scale:e} exceeds {tol:e}"
        );
        Ok(())
    }
}
