//! Batch-norm statistics re-estimated under the binarized masks (issue 29 item 3): the
//! estimate is the plain average of the batches' statistics; on a real (tiny) batch-norm run
//! the binarized model with re-estimated statistics is better than with the soft gates'
//! statistics; the exported ONNX file answers what gatekit's own evaluation of that model
//! answers (onnxruntime, within 1e-5); the binarized metric the run logs, the export reports
//! and `gtk serve RUN` serves are all that same model; and none of it writes into the run.

mod common;
use candle_core::{Device, Tensor};
use common::{flat, max_diff};
use gatekit::export::{ExportOptions, ExportSummary, export_run};
use gatekit::gate::GateView;
use gatekit::learn::{Learner, Strategy};
use gatekit::model::ModelSpec;
use gatekit::params::TaskId;
use gatekit::run::BnRecalibration;
use gatekit::serve::{ExportFolder, ModelStore};
use gatekit::train::{ChangedData, MetricsLog, Record, TaskSet, Trainer, open_run_with};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The sinusoid MLP of models/mlp.toml with a batch norm after each hidden linear layer.
const MLP_BN: &str = "name = \"mlp-bn\"\ninput = [8]\n\
    [[layer]]\ntype = \"linear\"\nout = 40\n[[layer]]\ntype = \"batchnorm1d\"\n[[layer]]\ntype = \"relu\"\n\
    [[layer]]\ntype = \"linear\"\nout = 40\n[[layer]]\ntype = \"batchnorm1d\"\n[[layer]]\ntype = \"relu\"\n\
    [[layer]]\ntype = \"linear\"\nout = 1\n";

/// Trains the batch-norm MLP on two sinusoid tasks for a few steps into `dir/run`.
fn train(dir: &Path) -> PathBuf {
    let model = dir.join("mlp-bn.toml");
    std::fs::write(&model, MLP_BN).unwrap();
    let set = dir.join("set.toml");
    std::fs::write(
        &set,
        format!(
            "[run]\nmodel = \"{}\"\nsteps = 100\nseed = 3\neval_every = 100\n\
             [defaults]\nkind = \"sinusoid\"\n[[task]]\nname = \"a\"\n[[task]]\nname = \"b\"\n",
            model.display()
        ),
    )
    .unwrap();
    let set = TaskSet::load(&set).unwrap();
    let run = dir.join("run");
    let mut trainer = Trainer::create(set, &[Strategy::Gated], &run, None, &Device::Cpu).unwrap();
    trainer.train(None, &mut |_| {}).unwrap();
    run
}

fn export(run: &gatekit::train::Run, out: &Path, batches: usize) -> ExportSummary {
    export_run(
        run,
        out,
        &ExportOptions {
            binarize: true,
            bn: BnRecalibration { batches },
            ..Default::default()
        },
    )
    .unwrap()
}

/// `onnx`'s output for `x` (`[n, 8]`) in onnxruntime's Python `InferenceSession`.
fn onnxruntime(onnx: &Path, x: &[f32], n: usize, dir: &Path) -> Vec<f32> {
    let input = dir.join("x.npy");
    std::fs::write(&input, common::npy(&[n, 8], x)).unwrap();
    let script = "import sys, json, numpy as np, onnxruntime as ort\n\
        s = ort.InferenceSession(sys.argv[1])\n\
        (y,) = s.run(['output'], {'input': np.load(sys.argv[2])})\n\
        print(json.dumps([float(v) for v in y.reshape(-1)]))\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(onnx)
        .arg(&input)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "onnxruntime: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<f32>>(&out.stdout).unwrap()
}

fn states(path: &Path) -> HashMap<String, Vec<f32>> {
    candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, flat(&t)))
        .collect()
}

/// A model whose only layer is a batch norm sees the raw inputs, whatever the gates: the
/// estimate must be the mean of the batches' means and of their unbiased variances
/// (PyTorch's `momentum=None`), not an exponential average, and the learner is not changed.
#[test]
fn the_estimate_averages_the_batches_statistics() {
    let spec = ModelSpec::parse(
        "name = \"bn\"\ninput = [2]\n[[layer]]\ntype = \"batchnorm1d\"\n",
        Path::new("bn.toml"),
    )
    .unwrap();
    let run = TaskSet::builtin().unwrap().run;
    let learner = Learner::new(
        Strategy::Gated,
        &run,
        &spec,
        &["a".to_string()],
        &Device::Cpu,
    )
    .unwrap();
    let before = learner.layer_state(TaskId(0)).unwrap();
    // Channel 0 of batch 1: 1, 2, 3, 6 (mean 3, unbiased variance 14/3); of batch 2: 10, 10,
    // 10, 14 (mean 11, variance 4). Channel 1 is channel 0 times -2.
    let batch = |c0: [f32; 4]| {
        let v: Vec<f32> = c0.iter().flat_map(|&a| [a, -2.0 * a]).collect();
        Tensor::from_vec(v, (4, 2), &Device::Cpu).unwrap()
    };
    let batches = [batch([1., 2., 3., 6.]), batch([10., 10., 10., 14.])];
    let state = learner
        .estimate_state(TaskId(0), 1.0, GateView::Binary, &batches)
        .unwrap();
    let (mean, var) = (flat(&state[0]), flat(&state[1]));
    let expected_var = (14.0 / 3.0 + 4.0) / 2.0;
    assert!(
        (mean[0] - 7.0).abs() < 1e-6 && (mean[1] + 14.0).abs() < 1e-5,
        "{mean:?}"
    );
    assert!(
        (var[0] - expected_var).abs() < 1e-5 && (var[1] - 4.0 * expected_var).abs() < 1e-4,
        "{var:?}"
    );
    let after = learner.layer_state(TaskId(0)).unwrap();
    assert_eq!(flat(&before[0]), flat(&after[0]), "estimating reads only");
    assert_eq!(flat(&before[1]), flat(&after[1]));
    // No batches: the state gathered in training.
    let kept = learner
        .estimate_state(TaskId(0), 1.0, GateView::Binary, &[])
        .unwrap();
    assert_eq!(flat(&kept[1]), flat(&before[1]));
}

#[test]
fn a_binarized_batch_norm_model_is_measured_exported_and_served_with_its_own_statistics() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = train(tmp.path());
    let before = common::fingerprint(&run_dir);
    let run = open_run_with(&run_dir, None, &Device::Cpu, ChangedData::Refuse).unwrap();
    let fixed = export(&run, &tmp.path().join("fixed"), 20);
    let stale = export(&run, &tmp.path().join("stale"), 0);
    // The soft model is the same; the binarized one with re-estimated statistics is better on
    // every task (test MSE), by a clear margin on average: the soft gates' statistics are off
    // by the scale that rounding σ(M) to 0 or 1 gives every layer.
    for (f, s) in fixed.tasks.iter().zip(&stale.tasks) {
        eprintln!(
            "task {}: soft {:.5}, binarized {:.5} re-estimated vs {:.5} trained statistics",
            f.task, f.soft, f.binary, s.binary
        );
        assert_eq!(f.soft, s.soft);
        assert!(
            f.binary < s.binary,
            "task {}: {} vs {}",
            f.task,
            f.binary,
            s.binary
        );
    }
    let mean = |s: &ExportSummary| s.tasks.iter().map(|t| t.binary).sum::<f64>() / 2.0;
    assert!(
        mean(&fixed) < 0.8 * mean(&stale),
        "{} vs {}",
        mean(&fixed),
        mean(&stale)
    );

    // What the export wrote is what the library estimates, and not the trained statistics.
    let learner = run
        .learners()
        .iter()
        .find(|l| l.strategy() == Strategy::Gated)
        .unwrap();
    let tasks = [TaskId(0), TaskId(1)];
    let recal = run
        .recalibrated(
            learner,
            &tasks,
            GateView::Binary,
            BnRecalibration::default(),
        )
        .unwrap()
        .expect("a batch-norm model is re-estimated");
    let (written, trained) = (
        states(&tmp.path().join("fixed/state.safetensors")),
        states(&tmp.path().join("stale/state.safetensors")),
    );
    for (t, name) in ["a", "b"].iter().enumerate() {
        let ours = recal.layer_state(TaskId(t)).unwrap();
        let soft = learner.layer_state(TaskId(t)).unwrap();
        for (k, stat) in ["running_mean", "running_var"].iter().enumerate() {
            let key = format!("bn1.{stat}.state.{name}");
            assert_eq!(written[&key], flat(&ours[k]), "{key}");
            assert_eq!(trained[&key], flat(&soft[k]), "{key}");
            assert!(max_diff(&written[&key], &trained[&key]) > 1e-3, "{key}");
        }
    }

    // The exported ONNX file in onnxruntime answers what gatekit's evaluation of the
    // re-estimated model answers.
    let n = 16;
    let mut rng = gatekit::rng::Rng::new(5);
    let x: Vec<f32> = (0..n * 8)
        .map(|_| rng.uniform_in(-5.0, 5.0) as f32)
        .collect();
    let xt = Tensor::from_vec(x.clone(), (n, 8), &Device::Cpu).unwrap();
    let scale = run.hat_scale(run.step());
    for (t, name) in ["a", "b"].iter().enumerate() {
        let ours = flat(
            &recal
                .predict(TaskId(t), &xt, scale, GateView::Binary)
                .unwrap(),
        );
        let onnx = tmp.path().join(format!("fixed/{name}.onnx"));
        let theirs = onnxruntime(&onnx, &x, n, tmp.path());
        let d = max_diff(&ours, &theirs);
        assert!(d <= 1e-5, "task {name}: max |diff| {d}");
        // And the stale statistics answer something else.
        let stale = flat(
            &learner
                .predict(TaskId(t), &xt, scale, GateView::Binary)
                .unwrap(),
        );
        assert!(max_diff(&ours, &stale) > 1e-3);
    }

    // The run's own binarized metric (its last full evaluation) is the exported model's.
    let records = MetricsLog::read_committed(&run_dir).unwrap();
    for t in &fixed.tasks {
        let logged = records
            .iter()
            .rev()
            .find_map(|r| match r {
                Record::Binarized { task, metric, .. } if *task == t.task => Some(*metric),
                _ => None,
            })
            .expect("a binarized record");
        assert!(
            (logged - t.binary).abs() <= 1e-9 * t.binary.abs().max(1.0),
            "task {}: logged {logged} vs exported {}",
            t.task,
            t.binary
        );
    }

    // `gtk serve RUN` serves the same model as the export.
    let served = ModelStore::new(
        ExportFolder::open(&run_dir, None, ChangedData::Refuse, Default::default()).unwrap(),
        0,
    );
    let exported = ModelStore::new(ExportFolder::read(&tmp.path().join("fixed")).unwrap(), 0);
    for name in ["a", "b"] {
        let a = flat(&served.forward(&served.task(name).unwrap(), &xt).unwrap());
        let b = flat(
            &exported
                .forward(&exported.task(name).unwrap(), &xt)
                .unwrap(),
        );
        assert_eq!(a, b, "task {name}: served run vs export");
    }

    drop(run);
    assert_eq!(
        common::fingerprint(&run_dir),
        before,
        "exporting and serving read the run only"
    );
}
