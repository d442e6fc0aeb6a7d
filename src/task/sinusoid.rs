//! `sinusoid`: y = sin((A ⊙ A_M^t) x + b ⊙ b_M^t) + noise (the paper's form, on the `linear`
//! kind's masked target), or MAML's y = amplitude · sin(x + phase) + noise with `form = "maml"`
//! (Finn et al. 2017: one input, x uniform on [-5, 5]).

use super::linear::{MaskedLinear, PARAMS as LINEAR_PARAMS};
use super::registry::{ParamSpec, ParamType, TaskContext, TaskKind};
use super::{RegressionTask, Task};
use crate::error::Result;
use crate::rng::Rng;

const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "form",
        ty: ParamType::Str,
        default: Some("\"masked\""),
        help: "\"masked\": sin of the masked linear target; \"maml\": amplitude · sin(x + phase) with inputs = 1",
    },
    LINEAR_PARAMS[0],
    ParamSpec {
        name: "outputs",
        ty: ParamType::Int,
        default: Some("1"),
        help: "output dimension",
    },
    ParamSpec {
        name: "train",
        ty: ParamType::Int,
        default: Some("64"),
        help: "training examples per task",
    },
    LINEAR_PARAMS[3],
    ParamSpec {
        name: "x_range",
        ty: ParamType::FloatList,
        default: Some("[-2.0, 2.0]"),
        help: "inputs are uniform on [lo, hi]",
    },
    LINEAR_PARAMS[5],
    LINEAR_PARAMS[6],
    LINEAR_PARAMS[7],
    ParamSpec {
        name: "amplitude",
        ty: ParamType::Float,
        default: Some("1.0"),
        help: "form = \"maml\": amplitude",
    },
    ParamSpec {
        name: "phase",
        ty: ParamType::Float,
        default: Some("0.0"),
        help: "form = \"maml\": phase in radians",
    },
];

fn build(ctx: &TaskContext) -> Result<Box<dyn Task>> {
    let spec = MaskedLinear::from_params(ctx)?;
    match ctx.params.str("form")? {
        "masked" => Ok(Box::new(spec.build(ctx, "sinusoid", f64::sin))),
        "maml" => {
            if spec.inputs != 1 || spec.outputs != 1 {
                return Err(ctx.params.invalid(
                    "inputs",
                    format!(
                        "form = \"maml\" needs inputs = 1 and outputs = 1, got {} and {}",
                        spec.inputs, spec.outputs
                    ),
                ));
            }
            let amplitude = ctx.params.f64("amplitude")?;
            let phase = ctx.params.f64("phase")?;
            let mut data = Rng::stream(ctx.seed, "sinusoid-maml/data", ctx.index as u64);
            let mut make = |n: usize| {
                let x: Vec<f64> = (0..n)
                    .map(|_| data.uniform_in(spec.x_range.0, spec.x_range.1))
                    .collect();
                let y: Vec<f64> = x
                    .iter()
                    .map(|x| amplitude * (x + phase).sin() + spec.noise * data.normal())
                    .collect();
                (x, y)
            };
            let (xtr, ytr) = make(spec.train);
            let (xte, yte) = make(spec.test);
            Ok(Box::new(RegressionTask::new(
                ctx.name,
                1,
                1,
                [xtr, xte],
                [ytr, yte],
                None,
            )))
        }
        other => Err(ctx.params.invalid(
            "form",
            format!("must be \"masked\" or \"maml\", got \"{other}\""),
        )),
    }
}

inventory::submit! {
    TaskKind {
        name: "sinusoid",
        summary: "y = sin((A ⊙ A_M) x + b ⊙ b_M) + noise, or MAML's amplitude · sin(x + phase) (form = \"maml\")",
        params: PARAMS,
        build,
    }
}
