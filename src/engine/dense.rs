//! Fully connected layer `y = x θWᵀ + θb` on a whole batch: one GEMM each way, no threads
//! (the engine's matrices here are small enough that splitting them costs more than it saves).

use crate::kernel::profile::{self, Phase};
use crate::kernel::{Mat, Order, matmul};
use gemm::Parallelism;

/// `y[n, out] = x[n, in] · wᵀ + b`.
pub(crate) fn forward(
    (inputs, outputs): (usize, usize),
    x: &[f32],
    w: &[f32],
    b: &[f32],
    y: &mut [f32],
) {
    let n = x.len() / inputs;
    matmul(
        (n, outputs, inputs),
        (y, Order::RowMajor),
        Mat::new(x, inputs),
        Mat::t(w, inputs),
        false,
        Parallelism::None,
    );
    for row in y.chunks_exact_mut(outputs) {
        for (v, &b) in row.iter_mut().zip(b) {
            *v += b;
        }
    }
}

/// Writes `∂W = ∂yᵀ x`, `∂b = Σₙ ∂y` and, when `dx` is given, `∂x = ∂y W`.
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
            Parallelism::None,
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
                Parallelism::None,
            )
        });
    }
}
