//! Writes every example of a task set's tasks, as gatekit feeds them to the model, into one
//! safetensors file: `{task}.{train|test}.x` (float64, after any standardisation) and
//! `{task}.{train|test}.y` (uint32 labels or float64 targets). Useful to check what a
//! `tensors` task reads from your files; CI's Python stage uses it for the format round trips.
//!
//! Usage: cargo run --example dump_task -- TASK_SET.toml OUT.safetensors (or a run's
//! `runs/NAME/config.toml`, read as that run's committed config)

use candle_core::{DType, Device, Tensor};
use gatekit::TaskSet;
use gatekit::task::Split;
use std::collections::HashMap;
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [set, out] = &args[..] else {
        anyhow::bail!("usage: dump_task TASK_SET.toml OUT.safetensors");
    };
    // A run's own config.toml (model inline, every key resolved) is read as the run's.
    let path = Path::new(set);
    let set = match path.parent() {
        Some(run) if path.ends_with("config.toml") && run.join("state.json").is_file() => {
            gatekit::train::read_run_config(run)?
        }
        _ => TaskSet::load(path)?,
    };
    let tasks = set.build_tasks(None)?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for task in &tasks {
        for split in [Split::Train, Split::Test] {
            let idx: Vec<usize> = (0..task.len(split)).collect();
            let b = task.batch(split, &idx, &Device::Cpu, DType::F64)?;
            let key = format!("{}.{}", task.name(), split.as_str());
            tensors.insert(format!("{key}.x"), b.x);
            tensors.insert(format!("{key}.y"), b.y);
        }
    }
    candle_core::safetensors::save(&tensors, out)?;
    Ok(())
}
