//! `gtk train --seeds`: sweeps of one run per seed, their summary over seeds, resuming a
//! killed sweep, and the bad inputs of sweeps.

mod common;

use common::{assert_clean_error, gtk, gtk_ok, ok, text, write_task_set};
use gatekit::run_folder::WriterLock;
use gatekit::sweep::{MEAN_ROW, Summary};
use gatekit::train::{MetricsLog, Record};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Three small sinusoid tasks, evaluated every 50 steps.
const TASKS: &str = r#"
[run]
model = "MODELS/mlp.toml"
steps = 1000
batch_size = 16
optimizer = "adam"
lr = 0.003
eval_every = 100
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
[[task]]
name = "t2"
"#;

/// The results a summary is made of (the sweep's name aside).
fn results(dir: &Path) -> Summary {
    let mut s = Summary::read(&dir.join("summary.json")).expect("summary.json");
    s.sweep = String::new();
    s
}

fn evals(run: &Path) -> Vec<Record> {
    MetricsLog::read_committed(run)
        .expect("metrics")
        .into_iter()
        .filter(|r| matches!(r, Record::Eval { .. } | Record::Binarized { .. }))
        .collect()
}

fn committed_step(run: &Path) -> usize {
    std::fs::read_to_string(run.join("state.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["step"].as_u64())
        .unwrap_or(0) as usize
}

/// `gtk train` of three seeds of `ts`, two at a time, all strategies, as sweep `name`.
fn sweep_args<'a>(ts: &'a str, name: &'a str) -> [&'a str; 11] {
    [
        "train",
        "--task-set",
        ts,
        "--strategy",
        "all",
        "--seeds",
        "0..3",
        "--jobs",
        "2",
        "--name",
        name,
    ]
}

#[test]
fn sweep_summarises_resumes_after_a_kill_and_matches_seeds_run_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ts = write_task_set(dir, "small.toml", TASKS);
    let ts = ts.to_str().unwrap();

    // The reference: three seeds, two at a time, uninterrupted.
    let out = gtk(dir, &sweep_args(ts, "full"));
    let stdout = ok(&out);
    assert!(
        stdout.contains("3 seeds (0 done, 0 to resume, 3 to start), 2 at a time"),
        "{stdout}"
    );
    assert!(
        stdout.contains("seed 2: step   1000"),
        "per-seed progress lines: {stdout}"
    );
    assert!(
        stdout.contains("Paired differences per seed, gated − baseline"),
        "{stdout}"
    );
    let full = dir.join("runs/full");
    let summary = results(&full);
    assert_eq!(summary.seeds, vec![0, 1, 2]);
    assert_eq!(summary.steps, 1000);
    assert_eq!(
        summary.strategies,
        vec!["gated", "shared", "separate", "gated-binarized"]
    );
    // Every cell is the mean of the three seeds' final metrics, as logged by each run.
    for seed in 0..3u64 {
        let run = full.join(format!("seed-{seed}"));
        for r in evals(&run) {
            if let Record::Eval {
                step: 1000,
                strategy,
                task,
                split,
                metric,
                ..
            } = r
                && split == "test"
            {
                let cell = summary.cell(&strategy, &task).unwrap();
                assert_eq!(cell.values[seed as usize], metric, "{strategy} {task}");
            }
        }
    }
    let mean = summary.cell("gated", MEAN_ROW).unwrap();
    let by_hand = mean.values.iter().sum::<f64>() / 3.0;
    assert!((mean.interval.mean - by_hand).abs() < 1e-15);
    let md = std::fs::read_to_string(full.join("summary.md")).unwrap();
    assert!(md.contains("| mean over tasks |"), "{md}");

    // A seed run alone (plain `gtk train`, one thread) logs exactly what it logged in the
    // sweep, next to other seeds.
    let alone = Command::new(env!("CARGO_BIN_EXE_gtk"))
        .args([
            "train",
            "--task-set",
            ts,
            "--strategy",
            "all",
            "--seed",
            "1",
            "--name",
            "alone",
        ])
        .current_dir(dir)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    ok(&alone);
    assert_eq!(evals(&dir.join("runs/alone")), evals(&full.join("seed-1")));

    // The same sweep, killed while its seeds train, then resumed: the same summary.
    let mut sweep = Command::new(env!("CARGO_BIN_EXE_gtk"))
        .args(sweep_args(ts, "killed"))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let killed = dir.join("runs/killed");
    let began = Instant::now();
    while committed_step(&killed.join("seed-0")) < 100 {
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "seed 0 never committed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    sweep.kill().unwrap();
    sweep.wait().unwrap();
    // The seeds' processes end with the sweep (their stdin closes).
    for seed in 0..3 {
        let run = killed.join(format!("seed-{seed}"));
        while WriterLock::holder(&run).is_some() {
            assert!(
                began.elapsed() < Duration::from_secs(120),
                "seed {seed} kept running"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let steps: Vec<usize> = (0..3)
        .map(|s| committed_step(&killed.join(format!("seed-{s}"))))
        .collect();
    assert!(
        steps.iter().any(|&s| s < 1000),
        "killed after the end: {steps:?}"
    );
    assert!(!killed.join("summary.json").exists());
    let stdout = gtk_ok(
        dir,
        &["train", "--resume", killed.to_str().unwrap(), "--jobs", "2"],
    );
    assert!(
        stdout.contains("to resume") || stdout.contains("to start"),
        "{stdout}"
    );
    assert_eq!(results(&killed), summary);

    // `gtk report SWEEP`: the band figure and the summary tables.
    let rep = dir.join("rep");
    let stdout = gtk_ok(
        dir,
        &[
            "report",
            full.to_str().unwrap(),
            "--out",
            rep.to_str().unwrap(),
        ],
    );
    assert!(stdout.contains("wrote 1 figures"), "{stdout}");
    let png = std::fs::read(rep.join("sweep_test_metric.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
    let report = std::fs::read_to_string(rep.join("report.md")).unwrap();
    assert!(report.contains(&md), "the report holds the summary tables");
    assert!(report.contains("confidence band"), "{report}");

    // A sweep member is a run like any other.
    let member = full.join("seed-0");
    let stdout = gtk_ok(dir, &["eval", member.to_str().unwrap()]);
    // eval only reads the member: it says so, and no longer claims to have saved it.
    assert!(
        stdout.contains("at step 1000 (read only)") && !stdout.contains("saved"),
        "{stdout}"
    );
    let exported = dir.join("export-seed-0");
    gtk_ok(
        dir,
        &[
            "export",
            member.to_str().unwrap(),
            "--out",
            exported.to_str().unwrap(),
        ],
    );
    assert!(exported.join("t0.onnx").is_file() || exported.read_dir().unwrap().count() > 2);

    // A sweep folder given where a run is expected names what to give instead.
    assert_clean_error(
        &gtk(dir, &["eval", full.to_str().unwrap()]),
        &["sweep folder", "seed-N"],
    );
}

#[test]
fn bad_sweeps_are_refused_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ts = write_task_set(dir, "small.toml", TASKS);
    let ts = ts.to_str().unwrap();
    for (seeds, needle) in [
        ("", "is empty"),
        ("0..x", "`x` is not a seed"),
        ("3..3", "holds no seed"),
        ("0,,2", "empty item"),
        ("1,1", "seed 1 twice"),
    ] {
        let out = gtk(
            dir,
            &["train", "--task-set", ts, "--seeds", seeds, "--name", "bad"],
        );
        assert_clean_error(&out, &["--seeds", needle]);
        assert!(!dir.join("runs/bad").exists(), "{seeds:?} made a folder");
    }
    assert_clean_error(
        &gtk(
            dir,
            &["train", "--task-set", ts, "--seeds", "0..2", "--jobs", "0"],
        ),
        &["--jobs must be at least 1"],
    );

    // A plain run given as a sweep.
    gtk_ok(
        dir,
        &[
            "train",
            "--task-set",
            ts,
            "--steps",
            "20",
            "--name",
            "plain",
            "-q",
        ],
    );
    assert_clean_error(
        &gtk(dir, &["train", "--resume", "runs/plain", "--jobs", "2"]),
        &["runs/plain", "is a plain run folder, not a sweep"],
    );

    // A sweep whose seeds train different task sets (a run of another task set put in as
    // seed 1) is refused when summarised.
    gtk_ok(
        dir,
        &[
            "train",
            "--task-set",
            ts,
            "--seeds",
            "0",
            "--steps",
            "20",
            "--name",
            "mixed",
            "-q",
        ],
    );
    let manifest = dir.join("runs/mixed/sweep.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("\"seeds\": [\n    0\n  ]", "\"seeds\": [0, 1]"),
    )
    .unwrap();
    let other = write_task_set(dir, "other.toml", &TASKS.replace("\"t2\"", "\"u2\""));
    gtk_ok(
        dir,
        &[
            "train",
            "--task-set",
            other.to_str().unwrap(),
            "--steps",
            "20",
            "--seed",
            "1",
            "--runs-dir",
            "runs/mixed",
            "--name",
            "seed-1",
            "-q",
        ],
    );
    assert_clean_error(
        &gtk(dir, &["train", "--resume", "runs/mixed"]),
        &["seed-1", "trains tasks [t0, t1, u2] but", "[t0, t1, t2]"],
    );
}

/// Issue 24: the sweep figure drew only the final full evaluation (one x value, ticks
/// "1000 1000 1001") with bands below 0. Its curves come from every probe, the full
/// evaluations are points with bars, and every band is clipped to the metric's range; checked
/// through the data behind the figure against the seeds' own records.
#[test]
fn sweep_figure_has_a_curve_per_probe_and_bands_in_range() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ts = write_task_set(
        dir,
        "short.toml",
        &TASKS
            .replace("steps = 1000", "steps = 200")
            .replace("eval_every = 100", "eval_every = 50"),
    );
    let ts = ts.to_str().unwrap();
    // Two seeds: t_{0.975,1} = 12.7 makes wide intervals, so clipping at 0 is exercised.
    gtk_ok(
        dir,
        &[
            "train",
            "--task-set",
            ts,
            "--strategy",
            "all",
            "--seeds",
            "0..2",
            "--name",
            "two",
        ],
    );
    let sweep = dir.join("runs/two");
    let panels = gatekit::sweep::sweep_figure_data(&sweep).unwrap();
    assert_eq!(
        panels.iter().map(|p| p.title.as_str()).collect::<Vec<_>>(),
        vec!["mean over tasks", "task t0", "task t1", "task t2"]
    );
    let runs: Vec<gatekit::report::RunData> = (0..2)
        .map(|s| gatekit::report::RunData::open(&sweep.join(format!("seed-{s}"))).unwrap())
        .collect();
    let mut clipped = 0;
    for p in &panels {
        let curves: Vec<_> = p.series.iter().filter(|s| !s.dots).collect();
        assert_eq!(
            curves
                .iter()
                .map(|s| s.strategy.as_str())
                .collect::<Vec<_>>(),
            vec!["gated", "shared", "separate"],
            "{}",
            p.title
        );
        for s in &p.series {
            for &(_, m, lo, hi) in &s.points {
                assert!(
                    0.0 <= lo && lo <= m && m <= hi,
                    "{}: {lo} {m} {hi}",
                    p.title
                );
                clipped += usize::from(lo == 0.0);
            }
        }
        for c in &curves {
            let steps: Vec<f64> = c.points.iter().map(|q| q.0).collect();
            assert_eq!(steps, vec![0.0, 50.0, 100.0, 150.0, 200.0], "{}", p.title);
        }
        // The full evaluation (only at the end here) is a point, as is the binarized model's.
        let full: Vec<_> = p.series.iter().filter(|s| s.dots).collect();
        assert!(
            full.iter()
                .all(|s| s.points.len() == 1 && s.points[0].0 == 200.0)
        );
        assert!(full.iter().any(|s| s.strategy == gatekit::sweep::BINARIZED));
    }
    assert!(clipped > 0, "two seeds should clip some band at 0");
    // One point by hand: gated on t1 at step 100, the mean and interval of the two seeds'
    // probes, its low end clipped at 0.
    let v: Vec<f64> = runs
        .iter()
        .map(|r| r.probe_series("gated", "t1", "test", gatekit::report::Quantity::Metric)[2].1)
        .collect();
    let i = gatekit::sweep::stats::Interval::of(&v, 0.95);
    let t1 = panels[2]
        .series
        .iter()
        .find(|s| s.strategy == "gated" && !s.dots)
        .unwrap();
    assert_eq!(
        t1.points[2],
        (100.0, i.mean, i.low.unwrap().max(0.0), i.high.unwrap())
    );

    // The report draws it and holds the tables in one format, intervals clipped.
    let rep = dir.join("rep");
    gtk_ok(
        dir,
        &[
            "report",
            sweep.to_str().unwrap(),
            "--out",
            rep.to_str().unwrap(),
        ],
    );
    let md = std::fs::read_to_string(rep.join("report.md")).unwrap();
    assert!(!md.contains('±'), "{md}");
    assert!(md.contains("clipped to the possible range ≥ 0"), "{md}");
    assert!(md.contains("dots with bars: the full evaluations"), "{md}");
}

/// Four sinusoid tasks, one phase each (the sequential schedule).
const SEQUENTIAL: &str = r#"
[run]
model = "MODELS/mlp.toml"
schedule = "sequential"
phase_steps = 200
batch_size = 16
optimizer = "adam"
lr = 0.003
eval_every = 100
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
[[task]]
name = "t2"
[[task]]
name = "t3"
"#;

/// Issue 24: a sweep over a sequential set summarised no continual measure, and `--steps`
/// shortened the phases but kept `eval_every`, so curves were straight lines. Now the
/// summary has average, BWT and forgetting per strategy with intervals and paired
/// differences (none of BWT and forgetting for joint), `eval_every` scales with the phases
/// (said in a note), and the phase ends are drawn on every metric curve.
#[test]
fn sequential_sweep_summarises_the_continual_measures() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ts = write_task_set(dir, "seq.toml", SEQUENTIAL);
    let out = gtk(
        dir,
        &[
            "train",
            "--task-set",
            ts.to_str().unwrap(),
            "--strategy",
            "all",
            "--seeds",
            "0..2",
            "--steps",
            "200",
            "--name",
            "cl",
        ],
    );
    let stdout = ok(&out);
    let (_, stderr) = text(&out);
    let both = format!("{stdout}{stderr}");
    assert!(
        both.contains("phase_steps 200 → 50 (4 tasks), eval_every 100 → 25"),
        "{both}"
    );
    let sweep = dir.join("runs/cl");
    let summary = Summary::read(&sweep.join("summary.json")).unwrap();
    let c = summary.continual.as_ref().expect("continual measures");
    for seed in 0..2usize {
        let run = sweep.join(format!("seed-{seed}"));
        let data = gatekit::report::RunData::open(&run).unwrap();
        assert_eq!(data.set.run.evaluation.eval_every, 25);
        assert_eq!(data.set.run.schedule.phase_steps, Some(50));
        let per_run: Vec<gatekit::train::ContinualSummary> = serde_json::from_str(
            &std::fs::read_to_string(run.join(gatekit::train::files::CONTINUAL)).unwrap(),
        )
        .unwrap();
        for s in &per_run {
            assert_eq!(
                c.cell(&s.strategy, "average").unwrap().values[seed],
                s.average
            );
            if s.strategy == "joint" {
                assert!(c.cell("joint", "forgetting").is_none());
                assert!(c.cell("joint", "backward transfer").is_none());
            } else {
                assert_eq!(
                    c.cell(&s.strategy, "forgetting").unwrap().values[seed],
                    s.forgetting
                );
                assert_eq!(
                    c.cell(&s.strategy, "backward transfer").unwrap().values[seed],
                    s.backward_transfer
                );
            }
        }
        // Phase ends drawn as dots on the metric curves: task t0's panel has gated's four
        // phase-end evaluations, and the probe curve has a point every 25 steps.
        let panels =
            gatekit::report::figures::curves_data(&data, gatekit::report::Quantity::Metric)
                .unwrap();
        let t0 = panels.iter().find(|p| p.title == "task t0").unwrap();
        let phase = data.phase_series("gated", "t0");
        assert_eq!(
            phase.iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![50.0, 100.0, 150.0, 200.0]
        );
        assert!(t0.dots.contains(&phase), "{:?}", t0.dots);
        assert_eq!(t0.lines[0].len(), 9, "probes at 0, 25, …, 200");
    }
    let p = c.paired("finetune", "forgetting").unwrap();
    assert_eq!(p.test.differences.len(), 2);
    let md = std::fs::read_to_string(sweep.join("summary.md")).unwrap();
    assert!(
        md.contains("| measure | gated | finetune | separate | joint |"),
        "{md}"
    );
    let bwt = md
        .lines()
        .find(|l| l.starts_with("| backward transfer |"))
        .unwrap();
    assert!(bwt.ends_with("| n/a |"), "{bwt}");
    assert!(md.contains("| measure | gated − finetune |"), "{md}");
    assert!(stdout.contains("backward transfer"), "{stdout}");
}
