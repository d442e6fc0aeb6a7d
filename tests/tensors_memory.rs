//! A `tensors` task over a 96 MB `.npy` trains without reading the file into memory: peak RSS
//! grows by far less than the file's size (the file is memory-mapped, batches touch only their
//! rows, and the checks and statistics read it in 1 MB blocks). The 1 GB measurement is
//! `bench/tensors_memory.sh`. Alone in its own test binary so other tests do not disturb the
//! measurement.

use candle_core::Device;
use gatekit::TaskSet;
use gatekit::train::{Strategy, Trainer};
use std::path::Path;

fn status_kb(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Writes a float32 `.npy` of `rows × cols` (row r, column c holds (r + c) % 97 / 97) in
/// chunks, without holding it in memory.
fn write_npy(path: &Path, rows: usize, cols: usize) {
    use npyz::WriterBuilder;
    let f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut w = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&[rows as u64, cols as u64])
        .writer(f)
        .begin_nd()
        .unwrap();
    for r in 0..rows {
        w.extend((0..cols).map(|c| ((r + c) % 97) as f32 / 97.0))
            .unwrap();
    }
    w.finish().unwrap();
}

#[test]
#[cfg(target_os = "linux")]
fn a_file_larger_than_the_rss_budget_trains_memory_mapped() {
    let tmp = tempfile::tempdir().unwrap();
    let (rows, cols) = (400_000, 60); // 96 MB of inputs
    let (train, test) = (tmp.path().join("train"), tmp.path().join("test"));
    for (dir, n) in [(&train, rows), (&test, 1000)] {
        std::fs::create_dir(dir).unwrap();
        write_npy(&dir.join("x.npy"), n, cols);
        write_npy(&dir.join("y.npy"), n, 1);
    }
    let size = std::fs::metadata(train.join("x.npy")).unwrap().len();
    assert!(size > 96_000_000);
    let text = format!(
        "[run]\nsteps = 300\nbatch_size = 64\neval_every = 300\noptimizer = \"adam\"\nlr = 0.001\n\
         [model]\nname = \"m\"\ninput = [{cols}]\n[[model.layer]]\ntype = \"linear\"\nout = 16\n\
         [[model.layer]]\ntype = \"relu\"\n[[model.layer]]\ntype = \"linear\"\nout = 1\n\
         [[task]]\nname = \"big\"\nkind = \"tensors\"\ntrain = \"train\"\ntest = \"test\"\nstandardize = true\n"
    );
    std::fs::write(tmp.path().join("set.toml"), text).unwrap();
    let before = status_kb("VmHWM:");
    let set = TaskSet::load(&tmp.path().join("set.toml")).unwrap();
    let mut trainer = Trainer::create(
        set,
        &[Strategy::Gated],
        &tmp.path().join("run"),
        None,
        &Device::Cpu,
    )
    .unwrap();
    let built = status_kb("VmHWM:").saturating_sub(before);
    trainer.train(None, &mut |_| {}).unwrap();
    // What `gtk train` prints at the end: the table with the predict-the-mean reference,
    // computed over the whole training split.
    let records = trainer.evaluate().unwrap();
    let table = trainer.table(&records).unwrap();
    assert!(table.reference.is_some());
    let grew = status_kb("VmHWM:").saturating_sub(before);
    // Reading the file into memory would add ≥ 96 MB; the run itself needs a few MB, and the
    // mapping is released every 8 MB read through it.
    assert!(
        grew < 24 * 1024,
        "peak RSS grew by {grew} kB training on a {size}-byte file ({built} kB after building)"
    );
}
