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
        "(* best per row)",
        "runs/d",
    ] {
        assert!(
            stdout.contains(needle),
            "`{needle}` missing from:\n{stdout}"
        );
    }
    // Not a terminal: plain log lines per eval with steps/s and the gated masks' off shares.
    assert!(
        stdout.contains("steps/s") && stdout.contains("gated masks off/undecided"),
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
    let table = |s: &str| {
        s.lines()
            .skip_while(|l| !l.starts_with("test mse"))
            .take(12)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(table(&stdout), table(&estdout));
}
