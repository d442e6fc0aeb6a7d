//! Figure 5, what the masks learned: each layer's binarized mask per task as an image, and the
//! task-similarity heatmaps. Drawn with the same header, fonts and colours as the other figures
//! ([`super::figures`]).

use super::RunData;
use super::figures::{
    DrawResult, FONT, Figure, Header, MIN_WIDTH, MUTED, Mark, Plot, TEXT, lighten, render,
};
use super::masks::{BinaryMasks, MaskLayer};
use crate::error::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Colours of the mask images.
const ON: RGBColor = RGBColor(25, 25, 25);
const OFF: RGBColor = RGBColor(255, 255, 255);
const GAP: RGBColor = RGBColor(200, 200, 200);

/// How one parameter's mask is laid out as pixels: conv weights as a grid of k×k tiles (rows:
/// output filters, columns: input channels), everything else as a rows × columns bitmap.
#[derive(Debug, Clone, Copy)]
struct MaskGeometry {
    rows: usize,
    cols: usize,
    tile: (usize, usize),
}

impl MaskGeometry {
    fn of(shape: &[usize]) -> Self {
        match shape {
            [o, i, kh, kw] => MaskGeometry {
                rows: *o,
                cols: *i,
                tile: (*kh, *kw),
            },
            [o, i] => MaskGeometry {
                rows: *o,
                cols: *i,
                tile: (1, 1),
            },
            [n] => MaskGeometry {
                rows: 1,
                cols: *n,
                tile: (1, 1),
            },
            other => MaskGeometry {
                rows: 1,
                cols: other.iter().product(),
                tile: (1, 1),
            },
        }
    }

    fn gap(&self) -> usize {
        usize::from(self.tile != (1, 1))
    }

    /// Size in cells (tiles plus one-cell gaps between them).
    fn cells(&self) -> (usize, usize) {
        let g = self.gap();
        (
            self.cols * (self.tile.1 + g) - g,
            self.rows * (self.tile.0 + g) - g,
        )
    }

    /// Cell position of the flat index `i` of a row-major tensor.
    fn position(&self, i: usize) -> (usize, usize) {
        let (kh, kw) = self.tile;
        let per_tile = kh * kw;
        let tile = i / per_tile;
        let within = i % per_tile;
        let (r, c) = (tile / self.cols, tile % self.cols);
        let g = self.gap();
        (c * (kw + g) + within % kw, r * (kh + g) + within / kw)
    }
}

/// Figure 5a: one layer's binarized mask per task, plus how many tasks keep each weight.
struct MaskImage<'a> {
    header: Header,
    layer: &'a MaskLayer,
    tasks: &'a [String],
    geometry: MaskGeometry,
    scale: u32,
    cols: usize,
    panel: (u32, u32),
    channel_names: Option<Vec<String>>,
}

const PANEL_TITLE_H: u32 = 28;
const PANEL_PAD: u32 = 14;

impl MaskImage<'_> {
    fn panels(&self) -> usize {
        self.tasks.len() + usize::from(self.tasks.len() > 1)
    }

    fn rows(&self) -> usize {
        self.panels().div_ceil(self.cols)
    }
}

impl Plot for MaskImage<'_> {
    fn size(&self) -> (u32, u32) {
        let w = (self.panel.0 * self.cols as u32).max(MIN_WIDTH);
        (
            w,
            self.header.height(w) + self.panel.1 * self.rows() as u32 + 6,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let rest = self.header.draw(root)?;
        let (cw, ch) = self.geometry.cells();
        let s = self.scale as i32;
        let (img_w, img_h) = (cw as i32 * s, ch as i32 * s);
        let t_n = self.tasks.len();
        for k in 0..self.panels() {
            let (r, c) = (k / self.cols, k % self.cols);
            let left =
                (rest.dim_in_pixel().0 as i32 - (self.panel.0 * self.cols as u32) as i32) / 2;
            let x0 = left + c as i32 * self.panel.0 as i32 + (self.panel.0 as i32 - img_w) / 2;
            let y0 = r as i32 * self.panel.1 as i32 + PANEL_TITLE_H as i32;
            let title = if k < t_n {
                format!(
                    "{}: {:.1}% on",
                    self.tasks[k],
                    100.0 * self.layer.on_share(k)
                )
            } else {
                format!("kept by how many of {t_n} tasks")
            };
            rest.draw(&Text::new(
                title,
                (x0 + img_w / 2, y0 - PANEL_TITLE_H as i32 / 2),
                TextStyle::from((FONT, 17).into_font())
                    .color(&TEXT)
                    .pos(Pos::new(HPos::Center, VPos::Center)),
            ))?;
            // Background: gaps between tiles, then every tile in the majority value, then the
            // minority cells merged into horizontal runs, which keeps the SVG small.
            rest.draw(&Rectangle::new(
                [(x0, y0), (x0 + img_w, y0 + img_h)],
                if self.geometry.gap() > 0 {
                    GAP.filled()
                } else {
                    OFF.filled()
                },
            ))?;
            let values: Vec<usize> = if k < t_n {
                self.layer.on[k].iter().map(|&b| usize::from(b)).collect()
            } else {
                (0..self.layer.len())
                    .map(|i| self.layer.on.iter().filter(|m| m[i]).count())
                    .collect()
            };
            let color = |v: usize| -> RGBColor {
                if k < t_n {
                    if v == 1 { ON } else { OFF }
                } else {
                    count_color(v, t_n)
                }
            };
            let mut hist = vec![0usize; t_n + 1];
            for &v in &values {
                hist[v.min(t_n)] += 1;
            }
            let majority = (0..hist.len()).max_by_key(|&v| hist[v]).unwrap_or(0);
            let (kh, kw) = self.geometry.tile;
            let g = self.geometry.gap();
            for tr in 0..self.geometry.rows {
                for tc in 0..self.geometry.cols {
                    let cx = (tc * (kw + g)) as i32 * s;
                    let cy = (tr * (kh + g)) as i32 * s;
                    if self.geometry.gap() > 0 {
                        rest.draw(&Rectangle::new(
                            [
                                (x0 + cx, y0 + cy),
                                (x0 + cx + kw as i32 * s, y0 + cy + kh as i32 * s),
                            ],
                            color(majority).filled(),
                        ))?;
                    }
                }
            }
            if self.geometry.gap() == 0 {
                rest.draw(&Rectangle::new(
                    [(x0, y0), (x0 + img_w, y0 + img_h)],
                    color(majority).filled(),
                ))?;
            }
            let mut grid = vec![vec![None::<usize>; cw]; ch];
            for (i, &v) in values.iter().enumerate() {
                let (x, y) = self.geometry.position(i);
                if x < cw && y < ch {
                    grid[y][x] = Some(v);
                }
            }
            for (y, row) in grid.iter().enumerate() {
                let mut x = 0;
                while x < cw {
                    match row[x] {
                        Some(v) if v != majority => {
                            let start = x;
                            while x < cw && row[x] == Some(v) {
                                x += 1;
                            }
                            rest.draw(&Rectangle::new(
                                [
                                    (x0 + start as i32 * s, y0 + y as i32 * s),
                                    (x0 + x as i32 * s, y0 + (y as i32 + 1) * s),
                                ],
                                color(v).filled(),
                            ))?;
                        }
                        _ => x += 1,
                    }
                }
            }
            rest.draw(&Rectangle::new(
                [(x0 - 1, y0 - 1), (x0 + img_w + 1, y0 + img_h + 1)],
                MUTED.stroke_width(1),
            ))?;
            if let Some(names) = &self.channel_names {
                for (i, n) in names.iter().enumerate() {
                    let cx = (i * (kw + g)) as i32 * s + kw as i32 * s / 2;
                    rest.draw(&Text::new(
                        n.clone(),
                        (x0 + cx, y0 + img_h + 10),
                        TextStyle::from((FONT, 14).into_font())
                            .color(&MUTED)
                            .pos(Pos::new(HPos::Center, VPos::Center)),
                    ))?;
                }
            }
        }
        Ok(())
    }
}

/// Colour for "kept by `v` of `n` tasks": white (none) to dark blue (all).
fn count_color(v: usize, n: usize) -> RGBColor {
    if v == 0 {
        return OFF;
    }
    // One task is already clearly tinted, so "kept by one" differs from "kept by none".
    let t = 0.2 + 0.8 * v as f64 / n.max(1) as f64;
    lighten(RGBColor(8, 48, 107), 1.0 - t)
}

/// Figure 5a: every gated weight's binarized mask per task as an image.
pub fn mask_images(run: &RunData, prefix: &str) -> Result<Vec<Figure>> {
    let Some(masks) = &run.masks else {
        return Ok(Vec::new());
    };
    let first_conv = masks
        .layers
        .iter()
        .position(|l| l.shape.len() == 4 && l.name.ends_with(".weight"));
    let mut out = Vec::new();
    for (li, layer) in masks.layers.iter().enumerate() {
        if !layer.name.ends_with(".weight") || layer.is_empty() {
            continue;
        }
        let geometry = MaskGeometry::of(&layer.shape);
        let (cw, ch) = geometry.cells();
        // Aim at panels about 420 px wide, at least 1 px per cell, at most 28.
        let scale = (420 / cw.max(1)).clamp(1, 28) as u32;
        let scale = scale.min((360 / ch.max(1)).max(1) as u32).max(1);
        let t_n = masks.tasks.len();
        let panels = t_n + usize::from(t_n > 1);
        let img_w = cw as u32 * scale;
        let cols = if img_w > 500 {
            1
        } else if img_w > 300 {
            2
        } else {
            panels.clamp(1, 5)
        };
        let channel_names = (Some(li) == first_conv && layer.shape.get(1) == Some(&3))
            .then(|| vec!["R".to_string(), "G".into(), "B".into()]);
        let channel_pad = if channel_names.is_some() { 20 } else { 0 };
        let panel = (
            (img_w + 2 * PANEL_PAD).max(260),
            PANEL_TITLE_H + ch as u32 * scale + PANEL_PAD + channel_pad,
        );
        let layout = if layer.shape.len() == 4 {
            format!(
                "rows: {} output filters, columns: {} input channels, tiles: {}×{} kernels",
                layer.shape[0], layer.shape[1], layer.shape[2], layer.shape[3]
            )
        } else if layer.shape.len() == 2 {
            format!(
                "rows: {} outputs, columns: {} inputs",
                layer.shape[0], layer.shape[1]
            )
        } else {
            format!("{} entries", layer.len())
        };
        let mut legend = vec![
            ("on (M > 0)".to_string(), ON, Mark::Box),
            ("off".to_string(), OFF, Mark::Box),
        ];
        if t_n > 1 {
            legend.push(("kept by 1 task".into(), count_color(1, t_n), Mark::Box));
            legend.push((
                format!("kept by all {t_n}"),
                count_color(t_n, t_n),
                Mark::Box,
            ));
        }
        let plot = MaskImage {
            header: Header {
                title: format!("Binarized masks of {} — run {}", layer.name, run.name),
                subtitle: Some(layout.clone()),
                legend,
            },
            layer,
            tasks: &masks.tasks,
            geometry,
            scale,
            cols,
            panel,
            channel_names,
        };
        let stem = format!("{prefix}fig5_masks_{}", layer.name.replace('.', "_"));
        let caption = format!(
            "Each task's binarized mask `1[M > 0]` of `{}` ({layout}); black: the weight is on \
             for that task. The last panel counts, per weight, how many tasks keep it: dark \
             weights are shared by all tasks, light ones are task-specific.",
            layer.name
        );
        out.push(render(
            &stem,
            &format!("Binarized masks: {}", layer.name),
            caption,
            &plot,
        )?);
    }
    Ok(out)
}

/// One heatmap panel: per pair of tasks the share of identical bits and the chance level.
struct HeatPanel {
    title: String,
    share: Vec<Vec<f64>>,
    chance: Vec<Vec<f64>>,
}

/// Figure 5b: share of identical mask bits between every pair of tasks, over all gated
/// parameters and per layer, annotated with the numbers. Cells are coloured by the difference
/// from chance (what independent masks with the same on-shares would share), because the raw
/// share mostly reflects how many weights each task switches off, not which.
struct Heatmaps {
    header: Header,
    tasks: Vec<String>,
    panels: Vec<HeatPanel>,
    cols: usize,
    cell: u32,
    label_w: u32,
    panel: (u32, u32),
    /// Largest |share - chance| on the colour scale.
    span: f64,
}

/// Diverging colours: blue above chance, red below, white at chance.
fn excess_color(excess: f64, span: f64) -> RGBColor {
    let t = (excess / span.max(1e-12)).clamp(-1.0, 1.0);
    if t >= 0.0 {
        lighten(RGBColor(8, 48, 107), 1.0 - t)
    } else {
        lighten(RGBColor(165, 15, 21), 1.0 + t)
    }
}

impl Plot for Heatmaps {
    fn size(&self) -> (u32, u32) {
        let w = (self.panel.0 * self.cols as u32).max(MIN_WIDTH);
        let rows = self.panels.len().div_ceil(self.cols) as u32;
        (w, self.header.height(w) + self.panel.1 * rows + 60)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let rest = self.header.draw(root)?;
        let t_n = self.tasks.len() as i32;
        let cell = self.cell as i32;
        let number_size = (f64::from(self.cell) * 0.3).clamp(12.0, 19.0);
        let small_size = (number_size * 0.78).max(11.0);
        let left = (rest.dim_in_pixel().0 as i32 - (self.panel.0 * self.cols as u32) as i32) / 2;
        for (k, panel) in self.panels.iter().enumerate() {
            let (r, c) = (k / self.cols, k % self.cols);
            let x0 = left + c as i32 * self.panel.0 as i32 + self.label_w as i32 + 10;
            let y0 = r as i32 * self.panel.1 as i32 + PANEL_TITLE_H as i32 + self.label_w as i32;
            rest.draw(&Text::new(
                panel.title.clone(),
                (
                    x0 + t_n * cell / 2,
                    r as i32 * self.panel.1 as i32 + PANEL_TITLE_H as i32 / 2,
                ),
                TextStyle::from((FONT, 17).into_font())
                    .color(&TEXT)
                    .pos(Pos::new(HPos::Center, VPos::Center)),
            ))?;
            for (i, name) in self.tasks.iter().enumerate() {
                let i = i as i32;
                rest.draw(&Text::new(
                    name.clone(),
                    (x0 - 6, y0 + i * cell + cell / 2),
                    TextStyle::from((FONT, 15).into_font())
                        .color(&TEXT)
                        .pos(Pos::new(HPos::Right, VPos::Center)),
                ))?;
                rest.draw(&Text::new(
                    name.clone(),
                    (x0 + i * cell + cell / 2, y0 - 8),
                    TextStyle::from((FONT, 15).into_font())
                        .color(&TEXT)
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                ))?;
            }
            for (a, row) in panel.share.iter().enumerate() {
                for (b, &v) in row.iter().enumerate() {
                    let (x, y) = (x0 + b as i32 * cell, y0 + a as i32 * cell);
                    let excess = v - panel.chance[a][b];
                    // The diagonal is 1 by definition: grey.
                    let fill = if a == b {
                        DIAGONAL
                    } else {
                        excess_color(excess, self.span)
                    };
                    rest.draw(&Rectangle::new(
                        [(x, y), (x + cell, y + cell)],
                        fill.filled(),
                    ))?;
                    rest.draw(&Rectangle::new(
                        [(x, y), (x + cell, y + cell)],
                        WHITE.stroke_width(1),
                    ))?;
                    let dark = u32::from(fill.0) + u32::from(fill.1) + u32::from(fill.2) < 380;
                    let ink = if dark { &WHITE } else { &TEXT };
                    let two_lines = a != b && cell >= 44;
                    rest.draw(&Text::new(
                        format!("{v:.2}"),
                        (
                            x + cell / 2,
                            y + cell / 2 - if two_lines { cell / 7 } else { 0 },
                        ),
                        TextStyle::from((FONT, number_size).into_font())
                            .color(ink)
                            .pos(Pos::new(HPos::Center, VPos::Center)),
                    ))?;
                    if two_lines {
                        rest.draw(&Text::new(
                            format!("{excess:+.3}"),
                            (x + cell / 2, y + cell / 2 + cell / 5),
                            TextStyle::from((FONT, small_size).into_font())
                                .color(ink)
                                .pos(Pos::new(HPos::Center, VPos::Center)),
                        ))?;
                    }
                }
            }
        }
        // Colour scale.
        let (w, h) = rest.dim_in_pixel();
        let (bw, bx, by) = (300i32, w as i32 / 2 - 150, h as i32 - 40);
        for i in 0..bw {
            let v = self.span * (2.0 * f64::from(i) / f64::from(bw - 1) - 1.0);
            rest.draw(&Rectangle::new(
                [(bx + i, by), (bx + i + 1, by + 14)],
                excess_color(v, self.span).filled(),
            ))?;
        }
        rest.draw(&Rectangle::new(
            [(bx, by), (bx + bw, by + 14)],
            MUTED.stroke_width(1),
        ))?;
        let label = |s: String, x: i32, y: i32, anchor: HPos| {
            Text::new(
                s,
                (x, y),
                TextStyle::from((FONT, 15).into_font())
                    .color(&TEXT)
                    .pos(Pos::new(anchor, VPos::Center)),
            )
        };
        rest.draw(&label(
            format!("{:+.3}", -self.span),
            bx - 8,
            by + 7,
            HPos::Right,
        ))?;
        rest.draw(&label(
            format!("{:+.3} identical bits vs chance", self.span),
            bx + bw + 8,
            by + 7,
            HPos::Left,
        ))?;
        rest.draw(&label("0".into(), bx + bw / 2, by + 26, HPos::Center))?;
        Ok(())
    }
}

const DIAGONAL: RGBColor = RGBColor(235, 235, 235);

/// Figure 5b: the task-similarity heatmaps.
pub fn similarity(run: &RunData, prefix: &str) -> Result<Option<Figure>> {
    let Some(masks) = &run.masks else {
        return Ok(None);
    };
    if masks.tasks.len() < 2 {
        return Ok(None);
    }
    Ok(Some(similarity_figure(masks, &run.name, prefix)?))
}

fn similarity_figure(masks: &BinaryMasks, run_name: &str, prefix: &str) -> Result<Figure> {
    let mut panels = vec![HeatPanel {
        title: "all gated parameters".into(),
        share: masks.similarity(&[]),
        chance: masks.chance(&[]),
    }];
    for (i, l) in masks.layers.iter().enumerate() {
        if l.name.ends_with(".weight") && masks.layers.len() > 2 {
            panels.push(HeatPanel {
                title: l.name.clone(),
                share: masks.similarity(&[i]),
                chance: masks.chance(&[i]),
            });
        }
    }
    let span = panels
        .iter()
        .flat_map(|p| {
            p.share
                .iter()
                .flatten()
                .zip(p.chance.iter().flatten())
                .map(|(s, c)| (s - c).abs())
        })
        .fold(0.0, f64::max);
    // Round the scale up to one significant digit (0.029 -> 0.03).
    let span = if span > 0.0 {
        let unit = 10f64.powf(span.log10().floor());
        ((span / unit).ceil() * unit).min(1.0)
    } else {
        0.01
    };
    let t_n = masks.tasks.len() as u32;
    let cell = (480 / t_n).clamp(40, 76);
    let longest = masks
        .tasks
        .iter()
        .map(|t| t.chars().count())
        .max()
        .unwrap_or(1) as u32;
    let label_w = 8 * longest + 12;
    let panel = (
        (label_w + 10 + cell * t_n + 30).max(300),
        PANEL_TITLE_H + label_w + cell * t_n + 20,
    );
    let cols = match panels.len() {
        1 => 1,
        2 | 4 => 2,
        _ => 3,
    };
    let plot = Heatmaps {
        header: Header {
            title: format!("Task similarity of the binarized masks — run {run_name}"),
            subtitle: Some(
                "number: share of identical bits of 1[M>0]; small number and colour: difference from chance"
                    .into(),
            ),
            legend: Vec::new(),
        },
        tasks: masks.tasks.clone(),
        panels,
        cols,
        cell,
        label_w,
        panel,
        span,
    };
    let caption = "Share of identical binarized mask bits between every pair of tasks, over \
                   all gated parameters and per layer, and its difference from chance: the \
                   share two independent masks with the same on-shares would have. Blue cells \
                   (above chance): the two tasks keep the same weights, i.e. share features; \
                   red cells (below chance): they split the weights between them; white: the \
                   masks are unrelated."
        .to_string();
    render(
        &format!("{prefix}fig5_task_similarity"),
        "Task similarity of the masks",
        caption,
        &plot,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_geometry_places_tiles() {
        let g = MaskGeometry::of(&[2, 3, 2, 2]);
        assert_eq!(g.cells(), (3 * 3 - 1, 2 * 3 - 1));
        // Entry (filter 1, channel 2, row 1, col 0) = 1*12 + 2*4 + 1*2 + 0.
        assert_eq!(g.position(12 + 8 + 2), (2 * 3, 3 + 1));
    }
}
