//! `gtk train --seeds … --set KEY=V1,V2`: grid sweeps (one run folder per configuration and
//! seed, named by its settings), their summary (ranking, the selected configuration's paired
//! tests), resuming, and bad keys and values.

mod common;

use common::{assert_clean_error, gtk, gtk_ok, write_task_set};
use gatekit::report::RunData;
use gatekit::sweep::{
    Configuration, GridSummary, MEAN_ROW, MemberResult, Summary, grid_figure_data,
};
use gatekit::train::{MetricsLog, Record};
use std::path::Path;

/// Two small sinusoid tasks, a few steps.
const TASKS: &str = r#"
[run]
model = "MODELS/mlp.toml"
steps = 40
batch_size = 16
optimizer = "adam"
lr = 0.003
eval_every = 20
seed = 0

[defaults]
kind = "sinusoid"
inputs = 8
train = 64
test = 64
noise = 0.1
x_range = [-1.0, 1.0]

[[task]]
name = "t0"
[[task]]
name = "t1"
"#;

/// The last full evaluation of `strategy` on `task` on `split` in a run's metrics log.
fn last_metric(run: &Path, strategy: &str, task: &str, split: &str) -> f64 {
    MetricsLog::read_committed(run)
        .expect("metrics")
        .into_iter()
        .filter_map(|r| match r {
            Record::Eval {
                strategy: s,
                task: t,
                split: sp,
                metric,
                ..
            } if s == strategy && t == task && sp == split => Some(metric),
            _ => None,
        })
        .next_back()
        .unwrap_or_else(|| panic!("no {split} eval of {strategy}/{task} in {}", run.display()))
}

fn grid_args<'a>(ts: &'a str, name: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--task-set",
        ts,
        "--seeds",
        "0..2",
        "--set",
        "lr=0.003,0.03",
        "--set",
        "defaults.noise=0.1",
        "--jobs",
        "2",
        "--name",
        name,
        "-q",
    ]
}

#[test]
fn grid_members_summary_and_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ts = write_task_set(dir, "small.toml", TASKS);
    let ts = ts.to_str().unwrap();
    let out = gtk_ok(dir, &grid_args(ts, "g"));
    assert!(
        out.contains("Configurations ranked by the test MSE"),
        "{out}"
    );
    let sweep = dir.join("runs/g");
    let configs = ["lr=0.003,noise=0.1", "lr=0.03,noise=0.1"];
    for c in configs {
        for seed in 0..2 {
            let run = sweep.join(c).join(format!("seed-{seed}"));
            let config = std::fs::read_to_string(run.join("config.toml")).expect("config.toml");
            let lr = if c.starts_with("lr=0.003") {
                "0.003"
            } else {
                "0.03"
            };
            assert!(config.contains(&format!("\nlr = {lr}\n")), "{c}: {config}");
            assert!(config.contains(&format!("\nseed = {seed}\n")), "{config}");
        }
    }
    let manifest = std::fs::read_to_string(sweep.join("sweep.json")).unwrap();
    assert!(manifest.contains("\"run.lr\""), "{manifest}");

    // The summary's numbers are the members' final test metrics.
    let summary = GridSummary::read(&sweep.join("summary.json")).expect("summary.json");
    assert_eq!(summary.selection_split, "test");
    assert_eq!(summary.keys, vec!["run.lr", "defaults.noise"]);
    assert_eq!(summary.configurations.len(), 2);
    let mut means = Vec::new();
    for c in &summary.configurations {
        for task in ["t0", "t1"] {
            let cell = c.summary.cell("gated", task).unwrap();
            for (i, seed) in [0, 1].iter().enumerate() {
                let run = sweep.join(&c.name).join(format!("seed-{seed}"));
                assert_eq!(
                    cell.values[i],
                    last_metric(&run, "gated", task, "test"),
                    "{} {task} seed {seed}",
                    c.name
                );
            }
        }
        let mean = c.summary.cell("gated", MEAN_ROW).unwrap();
        let t0 = c.summary.cell("gated", "t0").unwrap();
        let t1 = c.summary.cell("gated", "t1").unwrap();
        for i in 0..2 {
            assert!((mean.values[i] - (t0.values[i] + t1.values[i]) / 2.0).abs() < 1e-12);
        }
        means.push((c.name.clone(), mean.interval.mean));
    }
    // Ranked by the mean over tasks, lower MSE first; the selected one is compared with the
    // other, paired over seeds.
    means.sort_by(|a, b| a.1.total_cmp(&b.1));
    assert_eq!(
        summary.ranking,
        vec![means[0].0.clone(), means[1].0.clone()]
    );
    assert_eq!(summary.selected, means[0].0);
    assert_eq!(summary.versus_selected.len(), 1);
    let best = summary.configuration(&summary.selected).unwrap();
    let other = summary.configuration(&means[1].0).unwrap();
    let (b, o) = (
        &best.summary.cell("gated", MEAN_ROW).unwrap().values,
        &other.summary.cell("gated", MEAN_ROW).unwrap().values,
    );
    let d = &summary.versus_selected[0].test.differences;
    assert_eq!(d, &vec![b[0] - o[0], b[1] - o[1]]);
    assert_eq!(summary.selected_test.cells, best.summary.cells);
    let md = std::fs::read_to_string(sweep.join("summary.md")).unwrap();
    assert!(md.contains("SELECTED ON THE TEST SPLIT"), "{md}");
    assert!(md.contains("selected − this (gated, test)"), "{md}");
    assert!(md.contains(&format!("Selected configuration `{}`", summary.selected)));

    // `gtk report` of a grid: one figure per key with several values (lr; noise has one).
    check_grid_report(dir, "runs/g", &summary, &["grid_lr"]);

    // Resume: one member's run removed (its done state gone) is retrained; the others are
    // not touched, and the summary comes out the same.
    let keep = sweep.join(configs[0]).join("seed-0/state.json");
    let before = std::fs::metadata(&keep).unwrap().modified().unwrap();
    let json = std::fs::read_to_string(sweep.join("summary.json")).unwrap();
    std::fs::remove_dir_all(sweep.join(configs[1]).join("seed-1")).unwrap();
    std::fs::remove_file(sweep.join("summary.json")).unwrap();
    let out = gtk_ok(dir, &["train", "--resume", "runs/g"]);
    assert!(
        out.contains("2 configurations × 2 seeds (3 done, 0 to resume, 1 to start)"),
        "{out}"
    );
    assert!(out.contains("lr=0.03,noise=0.1/seed 1: starting"), "{out}");
    assert_eq!(
        std::fs::metadata(&keep).unwrap().modified().unwrap(),
        before
    );
    let again = std::fs::read_to_string(sweep.join("summary.json")).unwrap();
    assert_eq!(again, json, "the resumed sweep's summary is byte-identical");
}

#[test]
fn set_on_a_single_run_is_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ts = write_task_set(dir, "small.toml", TASKS);
    let ts = ts.to_str().unwrap();
    gtk_ok(
        dir,
        &[
            "train",
            "--task-set",
            ts,
            "--set",
            "lr=0.01",
            "--set",
            "noise=0.2",
            "--steps",
            "20",
            "--name",
            "one",
            "-q",
        ],
    );
    let config = std::fs::read_to_string(dir.join("runs/one/config.toml")).unwrap();
    assert!(config.contains("\nlr = 0.01\n"), "{config}");
    assert_eq!(config.matches("noise = 0.2\n").count(), 2, "{config}");
}

#[test]
fn bad_keys_and_values_are_refused_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ts = write_task_set(dir, "small.toml", TASKS);
    let ts = ts.to_str().unwrap();
    for (set, needles) in [
        (
            "lrr=0.1",
            &[
                "--set",
                "`lrr` is not a [run] or [defaults] key",
                "did you mean `lr`?",
                "mask_lr",
                "x_range",
            ][..],
        ),
        (
            "run.noise=0.1",
            &["`noise` is a task parameter, not a [run] key"][..],
        ),
        (
            "defaults.noize=0.1",
            &["`noize` is not a [defaults] key", "did you mean `noise`?"][..],
        ),
        ("lr=abc,0.1", &["--set", "run.lr=\"abc\"", "lr"][..]),
        ("steps=-3", &["run.steps=-3", "positive integer"][..]),
        ("lr=0.1,0.1", &["lists the value 0.1 twice"][..]),
        ("lr", &["has no `=`"][..]),
        ("seed=1,2", &["--seeds"][..]),
        ("model.x=1", &["only [run] and [defaults] keys"][..]),
        ("noise=0.1,0.100", &["lists the value 0.100 twice"][..]),
    ] {
        let out = gtk(
            dir,
            &[
                "train",
                "--task-set",
                ts,
                "--seeds",
                "0..2",
                "--set",
                set,
                "--name",
                "bad",
            ],
        );
        assert_clean_error(&out, needles);
        assert!(!dir.join("runs/bad").exists(), "{set:?} made a folder");
    }
    // A key given twice, and a grid without seeds.
    assert_clean_error(
        &gtk(
            dir,
            &[
                "train",
                "--task-set",
                ts,
                "--seeds",
                "0..2",
                "--set",
                "lr=0.1",
                "--set",
                "run.lr=0.2",
                "--name",
                "bad",
            ],
        ),
        &["`run.lr` is set twice"],
    );
    assert_clean_error(
        &gtk(
            dir,
            &[
                "train",
                "--task-set",
                ts,
                "--set",
                "lr=0.1,0.2",
                "--name",
                "bad",
            ],
        ),
        &["several values make a grid, which needs --seeds"],
    );
    assert!(!dir.join("runs/bad").exists());
}

/// The rows of a task's split as vectors of f32 bit patterns (comparable, hashable).
fn rows(task: &dyn gatekit::task::Task, split: gatekit::task::Split) -> Vec<Vec<u32>> {
    let idx: Vec<usize> = (0..task.len(split)).collect();
    let b = task
        .batch(
            split,
            &idx,
            &candle_core::Device::Cpu,
            candle_core::DType::F32,
        )
        .unwrap();
    b.x.to_vec2::<f32>()
        .unwrap()
        .into_iter()
        .map(|r| r.into_iter().map(f32::to_bits).collect())
        .collect()
}

#[test]
fn validation_split_is_held_out_of_training_seeded_and_sized() {
    use gatekit::config::Setting;
    use gatekit::task::Split;
    let tmp = tempfile::tempdir().unwrap();
    let ts = write_task_set(tmp.path(), "small.toml", TASKS);
    let load = |fraction: &str, seed: &str| {
        let settings = [
            Setting {
                key: "run.val_fraction".into(),
                value: fraction.into(),
            },
            Setting {
                key: "run.seed".into(),
                value: seed.into(),
            },
        ];
        let set = gatekit::TaskSet::load_with(Some(&ts), &settings).unwrap();
        set.build_tasks(None).unwrap()
    };
    let plain = gatekit::TaskSet::load(&ts)
        .unwrap()
        .build_tasks(None)
        .unwrap();
    let tasks = load("0.25", "0");
    for (t, p) in tasks.iter().zip(&plain) {
        assert!(p.validation().is_none());
        let val = t.validation().expect("a validation view");
        // 64 training examples: 16 held out, 48 trained on; the test split is untouched.
        assert_eq!((t.len(Split::Train), val.len(Split::Test)), (48, 16));
        assert_eq!(rows(t.as_ref(), Split::Test), rows(p.as_ref(), Split::Test));
        let (train, held) = (
            rows(t.as_ref(), Split::Train),
            rows(val.as_ref(), Split::Test),
        );
        assert!(held.iter().all(|r| !train.contains(r)), "disjoint");
        // Together they are the task's whole training split.
        let mut all: Vec<Vec<u32>> = train.into_iter().chain(held).collect();
        let mut whole = rows(p.as_ref(), Split::Train);
        all.sort();
        whole.sort();
        assert_eq!(all, whole);
    }
    // Seeded: the same seed holds out the same examples, another seed others.
    let again = load("0.25", "0");
    let other = load("0.25", "1");
    let held = |ts: &[Box<dyn gatekit::task::Task>]| {
        rows(ts[0].validation().unwrap().as_ref(), Split::Test)
    };
    assert_eq!(held(&tasks), held(&again));
    let other_plain = gatekit::TaskSet::load_with(
        Some(&ts),
        &[Setting {
            key: "run.seed".into(),
            value: "1".into(),
        }],
    )
    .unwrap()
    .build_tasks(None)
    .unwrap();
    let whole_1 = rows(other_plain[0].as_ref(), Split::Train);
    let held_1 = held(&other);
    assert!(held_1.iter().all(|r| whole_1.contains(r)));
    // A share that leaves nothing on one side is refused.
    let settings = [Setting {
        key: "run.val_fraction".into(),
        value: "0.001".into(),
    }];
    let e = gatekit::TaskSet::load_with(Some(&ts), &settings)
        .unwrap()
        .build_tasks(None)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("val_fraction") && e.contains("holds out 0 of task `t0`'s 64"),
        "{e}"
    );
    let e = gatekit::TaskSet::load_with(
        Some(&ts),
        &[Setting {
            key: "run.val_fraction".into(),
            value: "1.5".into(),
        }],
    )
    .expect_err("refused")
    .to_string();
    assert!(e.contains("val_fraction") && e.contains("below 1"), "{e}");
}

#[test]
fn grid_selects_on_validation_and_reports_the_selected_test_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ts = write_task_set(dir, "small.toml", TASKS);
    let ts = ts.to_str().unwrap();
    gtk_ok(
        dir,
        &[
            "train",
            "--task-set",
            ts,
            "--seeds",
            "0..2",
            "--set",
            "lr=0.003,0.03",
            "--set",
            "val_fraction=0.25",
            "--name",
            "v",
            "-q",
        ],
    );
    let sweep = dir.join("runs/v");
    let summary = GridSummary::read(&sweep.join("summary.json")).expect("summary.json");
    assert_eq!(summary.selection_split, "val");
    for c in &summary.configurations {
        let config =
            std::fs::read_to_string(sweep.join(&c.name).join("seed-0/config.toml")).unwrap();
        assert!(config.contains("\nval_fraction = 0.25\n"), "{config}");
        for task in ["t0", "t1"] {
            let cell = c.summary.cell("gated", task).unwrap();
            for seed in 0..2 {
                let run = sweep.join(&c.name).join(format!("seed-{seed}"));
                assert_eq!(cell.values[seed], last_metric(&run, "gated", task, "val"));
            }
        }
    }
    // Test numbers: the selected configuration's only.
    for task in ["t0", "t1"] {
        let cell = summary.selected_test.cell("gated", task).unwrap();
        for seed in 0..2 {
            let run = sweep.join(&summary.selected).join(format!("seed-{seed}"));
            assert_eq!(cell.values[seed], last_metric(&run, "gated", task, "test"));
        }
    }
    let md = std::fs::read_to_string(sweep.join("summary.md")).unwrap();
    assert!(
        md.contains("Configurations ranked by the validation MSE"),
        "{md}"
    );
    assert!(md.contains("Selected on the validation split"), "{md}");
    assert!(md.contains("selected − this (gated, validation)"), "{md}");
    assert!(
        md.contains("on the validation split, paired over seeds"),
        "{md}"
    );
    assert!(!md.contains("SELECTED ON THE TEST SPLIT"), "{md}");

    // eval_split defaults to `val` with a validation split: the probes measure a subset of
    // the 16 held-out examples (not the 64 test ones), logged as split `val`.
    let run = sweep.join(&summary.selected).join("seed-0");
    let records = MetricsLog::read_committed(&run).unwrap();
    let probes: Vec<(&str, usize)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Probe {
                split, examples, ..
            } if split != "train" => Some((split.as_str(), *examples)),
            _ => None,
        })
        .collect();
    assert!(!probes.is_empty());
    assert!(probes.iter().all(|&p| p == ("val", 16)), "{probes:?}");
    assert!(records.iter().any(
        |r| matches!(r, Record::ProbeSet { of, indices, .. } if *of == 16 && indices.len() == 16)
    ));

    // The report draws lr against the validation metric, and says so.
    check_grid_report(dir, "runs/v", &summary, &["grid_lr"]);
    let svg = std::fs::read_to_string(dir.join("reports/grid/grid_lr.svg")).unwrap();
    assert!(svg.contains("validation MSE"), "the y axis names the split");

    // Selection follows the validation metric: the summary built from the same runs with
    // each configuration's validation results swapped selects the other configuration, and
    // reports that one's test numbers.
    let read = |name: &str, split: &str| -> Summary {
        let members: Vec<_> = (0..2u64)
            .map(|seed| {
                let dir = sweep.join(name).join(format!("seed-{seed}"));
                let run = RunData::open(&dir).unwrap();
                (dir, MemberResult::read_split(&run, seed, split))
            })
            .collect();
        Summary::of_members("v", &members).unwrap()
    };
    let configs: Vec<Configuration> = summary
        .configurations
        .iter()
        .map(|c| Configuration {
            name: c.name.clone(),
            settings: c
                .settings
                .iter()
                .map(|[key, value]| gatekit::config::Setting {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
        })
        .collect();
    let val: Vec<Summary> = configs.iter().map(|c| read(&c.name, "val")).collect();
    let test: Vec<Summary> = configs.iter().map(|c| read(&c.name, "test")).collect();
    let mean = |s: &Summary| s.cell("gated", MEAN_ROW).unwrap().interval.mean;
    let rebuilt = GridSummary::of_configurations(
        "v",
        "val",
        configs.iter().cloned().zip(val.iter().cloned()).collect(),
        test.clone(),
    )
    .unwrap();
    assert_eq!(rebuilt.selected, summary.selected);
    assert_eq!(rebuilt.selected_test, summary.selected_test);
    let best = if mean(&val[0]) <= mean(&val[1]) { 0 } else { 1 };
    assert_eq!(
        summary.selected, configs[best].name,
        "lowest validation MSE"
    );
    assert_ne!(mean(&val[0]), mean(&val[1]));
    let swapped = GridSummary::of_configurations(
        "v",
        "val",
        vec![
            (configs[0].clone(), val[1].clone()),
            (configs[1].clone(), val[0].clone()),
        ],
        test.clone(),
    )
    .unwrap();
    assert_eq!(swapped.selected, configs[1 - best].name);
    assert_eq!(swapped.selected_test, test[1 - best]);
    // The same validation numbers win, now under the other configuration's name.
    assert_eq!(
        swapped.versus_selected[0].test.differences,
        rebuilt.versus_selected[0].test.differences
    );
    assert_eq!(swapped.versus_selected[0].configuration, configs[best].name);
}

#[test]
fn eval_split_test_selects_on_the_test_split_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ts = write_task_set(dir, "small.toml", TASKS);
    let ts = ts.to_str().unwrap();
    // `val` without a validation split is refused, naming the key and the fix.
    assert_clean_error(
        &gtk(
            dir,
            &[
                "train",
                "--task-set",
                ts,
                "--set",
                "eval_split=val",
                "--name",
                "bad",
            ],
        ),
        &["run.eval_split", "needs a validation split", "val_fraction"],
    );
    assert!(!dir.join("runs/bad").exists());
    gtk_ok(
        dir,
        &[
            "train",
            "--task-set",
            ts,
            "--seeds",
            "0..2",
            "--set",
            "lr=0.003,0.03",
            "--set",
            "val_fraction=0.25",
            "--set",
            "eval_split=test",
            "--name",
            "t",
            "-q",
        ],
    );
    let sweep = dir.join("runs/t");
    let summary = GridSummary::read(&sweep.join("summary.json")).expect("summary.json");
    assert_eq!(summary.selection_split, "test");
    // Ranked on the test numbers although the runs held out (and measured) a validation split.
    for c in &summary.configurations {
        let run = sweep.join(&c.name).join("seed-1");
        let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
        assert!(config.contains("\neval_split = \"test\"\n"), "{config}");
        let cell = c.summary.cell("gated", "t1").unwrap();
        assert_eq!(cell.values[1], last_metric(&run, "gated", "t1", "test"));
        assert_ne!(cell.values[1], last_metric(&run, "gated", "t1", "val"));
        let probes = MetricsLog::read_committed(&run).unwrap();
        assert!(
            probes
                .iter()
                .any(|r| matches!(r, Record::Probe { split, examples: 64, .. } if split == "test"))
        );
        assert!(
            !probes
                .iter()
                .any(|r| matches!(r, Record::Probe { split, .. } if split == "val"))
        );
    }
    let md = std::fs::read_to_string(sweep.join("summary.md")).unwrap();
    assert!(md.contains("Configurations ranked by the test MSE"), "{md}");
    assert!(md.contains("SELECTED ON THE TEST SPLIT"), "{md}");
    assert!(
        md.contains("selected on the test split; its test results"),
        "{md}"
    );
    assert!(md.contains("selected − this (gated, test)"), "{md}");
}

/// The interval cell `mean [low, high]` of a Markdown table as numbers.
fn parse_cell(cell: &str) -> (f64, f64, f64) {
    let (mean, rest) = cell.trim().split_once(" [").expect("mean [low, high]");
    let (low, high) = rest
        .trim_end_matches(']')
        .split_once(", ")
        .expect("low, high");
    let num = |v: &str| v.trim().parse::<f64>().unwrap_or_else(|_| panic!("{cell}"));
    (num(mean), num(low), num(high))
}

/// `gtk report SWEEP` of a finished grid: the figures named `stems` (PNG and SVG, sane
/// sizes), their data equal to the summary's cells, and the ranking table in report.md equal
/// to summary.json (to its printed digits).
fn check_grid_report(dir: &Path, sweep: &str, summary: &GridSummary, stems: &[&str]) {
    let out = gtk_ok(dir, &["report", sweep, "--out", "reports/grid"]);
    assert!(
        out.contains(&format!("wrote {} figures", stems.len())),
        "{out}"
    );
    let report = dir.join("reports/grid");
    for stem in stems {
        let png = std::fs::read(report.join(format!("{stem}.png"))).expect("png");
        assert_eq!(&png[1..4], b"PNG");
        assert!((10_000..3_000_000).contains(&png.len()), "{}", png.len());
        let svg = std::fs::read_to_string(report.join(format!("{stem}.svg"))).expect("svg");
        assert!((5_000..3_000_000).contains(&svg.len()), "{}", svg.len());
        assert!(svg.contains("<svg"), "{stem}.svg");
    }
    let figures = grid_figure_data(summary);
    assert_eq!(
        figures.iter().map(|f| f.stem.as_str()).collect::<Vec<_>>(),
        stems
    );
    let selected = summary.configuration(&summary.selected).unwrap();
    for f in &figures {
        let k = summary.keys.iter().position(|k| *k == f.key).unwrap();
        // Every value of the key, through the selected configuration.
        assert!(f.configurations.contains(&summary.selected));
        assert!(f.values.len() >= 2);
        let svg = std::fs::read_to_string(report.join(format!("{}.svg", f.stem))).unwrap();
        for (x, (value, name)) in f.values.iter().zip(&f.configurations).enumerate() {
            assert!(svg.contains(value.as_str()), "{value} in {}.svg", f.stem);
            let c = summary.configuration(name).unwrap();
            assert_eq!(&c.settings[k][1], value);
            for (i, ([key, v], [_, sv])) in c.settings.iter().zip(&selected.settings).enumerate() {
                assert!(
                    i == k || v == sv,
                    "{name}: {key} = {v} is not the selected {sv}"
                );
            }
            // The mean panel's points are the summary's cells.
            let panel = &f.panels[0];
            assert_eq!(panel.title, "mean over tasks");
            for series in &panel.series {
                let cell = c.summary.cell(&series.strategy, MEAN_ROW).unwrap();
                let (px, mean, low, high) = series.points[x];
                assert_eq!(px, x as f64);
                assert_eq!(mean, cell.interval.mean);
                assert!(low <= mean && mean <= high);
                if let (Some(l), Some(h)) = (cell.interval.low, cell.interval.high) {
                    assert_eq!((low, high), (l.max(0.0), h.max(0.0)));
                }
            }
        }
    }
    // The ranking table: one row per configuration in ranking order, its gated cell equal to
    // summary.json's mean over tasks to the printed digits.
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    for stem in stems {
        assert!(md.contains(&format!("]({stem}.png)")), "{md}");
    }
    let rows: Vec<Vec<&str>> = md
        .lines()
        .filter(|l| {
            l.starts_with("| ")
                && l.split('|')
                    .nth(1)
                    .is_some_and(|c| c.trim().parse::<usize>().is_ok())
        })
        .map(|l| l.trim_matches('|').split(" | ").collect())
        .collect();
    assert_eq!(rows.len(), summary.ranking.len(), "{md}");
    for (rank, (row, name)) in rows.iter().zip(&summary.ranking).enumerate() {
        assert_eq!(row[0].trim(), (rank + 1).to_string());
        assert_eq!(row[1].trim(), name);
        let cell = summary
            .configuration(name)
            .unwrap()
            .summary
            .cell("gated", MEAN_ROW)
            .unwrap();
        let (mean, low, high) = parse_cell(row[2]);
        // Half a unit of the last printed digit (`0.1234` or `1.2e-3`).
        let shown = row[2].split_once(" [").unwrap().0.trim();
        let (mantissa, exponent) = shown.split_once('e').unwrap_or((shown, "0"));
        let digits = mantissa.split('.').nth(1).map_or(0, str::len) as i32;
        let tol = 0.5 * 10f64.powi(exponent.parse::<i32>().unwrap() - digits) + 1e-12;
        assert!(
            (mean - cell.interval.mean).abs() <= tol,
            "{name}: {mean} vs {:?}",
            cell.interval
        );
        if let (Some(l), Some(h)) = (cell.interval.low, cell.interval.high) {
            assert!(
                (low - l.max(0.0)).abs() <= tol && (high - h).abs() <= tol,
                "{name}"
            );
        }
    }
}
