//! The `tensors` task kind: the same data written as a folder of .npy files, a .npz, a
//! safetensors file and a CSV file loads into identical batches; the test split, the
//! standardisation stored in the run, sharing one mapping per file, and every bad input as one
//! error line with exit code 2 and nothing written.

mod common;
use candle_core::{DType, Device, Tensor};
use common::*;
use gatekit::TaskSet;
use gatekit::task::Split;
use gatekit::train::{Strategy, Trainer, open_run};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes a stored (uncompressed) .npz, like `np.savez`.
fn write_npz(path: &Path, members: &[(&str, Vec<u8>)]) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in members {
        zip.start_file(format!("{name}.npy"), opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// 30 examples of 3 features and labels 0..3 (row r: features r, -r/2, r²/100; label r % 3).
fn data() -> (Vec<f32>, Vec<i64>) {
    let x = (0..30)
        .flat_map(|r| {
            let r = r as f32;
            [r, -r / 2.0, r * r / 100.0]
        })
        .collect();
    let y = (0..30).map(|r| r % 3).collect();
    (x, y)
}

/// The same data in every format under `dir`; returns the four `train` values.
fn write_all_formats(dir: &Path) -> Vec<PathBuf> {
    let (x, y) = data();
    let xn = common::npy(&[30, 3], &x);
    let yn = common::npy(&[30], &y);
    let folder = dir.join("npy");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("x.npy"), &xn).unwrap();
    std::fs::write(folder.join("y.npy"), &yn).unwrap();
    write_npz(&dir.join("d.npz"), &[("x", xn), ("y", yn)]);
    let tx = Tensor::from_vec(x.clone(), (30, 3), &Device::Cpu).unwrap();
    let ty = Tensor::from_vec(y.clone(), 30, &Device::Cpu).unwrap();
    candle_core::safetensors::save(
        &HashMap::from([("x".to_string(), tx), ("y".to_string(), ty)]),
        dir.join("d.safetensors"),
    )
    .unwrap();
    let mut csv = String::from("a,b,c,y\n");
    for r in 0..30 {
        csv.push_str(&format!(
            "{},{},{},{}\n",
            f64::from(x[3 * r]),
            f64::from(x[3 * r + 1]),
            f64::from(x[3 * r + 2]),
            y[r]
        ));
    }
    std::fs::write(dir.join("d.csv"), csv).unwrap();
    vec![
        folder,
        dir.join("d.npz"),
        dir.join("d.safetensors"),
        dir.join("d.csv"),
    ]
}

const MODEL: &str =
    "[model]\nname = \"m\"\ninput = [3]\n[[model.layer]]\ntype = \"linear\"\nout = 3\n";

fn set_text(train: &Path, extra: &str) -> String {
    format!(
        "[run]\nsteps = 20\neval_every = 10\nbatch_size = 8\n{MODEL}\
         [[task]]\nname = \"t\"\nkind = \"tensors\"\ntrain = \"{}\"\n{extra}\n",
        train.display()
    )
}

fn load(dir: &Path, text: &str) -> TaskSet {
    let path = dir.join("set.toml");
    std::fs::write(&path, text).unwrap();
    TaskSet::load(&path).unwrap()
}

fn whole(task: &dyn gatekit::Task, split: Split) -> (Vec<Vec<f64>>, Vec<u32>) {
    let idx: Vec<usize> = (0..task.len(split)).collect();
    let b = task.batch(split, &idx, &Device::Cpu, DType::F64).unwrap();
    (b.x.to_vec2().unwrap(), b.y.to_vec1().unwrap())
}

#[test]
fn every_format_loads_the_same_tensors() {
    let tmp = tempfile::tempdir().unwrap();
    let (x, y) = data();
    for train in write_all_formats(tmp.path()) {
        let csv = train.extension().is_some_and(|e| e == "csv");
        let extra = if csv {
            // The same file as train and test: all 30 rows in order in both splits.
            format!(
                "test = \"{}\"\nx = \"a, b, c\"\nobjective = \"classification\"",
                train.display()
            )
        } else {
            format!("test = \"{}\"", train.display())
        };
        let set = load(tmp.path(), &set_text(&train, &extra));
        let tasks = set.build_tasks(None).unwrap();
        let t = &tasks[0];
        assert_eq!(t.input_shape(), &[3], "{}", train.display());
        assert_eq!(t.outputs(), 3, "classes inferred as max label + 1");
        assert_eq!(t.objective(), gatekit::task::Objective::Classification);
        for split in [Split::Train, Split::Test] {
            let (xs, ys) = whole(t.as_ref(), split);
            assert_eq!(xs.len(), 30);
            for r in 0..30 {
                let want: Vec<f64> = x[3 * r..3 * r + 3].iter().map(|&v| f64::from(v)).collect();
                assert_eq!(xs[r], want, "{} row {r}", train.display());
                assert_eq!(i64::from(ys[r]), y[r]);
            }
        }
    }
}

#[test]
fn held_out_rows_are_a_seeded_partition() {
    let tmp = tempfile::tempdir().unwrap();
    let train = &write_all_formats(tmp.path())[1];
    let set = load(tmp.path(), &set_text(train, "test_fraction = 0.3"));
    let tasks = set.build_tasks(None).unwrap();
    assert_eq!(
        (tasks[0].len(Split::Train), tasks[0].len(Split::Test)),
        (21, 9)
    );
    let first = |t: &dyn gatekit::Task, s| -> Vec<i64> {
        whole(t, s).0.iter().map(|row| row[0] as i64).collect()
    };
    let mut all = first(tasks[0].as_ref(), Split::Train);
    let test = first(tasks[0].as_ref(), Split::Test);
    all.extend(&test);
    all.sort();
    assert_eq!(
        all,
        (0..30).collect::<Vec<i64>>(),
        "every row in exactly one split"
    );
    // The same seed gives the same split; another seed another one.
    let again = set.build_tasks(None).unwrap();
    assert_eq!(first(again[0].as_ref(), Split::Test), test);
    let mut other = set.clone();
    other.run.seed = 7;
    let moved = other.build_tasks(None).unwrap();
    assert_ne!(first(moved[0].as_ref(), Split::Test), test);
}

#[test]
fn float_targets_regress_and_shape_reshapes() {
    let tmp = tempfile::tempdir().unwrap();
    let x: Vec<f32> = (0..40).map(|v| v as f32).collect();
    let y: Vec<f32> = (0..10).flat_map(|r| [r as f32, -(r as f32)]).collect();
    write_npz(
        &tmp.path().join("r.npz"),
        &[
            ("x", common::npy(&[10, 4], &x)),
            ("y", common::npy(&[10, 2], &y)),
        ],
    );
    let text = "[run]\nsteps = 5\n[model]\nname = \"c\"\ninput = [1, 2, 2]\n\
         [[model.layer]]\ntype = \"flatten\"\n[[model.layer]]\ntype = \"linear\"\nout = 2\n\
         [[task]]\nname = \"r\"\nkind = \"tensors\"\ntrain = \"r.npz\"\nshape = [1, 2, 2]\ntest_fraction = 0.5\n";
    let set = load(tmp.path(), text);
    // Relative paths are relative to the task-set file, stored absolute.
    let stored = set.to_toml();
    assert!(
        stored.contains(&tmp.path().join("r.npz").display().to_string()),
        "{stored}"
    );
    let tasks = set.build_tasks(None).unwrap();
    assert_eq!(tasks[0].objective(), gatekit::task::Objective::Regression);
    assert_eq!(
        (tasks[0].input_shape(), tasks[0].outputs()),
        (&[1, 2, 2][..], 2)
    );
    let b = tasks[0]
        .batch(Split::Train, &[0], &Device::Cpu, DType::F32)
        .unwrap();
    assert_eq!(b.x.dims(), &[1, 1, 2, 2]);
    let row = b.x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let target = b.y.to_vec2::<f32>().unwrap();
    assert_eq!(
        row[0] / 4.0,
        target[0][0],
        "x row r starts at 4r, y row r is [r, -r]"
    );
}

/// Mean and population std per feature over the training rows, as numpy computes them.
fn stats(rows: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let n = rows.len() as f64;
    let k = rows[0].len();
    let mean: Vec<f64> = (0..k)
        .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n)
        .collect();
    let std = (0..k)
        .map(|j| (rows.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n).sqrt())
        .collect();
    (mean, std)
}

#[test]
fn standardisation_uses_the_training_split_and_is_stored_in_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let train = &write_all_formats(tmp.path())[2];
    let extra = "test_fraction = 0.2\nstandardize = true";
    let raw = load(tmp.path(), &set_text(train, "test_fraction = 0.2"));
    let raw_tasks = raw.build_tasks(None).unwrap();
    let (raw_train, _) = whole(raw_tasks[0].as_ref(), Split::Train);
    let (raw_test, _) = whole(raw_tasks[0].as_ref(), Split::Test);
    let (mean, std) = stats(&raw_train);
    let set = load(tmp.path(), &set_text(train, extra));
    let tasks = set.build_tasks(None).unwrap();
    let (xs, _) = whole(tasks[0].as_ref(), Split::Test);
    for (got, raw) in xs.iter().zip(&raw_test) {
        for j in 0..3 {
            let want = (raw[j] - mean[j]) / std[j];
            assert!((got[j] - want).abs() < 1e-12, "{} vs {want}", got[j]);
        }
    }
    // Train a few steps: config.toml holds the statistics.
    let run = tmp.path().join("run");
    let mut trainer = Trainer::create(set, &[Strategy::Gated], &run, None, &Device::Cpu).unwrap();
    trainer.train(None, &mut |_| {}).unwrap();
    let before = trainer.evaluate().unwrap();
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let stored =
        TaskSet::parse_with(&config, &run.join("config.toml"), &|_: &str| unreachable!()).unwrap();
    let p = &stored.tasks[0].params;
    let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9);
    assert!(close(&p.f64_list("mean").unwrap(), &mean), "{config}");
    assert!(close(&p.f64_list("std").unwrap(), &std), "{config}");
    // The re-opened run evaluates the same.
    let reopened = open_run(&run, None, &Device::Cpu).unwrap();
    let after = reopened.evaluate().unwrap();
    assert_eq!(format!("{before:?}"), format!("{after:?}"));
    // Stored statistics are applied as stored, not recomputed from the files.
    let fixed = load(
        tmp.path(),
        &set_text(
            train,
            "test_fraction = 0.2\nstandardize = true\nmean = [1.0, 0.0, 0.0]\nstd = [2.0, 4.0, 0.5]",
        ),
    );
    let tasks = fixed.build_tasks(None).unwrap();
    let (xs, _) = whole(tasks[0].as_ref(), Split::Test);
    for (got, raw) in xs.iter().zip(&raw_test) {
        assert_eq!(got, &vec![(raw[0] - 1.0) / 2.0, raw[1] / 4.0, raw[2] / 0.5]);
    }
}

#[test]
fn tasks_naming_one_file_share_one_mapping() {
    let tmp = tempfile::tempdir().unwrap();
    let train = &write_all_formats(tmp.path())[1];
    let a = gatekit::task::tensors::array::map_file(train).unwrap();
    let b = gatekit::task::tensors::array::map_file(train).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    let x = gatekit::task::tensors::array::open(train, "x").unwrap();
    assert!(x.is_mapped());
}

// ---- bad input: one line, exit code 2, nothing written ----

fn train_fails(dir: &Path, extra_set: &str, needles: &[&str]) -> String {
    let set = dir.join("bad.toml");
    std::fs::write(&set, extra_set).unwrap();
    let out = gtk(
        dir,
        &["train", "--task-set", set.to_str().unwrap(), "--name", "r"],
    );
    let msg = assert_clean_error(&out, needles);
    assert_eq!(entries(&dir.join("runs")), 0, "nothing may be written");
    msg
}

fn one_npz(dir: &Path, name: &str, x: Vec<u8>, y: Vec<u8>) -> PathBuf {
    let p = dir.join(name);
    write_npz(&p, &[("x", x), ("y", y)]);
    p
}

fn good_y() -> Vec<u8> {
    common::npy(&[30], &data().1)
}

fn good_x() -> Vec<u8> {
    common::npy(&[30, 3], &data().0)
}

#[test]
fn bad_files_and_arrays_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let files = write_all_formats(d);
    // Missing file.
    train_fails(
        d,
        &set_text(&d.join("nope.npz"), ""),
        &["nope.npz", "no such file"],
    );
    // Missing key in each binary format, with what there is.
    train_fails(
        d,
        &set_text(&files[1], "x = \"inputs\""),
        &["d.npz", "no array `inputs`", "its arrays are: x, y"],
    );
    train_fails(
        d,
        &set_text(&files[2], "y = \"labels\""),
        &["d.safetensors", "no tensor `labels`", "x, y"],
    );
    train_fails(
        d,
        &set_text(&files[0], "x = \"feat\""),
        &["feat.npy", "no such file", "holds arrays: x, y"],
    );
    // A lone .npy.
    train_fails(
        d,
        &set_text(&files[0].join("x.npy"), ""),
        &["x.npy", "holds one array"],
    );
    // Mismatched lengths.
    let short_y = common::npy(&[29], &data().1[..29]);
    let p = one_npz(d, "len.npz", good_x(), short_y);
    train_fails(
        d,
        &set_text(&p, ""),
        &["len.npz", "array `x` has 30 rows but array `y` has 29"],
    );
    // Unsupported dtype and byte order.
    let half = common::npy_raw("<f2", false, &[30, 3], &[0u8; 180]);
    let p = one_npz(d, "half.npz", half, good_y());
    train_fails(
        d,
        &set_text(&p, ""),
        &["half.npz", "array `x`", "unsupported dtype '<f2'"],
    );
    let big = common::npy_raw(">f4", false, &[30, 3], &[0u8; 360]);
    let p = one_npz(d, "big.npz", big, good_y());
    train_fails(
        d,
        &set_text(&p, ""),
        &["big.npz", "array `x`", "big-endian"],
    );
    // Fortran order.
    let fort = common::npy_raw("<f4", true, &[30, 3], &common::f32_bytes(&data().0));
    let p = one_npz(d, "fort.npz", fort, good_y());
    train_fails(
        d,
        &set_text(&p, ""),
        &["fort.npz", "array `x`", "Fortran", "ascontiguousarray"],
    );
    // Ragged rows (an object array).
    let ragged = common::npy_raw("|O", false, &[30], &[0u8; 240]);
    let p = one_npz(d, "ragged.npz", ragged, good_y());
    train_fails(d, &set_text(&p, ""), &["ragged.npz", "array `x`", "ragged"]);
}

#[test]
fn non_finite_values_name_the_first_row() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (mut x, _) = data();
    x[3 * 17 + 1] = f32::NAN;
    x[3 * 20] = f32::INFINITY;
    let p = one_npz(d, "nan.npz", common::npy(&[30, 3], &x), good_y());
    train_fails(
        d,
        &set_text(&p, ""),
        &["nan.npz", "array `x` has NaN at row 17, element 1"],
    );
    let (mut x, _) = data();
    x[3 * 4 + 2] = f32::NEG_INFINITY;
    let p = one_npz(d, "inf.npz", common::npy(&[30, 3], &x), good_y());
    train_fails(
        d,
        &set_text(&p, ""),
        &["inf.npz", "has -inf at row 4, element 2"],
    );
}

#[test]
fn labels_outside_the_classes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let files = write_all_formats(tmp.path());
    let msg = train_fails(
        tmp.path(),
        &set_text(&files[1], "classes = 2"),
        &["d.npz", "array `y` has label 2 at row 2", "outside 0..2"],
    );
    assert!(msg.contains("classes = 2"), "{msg}");
    let neg = common::npy(&[30], &[-1i64; 30]);
    let p = one_npz(tmp.path(), "neg.npz", good_x(), neg);
    train_fails(
        tmp.path(),
        &set_text(&p, ""),
        &["neg.npz", "label -1 at row 0"],
    );
}

#[test]
fn csv_problems_name_row_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let csv = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cls = "x = \"a, b, c\"\nobjective = \"classification\"\ntest_fraction = 0.5";
    let p = csv("col.csv", "a,b,y\n1,2,0\n3,4,1\n");
    train_fails(
        d,
        &set_text(&p, cls),
        &["col.csv", "no column `c`", "its columns are: a, b, y"],
    );
    let p = csv("cell.csv", "a,b,c,y\n1,2,3,0\n3,4,n/a,1\n");
    train_fails(
        d,
        &set_text(&p, cls),
        &["cell.csv", "line 3, column `c`", "\"n/a\" is not a number"],
    );
    let p = csv("ragged.csv", "a,b,c,y\n1,2,3,0\n3,4,1\n");
    train_fails(
        d,
        &set_text(&p, cls),
        &["ragged.csv", "line 3 has 3 cells", "4 columns"],
    );
    let p = csv("nan.csv", "a,b,c,y\n1,2,3,0\n3,4,nan,1\n");
    train_fails(d, &set_text(&p, cls), &["nan.csv", "NaN at line 3"]);
    // CSV has no dtypes: the objective must be stated.
    let p = csv("auto.csv", "a,b,c,y\n1,2,3,0\n3,4,5,1\n");
    train_fails(
        d,
        &set_text(&p, "x = \"*\""),
        &[
            "`objective`",
            "auto.csv",
            "\"regression\" or \"classification\"",
        ],
    );
}

#[test]
fn a_model_that_does_not_fit_the_data_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let files = write_all_formats(tmp.path());
    let text = set_text(&files[1], "").replace("input = [3]", "input = [4]");
    train_fails(
        tmp.path(),
        &text,
        &["model `m` takes input [4]", "task `t` gives [3]"],
    );
    let text = set_text(&files[1], "shape = [2, 2]");
    train_fails(
        tmp.path(),
        &text,
        &[
            "`shape`",
            "4 values per example",
            "array `x`",
            "has 3 per example",
        ],
    );
}
