//! The summary of a sweep: per strategy and task the mean over seeds with its Student-t
//! interval, and the paired differences gated − baseline per seed with their intervals and
//! paired t-tests. Written as `summary.json` (every per-seed value included, so anything in
//! it can be recomputed) and rendered from that file as Markdown.
//!
//! A run's final metrics are read through [`RunData`] (the reader `gtk report` uses), so a
//! change of the metrics log needs adapting in one place only.

use super::folder::Sweep;
use super::stats::{Interval, PairedTest};
use crate::error::{Error, Result};
use crate::report::{Quantity, RunData, STRATEGIES};
use crate::run::{NumberFormat, continual_summaries, format_metric};
use crate::task::Objective;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

mod grid;
pub use grid::{ConfigurationResult, GRID_SUMMARY_FORMAT, GridSummary, SelectionTest};

/// `format` of `summary.json`.
pub const SUMMARY_FORMAT: &str = "gatekit-sweep-summary-1";
/// The strategy key of the gated model with binarized masks `W ⊙ 1[M > 0]`.
pub const BINARIZED: &str = "gated-binarized";
/// The row of the per-seed means over tasks.
pub const MEAN_ROW: &str = "mean over tasks";
/// Confidence of every interval.
pub const CONFIDENCE: f64 = 0.95;

/// One seed's final test metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberResult {
    /// The seed.
    pub seed: u64,
    /// The run's task names, in order.
    pub tasks: Vec<String>,
    /// `mse` or `accuracy`.
    pub metric: String,
    /// The step of the final evaluation.
    pub step: usize,
    /// Final test metric per (strategy, task); the binarized gated model as [`BINARIZED`].
    pub values: BTreeMap<(String, String), f64>,
    /// The gated model's share of undecided mask entries (0.1 < σ(M) < 0.9) at the last mask
    /// record, averaged over tasks and parameters; none without a gated model.
    pub undecided: Option<f64>,
    /// Sequential runs: per strategy the continual measures of its accuracy matrix
    /// (average, backward transfer, forgetting); empty for interleaved runs.
    pub continual: BTreeMap<String, [f64; 3]>,
}

impl MemberResult {
    /// The last test metric of every strategy and task of a run (and of the binarized gated
    /// model), read through [`RunData`].
    pub fn read(run: &RunData, seed: u64) -> Self {
        Self::read_split(run, seed, "test")
    }

    /// The same with the last metrics on `split` (`test`, or `val` for a run with a
    /// validation split; the binarized gated model is only evaluated on the test split).
    pub fn read_split(run: &RunData, seed: u64, split: &str) -> Self {
        let tasks = run.tasks();
        let mut values = BTreeMap::new();
        for s in run.strategies() {
            for t in &tasks {
                if let Some(&(_, v)) = run.eval_series(&s, t, split, Quantity::Metric).last() {
                    values.insert((s.clone(), t.clone()), v);
                }
            }
        }
        if split == "test" {
            for t in &tasks {
                if let Some(&(_, v)) = run.binarized_series(t, Quantity::Metric).last() {
                    values.insert((BINARIZED.to_string(), t.clone()), v);
                }
            }
        }
        let undecided = run.last_mask_step().map(|step| {
            let shares: Vec<f64> = tasks
                .iter()
                .flat_map(|t| run.params().into_iter().map(move |p| (t.clone(), p)))
                .filter_map(|(t, p)| run.mask_stats(step, &t, &p).map(|(_, u)| u))
                .collect();
            super::stats::mean(&shares)
        });
        let continual = continual_summaries(&run.records, &tasks, run.objective())
            .into_iter()
            .map(|c| {
                (
                    c.strategy.clone(),
                    [c.average, c.backward_transfer, c.forgetting],
                )
            })
            .collect();
        MemberResult {
            seed,
            tasks,
            metric: run.metric_name(),
            step: run.last_step(),
            values,
            undecided,
            continual,
        }
    }
}

/// One strategy on one task (or the mean over tasks) over the seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// `gated`, `shared`, `separate` or [`BINARIZED`].
    pub strategy: String,
    /// Task name or [`MEAN_ROW`].
    pub task: String,
    /// Final test metric per seed, in the order of [`Summary::seeds`].
    pub values: Vec<f64>,
    /// Mean and interval over the seeds.
    pub interval: Interval,
}

/// Paired comparison `a − b` over the seeds on one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    /// Task name or [`MEAN_ROW`].
    pub task: String,
    /// Usually `gated`.
    pub a: String,
    /// A baseline.
    pub b: String,
    /// Whether `b` has the better mean of the baselines on this task.
    pub best_baseline: bool,
    /// The test.
    pub test: PairedTest,
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// [`SUMMARY_FORMAT`].
    pub format: String,
    /// The sweep folder's name.
    pub sweep: String,
    /// `mse` or `accuracy`.
    pub metric: String,
    /// Whether lower values are better (MSE).
    pub lower_is_better: bool,
    /// Confidence of every interval (0.95).
    pub confidence: f64,
    /// Seeds, in the order of every `values` list.
    pub seeds: Vec<u64>,
    /// Training steps of every seed.
    pub steps: usize,
    /// Task names.
    pub tasks: Vec<String>,
    /// Strategies present, in table order.
    pub strategies: Vec<String>,
    /// Every strategy × (task and mean over tasks).
    pub cells: Vec<Cell>,
    /// Gated − each baseline, per task and for the mean.
    pub paired: Vec<Paired>,
    /// The gated model's share of undecided mask entries at the end (mean over tasks and
    /// parameters), per seed and over seeds (`strategy` gated, `task` [`UNDECIDED_ROW`]).
    pub undecided: Option<Cell>,
    /// Sequential task sets: the continual-learning measures over seeds (absent for
    /// interleaved sets and in summaries written before they were added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continual: Option<ContinualResults>,
}

/// The continual-learning measures of a sweep over a sequential task set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContinualResults {
    /// Per strategy and measure ([`CONTINUAL_MEASURES`], in `task`) the values per seed and
    /// their interval; joint (not sequential) has only the average.
    pub cells: Vec<Cell>,
    /// Gated − each baseline per measure (`task`: the measure), paired over seeds.
    pub paired: Vec<Paired>,
}

/// The rows of the continual table: average metric after the last phase, backward transfer,
/// forgetting.
pub const CONTINUAL_MEASURES: [&str; 3] = ["average", "backward transfer", "forgetting"];

impl ContinualResults {
    /// The cell of a strategy and measure.
    pub fn cell(&self, strategy: &str, measure: &str) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.strategy == strategy && c.task == measure)
    }

    /// The paired comparison of gated against `baseline` on `measure`.
    pub fn paired(&self, baseline: &str, measure: &str) -> Option<&Paired> {
        self.paired
            .iter()
            .find(|p| p.b == baseline && p.task == measure)
    }
}

/// Whether lower values of a continual measure are better: the average of an MSE, and
/// forgetting (backward transfer is signed so that higher is better for every metric).
fn measure_lower_is_better(measure: &str, metric_lower_is_better: bool) -> bool {
    match measure {
        "average" => metric_lower_is_better,
        "forgetting" => true,
        _ => false,
    }
}

/// The indices of the best of `means` (`lower`: the smallest): every index that ties it, NaN
/// never. The rule is the one the train and adapt tables star by, [`Objective::best`], with
/// the objective whose direction the measure has (lower is better as for a regression's mse).
fn best_of(means: &[f64], lower: bool) -> Vec<usize> {
    let direction = if lower {
        Objective::Regression
    } else {
        Objective::Classification
    };
    direction.best(means)
}

/// The task name of [`Summary::undecided`].
pub const UNDECIDED_ROW: &str = "masks undecided";

/// The continual measures over seeds, when every seed has them (sequential runs): per
/// strategy with intervals, and gated − each baseline paired over seeds. Joint trains on every
/// task from the start: only its average is kept.
fn continual_results(
    members: &[(std::path::PathBuf, MemberResult)],
    lower_is_better: bool,
) -> Result<Option<ContinualResults>> {
    let Some((first_dir, first)) = members.first() else {
        return Ok(None);
    };
    if first.continual.is_empty() {
        return Ok(None);
    }
    for (dir, m) in &members[1..] {
        if m.continual.keys().ne(first.continual.keys()) {
            return Err(refuse(
                dir,
                format!(
                    "has accuracy matrices for other strategies than {} (a run stopped before its last phase?)",
                    first_dir.display()
                ),
            ));
        }
    }
    let strategies: Vec<&str> = STRATEGIES
        .iter()
        .copied()
        .filter(|s| first.continual.contains_key(*s))
        .collect();
    let shows = |s: &str, k: usize| k == 0 || s != "joint";
    let values = |s: &str, k: usize| -> Vec<f64> {
        members
            .iter()
            .map(|(_, m)| m.continual.get(s).map_or(f64::NAN, |v| v[k]))
            .collect()
    };
    let mut cells = Vec::new();
    for (k, measure) in CONTINUAL_MEASURES.iter().enumerate() {
        for s in strategies.iter().filter(|s| shows(s, k)) {
            let v = values(s, k);
            cells.push(Cell {
                strategy: s.to_string(),
                task: measure.to_string(),
                interval: Interval::of(&v, CONFIDENCE),
                values: v,
            });
        }
    }
    let mut paired = Vec::new();
    if strategies.contains(&"gated") {
        for (k, measure) in CONTINUAL_MEASURES.iter().enumerate() {
            let baselines: Vec<&str> = strategies
                .iter()
                .copied()
                .filter(|s| *s != "gated" && shows(s, k))
                .collect();
            let means: Vec<f64> = baselines
                .iter()
                .map(|b| super::stats::mean(&values(b, k)))
                .collect();
            let best = best_of(&means, measure_lower_is_better(measure, lower_is_better));
            let gated = values("gated", k);
            for (i, b) in baselines.iter().enumerate() {
                paired.push(Paired {
                    task: measure.to_string(),
                    a: "gated".into(),
                    b: b.to_string(),
                    best_baseline: best.contains(&i),
                    test: PairedTest::of(&gated, &values(b, k), CONFIDENCE),
                });
            }
        }
    }
    Ok(Some(ContinualResults { cells, paired }))
}

fn refuse(path: &std::path::Path, message: String) -> Error {
    Error::Run {
        path: path.into(),
        message,
    }
}

/// Refuses seeds that do not share the first one's tasks, metric and strategies.
fn check_alike(members: &[(std::path::PathBuf, MemberResult)]) -> Result<()> {
    let Some((first_dir, first)) = members.first() else {
        return Ok(());
    };
    for (dir, m) in &members[1..] {
        if m.tasks != first.tasks {
            return Err(refuse(
                dir,
                format!(
                    "trains tasks [{}] but {} trains [{}]: one sweep summarises runs of one task set",
                    m.tasks.join(", "),
                    first_dir.display(),
                    first.tasks.join(", ")
                ),
            ));
        }
        if m.metric != first.metric {
            return Err(refuse(
                dir,
                format!(
                    "measures {} but {} measures {}: one sweep summarises runs of one metric",
                    m.metric,
                    first_dir.display(),
                    first.metric
                ),
            ));
        }
        let keys: Vec<_> = m.values.keys().collect();
        let first_keys: Vec<_> = first.values.keys().collect();
        if keys != first_keys {
            return Err(refuse(
                dir,
                format!(
                    "has results for other strategies than {} (different --strategy?)",
                    first_dir.display()
                ),
            ));
        }
    }
    Ok(())
}

impl Summary {
    /// Reads every seed's run of a finished sweep and summarises them. Refuses a sweep with a
    /// seed not trained to its end, and runs that do not train the same tasks and metric.
    pub fn of_sweep(sweep: &Sweep) -> Result<Self> {
        if sweep.is_grid() {
            return Err(refuse(
                &sweep.dir,
                "is a grid sweep (--set): it is summarised per configuration (GridSummary: summary.md ranks them), not as one set of seeds".into(),
            ));
        }
        let mut members = Vec::new();
        for &seed in &sweep.spec.seeds {
            let dir = sweep.member_dir(seed);
            match sweep.member_state(seed)? {
                super::MemberState::Done { .. } => {}
                super::MemberState::New => {
                    return Err(refuse(
                        &dir,
                        format!(
                            "seed {seed} has not started; run it with `gtk train --resume {}`",
                            sweep.dir.display()
                        ),
                    ));
                }
                super::MemberState::Partial { step, total } => {
                    return Err(refuse(
                        &dir,
                        format!(
                            "is at step {step} of {total}; finish the sweep with `gtk train --resume {}`",
                            sweep.dir.display()
                        ),
                    ));
                }
            }
            let run = RunData::open(&dir)?;
            members.push((dir, MemberResult::read(&run, seed)));
        }
        let name = sweep
            .dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("sweep")
            .to_string();
        Self::of_members(&name, &members)
    }

    /// Summarises seeds' results (`(run folder, result)`, for messages).
    pub fn of_members(name: &str, members: &[(std::path::PathBuf, MemberResult)]) -> Result<Self> {
        let Some((_, first)) = members.first() else {
            return Err(refuse(name.as_ref(), "has no seed to summarise".into()));
        };
        check_alike(members)?;
        let lower_is_better = first.metric != "accuracy";
        let tasks = first.tasks.clone();
        let strategies: Vec<String> = STRATEGIES
            .iter()
            .map(|s| s.to_string())
            .chain(std::iter::once(BINARIZED.to_string()))
            .filter(|s| first.values.keys().any(|(k, _)| k == s))
            .collect();
        let rows: Vec<String> = if tasks.len() > 1 {
            tasks
                .iter()
                .cloned()
                .chain(std::iter::once(MEAN_ROW.to_string()))
                .collect()
        } else {
            tasks.clone()
        };
        // Per-seed values of a strategy on a row (the mean row averages the seed's tasks).
        let values = |s: &str, row: &str| -> Vec<f64> {
            members
                .iter()
                .map(|(_, m)| {
                    if row == MEAN_ROW {
                        let v: Vec<f64> = tasks
                            .iter()
                            .filter_map(|t| m.values.get(&(s.to_string(), t.clone())).copied())
                            .collect();
                        super::stats::mean(&v)
                    } else {
                        m.values
                            .get(&(s.to_string(), row.to_string()))
                            .copied()
                            .unwrap_or(f64::NAN)
                    }
                })
                .collect()
        };
        let mut cells = Vec::new();
        for row in &rows {
            for s in &strategies {
                let v = values(s, row);
                cells.push(Cell {
                    strategy: s.clone(),
                    task: row.clone(),
                    interval: Interval::of(&v, CONFIDENCE),
                    values: v,
                });
            }
        }
        // The baselines: every other strategy. The binarized gated model is a view of the
        // gated model (its masks rounded), not a baseline, and is compared with nothing.
        let baselines: Vec<&String> = strategies
            .iter()
            .filter(|s| *s != "gated" && *s != BINARIZED)
            .collect();
        let mut paired = Vec::new();
        if strategies.iter().any(|s| s == "gated") {
            for row in &rows {
                let means: Vec<f64> = baselines
                    .iter()
                    .map(|b| super::stats::mean(&values(b, row)))
                    .collect();
                let best = best_of(&means, lower_is_better);
                let gated = values("gated", row);
                for (i, b) in baselines.iter().enumerate() {
                    paired.push(Paired {
                        task: row.clone(),
                        a: "gated".into(),
                        b: b.to_string(),
                        best_baseline: best.contains(&i),
                        test: PairedTest::of(&gated, &values(b, row), CONFIDENCE),
                    });
                }
            }
        }
        let continual = continual_results(members, lower_is_better)?;
        let undecided: Option<Vec<f64>> = members.iter().map(|(_, m)| m.undecided).collect();
        let undecided = undecided.map(|v| Cell {
            strategy: "gated".into(),
            task: UNDECIDED_ROW.into(),
            interval: Interval::of(&v, CONFIDENCE),
            values: v,
        });
        Ok(Summary {
            undecided,
            format: SUMMARY_FORMAT.into(),
            sweep: name.into(),
            metric: first.metric.clone(),
            lower_is_better,
            confidence: CONFIDENCE,
            seeds: members.iter().map(|(_, m)| m.seed).collect(),
            steps: first.step,
            tasks,
            strategies,
            cells,
            paired,
            continual,
        })
    }

    /// Reads a `summary.json`.
    pub fn read(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let s: Summary = serde_json::from_str(&text)
            .map_err(|e| Error::json(path, "is not a sweep summary", e))?;
        if s.format != SUMMARY_FORMAT {
            return Err(Error::Run {
                path: path.into(),
                message: format!(
                    "has format `{}`; this gtk reads `{SUMMARY_FORMAT}`",
                    s.format
                ),
            });
        }
        Ok(s)
    }

    /// As pretty JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map_err(|e| Error::encode(super::folder::SUMMARY_JSON, "the sweep summary", e))
    }

    /// The rows of the table (tasks, then the mean over tasks).
    pub fn rows(&self) -> Vec<String> {
        let mut rows: Vec<String> = Vec::new();
        for c in &self.cells {
            if !rows.contains(&c.task) {
                rows.push(c.task.clone());
            }
        }
        rows
    }

    /// The cell of a strategy and row.
    pub fn cell(&self, strategy: &str, row: &str) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.strategy == strategy && c.task == row)
    }

    /// The paired comparison of gated against `baseline` on `row`.
    pub fn paired(&self, baseline: &str, row: &str) -> Option<&Paired> {
        self.paired
            .iter()
            .find(|p| p.b == baseline && p.task == row)
    }

    /// Header line and the tables (results, paired differences, and for sequential sets the
    /// continual measures and their paired differences) as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        for (i, t) in self.tables().iter().enumerate() {
            if i > 0 {
                s.push('\n');
            }
            let _ = writeln!(s, "{}\n", t.caption);
            s.push_str(&markdown_table(&t.rows));
            if let Some(line) = &t.after {
                let _ = writeln!(s, "\n{line}");
            }
        }
        s
    }

    /// The same tables as aligned text for a terminal (the best baseline marked `*`).
    pub fn text(&self) -> String {
        let mut s = String::new();
        for (i, t) in self.tables().iter().enumerate() {
            if i > 0 {
                s.push('\n');
            }
            let _ = writeln!(s, "{}\n", t.caption);
            s.push_str(&text_table(&t.rows));
            if let Some(line) = &t.after {
                let _ = writeln!(s, "{line}");
            }
        }
        s
    }

    /// Every table with its caption, in the order shown.
    fn tables(&self) -> Vec<Table> {
        let mut out = vec![self.results_table()];
        out.extend(self.paired_table());
        if let Some(c) = &self.continual {
            out.push(self.continual_table(c));
            out.extend(self.continual_paired_table(c));
        }
        out
    }

    /// How the intervals of a table read, for its caption.
    fn interval_words(&self, clipped: usize, range: &str) -> String {
        let n = self.seeds.len();
        if n < 2 {
            return "one seed: its value, no interval (an interval needs two or more seeds)".into();
        }
        format!(
            "mean [{:.0} % confidence interval] (Student t, {} df){}",
            self.confidence * 100.0,
            n - 1,
            if clipped > 0 {
                format!(
                    "; {clipped} interval{} clipped to the possible range {range}",
                    if clipped == 1 { "" } else { "s" }
                )
            } else {
                String::new()
            }
        )
    }

    fn metric_label(&self) -> &str {
        if self.metric == "mse" {
            "MSE"
        } else {
            &self.metric
        }
    }

    fn seeds_words(&self) -> String {
        let n = self.seeds.len();
        let seeds: Vec<String> = self.seeds.iter().map(|s| s.to_string()).collect();
        format!(
            "{n} seed{} ({})",
            if n == 1 { "" } else { "s" },
            seeds.join(", ")
        )
    }

    fn results_table(&self) -> Table {
        let range = super::figures::metric_range(&self.metric);
        let number = number_format(self.cells.iter().map(|c| &c.interval));
        let mut clipped = 0;
        let mut header = vec!["task".to_string()];
        header.extend(self.strategies.iter().map(|s| strategy_label(s)));
        let mut rows = vec![header];
        for row in self.rows() {
            let mut r = vec![row.clone()];
            for st in &self.strategies {
                r.push(
                    self.cell(st, &row)
                        .map(|c| interval_cell(&c.interval, number, range, &mut clipped))
                        .unwrap_or_default(),
                );
            }
            rows.push(r);
        }
        Table {
            caption: format!(
                "Test {} after {} steps over {}: {}; {} is better.",
                self.metric_label(),
                self.steps,
                self.seeds_words(),
                self.interval_words(clipped, range_words(range)),
                if self.lower_is_better {
                    "lower"
                } else {
                    "higher"
                }
            ),
            rows,
            after: self.undecided_line(),
        }
    }

    fn undecided_line(&self) -> Option<String> {
        let c = self.undecided.as_ref()?;
        let pct = Interval {
            mean: 100.0 * c.interval.mean,
            std: c.interval.std.map(|v| 100.0 * v),
            half_width: c.interval.half_width.map(|v| 100.0 * v),
            low: c.interval.low.map(|v| 100.0 * v),
            high: c.interval.high.map(|v| 100.0 * v),
            n: c.interval.n,
        };
        let number = number_format([&pct]);
        let mut clipped = 0;
        Some(format!(
            "Gated mask entries still undecided (0.1 < σ(M) < 0.9) at the end, mean over tasks and parameters: {} % ({}).",
            interval_cell(&pct, number, (0.0, 100.0), &mut clipped),
            self.interval_words(clipped, "[0, 100] %")
        ))
    }

    /// The range of a difference of two values of the metric.
    fn difference_range(&self, width: f64) -> (f64, f64) {
        if self.metric == "accuracy" {
            (-width, width)
        } else {
            (f64::NEG_INFINITY, f64::INFINITY)
        }
    }

    /// A paired-differences table: rows, baselines in columns, the best baseline per row in
    /// bold (every one of a tie).
    fn paired_rows(
        &self,
        paired: &[Paired],
        rows: &[String],
        range: impl Fn(&str) -> (f64, f64),
    ) -> Option<(Vec<Vec<String>>, usize)> {
        let mut baselines: Vec<String> = Vec::new();
        for p in paired {
            if !baselines.contains(&p.b) {
                baselines.push(p.b.clone());
            }
        }
        if baselines.is_empty() {
            return None;
        }
        let number = number_format(paired.iter().map(|p| &p.test.interval));
        let mut clipped = 0;
        let mut header = vec![String::new()];
        header.extend(baselines.iter().map(|b| format!("gated − {b}")));
        let mut out = vec![header];
        for row in rows {
            let mut r = vec![row.clone()];
            for b in &baselines {
                r.push(
                    paired
                        .iter()
                        .find(|p| &p.b == b && &p.task == row)
                        .map(|p| {
                            let cell = format!(
                                "{} (p {})",
                                interval_cell(&p.test.interval, number, range(row), &mut clipped),
                                format_p(p.test.p)
                            );
                            if p.best_baseline {
                                format!("**{cell}**")
                            } else {
                                cell
                            }
                        })
                        .unwrap_or_default(),
                );
            }
            out.push(r);
        }
        Some((out, clipped))
    }

    fn paired_table(&self) -> Option<Table> {
        let range = self.difference_range(1.0);
        let (mut rows, clipped) = self.paired_rows(&self.paired, &self.rows(), |_| range)?;
        rows[0][0] = "task".into();
        Some(Table {
            caption: format!(
                "Paired differences per seed, gated − baseline ({}): {}; paired t-test p-value. The best baseline per row in bold (every one of a tie).",
                if self.lower_is_better {
                    "negative: gated better"
                } else {
                    "positive: gated better"
                },
                self.interval_words(clipped, range_words(range)),
            ),
            rows,
            after: None,
        })
    }

    fn continual_table(&self, c: &ContinualResults) -> Table {
        let mut strategies: Vec<&str> = Vec::new();
        for cell in &c.cells {
            if !strategies.contains(&cell.strategy.as_str()) {
                strategies.push(&cell.strategy);
            }
        }
        let number = number_format(c.cells.iter().map(|c| &c.interval));
        let mut clipped = 0;
        let mut header = vec!["measure".to_string()];
        header.extend(strategies.iter().map(|s| s.to_string()));
        let mut rows = vec![header];
        for m in CONTINUAL_MEASURES {
            let range = match m {
                "average" => super::figures::metric_range(&self.metric),
                _ => self.difference_range(1.0),
            };
            let mut r = vec![m.to_string()];
            for s in &strategies {
                r.push(match c.cell(s, m) {
                    Some(cell) => interval_cell(&cell.interval, number, range, &mut clipped),
                    None => "n/a".into(),
                });
            }
            rows.push(r);
        }
        Table {
            caption: format!(
                "Continual learning (sequential schedule) over {}: average test {} over the tasks after the last phase, backward transfer (BWT, negative: later phases hurt earlier tasks) and forgetting (mean drop from each task's best to its final value; lower is better), both divided by T − 1 as in Lopez-Paz & Ranzato's and Chaudhry et al.'s formulas (the GEM code divides by T){}: {}. joint trains on every task throughout, so it has an average but no BWT or forgetting (n/a).",
                self.seeds_words(),
                self.metric_label(),
                if self.metric == "mse" {
                    ", computed on −MSE so that negative BWT and positive forgetting mean worse"
                } else {
                    ""
                },
                self.interval_words(clipped, range_words(self.difference_range(1.0))),
            ),
            rows,
            after: None,
        }
    }

    fn continual_paired_table(&self, c: &ContinualResults) -> Option<Table> {
        let rows: Vec<String> = CONTINUAL_MEASURES.iter().map(|m| m.to_string()).collect();
        let (mut rows, clipped) = self.paired_rows(&c.paired, &rows, |m| {
            self.difference_range(if m == "average" { 1.0 } else { 2.0 })
        })?;
        rows[0][0] = "measure".into();
        Some(Table {
            caption: format!(
                "Continual measures, paired differences per seed, gated − baseline: {}; paired t-test p-value. Better for gated: {} average, positive BWT, negative forgetting. The best baseline per measure in bold.",
                self.interval_words(clipped, "of a difference"),
                if self.lower_is_better {
                    "negative"
                } else {
                    "positive"
                },
            ),
            rows,
            after: None,
        })
    }
}

/// A captioned table.
struct Table {
    caption: String,
    rows: Vec<Vec<String>>,
    /// A line after the table.
    after: Option<String>,
}

/// The one number format of a table of intervals: two significant digits of its smallest
/// half-width and mean.
fn number_format<'a>(intervals: impl IntoIterator<Item = &'a Interval>) -> NumberFormat {
    let mut values = Vec::new();
    for i in intervals {
        values.push(i.mean);
        values.extend(i.half_width);
    }
    NumberFormat::for_values(&values, 2, 1)
}

/// `mean [low, high]` with the interval's ends clipped to `range` (counted in `clipped`), or
/// the mean alone when there is no interval (one seed).
pub fn interval_cell(
    i: &Interval,
    number: NumberFormat,
    range: (f64, f64),
    clipped: &mut usize,
) -> String {
    match (i.low, i.high) {
        (Some(lo), Some(hi)) if lo.is_finite() && hi.is_finite() => {
            let (l, h) = (lo.max(range.0), hi.min(range.1));
            if l != lo || h != hi {
                *clipped += 1;
            }
            format!(
                "{} [{}, {}]",
                number.show(i.mean),
                number.show(l),
                number.show(h)
            )
        }
        _ => number.show(i.mean),
    }
}

/// A range as the captions say it.
fn range_words(range: (f64, f64)) -> &'static str {
    let (lo, hi) = range;
    if lo == 0.0 && hi == 1.0 {
        "[0, 1]"
    } else if lo == 0.0 {
        "≥ 0"
    } else if lo == -1.0 && hi == 1.0 {
        "[−1, 1]"
    } else if lo == -2.0 && hi == 2.0 {
        "[−2, 2]"
    } else {
        "of the values"
    }
}

/// The column heading of a strategy key.
pub fn strategy_label(s: &str) -> String {
    if s == BINARIZED {
        "gated, W ⊙ 1[M > 0]".into()
    } else {
        s.into()
    }
}

/// `mean ± half-width`, the mean rounded to the half-width's second significant digit (both in
/// scientific notation when tiny).
pub fn format_interval(mean: f64, half: Option<f64>) -> String {
    let Some(h) = half.filter(|h| h.is_finite()) else {
        return format_metric(mean);
    };
    if !mean.is_finite() {
        return format_metric(mean);
    }
    if h == 0.0 {
        return format!("{} ± 0", format_metric(mean));
    }
    let tiny = mean.abs().max(h) < 1e-3;
    if tiny || h < 1e-6 {
        return format!("{mean:.2e} ± {h:.1e}");
    }
    let digits = (1 - h.log10().floor() as i32).clamp(0, 6) as usize;
    format!("{mean:.digits$} ± {h:.digits$}")
}

/// A p-value for a table.
pub fn format_p(p: Option<f64>) -> String {
    match p {
        None => "-".into(),
        Some(p) if p < 0.001 => "< 0.001".into(),
        Some(p) => format!("{p:.3}"),
    }
}

fn markdown_table(rows: &[Vec<String>]) -> String {
    let mut s = String::new();
    let Some(header) = rows.first() else {
        return s;
    };
    let _ = writeln!(s, "| {} |", header.join(" | "));
    let aligns: Vec<&str> = (0..header.len())
        .map(|i| if i == 0 { "---" } else { "---:" })
        .collect();
    let _ = writeln!(s, "|{}|", aligns.join("|"));
    for r in &rows[1..] {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    s
}

fn text_table(rows: &[Vec<String>]) -> String {
    let plain: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(
                    |c| match c.strip_prefix("**").and_then(|c| c.strip_suffix("**")) {
                        Some(inner) => format!("{inner} *"),
                        None => c.clone(),
                    },
                )
                .collect()
        })
        .collect();
    let cols = plain.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            plain
                .iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    for r in &plain {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = widths[i].saturating_sub(c.chars().count());
                if i == 0 {
                    format!("{c}{}", " ".repeat(pad))
                } else {
                    format!("{}{c}", " ".repeat(pad))
                }
            })
            .collect();
        let _ = writeln!(s, "{}", cells.join("  ").trim_end());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(seed: u64, gated: [f64; 2], shared: [f64; 2]) -> (std::path::PathBuf, MemberResult) {
        let tasks = vec!["a".to_string(), "b".to_string()];
        let mut values = BTreeMap::new();
        for (i, t) in tasks.iter().enumerate() {
            values.insert(("gated".to_string(), t.clone()), gated[i]);
            values.insert(("shared".to_string(), t.clone()), shared[i]);
        }
        (
            format!("seed-{seed}").into(),
            MemberResult {
                seed,
                tasks,
                metric: "mse".into(),
                step: 100,
                values,
                undecided: None,
                continual: BTreeMap::new(),
            },
        )
    }

    #[test]
    fn summary_of_hand_computed_seeds() {
        // Task a: gated 1, 2, 3 (mean 2, std 1, half-width t_{.975,2} · 1/√3 = 2.4841377);
        // shared 2, 4, 3: differences −1, −2, 0 → mean −1, std 1, same half-width, t = −√3,
        // p = 0.2254033 (2 df).
        let members = vec![
            member(0, [1.0, 0.5], [2.0, 0.5]),
            member(1, [2.0, 0.5], [4.0, 0.5]),
            member(2, [3.0, 0.5], [3.0, 0.5]),
        ];
        let s = Summary::of_members("demo", &members).unwrap();
        assert_eq!(s.rows(), vec!["a", "b", MEAN_ROW]);
        let a = s.cell("gated", "a").unwrap();
        assert_eq!(a.values, vec![1.0, 2.0, 3.0]);
        assert!((a.interval.half_width.unwrap() - 2.484_137_7).abs() < 1e-6);
        let p = s.paired("shared", "a").unwrap();
        assert_eq!(p.test.differences, vec![-1.0, -2.0, 0.0]);
        assert!((p.test.t.unwrap() + 3f64.sqrt()).abs() < 1e-12);
        assert!((p.test.p.unwrap() - 0.225_403_3).abs() < 1e-6);
        assert!(p.best_baseline);
        // Mean row: gated per seed (1+0.5)/2 = 0.75, 1.25, 1.75.
        assert_eq!(
            s.cell("gated", MEAN_ROW).unwrap().values,
            vec![0.75, 1.25, 1.75]
        );
        let md = s.markdown();
        // One format for the table (two decimals: 2 significant digits of 0.5); gated's
        // interval on a, 2 ± 2.48, is clipped at 0 (an MSE) and the caption says so.
        assert!(
            md.contains("| a | 2.00 [0.00, 4.48] | 3.00 [0.52, 5.48] |"),
            "{md}"
        );
        assert!(
            md.contains("1 interval clipped to the possible range ≥ 0"),
            "{md}"
        );
        assert!(md.contains("**-1.00 [-3.48, 1.48] (p 0.225)**"), "{md}");
        assert!(!md.contains('±'), "{md}");
        let back: Summary = serde_json::from_str(&s.to_json().unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn mixed_task_sets_are_refused() {
        let mut odd = member(1, [1.0, 1.0], [1.0, 1.0]);
        odd.1.tasks = vec!["a".into(), "c".into()];
        let e = Summary::of_members("demo", &[member(0, [1.0, 1.0], [1.0, 1.0]), odd])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("trains tasks [a, c] but seed-0 trains [a, b]"),
            "{e}"
        );
    }

    #[test]
    fn the_binarized_model_is_not_a_baseline_and_ties_are_all_best() {
        // shared and separate tie on every row; gated-binarized is better than both but is a
        // view of gated, not a baseline.
        let members: Vec<_> = (0..3)
            .map(|seed| {
                let mut m = member(seed, [1.0, 1.0], [2.0 + seed as f64, 2.0]);
                for t in ["a", "b"] {
                    let shared = m.1.values[&("shared".to_string(), t.to_string())];
                    m.1.values.insert(("separate".into(), t.into()), shared);
                    m.1.values.insert((BINARIZED.into(), t.into()), 0.5);
                }
                m
            })
            .collect();
        let s = Summary::of_members("demo", &members).unwrap();
        assert!(s.paired.iter().all(|p| p.b != BINARIZED), "{:?}", s.paired);
        assert!(s.paired.iter().all(|p| p.best_baseline));
        assert_eq!(s.paired.len(), 2 * 3);
        let md = s.markdown();
        assert!(!md.contains("gated − gated-binarized"), "{md}");
        let row = md
            .lines()
            .filter(|l| l.starts_with("| a |"))
            .nth(1)
            .unwrap();
        assert_eq!(
            row.matches("**").count(),
            4,
            "both tied baselines bold: {row}"
        );
    }

    #[test]
    fn accuracy_intervals_stay_in_range_and_one_seed_has_none() {
        let acc = |seed: u64, v: f64| {
            let mut m = member(seed, [v, v], [v, v]);
            m.1.metric = "accuracy".into();
            m
        };
        // 0.5, 0.9, 0.95: mean 0.783, half-width 0.613 → [0.171, 1.396]: the high end is
        // clipped to 1, never printed past it.
        let s = Summary::of_members("demo", &[acc(0, 0.5), acc(1, 0.9), acc(2, 0.95)]).unwrap();
        let md = s.markdown();
        assert!(md.contains("| a | 0.78 [0.17, 1.00] |"), "{md}");
        assert!(md.contains("clipped to the possible range [0, 1]"), "{md}");
        let one = Summary::of_members("demo", &[acc(0, 0.5)]).unwrap();
        let md = one.markdown();
        assert!(md.contains("| a | 0.50 | 0.50 |"), "{md}");
        assert!(md.contains("one seed: its value, no interval"), "{md}");
        assert!(!md.contains(" ["), "{md}");
    }

    #[test]
    fn continual_measures_are_summarised_per_strategy_and_paired() {
        let cont = |seed: u64, gated: [f64; 3], finetune: [f64; 3]| {
            let mut m = member(seed, [0.9, 0.9], [0.5, 0.5]);
            m.1.metric = "accuracy".into();
            m.1.continual.insert("gated".into(), gated);
            m.1.continual.insert("finetune".into(), finetune);
            m.1.continual.insert("joint".into(), [0.95, 0.01, 0.02]);
            m
        };
        let s = Summary::of_members(
            "demo",
            &[
                cont(0, [0.9, -0.02, 0.03], [0.5, -0.4, 0.4]),
                cont(1, [0.8, -0.04, 0.05], [0.6, -0.3, 0.3]),
                cont(2, [0.85, -0.03, 0.04], [0.55, -0.35, 0.35]),
            ],
        )
        .unwrap();
        let c = s.continual.as_ref().unwrap();
        let f = c.cell("finetune", "forgetting").unwrap();
        assert_eq!(f.values, vec![0.4, 0.3, 0.35]);
        assert!((f.interval.mean - 0.35).abs() < 1e-12);
        // joint is not sequential: an average, no BWT or forgetting.
        assert!(c.cell("joint", "average").is_some());
        assert!(c.cell("joint", "backward transfer").is_none());
        assert!(c.cell("joint", "forgetting").is_none());
        let p = c.paired("finetune", "forgetting").unwrap();
        // gated − finetune: −0.37, −0.25, −0.31.
        assert!((p.test.interval.mean + 0.31).abs() < 1e-12);
        assert!(
            p.best_baseline,
            "finetune is the only baseline with forgetting"
        );
        // Average: joint (0.95) is the best baseline, finetune is not.
        assert!(c.paired("joint", "average").unwrap().best_baseline);
        assert!(!c.paired("finetune", "average").unwrap().best_baseline);
        assert!(c.paired("joint", "forgetting").is_none());
        let md = s.markdown();
        assert!(
            md.contains("| measure | gated | finetune | joint |"),
            "{md}"
        );
        let bwt = md
            .lines()
            .find(|l| l.starts_with("| backward transfer |"))
            .unwrap();
        assert!(bwt.ends_with("| n/a |"), "{bwt}");
        let back: Summary = serde_json::from_str(&s.to_json().unwrap()).unwrap();
        assert_eq!(back, s);
        // An interleaved summary has none and writes none.
        let plain = Summary::of_members("demo", &[member(0, [1.0, 1.0], [1.0, 1.0])]).unwrap();
        assert!(plain.continual.is_none());
        assert!(!plain.to_json().unwrap().contains("continual"));
    }

    #[test]
    fn intervals_are_rounded_to_their_precision() {
        assert_eq!(format_interval(0.028_61, Some(0.003_14)), "0.0286 ± 0.0031");
        assert_eq!(format_interval(0.947_2, Some(0.012)), "0.947 ± 0.012");
        assert_eq!(
            format_interval(7.3e-29, Some(2.1e-29)),
            "7.30e-29 ± 2.1e-29"
        );
        assert_eq!(format_interval(0.5, None), "0.5000");
        assert_eq!(format_p(Some(0.0004)), "< 0.001");
    }
}
