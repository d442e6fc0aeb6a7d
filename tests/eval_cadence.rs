//! The two tiers of evaluation (issue 15): a probe every `eval_every` steps on a fixed test
//! subset plus the training batches, the full evaluation every `full_eval_every` steps and at
//! the end. Checked: the cadence of every record kind, one probe subset for every strategy,
//! run and resume, probes that measure what the full evaluation measures, and final full
//! metrics that do not depend on the cadence.

mod common;
use common::*;
use gatekit::TaskSet;
use gatekit::train::{Record, probe_subset};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Two linear tasks, 30 steps of batch 4: probes every 5 steps on 20 of 50 test examples.
const SMALL: &str = r#"
[run]
model = "MODELS/linear.toml"
steps = 30
batch_size = 4
eval_every = 5
eval_subset = 20
eval_train_limit = 20
[defaults]
kind = "linear"
inputs = 8
outputs = 4
train = 20
test = 50
[[task]]
name = "a"
[[task]]
name = "b"
"#;

fn records(run: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `(step, strategy, task, split)` of every record of a kind.
fn keys(records: &[Record], kind: &str) -> BTreeSet<(usize, String, String, String)> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Probe {
                step,
                strategy,
                task,
                split,
                ..
            } if kind == "probe" => Some((*step, strategy.clone(), task.clone(), split.clone())),
            Record::Eval {
                step,
                strategy,
                task,
                split,
                ..
            } if kind == "eval" => Some((*step, strategy.clone(), task.clone(), split.clone())),
            _ => None,
        })
        .collect()
}

fn probe_sets(records: &[Record]) -> BTreeMap<String, (usize, usize, Vec<usize>)> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::ProbeSet {
                step,
                task,
                of,
                indices,
                ..
            } => Some((task.clone(), (*step, *of, indices.clone()))),
            _ => None,
        })
        .collect()
}

#[test]
fn probes_every_eval_every_full_evaluation_at_the_end_only() {
    let tmp = tempfile::tempdir().unwrap();
    let set = write_task_set(tmp.path(), "set.toml", SMALL);
    train_quiet(tmp.path(), &set, "r", &["--strategy", "all"]);
    let run = tmp.path().join("runs/r");
    let recs = records(&run);

    // The probe set: logged once, before the first probe, 20 fixed positions of 50.
    let sets = probe_sets(&recs);
    assert_eq!(sets.len(), 2, "{sets:?}");
    for (task, (step, of, indices)) in &sets {
        assert_eq!((*step, *of), (0, 50), "{task}");
        assert_eq!(indices, &probe_subset(50, 20), "{task}");
    }
    assert!(matches!(recs[0], Record::ProbeSet { .. }), "{:?}", recs[0]);

    // Test-split probes at 0, 5, ..., 30 for every strategy and task, on 20 examples.
    let strategies = ["gated", "shared", "separate"];
    let probes = keys(&recs, "probe");
    for step in (0..=30).step_by(5) {
        for s in strategies {
            for t in ["a", "b"] {
                assert!(
                    probes.contains(&(step, s.into(), t.into(), "test".into())),
                    "no test probe of {s} on {t} at step {step}"
                );
            }
        }
    }
    let probe_steps: BTreeSet<usize> = probes.iter().map(|k| k.0).collect();
    assert_eq!(probe_steps, (0..=30).step_by(5).collect());
    for r in &recs {
        if let Record::Probe {
            split, examples, ..
        } = r
            && split == "test"
        {
            assert_eq!(*examples, 20);
        }
    }

    // Train-split probes from the batches: none at step 0; per strategy and probe, the tasks'
    // examples add up to the 5 batches of 4 trained since the previous probe.
    let mut per_window: BTreeMap<(usize, String), usize> = BTreeMap::new();
    for r in &recs {
        if let Record::Probe {
            step,
            strategy,
            split,
            examples,
            metric,
            ..
        } = r
            && split == "train"
        {
            assert!(*step > 0, "a train-split probe before any batch");
            assert!(metric.is_finite() && *metric >= 0.0);
            *per_window.entry((*step, strategy.clone())).or_default() += examples;
        }
    }
    assert_eq!(per_window.len(), 6 * 3, "{per_window:?}");
    assert!(per_window.values().all(|&n| n == 20), "{per_window:?}");

    // The full evaluation: only at the end (no step-0 full evaluation by default), with the
    // binarized model.
    let evals: BTreeSet<usize> = keys(&recs, "eval").iter().map(|k| k.0).collect();
    assert_eq!(evals, BTreeSet::from([30]));
    let binarized: Vec<usize> = recs
        .iter()
        .filter(|r| matches!(r, Record::Binarized { .. }))
        .map(Record::step)
        .collect();
    assert_eq!(binarized, vec![30, 30]);
    let histograms: BTreeSet<usize> = recs
        .iter()
        .filter(|r| matches!(r, Record::Histogram { .. }))
        .map(Record::step)
        .collect();
    // Weight histograms also at the probes every quarter of the run (rounded up to a probe
    // step: 10, 20), so Figure 2 shows the weights over training; the step-30 snapshot is the
    // full evaluation's (not two of them).
    assert_eq!(histograms, BTreeSet::from([10, 20, 30]));
    assert_eq!(gatekit::train::histogram_every(30, 5), 10);
    let at_30 = recs
        .iter()
        .filter(|r| matches!(r, Record::Histogram { step: 30, .. }))
        .count();
    let at_10 = recs
        .iter()
        .filter(|r| matches!(r, Record::Histogram { step: 10, .. }))
        .count();
    assert!(at_10 > 0 && at_10 == at_30, "{at_10} {at_30}");

    // timing.json counts them.
    let timing: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("timing.json")).unwrap()).unwrap();
    assert_eq!(timing["probes"], 7);
    assert_eq!(timing["full_evals"], 1);
}

#[test]
fn full_eval_every_and_full_eval_at_start_add_full_evaluations() {
    let tmp = tempfile::tempdir().unwrap();
    let body = SMALL.replace(
        "eval_subset = 20\n",
        "eval_subset = 20\nfull_eval_every = 10\nfull_eval_at_start = true\neval_at_start = false\n",
    );
    let set = write_task_set(tmp.path(), "set.toml", &body);
    train_quiet(tmp.path(), &set, "r", &["--strategy", "gated"]);
    let recs = records(&tmp.path().join("runs/r"));
    let evals: BTreeSet<usize> = keys(&recs, "eval").iter().map(|k| k.0).collect();
    assert_eq!(evals, BTreeSet::from([0, 10, 20, 30]));
    let probes: BTreeSet<usize> = keys(&recs, "probe").iter().map(|k| k.0).collect();
    assert_eq!(
        probes,
        BTreeSet::from([5, 10, 15, 20, 25, 30]),
        "no step-0 probe"
    );
}

/// With the whole test split as the probe set, a probe measures exactly what the full
/// evaluation measures at the same step.
#[test]
fn a_whole_split_probe_equals_the_full_evaluation() {
    let tmp = tempfile::tempdir().unwrap();
    let body = SMALL.replace("eval_subset = 20", "eval_subset = 0");
    let set = write_task_set(tmp.path(), "set.toml", &body);
    train_quiet(tmp.path(), &set, "r", &["--strategy", "all"]);
    let recs = records(&tmp.path().join("runs/r"));
    let mut compared = 0;
    for r in &recs {
        let Record::Eval {
            step,
            strategy,
            task,
            split,
            loss,
            metric,
            ..
        } = r
        else {
            continue;
        };
        if split != "test" {
            continue;
        }
        let probe = recs
            .iter()
            .find_map(|p| match p {
                Record::Probe {
                    step: s,
                    strategy: st,
                    task: t,
                    split: sp,
                    loss,
                    metric,
                    examples,
                    ..
                } if s == step && st == strategy && t == task && sp == "test" => {
                    Some((*loss, *metric, *examples))
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no probe of {strategy} on {task} at {step}"));
        assert_eq!(probe, (*loss, *metric, 50), "{strategy} {task}");
        compared += 1;
    }
    assert_eq!(compared, 3 * 2);
}

#[test]
fn the_probe_set_is_the_same_for_every_strategy_and_after_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let set = write_task_set(tmp.path(), "set.toml", SMALL);
    train_quiet(tmp.path(), &set, "gated", &["--strategy", "gated"]);
    train_quiet(
        tmp.path(),
        &set,
        "shared",
        &["--strategy", "shared", "--seed", "7"],
    );
    train_quiet(tmp.path(), &set, "all", &["--strategy", "all"]);
    train_quiet(
        tmp.path(),
        &set,
        "part",
        &["--strategy", "all", "--stop-at", "12"],
    );
    let out = gtk(tmp.path(), &["train", "--resume", "runs/part", "--quiet"]);
    assert!(out.status.success(), "{:?}", text(&out));

    let runs = ["gated", "shared", "all", "part"];
    let sets: Vec<_> = runs
        .iter()
        .map(|r| probe_sets(&records(&tmp.path().join("runs").join(r))))
        .collect();
    for (name, s) in runs.iter().zip(&sets) {
        assert_eq!(s, &sets[0], "run {name} probes other examples");
    }
    // Logged once in the resumed run, and its probes equal the uninterrupted run's.
    let part = records(&tmp.path().join("runs/part"));
    let all = records(&tmp.path().join("runs/all"));
    assert_eq!(
        part.iter()
            .filter(|r| matches!(r, Record::ProbeSet { .. }))
            .count(),
        2
    );
    let probes = |recs: &[Record]| -> Vec<Record> {
        recs.iter()
            .filter(|r| matches!(r, Record::Probe { .. }))
            .cloned()
            .collect()
    };
    assert_eq!(probes(&part), probes(&all));
}

/// Final full metrics do not depend on the cadence: a run at the new defaults (probes every
/// 10 steps, full evaluation at the end only) ends with the same full-evaluation records and
/// the same weights as a run with the old settings (full evaluation at step 0 and every
/// `eval_every` steps, no probe subset), same seed. On colored MNIST with LeNet-5, so the
/// engine's batched evaluation forward is what is compared.
#[test]
fn final_full_metrics_equal_a_run_with_the_old_cadence() {
    let Some(data) = shared_data() else {
        return;
    };
    let body = r#"
[run]
model = "MODELS/lenet5.toml"
steps = 40
batch_size = 16
optimizer = "momentum"
lr = 0.01
eval_train_limit = 300
[defaults]
kind = "mnist"
train_limit = 2000
test_limit = 700
[[task]]
name = "black"
background = [0.0, 0.0, 0.0]
[[task]]
name = "red"
background = [1.0, 0.0, 0.0]
"#;
    let tmp = tempfile::tempdir().unwrap();
    let new = write_task_set(tmp.path(), "new.toml", body);
    let old = write_task_set(
        tmp.path(),
        "old.toml",
        &body.replace(
            "eval_train_limit = 300\n",
            "eval_train_limit = 300\neval_every = 20\nfull_eval_every = 20\nfull_eval_at_start = true\neval_subset = 0\n",
        ),
    );
    let data = data.to_str().unwrap();
    for (set, name) in [(&new, "new"), (&old, "old")] {
        train_quiet(
            tmp.path(),
            set,
            name,
            &["--strategy", "all", "--data-dir", data],
        );
    }
    // The defaults of an image set: probes every 10 steps.
    let parsed = TaskSet::load(&new).unwrap();
    assert_eq!(parsed.run.evaluation.eval_every, 10);
    let new_recs = records(&tmp.path().join("runs/new"));
    let old_recs = records(&tmp.path().join("runs/old"));
    let probe_steps: BTreeSet<usize> = keys(&new_recs, "probe").iter().map(|k| k.0).collect();
    assert_eq!(probe_steps, (0..=40).step_by(10).collect());
    let full_at = |recs: &[Record], step: usize| -> Vec<Record> {
        recs.iter()
            .filter(|r| {
                r.step() == step
                    && matches!(
                        r,
                        Record::Eval { .. }
                            | Record::Binarized { .. }
                            | Record::Mask { .. }
                            | Record::Histogram { .. }
                    )
            })
            .cloned()
            .collect()
    };
    let (a, b) = (full_at(&new_recs, 40), full_at(&old_recs, 40));
    assert!(a.len() > 20, "{} full records", a.len());
    assert_eq!(a, b, "final full evaluation differs with the cadence");
    assert!(
        a.iter()
            .any(|r| matches!(r, Record::Binarized { metric, .. } if *metric > 0.2)),
        "{a:?}"
    );
    let old_full: BTreeSet<usize> = keys(&old_recs, "eval").iter().map(|k| k.0).collect();
    assert_eq!(old_full, BTreeSet::from([0, 20, 40]));
    assert_eq!(
        std::fs::read(checkpoint_path(&tmp.path().join("runs/new"))).unwrap(),
        std::fs::read(checkpoint_path(&tmp.path().join("runs/old"))).unwrap(),
        "weights differ with the evaluation cadence"
    );
}

#[test]
fn bad_cadence_keys_are_clear_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    for (key, value, needles) in [
        (
            "eval_subset",
            "-1",
            &[
                "run.eval_subset",
                "must be a non-negative integer",
                "got -1",
            ][..],
        ),
        (
            "full_eval_every",
            "0",
            &["run.full_eval_every", "must be a positive integer, got 0"],
        ),
        (
            "checkpoint_every",
            "-3",
            &["run.checkpoint_every", "must be a positive integer, got -3"],
        ),
        // Type errors point at the value: file:line:column.
        (
            "full_eval_at_start",
            "3",
            &["bad.toml:7:", "expected a boolean"],
        ),
        ("eval_subset", "\"all\"", &["bad.toml:7:", "invalid type"]),
    ] {
        let body = SMALL.replace("eval_subset = 20\n", &format!("{key} = {value}\n"));
        let set = write_task_set(tmp.path(), "bad.toml", &body);
        let out = gtk(
            tmp.path(),
            &["train", "--task-set", set.to_str().unwrap(), "--quiet"],
        );
        let mut all = vec!["bad.toml"];
        all.extend_from_slice(needles);
        assert_clean_error(&out, &all);
    }
}

/// Defaults: image sets probe every 10 steps (the paper's cadence) on 500 test examples per
/// task; other sets keep a tenth of the run; commits land on probe steps about ten times a
/// run; no full evaluation before the end.
#[test]
fn cadence_defaults() {
    let colors = TaskSet::load(&repo("tasks/colors.toml")).unwrap();
    let run = &colors.run.evaluation;
    assert_eq!(
        (run.eval_every, run.eval_subset, run.checkpoint_every),
        (10, 500, 50)
    );
    assert_eq!(run.full_eval_every, None);
    assert!(!run.full_eval_at_start && run.eval_at_start);
    let sinusoid = TaskSet::load(&repo("tasks/sinusoid.toml")).unwrap();
    assert_eq!(
        (
            sinusoid.run.evaluation.eval_every,
            sinusoid.run.evaluation.checkpoint_every,
        ),
        (500, 500)
    );
    let tmp = tempfile::tempdir().unwrap();
    let set = write_task_set(
        tmp.path(),
        "a.toml",
        &SMALL.replace("steps = 30", "steps = 72"),
    );
    let parsed = TaskSet::load(&set).unwrap();
    assert_eq!(
        (
            parsed.run.evaluation.eval_every,
            parsed.run.evaluation.checkpoint_every,
        ),
        (5, 10)
    );
    let set = write_task_set(
        tmp.path(),
        "b.toml",
        &SMALL
            .replace("eval_every = 5\n", "")
            .replace("steps = 30", "steps = 95"),
    );
    let parsed = TaskSet::load(&set).unwrap();
    assert_eq!(
        (
            parsed.run.evaluation.eval_every,
            parsed.run.evaluation.checkpoint_every,
        ),
        (9, 9)
    );
}
