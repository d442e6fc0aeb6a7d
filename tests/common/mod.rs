//! Helpers shared by the integration tests: the real `gtk` binary in a temp dir.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file under the repository root.
pub fn repo(path: &str) -> PathBuf {
    root().join(path)
}

/// Runs `gtk` with `args` in `cwd`.
pub fn gtk(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gtk"))
        .args(args)
        .current_dir(cwd)
        .env_remove("GATEKIT_DATA")
        .output()
        .expect("gtk runs")
}

/// `gtk train --task-set SET --name NAME --quiet EXTRA…` in `dir`, which must succeed; the run
/// folder (`dir/runs/NAME`).
pub fn train_quiet(dir: &Path, set: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let set = set.to_str().expect("UTF-8 path");
    let mut args = vec!["train", "--task-set", set, "--name", name, "--quiet"];
    args.extend_from_slice(extra);
    let out = gtk(dir, &args);
    assert!(out.status.success(), "{:?}", text(&out));
    dir.join("runs").join(name)
}

/// The stdout of a `gtk` that must have succeeded (the failure shows both streams).
pub fn ok(out: &Output) -> String {
    let (stdout, stderr) = text(out);
    assert!(out.status.success(), "failed:\n{stdout}\n{stderr}");
    stdout
}

/// Runs `gtk` with `args` in `cwd`, which must succeed; its stdout.
pub fn gtk_ok(cwd: &Path, args: &[&str]) -> String {
    ok(&gtk(cwd, args))
}

/// stdout and stderr as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts a failed run with one clear error line containing every `needle`, no panic.
pub fn assert_clean_error(out: &Output, needles: &[&str]) -> String {
    let (stdout, stderr) = text(out);
    assert!(
        !out.status.success(),
        "expected failure, got success\nstdout: {stdout}"
    );
    assert_eq!(out.status.code(), Some(2), "exit code; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line expected, got:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "`{n}` missing from: {stderr}");
    }
    stderr
}

/// A task-set file in `dir` whose model path points at the repository's models.
pub fn write_task_set(dir: &Path, name: &str, body: &str) -> PathBuf {
    let text = body.replace("MODELS", &repo("models").display().to_string());
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write task set");
    path
}

/// Number of entries in a folder (0 if missing).
pub fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// The shared data folder holding `mnist/` (real MNIST): $GATEKIT_DATA, else `../shared/data`
/// next to the repository; `None` (with a printed note, so the test is skipped visibly) when
/// neither holds MNIST.
pub fn shared_data() -> Option<PathBuf> {
    let dir = match std::env::var_os("GATEKIT_DATA").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => root().join("../shared/data"),
    };
    if dir.join("mnist").is_dir() {
        Some(dir)
    } else if std::env::var_os("CI").is_some() {
        panic!(
            "CI must run the MNIST tests: no mnist/ in {} (set GATEKIT_DATA)",
            dir.display()
        );
    } else {
        eprintln!(
            "note: skipping: no MNIST in {} (set GATEKIT_DATA to a folder holding mnist/)",
            dir.display()
        );
        None
    }
}

/// The committed checkpoint of a run folder: the file `state.json` names.
pub fn checkpoint_path(run: &Path) -> PathBuf {
    let text = std::fs::read_to_string(run.join("state.json")).expect("state.json");
    let state: serde_json::Value = serde_json::from_str(&text).expect("state.json is JSON");
    let file = state["checkpoint"]["file"]
        .as_str()
        .unwrap_or_else(|| panic!("no checkpoint committed in {}", run.display()));
    run.join(file)
}

/// Trains `task_set` with every strategy at seed 0 on one thread into `dir/runs/name`, with
/// the GEMM blocking forced to `blocking` when given (`GATEKIT_GEMM_BLOCKING`), and returns
/// the run folder. The fixed runs of the numeric guards (`tests/numeric_fixtures.rs`,
/// `tests/determinism.rs`) come from here, so both train exactly the same way.
pub fn train_seed0(
    dir: &Path,
    name: &str,
    task_set: &str,
    extra: &[&str],
    data: Option<&Path>,
    blocking: Option<&str>,
) -> PathBuf {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gtk"));
    cmd.args(["train", "--task-set"])
        .arg(repo(task_set))
        .args(["--strategy", "all", "--seed", "0", "-q", "--name", name])
        .args(extra)
        .current_dir(dir)
        .env("RAYON_NUM_THREADS", "1")
        .env_remove("GATEKIT_DATA")
        .env_remove("GATEKIT_GEMM_BLOCKING");
    if let Some(b) = blocking {
        cmd.env("GATEKIT_GEMM_BLOCKING", b);
    }
    if let Some(data) = data {
        cmd.arg("--data-dir").arg(data);
    }
    let out = cmd.output().expect("gtk runs");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{name}: {stdout}\n{stderr}");
    assert!(
        !stderr.contains("GATEKIT_GEMM_BLOCKING"),
        "{name}: the blocking was rejected: {stderr}"
    );
    dir.join("runs").join(name)
}

/// Starts `gtk` with `args` in `cwd` in the background (stdout dropped, stderr piped).
pub fn gtk_spawn(cwd: &Path, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_gtk"))
        .args(args)
        .current_dir(cwd)
        .env_remove("GATEKIT_DATA")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("gtk starts")
}

/// Every file under `dir`, recursively, with its bytes and modification time: equal
/// fingerprints mean nothing was written.
pub fn fingerprint(
    dir: &Path,
) -> std::collections::BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let meta = e.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                let bytes = std::fs::read(e.path()).expect("readable file");
                out.insert(e.path(), (bytes, meta.modified().expect("mtime")));
            }
        }
    }
    out
}

/// A `.npy` file of `shape` holding `values` (`f32` as `<f4`, `i64` as `<i8`, …), as npyz
/// writes it (numpy's format: C order, little-endian, data aligned to 64 bytes).
pub fn npy<T: npyz::AutoSerialize + Clone>(shape: &[usize], values: &[T]) -> Vec<u8> {
    use npyz::WriterBuilder;
    let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut out = Vec::new();
    let mut w = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(&dims)
        .writer(&mut out)
        .begin_nd()
        .expect("npy header");
    w.extend(values.iter().cloned()).expect("npy data");
    w.finish().expect("npy shape matches the values");
    out
}

/// A `.npy` whose header says `descr` (any numpy type string: `<f2`, `>f4`, `|O`, …),
/// `fortran` and `shape` over the raw bytes `data` (which may be short): the unusual and broken
/// files the bad-input tests feed gatekit. The header is npyz's; only the data is by hand.
pub fn npy_raw(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    use npyz::WriterBuilder;
    let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let dtype = npyz::DType::Plain(descr.parse().expect("a numpy type string"));
    let order = if fortran {
        npyz::Order::Fortran
    } else {
        npyz::Order::C
    };
    let mut out = Vec::new();
    npyz::WriteOptions::new_header_only()
        .dtype(dtype)
        .order(order)
        .shape(&dims)
        .writer(&mut out)
        .write_header_only()
        .expect("npy header");
    out.extend_from_slice(data);
    out
}

/// Little-endian bytes of `values`, for [`npy_raw`].
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Every `.rs` file under `dir`, sorted (the source scans of tests/layering.rs and
/// tests/typed_ids.rs).
pub fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read src")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A tensor's values as f32, flattened (for comparing outputs across runtimes).
pub fn flat(t: &candle_core::Tensor) -> Vec<f32> {
    t.to_dtype(candle_core::DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

/// The largest absolute difference between two equally long slices.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
