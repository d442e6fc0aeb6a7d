//! `gtk data dump`: a task's inputs exactly as the model sees them, with their labels. Fed to
//! the exported ONNX model they give the accuracy `gtk eval --onnx` reports, for a `tensors`
//! task with stored standardisation and for coloured, padded MNIST tasks; the MNIST dumps and
//! models are left in `target/tmp/dump-fixtures/` for `tests/python/test_dump.py`, which
//! rebuilds the inputs from the IDX files with numpy and runs them in onnxruntime.

mod common;
use candle_core::{Device, Tensor};
use common::*;
use gatekit::export::check::{OnnxSession, Runtime, evaluate_onnx};
use gatekit::task::tensors::array::{Array, open_npy, open_npz};
use std::path::{Path, PathBuf};

/// Every row of `a` as one tensor `[n, ..shape]`.
fn tensor(a: &Array, shape: &[usize]) -> Tensor {
    let mut all = vec![0.0f64; a.rows() * a.row_len()];
    for (r, row) in all.chunks_mut(a.row_len().max(1)).enumerate() {
        a.read_row(r, row);
    }
    let mut dims = vec![a.rows()];
    dims.extend_from_slice(shape);
    let v: Vec<f32> = all.iter().map(|&v| v as f32).collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

fn values(a: &Array) -> Vec<f64> {
    let mut all = vec![0.0f64; a.rows() * a.row_len().max(1)];
    for (r, row) in all.chunks_mut(a.row_len().max(1)).enumerate() {
        a.read_row(r, row);
    }
    all
}

/// Accuracy of `onnx` on the dumped inputs and labels.
fn accuracy(onnx: &Path, x: &Array, y: &Array, shape: &[usize]) -> (f64, usize) {
    let mut session = OnnxSession::open(onnx, Runtime::Reference).unwrap();
    let out = session.run(&tensor(x, shape), None).unwrap();
    let pred: Vec<u32> = out.argmax(1).unwrap().to_vec1().unwrap();
    let labels = values(y);
    assert_eq!(pred.len(), labels.len());
    let hits = pred
        .iter()
        .zip(&labels)
        .filter(|(p, l)| **p as f64 == **l)
        .count();
    (hits as f64 / labels.len() as f64, labels.len())
}

/// `gtk data dump ARGS…` in `dir`, which must succeed; its stdout.
fn dump(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["data", "dump"];
    all.extend_from_slice(args);
    gtk_ok(dir, &all)
}

fn write_tensors_data(dir: &Path) {
    // 60 examples of 5 features, 3 classes, on scales far from 1 so standardisation matters.
    let mut csv = String::from("a,b,c,d,e,label\n");
    for r in 0..60 {
        let f = r as f64;
        csv.push_str(&format!(
            "{},{},{},{},{},{}\n",
            100.0 + (f * 0.7).sin() * 40.0,
            (f * 1.3).cos() * 0.01,
            f,
            (r % 7) as f64 * 3.0,
            -5.0 + (f * 0.37).sin(),
            r % 3
        ));
    }
    std::fs::write(dir.join("d.csv"), csv).unwrap();
}

#[test]
fn dumped_tensors_inputs_reproduce_eval_onnx() {
    let tmp = tempfile::tempdir().unwrap();
    write_tensors_data(tmp.path());
    let set = write_task_set(
        tmp.path(),
        "set.toml",
        "[run]\nsteps = 40\neval_every = 20\nbatch_size = 8\n\
         [model]\nname = \"m\"\ninput = [5]\n[[model.layer]]\ntype = \"linear\"\nout = 3\n\
         [[task]]\nname = \"t\"\nkind = \"tensors\"\ntrain = \"d.csv\"\ny = \"label\"\nx = \"*\"\n\
         objective = \"classification\"\nstandardize = true\ntest_fraction = 0.25\n",
    );
    let run = train_quiet(tmp.path(), &set, "r", &[]);
    let exports = tmp.path().join("exp");
    gtk_ok(
        tmp.path(),
        &[
            "export",
            run.to_str().unwrap(),
            "--out",
            exports.to_str().unwrap(),
        ],
    );
    let onnx = exports.join("t.onnx");
    let want = evaluate_onnx(&onnx, None, None, Runtime::Reference).unwrap();
    assert_eq!(want.examples, 15);

    // From the run folder (its stored statistics), as .npy + .labels.npy.
    let stdout = dump(tmp.path(), &[run.to_str().unwrap(), "--out", "d.npy"]);
    assert!(
        stdout.contains("task t: 15 test examples of shape [5]") && stdout.contains("d.labels.npy"),
        "{stdout}"
    );
    let x = open_npy(&tmp.path().join("d.npy"), "x").unwrap();
    let y = open_npy(&tmp.path().join("d.labels.npy"), "y").unwrap();
    assert_eq!(x.shape, vec![15, 5]);
    assert_eq!((y.shape.clone(), y.dtype.name()), (vec![15], "int64"));
    // Standardised: each feature of the training split has mean 0, so test values are small.
    assert!(values(&x).iter().all(|v| v.abs() < 10.0));
    let (acc, n) = accuracy(&onnx, &x, &y, &[5]);
    assert_eq!((acc, n), (want.metric, want.examples));

    // From the task-set file, as one .npz: the same arrays (the statistics are recomputed from
    // the same file), and the first 4 examples with -n.
    dump(tmp.path(), &[set.to_str().unwrap(), "--out", "all.npz"]);
    let npz = tmp.path().join("all.npz");
    assert_eq!(values(&open_npz(&npz, "x").unwrap()), values(&x));
    assert_eq!(values(&open_npz(&npz, "y").unwrap()), values(&y));
    dump(
        tmp.path(),
        &[
            set.to_str().unwrap(),
            "-n",
            "4",
            "--split",
            "train",
            "--out",
            "four.npz",
        ],
    );
    assert_eq!(
        open_npz(&tmp.path().join("four.npz"), "x").unwrap().shape,
        vec![4, 5]
    );

    // Never replaces a file; bad -n, --task and --out are one line each, nothing written.
    let before = std::fs::read(tmp.path().join("d.labels.npy")).unwrap();
    let r = run.to_str().unwrap();
    let again = gtk(tmp.path(), &["data", "dump", r, "--out", "d.npy"]);
    assert_clean_error(&again, &["d.npy already exists", "never replaces"]);
    assert_eq!(
        std::fs::read(tmp.path().join("d.labels.npy")).unwrap(),
        before
    );
    let files = entries(tmp.path());
    for (args, needles) in [
        (
            vec![r, "-n", "16", "--out", "n.npy"],
            vec!["-n", "16", "15 examples"],
        ),
        (
            vec![r, "--task", "u", "--out", "n.npy"],
            vec!["--task", "`u`", "t"],
        ),
        (vec![r, "--out", "n.txt"], vec!["--out", ".npy", ".npz"]),
        (vec![r, "--out", "none/n.npy"], vec!["does not exist"]),
    ] {
        let mut all = vec!["data", "dump"];
        all.extend(args);
        assert_clean_error(&gtk(tmp.path(), &all), &needles);
    }
    assert_eq!(entries(tmp.path()), files, "a refused dump wrote a file");
}

#[test]
fn dumped_mnist_inputs_reproduce_eval_onnx() {
    let Some(data) = shared_data() else {
        return;
    };
    let d = data.to_str().unwrap();
    let fixtures = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dump-fixtures");
    let _ = std::fs::remove_dir_all(&fixtures);
    std::fs::create_dir_all(&fixtures).unwrap();
    // Three colourings: background colour with padding, inverted with a digit colour, and
    // grayscale (one channel) without padding, each over the first 300 test digits.
    let tmp = tempfile::tempdir().unwrap();
    let set = write_task_set(
        tmp.path(),
        "colours.toml",
        "[run]\nsteps = 30\neval_every = 30\nbatch_size = 16\n\
         [model]\nname = \"m\"\ninput = [3, 32, 32]\n[[model.layer]]\ntype = \"flatten\"\n\
         [[model.layer]]\ntype = \"linear\"\nout = 10\n\
         [[task]]\nname = \"red\"\nkind = \"mnist\"\nbackground = [1.0, 0.0, 0.0]\ntrain_limit = 500\ntest_limit = 300\n\
         [[task]]\nname = \"inv\"\nkind = \"mnist\"\ninverted = true\ndigit = [0.2, 0.4, 0.9]\ntrain_limit = 500\ntest_limit = 300\n",
    );
    let gray = write_task_set(
        tmp.path(),
        "gray.toml",
        "[run]\nsteps = 30\neval_every = 30\nbatch_size = 16\n\
         [model]\nname = \"m\"\ninput = [1, 28, 28]\n[[model.layer]]\ntype = \"flatten\"\n\
         [[model.layer]]\ntype = \"linear\"\nout = 10\n\
         [[task]]\nname = \"gray\"\nkind = \"mnist\"\nchannels = 1\npad = 0\ntrain_limit = 500\ntest_limit = 300\n",
    );
    let mut expected = serde_json::Map::new();
    for (set, tasks, shape) in [
        (&set, vec!["red", "inv"], vec![3usize, 32, 32]),
        (&gray, vec!["gray"], vec![1, 28, 28]),
    ] {
        let name = set.file_stem().unwrap().to_str().unwrap();
        let run = train_quiet(tmp.path(), set, name, &["--data-dir", d]);
        let exports = fixtures.join(name);
        gtk_ok(
            tmp.path(),
            &[
                "export",
                run.to_str().unwrap(),
                "--out",
                exports.to_str().unwrap(),
                "--data-dir",
                d,
            ],
        );
        for task in tasks {
            let onnx = exports.join(format!("{task}.onnx"));
            let want = evaluate_onnx(&onnx, None, Some(&data), Runtime::Reference).unwrap();
            let x_path = fixtures.join(format!("{task}.npy"));
            dump(
                tmp.path(),
                &[
                    set.to_str().unwrap(),
                    "--task",
                    task,
                    "--out",
                    x_path.to_str().unwrap(),
                    "--data-dir",
                    d,
                ],
            );
            let x = open_npy(&x_path, "x").unwrap();
            let y = open_npy(&fixtures.join(format!("{task}.labels.npy")), "y").unwrap();
            let (acc, n) = accuracy(&onnx, &x, &y, &shape);
            assert_eq!((acc, n), (want.metric, 300), "task {task}");
            // The pixel formula, checked on one value: the top-left corner is padding (x = 0)
            // for the padded tasks: the background colour, white when inverted.
            let v = values(&x);
            let plane = shape[1] * shape[2];
            match task {
                "red" => assert_eq!([v[0], v[plane], v[2 * plane]], [1.0, 0.0, 0.0]),
                "inv" => assert_eq!([v[0], v[plane], v[2 * plane]], [1.0, 1.0, 1.0]),
                _ => assert_eq!(v[0], 0.0),
            }
            expected.insert(
                task.to_string(),
                serde_json::json!({
                    "onnx": onnx.strip_prefix(&fixtures).unwrap(),
                    "accuracy": want.metric,
                    "examples": want.examples,
                }),
            );
        }
    }
    std::fs::write(
        fixtures.join("expected.json"),
        serde_json::to_string_pretty(&expected).unwrap(),
    )
    .unwrap();
}
