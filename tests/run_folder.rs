//! The run folder's contract (book: "The run folder"): atomic commits under faults, one
//! writer, readers that never write, divergence and a full disk.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A small linear task set: 30 steps, a commit every 10, every record kind logged.
const SMALL: &str = r#"
[run]
model = "MODELS/linear.toml"
steps = 30
eval_every = 10
log_every = 5
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

/// `gtk` with extra environment variables.
fn gtk_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gtk"));
    cmd.args(args).current_dir(cwd).env_remove("GATEKIT_DATA");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("gtk runs")
}

fn train_small(dir: &Path, name: &str, env: &[(&str, &str)]) -> Output {
    let set = write_task_set(dir, "small.toml", SMALL);
    gtk_env(
        dir,
        &[
            "train",
            "--task-set",
            set.to_str().unwrap(),
            "--strategy",
            "all",
            "--name",
            name,
            "--quiet",
        ],
        env,
    )
}

/// Every file under `dir` (relative path → bytes), skipping the TensorBoard folder, the lock
/// and timing.json, which are not results.
fn result_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if ["tb", "writer.lock", "timing.json"].contains(&name.as_str()) {
            continue;
        }
        out.insert(name, std::fs::read(e.path()).unwrap());
    }
    out
}

fn assert_same_files(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>, context: &str) {
    let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(a), names(b), "{context}: file names differ");
    for (k, v) in a {
        assert!(
            &b[k] == v,
            "{context}: {k} differs ({} vs {} bytes)",
            v.len(),
            b[k].len()
        );
    }
}

#[test]
fn identical_runs_give_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(train_small(tmp.path(), "one", &[]).status.success());
    assert!(train_small(tmp.path(), "two", &[]).status.success());
    let one = result_files(&tmp.path().join("runs/one"));
    let two = result_files(&tmp.path().join("runs/two"));
    assert!(
        one.keys().any(|k| k.starts_with("checkpoint-00000030-")),
        "{:?}",
        one.keys()
    );
    assert_eq!(
        one.len(),
        4,
        "config, state, metrics, one checkpoint: {:?}",
        one.keys()
    );
    assert_same_files(&one, &two, "two identical runs");
}

/// Aborts the trainer before every file-system operation of a whole run (creation, every
/// append, every commit), resumes it, and compares the result with the uninterrupted run.
#[test]
fn a_kill_before_any_file_operation_resumes_to_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = train_small(tmp.path(), "ref", &[("GATEKIT_TRACE_FS_OPS", "1")]);
    assert!(reference.status.success(), "{:?}", text(&reference));
    let (_, stderr) = text(&reference);
    let ops: Vec<&str> = stderr.lines().filter(|l| l.starts_with("fs-op ")).collect();
    let total = ops.len();
    // Creation (about 14 operations), then appends and three commits of about 12 each.
    assert!(total > 40, "{total} operations:\n{stderr}");
    let commits = ops
        .iter()
        .filter(|l| l.contains("rename") && l.ends_with("state.json"))
        .count();
    assert_eq!(commits, 4, "step-0 commit + 3 saves:\n{stderr}");
    let expected = result_files(&tmp.path().join("runs/ref"));
    let mut creations_interrupted = 0;
    for n in 1..=total {
        let name = format!("k{n}");
        let out = train_small(
            tmp.path(),
            &name,
            &[("GATEKIT_ABORT_AT_FS_OP", &n.to_string())],
        );
        assert!(!out.status.success(), "op {n}: the abort hook did not fire");
        let (_, err) = text(&out);
        assert!(
            err.contains(&format!("aborting before fs-op {n}")),
            "op {n}: {err}"
        );
        let run = tmp.path().join("runs").join(&name);
        let resumed = gtk(
            tmp.path(),
            &["train", "--resume", run.to_str().unwrap(), "--quiet"],
        );
        if !resumed.status.success() {
            // Only a creation can be interrupted so early that there is no commit yet: the
            // folder is then empty (or absent), and training the same name again claims it.
            let (_, err) = text(&resumed);
            assert!(
                !run.exists() || entries(&run) == 0,
                "op {n} ({}): resume failed on a non-empty folder: {err}",
                ops[n - 1]
            );
            creations_interrupted += 1;
            let again = train_small(tmp.path(), &name, &[]);
            assert!(again.status.success(), "op {n}: {:?}", text(&again));
        }
        let got = result_files(&run);
        assert_same_files(
            &expected,
            &got,
            &format!("abort before op {n} ({})", ops[n - 1]),
        );
        // No leftovers of the killed writer anywhere.
        let stray: Vec<String> = std::fs::read_dir(tmp.path().join("runs"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(
            stray.is_empty() || creations_interrupted > 0,
            "op {n}: stray temp folders {stray:?}"
        );
        std::fs::remove_dir_all(&run).unwrap();
    }
    eprintln!(
        "{total} file operations, each interrupted once; {creations_interrupted} of them during creation"
    );
    assert!(
        creations_interrupted > 0 && creations_interrupted < 16,
        "{creations_interrupted}"
    );
}

#[test]
fn readers_write_nothing_even_while_a_trainer_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = train_small(tmp.path(), "r", &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    let run = tmp.path().join("runs/r");
    let before = fingerprint(&run);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let adapt_set = write_task_set(
        tmp.path(),
        "new.toml",
        "[adapt]\nmethod = \"mix\"\nshots = 10\nsteps = 5\n[defaults]\nkind = \"linear\"\ninputs = 8\noutputs = 4\ntrain = 20\ntest = 50\n[[task]]\nname = \"c\"\nmask_id = 9\n",
    );
    let readers: Vec<Vec<String>> = vec![
        vec!["eval".into(), "runs/r".into()],
        vec![
            "export".into(),
            "runs/r".into(),
            "--out".into(),
            "ex".into(),
        ],
        vec![
            "report".into(),
            "runs/r".into(),
            "--out".into(),
            "rep".into(),
        ],
        vec![
            "adapt".into(),
            "runs/r".into(),
            "--task-set".into(),
            adapt_set.to_str().unwrap().into(),
            "--out".into(),
            "adapted".into(),
            "--quiet".into(),
        ],
    ];
    for args in &readers {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = gtk(tmp.path(), &args);
        assert!(out.status.success(), "{args:?}: {:?}", text(&out));
    }
    assert!(tmp.path().join("adapted/state.json").is_file());
    assert!(tmp.path().join("ex/a.onnx").is_file());
    assert!(tmp.path().join("rep/report.html").is_file());
    assert!(
        fingerprint(&run) == before,
        "a reader changed the run folder"
    );

    // While a trainer writes: a longer run, read over and over until it ends. Every read
    // sees one whole commit (a step that is a multiple of eval_every).
    let long = write_task_set(
        tmp.path(),
        "long.toml",
        &SMALL
            .replace("steps = 30", "steps = 3000")
            .replace("eval_every = 10", "eval_every = 50"),
    );
    let mut trainer = gtk_spawn(
        tmp.path(),
        &[
            "train",
            "--task-set",
            long.to_str().unwrap(),
            "--strategy",
            "all",
            "--name",
            "live",
            "--quiet",
        ],
    );
    let mut reads = 0;
    let mut steps = std::collections::BTreeSet::new();
    while trainer.try_wait().unwrap().is_none() {
        if !tmp.path().join("runs/live/state.json").is_file() {
            continue;
        }
        let out = gtk(tmp.path(), &["eval", "runs/live"]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "read while training: {stderr}");
        let step: usize = stdout
            .lines()
            .find_map(|l| l.strip_prefix("evaluating run runs/live at step "))
            .and_then(|s| s.trim().strip_suffix("(read only)")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{stdout}"));
        assert_eq!(step % 50, 0, "read a step that was never committed: {step}");
        steps.insert(step);
        reads += 1;
    }
    assert!(trainer.wait().unwrap().success());
    eprintln!("{reads} reads overlapped the trainer, at steps {steps:?}");
    assert!(reads >= 3, "only {reads} reads overlapped the trainer");
    // The readers did not disturb the trainer: its files equal an undisturbed run's.
    let quiet = gtk(
        tmp.path(),
        &[
            "train",
            "--task-set",
            long.to_str().unwrap(),
            "--strategy",
            "all",
            "--name",
            "quiet",
            "--quiet",
        ],
    );
    assert!(quiet.status.success());
    assert_same_files(
        &result_files(&tmp.path().join("runs/quiet")),
        &result_files(&tmp.path().join("runs/live")),
        &format!("trainer read {reads} times (steps {steps:?})"),
    );
}

/// Root ignores file permissions, so the read-only check bind-mounts the run read-only (CI runs
/// as root); as another user it removes the write permissions instead.
#[test]
fn readers_work_on_a_read_only_run_folder() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(train_small(tmp.path(), "r", &[]).status.success());
    let run = tmp.path().join("runs/r");
    let ro = tmp.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let mounted = is_root
        && Command::new("mount")
            .args(["--bind", run.to_str().unwrap(), ro.to_str().unwrap()])
            .status()
            .is_ok_and(|s| s.success())
        && Command::new("mount")
            .args(["-o", "remount,ro,bind", ro.to_str().unwrap()])
            .status()
            .is_ok_and(|s| s.success());
    let target = if mounted {
        // Prove it is read-only for root too.
        assert!(
            std::fs::write(ro.join("probe"), b"x").is_err(),
            "the mount is writable"
        );
        ro.clone()
    } else if !is_root {
        for e in std::fs::read_dir(&run).unwrap().flatten() {
            let mut p = e.metadata().unwrap().permissions();
            p.set_readonly(true);
            std::fs::set_permissions(e.path(), p).unwrap();
        }
        let mut p = std::fs::metadata(&run).unwrap().permissions();
        p.set_readonly(true);
        std::fs::set_permissions(&run, p).unwrap();
        run.clone()
    } else {
        eprintln!(
            "note: skipping: running as root without mount permission, so no read-only folder can be made"
        );
        return;
    };
    let t = target.to_str().unwrap();
    let adapt_set = write_task_set(
        tmp.path(),
        "new.toml",
        "[adapt]\nmethod = \"mix\"\nshots = 10\nsteps = 5\n[defaults]\nkind = \"linear\"\ninputs = 8\noutputs = 4\ntrain = 20\ntest = 50\n[[task]]\nname = \"c\"\nmask_id = 9\n",
    );
    let a = adapt_set.to_str().unwrap();
    let runs: Vec<Vec<&str>> = vec![
        vec!["eval", t],
        vec!["export", t, "--out", "ex"],
        vec!["report", t, "--out", "rep"],
        vec!["adapt", t, "--task-set", a, "--out", "adapted", "--quiet"],
    ];
    for args in runs {
        let out = gtk(tmp.path(), &args);
        assert!(
            out.status.success(),
            "{args:?} on a read-only run: {:?}",
            text(&out)
        );
    }
    let resume = gtk(tmp.path(), &["train", "--resume", t]);
    assert_clean_error(&resume, &["writer.lock"]);
    if mounted {
        let _ = Command::new("umount").arg(&ro).status();
    } else {
        let mut p = std::fs::metadata(&run).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        p.set_readonly(false);
        std::fs::set_permissions(&run, p).unwrap();
    }
}

/// Waits until the run's lock is held by process `pid` (its file names it).
fn wait_for_lock(run: &Path, pid: u32) {
    let holder = format!("process {pid} ");
    for _ in 0..500 {
        if std::fs::read_to_string(run.join("writer.lock")).is_ok_and(|s| s.contains(&holder)) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the trainer never took the lock of {}", run.display());
}

#[test]
fn a_second_writer_is_refused_and_nothing_is_logged_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let long = write_task_set(
        tmp.path(),
        "long.toml",
        &SMALL
            .replace("steps = 30", "steps = 4000")
            .replace("eval_every = 10", "eval_every = 500"),
    );
    let set = long.to_str().unwrap();
    // Stop early, then resume it twice at once.
    let first = gtk(
        tmp.path(),
        &[
            "train",
            "--task-set",
            set,
            "--name",
            "r",
            "--stop-at",
            "500",
            "--quiet",
        ],
    );
    assert!(first.status.success());
    let mut a = gtk_spawn(tmp.path(), &["train", "--resume", "runs/r", "--quiet"]);
    wait_for_lock(&tmp.path().join("runs/r"), a.id());
    let b = gtk(tmp.path(), &["train", "--resume", "runs/r", "--quiet"]);
    let msg = assert_clean_error(
        &b,
        &["runs/r", "is being written by process", &a.id().to_string()],
    );
    assert!(msg.contains("--resume runs/r"), "{msg}");
    assert!(a.wait().unwrap().success());
    let reference = gtk(
        tmp.path(),
        &["train", "--task-set", set, "--name", "ref", "--quiet"],
    );
    assert!(reference.status.success());
    assert_same_files(
        &result_files(&tmp.path().join("runs/ref")),
        &result_files(&tmp.path().join("runs/r")),
        "resumed while a second writer was refused",
    );
    let log = std::fs::read_to_string(tmp.path().join("runs/r/metrics.jsonl")).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for line in log.lines() {
        assert!(seen.insert(line), "record logged twice: {line}");
    }

    // Two trainers creating the same name at once: exactly one gets it, a few times over.
    for round in 0..4 {
        let name = format!("same{round}");
        let spawn = || {
            gtk_spawn(
                tmp.path(),
                &[
                    "train",
                    "--task-set",
                    set,
                    "--name",
                    &name,
                    "--steps",
                    "200",
                    "--quiet",
                ],
            )
        };
        let (p, q) = (spawn(), spawn());
        let (p, q) = (p.wait_with_output().unwrap(), q.wait_with_output().unwrap());
        let ok = [&p, &q].iter().filter(|o| o.status.success()).count();
        assert_eq!(ok, 1, "round {round}: {:?} / {:?}", text(&p), text(&q));
        let loser = if p.status.success() { &q } else { &p };
        let err = String::from_utf8_lossy(&loser.stderr);
        assert!(
            err.contains("already exists") || err.contains("is being written by"),
            "round {round}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        let log =
            std::fs::read_to_string(tmp.path().join(format!("runs/{name}/metrics.jsonl"))).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        let unique: std::collections::BTreeSet<&&str> = lines.iter().collect();
        assert_eq!(
            lines.len(),
            unique.len(),
            "round {round}: duplicated records"
        );
    }
}

#[test]
fn divergence_stops_with_the_last_good_commit_and_resumes_with_a_smaller_lr() {
    let tmp = tempfile::tempdir().unwrap();
    let set = write_task_set(
        tmp.path(),
        "wild.toml",
        &SMALL.replace("[run]\n", "[run]\nlr = 1e6\n"),
    );
    let out = gtk(
        tmp.path(),
        &[
            "train",
            "--task-set",
            set.to_str().unwrap(),
            "--name",
            "r",
            "--strategy",
            "all",
        ],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    for needle in [
        "training diverged at step",
        "is not finite",
        "strategy `",
        "task `",
        "last good commit (step 0)",
        "--lr",
    ] {
        assert!(line.contains(needle), "`{needle}` missing: {line}");
    }
    let state = std::fs::read_to_string(tmp.path().join("runs/r/state.json")).unwrap();
    assert!(state.contains("\"step\": 0"), "{state}");
    let log = std::fs::read_to_string(tmp.path().join("runs/r/metrics.jsonl")).unwrap_or_default();
    assert!(!log.contains("null"), "{log}");
    // Readers see the last good commit.
    assert!(gtk(tmp.path(), &["eval", "runs/r"]).status.success());
    let resumed = gtk(
        tmp.path(),
        &["train", "--resume", "runs/r", "--lr", "0.01", "--quiet"],
    );
    let (stdout, stderr) = text(&resumed);
    assert!(resumed.status.success(), "{stderr}");
    assert!(
        !stdout.contains("NaN") && !stdout.contains("inf"),
        "{stdout}"
    );
    let state = std::fs::read_to_string(tmp.path().join("runs/r/state.json")).unwrap();
    assert!(
        state.contains("\"step\": 30") && state.contains("\"lr\": 0.01"),
        "{state}"
    );
    let log = std::fs::read_to_string(tmp.path().join("runs/r/metrics.jsonl")).unwrap();
    assert!(!log.contains("null"));
    // An lr that f32 cannot hold is refused when the task set is read.
    let huge = write_task_set(
        tmp.path(),
        "huge.toml",
        &SMALL.replace("[run]\n", "[run]\nlr = 1e300\n"),
    );
    let out = gtk(
        tmp.path(),
        &["train", "--task-set", huge.to_str().unwrap(), "--name", "h"],
    );
    assert_clean_error(&out, &["run.lr", "finite in F32", "1e300"]);
    assert!(!tmp.path().join("runs/h").exists());
}

fn mount_tmpfs(dir: &Path, size: &str) -> bool {
    Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            dir.to_str().unwrap(),
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Disk full on a small tmpfs (needs root: CI runs as root): a clear error, the previous
/// commit intact and readable, and after freeing space a resume equal to the uninterrupted run.
#[test]
fn a_full_disk_keeps_the_last_commit_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(train_small(tmp.path(), "ref", &[]).status.success());
    let expected = result_files(&tmp.path().join("runs/ref"));
    let set = write_task_set(tmp.path(), "small.toml", SMALL);
    let mut failed_mid_run = 0;
    for free_kib in [24u64, 32, 40, 48, 56, 64, 80, 96] {
        let disk = tmp.path().join(format!("disk{free_kib}"));
        std::fs::create_dir(&disk).unwrap();
        if !mount_tmpfs(&disk, "1m") {
            eprintln!("note: skipping: cannot mount a tmpfs here (needs root)");
            return;
        }
        let filler_len = 1024 * 1024 - free_kib * 1024;
        std::fs::write(disk.join("filler"), vec![0u8; filler_len as usize]).unwrap();
        let out = gtk(
            &disk,
            &[
                "train",
                "--task-set",
                set.to_str().unwrap(),
                "--strategy",
                "all",
                "--name",
                "r",
                "--quiet",
            ],
        );
        let run = disk.join("runs/r");
        if !out.status.success() && run.join("state.json").is_file() {
            let (_, stderr) = text(&out);
            assert_clean_error(&out, &["No space left on device"]);
            // The last commit is whole: a reader accepts it.
            let eval = gtk(&disk, &["eval", "runs/r"]);
            assert!(
                eval.status.success(),
                "{free_kib} KiB: {:?}\n{stderr}",
                text(&eval)
            );
            std::fs::remove_file(disk.join("filler")).unwrap();
            let resumed = gtk(&disk, &["train", "--resume", "runs/r", "--quiet"]);
            assert!(resumed.status.success(), "{:?}", text(&resumed));
            assert_same_files(
                &expected,
                &result_files(&run),
                &format!("disk full at {free_kib} KiB free"),
            );
            failed_mid_run += 1;
        }
        let _ = Command::new("umount").arg(&disk).status();
    }
    eprintln!("{failed_mid_run} disk sizes failed mid-run and resumed");
    assert!(
        failed_mid_run >= 2,
        "only {failed_mid_run} sizes failed mid-run"
    );
}

/// The fixture of [`config_toml_is_byte_for_byte_as_recorded`].
const CONFIG_FIXTURE: &str = "tests/fixtures/config_toml.json";

/// A `[run]` table that gives every key a value other than its default (sequential, every
/// optional key present), so each field's name, order and formatting is pinned.
const EVERY_KEY: &str = r#"
[run]
steps = 40
schedule = "sequential"
phase_steps = 20
w_policy = "freeze-after-first"
batch_size = 8
optimizer = "momentum"
lr = 0.05
momentum = 0.8
adam_beta2 = 0.99
lr_schedule = "cosine"
lr_warmup = 3
mask_lr_warmup = 2
mask_lr_schedule = "cosine"
steps_per_task = 2
eval_every = 5
eval_subset = 0
full_eval_every = 10
full_eval_at_start = true
checkpoint_every = 10
log_every = 5
seed = 7
dtype = "f64"
gate = "hat"
hat_max_scale = 20.0
binarize_after = 30
w_init = "torch"
mask_recipe = "paper"
mask_optimizer = "adam"
mask_lr_scale = "2T"
mask_init = [1.0, 0.5]
mask_regularizer = "abs"
mask_regularizer_weight = 0.01
eval_train_limit = 100
engine = "reference"
eval_at_start = false
[model]
name = "linear"
input = [8]
[[model.layer]]
type = "linear"
out = 4
[defaults]
kind = "linear"
[[task]]
name = "a"
[[task]]
name = "b"
"#;

/// The resolved task set a run writes (`config.toml`), and the resolved form of every shipped
/// task set and of a set that gives every `[run]` key, are byte for byte what they were before
/// `RunConfig` was grouped into structs (issue 26): the grouping is in Rust only, so the file
/// users read, and the run folders written before, stay as they are. Paths are shown relative
/// to the repository. Re-record only when a change is meant to alter the file (and say so in
/// the commit): `GATEKIT_RECORD_FIXTURES=1 cargo test --test run_folder config_toml`.
#[test]
fn config_toml_is_byte_for_byte_as_recorded() {
    use sha2::{Digest, Sha256};
    let root = root().display().to_string();
    let mut got: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut add = |key: String, text: String| {
        let text = text.replace(&root, "<repo>");
        let hash: String = Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        got.insert(key, (hash, text));
    };
    // What `gtk train` writes: the set after its tasks were built and pinned.
    let tmp = tempfile::tempdir().unwrap();
    let run = train_quiet(
        tmp.path(),
        &repo("tasks/sinusoid.toml"),
        "r",
        &["--steps", "20", "--lr", "0.002"],
    );
    add(
        "run: tasks/sinusoid.toml --steps 20 --lr 0.002".into(),
        std::fs::read_to_string(run.join("config.toml")).unwrap(),
    );
    let set = write_task_set(tmp.path(), "every.toml", EVERY_KEY);
    let every = gatekit::TaskSet::load(&set).unwrap();
    add("every key".into(), every.to_toml());
    let mut files = Vec::new();
    for dir in ["tasks", "tasks/paper-recipe"] {
        for entry in std::fs::read_dir(repo(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(files.len() > 30, "{} task sets", files.len());
    for path in files {
        let key = path.display().to_string().replace(&root, "<repo>");
        match gatekit::TaskSet::load(&path) {
            Ok(set) => add(key, set.to_toml()),
            // `gtk adapt`'s files (an `[adapt]` table) are not training task sets.
            Err(_) if key.contains("/adapt-") => {}
            Err(e) => panic!("{key}: {e}"),
        }
    }
    let fixture = repo(CONFIG_FIXTURE);
    if std::env::var_os("GATEKIT_RECORD_FIXTURES").is_some() {
        let hashes: BTreeMap<&String, &String> = got.iter().map(|(k, (h, _))| (k, h)).collect();
        let text = serde_json::to_string_pretty(&hashes).unwrap();
        std::fs::write(&fixture, text + "\n").unwrap();
        eprintln!("recorded {}", fixture.display());
        return;
    }
    let want: BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(&fixture).unwrap()).unwrap();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the recorded task sets"
    );
    for (key, (hash, text)) in &got {
        assert_eq!(hash, &want[key], "{key} resolves to other bytes:\n{text}");
    }
    // Parsing the written file again gives the same configuration (old folders open).
    let again =
        gatekit::TaskSet::parse_with(&every.to_toml(), &set, &|_: &str| unreachable!()).unwrap();
    assert_eq!(again.run, every.run);
    assert_eq!(again.to_toml(), every.to_toml());
}
