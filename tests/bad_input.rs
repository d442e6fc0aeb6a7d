//! Every bad input gives one clear error line, exit code 2, no panic and nothing written.

mod common;
use common::*;

const GOOD: &str = r#"
[run]
model = "MODELS/linear.toml"
steps = 20
eval_every = 10
[defaults]
kind = "linear"
[[task]]
name = "a"
"#;

fn train_fails(body: &str, needles: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let set = write_task_set(tmp.path(), "set.toml", body);
    let out = gtk(
        tmp.path(),
        &["train", "--task-set", set.to_str().unwrap(), "--name", "r"],
    );
    let msg = assert_clean_error(&out, needles);
    assert_eq!(
        entries(&tmp.path().join("runs")),
        0,
        "nothing may be written on bad input"
    );
    msg
}

#[test]
fn the_good_set_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let set = write_task_set(tmp.path(), "set.toml", GOOD);
    let out = gtk(
        tmp.path(),
        &[
            "train",
            "--task-set",
            set.to_str().unwrap(),
            "--name",
            "r",
            "--quiet",
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(checkpoint_path(&tmp.path().join("runs/r")).is_file());
}

#[test]
fn missing_task_set_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = gtk(tmp.path(), &["train", "--task-set", "nope.toml"]);
    assert_clean_error(&out, &["nope.toml", "No such file"]);
    assert_eq!(entries(&tmp.path().join("runs")), 0);
}

#[test]
fn malformed_toml_names_line_and_column() {
    let msg = train_fails(
        &GOOD.replace("steps = 20", "steps = = 20"),
        &["set.toml:4:"],
    );
    assert!(msg.contains("set.toml:4:9"), "{msg}");
}

#[test]
fn unknown_run_key_is_named() {
    train_fails(
        &GOOD.replace("steps = 20", "stepz = 20"),
        &["unknown field `stepz`", "steps"],
    );
}

#[test]
fn unknown_task_kind_lists_known_kinds() {
    train_fails(
        &GOOD.replace("kind = \"linear\"", "kind = \"lineer\""),
        &["unknown task kind `lineer`", "linear, ", "sinusoid"],
    );
}

#[test]
fn unknown_parameter_lists_valid_ones() {
    train_fails(
        &format!("{GOOD}nois = 0.1\n"),
        &["parameter `nois`", "noise", "mask_prob"],
    );
}

#[test]
fn mistyped_parameter_names_the_type() {
    train_fails(
        &format!("{GOOD}noise = \"loud\"\n"),
        &["parameter `noise`", "must be a float", "string"],
    );
}

#[test]
fn non_positive_steps() {
    train_fails(
        &GOOD.replace("steps = 20", "steps = 0"),
        &["run.steps", "positive", "got 0"],
    );
    train_fails(
        &GOOD.replace("steps = 20", "steps = -5"),
        &["run.steps", "got -5"],
    );
}

#[test]
fn model_that_does_not_fit_the_task() {
    train_fails(
        &format!("{GOOD}inputs = 3\n"),
        &["model `linear` takes input [8]", "task `a` gives [3]"],
    );
    train_fails(
        &format!("{GOOD}outputs = 2\n"),
        &["outputs [4]", "needs [2]"],
    );
}

#[test]
fn missing_model_file() {
    train_fails(&GOOD.replace("linear.toml", "nope.toml"), &["nope.toml"]);
}

#[test]
fn missing_run_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let out = gtk(tmp.path(), &["eval", "runs/ghost"]);
    assert_clean_error(&out, &["runs/ghost", "no such run folder"]);
    let out = gtk(tmp.path(), &["train", "--resume", "runs/ghost"]);
    assert_clean_error(&out, &["runs/ghost", "no such run folder"]);
}

#[test]
fn corrupt_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let set = write_task_set(tmp.path(), "set.toml", GOOD);
    let out = gtk(
        tmp.path(),
        &[
            "train",
            "--task-set",
            set.to_str().unwrap(),
            "--name",
            "r",
            "--quiet",
        ],
    );
    assert!(out.status.success());
    let ckpt = checkpoint_path(&tmp.path().join("runs/r"));
    let mut bytes = std::fs::read(&ckpt).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&ckpt, &bytes).unwrap();
    let out = gtk(tmp.path(), &["eval", "runs/r"]);
    assert_clean_error(
        &out,
        &["checkpoint-00000020-", "corrupt", "checksum mismatch"],
    );
    // Garbage header.
    std::fs::write(&ckpt, b"\xff\xff\xff\xff\xff\xff\xff\x7fnot a checkpoint").unwrap();
    let out = gtk(tmp.path(), &["train", "--resume", "runs/r"]);
    assert_clean_error(
        &out,
        &["checkpoint-00000020-", "corrupt", "checksum mismatch"],
    );
}

#[test]
fn existing_run_name_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let set = write_task_set(tmp.path(), "set.toml", GOOD);
    let args = [
        "train",
        "--task-set",
        set.to_str().unwrap(),
        "--name",
        "r",
        "--quiet",
    ];
    assert!(gtk(tmp.path(), &args).status.success());
    assert_clean_error(
        &gtk(tmp.path(), &args),
        &["runs/r", "already exists", "--resume"],
    );
}

#[test]
fn bad_value_in_enum_field() {
    train_fails(
        &GOOD.replace("steps = 20", "steps = 20\noptimizer = \"lion\""),
        &["lion", "sgd", "adam", "rmsprop"],
    );
}

/// A model file that does not parse: one line naming the file, line and column (the TOML
/// parser's own rendering spans several lines).
#[test]
fn malformed_model_file_is_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("bad-model.toml"),
        "name = \"m\"\ninput = [8]\n[[layer]]\ntype = \"linear\"\nout = \"four\"\n",
    )
    .unwrap();
    let body = GOOD.replace("MODELS/linear.toml", "bad-model.toml");
    let set = tmp.path().join("set.toml");
    std::fs::write(&set, body).unwrap();
    let out = gtk(
        tmp.path(),
        &["train", "--task-set", set.to_str().unwrap(), "--name", "r"],
    );
    assert_clean_error(
        &out,
        &["bad-model.toml:3:1: invalid type: string \"four\", expected usize"],
    );
}

/// `run.model` next to an inline `[model]` table: the file would be ignored, so it is an error.
#[test]
fn run_model_and_inline_model_together() {
    let body = format!(
        "{GOOD}\n[model]\nname = \"inline\"\ninput = [4]\n[[model.layer]]\ntype = \"linear\"\nout = 4\n"
    );
    train_fails(
        &body,
        &["set.toml", "run.model", "inline [model]", "keep one"],
    );
}

/// Misspelt keys get the likely key named: a [run] key (instead of a line of every valid key),
/// a task parameter, a task kind, an enum value. Far-off names get the full list, no guess.
#[test]
fn misspelt_names_get_a_suggestion() {
    let msg = train_fails(
        &GOOD.replace("steps = 20", "stepz = 20"),
        &["set.toml:4:1: unknown field `stepz`; did you mean `steps`?"],
    );
    assert!(!msg.contains("batch_size"), "the list is dropped: {msg}");
    let msg = train_fails(
        &GOOD.replace("steps = 20", "steps = 20\nxyzzy = 1"),
        &["unknown field `xyzzy`, expected one of", "`batch_size`"],
    );
    assert!(!msg.contains("did you mean"), "{msg}");
    train_fails(
        &format!("{GOOD}nosie = 0.1\n"),
        &[
            "task `a`: parameter `nosie` is not a parameter of kind `linear`; did you mean `noise`? its parameters are: ",
        ],
    );
    train_fails(
        &GOOD.replace("kind = \"linear\"", "kind = \"linaer\""),
        &["unknown task kind `linaer`", "; did you mean `linear`?"],
    );
    train_fails(
        &GOOD.replace("steps = 20", "steps = 20\noptimizer = \"adan\""),
        &["unknown variant `adan`; did you mean `adam`?"],
    );
}

/// The mnist kind's `background` misspelt (the issue's example) is caught when the set
/// is read, before any data is needed.
#[test]
fn misspelt_image_parameter_is_named() {
    train_fails(
        "[run]\nmodel = \"MODELS/lenet5.toml\"\nsteps = 20\n[[task]]\nname = \"a\"\nkind = \"mnist\"\nbackround = [1.0, 0.0, 0.0]\n",
        &["parameter `backround`", "did you mean `background`?"],
    );
}

/// A wrong `run.model` path names the key, the value as written and where it was looked for
/// (the raw OS error named neither the key nor the rule for relative paths).
#[test]
fn missing_model_file_names_run_model() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("sets")).unwrap();
    let set = write_task_set(
        &tmp.path().join("sets"),
        "set.toml",
        &GOOD.replace("MODELS/linear.toml", "models/linear.toml"),
    );
    let out = gtk(
        tmp.path(),
        &["train", "--task-set", set.to_str().unwrap(), "--name", "r"],
    );
    let want = format!(
        "set.toml: `run.model` = \"models/linear.toml\": cannot read {}: No such file or directory",
        tmp.path().join("sets/models/linear.toml").display()
    );
    assert_clean_error(
        &out,
        &[
            &want,
            "relative path is taken from the task-set file's folder",
        ],
    );
    assert_eq!(entries(&tmp.path().join("runs")), 0);
}

/// A `tensors` task of flat rows under a model that takes an image: the sizes agree, so the
/// error says which `shape` to set.
#[test]
fn flat_rows_under_an_image_model_suggest_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let mut csv = String::from("a,b,c,d,y\n");
    for r in 0..8 {
        csv.push_str(&format!("{r},1,2,3,{}\n", r % 2));
    }
    std::fs::write(tmp.path().join("d.csv"), csv).unwrap();
    let body = "[run]\nsteps = 5\n[model]\nname = \"img\"\ninput = [1, 2, 2]\n\
        [[model.layer]]\ntype = \"flatten\"\n[[model.layer]]\ntype = \"linear\"\nout = 2\n\
        [[task]]\nname = \"t\"\nkind = \"tensors\"\ntrain = \"d.csv\"\nx = \"a, b, c, d\"\n\
        objective = \"classification\"\n";
    let set = write_task_set(tmp.path(), "set.toml", body);
    let out = gtk(
        tmp.path(),
        &["train", "--task-set", set.to_str().unwrap(), "--name", "r"],
    );
    assert_clean_error(
        &out,
        &[
            "model `img` takes input [1, 2, 2] but task `t` gives [4]",
            "set the task's `shape = [1, 2, 2]`",
        ],
    );
    // With the shape it trains.
    let fixed = write_task_set(
        tmp.path(),
        "fixed.toml",
        &format!("{body}shape = [1, 2, 2]\n"),
    );
    let out = gtk(
        tmp.path(),
        &[
            "train",
            "--task-set",
            fixed.to_str().unwrap(),
            "--name",
            "r",
            "-q",
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
}

/// A symlink loop is named as what it is, not as a missing run folder or data file.
#[cfg(unix)]
#[test]
fn symlink_loops_are_not_missing_files() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("runs")).unwrap();
    std::os::unix::fs::symlink("loop", tmp.path().join("runs/loop")).unwrap();
    for args in [
        &["eval", "runs/loop"][..],
        &["train", "--resume", "runs/loop"],
    ] {
        let msg = assert_clean_error(&gtk(tmp.path(), args), &["runs/loop: "]);
        assert!(msg.contains("symbolic links"), "{args:?}: {msg}");
        assert!(!msg.contains("no such"), "{args:?}: {msg}");
    }
    std::os::unix::fs::symlink("x.npy", tmp.path().join("x.npy")).unwrap();
    let body = format!(
        "[run]\nsteps = 5\n[model]\nname = \"m\"\ninput = [3]\n[[model.layer]]\ntype = \"linear\"\nout = 2\n\
         [[task]]\nname = \"t\"\nkind = \"tensors\"\ntrain = \"{}\"\n",
        tmp.path().join("x.npy").display()
    );
    let msg = train_fails(&body, &["x.npy: "]);
    assert!(msg.contains("symbolic links"), "{msg}");
}

/// `classes` on a `tensors` task that regresses (float targets under objective = "auto") was
/// ignored without a word; now it is refused, saying why the task regresses.
#[test]
fn classes_on_a_regressing_tensors_task_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    std::fs::create_dir(&data).unwrap();
    let x: Vec<f32> = (0..20).map(|v| v as f32).collect();
    let y: Vec<f32> = (0..10).map(|v| (v % 3) as f32).collect();
    std::fs::write(data.join("x.npy"), common::npy(&[10, 2], &x)).unwrap();
    std::fs::write(data.join("y.npy"), common::npy(&[10], &y)).unwrap();
    let body = format!(
        "[run]\nsteps = 5\n[model]\nname = \"m\"\ninput = [2]\n[[model.layer]]\ntype = \"linear\"\nout = 3\n\
         [[task]]\nname = \"t\"\nkind = \"tensors\"\ntrain = \"{}\"\nclasses = 3\n",
        data.display()
    );
    train_fails(
        &body,
        &[
            "task `t`: parameter `classes` = 3 applies to classification",
            "objective = \"auto\" chose regression",
            "set objective = \"classification\"",
        ],
    );
    train_fails(
        &body.replace("classes = 3", "classes = 3\nobjective = \"regression\""),
        &["`classes` = 3 applies to classification, but objective = \"regression\""],
    );
}

/// Batch norm over one value per channel (batch_size = 1 before a batchnorm1d) outputs its
/// bias whatever the input: refused, naming the layer.
#[test]
fn batch_norm_with_batch_size_one_is_refused() {
    let body = "[run]\nsteps = 5\nbatch_size = 1\n[model]\nname = \"m\"\ninput = [8]\n\
        [[model.layer]]\ntype = \"linear\"\nout = 6\n[[model.layer]]\ntype = \"batchnorm1d\"\n\
        [[model.layer]]\ntype = \"linear\"\nout = 4\n\
        [defaults]\nkind = \"linear\"\n[[task]]\nname = \"a\"\n";
    train_fails(
        body,
        &[
            "set.toml: `run.batch_size` = 1 gives the batch norm layer `",
            "use batch_size ≥ 2",
        ],
    );
    // Two values per channel are enough to normalise.
    let tmp = tempfile::tempdir().unwrap();
    let set = write_task_set(
        tmp.path(),
        "set.toml",
        &body.replace("batch_size = 1", "batch_size = 2"),
    );
    let out = gtk(
        tmp.path(),
        &[
            "train",
            "--task-set",
            set.to_str().unwrap(),
            "--name",
            "r",
            "-q",
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
}

/// A run whose metrics.jsonl was removed: one line saying what is missing and why it matters
/// (it was the OS's bare "No such file or directory").
#[test]
fn missing_metrics_log_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let set = write_task_set(tmp.path(), "set.toml", GOOD);
    let run = train_quiet(tmp.path(), &set, "r", &[]);
    std::fs::remove_file(run.join("metrics.jsonl")).unwrap();
    for args in [
        &["eval", "runs/r"][..],
        &["export", "runs/r", "--out", "ex"],
    ] {
        assert_clean_error(
            &gtk(tmp.path(), args),
            &[
                "runs/r/metrics.jsonl: is missing, but state.json commits",
                "restore it",
            ],
        );
    }
    assert!(!tmp.path().join("ex").exists());
}

/// An all-tasks ONNX file whose `gatekit.tasks` metadata lists a task the graph holds no mask
/// for answers NaN: `gtk eval --onnx` says so and fails (it printed "-" and exited 0).
#[test]
fn onnx_task_index_past_the_graphs_masks_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let body = GOOD.replace(
        "name = \"a\"\n",
        "name = \"a\"\n[[task]]\nname = \"b\"\n[[task]]\nname = \"abc\"\n",
    );
    let set = write_task_set(tmp.path(), "set.toml", &body);
    train_quiet(tmp.path(), &set, "r", &["--steps", "60"]);
    let out = gtk(
        tmp.path(),
        &["export", "runs/r", "--tasks", "abc", "--out", "ex", "-q"],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let file = tmp.path().join("ex/all_tasks.onnx");
    let good = gtk(
        tmp.path(),
        &["eval", "--onnx", file.to_str().unwrap(), "--task", "abc"],
    );
    assert!(good.status.success(), "{:?}", text(&good));
    // The metadata entry "gatekit.tasks" = "abc" becomes "a,b" (same length): task `b` is then
    // index 1 of a graph with one mask.
    let bytes = std::fs::read(&file).unwrap();
    let (from, to) = (
        &b"gatekit.tasks\x12\x03abc"[..],
        &b"gatekit.tasks\x12\x03a,b"[..],
    );
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("the metadata entry");
    let mut edited = bytes.clone();
    edited[at..at + to.len()].copy_from_slice(to);
    std::fs::write(&file, edited).unwrap();
    let out = gtk(
        tmp.path(),
        &["eval", "--onnx", file.to_str().unwrap(), "--task", "b"],
    );
    assert_clean_error(
        &out,
        &[
            "all_tasks.onnx: answers NaN for task `b` (index 1 in gatekit.tasks)",
            "export the run again",
        ],
    );
}

/// gtk report reads a run as eval does: a state.json step past the run's steps is refused
/// (report accepted it), and a run stopped half-way is described as stopped at its commit's
/// step (it was "0 of N steps … an older run").
#[test]
fn report_checks_the_commit_and_describes_a_stopped_run() {
    let tmp = tempfile::tempdir().unwrap();
    let set = write_task_set(tmp.path(), "set.toml", GOOD);
    let run = train_quiet(tmp.path(), &set, "r", &["--stop-at", "10"]);
    let out = gtk(tmp.path(), &["report", "runs/r", "--out", "rep", "-q"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let md = std::fs::read_to_string(tmp.path().join("rep/report.md")).unwrap();
    assert!(md.contains("10 of 20 steps"), "{md}");
    assert!(md.contains("It stopped at step 10 of 20"), "{md}");
    assert!(md.contains("no full evaluation yet"), "{md}");
    assert!(!md.contains("(step 0)"), "{md}");
    assert!(!md.contains("an older run"), "{md}");
    let state = std::fs::read_to_string(run.join("state.json")).unwrap();
    let edited = state.replacen("\"step\": 10", "\"step\": 99", 1);
    assert_ne!(edited, state, "{state}");
    std::fs::write(run.join("state.json"), edited).unwrap();
    for args in [
        &["eval", "runs/r"][..],
        &["report", "runs/r", "--out", "rep2"],
    ] {
        assert_clean_error(
            &gtk(tmp.path(), args),
            &["runs/r/state.json: commits step 99, past the run's 20 steps"],
        );
    }
    assert!(!tmp.path().join("rep2").exists());
}
