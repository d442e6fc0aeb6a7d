//! `linear`: a fully connected layer, `y = x θWᵀ + θb`.
//!
//! Input `[batch, in]`, output `[batch, out]`; weight `[out, in]`, bias `[out]`.

use super::{EngineOp, EngineRefusal, Layer, LayerState, OnnxAttr, OnnxIo, OnnxNode};
use crate::error::SpecError;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// `[[layer]] type = "linear"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Linear {
    /// Parameter name prefix; `fcN` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Output features.
    pub out: usize,
}

impl Layer for Linear {
    fn kind(&self) -> &'static str {
        "linear"
    }

    fn naming(&self) -> Option<(&'static str, Option<&str>)> {
        Some(("fc", self.name.as_deref()))
    }

    fn output_shape(&self, at: &str, input: &[usize]) -> Result<Vec<usize>, SpecError> {
        if input.len() != 1 {
            return Err(SpecError::NeedsFlat {
                at: at.to_string(),
                shape: input.to_vec(),
            });
        }
        if self.out == 0 {
            return Err(SpecError::NotPositive {
                at: at.to_string(),
                fields: "`out`",
            });
        }
        Ok(vec![self.out])
    }

    fn weight_shape(&self, input: &[usize]) -> Option<(Vec<usize>, usize)> {
        Some((vec![self.out, input[0]], input[0]))
    }

    fn forward(
        &self,
        x: &Tensor,
        params: &[Tensor],
        _state: LayerState<'_>,
    ) -> candle_core::Result<Tensor> {
        let [w, b] = params else {
            candle_core::bail!("linear takes a weight and a bias, got {}", params.len());
        };
        x.matmul(&w.t()?)?.broadcast_add(b)
    }

    fn engine_op(&self, input: &[usize]) -> Result<EngineOp, EngineRefusal> {
        Ok(EngineOp::Dense {
            inputs: input.iter().product(),
            outputs: self.out,
        })
    }

    fn onnx(&self, io: &OnnxIo<'_>) -> Vec<OnnxNode> {
        let (w, b) = io.weight_and_bias();
        vec![io.node("Gemm", &[w, b], vec![OnnxAttr::Int("transB", 1)])]
    }
}
