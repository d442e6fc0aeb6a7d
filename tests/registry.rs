//! The task-kind registry: built-in kinds are listed sorted, and a kind defined in another
//! crate (here, this test crate) registers with `inventory::submit!` and trains from a TOML set.

mod common;
use candle_core::{DType, Device, Tensor};
use gatekit::task::{Batch, Objective, ParamSpec, ParamType, Split, TaskContext, TaskKind, kinds};
use gatekit::train::{Record, Strategy, Trainer};
use gatekit::{Task, TaskSet};

/// y = c for every x: the smallest possible task, with one parameter.
struct Constant {
    name: String,
    value: f64,
}

impl Task for Constant {
    fn name(&self) -> &str {
        &self.name
    }
    fn input_shape(&self) -> &[usize] {
        &[8]
    }
    fn outputs(&self) -> usize {
        4
    }
    fn objective(&self) -> Objective {
        Objective::Regression
    }
    fn len(&self, _split: Split) -> usize {
        16
    }
    fn batch(
        &self,
        _split: Split,
        indices: &[usize],
        device: &Device,
        dtype: DType,
    ) -> gatekit::Result<Batch> {
        let n = indices.len();
        let x: Vec<f64> = indices
            .iter()
            .flat_map(|&i| (0..8).map(move |j| ((i * 8 + j) % 5) as f64 / 5.0))
            .collect();
        Ok(Batch {
            x: Tensor::from_vec(x, (n, 8), device)?.to_dtype(dtype)?,
            y: Tensor::full(self.value, (n, 4), device)?.to_dtype(dtype)?,
        })
    }
}

fn build_constant(ctx: &TaskContext) -> gatekit::Result<Box<dyn Task>> {
    Ok(Box::new(Constant {
        name: ctx.name.into(),
        value: ctx.params.f64("value")?,
    }))
}

gatekit::inventory::submit! {
    TaskKind {
        name: "constant-test",
        summary: "y = value (defined in tests/registry.rs)",
        params: &[ParamSpec { name: "value", ty: ParamType::Float, default: Some("1.5"), help: "the constant" }],
        build: build_constant,
    }
}

#[test]
fn builtin_kinds_are_listed_sorted_by_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let out = common::gtk(tmp.path(), &["tasks"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        names,
        [
            "linear",
            "mnist",
            "permuted-mnist",
            "rotated-mnist",
            "sinusoid",
            "split-mnist",
            "tensors"
        ]
    );
    let detail = common::gtk(tmp.path(), &["tasks", "sinusoid"]);
    let detail = String::from_utf8_lossy(&detail.stdout);
    assert!(
        detail.contains("amplitude") && detail.contains("form"),
        "{detail}"
    );
}

/// The image kinds' `pad` help says what the code does (tests/image_tasks.rs checks that the
/// padding takes the background colour), not "zero padding".
#[test]
fn mnist_padding_help_matches_the_code() {
    let tmp = tempfile::tempdir().unwrap();
    let out = common::gtk(tmp.path(), &["tasks", "mnist"]);
    assert!(out.status.success());
    let detail = String::from_utf8_lossy(&out.stdout);
    let pad = detail
        .lines()
        .find(|l| l.trim_start().starts_with("pad"))
        .unwrap_or_else(|| panic!("no pad line in {detail}"));
    assert!(pad.contains("in the background"), "{pad}");
    assert!(!detail.to_lowercase().contains("zero padding"), "{detail}");
}

#[test]
fn a_kind_from_another_crate_registers_and_trains() {
    let names: Vec<&str> = kinds().iter().map(|k| k.name).collect();
    assert_eq!(
        names,
        [
            "constant-test",
            "linear",
            "mnist",
            "permuted-mnist",
            "rotated-mnist",
            "sinusoid",
            "split-mnist",
            "tensors"
        ]
    );
    let text = format!(
        "[run]\nmodel = \"{}\"\nsteps = 1000\nlr = 0.1\n[[task]]\nname = \"c\"\nkind = \"constant-test\"\nvalue = 2.5\n",
        common::repo("models/linear.toml").display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("set.toml");
    std::fs::write(&path, text).unwrap();
    let set = TaskSet::load(&path).unwrap();
    let mut trainer = Trainer::create(
        set,
        &[Strategy::Shared],
        &tmp.path().join("run"),
        None,
        &Device::Cpu,
    )
    .unwrap();
    trainer.train(None, &mut |_| {}).unwrap();
    let mse = trainer
        .evaluate()
        .unwrap()
        .iter()
        .find_map(|r| match r {
            Record::Eval { split, metric, .. } if split == "test" => Some(*metric),
            _ => None,
        })
        .unwrap();
    assert!(mse < 1e-3, "constant 2.5 not learned: MSE {mse}");
}
