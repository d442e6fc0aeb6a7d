//! Fully connected layer `y = x θWᵀ + θb` on a whole batch: one GEMM each way. Small products
//! (LeNet's 400→120→84→10 at batch 32) run on the calling thread, where splitting them would
//! cost more than it saves; large ones (the permuted-MNIST protocol's 1024→1000→1000 at batch
//! 128, 74–88 % of its step at one thread) use every rayon thread through `gemm`'s own
//! threading, which cuts the destination into tiles and sums each element in the same order
//! as one thread does, so the numbers do not depend on the thread count.

use crate::kernel::profile::{self, Phase};
use crate::kernel::{Mat, Order, matmul};
use gemm::Parallelism;

/// Multiply-adds from which a product is worth `gemm`'s threads: about 10 µs of one core's
/// work, where a fork-join costs a few µs.
const THREADED_MIN: usize = 1 << 21;

/// `gemm`'s threading for an `m × n × k` product: every rayon thread when `split` (the caller
/// is not already inside a parallel region) and the product is large enough.
fn parallelism((m, n, k): (usize, usize, usize), split: bool) -> Parallelism {
    let threads = rayon::current_num_threads();
    if split && threads > 1 && m * n * k >= THREADED_MIN {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

/// Row strides (in `f32`s) of `W` that `gemm` packs slowly: a multiple of 256 floats (1 KiB)
/// puts the rows `gemm` reads together for one panel of `Wᵀ` into a few L1 cache sets. On a
/// Zen 5 core a 128×1000×512 product ran at 74 GFLOP/s with a stride of 1024 and at 184 with
/// 1040 (`benches/peak.rs` shows the layer).
fn aliasing(stride: usize) -> bool {
    stride.is_multiple_of(256)
}

/// The padding added to such a stride: one cache line.
const STRIDE_PAD: usize = 16;

thread_local! {
    /// `W` copied with a padded row stride, reused from step to step.
    static PADDED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `y[n, out] = x[n, in] · wᵀ + b`; `split`: may use rayon's threads (see the module doc).
/// A `W` whose row stride would alias in the cache is first copied with a padded stride (a
/// copy of 4 MB costs a tenth of the time it saves; strides do not change the sums).
pub(crate) fn forward(
    (inputs, outputs): (usize, usize),
    x: &[f32],
    w: &[f32],
    b: &[f32],
    y: &mut [f32],
    split: bool,
) {
    let n = x.len() / inputs;
    let par = parallelism((n, outputs, inputs), split);
    let mut product = |wt: Mat<f32>| {
        let x = Mat::new(x, inputs);
        matmul(
            (n, outputs, inputs),
            (&mut *y, Order::RowMajor),
            x,
            wt,
            false,
            par,
        )
    };
    if aliasing(inputs) && n * outputs * inputs >= THREADED_MIN {
        let stride = inputs + STRIDE_PAD;
        PADDED.with_borrow_mut(|padded| {
            padded.resize(outputs * stride, 0.0);
            for (to, from) in padded.chunks_exact_mut(stride).zip(w.chunks_exact(inputs)) {
                to[..inputs].copy_from_slice(from);
            }
            product(Mat::t(&padded[..], stride));
        });
    } else {
        product(Mat::t(w, inputs));
    }
    for row in y.chunks_exact_mut(outputs) {
        for (v, &b) in row.iter_mut().zip(b) {
            *v += b;
        }
    }
}

/// Writes `∂W = ∂yᵀ x`, `∂b = Σₙ ∂y` and, when `dx` is given, `∂x = ∂y W` (training only,
/// so never inside a parallel region: large products use rayon's threads).
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    (inputs, outputs): (usize, usize),
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: &mut [f32],
    dx: Option<&mut [f32]>,
) {
    let n = x.len() / inputs;
    let flops = 2 * n * inputs * outputs;
    profile::timed(Phase::GemmDw, flops, || {
        matmul(
            (outputs, inputs, n),
            (dw, Order::RowMajor),
            Mat::t(dy, outputs),
            Mat::new(x, inputs),
            false,
            parallelism((outputs, inputs, n), true),
        )
    });
    profile::timed(Phase::BiasBack, 0, || {
        db.fill(0.0);
        for row in dy.chunks_exact(outputs) {
            for (d, &g) in db.iter_mut().zip(row) {
                *d += g;
            }
        }
    });
    if let Some(dx) = dx {
        profile::timed(Phase::GemmDx, flops, || {
            matmul(
                (n, inputs, outputs),
                (dx, Order::RowMajor),
                Mat::new(dy, outputs),
                Mat::new(w, inputs),
                false,
                parallelism((n, inputs, outputs), true),
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// A layer with an aliasing stride (1024 inputs, so `W` is copied with a padded stride)
    /// and one without (1000), at batch 128 so both products use gemm's threads: the outputs
    /// and gradients at 3 threads equal one thread's bit for bit, and the padded forward
    /// equals the plain `x · Wᵀ` product.
    #[test]
    fn threads_and_padding_change_no_bit() {
        let mut rng = crate::rng::Rng::new(3);
        for (inputs, outputs) in [(1024, 300), (1000, 200)] {
            let n = 128;
            let mut normal =
                |len: usize| -> Vec<f32> { (0..len).map(|_| rng.normal() as f32).collect() };
            let (x, w, b, dy) = (
                normal(n * inputs),
                normal(outputs * inputs),
                normal(outputs),
                normal(n * outputs),
            );
            assert!(n * inputs * outputs >= THREADED_MIN);
            let run = |split: bool| {
                let mut y = vec![0.0f32; n * outputs];
                forward((inputs, outputs), &x, &w, &b, &mut y, split);
                let (mut dw, mut db, mut dx) = (
                    vec![0.0f32; outputs * inputs],
                    vec![0.0f32; outputs],
                    vec![0.0f32; n * inputs],
                );
                backward(
                    (inputs, outputs),
                    &x,
                    &w,
                    &dy,
                    &mut dw,
                    &mut db,
                    Some(&mut dx),
                );
                [y, dw, db, dx].map(|v| bits(&v))
            };
            let one = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .expect("pool")
                .install(|| run(true));
            let three = rayon::ThreadPoolBuilder::new()
                .num_threads(3)
                .build()
                .expect("pool")
                .install(|| run(true));
            assert_eq!(one, three, "{inputs} inputs: 1 vs 3 threads");
            let mut plain = vec![0.0f32; n * outputs];
            matmul(
                (n, outputs, inputs),
                (&mut plain, Order::RowMajor),
                Mat::new(&x, inputs),
                Mat::t(&w, inputs),
                false,
                Parallelism::None,
            );
            for (row, y) in plain
                .chunks_exact_mut(outputs)
                .zip(one[0].chunks_exact(outputs))
            {
                for ((v, &bias), &got) in row.iter_mut().zip(&b).zip(y) {
                    *v += bias;
                    assert_eq!(v.to_bits(), got, "{inputs} inputs: padded forward");
                }
            }
            // The largest output is far from 0: the test compares real sums, not zeros.
            assert!(plain.iter().any(|v| v.abs() > 10.0));
        }
    }
}
