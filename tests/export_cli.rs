//! `gtk export` from the command line: the happy path prints the per-task gap table, and every
//! bad input is one clear error with nothing left behind.

mod common;
use common::*;

const SET: &str = r#"
[run]
model = "MODELS/mlp.toml"
steps = 60
eval_every = 60
[defaults]
kind = "sinusoid"
[[task]]
name = "a"
[[task]]
name = "b"
"#;

fn trained() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let set = write_task_set(tmp.path(), "set.toml", SET);
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
    tmp
}

#[test]
fn export_defaults_to_latest_run_and_reports_gaps() {
    let tmp = trained();
    let out = gtk(tmp.path(), &["export", "--binarize"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("exported runs/r") && stdout.contains("exports/r"),
        "{stdout}"
    );
    for needle in [
        "soft mse",
        "binarized",
        "rescaled",
        "masks.safetensors",
        "all_tasks.onnx",
    ] {
        assert!(stdout.contains(needle), "`{needle}` missing:\n{stdout}");
    }
    let mut files: Vec<String> = std::fs::read_dir(tmp.path().join("exports/r"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            ".gatekit-output",
            "a.onnx",
            "all_tasks.onnx",
            "b.onnx",
            "masks.safetensors",
            "weights.safetensors"
        ]
    );
    let eval = gtk(tmp.path(), &["eval", "--onnx", "exports/r/b.onnx"]);
    assert!(eval.status.success(), "{:?}", text(&eval));
    assert!(
        text(&eval).0.contains("task b test mse") && text(&eval).0.contains("(reference)"),
        "{:?}",
        text(&eval)
    );
    let eval = gtk(
        tmp.path(),
        &[
            "eval",
            "--onnx",
            "exports/r/all_tasks.onnx",
            "--task",
            "a",
            "--runtime",
            "tract",
        ],
    );
    if cfg!(feature = "tract") {
        assert!(eval.status.success(), "{:?}", text(&eval));
        assert!(
            text(&eval).0.contains("task a test mse"),
            "{:?}",
            text(&eval)
        );
        assert!(text(&eval).0.contains("(tract)"), "{:?}", text(&eval));
    } else {
        assert_clean_error(&eval, &["--runtime", "tract", "--features tract"]);
    }
    let candle = gtk(
        tmp.path(),
        &["eval", "--onnx", "exports/r/b.onnx", "--runtime", "candle"],
    );
    if cfg!(feature = "candle-onnx") {
        assert!(candle.status.success(), "{:?}", text(&candle));
        assert!(text(&candle).0.contains("(candle)"), "{:?}", text(&candle));
    } else {
        assert_clean_error(&candle, &["--runtime", "candle", "--features candle-onnx"]);
    }
    let only = gtk(
        tmp.path(),
        &["export", "runs/r", "--tasks", "b", "--out", "one"],
    );
    assert!(only.status.success(), "{:?}", text(&only));
    assert!(tmp.path().join("one/b.onnx").is_file() && !tmp.path().join("one/a.onnx").exists());
}

#[test]
fn no_run_found() {
    let tmp = tempfile::tempdir().unwrap();
    assert_clean_error(&gtk(tmp.path(), &["export"]), &["runs", "train first"]);
    assert_clean_error(
        &gtk(tmp.path(), &["export", "runs/ghost"]),
        &["runs/ghost", "no such run folder"],
    );
    assert_eq!(entries(&tmp.path().join("exports")), 0);
}

#[test]
fn run_without_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("runs/r");
    std::fs::create_dir_all(&run).unwrap();
    let trainedrun = trained();
    std::fs::copy(
        trainedrun.path().join("runs/r/config.toml"),
        run.join("config.toml"),
    )
    .unwrap();
    assert_clean_error(
        &gtk(tmp.path(), &["export", "runs/r"]),
        &["state.json", "the run was never committed"],
    );
    assert_eq!(entries(&tmp.path().join("exports")), 0);
}

#[test]
fn corrupt_checkpoint() {
    let tmp = trained();
    let ckpt = checkpoint_path(&tmp.path().join("runs/r"));
    let bytes = std::fs::read(&ckpt).unwrap();
    std::fs::write(&ckpt, &bytes[..bytes.len() / 3]).unwrap();
    assert_clean_error(
        &gtk(tmp.path(), &["export", "runs/r"]),
        &["checkpoint-", "corrupt", "checksum mismatch"],
    );
    assert_eq!(entries(&tmp.path().join("exports")), 0);
}

#[test]
fn unknown_task_name() {
    let tmp = trained();
    assert_clean_error(
        &gtk(tmp.path(), &["export", "runs/r", "--tasks", "a,zz"]),
        &["`zz`", "its tasks are: a, b"],
    );
    assert_eq!(entries(&tmp.path().join("exports")), 0);
}

#[test]
fn unwritable_output_folder() {
    let tmp = trained();
    std::fs::write(tmp.path().join("blocker"), b"a file, not a folder").unwrap();
    assert_clean_error(
        &gtk(tmp.path(), &["export", "runs/r", "--out", "blocker/out"]),
        &["blocker"],
    );
    // Nothing half-written next to the blocker or in the default folder.
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.contains("tmp")), "{names:?}");
    assert_eq!(entries(&tmp.path().join("exports")), 0);
}

/// An ONNX file with gatekit's metadata but a broken graph: one line naming the file and the
/// runtime, the runtime's message once (not "tensor error: X: X").
#[test]
fn broken_onnx_graph_is_one_line_naming_the_file() {
    let tmp = trained();
    let out = gtk(tmp.path(), &["export", "runs/r", "--out", "e"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let mut model = gatekit::export::check::read_model(&tmp.path().join("e/b.onnx")).unwrap();
    // Drop the first layer's weight: the graph names an input nothing provides.
    let graph = model.graph.as_mut().unwrap();
    let weight = graph.node[0].input[1].clone();
    graph.initializer.retain(|t| t.name != weight);
    std::fs::write(
        tmp.path().join("broken.onnx"),
        gatekit::export::onnx::encode(&model),
    )
    .unwrap();
    for runtime in gatekit::export::check::Runtime::available() {
        let out = gtk(
            tmp.path(),
            &["eval", "--onnx", "broken.onnx", "--runtime", runtime.name()],
        );
        let msg = assert_clean_error(
            &out,
            &[
                "broken.onnx",
                &format!("{} could not run the ONNX graph", runtime.name()),
            ],
        );
        assert!(
            msg.matches("tensor error").count() <= 1,
            "{runtime:?}: {msg}"
        );
        // No part of the message is repeated as "X: X".
        let body = msg.trim_end().trim_start_matches("error: ");
        let parts: Vec<&str> = body.split(": ").collect();
        for w in parts.windows(2) {
            assert_ne!(w[0], w[1], "{runtime:?}: repeated in {msg}");
        }
    }
}
