//! `maxpool2d`: max pooling over non-overlapping square windows (no padding, floor).
//!
//! Input `[batch, c, h, w]`, output `[batch, c, h / k, w / k]`. The reference forward is
//! gatekit's own op: candle 0.11.1's `max_pool2d` backward scales the gradient by the share of
//! maxima in each window instead of routing it to the maximum.

use super::{EngineOp, EngineRefusal, Layer, LayerState, OnnxAttr, OnnxIo, OnnxNode, image};
use crate::error::SpecError;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// `[[layer]] type = "maxpool2d"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Maxpool2d {
    /// Window size.
    pub kernel: usize,
    /// Stride; equal to the kernel by default (the only value supported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<usize>,
}

impl Layer for Maxpool2d {
    fn kind(&self) -> &'static str {
        "maxpool2d"
    }

    fn output_shape(&self, at: &str, input: &[usize]) -> Result<Vec<usize>, SpecError> {
        let [c, h, w] = image(at, input)?;
        let kernel = self.kernel;
        let stride = self.stride.unwrap_or(kernel);
        if kernel == 0 || stride != kernel {
            return Err(SpecError::Overlapping {
                at: at.to_string(),
                kernel,
                stride,
            });
        }
        if h < kernel || w < kernel {
            return Err(SpecError::Window {
                at: at.to_string(),
                what: "window",
                size: kernel,
                padded: "",
                shape: input.to_vec(),
            });
        }
        Ok(vec![c, h / kernel, w / kernel])
    }

    fn forward(
        &self,
        x: &Tensor,
        _params: &[Tensor],
        _state: LayerState<'_>,
    ) -> candle_core::Result<Tensor> {
        crate::kernel::max_pool2d(x, self.kernel)
    }

    fn engine_op(&self, input: &[usize]) -> Result<EngineOp, EngineRefusal> {
        let [c, h, w] = input[..] else {
            return Err(EngineRefusal::NotAnImage {
                layer: "maxpool2d",
                input: input.to_vec(),
            });
        };
        Ok(EngineOp::Pool {
            c,
            h,
            w,
            k: self.kernel,
        })
    }

    fn onnx(&self, io: &OnnxIo<'_>) -> Vec<OnnxNode> {
        let k = self.kernel as i64;
        vec![io.node(
            "MaxPool",
            &[],
            vec![
                OnnxAttr::Ints("kernel_shape", vec![k, k]),
                OnnxAttr::Ints("strides", vec![k, k]),
            ],
        )]
    }
}
