//! `flatten`: `[c, h, w]` → `[c·h·w]` (the batch axis stays). No parameters.

use super::{EngineOp, EngineRefusal, Layer, LayerState, OnnxAttr, OnnxIo, OnnxNode};
use crate::error::SpecError;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// `[[layer]] type = "flatten"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flatten {}

impl Layer for Flatten {
    fn kind(&self) -> &'static str {
        "flatten"
    }

    fn output_shape(&self, at: &str, input: &[usize]) -> Result<Vec<usize>, SpecError> {
        let len = input
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| SpecError::TooLarge {
                at: at.to_string(),
                shape: input.to_vec(),
            })?;
        Ok(vec![len])
    }

    fn forward(
        &self,
        x: &Tensor,
        _params: &[Tensor],
        _state: LayerState<'_>,
    ) -> candle_core::Result<Tensor> {
        x.flatten_from(1)
    }

    fn engine_op(&self, _input: &[usize]) -> Result<EngineOp, EngineRefusal> {
        Ok(EngineOp::Identity)
    }

    fn onnx(&self, io: &OnnxIo<'_>) -> Vec<OnnxNode> {
        vec![io.node("Flatten", &[], vec![OnnxAttr::Int("axis", 1)])]
    }
}
