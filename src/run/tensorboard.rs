//! What a run logs to TensorBoard: its [`Record`]s as scalars and histograms, live from the
//! trainer ([`TensorBoardSink`]) or rebuilt from a finished run's `metrics.jsonl`
//! ([`write_run_events`], [`write_events`]). The file format is [`crate::tfevents`].
//!
//! TensorBoard overlays the same tag of different *runs* (event-file folders) in one chart, so
//! each strategy is a run — `tb/gated/`, `tb/shared/`, …, and `tb/gated-binarized/` for the
//! gated model with binarized masks — and the tags name the split and task, not the strategy:
//! `test/<task>/mse` of every strategy lands in one chart. Each run also carries its settings
//! for the HPARAMS tab (the hparams plugin), so runs can be compared by them.

use super::read_run_config;
use super::record::{MetricsLog, Record};
use crate::config::TaskSet;
use crate::error::{Error, Result};
use crate::tfevents::hparams::{
    Experiment, HParamInfo, MetricInfo, MetricName, PbValue, experiment, session_start_info,
};
use crate::tfevents::proto::Value;
use crate::tfevents::{
    TB_DIR, TfEventsWriter, event_files, histogram, host_name, now_seconds, scalar,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The TensorBoard run of the gated model evaluated with binarized masks `W ⊙ 1[M > 0]`.
pub const BINARIZED_RUN: &str = "gated-binarized";

/// The tag prefix of a mean over tasks: `test_mean/mse` beside `test/<task>/mse` (its own
/// section, so no task name can collide with it).
const MEAN: &str = "_mean";

/// Streams a run's records into its `tb/` folder, one folder (TensorBoard run) per strategy,
/// one event per step and run. Tags in each strategy's run:
/// - `{split}/{task}/{metric_name}` and `{split}/{task}/loss` for the full evaluation (`test`,
///   `train`) and the probes (`probe_test`, `probe_train`), with the mean over the tasks
///   measured at that step as `{split}_mean/{metric_name}` and `{split}_mean/loss`;
/// - `train_loss` (mean batch loss between evaluations);
/// - `after_phase/{task}/{metric_name}` (sequential runs: the accuracy matrix's rows);
/// - gated only: `mask_off/{task}/{param}`, `mask_undecided/{task}/{param}`,
///   `recovery/{task}/all` and `.../identifiable` (tasks with known masks);
/// - histograms `effective/{task}/{param}` and, gated only, `gate/{task}/{param}` (`task` is
///   `all` for one shared model).
///
/// The run `gated-binarized` holds `test/{task}/…` and `test_mean/…` of the binarized gated
/// model. Every run starts with its hparams (`strategy` and the `[run]` settings), and the
/// root of `tb/` holds the hparams experiment, whose metrics are the `_mean` tags.
///
/// The trainer calls [`TensorBoardSink::append`] with each batch of records it logs, right
/// after `metrics.jsonl`, so TensorBoard follows a run live.
#[derive(Debug)]
pub struct TensorBoardSink {
    dir: PathBuf,
    /// Live: `None`, each run's file is `events.out.tfevents.*` in its folder. Rebuild: the
    /// temporary name every file is written under until [`write_events`] renames them.
    temp_name: Option<String>,
    writers: BTreeMap<String, TfEventsWriter>,
    hparams: BTreeMap<String, PbValue>,
    /// Whether the experiment is written (or was there already).
    experiment_written: bool,
    metric_name: Option<String>,
}

impl TensorBoardSink {
    /// A sink that appends to `run_dir/tb/`: new event files next to those there, hparams only
    /// for runs that have no event file yet.
    pub fn create(run_dir: &Path, set: &TaskSet) -> Result<Self> {
        let dir = run_dir.join(TB_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(TensorBoardSink {
            experiment_written: !event_files(&dir).is_empty(),
            dir,
            temp_name: None,
            writers: BTreeMap::new(),
            hparams: run_hparams(set),
            metric_name: None,
        })
    }

    /// Writes `records` (consecutive records of one step become one event per run) and
    /// flushes.
    pub fn append(&mut self, records: &[Record]) -> Result<()> {
        let mut start = 0;
        while start < records.len() {
            let step = records[start].step();
            let end = records[start..]
                .iter()
                .position(|r| r.step() != step)
                .map_or(records.len(), |k| start + k);
            self.write_step(step, &records[start..end])?;
            start = end;
        }
        for w in self.writers.values_mut() {
            w.flush()?;
        }
        Ok(())
    }

    /// The event files being written, one per run.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.writers
            .values()
            .map(|w| w.path().to_path_buf())
            .collect()
    }

    /// Flushes and syncs every event file, returning their paths.
    pub fn finish(self) -> Result<Vec<PathBuf>> {
        self.writers.into_values().map(|w| w.finish()).collect()
    }

    fn write_step(&mut self, step: usize, records: &[Record]) -> Result<()> {
        let mut runs: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        // (run, split) -> (Σ metric, Σ loss, tasks): the means over tasks.
        let mut means: BTreeMap<(String, String), (f64, f64, usize)> = BTreeMap::new();
        for r in records {
            if let Some(name) = metric_name_of(r) {
                self.metric_name = Some(name.to_string());
            }
            let metric = self.metric_name.clone().unwrap_or_else(|| "metric".into());
            let (run, values) = record_values(r, &metric);
            if let Some((split, m, l)) = measured(r) {
                let e = means.entry((run.clone(), split)).or_default();
                e.0 += m;
                e.1 += l;
                e.2 += 1;
            }
            if !values.is_empty() {
                runs.entry(run).or_default().extend(values);
            }
        }
        let metric = self.metric_name.clone().unwrap_or_else(|| "metric".into());
        for ((run, split), (m, l, n)) in means {
            let n = n as f64;
            let out = runs.entry(run).or_default();
            out.push(scalar(&format!("{split}{MEAN}/{metric}"), m / n));
            out.push(scalar(&format!("{split}{MEAN}/loss"), l / n));
        }
        if !self.experiment_written && self.metric_name.is_some() {
            self.write_experiment()?;
        }
        for (run, values) in runs {
            self.writer(&run)?.write_values(step, values)?;
        }
        Ok(())
    }

    /// The writer of `run`, created with the run's hparams when the run has no event file yet.
    fn writer(&mut self, run: &str) -> Result<&mut TfEventsWriter> {
        if !self.writers.contains_key(run) {
            let dir = self.dir.join(run);
            let fresh = event_files(&dir).is_empty();
            let mut w = self.new_writer(&dir)?;
            if fresh {
                let mut h = self.hparams.clone();
                h.insert("strategy".into(), PbValue::string(run));
                w.write_values(0, vec![session_start_info(h, now_seconds())])?;
            }
            self.writers.insert(run.to_string(), w);
        }
        self.writers
            .get_mut(run)
            .ok_or_else(|| Error::io(&self.dir, std::io::ErrorKind::NotFound.into()))
    }

    fn new_writer(&self, dir: &Path) -> Result<TfEventsWriter> {
        match &self.temp_name {
            None => TfEventsWriter::create(dir),
            Some(name) => {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                TfEventsWriter::create_file(&dir.join(name))
            }
        }
    }

    /// The hparams experiment at the root of `tb/`: the settings and, as metrics, the means
    /// over tasks (the tab's columns).
    fn write_experiment(&mut self) -> Result<()> {
        let metric = self.metric_name.clone().unwrap_or_else(|| "metric".into());
        let mut hparams = self.hparams.clone();
        hparams.insert("strategy".into(), PbValue::string(""));
        let hparam_infos = hparams
            .iter()
            .map(|(name, v)| HParamInfo {
                name: name.clone(),
                description: if name == "strategy" {
                    "the TensorBoard run: a strategy, or gated-binarized".into()
                } else {
                    format!("`{name}` of the task set's [run] table")
                },
                r#type: v.data_type(),
            })
            .collect();
        let mut metric_infos = Vec::new();
        for split in ["test", "probe_test", "train"] {
            for q in [metric.as_str(), "loss"] {
                let tag = format!("{split}{MEAN}/{q}");
                metric_infos.push(MetricInfo {
                    name: Some(MetricName {
                        group: String::new(),
                        tag: tag.clone(),
                    }),
                    display_name: tag,
                    description: format!("{split} {q}, mean over tasks"),
                });
            }
        }
        let value = experiment(Experiment {
            description: "gatekit run: one TensorBoard run per strategy".into(),
            time_created_secs: now_seconds(),
            hparam_infos,
            metric_infos,
        });
        let dir = self.dir.clone();
        let mut w = self.new_writer(&dir)?;
        w.write_values(0, vec![value])?;
        self.writers.insert(String::new(), w);
        self.experiment_written = true;
        Ok(())
    }
}

/// A run's settings for the hparams plugin: every key of its `[run]` table (numbers, strings
/// and booleans as such, anything else as its JSON text), the model's name and the number of
/// tasks. The sink adds `strategy` per TensorBoard run.
pub fn run_hparams(set: &TaskSet) -> BTreeMap<String, PbValue> {
    let mut out = BTreeMap::new();
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(&set.run) {
        for (k, v) in map {
            let v = match v {
                serde_json::Value::Number(n) => n.as_f64().map(PbValue::number),
                serde_json::Value::String(s) => Some(PbValue::string(s)),
                serde_json::Value::Bool(b) => Some(PbValue::bool(b)),
                serde_json::Value::Null => None,
                other => Some(PbValue::string(other.to_string())),
            };
            if let Some(v) = v {
                out.insert(k, v);
            }
        }
    }
    out.insert("model_name".into(), PbValue::string(set.model.name.clone()));
    out.insert("tasks".into(), PbValue::number(set.tasks.len() as f64));
    out
}

/// The metric name a record carries, if any.
fn metric_name_of(r: &Record) -> Option<&str> {
    match r {
        Record::Eval { metric_name, .. }
        | Record::Probe { metric_name, .. }
        | Record::Phase { metric_name, .. } => Some(metric_name),
        _ => None,
    }
}

/// `(split, metric, loss)` of a record that enters a mean over tasks.
fn measured(r: &Record) -> Option<(String, f64, f64)> {
    match r {
        Record::Eval {
            split,
            metric,
            loss,
            ..
        } => Some((split.clone(), *metric, *loss)),
        Record::Probe {
            split,
            metric,
            loss,
            ..
        } => Some((format!("probe_{split}"), *metric, *loss)),
        Record::Binarized { metric, loss, .. } => Some(("test".into(), *metric, *loss)),
        _ => None,
    }
}

/// The TensorBoard run a record belongs to and its values (`metric`: the run's metric name,
/// for records that do not carry it).
fn record_values(record: &Record, metric: &str) -> (String, Vec<Value>) {
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
            (
                strategy.clone(),
                vec![
                    scalar(&format!("{split}/{task}/{metric_name}"), *metric),
                    scalar(&format!("{split}/{task}/loss"), *loss),
                ],
            )
        }
        Record::ProbeSet { .. } => (String::new(), Vec::new()),
        Record::Train { strategy, loss, .. } => {
            (strategy.clone(), vec![scalar("train_loss", *loss)])
        }
        // The accuracy matrix's rows: plotted against steps, each task's curve shows what
        // later phases did to it.
        Record::Phase {
            strategy,
            task,
            metric,
            metric_name,
            ..
        } => (
            strategy.clone(),
            vec![scalar(
                &format!("after_phase/{task}/{metric_name}"),
                *metric,
            )],
        ),
        Record::Binarized {
            task,
            loss,
            metric: value,
            ..
        } => (
            BINARIZED_RUN.into(),
            vec![
                scalar(&format!("test/{task}/{metric}"), *value),
                scalar(&format!("test/{task}/loss"), *loss),
            ],
        ),
        Record::Mask {
            task,
            param,
            off,
            undecided,
            ..
        } => (
            "gated".into(),
            vec![
                scalar(&format!("mask_off/{task}/{param}"), *off),
                scalar(&format!("mask_undecided/{task}/{param}"), *undecided),
            ],
        ),
        Record::Recovery {
            task,
            all,
            identifiable,
            ..
        } => (
            "gated".into(),
            vec![
                scalar(&format!("recovery/{task}/all"), *all),
                scalar(&format!("recovery/{task}/identifiable"), *identifiable),
            ],
        ),
        Record::Histogram {
            strategy,
            task,
            param,
            of,
            lo,
            hi,
            counts,
            ..
        } => (
            strategy.clone(),
            vec![histogram(&format!("{of}/{task}/{param}"), *lo, *hi, counts)],
        ),
    }
}

/// Writes a run's committed `metrics.jsonl` into `run_dir/tb/`, replacing the event files
/// there (so calling it twice does not show every point twice). Only the run's writer calls
/// this (on resume); readers such as `gtk report` use [`write_events`] into a folder of their
/// own.
pub fn write_run_events(run_dir: &Path) -> Result<Vec<PathBuf>> {
    let records = MetricsLog::read_committed(run_dir)?;
    let set = read_run_config(run_dir)?;
    write_events(&records, &run_dir.join(TB_DIR), &set)
}

/// Writes `records` of a run with task set `set` into `dir` (one folder per strategy and the
/// hparams experiment at the root), replacing the event files there and in those folders.
/// Every file is written under a temporary name and renamed once all are complete, so
/// TensorBoard never reads half of one.
pub fn write_events(records: &[Record], dir: &Path, set: &TaskSet) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // The temporary name must not contain "tfevents": TensorBoard reads any such file.
    let temp = format!(".partial-{}", std::process::id());
    let mut sink = TensorBoardSink {
        dir: dir.to_path_buf(),
        temp_name: Some(temp.clone()),
        writers: BTreeMap::new(),
        hparams: run_hparams(set),
        experiment_written: false,
        metric_name: None,
    };
    // Every run's hparams, also when an old file is still there (the old files go below).
    let result = (|| {
        for r in records {
            let (run, _) = record_values(r, "metric");
            if !run.is_empty() && !sink.writers.contains_key(&run) {
                let mut w = sink.new_writer(&dir.join(&run))?;
                let mut h = sink.hparams.clone();
                h.insert("strategy".into(), PbValue::string(run.clone()));
                w.write_values(0, vec![session_start_info(h, now_seconds())])?;
                sink.writers.insert(run, w);
            }
        }
        sink.append(records)?;
        sink.finish()
    })();
    let temps = match result {
        Ok(t) => t,
        Err(e) => {
            for sub in std::iter::once(dir.to_path_buf()).chain(run_dirs(dir)) {
                let _ = std::fs::remove_file(sub.join(&temp));
            }
            return Err(e);
        }
    };
    let name = format!(
        "events.out.tfevents.{}.{}",
        now_seconds().floor() as u64,
        host_name()
    );
    let mut out = Vec::new();
    for tmp in temps {
        let folder = tmp.parent().unwrap_or(dir).to_path_buf();
        for old in event_files(&folder) {
            std::fs::remove_file(&old).map_err(|e| Error::io(&old, e))?;
        }
        let path = folder.join(&name);
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        out.push(path);
    }
    // Event files of the layout before one folder per strategy, at the root of `tb/`, would
    // show every point twice.
    for old in event_files(dir) {
        if !out.contains(&old) {
            std::fs::remove_file(&old).map_err(|e| Error::io(&old, e))?;
        }
    }
    Ok(out)
}

/// The folders directly inside `dir` (a `tb/` folder's runs).
pub fn run_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}
