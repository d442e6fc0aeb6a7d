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
use crate::train::format_metric;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

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
}

impl MemberResult {
    /// The last test metric of every strategy and task of a run (and of the binarized gated
    /// model), read through [`RunData`].
    pub fn read(run: &RunData, seed: u64) -> Self {
        let tasks = run.tasks();
        let mut values = BTreeMap::new();
        for s in run.strategies() {
            for t in &tasks {
                if let Some(&(_, v)) = run.eval_series(&s, t, "test", Quantity::Metric).last() {
                    values.insert((s.clone(), t.clone()), v);
                }
            }
        }
        for t in &tasks {
            if let Some(&(_, v)) = run.binarized_series(t, Quantity::Metric).last() {
                values.insert((BINARIZED.to_string(), t.clone()), v);
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
        MemberResult {
            seed,
            tasks,
            metric: run.metric_name(),
            step: run.last_step(),
            values,
            undecided,
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
}

/// The task name of [`Summary::undecided`].
pub const UNDECIDED_ROW: &str = "masks undecided";

fn refuse(path: &std::path::Path, message: String) -> Error {
    Error::Run {
        path: path.into(),
        message,
    }
}

impl Summary {
    /// Reads every seed's run of a finished sweep and summarises them. Refuses a sweep with a
    /// seed not trained to its end, and runs that do not train the same tasks and metric.
    pub fn of_sweep(sweep: &Sweep) -> Result<Self> {
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
        let Some((first_dir, first)) = members.first() else {
            return Err(refuse(name.as_ref(), "has no seed to summarise".into()));
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
        let baselines: Vec<&String> = strategies.iter().filter(|s| *s != "gated").collect();
        let mut paired = Vec::new();
        if strategies.iter().any(|s| s == "gated") {
            for row in &rows {
                let mean_of = |s: &str| super::stats::mean(&values(s, row));
                let best = baselines
                    .iter()
                    .min_by(|a, b| {
                        let (x, y) = (mean_of(a), mean_of(b));
                        if lower_is_better {
                            x.total_cmp(&y)
                        } else {
                            y.total_cmp(&x)
                        }
                    })
                    .map(|s| s.to_string());
                let gated = values("gated", row);
                for b in &baselines {
                    paired.push(Paired {
                        task: row.clone(),
                        a: "gated".into(),
                        b: b.to_string(),
                        best_baseline: best.as_deref() == Some(b.as_str()),
                        test: PairedTest::of(&gated, &values(b, row), CONFIDENCE),
                    });
                }
            }
        }
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

    /// Header line and the two tables (results, paired differences) as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}\n", self.caption());
        s.push_str(&markdown_table(&self.results_table()));
        if let Some(line) = self.undecided_line() {
            let _ = writeln!(s, "\n{line}");
        }
        if let Some(t) = self.paired_table() {
            let _ = writeln!(
                s,
                "\nPaired differences per seed, gated − baseline, mean ± {:.0} % interval half-width ({}; paired t-test p-value); the best baseline per row in bold.\n",
                self.confidence * 100.0,
                if self.lower_is_better {
                    "negative: gated better"
                } else {
                    "positive: gated better"
                }
            );
            s.push_str(&markdown_table(&t));
        }
        s
    }

    /// The two tables as aligned text for a terminal.
    pub fn text(&self) -> String {
        let mut s = format!("{}\n\n", self.caption());
        s.push_str(&text_table(&self.results_table()));
        if let Some(line) = self.undecided_line() {
            let _ = writeln!(s, "{line}");
        }
        if let Some(t) = self.paired_table() {
            let _ = writeln!(
                s,
                "\npaired differences gated − baseline per seed ({}), * = best baseline:",
                if self.lower_is_better {
                    "negative: gated better"
                } else {
                    "positive: gated better"
                }
            );
            s.push_str(&text_table(&t));
        }
        s
    }

    fn undecided_line(&self) -> Option<String> {
        let c = self.undecided.as_ref()?;
        Some(format!(
            "Gated mask entries still undecided (0.1 < σ(M) < 0.9) at the end, mean over tasks and parameters: {} %.",
            format_interval(
                100.0 * c.interval.mean,
                c.interval.half_width.map(|h| 100.0 * h)
            )
        ))
    }

    fn caption(&self) -> String {
        let n = self.seeds.len();
        let seeds: Vec<String> = self.seeds.iter().map(|s| s.to_string()).collect();
        format!(
            "Test {} after {} steps over {n} seed{} ({}): mean ± {:.0} % confidence interval half-width (Student t, {} df); {} is better.",
            if self.metric == "mse" {
                "MSE"
            } else {
                &self.metric
            },
            self.steps,
            if n == 1 { "" } else { "s" },
            seeds.join(", "),
            self.confidence * 100.0,
            n.saturating_sub(1),
            if self.lower_is_better {
                "lower"
            } else {
                "higher"
            }
        )
    }

    fn results_table(&self) -> Vec<Vec<String>> {
        let mut header = vec!["task".to_string()];
        header.extend(self.strategies.iter().map(|s| strategy_label(s)));
        let mut out = vec![header];
        for row in self.rows() {
            let mut r = vec![row.clone()];
            for st in &self.strategies {
                r.push(
                    self.cell(st, &row)
                        .map(|c| format_interval(c.interval.mean, c.interval.half_width))
                        .unwrap_or_default(),
                );
            }
            out.push(r);
        }
        out
    }

    fn paired_table(&self) -> Option<Vec<Vec<String>>> {
        let mut baselines: Vec<String> = Vec::new();
        for p in &self.paired {
            if !baselines.contains(&p.b) {
                baselines.push(p.b.clone());
            }
        }
        if baselines.is_empty() {
            return None;
        }
        let mut header = vec!["task".to_string()];
        header.extend(baselines.iter().map(|b| format!("gated − {b}")));
        let mut out = vec![header];
        for row in self.rows() {
            let mut r = vec![row.clone()];
            for b in &baselines {
                r.push(
                    self.paired(b, &row)
                        .map(|p| {
                            let cell = format!(
                                "{} (p {})",
                                format_interval(p.test.interval.mean, p.test.interval.half_width),
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
        Some(out)
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
        assert!(md.contains("| a | 2.0 ± 2.5 | 3.0 ± 2.5 |"), "{md}");
        assert!(md.contains("**-1.0 ± 2.5 (p 0.225)**"), "{md}");
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
