//! Gated fully connected layer: `y = x (W ⊙ g(M_w))ᵀ + b ⊙ g(M_b)`.
//!
//! # Shapes
//! - input `[batch, in]`, output `[batch, out]`
//! - weight `[out, in]`, bias `[out]`, masks the same shapes as what they gate

use super::{TaskGate, effective};
use candle_core::{Result, Tensor, Var};

/// A linear layer whose weight and bias can be gated per task.
#[derive(Debug, Clone)]
pub struct GatedLinear {
    /// Shared weight `[out, in]`.
    pub weight: Var,
    /// Shared bias `[out]`.
    pub bias: Var,
    /// Position of `weight` in the network's parameter list (the bias follows it); the task
    /// gate's masks are aligned with that list.
    pub index: usize,
}

impl GatedLinear {
    /// A layer from its tensors.
    pub fn new(weight: Var, bias: Var, index: usize) -> Self {
        GatedLinear {
            weight,
            bias,
            index,
        }
    }

    /// Forward pass, plain when `gate` is `None`.
    pub fn forward(&self, x: &Tensor, gate: Option<&TaskGate>) -> Result<Tensor> {
        let w = effective(&self.weight, self.index, gate)?;
        let b = effective(&self.bias, self.index + 1, gate)?;
        x.matmul(&w.t()?)?.broadcast_add(&b)
    }
}
