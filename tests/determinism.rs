//! The same seed and thread count give the same bytes whatever blocking the GEMM runs with
//! (issue 28 item 3): the reduction blocking is fixed by the code (`src/kernel/blocking.rs`),
//! and what the `gemm` crate still derives from the detected cache sizes, the destination's
//! macro-tiles, must not move a single bit.
//!
//! Each run of the numeric fixtures' task sets (`tests/numeric_fixtures.rs`: sinusoid and,
//! with MNIST, 40 steps of colored MNIST on LeNet-5; every strategy, seed 0, one thread) is
//! repeated under forced tilings `GATEKIT_GEMM_BLOCKING=MT,NT` that emulate smaller and
//! larger caches, and every checkpoint must equal the untiled run's byte for byte. A forced
//! reduction block (`MT,NT,KB`) must change the bytes: that shows the comparison sees a
//! cache-dependent reduction order, the bug this guards against.

mod common;

use common::{checkpoint_path, repo, shared_data, text};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Trains `task_set` (all strategies, seed 0, one thread) into `dir/runs/name` with the
/// blocking given (`None`: the default) and returns the checkpoint's bytes.
fn checkpoint(
    dir: &Path,
    name: &str,
    task_set: &str,
    extra: &[&str],
    data: Option<&Path>,
    blocking: Option<&str>,
) -> Vec<u8> {
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
    let run: PathBuf = dir.join("runs").join(name);
    std::fs::read(checkpoint_path(&run)).expect("read checkpoint")
}

#[test]
fn checkpoints_do_not_depend_on_the_gemm_tiling() {
    let data = shared_data();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut sets: Vec<(&str, &str, &[&str])> =
        vec![("sinusoid", "tasks/sinusoid.toml", &["--steps", "100"])];
    if data.is_some() {
        sets.push(("colors", "tasks/colors.toml", &["--steps", "20"]));
    } else {
        eprintln!("note: no MNIST (GATEKIT_DATA); checking the sinusoid MLP only");
    }
    for (name, set, extra) in sets {
        let base = checkpoint(tmp.path(), name, set, extra, data.as_deref(), None);
        for tiles in ["2,2", "5,3", "64,16"] {
            let run = format!("{name}-{}", tiles.replace(',', "x"));
            let got = checkpoint(tmp.path(), &run, set, extra, data.as_deref(), Some(tiles));
            assert!(
                got == base,
                "{name}: the checkpoint under GEMM tiles {tiles} differs from the untiled one"
            );
        }
        // The negative control: a shorter reduction block sums in another order. Both task
        // sets have products deeper than 32 (the MLP's 40-wide layers, LeNet's 75 and 150).
        let run = format!("{name}-k32");
        let got = checkpoint(
            tmp.path(),
            &run,
            set,
            extra,
            data.as_deref(),
            Some("1000,1000,32"),
        );
        assert!(
            got != base,
            "{name}: a reduction block of 32 gave the same bytes; the test would not see a \
             cache-dependent reduction order"
        );
    }
}
