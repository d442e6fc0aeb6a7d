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

use common::{checkpoint_path, shared_data, train_seed0};
use std::path::Path;

/// The checkpoint's bytes of `common::train_seed0` under the blocking given.
fn checkpoint(
    dir: &Path,
    name: &str,
    task_set: &str,
    extra: &[&str],
    data: Option<&Path>,
    blocking: Option<&str>,
) -> Vec<u8> {
    let run = train_seed0(dir, name, task_set, extra, data, blocking);
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
