//! The layer types of a model file, one file each: a layer declares its fields (what
//! `[[layer]]` accepts), its output shape, its parameters, its reference forward on candle
//! tensors, its op in the fast engine and its ONNX nodes. Everything that walks a model (the
//! shape checks, the reference [`crate::model::Network`], the engine's plan, the ONNX writer)
//! goes through the [`Layer`] trait, so a new layer type is its file plus one line in
//! [`layer_kinds!`] below, and the compiler names every method it still has to fill in.
//!
//! Layers with parameters have a weight and a bias (the bias has the weight's first
//! dimension), both gated per task in the `gated` strategy.

mod activation;
mod batchnorm;
mod conv2d;
mod flatten;
mod linear;
mod maxpool2d;

pub use activation::{Activation, Relu, Sigmoid, Tanh};
pub use batchnorm::{BatchNorm1d, BatchNorm2d};
pub use conv2d::Conv2d;
pub use flatten::Flatten;
pub use linear::Linear;
pub use maxpool2d::Maxpool2d;

use crate::error::SpecError;
use crate::kernel::im2col::ConvGeom;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// What every layer type provides. `at` in messages is the layer's place in its file
/// (`layer 2 (conv2d)`).
pub trait Layer {
    /// The layer's type as written in a model file.
    fn kind(&self) -> &'static str;

    /// For a layer with parameters: the prefix of its default name (`fc` gives `fc1, fc2, …`
    /// counted over the layers of that prefix) and the name given in the file, if any.
    fn naming(&self) -> Option<(&'static str, Option<&str>)> {
        None
    }

    /// The shape of the output (without the batch axis) for an input of shape `input`, or why
    /// the layer does not fit that input.
    fn output_shape(&self, at: &str, input: &[usize]) -> Result<Vec<usize>, SpecError>;

    /// The shape of the weight for an input of shape `input` and its fan-in (the bias has the
    /// weight's first dimension); `None` for a layer without parameters.
    fn weight_shape(&self, _input: &[usize]) -> Option<(Vec<usize>, usize)> {
        None
    }

    /// Constant starting values `(weight, bias)` for a layer whose parameters do not start
    /// from the run's `w_init` draw; `None` (the default) draws them.
    fn constant_init(&self) -> Option<(f64, f64)> {
        None
    }

    /// The tensors the layer keeps per task besides its parameters, for an input of shape
    /// `input`: updated by the forward pass in training, not by gradients (batch norm's
    /// running statistics). Gated runs keep one set per task, plain models one per model.
    fn state(&self, _input: &[usize]) -> Vec<StateSpec> {
        Vec::new()
    }

    /// The reference forward pass on a batch `[n, ..input]`; `params` holds the effective
    /// weight and bias (`W ⊙ g(M)` under a task's gate), empty for a layer without them;
    /// `state` the layer's [`Layer::state`] tensors, as the pass may use them.
    fn forward(
        &self,
        x: &Tensor,
        params: &[Tensor],
        state: LayerState<'_>,
    ) -> candle_core::Result<Tensor>;

    /// The layer's op in the fast engine for an input of shape `input` (checked by
    /// [`Layer::output_shape`] before), or why the engine cannot run it.
    fn engine_op(&self, input: &[usize]) -> Result<EngineOp, EngineRefusal>;

    /// The ONNX nodes computing the layer from `io.input` into `io.output`.
    fn onnx(&self, io: &OnnxIo<'_>) -> Vec<OnnxNode>;

    /// Integer constants the layer's ONNX nodes read (reshape targets), as `(suffix, values)`:
    /// written once per graph as 1-D int64 initializers named `{io.label}.{suffix}`.
    fn onnx_constants(&self, _input: &[usize]) -> Vec<(&'static str, Vec<i64>)> {
        Vec::new()
    }

    /// A task's state tensors as the ONNX graph reads them (one per [`Layer::state`] entry,
    /// named like it), computed once at export: the identity unless a layer's nodes want a
    /// form that needs no ops beyond the basic ones (batch norm: `−μ` and `1/√(σ² + ε)`).
    fn onnx_state(&self, state: Vec<Tensor>) -> candle_core::Result<Vec<Tensor>> {
        Ok(state)
    }
}

/// One per-task tensor of a layer ([`Layer::state`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StateSpec {
    /// Its name inside the layer (`running_mean`): the tensor is `{layer}.{name}`.
    pub name: &'static str,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Every value it starts at.
    pub init: f64,
}

/// How a reference forward pass may use a layer's state.
#[derive(Debug)]
pub enum LayerState<'a> {
    /// Evaluation with a task's state.
    Eval(&'a [Tensor]),
    /// Training: the layer replaces its state with the updated values.
    Train(&'a mut [Tensor]),
    /// No state at hand (a forward pass outside a learner): a layer that needs state refuses.
    Missing,
}

/// A custom op of the fast engine over plain `f32` buffers: what a layer brings when none of
/// the engine's built-in ops ([`EngineOp`]) computes it. Buffers hold `n` samples, contiguous.
pub trait EngineKernel: std::fmt::Debug + Send + Sync {
    /// Values per sample it writes.
    fn out_len(&self) -> usize;

    /// `y` from `x`; `params`: the effective weight and bias (empty without them); `state`:
    /// the layer's state to read (evaluation) or update (training); `saved`: what
    /// [`EngineKernel::backward`] needs from this pass (training only).
    fn forward(
        &self,
        n: usize,
        x: &[f32],
        params: &[&[f32]],
        state: KernelState<'_>,
        y: &mut [f32],
        saved: &mut Vec<f32>,
    );

    /// Gradients from `dy`: of the weight and bias (overwritten; `None` without parameters)
    /// and of the input (overwritten; `None` for the first op).
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        n: usize,
        x: &[f32],
        params: &[&[f32]],
        saved: &[f32],
        dy: &[f32],
        dparams: Option<(&mut [f32], &mut [f32])>,
        dx: Option<&mut [f32]>,
    );
}

/// A layer's state as an engine kernel sees it.
#[derive(Debug)]
pub enum KernelState<'a> {
    /// Read a task's state (evaluation).
    Eval(&'a [&'a [f32]]),
    /// Update the training task's state.
    Train(&'a mut [Vec<f32>]),
}

/// A layer as the fast engine runs it; sizes are per sample. The engine's plan fuses a
/// convolution with a following ReLU and max-pool.
#[derive(Debug, Clone)]
pub enum EngineOp {
    /// `y = x θWᵀ + θb`.
    Dense {
        /// Input features.
        inputs: usize,
        /// Output features.
        outputs: usize,
    },
    /// `conv(x, θW) + θb`.
    Conv {
        /// The convolution's geometry.
        geom: ConvGeom,
        /// Output channels.
        c_out: usize,
    },
    /// An elementwise activation over `len` values.
    Act {
        /// The function.
        act: Activation,
        /// Values per sample.
        len: usize,
    },
    /// A `k`×`k` max-pool with stride `k` over `[c, h, w]`.
    Pool {
        /// Channels.
        c: usize,
        /// Height.
        h: usize,
        /// Width.
        w: usize,
        /// Window and stride.
        k: usize,
    },
    /// Nothing to compute: the buffers are already contiguous (`flatten`).
    Identity,
    /// The layer's own kernel.
    Kernel(std::sync::Arc<dyn EngineKernel>),
}

/// Why the engine cannot run a layer (the learner then trains on the reference).
#[derive(Debug, thiserror::Error)]
pub enum EngineRefusal {
    /// A convolution's geometry was refused by the kernels.
    #[error("conv2d geometry")]
    Geometry(#[source] candle_core::Error),
    /// A layer the engine has no op for, in this position.
    #[error("the engine has no op for {0}")]
    Unsupported(&'static str),
    /// A layer gets an input of a rank it cannot take.
    #[error("{layer} input {input:?} is not [c, h, w]")]
    NotAnImage {
        /// The layer kind.
        layer: &'static str,
        /// The input shape it got.
        input: Vec<usize>,
    },
}

/// Where a layer's ONNX nodes read and write.
#[derive(Debug, Clone)]
pub struct OnnxIo<'a> {
    /// The value the layer reads.
    pub input: &'a str,
    /// The value its last node writes.
    pub output: &'a str,
    /// A name for its nodes: the layer's name for a layer with parameters, else kind and
    /// position (`relu2`).
    pub label: &'a str,
    /// The tensor names of its effective weight and bias (layers with parameters).
    pub params: Option<(String, String)>,
    /// The tensor names of the task's state, in [`Layer::state`] order (as
    /// [`Layer::onnx_state`] gives them).
    pub state: Vec<String>,
}

impl OnnxIo<'_> {
    /// One node from the layer's input to its output.
    pub fn node(&self, op: &'static str, inputs: &[&str], attrs: Vec<OnnxAttr>) -> OnnxNode {
        OnnxNode {
            op,
            name: self.label.to_string(),
            inputs: std::iter::once(self.input)
                .chain(inputs.iter().copied())
                .map(str::to_string)
                .collect(),
            output: self.output.to_string(),
            attrs,
        }
    }

    /// `{label}.{suffix}`: the name of a value between the layer's nodes, or of the constant
    /// `suffix` of [`Layer::onnx_constants`].
    pub fn name(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.label)
    }

    /// The weight and bias names; a layer asks only when it has parameters.
    pub fn weight_and_bias(&self) -> (&str, &str) {
        match &self.params {
            Some((w, b)) => (w, b),
            None => ("", ""),
        }
    }
}

/// An ONNX node, before it becomes a `NodeProto`.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxNode {
    /// The operator (`Gemm`, `Conv`).
    pub op: &'static str,
    /// The node's name.
    pub name: String,
    /// The values it reads.
    pub inputs: Vec<String>,
    /// The value it writes.
    pub output: String,
    /// Its attributes.
    pub attrs: Vec<OnnxAttr>,
}

/// A node attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum OnnxAttr {
    /// One integer.
    Int(&'static str, i64),
    /// A list of integers.
    Ints(&'static str, Vec<i64>),
}

/// `[c, h, w]` or the error a layer that needs an image gives.
pub(crate) fn image(at: &str, input: &[usize]) -> Result<[usize; 3], SpecError> {
    match input {
        &[c, h, w] => Ok([c, h, w]),
        _ => Err(SpecError::NeedsImage {
            at: at.to_string(),
            shape: input.to_vec(),
        }),
    }
}

/// Declares the layer types a model file may use: `type = "{name}"` selects the type, whose
/// struct (with `deny_unknown_fields`) takes the layer's other fields.
macro_rules! layer_kinds {
    ($($variant:ident($ty:ty) = $name:literal,)*) => {
        /// One `[[layer]]` of a model file.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum LayerSpec {
            $(
                #[doc = concat!("`type = \"", $name, "\"`")]
                #[serde(rename = $name)]
                $variant($ty),
            )*
        }

        impl LayerSpec {
            /// The layer behind the spec.
            pub fn layer(&self) -> &dyn Layer {
                match self {
                    $(LayerSpec::$variant(l) => l,)*
                }
            }
        }
    };
}

layer_kinds! {
    Linear(Linear) = "linear",
    Conv2d(Conv2d) = "conv2d",
    Relu(Relu) = "relu",
    Tanh(Tanh) = "tanh",
    Sigmoid(Sigmoid) = "sigmoid",
    Maxpool2d(Maxpool2d) = "maxpool2d",
    Flatten(Flatten) = "flatten",
    BatchNorm1d(BatchNorm1d) = "batchnorm1d",
    BatchNorm2d(BatchNorm2d) = "batchnorm2d",
}

impl LayerSpec {
    /// The layer's type as written in the file.
    pub fn kind(&self) -> &'static str {
        self.layer().kind()
    }

    /// See [`Layer::weight_shape`].
    pub fn weight_shape(&self, input: &[usize]) -> Option<(Vec<usize>, usize)> {
        self.layer().weight_shape(input)
    }
}
