//! What a run logs to TensorBoard: its [`Record`]s as scalars and histograms, live from the
//! trainer ([`TensorBoardSink`]) or rebuilt from a finished run's `metrics.jsonl`
//! ([`write_run_events`], [`write_events`]). The file format is [`crate::tfevents`].

use super::{MetricsLog, Record};
use crate::error::{Error, Result};
use crate::tfevents::proto::Value;
use crate::tfevents::{
    TB_DIR, TfEventsWriter, event_files, histogram, host_name, now_seconds, scalar,
};
use std::path::{Path, PathBuf};

/// Streams a run's records into its `tb/` folder, one event per step. Tags:
/// - `{strategy}/{task}/{split}/{metric_name}` and `{strategy}/{task}/{split}/loss` (eval);
/// - `{strategy}/train_loss` (mean batch loss between evaluations);
/// - `gated/{task}/binarized/{metric_name}` and `.../loss` (the binarized gated model, test);
/// - `gated/{task}/mask_off/{param}` and `gated/{task}/mask_undecided/{param}`;
/// - `gated/{task}/recovery/all` and `.../identifiable` (tasks with known masks);
/// - histograms `{strategy}/{task}/effective/{param}` and `gated/{task}/gate/{param}`
///   (`task` is `all` for the shared model).
///
/// The trainer calls [`TensorBoardSink::append`] with each batch of records it logs, right
/// after `metrics.jsonl`, so TensorBoard follows a run live.
#[derive(Debug)]
pub struct TensorBoardSink {
    writer: TfEventsWriter,
    metric_name: String,
}

impl TensorBoardSink {
    /// Starts a new event file in `run_dir/tb/`.
    pub fn create(run_dir: &Path) -> Result<Self> {
        Ok(Self::new(TfEventsWriter::create(&run_dir.join(TB_DIR))?))
    }

    /// A sink writing through `writer`.
    pub fn new(writer: TfEventsWriter) -> Self {
        TensorBoardSink {
            writer,
            metric_name: "metric".into(),
        }
    }

    /// Writes `records` (consecutive records of one step become one event) and flushes.
    pub fn append(&mut self, records: &[Record]) -> Result<()> {
        let mut step = None;
        let mut values = Vec::new();
        for r in records {
            if step.is_some_and(|s| s != r.step()) {
                let done = std::mem::take(&mut values);
                self.writer.write_values(step.unwrap_or(0), done)?;
            }
            step = Some(r.step());
            self.values(r, &mut values);
        }
        if let Some(s) = step {
            self.writer.write_values(s, values)?;
        }
        self.writer.flush()
    }

    /// The event file being written.
    pub fn path(&self) -> &Path {
        self.writer.path()
    }

    /// Flushes and syncs the event file, returning its path.
    pub fn finish(self) -> Result<PathBuf> {
        self.writer.finish()
    }

    fn values(&mut self, record: &Record, out: &mut Vec<Value>) {
        match record {
            Record::Eval {
                strategy,
                task,
                split,
                loss,
                metric,
                metric_name,
                ..
            }
            | Record::Probe {
                strategy,
                task,
                split,
                loss,
                metric,
                metric_name,
                ..
            } => {
                // Probes under `probe_test`, `probe_train`: next to the full evaluation's
                // `test`, `train`, never mixed with them.
                let split = match record {
                    Record::Probe { .. } => format!("probe_{split}"),
                    _ => split.clone(),
                };
                self.metric_name.clone_from(metric_name);
                out.push(scalar(
                    &format!("{strategy}/{task}/{split}/{metric_name}"),
                    *metric,
                ));
                out.push(scalar(&format!("{strategy}/{task}/{split}/loss"), *loss));
            }
            Record::ProbeSet { .. } => {}
            Record::Train { strategy, loss, .. } => {
                out.push(scalar(&format!("{strategy}/train_loss"), *loss));
            }
            // The accuracy matrix's rows: plotted against steps, each task's curve shows what
            // later phases did to it.
            Record::Phase {
                strategy,
                task,
                metric,
                metric_name,
                ..
            } => {
                out.push(scalar(
                    &format!("{strategy}/{task}/after_phase/{metric_name}"),
                    *metric,
                ));
            }
            Record::Binarized {
                task, loss, metric, ..
            } => {
                let name = &self.metric_name;
                out.push(scalar(&format!("gated/{task}/binarized/{name}"), *metric));
                out.push(scalar(&format!("gated/{task}/binarized/loss"), *loss));
            }
            Record::Mask {
                task,
                param,
                off,
                undecided,
                ..
            } => {
                out.push(scalar(&format!("gated/{task}/mask_off/{param}"), *off));
                out.push(scalar(
                    &format!("gated/{task}/mask_undecided/{param}"),
                    *undecided,
                ));
            }
            Record::Recovery {
                task,
                all,
                identifiable,
                ..
            } => {
                out.push(scalar(&format!("gated/{task}/recovery/all"), *all));
                out.push(scalar(
                    &format!("gated/{task}/recovery/identifiable"),
                    *identifiable,
                ));
            }
            Record::Histogram {
                strategy,
                task,
                param,
                of,
                lo,
                hi,
                counts,
                ..
            } => out.push(histogram(
                &format!("{strategy}/{task}/{of}/{param}"),
                *lo,
                *hi,
                counts,
            )),
        }
    }
}

/// Writes a run's committed `metrics.jsonl` as one event file in `run_dir/tb/`, replacing the
/// event files there (so calling it twice does not show every point twice). Only the run's
/// writer calls this (on resume); readers such as `gtk report` use [`write_events`] into a
/// folder of their own.
pub fn write_run_events(run_dir: &Path) -> Result<PathBuf> {
    let records = MetricsLog::read_committed(run_dir)?;
    write_events(&records, &run_dir.join(TB_DIR))
}

/// Writes `records` as one event file in `dir`, replacing the event files there. The file is
/// written under a temporary name and renamed, so TensorBoard never reads half of it.
pub fn write_events(records: &[Record], dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // The temporary name must not contain "tfevents": TensorBoard reads any such file.
    let tmp = dir.join(format!(".partial-{}", std::process::id()));
    let result = (|| {
        let mut sink = TensorBoardSink::new(TfEventsWriter::create_file(&tmp)?);
        sink.append(records)?;
        sink.finish()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    for old in event_files(dir) {
        std::fs::remove_file(&old).map_err(|e| Error::io(&old, e))?;
    }
    let name = format!(
        "events.out.tfevents.{}.{}",
        now_seconds().floor() as u64,
        host_name()
    );
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}
