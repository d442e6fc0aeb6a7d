//! Continual-learning scenarios (book: "Continual learning", issue 27): Task-IL's per-task
//! output heads (each changes only while its own task trains; `freeze-after-first` keeps
//! backward transfer exactly 0 with them), the refusals of Domain/Class-IL for strategies that
//! need the task id, and XdG's fixed random unit gates (never trained, the stated share off,
//! the same draw for the same seed). Small MNIST subsets (skipped visibly without MNIST) and a
//! synthetic set; the file runs in about ten seconds.

mod common;

use candle_core::{DType, Device};
use common::{shared_data, write_task_set};
use gatekit::TaskSet;
use gatekit::params::TaskId;
use gatekit::task::{Objective, Split};
use gatekit::train::{ContinualSummary, Learner, StepSettings, Strategy, Trainer, files};
use std::collections::HashMap;
use std::path::Path;

/// Split MNIST in three two-digit tasks on small subsets, MLP 784-32-10, Task-IL.
const SPLIT: &str = r#"
[run]
scenario = "SCENARIO"
schedule = "sequential"
phase_steps = 30
batch_size = 16
optimizer = "adam"
lr = 0.002
eval_every = 30
seed = 0
W_POLICY

[model]
name = "tiny"
input = [1, 28, 28]
[[model.layer]]
type = "flatten"
[[model.layer]]
type = "linear"
out = 32
[[model.layer]]
type = "relu"
[[model.layer]]
type = "linear"
out = OUTPUTS

[defaults]
kind = "split-mnist"
channels = 1
pad = 0
train_limit = 300
test_limit = 120

[[task]]
name = "d01"
classes = [0, 1]
[[task]]
name = "d23"
classes = [2, 3]
[[task]]
name = "d45"
classes = [CLASSES]
"#;

fn split_set(dir: &Path, scenario: &str, w_policy: &str, outputs: usize, last: &str) -> TaskSet {
    let body = SPLIT
        .replace("SCENARIO", scenario)
        .replace("W_POLICY", w_policy)
        .replace("OUTPUTS", &outputs.to_string())
        .replace("CLASSES", last);
    TaskSet::load(&write_task_set(dir, "split.toml", &body)).unwrap()
}

fn summaries(run: &Path) -> Vec<ContinualSummary> {
    let text = std::fs::read_to_string(run.join(files::CONTINUAL)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The output layer's weight of a learner (its last `*.weight` tensor that is a weight, not
/// optimizer state), as `[10][32]` rows.
fn output_rows(l: &Learner) -> Vec<Vec<f32>> {
    let (_, w) = (l.tensors().unwrap().into_iter())
        .rfind(|(k, _)| k.ends_with(".weight") && k.matches('/').count() == 1)
        .expect("an output weight");
    w.to_vec2::<f32>().unwrap()
}

/// Task-IL with one head per task: a head's rows of the output layer change in its own task's
/// phase and in no other (finetune, Adam: a zero gradient alone would still move them), the
/// matrix is Task-IL's (2-way decisions: far above Class-IL's chance), and the gated model
/// with `freeze-after-first` keeps backward transfer exactly 0.
#[test]
fn task_il_heads_change_only_with_their_task_and_freeze_after_first_forgets_nothing() {
    let Some(data) = shared_data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let set = split_set(
        tmp.path(),
        "task",
        r#"w_policy = "freeze-after-first""#,
        10,
        "4, 5",
    );
    let run = tmp.path().join("run");
    let strategies = [Strategy::Gated, Strategy::Finetune];
    let mut trainer = Trainer::create(set, &strategies, &run, Some(&data), &Device::Cpu).unwrap();
    let mut rows = vec![output_rows(&trainer.learners()[1])];
    for phase in 1..=3 {
        trainer.train(Some(30 * phase), &mut |_| {}).unwrap();
        rows.push(output_rows(&trainer.learners()[1]));
    }
    for phase in 1..=3 {
        for task in 0..3 {
            for unit in [2 * task, 2 * task + 1] {
                let changed = rows[phase][unit] != rows[phase - 1][unit];
                assert_eq!(
                    changed,
                    task + 1 == phase,
                    "unit {unit} (task {task}'s head) in phase {phase}"
                );
            }
        }
        // Units of no task (6–9) never change.
        for (unit, (now, first)) in rows[phase].iter().zip(&rows[0]).enumerate().skip(6) {
            assert_eq!(now, first, "unit {unit}");
        }
    }
    let all = summaries(&run);
    let gated = all.iter().find(|s| s.strategy == "gated").unwrap();
    assert_eq!(gated.scenario.as_deref(), Some("task"));
    assert_eq!(gated.backward_transfer, 0.0);
    assert_eq!(gated.forgetting, 0.0);
    let finetune = all.iter().find(|s| s.strategy == "finetune").unwrap();
    // Each head decides between its task's two digits: well above chance (0.5) on every task
    // even after later phases (a shared 10-way head would have forgotten d01 and d23).
    for (j, &v) in finetune.matrix[2].iter().enumerate() {
        assert!(v > 0.75, "finetune's final accuracy on task {j}: {v}");
    }
}

/// A Task-IL run's export answers with each task's head alone: every per-task ONNX file
/// outputs its task's two units, and the accuracy gatekit's interpreter measures on it equals
/// the export's own (soft and binarized); `all_tasks.onnx` picks the head by the task index.
#[test]
fn task_il_exports_answer_with_the_tasks_head() {
    use gatekit::export::{ExportOptions, check, export_run};
    let Some(data) = shared_data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let set = split_set(tmp.path(), "task", "", 10, "4, 5");
    let run = tmp.path().join("run");
    let mut trainer =
        Trainer::create(set, &[Strategy::Gated], &run, Some(&data), &Device::Cpu).unwrap();
    trainer.train(None, &mut |_| {}).unwrap();
    for binarize in [false, true] {
        let out = tmp.path().join(format!("export-{binarize}"));
        let summary = export_run(
            &trainer,
            &out,
            &ExportOptions {
                binarize,
                ..Default::default()
            },
        )
        .unwrap();
        for (k, task) in summary.tasks.iter().enumerate() {
            let path = out.join(format!("{}.onnx", task.task));
            let model = check::read_model(&path).unwrap();
            let output = &model.graph.as_ref().unwrap().output[0];
            let text = format!("{output:?}");
            assert!(text.contains("DimValue(2)"), "{} output: {text}", task.task);
            let want = if binarize { task.binary } else { task.soft };
            let got =
                check::evaluate_onnx(&path, None, Some(&data), check::Runtime::Reference).unwrap();
            assert_eq!(got.examples, 120);
            // The interpreter's float order differs from the engine's: one near-tie of 120
            // may fall the other way, no more.
            assert!(
                (got.metric - want).abs() <= 1.0 / 120.0 + 1e-9,
                "{} ({binarize}): onnx {} vs gatekit {want}",
                task.task,
                got.metric
            );
            // Far above a 10-way guess: the labels are read within the head.
            assert!(got.metric > 0.8, "{}: {}", task.task, got.metric);
            let all = check::evaluate_onnx(
                &out.join("all_tasks.onnx"),
                Some(&task.task),
                Some(&data),
                check::Runtime::Reference,
            )
            .unwrap();
            assert!(
                (all.metric - want).abs() <= 1.0 / 120.0 + 1e-9,
                "all_tasks, task {k}: {} vs {want}",
                all.metric
            );
        }
        if binarize {
            served_tasks_answer_with_their_heads(&out, &run, &data);
        }
    }
}

/// `gtk serve`'s store, from the binarized export and from the run folder itself: each task
/// answers with its head's two units, the numbers of its exported ONNX model (which ends in
/// a Gather over those units).
fn served_tasks_answer_with_their_heads(export: &Path, run: &Path, data: &Path) {
    use gatekit::export::check::{OnnxSession, Runtime};
    use gatekit::serve::{ExportFolder, ModelStore};
    let from_export = ExportFolder::read(export).unwrap();
    let from_run = ExportFolder::open(
        run,
        Some(data),
        gatekit::train::ChangedData::Refuse,
        Default::default(),
    )
    .unwrap();
    let mut rng = gatekit::rng::Rng::new(4);
    let x: Vec<f32> = (0..5 * 784).map(|_| rng.uniform() as f32).collect();
    let x = candle_core::Tensor::from_vec(x, (5, 1, 28, 28), &Device::Cpu).unwrap();
    for folder in [from_export, from_run] {
        let store = ModelStore::new(folder, 1 << 20);
        assert_eq!(store.outputs(), 10);
        for (t, name) in store.names().iter().enumerate() {
            let task = store.task(name).unwrap();
            let want_units = vec![2 * t, 2 * t + 1];
            assert_eq!(task.head.as_ref(), Some(&want_units), "task {name}");
            assert_eq!(store.task_outputs(&task), 2);
            let ours = common::flat(&store.forward(&task, &x).unwrap());
            let mut onnx =
                OnnxSession::open(&export.join(format!("{name}.onnx")), Runtime::Reference)
                    .unwrap();
            let theirs = common::flat(&onnx.run(&x, None).unwrap());
            assert_eq!(ours.len(), 10, "5 examples × 2 units");
            let d = common::max_diff(&ours, &theirs);
            assert!(d <= 1e-5, "task {name}: served vs ONNX max |diff| {d}");
        }
    }
}

/// Tasks that share classes on a model of one unit per class cannot have a head each; with
/// tasks × classes outputs each task gets a block of its own. Domain-IL refuses the gated
/// model and XdG (they need the task id).
#[test]
fn heads_need_units_of_their_own_and_domain_il_refuses_task_id_strategies() {
    let Some(data) = shared_data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let shared = split_set(tmp.path(), "task", "", 10, "0, 1");
    let err = Trainer::create(
        shared,
        &[Strategy::Finetune],
        &tmp.path().join("a"),
        Some(&data),
        &Device::Cpu,
    )
    .err()
    .expect("overlapping classes refused")
    .to_string();
    assert!(
        err.contains("share class 0") && err.contains("30 outputs"),
        "{err}"
    );

    // 3 tasks × 10 classes: task t answers on units 10t..10t+10.
    let blocks = split_set(tmp.path(), "task", "", 30, "0, 1");
    let tasks = blocks.build_tasks(Some(&data)).unwrap();
    let heads = gatekit::learn::heads_for(blocks.run.continual.scenario, &tasks, 30)
        .unwrap()
        .unwrap();
    assert_eq!(heads[2].offset, 20);
    let on: Vec<usize> = (0..30).filter(|&u| heads[2].active[u]).collect();
    assert_eq!(on, vec![20, 21]);

    for strategy in [Strategy::Gated, Strategy::Xdg] {
        let domain = split_set(tmp.path(), "domain", "", 10, "4, 5");
        let err = Trainer::create(
            domain,
            &[strategy],
            &tmp.path().join(format!("d-{strategy}")),
            Some(&data),
            &Device::Cpu,
        )
        .err()
        .expect("refused")
        .to_string();
        assert!(
            err.contains(&format!("`{strategy}`")) && err.contains("scenario = \"domain\""),
            "{err}"
        );
    }
}

/// Four sinusoid tasks on the 8-40-40-1 MLP: enough to train XdG on without MNIST.
const SINUSOID: &str = r#"
[run]
model = "MODELS/mlp.toml"
schedule = "sequential"
phase_steps = 10
batch_size = 16
optimizer = "adam"
lr = 0.003
SEED
XDG

[defaults]
kind = "sinusoid"
inputs = 8
train = 64
test = 32

[[task]]
name = "t0"
[[task]]
name = "t1"
"#;

/// An XdG learner of the sinusoid set trained for `steps` on each task, and its masks by
/// tensor name.
fn xdg_masks(dir: &Path, seed: u64, run_keys: &str, steps: usize) -> HashMap<String, Vec<f32>> {
    let body = SINUSOID
        .replace("SEED", &format!("seed = {seed}"))
        .replace("XDG", run_keys);
    let set = TaskSet::load(&write_task_set(dir, &format!("x{seed}.toml"), &body)).unwrap();
    let tasks = set.build_tasks(None).unwrap();
    let names = set.task_names();
    let mut l = Learner::new(Strategy::Xdg, &set.run, &set.model, &names, &Device::Cpu).unwrap();
    let at = StepSettings {
        gate_scale: 1.0,
        w_lr_factor: 1.0,
        mask_lr_factor: 1.0,
    };
    let idx: Vec<usize> = (0..16).collect();
    for (t, task) in tasks.iter().enumerate() {
        let batch = task
            .batch(Split::Train, &idx, &Device::Cpu, DType::F32)
            .unwrap();
        for _ in 0..steps {
            l.train_step(TaskId(t), &batch, Objective::Regression, at)
                .unwrap();
        }
    }
    (l.tensors().unwrap().into_iter())
        .filter(|(k, _)| k.contains(".mask.") && !k.contains("optim"))
        .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

/// XdG: the gates are ±1 per hidden unit (whole rows), exactly ⌊share · units⌋ of each hidden
/// layer off and the output layer all on, the same after 1 and after 20 steps of training
/// with the mask rate on (never trained), the same for the same seed, different per task and
/// per seed.
#[test]
fn xdg_gates_are_fixed_the_stated_share_off_and_seeded() {
    let tmp = tempfile::tempdir().unwrap();
    let early = xdg_masks(tmp.path(), 3, "", 1);
    let late = xdg_masks(tmp.path(), 3, "", 20);
    assert_eq!(early, late, "XdG's gates changed with training");
    assert_eq!(early.len(), 2 * 6, "two tasks × six parameters");
    for task in ["t0", "t1"] {
        for layer in ["fc1", "fc2"] {
            let bias = &early[&format!("xdg/{layer}.bias.mask.{task}")];
            let weight = &early[&format!("xdg/{layer}.weight.mask.{task}")];
            let off = bias.iter().filter(|&&v| v < 0.0).count();
            assert_eq!(off, 32, "⌊0.8 · 40⌋ units off in layer {layer} of {task}");
            let row = weight.len() / bias.len();
            for (u, &b) in bias.iter().enumerate() {
                assert!(weight[u * row..(u + 1) * row].iter().all(|&w| w == b));
            }
        }
        let out = &early[&format!("xdg/fc3.weight.mask.{task}")];
        assert!(
            out.iter().all(|&v| v == 1.0),
            "the output layer is never gated"
        );
    }
    assert_ne!(early["xdg/fc1.bias.mask.t0"], early["xdg/fc1.bias.mask.t1"]);
    let other = xdg_masks(tmp.path(), 4, "", 1);
    assert_ne!(early["xdg/fc1.bias.mask.t0"], other["xdg/fc1.bias.mask.t0"]);
    let half = xdg_masks(tmp.path(), 3, "xdg_share_off = 0.5", 1);
    let off = half["xdg/fc2.bias.mask.t1"]
        .iter()
        .filter(|&&v| v < 0.0)
        .count();
    assert_eq!(off, 20);
}

/// `xdg_gate_bias = false` (van de Ven & Tolias's XdG, `x·Wᵀ ⊙ gate + b`): the same units are
/// off, through their weight rows only; every bias entry stays on.
#[test]
fn xdg_can_keep_the_bias_of_off_units() {
    let tmp = tempfile::tempdir().unwrap();
    let gated = xdg_masks(tmp.path(), 3, "", 1);
    let kept = xdg_masks(tmp.path(), 3, "xdg_gate_bias = false", 1);
    for task in ["t0", "t1"] {
        for layer in ["fc1", "fc2"] {
            let weight = format!("xdg/{layer}.weight.mask.{task}");
            assert_eq!(
                gated[&weight], kept[&weight],
                "{weight}: the same units off"
            );
            let bias = &kept[&format!("xdg/{layer}.bias.mask.{task}")];
            assert!(
                bias.iter().all(|&v| v == 1.0),
                "{layer} of {task}: bias kept"
            );
            let rows_off = kept[&weight].iter().filter(|&&v| v < 0.0).count();
            assert_eq!(rows_off, 32 * kept[&weight].len() / 40, "{weight}");
        }
    }
}
