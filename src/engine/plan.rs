//! A [`ModelSpec`] compiled into a list of engine ops with every size fixed: convolution,
//! ReLU and max-pool runs fuse into one [`Op::Conv`], `flatten` disappears (the buffers are
//! already contiguous `[n, c·h·w]`).

use super::EngineError;
use crate::kernel::im2col::ConvGeom;
use crate::layers::EngineOp;
use crate::model::ModelSpec;

/// An elementwise activation.
pub(crate) use crate::layers::Activation as Act;

/// One step of the forward pass. Sizes are per sample.
#[derive(Debug, Clone, PartialEq)]
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
    /// `k`×`k` max-pool with stride `k` over `[c, h, w]`.
    Pool {
        c: usize,
        h: usize,
        w: usize,
        k: usize,
    },
}

impl Op {
    /// Values per sample this op writes.
    pub fn out_len(&self) -> usize {
        match self {
            Op::Dense { outputs, .. } => *outputs,
            Op::Conv {
                geom, c_out, pool, ..
            } => c_out * (geom.h_out / pool) * (geom.w_out / pool),
            Op::Act { len, .. } => *len,
            Op::Pool { c, h, w, k } => c * (h / k) * (w / k),
        }
    }
}

/// The compiled model.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub ops: Vec<Op>,
    /// Values per input sample.
    pub input_len: usize,
    /// Values per output sample.
    pub output_len: usize,
    /// Element count of every parameter, in the network's order (weight, bias, weight, ...).
    pub param_lens: Vec<usize>,
}

impl Plan {
    /// Compiles `spec`, or says why the engine cannot run it (the reference path then does).
    pub fn compile(spec: &ModelSpec) -> Result<Plan, EngineError> {
        let steps = spec.walk()?;
        let mut ops: Vec<Op> = Vec::new();
        let mut param_lens = Vec::new();
        for step in &steps {
            let input = &step.input;
            let op = step.layer.layer().engine_op(input)?;
            match op {
                EngineOp::Dense { inputs, outputs } => {
                    ops.push(Op::Dense {
                        inputs,
                        outputs,
                        param: param_lens.len(),
                    });
                    param_lens.extend([outputs * inputs, outputs]);
                }
                EngineOp::Conv { geom, c_out } => {
                    ops.push(Op::Conv {
                        geom,
                        c_out,
                        param: param_lens.len(),
                        relu: false,
                        pool: 1,
                    });
                    param_lens.extend([c_out * geom.rows(), c_out]);
                }
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
            }
        }
        let output = steps.last().map_or(&spec.input, |step| &step.output);
        let plan = Plan {
            input_len: spec.input.iter().product(),
            output_len: output.iter().product(),
            ops,
            param_lens,
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
