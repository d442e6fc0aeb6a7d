//! `conv2d`: a 2-D convolution with a square kernel, `y = conv2d(x, θW) + θb`.
//!
//! Input `[batch, in, h, w]`, output `[batch, out, (h + 2p − k)/s + 1, (w + 2p − k)/s + 1]`;
//! weight `[out, in, k, k]`, bias `[out]`. The reference forward is gatekit's own im2col +
//! GEMM op with its own backward (candle 0.11.1's CPU conv backward is ~10x slower than
//! PyTorch's and differentiates the input image too).

use super::{EngineOp, EngineRefusal, Layer, LayerState, OnnxAttr, OnnxIo, OnnxNode, image};
use crate::error::SpecError;
use crate::kernel::im2col::ConvGeom;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// `[[layer]] type = "conv2d"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conv2d {
    /// Parameter name prefix; `convN` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Output channels.
    pub out: usize,
    /// Kernel size.
    pub kernel: usize,
    /// Stride.
    #[serde(default = "one")]
    pub stride: usize,
    /// Zero padding.
    #[serde(default)]
    pub padding: usize,
}

fn one() -> usize {
    1
}

impl Layer for Conv2d {
    fn kind(&self) -> &'static str {
        "conv2d"
    }

    fn naming(&self) -> Option<(&'static str, Option<&str>)> {
        Some(("conv", self.name.as_deref()))
    }

    fn output_shape(&self, at: &str, input: &[usize]) -> Result<Vec<usize>, SpecError> {
        let [_, h, w] = image(at, input)?;
        let Conv2d {
            out,
            kernel,
            stride,
            padding,
            ..
        } = *self;
        if out == 0 || kernel == 0 || stride == 0 {
            return Err(SpecError::NotPositive {
                at: at.to_string(),
                fields: "`out`, `kernel` and `stride`",
            });
        }
        let too_big = || SpecError::Padding {
            at: at.to_string(),
            padding,
        };
        let ph = h.checked_add(padding.checked_mul(2).ok_or_else(too_big)?);
        let pw = w.checked_add(padding.checked_mul(2).ok_or_else(too_big)?);
        let (Some(_), Some(_)) = (ph, pw) else {
            return Err(too_big());
        };
        if h + 2 * padding < kernel || w + 2 * padding < kernel {
            return Err(SpecError::Window {
                at: at.to_string(),
                what: "kernel",
                size: kernel,
                padded: "padded ",
                shape: input.to_vec(),
            });
        }
        Ok(vec![
            out,
            (h + 2 * padding - kernel) / stride + 1,
            (w + 2 * padding - kernel) / stride + 1,
        ])
    }

    fn weight_shape(&self, input: &[usize]) -> Option<(Vec<usize>, usize)> {
        let (k, c) = (self.kernel, input[0]);
        Some((vec![self.out, c, k, k], c * k * k))
    }

    fn forward(
        &self,
        x: &Tensor,
        params: &[Tensor],
        _state: LayerState<'_>,
    ) -> candle_core::Result<Tensor> {
        let [w, b] = params else {
            candle_core::bail!("conv2d takes a weight and a bias, got {}", params.len());
        };
        crate::kernel::conv2d(x, w, b, self.stride, self.padding)
    }

    fn engine_op(&self, input: &[usize]) -> Result<EngineOp, EngineRefusal> {
        let [c, h, w] = input[..] else {
            return Err(EngineRefusal::NotAnImage {
                layer: "conv2d",
                input: input.to_vec(),
            });
        };
        let geom = ConvGeom::new(c, h, w, self.kernel, self.stride, self.padding)
            .map_err(EngineRefusal::Geometry)?;
        Ok(EngineOp::Conv {
            geom,
            c_out: self.out,
        })
    }

    fn onnx(&self, io: &OnnxIo<'_>) -> Vec<OnnxNode> {
        let (w, b) = io.weight_and_bias();
        let (k, s, p) = (self.kernel as i64, self.stride as i64, self.padding as i64);
        vec![io.node(
            "Conv",
            &[w, b],
            vec![
                OnnxAttr::Ints("kernel_shape", vec![k, k]),
                OnnxAttr::Ints("strides", vec![s, s]),
                OnnxAttr::Ints("pads", vec![p, p, p, p]),
            ],
        )]
    }
}
