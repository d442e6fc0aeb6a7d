//! The report's figures: what each shows of a run (curves, histograms, gate values, runs
//! compared). How they are drawn (PNG and SVG, colours, headers, line panels) is
//! [`crate::plot`]'s.

pub use crate::plot::Figure;

use super::{Quantity, RunData, STRATEGIES};
use crate::error::Result;
use crate::plot::{
    Header, LineGrid, LinePanel, MUTED, Mark, PALETTE, Series, TEXT, grid_cols, lighten, render,
    strategy_color, task_colors,
};
use crate::run::Record;
use plotters::style::RGBColor;
use std::collections::BTreeSet;

/// Whether a metric spans enough orders of magnitude to want a log axis (MSE curves).
fn wants_log(metric_name: &str, panels: &[LinePanel]) -> bool {
    if metric_name == "accuracy" {
        return false;
    }
    let ys: Vec<f64> = panels
        .iter()
        .flat_map(|p| p.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)))
        .collect();
    let lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    lo > 0.0 && hi / lo > 20.0
}

/// One panel of a line figure, as numbers: what [`curves`] draws.
#[derive(Debug, Clone, PartialEq)]
pub struct PanelData {
    /// The panel's title (`mean over tasks`, `task NAME`, the training panel).
    pub title: String,
    /// Every line, `(step, value)`, in drawing order (strategies in [`STRATEGIES`] order).
    pub lines: Vec<Vec<(f64, f64)>>,
    /// Every set of points drawn as dots (full evaluations, phase ends, binarized).
    pub dots: Vec<Vec<(f64, f64)>>,
}

/// The panels of Figure 1 ([`curves`]) with the data each draws.
pub fn curves_data(run: &RunData, quantity: Quantity) -> Result<Vec<PanelData>> {
    Ok(curves_drawn(run, "", quantity, false)?
        .0
        .into_iter()
        .map(|p| PanelData {
            title: p.title,
            lines: p
                .series
                .iter()
                .filter(|s| !s.dots)
                .map(|s| s.points.clone())
                .collect(),
            dots: p
                .series
                .iter()
                .filter(|s| s.dots)
                .map(|s| s.points.clone())
                .collect(),
        })
        .collect())
}

/// Figure 1: test metric (or loss) per task over steps, strategies overlaid, plus the mean
/// over tasks; the binarized gated model dashed.
pub fn curves(run: &RunData, prefix: &str, quantity: Quantity) -> Result<Option<Figure>> {
    Ok(curves_drawn(run, prefix, quantity, true)?.1)
}

/// Figure 1's panels, and the figure when `draw`.
fn curves_drawn(
    run: &RunData,
    prefix: &str,
    quantity: Quantity,
    draw: bool,
) -> Result<(Vec<LinePanel>, Option<Figure>)> {
    let view = CurvesView::of(run, quantity);
    let mut panels = view.test_panels(run, quantity);
    let train = view.train_panel(run, quantity);
    let has_train = train.is_some();
    if let Some(p) = train {
        // After the mean: how far the test curves are from what the optimiser sees, without
        // squeezing their axis.
        panels.insert(usize::from(view.tasks.len() > 1), p);
    }
    let log = wants_log(&run.metric_name(), &panels);
    for p in &mut panels {
        p.log_y = log;
    }
    if !draw {
        return Ok((panels, None));
    }
    let direction = if run.metric_name() == "accuracy" && quantity == Quantity::Metric {
        "higher is better"
    } else {
        "lower is better"
    };
    let grid = LineGrid {
        header: Header {
            title: format!(
                "{} per task over training — run {}",
                capitalize(&view.what),
                run.name
            ),
            subtitle: Some(format!(
                "{direction}{}",
                if log { "; log scale" } else { "" }
            )),
            legend: view.legend(),
        },
        cols: grid_cols(panels.len()),
        panels,
        panel: (420, 300),
    };
    let (stem, title) = match quantity {
        Quantity::Metric => (
            "fig1_test_metric",
            format!("Test {} over training", view.metric),
        ),
        Quantity::Loss => ("fig1_test_loss", "Test loss over training".to_string()),
    };
    let caption = view.caption(quantity, has_train);
    let figure = render(&format!("{prefix}{stem}"), &title, caption, &grid)?;
    Ok((grid.panels, Some(figure)))
}

/// What Figure 1 shows of a run, worked out once for its panels, legend and caption.
struct CurvesView {
    strategies: Vec<String>,
    tasks: Vec<String>,
    /// The metric's axis label (`accuracy`, `MSE`).
    metric: String,
    /// The y axis: `test accuracy`, `test loss`.
    what: String,
    has_binarized: bool,
    /// With probes, the curve is the probe (every `eval_every` steps on the fixed subset) and
    /// the full evaluations are dots on it; older runs draw their full evaluations as lines.
    probes: bool,
    /// A sequential run: grey lines where each phase ends (the next task starts).
    phase_ends: Vec<f64>,
    /// The phase-end evaluations (whole test split) are drawn as dots on every curve of the
    /// metric: they are the accuracy matrix's entries, and a probe cadence longer than a phase
    /// would otherwise leave the forgetting between them invisible.
    phased: bool,
}

impl CurvesView {
    fn of(run: &RunData, quantity: Quantity) -> Self {
        let metric = metric_label(&run.metric_name());
        // Probes on the validation split (`eval_split = "val"`): the lines are validation
        // numbers and the full evaluations' dots test numbers; the axis says both.
        let split = if run.has_probes() && run.probe_split() == "val" {
            "val (lines), test (dots)"
        } else {
            "test"
        };
        let what = match quantity {
            Quantity::Metric => format!("{split} {metric}"),
            Quantity::Loss => format!("{split} loss"),
        };
        let phase_ends: Vec<f64> = match run.set.run.schedule.phase_steps {
            Some(p) => (1..run.set.tasks.len()).map(|i| (i * p) as f64).collect(),
            None => Vec::new(),
        };
        CurvesView {
            strategies: run.strategies(),
            tasks: run.tasks(),
            metric,
            what,
            has_binarized: run
                .records
                .iter()
                .any(|r| matches!(r, Record::Binarized { .. })),
            probes: run.has_probes(),
            phased: quantity == Quantity::Metric && !phase_ends.is_empty(),
            phase_ends,
        }
    }

    /// The mean over tasks (with several) and one panel per task.
    fn test_panels(&self, run: &RunData, quantity: Quantity) -> Vec<LinePanel> {
        let mut panels = Vec::new();
        if self.tasks.len() > 1 {
            panels.push(self.test_panel(
                "mean over tasks".into(),
                &|s: &str| run.mean_over_tasks(|t| run.eval_series(s, t, "test", quantity)),
                &|s: &str| {
                    run.mean_over_tasks(|t| run.probe_series(s, t, run.probe_split(), quantity))
                },
                &|s: &str| run.mean_over_tasks(|t| run.phase_series(s, t)),
                run.mean_over_tasks(|t| run.binarized_series(t, quantity)),
            ));
        }
        for t in &self.tasks {
            panels.push(self.test_panel(
                format!("task {t}"),
                &|s: &str| run.eval_series(s, t, "test", quantity),
                &|s: &str| run.probe_series(s, t, run.probe_split(), quantity),
                &|s: &str| run.phase_series(s, t),
                run.binarized_series(t, quantity),
            ));
        }
        panels
    }

    /// One panel: each strategy's full evaluations, probes and phase ends, and the binarized
    /// gated model's points `bin`.
    fn test_panel(
        &self,
        title: String,
        full: &dyn Fn(&str) -> Vec<(f64, f64)>,
        probe: &dyn Fn(&str) -> Vec<(f64, f64)>,
        phase: &dyn Fn(&str) -> Vec<(f64, f64)>,
        bin: Vec<(f64, f64)>,
    ) -> LinePanel {
        let mut p = LinePanel::new(title, "step", &self.what);
        p.integer_x = true;
        p.marks_x = self.phase_ends.clone();
        for s in &self.strategies {
            if self.probes {
                p.line(strategy_color(s), probe(s));
                p.dots(strategy_color(s), full(s), false);
            } else {
                p.line(strategy_color(s), full(s));
            }
            if self.phased {
                p.dots(strategy_color(s), phase(s), false);
            }
        }
        if !bin.is_empty() {
            if self.probes {
                p.dots(strategy_color("gated"), bin, true);
            } else {
                p.series.push(Series {
                    color: strategy_color("gated"),
                    dashed: true,
                    dots: false,
                    width: 2,
                    points: bin,
                });
            }
        }
        p
    }

    /// The training split's panel, if the run logged one: with probes the mean over the
    /// batches between probes (both figures); older runs the loss logged every `log_every`
    /// steps (the loss figure only).
    fn train_panel(&self, run: &RunData, quantity: Quantity) -> Option<LinePanel> {
        let train: Vec<(&String, Vec<(f64, f64)>)> = if self.probes {
            self.strategies
                .iter()
                .map(|s| (s, run.probe_train_series(s, quantity)))
                .filter(|(_, pts)| !pts.is_empty())
                .collect()
        } else if quantity == Quantity::Loss {
            self.strategies
                .iter()
                .map(|s| (s, train_loss(run, s)))
                .filter(|(_, pts)| !pts.is_empty())
                .collect()
        } else {
            Vec::new()
        };
        if train.is_empty() {
            return None;
        }
        let train_what = match quantity {
            Quantity::Metric => format!("training {}", self.metric),
            Quantity::Loss => "training loss".to_string(),
        };
        let mut p = LinePanel::new(format!("{train_what} on the batches"), "step", &train_what);
        p.integer_x = true;
        p.x_range = Some((0.0, run.last_step().max(1) as f64));
        for (s, pts) in train {
            p.series.push(Series {
                color: strategy_color(s),
                dashed: false,
                dots: false,
                width: 1,
                points: pts,
            });
        }
        Some(p)
    }

    /// The strategies' colours, then the dots and the binarized model where drawn.
    fn legend(&self) -> Vec<(String, RGBColor, Mark)> {
        let mut legend: Vec<(String, RGBColor, Mark)> = self
            .strategies
            .iter()
            .map(|s| (s.clone(), strategy_color(s), Mark::Line))
            .collect();
        if self.probes || self.phased {
            legend.push((
                if self.phased {
                    "full evaluation (whole test split; also at every phase end)".into()
                } else {
                    "full evaluation (whole test split)".into()
                },
                MUTED,
                Mark::Dot,
            ));
        }
        if self.has_binarized {
            legend.push((
                "gated, binarized masks W×1[M>0]".into(),
                strategy_color("gated"),
                if self.probes {
                    Mark::Ring
                } else {
                    Mark::Dashed
                },
            ));
        }
        legend
    }

    fn caption(&self, quantity: Quantity, has_train: bool) -> String {
        format!(
            "Test {} of every strategy on every task {} (the paper's Figure 1){}{}. \
             Same colours for the same strategy in every figure.",
            match quantity {
                Quantity::Metric => self.metric.as_str(),
                Quantity::Loss => "loss",
            },
            if self.probes {
                "at each probe (lines: the fixed probe subset of each test split) and each full \
                 evaluation (dots: the whole test split)"
            } else {
                "at each evaluation"
            },
            match (self.has_binarized, self.probes) {
                (true, true) => "; hollow circles: the gated model with its masks binarized",
                (true, false) => "; dashed: the gated model with its masks binarized",
                _ => "",
            },
            match (has_train, self.probes) {
                (false, _) => "",
                (true, true) => {
                    "; the second panel shows the training split: the batches trained on between probes"
                }
                (true, false) => {
                    "; the second panel shows the training loss on the batches, averaged between logs"
                }
            }
        )
    }
}

/// A metric's name for axis labels: `MSE`, `accuracy`.
fn metric_label(name: &str) -> String {
    if name == "mse" {
        "MSE".into()
    } else {
        name.into()
    }
}

/// `(step, mean batch loss)` of one strategy from the `train` records.
fn train_loss(run: &RunData, strategy: &str) -> Vec<(f64, f64)> {
    run.records
        .iter()
        .filter_map(|r| match r {
            Record::Train {
                step,
                strategy: s,
                loss,
            } if s == strategy => Some((*step as f64, *loss)),
            _ => None,
        })
        .collect()
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Histogram records `(step, lo, hi, counts)` of one strategy, parameter and kind, all tasks.
fn histogram_records<'a>(
    run: &'a RunData,
    strategy: &str,
    param: &str,
    of: &str,
) -> Vec<(usize, &'a str, f64, f64, &'a [u32])> {
    run.records
        .iter()
        .filter_map(|r| match r {
            Record::Histogram {
                step,
                strategy: s,
                task,
                param: p,
                of: o,
                lo,
                hi,
                counts,
            } if s == strategy && p == param && o == of => {
                Some((*step, task.as_str(), *lo, *hi, counts.as_slice()))
            }
            _ => None,
        })
        .collect()
}

/// Re-bins equal-width histograms with different ranges onto one grid of `bins` bins over
/// `[lo, hi]`, spreading each source bin's count over the target bins it overlaps (values are
/// assumed uniform within a bin). Used to pool tasks whose snapshots have different ranges.
pub fn rebin(sources: &[(f64, f64, &[u32])], lo: f64, hi: f64, bins: usize) -> Vec<f64> {
    let mut out = vec![0.0; bins];
    let tw = (hi - lo) / bins as f64;
    for &(slo, shi, counts) in sources {
        let n = counts.len().max(1);
        let sw = (shi - slo) / n as f64;
        for (i, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let (a, b) = (slo + i as f64 * sw, slo + (i + 1) as f64 * sw);
            if sw <= 0.0 {
                let k = (((a - lo) / tw).floor().max(0.0) as usize).min(bins - 1);
                out[k] += f64::from(c);
                continue;
            }
            let first = (((a - lo) / tw).floor().max(0.0) as usize).min(bins - 1);
            let last = (((b - lo) / tw).ceil().max(1.0) as usize).min(bins);
            for (k, slot) in out.iter_mut().enumerate().take(last).skip(first) {
                let (ta, tb) = (lo + k as f64 * tw, lo + (k + 1) as f64 * tw);
                let overlap = (b.min(tb) - a.max(ta)).max(0.0);
                *slot += f64::from(c) * overlap / sw;
            }
        }
    }
    out
}

/// A histogram as a staircase outline: `(edge, share)` points.
fn staircase(lo: f64, hi: f64, counts: &[f64]) -> Vec<(f64, f64)> {
    let total: f64 = counts.iter().sum::<f64>().max(1e-300);
    let w = (hi - lo) / counts.len().max(1) as f64;
    let mut pts = Vec::with_capacity(counts.len() * 2 + 2);
    pts.push((lo, 0.0));
    for (i, c) in counts.iter().enumerate() {
        let y = c / total;
        pts.push((lo + i as f64 * w, y));
        pts.push((lo + (i + 1) as f64 * w, y));
    }
    pts.push((hi, 0.0));
    pts
}

/// Up to `k` steps spread over the sorted `steps`: first, last and evenly between.
fn snapshot_steps(steps: &BTreeSet<usize>, k: usize) -> Vec<usize> {
    let all: Vec<usize> = steps.iter().copied().collect();
    if all.len() <= k {
        return all;
    }
    let mut picked: Vec<usize> = (0..k)
        .map(|i| all[(i * (all.len() - 1)) / (k - 1).max(1)])
        .collect();
    picked.dedup();
    picked
}

/// One layer's row of Figure 2: the x-range every panel of the row shares, and per strategy
/// the pooled histogram `(step, counts over [lo, hi])` at each snapshot step it has.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightHistogramRow {
    /// Parameter, e.g. `fc1.weight`.
    pub param: String,
    /// The shared x-range: the smallest and largest value any strategy had at any snapshot.
    pub lo: f64,
    /// See `lo`.
    pub hi: f64,
    /// Per strategy (in [`RunData::strategies`] order), per snapshot step, the counts over
    /// equal-width bins of `[lo, hi]` (tasks pooled).
    pub strategies: Vec<(String, HistogramSeries)>,
}

/// One panel's histograms: `(step, counts)` per snapshot step.
pub type HistogramSeries = Vec<(usize, Vec<f64>)>;

/// One histogram record of a task: `(step, lo, hi, counts)`.
type Snapshot<'a> = (usize, f64, f64, &'a [u32]);

/// The data behind Figure 2: the snapshot steps drawn (up to four, first and last included)
/// and one row per weight parameter with one x-range for all its panels, so the strategies
/// and the steps of a layer can be compared by eye as in the paper's Figure 2.
pub fn weight_histogram_rows(run: &RunData) -> (Vec<usize>, Vec<WeightHistogramRow>) {
    let params = run.weight_params();
    let strategies: Vec<String> = run
        .strategies()
        .into_iter()
        .filter(|s| {
            params
                .iter()
                .any(|p| !histogram_records(run, s, p, "effective").is_empty())
        })
        .collect();
    let steps: BTreeSet<usize> = run
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Histogram { step, of, .. } if of == "effective" => Some(*step),
            _ => None,
        })
        .collect();
    let snaps = snapshot_steps(&steps, 4);
    let mut rows = Vec::new();
    for p in &params {
        let per: Vec<(String, Vec<Snapshot>)> = strategies
            .iter()
            .map(|s| {
                let recs = histogram_records(run, s, p, "effective")
                    .into_iter()
                    .filter(|r| snaps.contains(&r.0))
                    .map(|r| (r.0, r.2, r.3, r.4))
                    .collect();
                (s.clone(), recs)
            })
            .collect();
        let all = per.iter().flat_map(|(_, r)| r.iter());
        let lo = all.clone().map(|r| r.1).fold(f64::INFINITY, f64::min);
        let hi = all.map(|r| r.2).fold(f64::NEG_INFINITY, f64::max);
        if !(lo.is_finite() && hi > lo) {
            continue;
        }
        let mut row = WeightHistogramRow {
            param: p.clone(),
            lo,
            hi,
            strategies: Vec::new(),
        };
        for (s, recs) in per {
            // One bin width per panel (so its steps compare), about √n bins over the
            // strategy's own spread (so a narrow distribution on a wide shared axis is not
            // squeezed into one or two bins).
            let n = recs
                .iter()
                .filter(|r| r.0 == recs[0].0)
                .map(|r| r.3.iter().map(|&c| u64::from(c)).sum::<u64>())
                .sum::<u64>();
            let own = recs.iter().map(|r| r.2 - r.1).fold(0.0, f64::max);
            let per_own = ((n as f64).sqrt().round() as usize).clamp(12, 60);
            let bins = ((per_own as f64 * (hi - lo) / own.max(1e-300)).round() as usize)
                .clamp(per_own, 240);
            let mut series = Vec::new();
            for &step in &snaps {
                let src: Vec<(f64, f64, &[u32])> = recs
                    .iter()
                    .filter(|r| r.0 == step)
                    .map(|r| (r.1, r.2, r.3))
                    .collect();
                if !src.is_empty() {
                    series.push((step, rebin(&src, lo, hi, bins)));
                }
            }
            row.strategies.push((s, series));
        }
        rows.push(row);
    }
    (snaps, rows)
}

/// Figure 2: distribution of the effective weights (gated `W ⊙ σ(M_t)` pooled over tasks,
/// `W` for the plain models) at a few steps, one row per layer with one x-axis for the whole
/// row, one column per strategy.
pub fn weight_histograms(run: &RunData, prefix: &str) -> Result<Option<Figure>> {
    let (snaps, rows) = weight_histogram_rows(run);
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let strategies: Vec<String> = first.strategies.iter().map(|(s, _)| s.clone()).collect();
    let shade = |step: usize| -> f64 {
        let i = snaps.iter().position(|&s| s == step).unwrap_or(0);
        if snaps.len() <= 1 {
            0.0
        } else {
            0.72 * (1.0 - i as f64 / (snaps.len() - 1) as f64)
        }
    };
    let mut panels = Vec::new();
    // Which snapshot steps each strategy has data for: the legend lists only steps drawn
    // somewhere (the gated model has no step-0 snapshot: a task's mask appears at its first
    // step), and the subtitle names a strategy that lacks one of them.
    let mut drawn: BTreeSet<(usize, String)> = BTreeSet::new();
    for row in &rows {
        for (s, series) in &row.strategies {
            let pooled = if s == "gated" || s == "separate" {
                " (all tasks)"
            } else {
                ""
            };
            let mut panel = LinePanel::new(
                format!("{s}: {}{pooled}", row.param),
                if s == "gated" { "W × σ(M_t)" } else { "W" },
                "share of weights",
            );
            for (step, counts) in series {
                panel.line(
                    lighten(strategy_color(s), shade(*step)),
                    staircase(row.lo, row.hi, counts),
                );
                drawn.insert((*step, s.clone()));
            }
            panel.x_range = Some((row.lo, row.hi));
            panels.push(panel);
        }
    }
    let shown: Vec<usize> = snaps
        .iter()
        .copied()
        .filter(|step| drawn.iter().any(|(d, _)| d == step))
        .collect();
    let legend = shown
        .iter()
        .map(|&s| (format!("step {s}"), lighten(TEXT, shade(s)), Mark::Line))
        .collect();
    let mut subtitle = "light to dark: early to late; lines take their strategy's colour; one \
                        x-axis per layer"
        .to_string();
    for s in &strategies {
        let lacking: Vec<String> = shown
            .iter()
            .filter(|step| !drawn.contains(&(**step, s.clone())))
            .map(|step| step.to_string())
            .collect();
        if !lacking.is_empty() {
            subtitle.push_str(&format!("; {s}: no data at step {}", lacking.join(", ")));
        }
    }
    let title = if shown.len() > 1 {
        "Effective weights over training"
    } else {
        "Effective weights"
    };
    let grid = LineGrid {
        header: Header {
            title: format!("{title} — run {}", run.name),
            subtitle: Some(subtitle),
            legend,
        },
        cols: strategies.len(),
        panels,
        panel: (400, 260),
    };
    let caption = format!(
        "Histograms of the effective weights at step{} {} (the paper's Figure 2), on one x-axis \
         per layer: the gated model's `W ⊙ σ(M_t)` pooled over tasks, the plain models' `W`. \
         A weight that a task switches off contributes almost nothing, so strong masking adds \
         mass at zero.",
        if shown.len() == 1 { "" } else { "s" },
        shown
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(Some(render(
        &format!("{prefix}fig2_weight_histograms"),
        title,
        caption,
        &grid,
    )?))
}

/// Figure 3: the gate values `σ(M_t)` of every task for each layer at the last snapshot, with
/// the share still undecided (0.1 < σ < 0.9) shaded.
pub fn gate_distributions(run: &RunData, prefix: &str) -> Result<Option<Figure>> {
    let params = run.weight_params();
    let tasks = run.tasks();
    let last = run
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Histogram { step, of, .. } if of == "gate" => Some(*step),
            _ => None,
        })
        .max();
    let Some(last) = last else {
        return Ok(None);
    };
    let colors = task_colors(&tasks);
    let mask_step = run.last_mask_step();
    let mut panels = Vec::new();
    for p in &params {
        let recs = histogram_records(run, "gated", p, "gate");
        let mut undecided = Vec::new();
        let mut panel = LinePanel::new(String::new(), "gate value σ(M_t)", "share of mask entries");
        for (t, task) in tasks.iter().enumerate() {
            let Some(r) = recs.iter().find(|r| r.0 == last && r.1 == task) else {
                continue;
            };
            let counts: Vec<f64> = r.4.iter().map(|&c| f64::from(c)).collect();
            panel.line(colors[t], staircase(r.2, r.3, &counts));
            if let Some((_, u)) = mask_step.and_then(|s| run.mask_stats(s, task, p)) {
                undecided.push(u);
            }
        }
        let mean_undecided = if undecided.is_empty() {
            String::new()
        } else {
            format!(
                " — undecided {:.1}%",
                100.0 * undecided.iter().sum::<f64>() / undecided.len() as f64
            )
        };
        panel.title = format!("{p}{mean_undecided}");
        panel.x_range = Some((0.0, 1.0));
        panel.band = Some((0.1, 0.9));
        panels.push(panel);
    }
    let legend = tasks
        .iter()
        .enumerate()
        .map(|(t, name)| {
            let u: Vec<f64> = params
                .iter()
                .filter_map(|p| mask_step.and_then(|s| run.mask_stats(s, name, p)))
                .map(|(_, u)| u)
                .collect();
            let label = if u.is_empty() {
                name.clone()
            } else {
                format!(
                    "{name} (undecided {:.1}%)",
                    100.0 * u.iter().sum::<f64>() / u.len() as f64
                )
            };
            (label, colors[t], Mark::Line)
        })
        .collect();
    let grid = LineGrid {
        header: Header {
            title: format!("Mask values σ(M_t) by task at step {last} — run {}", run.name),
            subtitle: Some(
                "grey band: undecided gates (0.1 < σ < 0.9); per layer the mean undecided share over tasks"
                    .into(),
            ),
            legend,
        },
        cols: grid_cols(panels.len()),
        panels,
        panel: (420, 280),
    };
    let caption = format!(
        "Distribution of every task's gate values per layer at step {last} (the paper's \
         Figure 3). Mass at 0 and 1 means the masks have decided; the shaded band holds the \
         undecided gates, whose share is in each panel's title and, per task over all layers, \
         in the legend."
    );
    Ok(Some(render(
        &format!("{prefix}fig3_mask_distributions"),
        "Mask value distributions by task",
        caption,
        &grid,
    )?))
}

/// One run's line in a panel of [`runs_comparison`].
#[derive(Debug, Clone, PartialEq)]
pub struct ComparisonLine {
    /// The run's legend label.
    pub label: String,
    /// The curve from every evaluation record (the probes, or the full evaluations of runs
    /// without probes), as `(step, value)`.
    pub curve: Vec<(f64, f64)>,
    /// The full evaluations drawn as dots on a probe curve (empty without probes).
    pub full: Vec<(f64, f64)>,
}

/// One panel of [`runs_comparison`]: what it draws, as numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct ComparisonPanel {
    /// `gated: mean test accuracy`, …, or the share of masks off.
    pub title: String,
    /// The y axis label.
    pub y_desc: String,
    /// One line per run, in the order given.
    pub lines: Vec<ComparisonLine>,
    /// The masks-off panel (never on a log axis).
    pub masks: bool,
}

/// The panels of Figure 4: per strategy the mean test metric over tasks of every run, then the
/// gated model's share of masks off.
pub fn runs_comparison_panels(runs: &[RunData]) -> Vec<ComparisonPanel> {
    let labels = run_labels(runs);
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    let metric = metric_label(&first.metric_name());
    let mut panels = Vec::new();
    for s in STRATEGIES {
        if !runs.iter().any(|r| r.strategies().iter().any(|x| x == s)) {
            continue;
        }
        let lines = runs
            .iter()
            .zip(&labels)
            .map(|(r, label)| ComparisonLine {
                label: label.clone(),
                curve: r.mean_over_tasks(|t| r.curve_series(s, t, Quantity::Metric)),
                full: if r.has_probes() {
                    r.mean_over_tasks(|t| r.eval_series(s, t, "test", Quantity::Metric))
                } else {
                    Vec::new()
                },
            })
            .collect();
        panels.push(ComparisonPanel {
            title: format!("{s}: mean test {metric}"),
            y_desc: metric.clone(),
            lines,
            masks: false,
        });
    }
    if runs.iter().any(|r| r.last_mask_step().is_some()) {
        panels.push(ComparisonPanel {
            title: "gated: share of masks off (M < 0)".into(),
            y_desc: "share off, mean over tasks and layers".into(),
            lines: runs
                .iter()
                .zip(&labels)
                .map(|(r, label)| ComparisonLine {
                    label: label.clone(),
                    curve: mask_off_series(r),
                    full: Vec::new(),
                })
                .collect(),
            masks: true,
        });
    }
    panels
}

/// Figure 4: several runs side by side: mean test metric per strategy over steps, one colour
/// per run, and the gated model's share of masks off.
pub fn runs_comparison(runs: &[RunData]) -> Result<Option<Figure>> {
    if runs.len() < 2 {
        return Ok(None);
    }
    let labels = run_labels(runs);
    let data = runs_comparison_panels(runs);
    let probes = data
        .iter()
        .any(|p| p.lines.iter().any(|l| !l.full.is_empty()));
    // One step axis for every panel: the mask records (full evaluations only) may be a single
    // step, which alone would make an axis of one value.
    let last = runs.iter().map(|r| r.last_step()).max().unwrap_or(1).max(1) as f64;
    let mut panels: Vec<LinePanel> = data
        .iter()
        .map(|d| {
            let mut p = LinePanel::new(d.title.clone(), "step", &d.y_desc);
            p.integer_x = true;
            p.x_range = Some((0.0, last));
            for (i, l) in d.lines.iter().enumerate() {
                let c = PALETTE[i % PALETTE.len()];
                p.line(c, l.curve.clone());
                if !l.full.is_empty() {
                    p.dots(c, l.full.clone(), false);
                }
            }
            p
        })
        .collect();
    let metric_panels: Vec<LinePanel> = data
        .iter()
        .zip(&panels)
        .filter(|(d, _)| !d.masks)
        .map(|(_, p)| p.clone())
        .collect();
    let log = wants_log(&runs[0].metric_name(), &metric_panels);
    for (p, d) in panels.iter_mut().zip(&data) {
        p.log_y = log && !d.masks;
    }
    let mut legend: Vec<(String, RGBColor, Mark)> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), PALETTE[i % PALETTE.len()], Mark::Line))
        .collect();
    if probes {
        legend.push((
            "full evaluation (whole test split)".into(),
            MUTED,
            Mark::Dot,
        ));
    }
    let grid = LineGrid {
        header: Header {
            title: "Runs side by side".into(),
            subtitle: Some(format!(
                "one colour per run{}",
                if log { "; log scale" } else { "" }
            )),
            legend,
        },
        cols: grid_cols(panels.len()),
        panels,
        panel: (440, 300),
    };
    let caption = format!(
        "Mean test metric over tasks for each run and strategy at every evaluation{}, and the \
         share of the gated model's masks that are off (the paper's Figure 5 compares mask \
         regularisers this way). Legend: run name and the settings in which the runs differ.",
        if probes {
            " (lines: the probes every eval_every steps; dots: the full evaluations on the \
             whole test split)"
        } else {
            ""
        }
    );
    Ok(Some(render(
        "fig4_runs",
        "Runs side by side",
        caption,
        &grid,
    )?))
}

/// Per step, the share of mask entries off, averaged over tasks and parameters (unweighted).
fn mask_off_series(run: &RunData) -> Vec<(f64, f64)> {
    let mut by_step: std::collections::BTreeMap<usize, (f64, usize)> = Default::default();
    for r in &run.records {
        if let Record::Mask { step, off, .. } = r {
            let e = by_step.entry(*step).or_insert((0.0, 0));
            e.0 += off;
            e.1 += 1;
        }
    }
    by_step
        .into_iter()
        .map(|(s, (sum, n))| (s as f64, sum / n.max(1) as f64))
        .collect()
}

/// Legend labels for runs: the name, plus the `[run]` settings that differ between runs.
pub fn run_labels(runs: &[RunData]) -> Vec<String> {
    let diff = differing_keys(runs);
    runs.iter()
        .map(|r| {
            let settings: Vec<String> = diff
                .iter()
                .take(3)
                .map(|k| {
                    format!(
                        "{k}={}",
                        r.run_table
                            .get(k)
                            .map_or("-".into(), |v| v.to_string().trim_matches('"').to_string())
                    )
                })
                .collect();
            if settings.is_empty() {
                r.name.clone()
            } else {
                format!("{} ({})", r.name, settings.join(", "))
            }
        })
        .collect()
}

/// `[run]` keys whose values are not the same in every run.
pub fn differing_keys(runs: &[RunData]) -> Vec<String> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    let keys: BTreeSet<&String> = runs.iter().flat_map(|r| r.run_table.keys()).collect();
    keys.into_iter()
        .filter(|k| {
            let value = first.run_table.get(*k);
            runs.iter().any(|r| r.run_table.get(*k) != value)
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebin_keeps_mass_and_places_it() {
        let a = [1u32, 2, 3, 4];
        let out = rebin(&[(0.0, 4.0, &a)], 0.0, 8.0, 4);
        assert!((out.iter().sum::<f64>() - 10.0).abs() < 1e-9);
        assert!((out[0] - 3.0).abs() < 1e-9 && (out[1] - 7.0).abs() < 1e-9);
        assert_eq!(out[2] + out[3], 0.0);
        // A half-overlapping bin splits its count.
        let b = [2u32];
        let out = rebin(&[(0.5, 1.5, &b)], 0.0, 2.0, 2);
        assert!((out[0] - 1.0).abs() < 1e-9 && (out[1] - 1.0).abs() < 1e-9);
    }

    #[test]
    fn snapshots_spread_over_steps() {
        let steps: BTreeSet<usize> = (0..=10).map(|s| s * 100).collect();
        assert_eq!(snapshot_steps(&steps, 4), vec![0, 300, 600, 1000]);
    }
}
