//! `gtk report SWEEP`: a sweep's curves as the mean over seeds with a Student-t confidence
//! band per strategy (the binarized gated model dashed, with its band), and the summary
//! tables, in `report.md` and `report.html` next to the figures.

use super::stats::Interval;
use super::{BINARIZED, CONFIDENCE, Summary, Sweep};
use crate::error::{Error, Result};
use crate::plot::{FONT, Figure, Header, MIN_WIDTH, Mark, Plot, lighten, render, strategy_color};
use crate::report::{Quantity, RunData};
use crate::run_folder::OutputDir;
use crate::run_folder::fsio::write_atomic;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::fmt::Write;
use std::path::PathBuf;

/// One curve (or set of points) over seeds: per step the mean and the interval ends.
#[derive(Debug, Clone, PartialEq)]
pub struct BandSeries {
    /// Strategy key (`gated`, …, [`BINARIZED`]).
    pub strategy: String,
    /// Drawn as points with interval bars (the full evaluations on a probe curve, the
    /// binarized model's evaluations), not as a line with a shaded band.
    pub dots: bool,
    /// `(step, mean, low, high)`, the interval clipped to the metric's range; low = high =
    /// mean with a single seed.
    pub points: Vec<(f64, f64, f64, f64)>,
}

/// The values a metric can take: `[0, 1]` for accuracy, `[0, ∞)` for MSE (a confidence
/// interval's ends are clipped to it, so no band shows an impossible value).
pub fn metric_range(metric: &str) -> (f64, f64) {
    if metric == "accuracy" {
        (0.0, 1.0)
    } else {
        (0.0, f64::INFINITY)
    }
}

/// Mean and interval over seeds, per step, of one series per seed; only steps every seed has.
/// The interval's ends are clipped to `range` (see [`metric_range`]).
pub fn band(per_seed: &[Vec<(f64, f64)>], range: (f64, f64)) -> Vec<(f64, f64, f64, f64)> {
    let Some(first) = per_seed.first() else {
        return Vec::new();
    };
    let clip = |v: f64| v.clamp(range.0, range.1);
    first
        .iter()
        .filter_map(|&(step, _)| {
            let values: Vec<f64> = per_seed
                .iter()
                .filter_map(|s| s.iter().find(|p| p.0 == step).map(|p| p.1))
                .collect();
            if values.len() != per_seed.len() {
                return None;
            }
            let i = Interval::of(&values, CONFIDENCE);
            Some((
                step,
                i.mean,
                clip(i.low.unwrap_or(i.mean)),
                clip(i.high.unwrap_or(i.mean)),
            ))
        })
        .collect()
}

/// One run's series on one task.
type PerRun<'a> = dyn Fn(&RunData, &str) -> Vec<(f64, f64)> + 'a;

/// The bands of every strategy on one task (`None`: the mean over tasks): each strategy's
/// curve from every evaluation record (the probes every `eval_every` steps; the full
/// evaluations for runs without probes), its full evaluations as points when the curve is
/// the probes', and the binarized gated model.
pub fn task_bands(runs: &[RunData], task: Option<&str>) -> Vec<BandSeries> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    let range = metric_range(&first.metric_name());
    let probes = runs.iter().all(RunData::has_probes);
    // Per seed, one task's series or the mean over tasks.
    let over_seeds = |one: &PerRun| -> Vec<_> {
        let per_seed: Vec<Vec<(f64, f64)>> = runs
            .iter()
            .map(|r| match task {
                Some(t) => one(r, t),
                None => r.mean_over_tasks(|t| one(r, t)),
            })
            .collect();
        band(&per_seed, range)
    };
    let mut out = Vec::new();
    for s in first.strategies() {
        out.push(BandSeries {
            strategy: s.clone(),
            dots: false,
            points: over_seeds(&|r, t| r.curve_series(&s, t, Quantity::Metric)),
        });
        if probes {
            out.push(BandSeries {
                strategy: s.clone(),
                dots: true,
                points: over_seeds(&|r, t| r.eval_series(&s, t, "test", Quantity::Metric)),
            });
        }
    }
    out.push(BandSeries {
        strategy: BINARIZED.into(),
        dots: probes,
        points: over_seeds(&|r, t| r.binarized_series(t, Quantity::Metric)),
    });
    out.retain(|b| !b.points.is_empty());
    out
}

/// One panel of the sweep figure: the data it draws.
#[derive(Debug, Clone, PartialEq)]
pub struct BandPanel {
    /// `mean over tasks` or `task NAME`.
    pub title: String,
    /// The y axis label.
    pub y_desc: String,
    /// The x axis label (`step`, or a grid's swept key).
    pub x_desc: String,
    /// Categorical x: the label of each position 0, 1, … (a swept key's values); empty when
    /// x is a number (the step).
    pub x_labels: Vec<String>,
    /// Every curve and set of points, in drawing order.
    pub series: Vec<BandSeries>,
    /// Log scale on y.
    pub log_y: bool,
}

pub(super) struct BandGrid {
    pub(super) header: Header,
    pub(super) panels: Vec<BandPanel>,
    pub(super) cols: usize,
}

const PANEL: (u32, u32) = (420, 300);

impl Plot for BandGrid {
    fn size(&self) -> (u32, u32) {
        let rows = self.panels.len().div_ceil(self.cols) as u32;
        let w = (PANEL.0 * self.cols as u32).max(MIN_WIDTH);
        (w, self.header.height(w) + PANEL.1 * rows)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), Box<dyn std::error::Error>>
    where
        DB::ErrorType: 'static,
    {
        let rest = self.header.draw(root)?;
        let rows = self.panels.len().div_ceil(self.cols);
        let cells = rest.split_evenly((rows, self.cols));
        for (p, cell) in self.panels.iter().zip(&cells) {
            p.draw(cell)?;
        }
        Ok(())
    }
}

impl BandPanel {
    /// The text at `x`: the step, or the category at an integer position (none between).
    fn x_label(&self, x: f64) -> String {
        if self.x_labels.is_empty() {
            return format!("{}", x.round() as i64);
        }
        let i = x.round();
        if (x - i).abs() > 1e-6 || i < 0.0 {
            return String::new();
        }
        self.x_labels.get(i as usize).cloned().unwrap_or_default()
    }

    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), Box<dyn std::error::Error>>
    where
        DB::ErrorType: 'static,
    {
        let pts = self.series.iter().flat_map(|s| s.points.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, m, lo, hi) in pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            for v in [m, lo, hi] {
                if v.is_finite() && (!self.log_y || v > 0.0) {
                    y0 = y0.min(v);
                    y1 = y1.max(v);
                }
            }
        }
        if x0 > x1 {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.1, 1.0);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        if !self.x_labels.is_empty() {
            // Categorical positions: room for the outermost labels and dots.
            (x0, x1) = (-0.35, self.x_labels.len() as f64 - 0.65);
        }
        if self.log_y {
            (y0, y1) = (y0 / 1.25, y1 * 1.25);
        } else {
            let pad = ((y1 - y0) * 0.06).max(1e-9);
            (y0, y1) = (y0 - pad, y1 + pad);
        }
        let floor = y0;
        let mut builder = ChartBuilder::on(area);
        builder
            .caption(&self.title, (FONT, 18).into_font())
            .margin(10)
            .margin_right(18)
            .x_label_area_size(46)
            .y_label_area_size(70);
        macro_rules! fill {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc(self.x_desc.as_str())
                    .y_desc(self.y_desc.as_str())
                    .x_labels(if self.x_labels.is_empty() {
                        6
                    } else {
                        // Enough ticks to land on every position.
                        4 * self.x_labels.len() + 1
                    })
                    .y_labels(6)
                    .x_label_formatter(&|x: &f64| self.x_label(*x))
                    .light_line_style(WHITE)
                    .axis_desc_style((FONT, 16).into_font())
                    .label_style((FONT, 14).into_font())
                    .draw()?;
                let clamp = |v: f64| if self.log_y { v.max(floor) } else { v };
                let color = |s: &BandSeries| {
                    strategy_color(if s.strategy == BINARIZED {
                        "gated"
                    } else {
                        &s.strategy
                    })
                };
                for s in self.series.iter().filter(|s| !s.dots) {
                    let mut poly: Vec<(f64, f64)> =
                        s.points.iter().map(|p| (p.0, clamp(p.3))).collect();
                    poly.extend(s.points.iter().rev().map(|p| (p.0, clamp(p.2))));
                    let shade = lighten(color(s), if s.strategy == BINARIZED { 0.85 } else { 0.7 });
                    chart.draw_series(std::iter::once(Polygon::new(poly, shade.filled())))?;
                }
                for s in &self.series {
                    let c = color(s);
                    if s.dots {
                        // The interval as a bar, the mean as a dot (hollow: binarized).
                        for &(x, m, lo, hi) in &s.points {
                            chart.draw_series(std::iter::once(PathElement::new(
                                vec![(x, clamp(lo)), (x, clamp(hi))],
                                c.stroke_width(2),
                            )))?;
                            if s.strategy == BINARIZED {
                                chart.draw_series(std::iter::once(Circle::new(
                                    (x, clamp(m)),
                                    6,
                                    c.stroke_width(2),
                                )))?;
                            } else {
                                chart.draw_series(std::iter::once(Circle::new(
                                    (x, clamp(m)),
                                    5,
                                    c.filled(),
                                )))?;
                            }
                        }
                        continue;
                    }
                    let line: Vec<(f64, f64)> = s.points.iter().map(|p| (p.0, p.1)).collect();
                    if s.strategy == BINARIZED {
                        chart.draw_series(DashedLineSeries::new(line, 7, 5, c.stroke_width(2)))?;
                    } else {
                        chart.draw_series(LineSeries::new(line, c.stroke_width(2)))?;
                    }
                }
                Ok(())
            }};
        }
        if self.log_y {
            fill!(builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale())?)
        } else {
            fill!(builder.build_cartesian_2d(x0..x1, y0..y1)?)
        }
    }
}

/// The panels of the sweep figure (one for the mean over tasks, one per task) with the data
/// each draws: what `sweep_test_metric.png` shows, as numbers.
pub fn band_panels(runs: &[RunData], summary: &Summary) -> Vec<BandPanel> {
    let metric = metric_label(&summary.metric);
    let mut panels = Vec::new();
    if summary.tasks.len() > 1 {
        panels.push(BandPanel {
            title: "mean over tasks".into(),
            y_desc: format!("test {metric}"),
            x_desc: "step".into(),
            x_labels: Vec::new(),
            series: task_bands(runs, None),
            log_y: false,
        });
    }
    for t in &summary.tasks {
        panels.push(BandPanel {
            title: format!("task {t}"),
            y_desc: format!("test {metric}"),
            x_desc: "step".into(),
            x_labels: Vec::new(),
            series: task_bands(runs, Some(t)),
            log_y: false,
        });
    }
    let (lo, hi) = panels
        .iter()
        .flat_map(|p| p.series.iter().flat_map(|s| s.points.iter().map(|q| q.1)))
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let log = summary.lower_is_better && lo > 0.0 && hi / lo > 20.0;
    for p in &mut panels {
        p.log_y = log;
    }
    panels
}

/// The data behind `gtk report SWEEP`'s figure, read from a finished sweep folder.
pub fn sweep_figure_data(sweep_dir: &std::path::Path) -> Result<Vec<BandPanel>> {
    let sweep = Sweep::open(sweep_dir)?;
    let summary = Summary::of_sweep(&sweep)?;
    let runs = sweep
        .member_dirs()
        .iter()
        .map(|d| RunData::open(d))
        .collect::<Result<Vec<_>>>()?;
    Ok(band_panels(&runs, &summary))
}

pub(super) fn metric_label(metric: &str) -> String {
    if metric == "mse" {
        "MSE".to_string()
    } else {
        metric.to_string()
    }
}

/// The figure: one panel for the mean over tasks, one per task.
pub fn band_figure(runs: &[RunData], summary: &Summary) -> Result<Figure> {
    let metric = metric_label(&summary.metric);
    let panels = band_panels(runs, summary);
    let log = panels.iter().any(|p| p.log_y);
    let probes = panels
        .iter()
        .any(|p| p.series.iter().any(|s| s.dots && s.strategy != BINARIZED));
    let mut legend: Vec<(String, RGBColor, Mark)> = summary
        .strategies
        .iter()
        .filter(|s| *s != BINARIZED)
        .map(|s| (s.clone(), strategy_color(s), Mark::Line))
        .collect();
    if probes {
        legend.push((
            "full evaluation (whole test split)".into(),
            crate::plot::MUTED,
            Mark::Dot,
        ));
    }
    if summary.strategies.iter().any(|s| s == BINARIZED) {
        legend.push((
            "gated, binarized masks W×1[M>0]".into(),
            strategy_color("gated"),
            if probes { Mark::Ring } else { Mark::Dashed },
        ));
    }
    let cols = match panels.len() {
        0..=3 => panels.len().max(1),
        4 => 2,
        5..=6 => 3,
        7..=8 => 4,
        _ => 5,
    };
    let n = summary.seeds.len();
    let range = if summary.metric == "accuracy" {
        "[0, 1]"
    } else {
        "≥ 0"
    };
    let bands = if n < 2 {
        "one seed: no interval".to_string()
    } else {
        format!(
            "bands and bars: {:.0} % confidence interval of the mean (Student t, {} df), clipped to {range}",
            summary.confidence * 100.0,
            n - 1,
        )
    };
    let grid = BandGrid {
        header: Header {
            title: format!(
                "Test {metric} over training, mean of {n} seed{} — sweep {}",
                if n == 1 { "" } else { "s" },
                summary.sweep
            ),
            subtitle: Some(format!(
                "{bands}; {} is better{}",
                if summary.lower_is_better {
                    "lower"
                } else {
                    "higher"
                },
                if log { "; log scale" } else { "" }
            )),
            legend,
        },
        panels,
        cols,
    };
    render(
        "sweep_test_metric",
        &format!("Test {metric} over training, mean over seeds"),
        format!(
            "Mean over the seeds' runs of each strategy's test {metric} at every evaluation{}, \
             with its {:.0} % confidence band (clipped to the metric's range, {range}){}.",
            if probes {
                " (lines: the probes every eval_every steps on each task's fixed probe subset; \
                 dots with bars: the full evaluations on the whole test split)"
            } else {
                ""
            },
            summary.confidence * 100.0,
            if summary.strategies.iter().any(|s| s == BINARIZED) {
                if probes {
                    "; hollow circles: the gated model with binarized masks"
                } else {
                    "; dashed: the gated model with binarized masks"
                }
            } else {
                ""
            }
        ),
        &grid,
    )
}

/// What `gtk report SWEEP` wrote.
#[derive(Debug, Clone)]
pub struct SweepReport {
    /// The output folder.
    pub out: PathBuf,
    /// Figure files (PNG and SVG).
    pub figures: Vec<PathBuf>,
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
}

/// Reads a finished sweep over seeds and writes its band figure, `report.md` and `report.html` (the
/// summary tables and the figure) into the claimed folder `out`.
pub(super) fn write_seeds_report(sweep: &Sweep, out: OutputDir) -> Result<SweepReport> {
    let summary = Summary::of_sweep(sweep)?;
    let runs = sweep
        .member_dirs()
        .iter()
        .map(|d| RunData::open(d))
        .collect::<Result<Vec<_>>>()?;
    let fig = band_figure(&runs, &summary)?;
    let dest = out.destination().to_path_buf();
    let tmp = out.path().to_path_buf();
    let mut figures = Vec::new();
    for (ext, bytes) in [("png", fig.png.as_slice()), ("svg", fig.svg.as_bytes())] {
        let name = format!("{}.{ext}", fig.stem);
        write_atomic(&tmp.join(&name), bytes)?;
        figures.push(dest.join(name));
    }
    let mut md = format!("# gatekit report: sweep {}\n\n", summary.sweep);
    md.push_str(&summary.markdown());
    let _ = write!(
        md,
        "\n## {}\n\n![{}]({}.png)\n\n{} ([SVG]({}.svg))\n\nThe seeds' runs: {}.\n",
        fig.title,
        fig.title,
        fig.stem,
        fig.caption,
        fig.stem,
        sweep
            .member_dirs()
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    write_atomic(&tmp.join("report.md"), md.as_bytes())?;
    let html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>gatekit sweep {name}</title>\
         <style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}\
         img{{max-width:100%}}</style></head><body>\n<h1>gatekit report: sweep {name}</h1>\n<pre>{text}</pre>\n\
         <h2>{title}</h2>\n{svg}\n<p>{caption}</p>\n</body></html>\n",
        name = escape(&summary.sweep),
        text = escape(&summary.text()),
        title = escape(&fig.title),
        svg = fig
            .svg
            .trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
        caption = escape(&fig.caption),
    );
    write_atomic(&tmp.join("report.html"), html.as_bytes())?;
    out.finish().map_err(|e| Error::Run {
        path: dest.clone(),
        message: format!("cannot finish the report: {e}"),
    })?;
    Ok(SweepReport {
        out: dest.clone(),
        figures,
        markdown: dest.join("report.md"),
        html: dest.join("report.html"),
    })
}

pub(super) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_is_the_t_interval_at_common_steps() {
        // Step 10 in all three seeds: 1, 2, 3 → mean 2, half-width 4.3026527 / √3 = 2.4841377.
        // Step 20 is missing in one seed and left out.
        let b = band(
            &[
                vec![(10.0, 1.0), (20.0, 1.0)],
                vec![(10.0, 2.0), (20.0, 1.0)],
                vec![(10.0, 3.0)],
            ],
            (f64::NEG_INFINITY, f64::INFINITY),
        );
        assert_eq!(b.len(), 1);
        let (step, m, lo, hi) = b[0];
        assert_eq!((step, m), (10.0, 2.0));
        assert!((hi - m - 2.484_137_7).abs() < 1e-6 && (m - lo - 2.484_137_7).abs() < 1e-6);
        // Clipped to an accuracy's range: 0.5, 0.9, 0.95 has mean 0.7833, std 0.2466 and
        // half-width 4.3027 · 0.2466 / √3 = 0.6127 → [0.1707, 1.3960], clipped to 1.
        let b = band(
            &[vec![(5.0, 0.5)], vec![(5.0, 0.9)], vec![(5.0, 0.95)]],
            metric_range("accuracy"),
        );
        assert!((b[0].2 - 0.1706).abs() < 1e-3, "{:?}", b[0]);
        assert_eq!(b[0].3, 1.0);
        // MSE: never below 0.
        let b = band(&[vec![(5.0, 0.01)], vec![(5.0, 0.5)]], metric_range("mse"));
        assert_eq!(b[0].2, 0.0);
        assert!(b[0].3 > 0.5);
    }
}
