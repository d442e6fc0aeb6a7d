//! The README's main command and `gtk eval` on the built-in task set.

mod common;
use common::*;

#[test]
fn builtin_default_trains_and_evaluates() {
    let tmp = tempfile::tempdir().unwrap();
    let out = gtk(
        tmp.path(),
        &[
            "train",
            "--strategy",
            "all",
            "--steps",
            "300",
            "--name",
            "d",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for needle in [
        "gated",
        "shared",
        "separate",
        "predict-mean",
        "mean",
        "(* best per row; every column of a tie)",
        "runs/d",
    ] {
        assert!(
            stdout.contains(needle),
            "`{needle}` missing from:\n{stdout}"
        );
    }
    // Not a terminal: plain log lines per eval with steps/s and the gated masks' off shares.
    // The two rates say what they count: the log lines' include the evaluations, the
    // summary's training loop does not.
    let log_lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("step ") && !l.starts_with("step      0 "))
        .collect();
    assert!(!log_lines.is_empty(), "{stdout}");
    for l in &log_lines {
        assert!(l.contains(" steps/s incl. evals "), "{l}");
    }
    assert!(
        stdout.contains("gated masks off/undecided")
            && stdout.contains("steps/s over 300 steps, evals excluded ("),
        "{stdout}"
    );
    let config = std::fs::read_to_string(tmp.path().join("runs/d/config.toml")).unwrap();
    assert!(
        config.contains("steps = 300") && config.contains("[model]"),
        "{config}"
    );
    let eval = gtk(tmp.path(), &["eval", "runs/d"]);
    let (estdout, estderr) = text(&eval);
    assert!(eval.status.success(), "{estderr}");
    assert!(estdout.contains("at step 300"), "{estdout}");
    // The same checkpoint evaluates to the same table.
    fn table(s: &str) -> Vec<&str> {
        s.lines()
            .skip_while(|l| !l.starts_with("test mse"))
            .take(12)
            .collect()
    }
    // Both tables must be found (if the header text changed, both would be empty and equal).
    let (trained, evaluated) = (table(&stdout), table(&estdout));
    assert_eq!(trained.len(), 12, "no table in:\n{stdout}");
    assert!(
        trained[0].contains("gated") && trained.iter().any(|l| l.trim_start().starts_with("t9 ")),
        "{trained:?}"
    );
    assert_eq!(trained, evaluated);
}
