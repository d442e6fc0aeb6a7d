//! Supermasks that infer the task (issue 27 item 4, SupSup's GNu setting): binary
//! straight-through masks (`gate = "ste"`) on a never-trained signed-constant `W`, RMSProp on
//! the masks, a model with unused outputs, and `gtk eval --infer-task` (one gradient per test
//! batch picks the mask; a wrong pick scores 0). Three permuted-MNIST tasks on a 784-64-20
//! MLP, 150 steps each: a few seconds.

mod common;

use candle_core::{DType, Device};
use common::{assert_clean_error, gtk, ok, shared_data};
use gatekit::TaskSet;
use gatekit::adapt::infer::{InferConfig, InferReport, InferSignal, infer_tasks};
use gatekit::adapt::{MixGates, PickVariant};
use gatekit::gate::GateView;
use gatekit::params::TaskId;
use gatekit::run::open_run;
use gatekit::task::Split;
use gatekit::train::{Strategy, Trainer};
use std::path::{Path, PathBuf};

const MODEL: &str = r#"name = "mlp-64-20"
input = [1, 28, 28]
[[layer]]
type = "flatten"
[[layer]]
type = "linear"
out = 64
[[layer]]
type = "relu"
[[layer]]
type = "linear"
out = 20
"#;

const SET: &str = r#"
[run]
model = "MODEL"
schedule = "sequential"
phase_steps = 150
batch_size = 32
optimizer = "rmsprop"
lr = 0.0001
gate = "ste"
w_policy = "frozen"
w_init = "signed-constant"
mask_optimizer = "rmsprop"
mask_lr = 0.001
mask_init = [0.0, 0.03]
eval_every = 150
seed = 0

[defaults]
kind = "permuted-mnist"
channels = 1
pad = 0
outputs = 20
train_limit = 4000
test_limit = 256

[[task]]
name = "p0"
[[task]]
name = "p1"
[[task]]
name = "p2"
"#;

fn task_set(dir: &Path) -> PathBuf {
    let model = dir.join("model.toml");
    std::fs::write(&model, MODEL).unwrap();
    let set = dir.join("set.toml");
    std::fs::write(&set, SET.replace("MODEL", model.to_str().unwrap())).unwrap();
    set
}

/// Every parameter of the gated model's `W`, flattened.
fn weights(trainer: &Trainer) -> Vec<Vec<f32>> {
    let net = trainer.learners()[0].network(TaskId(0)).unwrap();
    net.params()
        .iter()
        .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect()
}

fn infer(run: &Path, data: &Path, signal: InferSignal, variant: PickVariant) -> InferReport {
    let opened = open_run(run, Some(data), &Device::Cpu).unwrap();
    let cfg = InferConfig {
        signal,
        variant,
        gates: MixGates::Soft,
        batch: 64,
        limit: 0,
        used_outputs: 10,
        profile_examples: 64,
    };
    infer_tasks(&opened, &cfg).unwrap()
}

#[test]
fn ste_supermasks_on_frozen_w_learn_and_infer_their_task() {
    let Some(data) = shared_data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let set = TaskSet::load(&task_set(tmp.path())).unwrap();
    let run = tmp.path().join("run");
    let mut trainer = Trainer::create(
        set,
        &[Strategy::Gated],
        &run,
        Some(data.as_path()),
        &Device::Cpu,
    )
    .unwrap();
    let before = weights(&trainer);
    trainer.train(None, &mut |_| {}).unwrap();

    // W is bit-identical to its signed-constant start: ±√(2/fan_in) per layer, biases 0.
    let after = weights(&trainer);
    assert_eq!(after, before, "W changed");
    for (w, fan_in) in [(&after[0], 784.0f32), (&after[2], 64.0)] {
        let c = (2.0 / fan_in).sqrt();
        assert!(w.iter().all(|v| (v.abs() - c).abs() < 1e-7), "not ±{c}");
        let positive = w.iter().filter(|v| **v > 0.0).count() as f64 / w.len() as f64;
        assert!((positive - 0.5).abs() < 0.05, "share positive {positive}");
    }
    assert!(after[1].iter().chain(&after[3]).all(|b| *b == 0.0));

    // The STE gate's forward value is exactly the binary mask: the trained model and the
    // deployed 1-bit model give bit-identical outputs.
    let tasks = trainer
        .task_set()
        .build_tasks(Some(data.as_path()))
        .unwrap();
    let gated = &trainer.learners()[0];
    let idx: Vec<usize> = (0..32).collect();
    for (t, task) in tasks.iter().enumerate().take(3) {
        let x = task
            .batch(Split::Test, &idx, &Device::Cpu, DType::F32)
            .unwrap()
            .x;
        let soft = gated
            .predict(TaskId(t), &x, 1.0, GateView::Trained)
            .unwrap();
        let hard = gated.predict(TaskId(t), &x, 1.0, GateView::Binary).unwrap();
        let (soft, hard): (Vec<f32>, Vec<f32>) = (
            soft.flatten_all().unwrap().to_vec1().unwrap(),
            hard.flatten_all().unwrap().to_vec1().unwrap(),
        );
        assert_eq!(soft, hard, "task {t}: STE forward is not the binary mask");
    }
    drop(trainer);

    let report = infer(&run, &data, InferSignal::Logsumexp, PickVariant::OneShot);
    // Masks start about half dense and stay so; the masks are the only thing trained, through
    // the straight-through gradient, and they fit their tasks far above chance.
    for (t, p) in report.tasks.iter().zip(&report.profiles) {
        assert!(
            (p.density - 0.5).abs() < 0.05,
            "{}: density {}",
            p.task,
            p.density
        );
        assert_eq!(p.mean_gate, p.density, "a ste gate is binary");
        assert!(t.accuracy_given > 0.6, "{}: {}", t.task, t.accuracy_given);
        assert_eq!(t.batches, 4);
    }
    assert_eq!(report.rounds, 1);
    assert_eq!(report.stored, ["p0", "p1", "p2"]);
    // Every batch's task is inferred, so the accuracy with the task inferred is the given one.
    assert_eq!(report.inference_accuracy, 1.0, "{:?}", report.tasks);
    assert_eq!(report.accuracy_inferred, report.accuracy_given);
    for signal in [InferSignal::Entropy, InferSignal::Logsumexp] {
        let r = infer(&run, &data, signal, PickVariant::Halving);
        assert!(
            r.inference_accuracy >= 11.0 / 12.0,
            "{signal:?}: {:?}",
            r.tasks
        );
        assert!(r.accuracy_inferred <= r.accuracy_given);
        assert_eq!(r.accuracy_given, report.accuracy_given);
        assert_eq!(r.rounds, 2);
    }

    // The CLI: the JSON report, and a clean error where no output is unused.
    let run_arg = run.to_str().unwrap();
    let data_arg = data.to_str().unwrap();
    let args = [
        "eval",
        run_arg,
        "--data-dir",
        data_arg,
        "--infer-task",
        "logsumexp",
        "--infer-batch",
        "64",
        "--json",
    ];
    let json: InferReport = serde_json::from_str(&ok(&gtk(tmp.path(), &args))).unwrap();
    assert_eq!(json.inference_accuracy, 1.0);
    assert_eq!(json.accuracy_given, report.accuracy_given);
    let args = [
        "eval",
        run_arg,
        "--data-dir",
        data_arg,
        "--infer-task",
        "logsumexp",
        "--used-outputs",
        "20",
    ];
    assert_clean_error(
        &gtk(tmp.path(), &args),
        &["logsumexp", "unused outputs", "20"],
    );
}
