//! Continual learning (book: "Continual learning"): the sequential schedule, `w_policy`, the
//! baselines finetune and joint, the accuracy matrix and its measures, and the one-line errors
//! for inconsistent settings. Small synthetic task sets, so the file runs in seconds.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{assert_clean_error, gtk, text, write_task_set};
use gatekit::TaskSet;
use gatekit::gate::GateView;
use gatekit::params::TaskId;
use gatekit::task::Split;
use gatekit::train::{ContinualSummary, Strategy, Trainer, files};
use std::path::Path;

/// Four sinusoid tasks that differ by their masks, one 200-step phase each.
const SEQUENTIAL: &str = r#"
[run]
model = "MODELS/mlp.toml"
schedule = "sequential"
phase_steps = 200
batch_size = 32
optimizer = "adam"
lr = 0.003
eval_every = 100
seed = 0
W_POLICY

[defaults]
kind = "sinusoid"
inputs = 8
train = 256
test = 256
noise = 0.1
x_range = [-1.0, 1.0]

[[task]]
name = "t0"
[[task]]
name = "t1"
[[task]]
name = "t2"
[[task]]
name = "t3"
"#;

fn task_set(dir: &Path, w_policy: &str) -> TaskSet {
    let body = SEQUENTIAL.replace("W_POLICY", w_policy);
    TaskSet::load(&write_task_set(dir, "seq.toml", &body)).unwrap()
}

fn summaries(run: &Path) -> Vec<ContinualSummary> {
    let text = std::fs::read_to_string(run.join(files::CONTINUAL)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The first 64 test inputs of every task, and the gated model's outputs on them.
fn gated_outputs(trainer: &Trainer) -> Vec<Vec<f32>> {
    let set = trainer.task_set();
    let tasks = set.build_tasks(None).unwrap();
    let gated = &trainer.learners()[0];
    assert_eq!(gated.strategy(), Strategy::Gated);
    (0..tasks.len())
        .map(|t| {
            let idx: Vec<usize> = (0..64).collect();
            let batch = tasks[t]
                .batch(Split::Test, &idx, &Device::Cpu, DType::F32)
                .unwrap();
            let y: Tensor = gated
                .predict(TaskId(t), &batch.x, 1.0, GateView::Trained)
                .unwrap();
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        })
        .collect()
}

/// Piggyback-style `freeze-after-first`: after phase 1 nothing a finished task depends on
/// changes, so its predictions are bit-identical after every later phase, and its backward
/// transfer is exactly 0.
#[test]
fn freeze_after_first_keeps_earlier_tasks_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let set = task_set(tmp.path(), r#"w_policy = "freeze-after-first""#);
    let run = tmp.path().join("run");
    let mut trainer = Trainer::create(set, &[Strategy::Gated], &run, None, &Device::Cpu).unwrap();
    let mut after: Vec<Vec<Vec<f32>>> = Vec::new();
    for phase in 1..=4 {
        trainer.train(Some(200 * phase), &mut |_| {}).unwrap();
        after.push(gated_outputs(&trainer));
    }
    for (p, outputs) in after.iter().enumerate() {
        for (earlier, finished) in after[..p].iter().enumerate() {
            for t in 0..=earlier {
                assert_eq!(
                    outputs[t],
                    finished[t],
                    "task {t} changed between phase {} and phase {}",
                    earlier + 1,
                    p + 1
                );
            }
        }
    }
    // And the task of the current phase did learn (it is not frozen too).
    assert_ne!(after[3][3], after[2][3]);
    let s = &summaries(&run)[0];
    assert_eq!(s.strategy, "gated");
    assert_eq!(s.backward_transfer, 0.0);
    assert_eq!(s.forgetting, 0.0);
    for j in 0..4 {
        for i in j..4 {
            assert_eq!(s.matrix[i][j], s.matrix[j][j], "R[{i}][{j}]");
        }
    }
}

/// All four strategies side by side: the matrix is complete, separate never forgets, finetune
/// forgets badly, gated with W training forgets less than finetune, and the figures agree with
/// the committed `phase` records.
#[test]
fn sequential_run_measures_forgetting_of_every_strategy() {
    let tmp = tempfile::tempdir().unwrap();
    let set = task_set(tmp.path(), "");
    let run = tmp.path().join("run");
    let all = Strategy::all_for(set.run.schedule.order);
    assert_eq!(
        all,
        [
            Strategy::Gated,
            Strategy::Finetune,
            Strategy::Separate,
            Strategy::Joint
        ]
    );
    let mut trainer = Trainer::create(set, &all, &run, None, &Device::Cpu).unwrap();
    trainer.train(None, &mut |_| {}).unwrap();
    let s = summaries(&run);
    let names: Vec<&str> = s.iter().map(|s| s.strategy.as_str()).collect();
    assert_eq!(names, ["gated", "finetune", "separate", "joint"]);
    let by = |n: &str| s.iter().find(|s| s.strategy == n).unwrap();
    for summary in &s {
        assert_eq!(summary.matrix.len(), 4);
        assert!(summary.matrix.iter().all(|r| r.len() == 4));
        assert_eq!(summary.metric_name, "mse");
    }
    // Separate models: a finished task's model is never touched again.
    assert_eq!(by("separate").forgetting, 0.0);
    assert_eq!(by("separate").backward_transfer, 0.0);
    let (gated, finetune) = (by("gated"), by("finetune"));
    // Finetune loses most of what it learned: its final MSE on earlier tasks is several times
    // the MSE right after their phase.
    assert!(finetune.forgetting > 0.3, "{finetune:?}");
    assert!(
        gated.forgetting < 0.6 * finetune.forgetting,
        "gated {} finetune {}",
        gated.forgetting,
        finetune.forgetting
    );
    assert!(gated.average < finetune.average, "{gated:?} {finetune:?}");
    // Joint sees every task throughout: its final MSE is far from finetune's on old tasks.
    assert!(by("joint").forgetting < finetune.forgetting);
    // The same figures from the library, read from the committed log.
    assert_eq!(trainer.continual_summaries().unwrap(), s);
}

/// A run stopped mid-phase and resumed gives the same matrix as one that ran through (the
/// phase position and the joint strategy's own sampler are committed).
#[test]
fn resumed_sequential_run_matches_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let set = task_set(tmp.path(), "");
    let strategies = [Strategy::Gated, Strategy::Finetune, Strategy::Joint];
    let whole = tmp.path().join("whole");
    Trainer::create(set.clone(), &strategies, &whole, None, &Device::Cpu)
        .unwrap()
        .train(None, &mut |_| {})
        .unwrap();
    let parts = tmp.path().join("parts");
    let mut first = Trainer::create(set, &strategies, &parts, None, &Device::Cpu).unwrap();
    first.train(Some(350), &mut |_| {}).unwrap();
    drop(first);
    let mut resumed = Trainer::resume(&parts, None, &Device::Cpu, Default::default()).unwrap();
    resumed.train(None, &mut |_| {}).unwrap();
    assert_eq!(summaries(&whole), summaries(&parts));
}

/// `frozen` never changes W: the gated model's shared weights end as they started
/// (signed-constant init: every weight ±√(2/fan_in)), and only masks learn.
#[test]
fn frozen_w_is_never_trained_and_signed_constant_has_two_values_per_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let set = task_set(
        tmp.path(),
        "w_policy = \"frozen\"\nw_init = \"signed-constant\"",
    );
    let run = tmp.path().join("run");
    let mut trainer = Trainer::create(set, &[Strategy::Gated], &run, None, &Device::Cpu).unwrap();
    let before: Vec<Vec<f32>> = trainer.learners()[0]
        .network(TaskId(0))
        .unwrap()
        .params()
        .iter()
        .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    trainer.train(None, &mut |_| {}).unwrap();
    let net = trainer.learners()[0].network(TaskId(0)).unwrap();
    for ((name, v), b) in net.params().iter().zip(&before) {
        let after: Vec<f32> = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(&after, b, "{name} changed");
        if name.ends_with(".weight") {
            let c = after[0].abs();
            assert!(after.iter().all(|w| w.abs() == c), "{name}: not ±c");
            assert!(after.iter().any(|w| *w > 0.0) && after.iter().any(|w| *w < 0.0));
        } else {
            assert!(after.iter().all(|w| *w == 0.0), "{name}: bias not 0");
        }
    }
    // Masks alone still fit the tasks far better than chance: each task's MSE right after its
    // phase is below what it was before it (row above).
    let s = &summaries(&run)[0];
    for j in 1..4 {
        assert!(
            s.matrix[j][j] < s.matrix[j - 1][j],
            "task {j}: {} before its phase, {} after",
            s.matrix[j - 1][j],
            s.matrix[j][j]
        );
    }
}

/// Every inconsistent combination is one line naming the keys.
#[test]
fn inconsistent_settings_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            r#"phase_steps = 200"#,
            "",
            &["run.phase_steps", "sequential"],
        ),
        (
            r#"w_policy = "freeze-after-first""#,
            "",
            &["run.w_policy", "freeze-after-first", "sequential"],
        ),
        (
            r#"schedule = "sequential"
steps = 1001"#,
            "",
            &["run.steps", "1001", "phase_steps"],
        ),
        (
            r#"schedule = "sequential"
phase_steps = 100
steps = 1000"#,
            "",
            &["run.steps", "1000", "phase_steps = 100", "400"],
        ),
        (
            r#"schedule = "sequential"
phase_steps = 100"#,
            "shared",
            &["`shared`", "sequential", "finetune"],
        ),
        (r#"steps = 100"#, "finetune", &["`finetune`", "interleaved"]),
        (r#"steps = 100"#, "joint", &["`joint`", "interleaved"]),
        (
            r#"w_policy = "frozen"
steps = 100"#,
            "shared",
            &["run.w_policy", "frozen", "gated"],
        ),
        // Unknown spellings: the TOML error points at the line of the key.
        (
            r#"schedule = "sideways""#,
            "",
            &[".toml:3:", "sideways", "interleaved", "sequential"],
        ),
        (
            r#"w_policy = "sometimes""#,
            "",
            &[".toml:3:", "sometimes", "freeze-after-first"],
        ),
    ];
    for (i, (run_keys, strategy, needles)) in cases.iter().enumerate() {
        let body = format!(
            "[run]\nmodel = \"MODELS/mlp.toml\"\n{run_keys}\n\n[defaults]\nkind = \"sinusoid\"\ninputs = 8\n\n[[task]]\nname = \"a\"\n[[task]]\nname = \"b\"\n[[task]]\nname = \"c\"\n[[task]]\nname = \"d\"\n"
        );
        let file = write_task_set(tmp.path(), &format!("bad{i}.toml"), &body);
        let file = file.to_str().unwrap();
        let mut args = vec!["train", "--task-set", file, "--name", "r", "-q"];
        if !strategy.is_empty() {
            args.extend(["--strategy", strategy]);
        }
        let out = gtk(tmp.path(), &args);
        assert_clean_error(&out, needles);
        assert!(
            !tmp.path().join("runs/r").exists(),
            "case {i}: {:?}",
            text(&out)
        );
    }
    // --steps on a sequential set must split into equal phases.
    let body = SEQUENTIAL.replace("W_POLICY", "");
    let file = write_task_set(tmp.path(), "ok.toml", &body);
    let out = gtk(
        tmp.path(),
        &[
            "train",
            "--task-set",
            file.to_str().unwrap(),
            "--steps",
            "401",
            "-q",
        ],
    );
    assert_clean_error(&out, &["--steps", "401", "4 equal phases"]);
}

/// `gtk train --strategy all` on a sequential set trains gated and the three baselines and
/// prints each matrix and the table of average, backward transfer and forgetting.
#[test]
fn cli_prints_the_matrices_and_the_table() {
    let tmp = tempfile::tempdir().unwrap();
    let body = SEQUENTIAL
        .replace("W_POLICY", "")
        .replace("phase_steps = 200", "phase_steps = 50");
    let file = write_task_set(tmp.path(), "seq.toml", &body);
    let out = gtk(
        tmp.path(),
        &[
            "train",
            "--task-set",
            file.to_str().unwrap(),
            "--name",
            "r",
            "--strategy",
            "all",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for s in ["gated", "finetune", "separate"] {
        assert!(
            stdout.contains(&format!("{s} mse after each phase")),
            "{stdout}"
        );
    }
    // joint trains on every task throughout: its rows are steps, and it has no BWT or F.
    assert!(
        stdout.contains("joint mse at the end of each phase (trained on every task throughout")
            && stdout.contains(" step 150 "),
        "{stdout}"
    );
    assert!(stdout.contains(" after t1 "), "{stdout}");
    let table = stdout
        .lines()
        .skip_while(|l| !l.starts_with("strategy"))
        .take(6)
        .collect::<Vec<_>>();
    assert_eq!(table.len(), 6, "{stdout}");
    assert!(
        table[0].contains("backward transfer")
            && table[0].contains("forgetting")
            && table[0].contains("forward transfer"),
        "{table:?}"
    );
    // One seed: three significant digits; separate never forgets.
    let cells = |row: &str| row.split_whitespace().map(String::from).collect::<Vec<_>>();
    let separate = cells(table[3]);
    assert_eq!(separate[0], "separate", "{table:?}");
    assert_eq!(&separate[2..4], ["+0.00", "0.00"], "{table:?}");
    let gated = cells(table[1]);
    for v in &gated[1..] {
        let digits = v.trim_start_matches(['+', '-', '0', '.']).replace('.', "");
        assert_eq!(digits.len(), 3, "{v} in {table:?}");
    }
    // joint is not sequential: its average only, no BWT, forgetting or FWT.
    let joint = cells(table[4]);
    assert_eq!(joint[0], "joint", "{table:?}");
    assert_eq!(&joint[2..], ["-", "-", "-"], "{table:?}");
    assert!(
        table[5].contains("divide by T − 1") && table[5].contains("GEM's b_j"),
        "{table:?}"
    );
    // FWT against the metric at initialisation: phase 0 is in the log and continual.json.
    let summaries = summaries(&tmp.path().join("runs/r"));
    for s in &summaries {
        let b = s.initial.as_ref().expect("metric at initialisation");
        assert_eq!(b.len(), 4);
        let fwt = (1..4).map(|j| -(s.matrix[j - 1][j] - b[j])).sum::<f64>() / 3.0;
        match s.strategy.as_str() {
            "joint" => assert_eq!(s.forward_transfer, None),
            _ => assert!((s.forward_transfer.unwrap() - fwt).abs() < 1e-12, "{s:?}"),
        }
    }
    assert!(tmp.path().join("runs/r").join(files::CONTINUAL).is_file());
    // gtk adapt on a sequential run: the new task comes after the run's phases, and the
    // adapted run still shows the run's own matrices.
    std::fs::write(
        tmp.path().join("new.toml"),
        "[adapt]\nmethod = \"mask\"\nshots = 16\nbaselines = false\n\n[defaults]\nkind = \"sinusoid\"\ninputs = 8\ntrain = 256\ntest = 256\n\n[[task]]\nname = \"n0\"\n",
    )
    .unwrap();
    let out = gtk(
        tmp.path(),
        &["adapt", "runs/r", "--task-set", "new.toml", "--out", "ad"],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let out = gtk(tmp.path(), &["eval", "ad"]);
    let (eval, _) = text(&out);
    assert!(out.status.success(), "{eval}");
    assert!(eval.contains("finetune mse after each phase"), "{eval}");
    // gtk report draws the four matrices as one heatmap figure.
    let out = gtk(tmp.path(), &["report", "runs/r", "--out", "rep"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let png = std::fs::read(tmp.path().join("rep/continual-matrix.png")).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{}",
        png.len()
    );
    let svg = std::fs::read_to_string(tmp.path().join("rep/continual-matrix.svg")).unwrap();
    for s in ["gated: avg", "finetune: avg", "separate: avg", "joint: avg"] {
        assert!(svg.contains(s), "{s} missing from the SVG");
    }
    // The per-task curves mark the three phase boundaries (steps 50, 100, 150) in grey, in
    // the mean panel and each task's panel.
    let curves = std::fs::read_to_string(tmp.path().join("rep/fig1_test_metric.svg")).unwrap();
    assert_eq!(curves.matches("#969696").count(), 3 * 5);
}
