//! Sequential runs (continual learning): each strategy's accuracy matrix `R[i][j]` (task `j`
//! after phase `i`) as a heatmap, one panel per strategy, annotated with the values and with
//! average, backward transfer and forgetting in the panel title.

use super::RunData;
use crate::error::Result;
use crate::plot::{DrawResult, FONT, Figure, Header, MIN_WIDTH, Plot, TEXT, lighten, render};
use crate::run::{ContinualSummary, continual_summaries};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const PANEL_TITLE_H: u32 = 46;
const BEST: RGBColor = RGBColor(8, 48, 107);

/// One heatmap per strategy, sharing one colour scale (the metric's range over all panels,
/// darker = better).
struct Matrices {
    header: Header,
    summaries: Vec<ContinualSummary>,
    cols: usize,
    cell: u32,
    label_w: u32,
    panel: (u32, u32),
    /// Metric range on the colour scale, and whether higher is better.
    range: (f64, f64),
    higher_is_better: bool,
    /// Steps per phase, for joint's rows (steps, not phases).
    phase_steps: Option<usize>,
}

impl Matrices {
    fn color(&self, v: f64) -> RGBColor {
        let (lo, hi) = self.range;
        let mut t = ((v - lo) / (hi - lo).max(1e-12)).clamp(0.0, 1.0);
        if !self.higher_is_better {
            t = 1.0 - t;
        }
        lighten(BEST, 1.0 - t)
    }
}

impl Plot for Matrices {
    fn size(&self) -> (u32, u32) {
        let w = (self.panel.0 * self.cols as u32).max(MIN_WIDTH);
        let rows = self.summaries.len().div_ceil(self.cols) as u32;
        (w, self.header.height(w) + self.panel.1 * rows + 10)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let rest = self.header.draw(root)?;
        let cell = self.cell as i32;
        let number_size = (f64::from(self.cell) * 0.3).clamp(10.0, 17.0);
        let left = (rest.dim_in_pixel().0 as i32 - (self.panel.0 * self.cols as u32) as i32) / 2;
        for (k, s) in self.summaries.iter().enumerate() {
            let (r, c) = (k / self.cols, k % self.cols);
            let t_n = s.tasks.len() as i32;
            let x0 = left + c as i32 * self.panel.0 as i32 + self.label_w as i32 + 10;
            let y0 = r as i32 * self.panel.1 as i32 + PANEL_TITLE_H as i32 + 24;
            let title = if s.is_sequential() {
                format!(
                    "{}: avg {:.3}, BWT {:+.3}, F {:.3}",
                    s.strategy, s.average, s.backward_transfer, s.forgetting
                )
            } else {
                format!(
                    "{}: avg {:.3} (all tasks throughout)",
                    s.strategy, s.average
                )
            };
            let labels = s.row_labels(self.phase_steps);
            rest.draw(&Text::new(
                title,
                (
                    x0 + t_n * cell / 2,
                    r as i32 * self.panel.1 as i32 + PANEL_TITLE_H as i32 / 2,
                ),
                TextStyle::from((FONT, 16).into_font())
                    .color(&TEXT)
                    .pos(Pos::new(HPos::Center, VPos::Center)),
            ))?;
            for (i, name) in s.tasks.iter().enumerate() {
                let i = i as i32;
                // Rows: after phase i (the phase that trained task i).
                rest.draw(&Text::new(
                    labels[i as usize].clone(),
                    (x0 - 6, y0 + i * cell + cell / 2),
                    TextStyle::from((FONT, 13).into_font())
                        .color(&TEXT)
                        .pos(Pos::new(HPos::Right, VPos::Center)),
                ))?;
                rest.draw(&Text::new(
                    name.clone(),
                    (x0 + i * cell + cell / 2, y0 - 6),
                    TextStyle::from((FONT, 13).into_font())
                        .color(&TEXT)
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                ))?;
            }
            for (a, row) in s.matrix.iter().enumerate() {
                for (b, &v) in row.iter().enumerate() {
                    let (x, y) = (x0 + b as i32 * cell, y0 + a as i32 * cell);
                    let fill = self.color(v);
                    rest.draw(&Rectangle::new(
                        [(x, y), (x + cell, y + cell)],
                        fill.filled(),
                    ))?;
                    // Cells above the diagonal: tasks whose phase has not come yet.
                    let stroke = if b > a {
                        RGBColor(170, 170, 170)
                    } else {
                        WHITE
                    };
                    rest.draw(&Rectangle::new(
                        [(x, y), (x + cell, y + cell)],
                        stroke.stroke_width(1),
                    ))?;
                    let dark = u32::from(fill.0) + u32::from(fill.1) + u32::from(fill.2) < 380;
                    rest.draw(&Text::new(
                        if v.abs() < 10.0 {
                            format!("{v:.2}")
                        } else {
                            format!("{v:.0}")
                        },
                        (x + cell / 2, y + cell / 2),
                        TextStyle::from((FONT, number_size).into_font())
                            .color(if dark { &WHITE } else { &TEXT })
                            .pos(Pos::new(HPos::Center, VPos::Center)),
                    ))?;
                }
            }
        }
        Ok(())
    }
}

/// The accuracy-matrix heatmaps of a sequential run; `None` when the run has no complete
/// matrix (interleaved runs, or a sequential run stopped before its last phase).
pub fn accuracy_matrices(run: &RunData, prefix: &str) -> Result<Option<Figure>> {
    let tasks = run.tasks();
    let objective = run.objective();
    let summaries = continual_summaries(&run.records, &tasks, objective);
    if summaries.is_empty() {
        return Ok(None);
    }
    let values = summaries
        .iter()
        .flat_map(|s| s.matrix.iter().flatten().copied());
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let t_n = tasks.len() as u32;
    let cell = (400 / t_n.max(1)).clamp(34, 64);
    let label_w = 16 + 8 * tasks.iter().map(|t| t.len() + 6).max().unwrap_or(8) as u32;
    let panel = (
        label_w + 20 + cell * t_n + 20,
        PANEL_TITLE_H + 24 + cell * t_n + 20,
    );
    let cols = summaries.len().min((1800 / panel.0).max(1) as usize);
    let metric = summaries[0].metric_name.clone();
    let plot = Matrices {
        header: Header {
            // The scenario, when the run set one: matrices of two scenarios are not comparable.
            title: match run.set.run.continual.scenario {
                Some(s) => format!("Test {metric} of every task after every phase, {}", s.label()),
                None => format!("Test {metric} of every task after every phase"),
            },
            subtitle: Some(
                "row: after the phase of that task (joint: at that phase's last step); column: task measured; grey borders: not yet trained"
                    .into(),
            ),
            legend: Vec::new(),
        },
        summaries,
        cols,
        cell,
        label_w,
        panel,
        range: (lo, hi),
        higher_is_better: objective.higher_is_better(),
        phase_steps: run.set.run.schedule.phase_steps,
    };
    let caption = format!(
        "Sequential schedule: each strategy's matrix R[i][j] (task j's test {metric} after phase i), darker is better. Average (avg), backward transfer (BWT) and forgetting (F) as defined in the book's Continual learning chapter."
    );
    render(
        &format!("{prefix}continual-matrix"),
        "Continual learning: accuracy matrices",
        caption,
        &plot,
    )
    .map(Some)
}
