//! Writing the adapted run: a normal run folder (the run's files with the new tasks added),
//! built under a temp name next to the destination with the run folder's own writer and
//! renamed into place at the end, so a failure leaves nothing behind and the source run is
//! only read.
//!
//! - `config.toml`: the run's resolved task set with the new tasks appended
//! - the checkpoint: the run's tensors plus each new task's masks
//!   `gated/{param}.mask.{task}` and, when the run has a `separate` model, the new task's
//!   separate model `separate/{task}/{param}` (the from-scratch baseline)
//! - `state.json`: a commit at the run's step with the run's sampler state
//! - `metrics.jsonl`: the run's committed records, then the new tasks' evaluation at the run's
//!   step, measured by the trainer's own code after re-opening the folder; `tb/` rebuilt from it
//! - `adapt.json`: the [`super::AdaptSummary`]

use crate::config::TaskSet;
use crate::error::{Error, Result};
use crate::gate::GateView;
use crate::params::TaskId;
use crate::run::write_run_events;
use crate::run::{
    ChangedData, CheckpointFile, MetricsLog, Record, RunSnapshot, RunState, checkpoint_encode,
    open_run_with,
};
use crate::run_folder::{RunWriter, fsio};
use crate::task::Split;
use candle_core::{Device, Tensor};
use std::path::Path;

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

/// Fails unless `out` can be created: it must not exist, or be an empty folder outside the run.
pub fn check_destination(run: &Path, out: &Path) -> Result<()> {
    crate::run_folder::OutputDir::check(out, "adapt", &[run], false)
}

/// Writes the adapted run of `run` at `out`.
pub fn write(
    run: &Path,
    out: &Path,
    add: &Addition,
    data_dir: Option<&Path>,
    device: &Device,
) -> Result<()> {
    check_destination(run, out)?;
    let tmp = fsio::temp_path(out);
    let _ = std::fs::remove_dir_all(&tmp); // this process's own temp name
    let result = fill(run, &tmp, add, data_dir, device).and_then(|()| {
        if out.is_dir() {
            // Empty (checked above): rename(2) replaces it.
            std::fs::remove_dir(out).map_err(|e| Error::io(out, e))?;
        }
        fsio::rename_dir(&tmp, out)
    });
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
    let source = RunSnapshot::open(run)?;
    let mut tensors = match CheckpointFile::of(&source) {
        Some(file) => file.tensors(device)?,
        None => Default::default(),
    };
    for (k, t) in &add.tensors {
        tensors.insert(k.clone(), t.contiguous()?);
    }
    let list: Vec<(String, Tensor)> = tensors.into_iter().collect();
    let step = source.commit.step;
    let bytes = checkpoint_encode(&list, step, dir)?;
    let state: RunState = source.commit.state.clone();
    let overrides = source.commit.overrides.clone();
    {
        let mut writer = RunWriter::create(dir, &add.set.to_toml(), state.clone())?;
        writer.append_metrics(&source.metrics)?;
        writer.commit(step, Some(&bytes), state.clone(), overrides.clone())?;
        let records = {
            // The source run's data was checked (or its change allowed) when adapt opened it.
            let trainer = open_run_with(dir, data_dir, device, ChangedData::Allow)?;
            let scale = trainer.hat_scale(step);
            let metric_name = trainer.objective().metric_name().to_string();
            let names = add.set.task_names();
            let mut records = Vec::new();
            for l in trainer.learners() {
                for &t in &add.new_tasks {
                    for split in [Split::Test, Split::Train] {
                        let (loss, metric) =
                            trainer.measure(l, TaskId(t), split, GateView::Trained)?;
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
                    if l.strategy().layout().gated {
                        for (param, s) in l.mask_stats(TaskId(t), scale)? {
                            records.push(Record::Mask {
                                step,
                                task: names[t].clone(),
                                param,
                                off: s.off,
                                undecided: s.undecided,
                            });
                        }
                        let (loss, metric) =
                            trainer.measure(l, TaskId(t), Split::Test, GateView::Binary)?;
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
        writer.append_metrics(&MetricsLog::encode(&records)?)?;
        writer.commit(step, Some(&bytes), state, overrides)?;
    }
    write_run_events(dir)?;
    fsio::write_atomic(&dir.join(SUMMARY), add.summary_json.as_bytes())
}
