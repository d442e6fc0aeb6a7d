//! The published continual-learning protocols' path (issue 27): `bench/continual/protocol.sh`
//! run as the bench runs it, on MNIST subsets with every phase cut to 1 % of its steps, for
//! split MNIST (Task-IL, two-unit heads) and permuted MNIST (Task-IL, ten 10-unit blocks of a
//! 100-output model): every (protocol, method, seed) writes its `continual.json` with the
//! scenario, `times.tsv` has a row per run, the gated runs' binarized exports are summarised,
//! and the generated table names the scenario and gives a verdict on each published row. A check of the path, not a result (about a minute in a
//! debug build on the 2-core CI machine).

mod common;

use common::shared_data;
use std::process::Command;

#[test]
fn protocol_script_writes_runs_times_and_a_table_per_scenario() {
    let Some(data) = shared_data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("results");
    let root = env!("CARGO_MANIFEST_DIR");
    let run = |benches: &str, methods: &str, scale: &str, seeds: &[&str]| {
        let status = Command::new("bash")
            .arg(format!("{root}/bench/continual/protocol.sh"))
            .args(seeds)
            .env("GTK", env!("CARGO_BIN_EXE_gtk"))
            .env("GATEKIT_DATA", &data)
            .env("OUT", &out)
            .env("BENCHES", benches)
            .env("METHODS", methods)
            .env("STEPS_SCALE", scale)
            .status()
            .expect("bash runs");
        assert!(status.success(), "protocol.sh {benches} {methods} failed");
    };
    run(
        "split-task",
        "finetune gated-freeze-after-first xdg ewc",
        "0.01",
        &["0", "1"],
    );
    run("permuted-task", "finetune xdg", "0.002", &["0"]);

    let times = std::fs::read_to_string(out.join("times.tsv")).unwrap();
    assert_eq!(times.lines().count(), 1 + 8 + 2, "{times}");
    for (file, strategy) in [
        ("split-task-finetune-seed0.json", "finetune"),
        ("split-task-gated-freeze-after-first-seed1.json", "gated"),
        ("permuted-task-xdg-seed0.json", "xdg"),
    ] {
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let s = &json[0];
        assert_eq!(s["strategy"], strategy, "{file}");
        assert_eq!(s["scenario"], "task", "{file}");
        // Split MNIST's digit pairs are the reference code's for the seed: 0/1, …, 8/9 on
        // seed 0; numpy's permutation(10) under seed 1 pairs 4/6, 0/5, 3/9, 2/7 and 1/8.
        let pairs = match file {
            f if f.ends_with("seed0.json") && f.starts_with("split") => {
                Some(["d01", "d23", "d45", "d67", "d89"])
            }
            f if f.ends_with("seed1.json") => Some(["d46", "d05", "d39", "d27", "d18"]),
            _ => None,
        };
        if let Some(pairs) = pairs {
            assert_eq!(s["tasks"], serde_json::json!(pairs), "{file}");
        }
        if file.starts_with("split") {
            // Two-way decisions after 20 steps per task: far above chance (0.5).
            let average = s["average"].as_f64().unwrap();
            assert!(average > 0.7, "{file}: average {average}");
        }
        if strategy == "gated" {
            assert_eq!(
                s["backward_transfer"], 0.0,
                "freeze-after-first forgets nothing"
            );
        }
    }
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(table.contains("**split-mnist, Task-IL**"), "{table}");
    assert!(table.contains("**permuted-mnist, Task-IL**"), "{table}");
    for method in ["finetune", "ewc", "xdg"] {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("| {method} | ")))
            .unwrap_or_else(|| panic!("no {method} row in {table}"));
        assert!(row.contains("| 0, 1 |"), "{row}");
        assert!(row.contains('✔') || row.contains('✘'), "{row}");
    }
    let gated = table
        .lines()
        .find(|l| l.starts_with("| gated-freeze-after-first | – |"))
        .unwrap_or_else(|| panic!("no gated row without a published value in {table}"));
    assert!(gated.contains("| 0.00 ± 0.00 |"), "{gated}");
    // The gated runs were exported binarized: five tasks' accuracies each, and the row's
    // binarized column is their mean over the two seeds (an interval), far above chance.
    for seed in ["0", "1"] {
        let name = format!("split-task-gated-freeze-after-first-seed{seed}.export.txt");
        let text = std::fs::read_to_string(out.join(&name)).unwrap();
        assert_eq!(
            text.lines().filter(|l| l.starts_with('d')).count(),
            5,
            "{text}"
        );
    }
    let cells: Vec<&str> = gated.split('|').map(str::trim).collect();
    let binarized: f64 = cells[7].split(" ± ").next().unwrap().parse().unwrap();
    assert!(binarized > 70.0 && binarized <= 100.0, "{gated}");
    let finetune = table
        .lines()
        .find(|l| l.starts_with("| finetune |"))
        .unwrap();
    assert_eq!(
        finetune.split('|').map(str::trim).nth(7),
        Some("–"),
        "{finetune}"
    );
}
