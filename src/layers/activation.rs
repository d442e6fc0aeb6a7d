//! Elementwise activations: `relu` (max(x, 0)), `tanh`, `sigmoid` (σ(x)). No parameters; the
//! output has the input's shape.

use super::{EngineOp, EngineRefusal, Layer, LayerState, OnnxIo, OnnxNode};
use crate::error::SpecError;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// An elementwise function, as the engine runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// max(x, 0).
    Relu,
    /// tanh(x).
    Tanh,
    /// σ(x).
    Sigmoid,
}

macro_rules! activation {
    ($ty:ident, $kind:literal, $onnx:literal, |$x:ident| $forward:expr) => {
        #[doc = concat!("`[[layer]] type = \"", $kind, "\"`.")]
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $ty {}

        impl Layer for $ty {
            fn kind(&self) -> &'static str {
                $kind
            }

            fn output_shape(&self, _at: &str, input: &[usize]) -> Result<Vec<usize>, SpecError> {
                Ok(input.to_vec())
            }

            fn forward(
                &self,
                $x: &Tensor,
                _params: &[Tensor],
                _state: LayerState<'_>,
            ) -> candle_core::Result<Tensor> {
                $forward
            }

            fn engine_op(&self, input: &[usize]) -> Result<EngineOp, EngineRefusal> {
                Ok(EngineOp::Act {
                    act: Activation::$ty,
                    len: input.iter().product(),
                })
            }

            fn onnx(&self, io: &OnnxIo<'_>) -> Vec<OnnxNode> {
                vec![io.node($onnx, &[], vec![])]
            }
        }
    };
}

activation!(Relu, "relu", "Relu", |x| x.relu());
activation!(Tanh, "tanh", "Tanh", |x| x.tanh());
activation!(Sigmoid, "sigmoid", "Sigmoid", |x| candle_nn::ops::sigmoid(
    x
));
