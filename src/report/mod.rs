//! Looking at runs: figures (PNG and SVG), a `report.md` and a self-contained `report.html`
//! for `gtk report`, and TensorBoard event files.
//!
//! Everything here reads only what a run folder commits (`config.toml`, `metrics.jsonl`, the
//! checkpoint), through a verified read-only snapshot, never the dataset, so a report can be
//! made on any machine that has the run folder, and never writes into the run.
//!
//! - [`RunData`]: one run's records, tasks and binarized masks
//! - [`write_report`]: every figure and the two report files
//! - `gtk report SWEEP` is drawn by [`crate::sweep`] with the same drawing code ([`crate::plot`]): curves over seeds with confidence bands, the summary
//! - TensorBoard event files come from [`crate::run`]'s `write_events` (the format is
//!   [`crate::tfevents`])

mod continual_figures;
pub mod figures;
mod html;
mod mask_figures;
pub mod masks;
pub mod statistics;

use crate::config::TaskSet;
use crate::error::{Error, Result};
pub use crate::plot::Figure;
use crate::run::{CheckpointFile, MetricsLog, Record, RunSnapshot, files};
use crate::run_folder::OutputDir;
use crate::run_folder::fsio::write_atomic;
use crate::task::Objective;
pub use masks::{BinaryMasks, MaskLayer};
use std::path::{Path, PathBuf};

/// Strategy names in the order every figure and table shows them.
/// The same order as `gtk train` trains and tables them (`Strategy::ALL` for the interleaved
/// schedule, `Strategy::CONTINUAL` for the sequential one).
pub const STRATEGIES: [&str; 5] = ["gated", "shared", "finetune", "separate", "joint"];

/// Which value of an eval record a series follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// The task metric (MSE or accuracy).
    Metric,
    /// The loss.
    Loss,
}

/// One run folder, read for reporting.
#[derive(Debug, Clone)]
pub struct RunData {
    /// Folder name.
    pub name: String,
    /// The run folder.
    pub dir: PathBuf,
    /// The resolved task set (`config.toml`).
    pub set: TaskSet,
    /// The `[run]` table as written, for showing how runs differ.
    pub run_table: toml::Table,
    /// Everything in `metrics.jsonl`.
    pub records: Vec<Record>,
    /// The gated model's binarized masks, when the run has one.
    pub masks: Option<BinaryMasks>,
    /// The step of the run's last commit (a stopped run's may be past its last full
    /// evaluation).
    pub step: usize,
}

impl RunData {
    /// Reads a run folder: its config, its metrics log and the masks in its checkpoint.
    pub fn open(dir: &Path) -> Result<Self> {
        let snapshot = RunSnapshot::open(dir)?;
        let config = dir.join(files::CONFIG);
        let set = TaskSet::parse_with(&snapshot.config_text, &config, &|_: &str| {
            Err(Error::Run {
                path: config.clone(),
                message: "has no inline [model] table".into(),
            })
        })?;
        let run_table = toml::from_str::<toml::Table>(&snapshot.config_text)
            .ok()
            .and_then(|t| t.get("run").and_then(|r| r.as_table()).cloned())
            .unwrap_or_default();
        // The same checks as eval, export and resume: a state.json they refuse is refused here.
        crate::run::check_state(
            &set,
            snapshot.commit.step,
            &snapshot.commit.state,
            &dir.join(files::STATE),
        )?;
        let metrics = dir.join(files::METRICS);
        let records = MetricsLog::parse(&snapshot.metrics, &metrics)?;
        if !records
            .iter()
            .any(|r| matches!(r, Record::Eval { .. } | Record::Probe { .. }))
        {
            return Err(Error::Run {
                path: metrics,
                message: "no evaluation recorded yet; train the run first".into(),
            });
        }
        let params: Vec<String> = set
            .model
            .layer_names()
            .into_iter()
            .flatten()
            .flat_map(|n| [format!("{n}.weight"), format!("{n}.bias")])
            .collect();
        let masks = match CheckpointFile::of(&snapshot) {
            Some(file) => BinaryMasks::read(&file, &set.task_names(), &params)?,
            None => None,
        };
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("run")
            .to_string();
        Ok(RunData {
            name,
            dir: dir.into(),
            set,
            run_table,
            records,
            masks,
            step: snapshot.commit.step,
        })
    }

    /// Task names in task-set order.
    pub fn tasks(&self) -> Vec<String> {
        self.set.task_names()
    }

    /// The strategies with eval or probe records, in [`STRATEGIES`] order.
    pub fn strategies(&self) -> Vec<String> {
        STRATEGIES
            .iter()
            .filter(|s| {
                self.records.iter().any(|r| {
                    matches!(r, Record::Eval { strategy, .. } | Record::Probe { strategy, .. }
                        if strategy == *s)
                })
            })
            .map(|s| s.to_string())
            .collect()
    }

    /// `"mse"` or `"accuracy"`, from the eval records.
    pub fn metric_name(&self) -> String {
        self.records
            .iter()
            .find_map(|r| match r {
                Record::Eval { metric_name, .. } | Record::Probe { metric_name, .. } => {
                    Some(metric_name.clone())
                }
                _ => None,
            })
            .unwrap_or_else(|| "metric".into())
    }

    /// Regression (lower is better) or classification.
    pub fn objective(&self) -> Objective {
        if self.metric_name() == "accuracy" {
            Objective::Classification
        } else {
            Objective::Regression
        }
    }

    /// The last evaluated step.
    pub fn last_step(&self) -> usize {
        self.records
            .iter()
            .filter(|r| matches!(r, Record::Eval { .. }))
            .map(Record::step)
            .max()
            .unwrap_or(0)
    }

    /// `(step, value)` of one strategy's full evaluations on one task's split, in step order.
    pub fn eval_series(
        &self,
        strategy: &str,
        task: &str,
        split: &str,
        quantity: Quantity,
    ) -> Vec<(f64, f64)> {
        self.split_series(false, (strategy, task, split), quantity)
    }

    /// Whether the run logged probes (runs from before issue 15 hold only full evaluations).
    pub fn has_probes(&self) -> bool {
        self.records
            .iter()
            .any(|r| matches!(r, Record::Probe { .. }))
    }

    /// `(step, value)` of one strategy's probes on one task's split, in step order.
    pub fn probe_series(
        &self,
        strategy: &str,
        task: &str,
        split: &str,
        quantity: Quantity,
    ) -> Vec<(f64, f64)> {
        self.split_series(true, (strategy, task, split), quantity)
    }

    /// The split the run's probes measure (`eval_split`): `test`, or `val` (the validation
    /// split held out of the training data).
    pub fn probe_split(&self) -> &'static str {
        self.set.run.evaluation.eval_split.as_str()
    }

    /// The curve of one strategy on one task: its probes (every `eval_every` steps, the
    /// fixed probe subset of the split they measure, [`RunData::probe_split`]) when the run
    /// logged probes, else its full evaluations on the test split (older runs). Curves over
    /// training are drawn from this: the full evaluations alone are often a single point at
    /// the last step.
    pub fn curve_series(&self, strategy: &str, task: &str, quantity: Quantity) -> Vec<(f64, f64)> {
        if self.has_probes() {
            self.probe_series(strategy, task, self.probe_split(), quantity)
        } else {
            self.eval_series(strategy, task, "test", quantity)
        }
    }

    /// The probe or the full-evaluation records of one strategy, task and split.
    fn split_series(
        &self,
        probe: bool,
        (strategy, task, split): (&str, &str, &str),
        quantity: Quantity,
    ) -> Vec<(f64, f64)> {
        self.series(quantity, |r| match r {
            Record::Eval {
                step,
                strategy: s,
                task: t,
                split: sp,
                loss,
                metric,
                ..
            }
            | Record::Probe {
                step,
                strategy: s,
                task: t,
                split: sp,
                loss,
                metric,
                ..
            } if matches!(r, Record::Probe { .. }) == probe
                && s == strategy
                && t == task
                && sp == split =>
            {
                Some((*step, *loss, *metric))
            }
            _ => None,
        })
    }

    /// `(step, value)` of one strategy on its training batches between probes, over all
    /// tasks (weighted by the examples each task's batches held).
    pub fn probe_train_series(&self, strategy: &str, quantity: Quantity) -> Vec<(f64, f64)> {
        let mut sums: std::collections::BTreeMap<usize, (f64, usize)> = Default::default();
        for r in &self.records {
            if let Record::Probe {
                step,
                strategy: s,
                split,
                loss,
                metric,
                examples,
                ..
            } = r
                && s == strategy
                && split == "train"
            {
                let v = match quantity {
                    Quantity::Metric => *metric,
                    Quantity::Loss => *loss,
                };
                let e = sums.entry(*step).or_default();
                e.0 += v * *examples as f64;
                e.1 += examples;
            }
        }
        sums.into_iter()
            .filter(|(_, (_, n))| *n > 0)
            .map(|(step, (sum, n))| (step as f64, sum / n as f64))
            .collect()
    }

    /// `(step, test metric)` of one strategy on one task at the end of every phase of a
    /// sequential run (the accuracy matrix's column of that task; not the metric at
    /// initialisation, phase 0); empty for other runs.
    pub fn phase_series(&self, strategy: &str, task: &str) -> Vec<(f64, f64)> {
        self.series(Quantity::Metric, |r| match r {
            Record::Phase {
                step,
                phase,
                strategy: s,
                task: t,
                metric,
                ..
            } if s == strategy && t == task && *phase > 0 => Some((*step, *metric, *metric)),
            _ => None,
        })
    }

    /// `(step, value)` of the binarized gated model on one task (test split).
    pub fn binarized_series(&self, task: &str, quantity: Quantity) -> Vec<(f64, f64)> {
        self.series(quantity, |r| match r {
            Record::Binarized {
                step,
                task: t,
                loss,
                metric,
            } if t == task => Some((*step, *loss, *metric)),
            _ => None,
        })
    }

    /// `(step, loss or metric)` of the records `pick` selects (as `(step, loss, metric)`), in
    /// step order.
    fn series(
        &self,
        quantity: Quantity,
        pick: impl Fn(&Record) -> Option<(usize, f64, f64)>,
    ) -> Vec<(f64, f64)> {
        let mut out: Vec<(f64, f64)> = self
            .records
            .iter()
            .filter_map(&pick)
            .map(|(step, loss, metric)| {
                let value = match quantity {
                    Quantity::Metric => metric,
                    Quantity::Loss => loss,
                };
                (step as f64, value)
            })
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }

    /// Per step, the mean over tasks of a per-task series (steps where every task has a value).
    pub fn mean_over_tasks(&self, series: impl Fn(&str) -> Vec<(f64, f64)>) -> Vec<(f64, f64)> {
        let tasks = self.tasks();
        let all: Vec<Vec<(f64, f64)>> = tasks.iter().map(|t| series(t)).collect();
        let Some(first) = all.first() else {
            return Vec::new();
        };
        first
            .iter()
            .filter_map(|&(step, _)| {
                let values: Vec<f64> = all
                    .iter()
                    .filter_map(|s| s.iter().find(|p| p.0 == step).map(|p| p.1))
                    .collect();
                (values.len() == all.len())
                    .then(|| (step, values.iter().sum::<f64>() / values.len() as f64))
            })
            .collect()
    }

    /// The `mask` record (off, undecided) of one task and parameter at `step`.
    pub fn mask_stats(&self, step: usize, task: &str, param: &str) -> Option<(f64, f64)> {
        self.records.iter().find_map(|r| match r {
            Record::Mask {
                step: s,
                task: t,
                param: p,
                off,
                undecided,
            } if *s == step && t == task && p == param => Some((*off, *undecided)),
            _ => None,
        })
    }

    /// The last step with `mask` records.
    pub fn last_mask_step(&self) -> Option<usize> {
        self.records
            .iter()
            .filter(|r| matches!(r, Record::Mask { .. }))
            .map(Record::step)
            .max()
    }

    /// Gated parameters in network order (`{layer}.weight`, `{layer}.bias`).
    pub fn params(&self) -> Vec<String> {
        self.set
            .model
            .layer_names()
            .into_iter()
            .flatten()
            .flat_map(|n| [format!("{n}.weight"), format!("{n}.bias")])
            .collect()
    }

    /// The weight parameters only (masks of biases are too small to picture).
    pub fn weight_params(&self) -> Vec<String> {
        self.params()
            .into_iter()
            .filter(|p| p.ends_with(".weight"))
            .collect()
    }
}

/// What `gtk report` writes.
#[derive(Debug, Clone)]
pub struct ReportSummary {
    /// The output folder.
    pub out: PathBuf,
    /// Every figure file (PNG and SVG).
    pub figures: Vec<PathBuf>,
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html` (figures embedded).
    pub html: PathBuf,
    /// Event files written (into the report folder) for runs that have no `tb/` folder.
    pub tensorboard: Vec<PathBuf>,
}

/// Reads the runs and writes every figure, `report.md` and `report.html` into `out`, which
/// must be new or empty (see [`OutputDir`]). Runs without a `tb/` folder get their
/// TensorBoard event files in `out/tb/<run>/`: a report never writes into a run.
pub fn write_report(run_dirs: &[PathBuf], out: &Path) -> Result<ReportSummary> {
    let reads: Vec<&Path> = run_dirs.iter().map(PathBuf::as_path).collect();
    write_report_into(run_dirs, OutputDir::claim(out, "report", &reads, false)?)
}

/// [`write_report`] into an already claimed output folder. With several runs the per-run
/// figures are prefixed with the run name and a comparison figure is added.
pub fn write_report_into(run_dirs: &[PathBuf], out: OutputDir) -> Result<ReportSummary> {
    if run_dirs.is_empty() {
        return Err(Error::Run {
            path: out.destination().into(),
            message: "no run given to report on".into(),
        });
    }
    let runs = run_dirs
        .iter()
        .map(|d| RunData::open(d))
        .collect::<Result<Vec<_>>>()?;
    // Runs side by side share one metric axis and table column: refuse mixing metrics.
    if let Some(odd) = runs
        .iter()
        .find(|r| r.metric_name() != runs[0].metric_name())
    {
        let each: Vec<String> = runs
            .iter()
            .map(|r| format!("{} {}", r.name, r.metric_name()))
            .collect();
        return Err(Error::Run {
            path: odd.dir.clone(),
            message: format!(
                "measures {} but {} measures {}: runs of different metrics cannot share one report ({}); report each metric's runs separately",
                odd.metric_name(),
                runs[0].dir.display(),
                runs[0].metric_name(),
                each.join(", ")
            ),
        });
    }
    let dest = out.destination().to_path_buf();
    let tmp = out.path().to_path_buf();
    let mut sections = Vec::new();
    let multi = runs.len() > 1;
    let mut used_prefixes = std::collections::BTreeSet::new();
    for (i, run) in runs.iter().enumerate() {
        let prefix = if multi {
            let mut p = format!("{}-", sanitize(&run.name));
            if !used_prefixes.insert(p.clone()) {
                p = format!("{}{}-", p, i + 1);
            }
            p
        } else {
            String::new()
        };
        sections.push(html::Section {
            figures: run_figures(run, &prefix)?,
            run: run.clone(),
        });
    }
    let comparison = if multi {
        figures::runs_comparison(&runs)?
    } else {
        None
    };
    let mut written = Vec::new();
    let all_figures = sections
        .iter()
        .flat_map(|s| s.figures.iter())
        .chain(comparison.iter());
    for f in all_figures {
        for (ext, bytes) in [("png", f.png.as_slice()), ("svg", f.svg.as_bytes())] {
            let name = format!("{}.{ext}", f.stem);
            write_atomic(&tmp.join(&name), bytes)?;
            written.push(dest.join(name));
        }
    }
    write_atomic(
        &tmp.join("report.md"),
        html::markdown(&sections, comparison.as_ref(), &runs).as_bytes(),
    )?;
    write_atomic(
        &tmp.join("report.html"),
        html::html(&sections, comparison.as_ref(), &runs).as_bytes(),
    )?;
    let mut tb = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        if crate::tfevents::event_files(&run.dir.join(crate::tfevents::TB_DIR)).is_empty() {
            let sub = format!(
                "{}{}",
                sanitize(&run.name),
                if i > 0 && runs[..i].iter().any(|r| r.name == run.name) {
                    format!("-{}", i + 1)
                } else {
                    String::new()
                }
            );
            let root = tmp.join("tb").join(&sub);
            for file in crate::run::write_events(&run.records, &root, &run.set)? {
                let rel = file.strip_prefix(&root).unwrap_or(&file);
                tb.push(dest.join("tb").join(&sub).join(rel));
            }
        }
    }
    out.finish()?;
    Ok(ReportSummary {
        out: dest.clone(),
        figures: written,
        markdown: dest.join("report.md"),
        html: dest.join("report.html"),
        tensorboard: tb,
    })
}

/// A name safe in file names: letters, digits, `-`, `_` and `.`, everything else as `_`.
/// The command that opens the runs' event files (`<run>/tb`) in TensorBoard: `--logdir DIR`
/// for one run; for several, `--logdir_spec name:DIR,…` (TensorBoard 2.x reads a
/// comma-separated `--logdir` as one path and finds nothing), each run named by its folder.
pub fn tensorboard_command(runs: &[PathBuf]) -> String {
    let dirs: Vec<String> = runs
        .iter()
        .map(|r| r.join(crate::tfevents::TB_DIR).display().to_string())
        .collect();
    if dirs.len() == 1 {
        return format!("tensorboard --logdir {}", dirs[0]);
    }
    let mut used = std::collections::BTreeSet::new();
    let spec: Vec<String> = runs
        .iter()
        .zip(&dirs)
        .enumerate()
        .map(|(i, (run, dir))| {
            let base = run
                .file_name()
                .and_then(|n| n.to_str())
                .map(sanitize)
                .unwrap_or_else(|| "run".into());
            let mut name = base.clone();
            if !used.insert(name.clone()) {
                name = format!("{base}-{}", i + 1);
                used.insert(name.clone());
            }
            format!("{name}:{dir}")
        })
        .collect();
    format!("tensorboard --logdir_spec {}", spec.join(","))
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Every single-run figure, in report order.
pub fn run_figures(run: &RunData, prefix: &str) -> Result<Vec<Figure>> {
    let mut out = Vec::new();
    out.extend(figures::curves(run, prefix, Quantity::Metric)?);
    out.extend(figures::curves(run, prefix, Quantity::Loss)?);
    out.extend(figures::weight_histograms(run, prefix)?);
    out.extend(figures::gate_distributions(run, prefix)?);
    out.extend(mask_figures::mask_images(run, prefix)?);
    out.extend(mask_figures::similarity(run, prefix)?);
    out.extend(continual_figures::accuracy_matrices(run, prefix)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensorboard_command_names_each_run_with_logdir_spec() {
        let one = tensorboard_command(&[PathBuf::from("runs/a")]);
        assert_eq!(one, "tensorboard --logdir runs/a/tb");
        let two = tensorboard_command(&[
            PathBuf::from("runs/a"),
            PathBuf::from("other/b c"),
            PathBuf::from("x/a"),
        ]);
        assert_eq!(
            two,
            "tensorboard --logdir_spec a:runs/a/tb,b_c:other/b c/tb,a-3:x/a/tb"
        );
    }
}
