//! Gated 2-D convolution: `y = conv2d(x, W ⊙ g(M_w)) + b ⊙ g(M_b)`.
//!
//! # Shapes
//! - input `[batch, in, h, w]`, output `[batch, out, (h + 2p − k)/s + 1, (w + 2p − k)/s + 1]`
//! - weight `[out, in, k, k]`, bias `[out]`

use super::{TaskGate, effective};
use candle_core::{Result, Tensor, Var};

/// A convolution whose kernel and bias can be gated per task.
#[derive(Debug, Clone)]
pub struct GatedConv2d {
    /// Shared kernel `[out, in, k, k]`.
    pub weight: Var,
    /// Shared bias `[out]`.
    pub bias: Var,
    /// Position of `weight` in the network's parameter list (the bias follows it).
    pub index: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
}

impl GatedConv2d {
    /// A layer from its tensors.
    pub fn new(weight: Var, bias: Var, index: usize, stride: usize, padding: usize) -> Self {
        GatedConv2d {
            weight,
            bias,
            index,
            stride,
            padding,
        }
    }

    /// Forward pass, plain when `gate` is `None`.
    pub fn forward(&self, x: &Tensor, gate: Option<&TaskGate>) -> Result<Tensor> {
        let w = effective(&self.weight, self.index, gate)?;
        let b = effective(&self.bias, self.index + 1, gate)?;
        // gatekit's own op: im2col + gemm with its own backward (candle 0.11.1's CPU conv
        // backward is ~10x slower than PyTorch's and differentiates the input image too).
        crate::kernel::conv2d(x, &w, &b, self.stride, self.padding)
    }
}
