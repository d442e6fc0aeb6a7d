//! A [`ModelSpec`] compiled into a list of engine ops with every size fixed: convolution,
//! ReLU and max-pool runs fuse into one [`Op::Conv`], `flatten` disappears (the buffers are
//! already contiguous `[n, c·h·w]`).

use super::EngineError;
use crate::kernel::im2col::ConvGeom;
use crate::layers::{EngineKernel, EngineOp};
use crate::model::ModelSpec;
use std::ops::Range;
use std::sync::Arc;

/// An elementwise activation.
pub(crate) use crate::layers::Activation as Act;

/// One step of the forward pass. Sizes are per sample.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// `y = x θWᵀ + θb`; `param` is the index of the weight (the bias follows it).
    Dense {
        inputs: usize,
        outputs: usize,
        param: usize,
    },
    /// `pool(relu(conv(x, θW) + θb))` with optional ReLU and a `pool`×`pool` max-pool
    /// (`pool = 1`: none).
    Conv {
        geom: ConvGeom,
        c_out: usize,
        param: usize,
        relu: bool,
        pool: usize,
    },
    /// Elementwise activation over `len` values.
    Act { act: Act, len: usize },
    /// A layer's own kernel; `param`: the index of its weight (the bias follows it), if it
    /// has parameters; `state`: the indices of its per-task state tensors.
    Kernel {
        kernel: Arc<dyn EngineKernel>,
        param: Option<usize>,
        state_range: Range<usize>,
    },
    /// `k`×`k` max-pool with stride `k` over `[c, h, w]`.
    Pool {
        c: usize,
        h: usize,
        w: usize,
        k: usize,
    },
}

impl Op {
    /// A short name of the op's kind, for profiles.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Dense { .. } => "dense",
            Op::Conv { .. } => "conv block",
            Op::Act { .. } => "activation",
            Op::Kernel { .. } => "layer kernel",
            Op::Pool { .. } => "max-pool",
        }
    }

    /// Values per sample this op writes.
    pub fn out_len(&self) -> usize {
        match self {
            Op::Dense { outputs, .. } => *outputs,
            Op::Conv {
                geom, c_out, pool, ..
            } => c_out * (geom.h_out / pool) * (geom.w_out / pool),
            Op::Act { len, .. } => *len,
            Op::Kernel { kernel, .. } => kernel.out_len(),
            Op::Pool { c, h, w, k } => c * (h / k) * (w / k),
        }
    }
}

/// The compiled model.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub ops: Vec<Op>,
    /// Values per input sample.
    pub input_len: usize,
    /// Values per output sample.
    pub output_len: usize,
    /// Element count of every parameter, in the network's order (weight, bias, weight, ...).
    pub param_lens: Vec<usize>,
    /// Element count of every per-task state tensor, in the network's order.
    pub state_lens: Vec<usize>,
}

impl Plan {
    /// Compiles `spec`, or says why the engine cannot run it (the reference path then does).
    pub fn compile(spec: &ModelSpec) -> Result<Plan, EngineError> {
        let steps = spec.walk()?;
        let mut ops: Vec<Op> = Vec::new();
        let mut param_lens = Vec::new();
        let mut state_lens: Vec<usize> = Vec::new();
        for step in &steps {
            let input = &step.input;
            let layer = step.layer.layer();
            let op = layer.engine_op(input)?;
            let param = layer.weight_shape(input).map(|(shape, _)| {
                param_lens.extend([shape.iter().product(), shape[0]]);
                param_lens.len() - 2
            });
            let from = state_lens.len();
            state_lens.extend(
                layer
                    .state(input)
                    .iter()
                    .map(|s| s.shape.iter().product::<usize>()),
            );
            let state = from..state_lens.len();
            let needs_params = || EngineError::Unsupported("a dense or conv op without parameters");
            match op {
                EngineOp::Dense { inputs, outputs } => ops.push(Op::Dense {
                    inputs,
                    outputs,
                    param: param.ok_or_else(needs_params)?,
                }),
                EngineOp::Conv { geom, c_out } => ops.push(Op::Conv {
                    geom,
                    c_out,
                    param: param.ok_or_else(needs_params)?,
                    relu: false,
                    pool: 1,
                }),
                // A ReLU or a max-pool right after a convolution fuses into it.
                EngineOp::Act {
                    act: Act::Relu,
                    len,
                } => match ops.last_mut() {
                    Some(Op::Conv {
                        relu: relu @ false,
                        pool: 1,
                        ..
                    }) => *relu = true,
                    _ => ops.push(Op::Act {
                        act: Act::Relu,
                        len,
                    }),
                },
                EngineOp::Act { act, len } => ops.push(Op::Act { act, len }),
                EngineOp::Pool { c, h, w, k } => match ops.last_mut() {
                    Some(Op::Conv { pool: pool @ 1, .. }) => *pool = k,
                    _ => ops.push(Op::Pool { c, h, w, k }),
                },
                EngineOp::Identity => {}
                EngineOp::Kernel(kernel) => ops.push(Op::Kernel {
                    kernel,
                    param,
                    state_range: state,
                }),
            }
        }
        let output = steps.last().map_or(&spec.input, |step| &step.output);
        let plan = Plan {
            input_len: spec.input.iter().product(),
            output_len: output.iter().product(),
            ops,
            param_lens,
            state_lens,
        };
        if plan.ops.last().map(Op::out_len) != Some(plan.output_len) {
            return Err(EngineError::Unsupported(
                "a last layer with no parameters or activation",
            ));
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenet_fuses_conv_relu_pool() {
        let spec = crate::model::lenet5();
        let plan = Plan::compile(&spec).unwrap();
        let kinds: Vec<String> = plan
            .ops
            .iter()
            .map(|o| match o {
                Op::Dense { .. } => "dense".into(),
                Op::Conv { relu, pool, .. } => format!("conv(relu={relu},pool={pool})"),
                Op::Act { act, .. } => format!("{act:?}"),
                Op::Pool { .. } => "pool".into(),
                Op::Kernel { .. } => "kernel".into(),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "conv(relu=true,pool=2)",
                "conv(relu=true,pool=2)",
                "dense",
                "Relu",
                "dense",
                "Relu",
                "dense"
            ]
        );
        assert_eq!(plan.param_lens.iter().sum::<usize>(), 62_006);
        assert_eq!((plan.input_len, plan.output_len), (3 * 32 * 32, 10));
    }
}
