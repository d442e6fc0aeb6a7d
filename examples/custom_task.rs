//! A task kind defined outside gatekit: `quadratic`, y = a·x² + b·x + c + noise on one input.
//!
//! The kind registers itself with `gatekit::inventory::submit!`, exactly like the built-in
//! kinds do from their own files, so any task set loaded by this program can say
//! `kind = "quadratic"`. The program then trains a three-task set with all three strategies and
//! prints the comparison table `gtk train --strategy all` prints.
//!
//! ```text
//! cargo run --release --example custom_task               # 2000 steps
//! cargo run --release --example custom_task -- 200        # a quicker look
//! ```

use gatekit::rng::Rng;
use gatekit::task::{ParamSpec, ParamType, RegressionTask, TaskContext, TaskKind};
use gatekit::train::{Strategy, Trainer};
use gatekit::{Task, TaskSet};
use std::path::Path;

/// The kind's parameters: name, TOML type, default (a TOML literal; `None` = required), help.
/// `gtk tasks`-style listings and the error messages for a bad `[[task]]` entry come from here.
const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "coefficients",
        ty: ParamType::FloatList,
        default: None,
        help: "[a, b, c] of y = a·x² + b·x + c",
    },
    ParamSpec {
        name: "noise",
        ty: ParamType::Float,
        default: Some("0.0"),
        help: "standard deviation of Gaussian noise on the targets",
    },
    ParamSpec {
        name: "train",
        ty: ParamType::Int,
        default: Some("256"),
        help: "training examples",
    },
    ParamSpec {
        name: "test",
        ty: ParamType::Int,
        default: Some("256"),
        help: "test examples",
    },
];

/// Builds one task from its checked parameters. Everything random is drawn from a stream of
/// the task set's seed and the task's index, so a run folder can rebuild the same data.
fn build(ctx: &TaskContext) -> gatekit::Result<Box<dyn Task>> {
    let coefficients = ctx.params.f64_list("coefficients")?;
    let [a, b, c] = coefficients[..] else {
        return Err(ctx.params.invalid(
            "coefficients",
            format!(
                "must hold exactly three numbers [a, b, c], got {}",
                coefficients.len()
            ),
        ));
    };
    let noise = ctx.params.f64("noise")?;
    if !(noise.is_finite() && noise >= 0.0) {
        return Err(ctx
            .params
            .invalid("noise", format!("must be ≥ 0, got {noise}")));
    }
    let mut rng = Rng::stream(ctx.seed, "example-quadratic/data", ctx.index as u64);
    let mut draw = |n: usize| {
        let x: Vec<f64> = (0..n).map(|_| rng.uniform_in(-1.0, 1.0)).collect();
        let y: Vec<f64> = x
            .iter()
            .map(|x| a * x * x + b * x + c + noise * rng.normal())
            .collect();
        (x, y)
    };
    let (x_train, y_train) = draw(ctx.params.positive("train")?);
    let (x_test, y_test) = draw(ctx.params.positive("test")?);
    // One input, one output, row-major rows; no ground-truth masks for this kind.
    Ok(Box::new(RegressionTask::new(
        ctx.name,
        1,
        1,
        [x_train, x_test],
        [y_train, y_test],
        None,
    )))
}

gatekit::inventory::submit! {
    TaskKind {
        name: "quadratic",
        summary: "y = a·x² + b·x + c + noise on x uniform in [-1, 1] (examples/custom_task.rs)",
        params: PARAMS,
        build,
    }
}

/// Three tasks of the new kind; the model is inline, so no other file is needed.
const TASK_SET: &str = r#"
[run]
steps = 2000
batch_size = 32
optimizer = "adam"
lr = 0.01
seed = 0

[model]
name = "mlp-1-32-1"
input = [1]
layer = [
  { type = "linear", out = 32 },
  { type = "tanh" },
  { type = "linear", out = 1 },
]

[defaults]
kind = "quadratic"
noise = 0.05

[[task]]
name = "bowl"
coefficients = [1.0, 0.0, 0.0]

[[task]]
name = "cap"
coefficients = [-1.0, 0.0, 0.5]

[[task]]
name = "slope"
coefficients = [0.0, 1.0, 0.0]
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut set = TaskSet::parse_with(TASK_SET, Path::new("<custom_task.rs>"), &|_| {
        unreachable!("the model is inline")
    })?;
    if let Some(steps) = std::env::args().nth(1) {
        set.run.steps = steps.parse()?;
        set.run.evaluation.eval_every = set.run.steps;
    }
    let runs = std::env::temp_dir().join(format!("gatekit-custom-task-{}", std::process::id()));
    let mut trainer = Trainer::create(
        set,
        &Strategy::ALL,
        &runs.join("quadratic"),
        None,
        &candle_core::Device::Cpu,
    )?;
    trainer.train(None, &mut |_| {})?;
    let records = trainer.evaluate()?;
    println!("{}", trainer.table(&records)?);
    std::fs::remove_dir_all(&runs)?;
    Ok(())
}
