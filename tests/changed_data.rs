//! A run records the fingerprint (size, SHA-256) of every data file it reads when it is
//! created; resume, eval and export refuse the run when a file now holds other bytes (the same
//! shape passes every other check, and the run would silently mix two data sets), unless
//! `--allow-changed-data` says so, which a resume records in `state.json`. Unchanged data
//! resumes bit-identically; runs made before fingerprints were recorded still open.

mod common;
use common::*;
use sha2::Digest;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The content of an IDX file, gunzipped if it is gzip.
fn decompressed(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap();
    gatekit::data::idx::decompress(path, &raw)
        .unwrap()
        .unwrap_or(raw)
}

/// An .npz of 40 examples of 4 features and 3 classes; `shift` changes the values, not the
/// shapes.
fn write_npz(path: &Path, shift: f32) {
    let x: Vec<f32> = (0..40 * 4)
        .map(|i| (i as f32 * 0.37).sin() + shift)
        .collect();
    let y: Vec<i64> = (0..40i64).map(|r| r % 3).collect();
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in [("x", npy(&[40, 4], &x)), ("y", npy(&[40], &y))] {
        zip.start_file(format!("{name}.npy"), opts).unwrap();
        zip.write_all(&bytes).unwrap();
    }
    zip.finish().unwrap();
}

fn sha256(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn state(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("state.json")).unwrap()).unwrap()
}

/// A tensors task set over `dir/d.npz`, 60 steps.
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let npz = dir.join("d.npz");
    write_npz(&npz, 0.0);
    let set = write_task_set(
        dir,
        "set.toml",
        "[run]\nsteps = 60\neval_every = 20\nbatch_size = 8\ncheckpoint_every = 20\n\
         [model]\nname = \"m\"\ninput = [4]\n[[model.layer]]\ntype = \"linear\"\nout = 3\n\
         [[task]]\nname = \"t\"\nkind = \"tensors\"\ntrain = \"d.npz\"\n",
    );
    (npz, set)
}

/// The run's files except the writer's lock (which a refused writer may leave behind, empty).
fn run_files(run: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    fingerprint(run)
        .into_iter()
        .filter(|(p, _)| {
            p.file_name()
                .is_none_or(|n| n != gatekit::run_folder::LOCK_FILE)
        })
        .map(|(p, (bytes, _))| (p, bytes))
        .collect()
}

#[test]
fn changed_data_is_refused_on_resume_and_eval_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let (npz, set) = setup(tmp.path());
    let run = train_quiet(tmp.path(), &set, "r", &["--stop-at", "30"]);
    // The run recorded the file's size and hash.
    let data = &state(&run)["state"]["data"];
    assert_eq!(data.as_array().map(Vec::len), Some(1), "{data}");
    assert_eq!(data[0]["sha256"], sha256(&npz).as_str());
    assert_eq!(data[0]["bytes"], std::fs::metadata(&npz).unwrap().len());
    assert!(data[0]["file"].as_str().unwrap().ends_with("d.npz"));
    let old_sha = sha256(&npz);

    // Same shapes, other values.
    write_npz(&npz, 0.5);
    let new_sha = sha256(&npz);
    assert_ne!(old_sha, new_sha);
    assert_eq!(
        std::fs::metadata(&npz).unwrap().len(),
        data[0]["bytes"].as_u64().unwrap()
    );
    let before = run_files(&run);
    let run_s = run.to_str().unwrap();
    let resume = gtk(tmp.path(), &["train", "--resume", run_s, "--quiet"]);
    let err = assert_clean_error(
        &resume,
        &[
            "d.npz",
            "changed since run",
            &old_sha[..16],
            &new_sha[..16],
            "--allow-changed-data",
        ],
    );
    assert!(err.contains("recorded") && err.contains(" now "), "{err}");
    assert_eq!(
        run_files(&run),
        before,
        "a refused resume wrote into the run"
    );
    let eval = gtk(tmp.path(), &["eval", run_s]);
    assert_clean_error(&eval, &["d.npz", "changed since run", &new_sha[..16]]);
    let export_out = tmp.path().join("exp");
    let export = gtk(
        tmp.path(),
        &["export", run_s, "--out", export_out.to_str().unwrap()],
    );
    assert_clean_error(&export, &["d.npz", "changed since run"]);
    assert_eq!(run_files(&run), before, "a reader wrote into the run");

    // Allowed: eval reports on the new data and says so, writing nothing.
    let eval = gtk(tmp.path(), &["eval", run_s, "--allow-changed-data"]);
    let (stdout, stderr) = text(&eval);
    assert!(eval.status.success(), "{stderr}");
    assert!(stdout.contains("at step 30"), "{stdout}");
    assert!(
        stderr.contains("note:") && stderr.contains("d.npz") && stderr.contains("new data"),
        "{stderr}"
    );
    assert_eq!(run_files(&run), before, "eval wrote into the run");

    // Allowed resume: trains on, records the change at step 30 and the new fingerprint.
    let resume = gtk(
        tmp.path(),
        &[
            "train",
            "--resume",
            run_s,
            "--quiet",
            "--allow-changed-data",
        ],
    );
    let (_, stderr) = text(&resume);
    assert!(resume.status.success(), "{stderr}");
    assert!(
        stderr.contains("d.npz") && stderr.contains("step 30"),
        "{stderr}"
    );
    let s = state(&run);
    assert_eq!(s["step"], 60);
    assert_eq!(s["state"]["data"][0]["sha256"], new_sha.as_str());
    let changes = s["state"]["data_changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["step"], 30);
    assert_eq!(changes[0]["before"]["sha256"], old_sha.as_str());
    assert_eq!(changes[0]["after"]["sha256"], new_sha.as_str());
    // The data now matches the record: eval needs no flag, and notes the run's history.
    let eval = gtk(tmp.path(), &["eval", run_s]);
    let (_, stderr) = text(&eval);
    assert!(eval.status.success(), "{stderr}");
    assert!(
        stderr.contains("resumed on changed data at step 30"),
        "{stderr}"
    );
}

#[test]
fn unchanged_data_resumes_bit_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, set) = setup(tmp.path());
    let whole = train_quiet(tmp.path(), &set, "whole", &[]);
    let parts = train_quiet(tmp.path(), &set, "parts", &["--stop-at", "30"]);
    let out = gtk(
        tmp.path(),
        &["train", "--resume", parts.to_str().unwrap(), "--quiet"],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        std::fs::read(checkpoint_path(&whole)).unwrap(),
        std::fs::read(checkpoint_path(&parts)).unwrap()
    );
    assert_eq!(state(&whole)["state"], state(&parts)["state"]);
    assert!(state(&parts)["state"].get("data_changes").is_none());
}

#[test]
fn runs_without_fingerprints_still_open_and_record_them_on_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let (npz, set) = setup(tmp.path());
    let run = train_quiet(tmp.path(), &set, "old", &["--stop-at", "30"]);
    // A run written before fingerprints were recorded: no `data` in its state.
    let mut s = state(&run);
    s["state"].as_object_mut().unwrap().remove("data");
    std::fs::write(
        run.join("state.json"),
        serde_json::to_string_pretty(&s).unwrap() + "\n",
    )
    .unwrap();
    write_npz(&npz, 0.25);
    let run_s = run.to_str().unwrap();
    let eval = gtk(tmp.path(), &["eval", run_s]);
    let (_, stderr) = text(&eval);
    assert!(eval.status.success(), "{stderr}");
    assert!(!stderr.contains("note:"), "{stderr}");
    let resume = gtk(tmp.path(), &["train", "--resume", run_s, "--quiet"]);
    let (_, stderr) = text(&resume);
    assert!(resume.status.success(), "{stderr}");
    assert!(stderr.contains("recorded no data fingerprints"), "{stderr}");
    assert_eq!(
        state(&run)["state"]["data"][0]["sha256"],
        sha256(&npz).as_str()
    );
}

#[test]
fn mnist_runs_record_the_idx_files_and_refuse_a_changed_one() {
    let Some(data) = shared_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let set = write_task_set(
        tmp.path(),
        "m.toml",
        "[run]\nsteps = 4\neval_every = 4\nbatch_size = 4\n\
         [model]\nname = \"m\"\ninput = [1, 28, 28]\n[[model.layer]]\ntype = \"flatten\"\n\
         [[model.layer]]\ntype = \"linear\"\nout = 10\n\
         [[task]]\nname = \"a\"\nkind = \"mnist\"\nchannels = 1\npad = 0\ntrain_limit = 50\ntest_limit = 20\n\
         [[task]]\nname = \"b\"\nkind = \"mnist\"\nchannels = 1\npad = 0\ninverted = true\ntrain_limit = 50\ntest_limit = 20\n",
    );
    let d = data.to_str().unwrap();
    let run = train_quiet(tmp.path(), &set, "m", &["--data-dir", d]);
    // The four files once (two tasks share them), with the published checksums.
    let recorded = state(&run)["state"]["data"].as_array().unwrap().clone();
    assert_eq!(recorded.len(), 4, "{recorded:?}");
    for (r, f) in recorded.iter().zip(gatekit::data::MNIST_FILES) {
        assert_eq!(r["file"], format!("mnist/{}", f.name).as_str());
        assert_eq!(r["sha256"], f.sha256);
    }
    // A copy of the data folder with one test label changed (same size).
    let copy = tmp.path().join("data");
    std::fs::create_dir_all(copy.join("mnist")).unwrap();
    for f in gatekit::data::MNIST_FILES {
        let src = gatekit::data::mnist::find_idx_file(&data.join("mnist"), f.name).unwrap();
        let mut bytes = decompressed(&src);
        if f.name == "t10k-labels-idx1-ubyte" {
            bytes[8] = (bytes[8] + 1) % 10;
        }
        std::fs::write(copy.join("mnist").join(f.name), bytes).unwrap();
    }
    let c = copy.to_str().unwrap();
    let run_s = run.to_str().unwrap();
    let eval = gtk(tmp.path(), &["eval", run_s, "--data-dir", c]);
    assert_clean_error(
        &eval,
        &[
            "t10k-labels-idx1-ubyte",
            "mnist/t10k-labels-idx1-ubyte",
            "changed since run",
        ],
    );
    let eval = gtk(
        tmp.path(),
        &["eval", run_s, "--data-dir", c, "--allow-changed-data"],
    );
    assert!(eval.status.success(), "{:?}", text(&eval));
    // The original data, decompressed into another folder, is the same data.
    std::fs::write(
        copy.join("mnist").join("t10k-labels-idx1-ubyte"),
        decompressed(
            &gatekit::data::mnist::find_idx_file(&data.join("mnist"), "t10k-labels-idx1-ubyte")
                .unwrap(),
        ),
    )
    .unwrap();
    let eval = gtk(tmp.path(), &["eval", run_s, "--data-dir", c]);
    let (_, stderr) = text(&eval);
    assert!(eval.status.success(), "{stderr}");
    assert!(!stderr.contains("note:"), "{stderr}");
}
