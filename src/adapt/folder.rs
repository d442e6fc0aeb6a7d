//! Writing the adapted run: a normal run folder (the run's files with the new tasks added),
//! built in a temp folder next to the destination and renamed into place, so a failure leaves
//! nothing behind.
//!
//! - `config.toml`: the run's resolved task set with the new tasks appended
//! - `checkpoint.safetensors`: the run's tensors (step metadata kept) plus each new task's
//!   masks `gated/{param}.mask.{task}` and, when the run has a `separate` model, the new task's
//!   separate model `separate/{task}/{param}` (the from-scratch baseline)
//! - `state.json`: the run's, unchanged
//! - `metrics.jsonl`: the run's records, then the new tasks' evaluation at the run's step,
//!   measured by the trainer's own code after re-opening the folder; `tb/` rebuilt from it
//! - `adapt.json`: the [`super::AdaptSummary`]

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::gate::GateView;
use crate::report::tensorboard::write_run_events;
use crate::task::{Split, TaskSet};
use crate::train::{CheckpointFile, MetricsLog, Record, files, open_run};
use candle_core::{Device, Tensor};
use std::path::{Path, PathBuf};

/// Name of the adaptation summary inside the adapted run.
pub const SUMMARY: &str = "adapt.json";

/// Everything the adapted run adds to the original.
pub struct Addition<'a> {
    /// The run's set with the new tasks appended.
    pub set: &'a TaskSet,
    /// Indices of the new tasks in `set`.
    pub new_tasks: Vec<usize>,
    /// New checkpoint tensors, full keys.
    pub tensors: Vec<(String, Tensor)>,
    /// `adapt.json`'s content.
    pub summary_json: String,
}

/// Fails unless `out` can be created (it must not exist).
pub fn check_destination(out: &Path) -> Result<()> {
    if out.exists() {
        return Err(Error::Run {
            path: out.into(),
            message: "already exists; choose another --out".into(),
        });
    }
    Ok(())
}

/// Writes the adapted run of `run` at `out`.
pub fn write(
    run: &Path,
    out: &Path,
    add: &Addition,
    data_dir: Option<&Path>,
    device: &Device,
) -> Result<()> {
    check_destination(out)?;
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let tmp: PathBuf = parent.join(format!(
        ".{}.tmp-{}",
        out.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("adapted"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let result = fill(run, &tmp, add, data_dir, device)
        .and_then(|()| std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e)));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn fill(
    run: &Path,
    dir: &Path,
    add: &Addition,
    data_dir: Option<&Path>,
    device: &Device,
) -> Result<()> {
    write_atomic(&dir.join(files::CONFIG), add.set.to_toml().as_bytes())?;
    let file = CheckpointFile::read(run)?;
    let meta = file.metadata()?;
    let mut tensors = file.tensors(device)?;
    for (k, t) in &add.tensors {
        tensors.insert(k.clone(), t.contiguous()?);
    }
    let mut sorted: Vec<(&String, &Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let out_ckpt = dir.join(files::CHECKPOINT);
    let bytes =
        safetensors::serialize(sorted.into_iter().map(|(k, t)| (k.as_str(), t)), Some(meta))
            .map_err(|e| Error::Checkpoint {
                path: out_ckpt.clone(),
                message: e.to_string(),
            })?;
    write_atomic(&out_ckpt, &bytes)?;
    for name in [files::STATE, files::METRICS] {
        let from = run.join(name);
        match std::fs::read(&from) {
            Ok(b) => write_atomic(&dir.join(name), &b)?,
            Err(e) if name == files::METRICS && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&from, e)),
        }
    }
    let records = {
        let trainer = open_run(dir, data_dir, device)?;
        let step = trainer.step();
        let scale = trainer.hat_scale(step);
        let metric_name = trainer.objective().metric_name().to_string();
        let names = add.set.task_names();
        let mut records = Vec::new();
        for l in trainer.learners() {
            for &t in &add.new_tasks {
                for split in [Split::Test, Split::Train] {
                    let (loss, metric) = trainer.measure(l, t, split, GateView::Trained)?;
                    records.push(Record::Eval {
                        step,
                        strategy: l.strategy().to_string(),
                        task: names[t].clone(),
                        split: split.as_str().into(),
                        loss,
                        metric,
                        metric_name: metric_name.clone(),
                    });
                }
                if l.masks().is_some() {
                    for (param, s) in l.mask_stats(t, scale)? {
                        records.push(Record::Mask {
                            step,
                            task: names[t].clone(),
                            param,
                            off: s.off,
                            undecided: s.undecided,
                        });
                    }
                    let (loss, metric) = trainer.measure(l, t, Split::Test, GateView::Binary)?;
                    records.push(Record::Binarized {
                        step,
                        task: names[t].clone(),
                        loss,
                        metric,
                    });
                }
            }
        }
        records
    };
    MetricsLog::new(dir.join(files::METRICS)).append(&records)?;
    write_run_events(dir)?;
    write_atomic(&dir.join(SUMMARY), add.summary_json.as_bytes())
}
