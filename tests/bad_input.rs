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
        &GOOD.replace("steps = 20", "steps = 20\noptimizer = \"rmsprop\""),
        &["rmsprop", "sgd", "adam"],
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
