//! The summary of a grid sweep (`gtk train --seeds … --set KEY=V1,V2`): per configuration
//! the per-seed summary of every strategy (the seeds-only [`Summary`], reused), the
//! configurations ranked by one score, and the best configuration's paired t-tests against
//! each other one over the seeds.
//!
//! The ranking is made on the validation split when the runs hold one out (`val_fraction` in
//! the task set) and then only the selected configuration's test numbers are reported: a
//! "best" chosen on the numbers it is reported with is optimistic. Without a validation split
//! (or when asked to) it ranks on the test split, and every caption says so.

use super::super::folder::{Configuration, MemberState, Sweep};
use super::{
    CONFIDENCE, MEAN_ROW, MemberResult, Summary, Table, format_p, interval_cell, markdown_table,
    number_format, refuse, strategy_label, text_table,
};
use crate::error::{Error, Result};
use crate::report::RunData;
use crate::sweep::stats::PairedTest;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::path::PathBuf;

/// `format` of a grid sweep's `summary.json`.
pub const GRID_SUMMARY_FORMAT: &str = "gatekit-grid-summary-1";

/// One configuration's results on the selection split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigurationResult {
    /// Its folder name, `lr=0.003,mask_lr=0.1`.
    pub name: String,
    /// `[key, value]` per swept key (value as TOML text), in the grid's key order.
    pub settings: Vec<[String; 2]>,
    /// Every strategy and task over the seeds, on [`GridSummary::selection_split`].
    pub summary: Summary,
}

/// The best configuration against another one, paired over seeds on the selection score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectionTest {
    /// The other configuration.
    pub configuration: String,
    /// best − other, per seed, with its interval and paired t-test.
    pub test: PairedTest,
}

/// A grid sweep's `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridSummary {
    /// [`GRID_SUMMARY_FORMAT`].
    pub format: String,
    /// The sweep folder's name.
    pub sweep: String,
    /// `mse` or `accuracy`.
    pub metric: String,
    /// Whether lower values are better.
    pub lower_is_better: bool,
    /// Confidence of every interval.
    pub confidence: f64,
    /// Seeds, in the order of every `values` list.
    pub seeds: Vec<u64>,
    /// The swept keys (`run.NAME`, `defaults.NAME`).
    pub keys: Vec<String>,
    /// `val` (held-out share of the training data) or `test`: the split the configurations
    /// are compared and ranked on.
    pub selection_split: String,
    /// The strategy whose mean ranks the configurations (gated when trained).
    pub selection_strategy: String,
    /// The row that ranks: the mean over tasks, or the one task.
    pub selection_row: String,
    /// Every configuration, in grid order.
    pub configurations: Vec<ConfigurationResult>,
    /// Configuration names, best first (ties keep grid order, NaN last).
    pub ranking: Vec<String>,
    /// The selected configuration (the first of the ranking).
    pub selected: String,
    /// The selected configuration − each other one, on the selection score.
    pub versus_selected: Vec<SelectionTest>,
    /// The selected configuration's test results (every strategy and task).
    pub selected_test: Summary,
}

impl GridSummary {
    /// Reads every member of a finished grid sweep and summarises it; refuses a sweep with a
    /// member not trained to its end. Ranks on the validation split when every member has
    /// one, else on the test split.
    pub fn of_sweep(sweep: &Sweep) -> Result<Self> {
        let configs = sweep.configurations();
        let mut per_config: Vec<(Configuration, Vec<(PathBuf, RunData)>)> = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let mut runs = Vec::new();
            for &seed in &sweep.spec.seeds {
                let m = super::super::folder::Member { config: i, seed };
                let dir = sweep.dir_of(&m);
                match sweep.state_of(&m)? {
                    MemberState::Done { .. } => {}
                    MemberState::New => {
                        return Err(refuse(
                            &dir,
                            format!(
                                "{} has not started; run it with `gtk train --resume {}`",
                                sweep.label(&m),
                                sweep.dir.display()
                            ),
                        ));
                    }
                    MemberState::Partial { step, total } => {
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
                runs.push((dir, run));
            }
            per_config.push((c.clone(), runs));
        }
        // On validation when every run asks for it (`eval_split`, `val` by default with a
        // validation split) and logged it; else on the test split, labelled so.
        let has_val = per_config.iter().all(|(_, runs)| {
            runs.iter().all(|(_, r)| {
                let tasks = r.tasks();
                r.set.run.evaluation.eval_split == crate::config::EvalSplit::Val
                    && r.strategies().iter().all(|s| {
                        tasks.iter().all(|t| {
                            !r.eval_series(s, t, "val", crate::report::Quantity::Metric)
                                .is_empty()
                        })
                    })
            })
        });
        let split = if has_val { "val" } else { "test" };
        let name = sweep
            .dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("sweep")
            .to_string();
        let mut results = Vec::new();
        let mut tests = Vec::new();
        for (c, runs) in &per_config {
            let read = |split: &str| -> Vec<(PathBuf, MemberResult)> {
                runs.iter()
                    .zip(&sweep.spec.seeds)
                    .map(|((dir, run), &seed)| {
                        (dir.clone(), MemberResult::read_split(run, seed, split))
                    })
                    .collect()
            };
            results.push((c.clone(), Summary::of_members(&c.name, &read(split))?));
            tests.push(Summary::of_members(&name, &read("test"))?);
        }
        Self::of_configurations(&name, split, results, tests)
    }

    /// Ranks configurations from their summaries on the selection split (`results`) and
    /// keeps the test summary (`tests`, same order) of the selected one.
    pub fn of_configurations(
        name: &str,
        split: &str,
        results: Vec<(Configuration, Summary)>,
        mut tests: Vec<Summary>,
    ) -> Result<Self> {
        let Some((first_config, first)) = results.first() else {
            return Err(refuse(
                name.as_ref(),
                "has no configuration to summarise".into(),
            ));
        };
        for (c, s) in &results[1..] {
            if s.tasks != first.tasks || s.metric != first.metric {
                return Err(Error::Run {
                    path: c.name.clone().into(),
                    message: format!(
                        "trains other tasks or another metric than {}: one grid compares runs of one task set",
                        first_config.name
                    ),
                });
            }
        }
        let strategy = if first.strategies.iter().any(|s| s == "gated") {
            "gated".to_string()
        } else {
            first.strategies.first().cloned().unwrap_or_default()
        };
        let row = if first.tasks.len() > 1 {
            MEAN_ROW.to_string()
        } else {
            first.tasks.first().cloned().unwrap_or_default()
        };
        let score = |s: &Summary| -> Vec<f64> {
            s.cell(&strategy, &row)
                .map(|c| c.values.clone())
                .unwrap_or_default()
        };
        let lower = first.lower_is_better;
        let mean = |s: &Summary| super::super::stats::mean(&score(s));
        let mut order: Vec<usize> = (0..results.len()).collect();
        // Stable: ties keep grid order; NaN (a diverged configuration) ranks last.
        order.sort_by(|&a, &b| {
            let (x, y) = (mean(&results[a].1), mean(&results[b].1));
            match (x.is_nan(), y.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if lower => x.total_cmp(&y),
                _ => y.total_cmp(&x),
            }
        });
        let best = order[0];
        let best_values = score(&results[best].1);
        let versus_selected = order[1..]
            .iter()
            .map(|&i| SelectionTest {
                configuration: results[i].0.name.clone(),
                test: PairedTest::of(&best_values, &score(&results[i].1), CONFIDENCE),
            })
            .collect();
        let keys = first_config
            .settings
            .iter()
            .map(|s| s.key.clone())
            .collect();
        Ok(GridSummary {
            format: GRID_SUMMARY_FORMAT.into(),
            sweep: name.into(),
            metric: first.metric.clone(),
            lower_is_better: lower,
            confidence: CONFIDENCE,
            seeds: first.seeds.clone(),
            keys,
            selection_split: split.into(),
            selection_strategy: strategy,
            selection_row: row,
            ranking: order.iter().map(|&i| results[i].0.name.clone()).collect(),
            selected: results[best].0.name.clone(),
            versus_selected,
            selected_test: tests.swap_remove(best),
            configurations: results
                .into_iter()
                .map(|(c, summary)| ConfigurationResult {
                    name: c.name,
                    settings: c.settings.into_iter().map(|s| [s.key, s.value]).collect(),
                    summary,
                })
                .collect(),
        })
    }

    /// Reads a grid sweep's `summary.json`.
    pub fn read(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let s: GridSummary = serde_json::from_str(&text)
            .map_err(|e| Error::json(path, "is not a grid sweep summary", e))?;
        if s.format != GRID_SUMMARY_FORMAT {
            return Err(Error::Run {
                path: path.into(),
                message: format!(
                    "has format `{}`; this gtk reads `{GRID_SUMMARY_FORMAT}`",
                    s.format
                ),
            });
        }
        Ok(s)
    }

    /// As pretty JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map_err(|e| Error::encode(super::super::folder::SUMMARY_JSON, "the grid summary", e))
    }

    /// The configuration named `name`.
    pub fn configuration(&self, name: &str) -> Option<&ConfigurationResult> {
        self.configurations.iter().find(|c| c.name == name)
    }

    /// The split's name as captions say it.
    fn split_words(&self) -> &'static str {
        if self.selection_split == "val" {
            "validation"
        } else {
            "test"
        }
    }

    /// How the selection was made, for the captions: on validation, or labelled as made on
    /// the test split.
    pub fn selection_words(&self) -> String {
        if self.selection_split == "val" {
            "Selected on the validation split (held out of the training data); test numbers are reported for the selected configuration only.".into()
        } else {
            "SELECTED ON THE TEST SPLIT: the selected configuration's test numbers are optimistic (chosen on the data they are reported on); hold out a validation split with `val_fraction` in the task set to select on it (`eval_split = \"val\"`, its default then).".into()
        }
    }

    fn metric_label(&self) -> &str {
        if self.metric == "mse" {
            "MSE"
        } else {
            &self.metric
        }
    }

    /// The ranking table: rank, configuration, each key's value, every strategy's mean over
    /// tasks on the selection split, and the selected − this paired difference.
    fn ranking_table(&self) -> Table {
        let range = super::super::figures::metric_range(&self.metric);
        let cells = self
            .configurations
            .iter()
            .flat_map(|c| c.summary.cells.iter().map(|x| &x.interval));
        let number = number_format(cells);
        let diff_number = number_format(self.versus_selected.iter().map(|t| &t.test.interval));
        let strategies = self
            .configurations
            .first()
            .map(|c| c.summary.strategies.clone())
            .unwrap_or_default();
        let mut header = vec!["rank".to_string(), "configuration".to_string()];
        header.extend(strategies.iter().map(|s| strategy_label(s)));
        header.push(format!(
            "selected − this ({}, {})",
            strategy_label(&self.selection_strategy),
            self.split_words()
        ));
        let mut rows = vec![header];
        let mut clipped = 0;
        let full = (f64::NEG_INFINITY, f64::INFINITY);
        for (rank, name) in self.ranking.iter().enumerate() {
            let Some(c) = self.configuration(name) else {
                continue;
            };
            let mut r = vec![(rank + 1).to_string(), name.clone()];
            for s in &strategies {
                r.push(
                    c.summary
                        .cell(s, &self.selection_row)
                        .map(|x| interval_cell(&x.interval, number, range, &mut clipped))
                        .unwrap_or_default(),
                );
            }
            r.push(
                match self
                    .versus_selected
                    .iter()
                    .find(|t| &t.configuration == name)
                {
                    Some(t) => format!(
                        "{} (p {})",
                        interval_cell(&t.test.interval, diff_number, full, &mut clipped),
                        format_p(t.test.p)
                    ),
                    None => "selected".into(),
                },
            );
            rows.push(r);
        }
        let n = self.seeds.len();
        Table {
            caption: format!(
                "Configurations ranked by the {} {} of {} ({}) over {n} seed{}: mean{} per strategy{}; {} is better. Last column: the selected configuration minus this one on the {} split, paired over seeds (mean [interval], paired t-test p-value; {} means the selected one is better). {}",
                self.split_words(),
                self.metric_label(),
                self.selection_strategy,
                self.selection_row,
                if n == 1 { "" } else { "s" },
                if n < 2 {
                    String::new()
                } else {
                    format!(
                        " [{:.0} % confidence interval] (Student t, {} df)",
                        self.confidence * 100.0,
                        n - 1
                    )
                },
                if clipped > 0 {
                    format!(
                        "; {clipped} interval{} clipped to the possible range",
                        if clipped == 1 { "" } else { "s" }
                    )
                } else {
                    String::new()
                },
                if self.lower_is_better {
                    "lower"
                } else {
                    "higher"
                },
                self.split_words(),
                if self.lower_is_better {
                    "negative"
                } else {
                    "positive"
                },
                self.selection_words()
            ),
            rows,
            after: None,
        }
    }

    fn render(
        &self,
        table: fn(&[Vec<String>]) -> String,
        nested: fn(&Summary) -> String,
    ) -> String {
        let mut s = String::new();
        let t = self.ranking_table();
        let _ = writeln!(s, "{}\n", t.caption);
        s.push_str(&table(&t.rows));
        let settings = self
            .configuration(&self.selected)
            .map(|c| {
                c.settings
                    .iter()
                    .map(|[k, v]| format!("{k} = {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "\nSelected configuration `{}` ({settings}), selected on the {} split; its test results:\n",
            self.selected,
            self.split_words()
        );
        s.push_str(&nested(&self.selected_test));
        s
    }

    /// The ranking table and the selected configuration's test tables, as Markdown.
    pub fn markdown(&self) -> String {
        self.render(markdown_table, Summary::markdown)
    }

    /// The same as aligned text.
    pub fn text(&self) -> String {
        self.render(text_table, Summary::text)
    }
}
