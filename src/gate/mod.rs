//! Task gates: every parameter's effective value is `θ = W ⊙ g(M_t)`, with `W` shared by all
//! tasks and one real-valued mask `M_t` of the same shape per task.
//!
//! The gate `g` is one of [`GateMode`]: the paper's sigmoid, a straight-through step whose
//! forward value is exactly the binarized mask (so the deployed 1-bit model is the trained one),
//! or HAT's annealed sigmoid `σ(s·M)`. The layers themselves ([`crate::layers`]) see only
//! effective parameters, so the plain baselines (`shared`, `separate`) run the same code
//! without a gate.

mod mask_bank;
mod regularizer;

pub use mask_bank::{MaskBank, MaskInit, MaskStats};
pub use regularizer::Regularizer;

use candle_core::{DType, Result, Tensor, Var};
use serde::{Deserialize, Serialize};

/// How a mask becomes a multiplicative gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GateMode {
    /// `σ(M)`, the paper's gate.
    #[default]
    Sigmoid,
    /// Forward `1[M > 0]`, backward through `σ'(M)` (straight-through estimator): the trained
    /// function is the binarized model, so exporting 1-bit masks loses nothing.
    Ste,
    /// `σ(s·M)` with `s` annealed from 1 to `hat_max_scale` over training (HAT, Serra et al.
    /// 2018): soft early, nearly binary late.
    Hat,
}

impl GateMode {
    /// Gate values for `mask` at scale `scale` (only `Hat` uses the scale).
    pub fn gate(self, mask: &Tensor, scale: f64) -> Result<Tensor> {
        match self {
            GateMode::Sigmoid => candle_nn::ops::sigmoid(mask),
            GateMode::Hat => candle_nn::ops::sigmoid(&(mask * scale)?),
            GateMode::Ste => {
                // hard + (soft - soft.detach()): the bracket is exactly 0.0 in floating point
                // (the same value minus itself), so the forward value is exactly 1[M > 0],
                // while the gradient is σ'(M).
                let hard = mask.gt(0.0)?.to_dtype(mask.dtype())?;
                let soft = candle_nn::ops::sigmoid(mask)?;
                hard + (&soft - soft.detach())?
            }
        }
    }

    /// Gate values in the forward pass without building a graph (for statistics and export).
    pub fn gate_value(self, mask: &Tensor, scale: f64) -> Result<Tensor> {
        self.gate(&mask.detach(), scale)
    }
}

/// Which function of the masks a forward pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GateView {
    /// The gate being trained (`σ(M)`, STE or HAT).
    #[default]
    Trained,
    /// `1[M > 0]`: the deployed 1-bit model.
    Binary,
    /// `1[M > 0]` times the mean trained gate of the kept entries, per parameter. Binarizing
    /// lifts every kept sigmoid gate (typically 0.85–0.95) to 1, which rescales each layer; this
    /// undoes that scale with one float per parameter.
    BinaryRescaled,
}

/// The masks of one task, in the order of the network's parameters, with the gate to apply.
#[derive(Debug, Clone, Copy)]
pub struct TaskGate<'a> {
    /// One mask per network parameter (weight and bias of every gated layer).
    pub masks: &'a [Var],
    /// The gate function.
    pub mode: GateMode,
    /// HAT's current scale `s` (ignored by the other modes).
    pub scale: f64,
    /// Trained, binarized or binarized-and-rescaled gates.
    pub view: GateView,
}

impl TaskGate<'_> {
    /// The gate values for the parameter at `index`.
    pub fn values(&self, index: usize) -> Result<Tensor> {
        let mask = self.masks[index].as_tensor();
        match self.view {
            GateView::Trained => self.mode.gate(mask, self.scale),
            GateView::Binary => mask.gt(0.0)?.to_dtype(mask.dtype()),
            GateView::BinaryRescaled => {
                let hard = mask.gt(0.0)?.to_dtype(mask.dtype())?;
                let kept = hard.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                if kept == 0.0 {
                    return Ok(hard);
                }
                let soft = self.mode.gate_value(mask, self.scale)?;
                let mean = (soft * &hard)?
                    .sum_all()?
                    .to_dtype(DType::F64)?
                    .to_scalar::<f64>()?
                    / kept;
                hard * mean
            }
        }
    }

    /// The effective parameter `W ⊙ g(M)` for the parameter at `index`.
    pub fn apply(&self, index: usize, w: &Tensor) -> Result<Tensor> {
        w * self.values(index)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn ste_forward_is_exactly_binary_and_backward_is_sigmoid_prime() -> Result<()> {
        let m = Var::new(&[-1.5f32, -0.1, 0.2, 3.0], &Device::Cpu)?;
        let g = GateMode::Ste.gate(m.as_tensor(), 1.0)?;
        assert_eq!(g.to_vec1::<f32>()?, vec![0.0, 0.0, 1.0, 1.0]);
        let grads = g.sum_all()?.backward()?;
        let dm = grads.get(&m).expect("mask gradient").to_vec1::<f32>()?;
        for (x, d) in [-1.5f32, -0.1, 0.2, 3.0].iter().zip(dm) {
            let s = 1.0 / (1.0 + (-x).exp());
            assert!((d - s * (1.0 - s)).abs() < 1e-6);
        }
        Ok(())
    }

    #[test]
    fn hat_sharpens_with_scale() -> Result<()> {
        let m = Tensor::new(&[0.1f64], &Device::Cpu)?;
        let soft = GateMode::Hat.gate(&m, 1.0)?.to_vec1::<f64>()?[0];
        let sharp = GateMode::Hat.gate(&m, 100.0)?.to_vec1::<f64>()?[0];
        assert!((soft - 0.524_979).abs() < 1e-5);
        assert!(sharp > 0.9999);
        Ok(())
    }
}
