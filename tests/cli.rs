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

/// A tiny regression set (two linear tasks, 20 steps) for the flag tests below.
const TINY: &str = "[run]\nmodel = \"MODELS/linear.toml\"\nsteps = 20\neval_every = 10\n[defaults]\nkind = \"linear\"\n[[task]]\nname = \"a\"\n[[task]]\nname = \"b\"\n";

/// Every file of a folder with its bytes, to show that a command wrote nothing there.
fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// `gtk eval` with no RUN takes the latest run like export and report, and says it only reads
/// (it used to demand a RUN against its help, and to print "run saved in").
#[test]
fn eval_defaults_to_the_latest_run_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let set = write_task_set(tmp.path(), "set.toml", TINY);
    train_quiet(tmp.path(), &set, "old", &[]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let run = train_quiet(tmp.path(), &set, "new", &[]);
    let before = snapshot(&tmp.path().join("runs"));
    let latest = gtk(tmp.path(), &["eval"]);
    let (stdout, stderr) = text(&latest);
    assert!(latest.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("evaluating run runs/new at step 20 (read only)\n"),
        "{stdout}"
    );
    assert!(!stdout.contains("saved"), "{stdout}");
    let named = gtk(tmp.path(), &["eval", run.to_str().unwrap()]);
    let (named_stdout, _) = text(&named);
    let table = |s: &str| s.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert!(table(&stdout).contains("gated"), "{stdout}");
    assert_eq!(table(&stdout), table(&named_stdout));
    // --quiet leaves the table only; --runs-dir is eval's too.
    let quiet = gtk(tmp.path(), &["eval", "-q"]);
    assert_eq!(text(&quiet).0, table(&stdout) + "\n");
    assert_eq!(
        snapshot(&tmp.path().join("runs")),
        before,
        "eval wrote into runs/"
    );
    let elsewhere = gtk(tmp.path(), &["eval", "--runs-dir", "nowhere"]);
    assert_clean_error(&elsewhere, &["nowhere", "no runs folder", "gtk train"]);
}

/// `--lr` / `--mask-lr` on a new run replace the task set's rates and are recorded in its
/// config.toml (they used to be ignored with exit 0); a bad value is named as the flag, also
/// on --resume (it was blamed on state.json); a sweep refuses them.
#[test]
fn learning_rate_flags_apply_to_new_runs_and_are_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let set = write_task_set(tmp.path(), "set.toml", TINY);
    let run = train_quiet(
        tmp.path(),
        &set,
        "r",
        &["--lr", "0.0123", "--mask-lr", "0.0456"],
    );
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let cfg: toml::Table = toml::from_str(&config).unwrap();
    assert_eq!(cfg["run"]["lr"].as_float(), Some(0.0123), "{config}");
    assert_eq!(cfg["run"]["mask_lr"].as_float(), Some(0.0456), "{config}");
    // Without the flags the task set's own rate (linear sets: 0.001 by default) stays.
    let plain = train_quiet(tmp.path(), &set, "plain", &[]);
    let plain: toml::Table =
        toml::from_str(&std::fs::read_to_string(plain.join("config.toml")).unwrap()).unwrap();
    assert_ne!(plain["run"]["lr"].as_float(), Some(0.0123));
    let s = set.to_str().unwrap();
    for (flag, value) in [("--lr", "nan"), ("--mask-lr", "-1"), ("--lr", "1e300")] {
        let arg = format!("{flag}={value}");
        let out = gtk(
            tmp.path(),
            &["train", "--task-set", s, "--name", "bad", &arg],
        );
        assert_clean_error(
            &out,
            &[&format!("command line: `{flag}` must be a positive number")],
        );
        assert!(!tmp.path().join("runs/bad").exists());
    }
    let out = gtk(
        tmp.path(),
        &["train", "--resume", run.to_str().unwrap(), "--lr", "nan"],
    );
    let msg = assert_clean_error(&out, &["command line: `--lr`", "got NaN"]);
    assert!(!msg.contains("state.json"), "{msg}");
    let out = gtk(
        tmp.path(),
        &[
            "train",
            "--task-set",
            s,
            "--seeds",
            "0..2",
            "--lr",
            "0.1",
            "--name",
            "sw",
        ],
    );
    assert_clean_error(
        &out,
        &["--lr and --mask-lr apply to one run, not to a sweep"],
    );
    assert!(!tmp.path().join("runs/sw").exists());
}

/// `--strategy` takes a comma list (it accepted one value only) and `all`; a strategy named
/// twice, or `all` with others, is refused.
#[test]
fn strategy_takes_a_list() {
    let tmp = tempfile::tempdir().unwrap();
    let set = write_task_set(tmp.path(), "set.toml", TINY);
    let run = train_quiet(tmp.path(), &set, "two", &["--strategy", "gated,separate"]);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("state.json")).unwrap()).unwrap();
    assert_eq!(
        state["state"]["strategies"],
        serde_json::json!(["gated", "separate"]),
        "{state}"
    );
    let s = set.to_str().unwrap();
    for (list, needle) in [
        ("gated,gated", "--strategy lists `gated` twice"),
        ("all,gated", "`all` already stands for every strategy"),
        ("gated,finetune", "strategy `finetune` does not fit"),
    ] {
        let out = gtk(
            tmp.path(),
            &[
                "train",
                "--task-set",
                s,
                "--strategy",
                list,
                "--name",
                "bad",
            ],
        );
        assert_clean_error(&out, &[needle]);
        assert!(!tmp.path().join("runs/bad").exists(), "{list}");
    }
    // A sweep passes the list to every seed.
    let out = gtk(
        tmp.path(),
        &[
            "train",
            "--task-set",
            s,
            "--strategy",
            "gated,shared",
            "--seeds",
            "0,1",
            "--name",
            "sw",
            "--quiet",
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let summary = std::fs::read_to_string(tmp.path().join("runs/sw/summary.md")).unwrap();
    assert!(
        summary.contains("gated") && summary.contains("shared") && !summary.contains("separate"),
        "{summary}"
    );
}

/// Default output folders never collide: `report A B` is reports/A+B (not A's own report),
/// and a second export, report or adapt without --out takes the next free name instead of
/// refusing over an --out the user never gave. A failed command removes the folders it made.
#[test]
fn default_outputs_do_not_collide() {
    let tmp = tempfile::tempdir().unwrap();
    let set = write_task_set(tmp.path(), "set.toml", TINY);
    train_quiet(tmp.path(), &set, "a", &["--strategy", "all"]);
    train_quiet(tmp.path(), &set, "b", &["--strategy", "all"]);
    let ok = |args: &[&str]| {
        let out = gtk(tmp.path(), args);
        assert!(out.status.success(), "{args:?}: {:?}", text(&out));
        text(&out).0
    };
    ok(&["report", "runs/a", "-q"]);
    ok(&["report", "runs/a", "runs/b", "-q"]);
    let again = ok(&["report", "runs/a", "-q"]);
    assert!(again.contains("reports/a-2/report.md"), "{again}");
    for dir in ["reports/a", "reports/a+b", "reports/a-2"] {
        assert!(tmp.path().join(dir).join("report.md").is_file(), "{dir}");
    }
    ok(&["export", "runs/a", "-q"]);
    let again = ok(&["export", "runs/a", "-q"]);
    assert!(again.contains("to exports/a-2\n"), "{again}");
    assert!(tmp.path().join("exports/a-2/a.onnx").is_file());
    let new = write_task_set(
        tmp.path(),
        "new.toml",
        "[adapt]\nmethod = \"mix\"\nshots = 10\nsteps = 5\nbaselines = false\n[defaults]\nkind = \"linear\"\n[[task]]\nname = \"c\"\nmask_id = 9\n",
    );
    let new = new.to_str().unwrap();
    let first = ok(&["adapt", "runs/a", "--task-set", new, "-q"]);
    assert!(first.contains("-> runs/a-new with"), "{first}");
    let second = ok(&["adapt", "runs/a", "--task-set", new, "-q"]);
    assert!(second.contains("-> runs/a-new-2 with"), "{second}");
    assert!(tmp.path().join("runs/a-new-2/state.json").is_file());

    // Failures leave no empty parents behind (exports/ and reports/ did not exist here).
    let clean = tempfile::tempdir().unwrap();
    std::fs::create_dir(clean.path().join("notarun")).unwrap();
    let out = gtk(clean.path(), &["export", "notarun"]);
    assert_clean_error(&out, &["notarun"]);
    let out = gtk(clean.path(), &["report", "notarun", "--out", "deep/er/rep"]);
    assert_clean_error(&out, &["notarun"]);
    let left: Vec<String> = std::fs::read_dir(clean.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["notarun".to_string()]);
}

/// --runs-dir, --data-dir and --quiet are one set of shared flags: the same help wherever
/// they appear, and present on every subcommand they apply to.
#[test]
fn shared_flags_are_the_same_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let help = |cmd: &[&str]| {
        let mut args = cmd.to_vec();
        args.push("--help");
        let out = gtk(tmp.path(), &args);
        assert!(out.status.success());
        text(&out).0
    };
    // The help paragraph of `flag` in a help text (its line and the indented lines after it).
    fn paragraph(help: &str, flag: &str) -> Option<String> {
        let mut lines = help
            .lines()
            .skip_while(|l| !l.trim_start().starts_with(flag) && !l.contains(&format!(", {flag}")));
        let first = lines.next()?;
        let rest: Vec<&str> = lines.take_while(|l| l.starts_with("          ")).collect();
        // Short and long help lay the same text out differently: compare the words.
        let words: Vec<&str> = std::iter::once(first)
            .chain(rest)
            .flat_map(str::split_whitespace)
            .collect();
        Some(words.join(" "))
    }
    for (flag, commands) in [
        (
            "--runs-dir",
            &[&["train"][..], &["eval"], &["export"], &["report"]][..],
        ),
        (
            "--data-dir",
            &[
                &["train"][..],
                &["eval"],
                &["export"],
                &["adapt"],
                &["data", "fetch"],
                &["data", "verify"],
            ],
        ),
        (
            "--quiet",
            &[
                &["train"][..],
                &["eval"],
                &["export"],
                &["report"],
                &["adapt"],
            ],
        ),
    ] {
        let texts: Vec<String> = commands
            .iter()
            .map(|c| paragraph(&help(c), flag).unwrap_or_else(|| panic!("{c:?} has no {flag}")))
            .collect();
        for (c, t) in commands.iter().zip(&texts) {
            assert_eq!(
                t, &texts[0],
                "{flag} of {c:?} differs from {:?}",
                commands[0]
            );
        }
    }
}
