//! Figure 5, what the masks learned: each layer's binarized mask per task as an image, and the
//! task-similarity heatmaps. Drawn with the same header, fonts and colours as the other figures
//! ([`crate::plot`]).

use super::RunData;
use super::masks::{BinaryMasks, MaskLayer};
use crate::error::Result;
use crate::plot::{
    DrawResult, FONT, Figure, Header, MIN_WIDTH, MUTED, Mark, Plot, TEXT, lighten, render,
};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Colours of the mask images.
const ON: RGBColor = RGBColor(25, 25, 25);
const OFF: RGBColor = RGBColor(255, 255, 255);
const GAP: RGBColor = RGBColor(200, 200, 200);

/// How one parameter's mask is laid out as pixels: conv weights as a grid of k×k tiles (rows:
/// output filters, columns: input channels), everything else as a rows × columns bitmap.
#[derive(Debug, Clone, Copy, PartialEq)]
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

/// How many weights of a large fully connected layer one pixel of its mask image stands for:
/// `rows` consecutive outputs by `cols` consecutive inputs. `by_channel`: `cols` is the size of
/// one channel of the conv output that the layer reads (flattened channel-major), so a pixel
/// column is one input channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskBlocks {
    /// Outputs per pixel row.
    pub rows: usize,
    /// Inputs per pixel column.
    pub cols: usize,
    /// Whether a pixel column is one input channel.
    pub by_channel: bool,
}

/// Beyond this many inputs (or outputs) a fully connected layer's mask is shown aggregated:
/// one pixel per weight is noise at that size (LeNet's `fc1` is 120×400).
const MAX_PLAIN_CELLS: usize = 100;

impl MaskBlocks {
    /// The blocks for a layer of `shape`; `channels`: the output channels of the conv layer
    /// before it, if any. `None`: small enough to show every weight.
    pub fn of(shape: &[usize], channels: Option<usize>) -> Option<Self> {
        let [o, i] = shape else {
            return None;
        };
        let (o, i) = (*o, *i);
        if o <= MAX_PLAIN_CELLS && i <= MAX_PLAIN_CELLS {
            return None;
        }
        let group = |n: usize| n.div_ceil(MAX_PLAIN_CELLS / 2).max(1);
        let (cols, by_channel) = match channels {
            Some(c) if c > 1 && i > c && i.is_multiple_of(c) => (i / c, true),
            _ if i > MAX_PLAIN_CELLS => (group(i), false),
            _ => (1, false),
        };
        let rows = if o > MAX_PLAIN_CELLS { group(o) } else { 1 };
        Some(MaskBlocks {
            rows,
            cols,
            by_channel,
        })
    }
}

/// What Figure 5a draws for one layer: per task the share of kept weights in every pixel (0 or
/// 1 when a pixel is one weight), and in the last panel how many tasks keep them (0..T, a mean
/// over the pixel's weights when aggregated). Pixels in row-major order of `geometry`.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskPanels {
    /// Pixel layout (the aggregated grid when `blocks` is set).
    geometry: MaskGeometry,
    /// The aggregation, if any.
    pub blocks: Option<MaskBlocks>,
    /// Pixel rows and columns (tiles and gaps included).
    pub size: (usize, usize),
    /// Per task, the share on per pixel.
    pub tasks: Vec<Vec<f64>>,
    /// How many tasks keep each pixel's weights (mean over the pixel's weights).
    pub kept_by: Vec<f64>,
}

impl MaskPanels {
    /// The panels of `layer`; `channels` as in [`MaskBlocks::of`].
    pub fn of(layer: &MaskLayer, channels: Option<usize>) -> Self {
        let blocks = MaskBlocks::of(&layer.shape, channels);
        let kept: Vec<f64> = (0..layer.len())
            .map(|i| layer.on.iter().filter(|m| m[i]).count() as f64)
            .collect();
        let Some(b) = blocks else {
            let geometry = MaskGeometry::of(&layer.shape);
            let (w, h) = geometry.cells();
            let place = |values: &[f64]| -> Vec<f64> {
                let mut out = vec![f64::NAN; w * h];
                for (i, &v) in values.iter().enumerate() {
                    let (x, y) = geometry.position(i);
                    if x < w && y < h {
                        out[y * w + x] = v;
                    }
                }
                out
            };
            return MaskPanels {
                geometry,
                blocks,
                size: (h, w),
                tasks: layer
                    .on
                    .iter()
                    .map(|m| {
                        place(
                            &m.iter()
                                .map(|&b| f64::from(u8::from(b)))
                                .collect::<Vec<_>>(),
                        )
                    })
                    .collect(),
                kept_by: place(&kept),
            };
        };
        let (o, i) = (layer.shape[0], layer.shape[1]);
        let (h, w) = (o.div_ceil(b.rows), i.div_ceil(b.cols));
        let mean_blocks = |value: &dyn Fn(usize) -> f64| -> Vec<f64> {
            let mut sum = vec![0.0; w * h];
            let mut n = vec![0usize; w * h];
            for r in 0..o {
                for c in 0..i {
                    let k = (r / b.rows) * w + c / b.cols;
                    sum[k] += value(r * i + c);
                    n[k] += 1;
                }
            }
            sum.iter()
                .zip(&n)
                .map(|(s, &n)| s / n.max(1) as f64)
                .collect()
        };
        MaskPanels {
            geometry: MaskGeometry::of(&[h, w]),
            blocks,
            size: (h, w),
            tasks: layer
                .on
                .iter()
                .map(|m| mean_blocks(&|j| f64::from(u8::from(m[j]))))
                .collect(),
            kept_by: mean_blocks(&|j| kept[j]),
        }
    }
}

/// Figure 5a: one layer's binarized mask per task, plus how many tasks keep each weight.
struct MaskImage<'a> {
    header: Header,
    layer: &'a MaskLayer,
    tasks: &'a [String],
    data: MaskPanels,
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
        let (ch, cw) = self.data.size;
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
            let values = if k < t_n {
                &self.data.tasks[k]
            } else {
                &self.data.kept_by
            };
            let color = |v: f64| -> RGBColor {
                if v.is_nan() {
                    GAP
                } else if k < t_n {
                    lighten(ON, 1.0 - v)
                } else {
                    count_color(v, t_n)
                }
            };
            // Background in the most common colour, then the other pixels merged into
            // horizontal runs of one colour, which keeps the SVG small.
            let colors: Vec<RGBColor> = values.iter().map(|&v| color(v)).collect();
            let mut tally: std::collections::HashMap<(u8, u8, u8), usize> = Default::default();
            for c in &colors {
                *tally.entry((c.0, c.1, c.2)).or_default() += 1;
            }
            let majority = tally
                .iter()
                .max_by_key(|(k, n)| (**n, **k))
                .map_or(OFF, |(k, _)| RGBColor(k.0, k.1, k.2));
            rest.draw(&Rectangle::new(
                [(x0, y0), (x0 + img_w, y0 + img_h)],
                majority.filled(),
            ))?;
            for (y, row) in colors.chunks(cw.max(1)).enumerate() {
                let mut x = 0;
                while x < row.len() {
                    if row[x] == majority {
                        x += 1;
                        continue;
                    }
                    let start = x;
                    while x < row.len() && row[x] == row[start] {
                        x += 1;
                    }
                    rest.draw(&Rectangle::new(
                        [
                            (x0 + start as i32 * s, y0 + y as i32 * s),
                            (x0 + x as i32 * s, y0 + (y as i32 + 1) * s),
                        ],
                        row[start].filled(),
                    ))?;
                }
            }
            rest.draw(&Rectangle::new(
                [(x0 - 1, y0 - 1), (x0 + img_w + 1, y0 + img_h + 1)],
                MUTED.stroke_width(1),
            ))?;
            if let Some(names) = &self.channel_names {
                let (_, kw) = self.data.geometry.tile;
                let g = self.data.geometry.gap();
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

/// Colour for "kept by `v` of `n` tasks" (`v` may be a mean): white (none) to dark blue (all).
fn count_color(v: f64, n: usize) -> RGBColor {
    if v <= 0.0 {
        return OFF;
    }
    // One task is already clearly tinted, so "kept by one" differs from "kept by none".
    let t = 0.2 + 0.8 * v / n.max(1) as f64;
    lighten(RGBColor(8, 48, 107), 1.0 - t.min(1.0))
}

/// The legend of Figure 5a's last panel: every count from 0 to `n` (shown 0, 1, …, n), so each
/// colour of the panel can be read.
pub fn kept_by_legend(n: usize) -> Vec<(String, usize)> {
    (0..=n)
        .map(|v| {
            let label = match v {
                0 => "kept by none".to_string(),
                v if v == n => format!("by all {n}"),
                1 => "by 1 task".to_string(),
                v => format!("by {v}"),
            };
            (label, v)
        })
        .collect()
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
        // The output channels of the conv layer right before this one, if any (its flattened
        // output is this layer's input).
        let channels = masks.layers[..li]
            .iter()
            .rev()
            .find(|l| l.name.ends_with(".weight"))
            .filter(|l| l.shape.len() == 4)
            .map(|l| l.shape[0]);
        let data = MaskPanels::of(layer, channels);
        let (ch, cw) = data.size;
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
        let layout = layout_text(layer, &data);
        let mut legend = vec![
            ("on (M > 0)".to_string(), ON, Mark::Box),
            ("off".to_string(), OFF, Mark::Box),
        ];
        if t_n > 1 {
            for (label, v) in kept_by_legend(t_n) {
                legend.push((label, count_color(v as f64, t_n), Mark::Box));
            }
        }
        let aggregated = data.blocks.is_some();
        let plot = MaskImage {
            header: Header {
                title: format!("Binarized masks of {} — run {}", layer.name, run.name),
                subtitle: Some(layout.clone()),
                legend,
            },
            layer,
            tasks: &masks.tasks,
            data,
            scale,
            cols,
            panel,
            channel_names,
        };
        let stem = format!("{prefix}fig5_masks_{}", layer.name.replace('.', "_"));
        let caption = format!(
            "Each task's binarized mask `1[M > 0]` of `{}` ({layout}); black: the weight is on \
             for that task{}. The last panel counts, per weight, how many tasks keep it: dark \
             weights are shared by all tasks, light ones are task-specific.",
            layer.name,
            if aggregated {
                " (a pixel aggregates a block of weights: its grey level is the share on, and \
                 in the last panel the mean count)"
            } else {
                ""
            }
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

/// What the rows, columns, tiles and grey levels of `layer`'s mask image are.
fn layout_text(layer: &MaskLayer, data: &MaskPanels) -> String {
    if layer.shape.len() == 4 {
        format!(
            "rows: {} output filters, columns: {} input channels, tiles: {}×{} kernels",
            layer.shape[0], layer.shape[1], layer.shape[2], layer.shape[3]
        )
    } else if layer.shape.len() == 2 {
        let (o, i) = (layer.shape[0], layer.shape[1]);
        match data.blocks {
            None => format!("rows: {o} outputs, columns: {i} inputs"),
            Some(b) => {
                let rows = if b.rows == 1 {
                    format!("rows: {o} outputs")
                } else {
                    format!("rows: {o} outputs in blocks of {}", b.rows)
                };
                let cols = if b.by_channel {
                    format!(
                        "columns: {} input channels ({} inputs each)",
                        i / b.cols,
                        b.cols
                    )
                } else if b.cols == 1 {
                    format!("columns: {i} inputs")
                } else {
                    format!("columns: {i} inputs in blocks of {}", b.cols)
                };
                format!("{rows}, {cols}; grey: share of the block's weights on")
            }
        }
    } else {
        format!("{} entries", layer.len())
    }
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
        self.draw_scale(&rest)
    }
}

const DIAGONAL: RGBColor = RGBColor(235, 235, 235);

impl Heatmaps {
    /// The colour scale under the panels: |share − chance| from −span to +span.
    fn draw_scale<DB: DrawingBackend>(&self, rest: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
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

    /// A 2-D layer whose task `t` keeps the inputs `c` with `(c / 25) % (t + 1) == 0`
    /// (whole input channels of 25 inputs), every output alike.
    fn channel_layer(tasks: usize, outputs: usize, inputs: usize) -> MaskLayer {
        MaskLayer {
            name: "fc1.weight".into(),
            shape: vec![outputs, inputs],
            on: (0..tasks)
                .map(|t| {
                    (0..outputs * inputs)
                        .map(|j| ((j % inputs) / 25).is_multiple_of(t + 1))
                        .collect()
                })
                .collect(),
        }
    }

    #[test]
    fn large_fc_mask_is_aggregated_per_input_channel() {
        // LeNet's fc1: 120 outputs reading 16 channels of 5×5.
        let layer = channel_layer(4, 120, 400);
        let p = MaskPanels::of(&layer, Some(16));
        assert_eq!(
            p.blocks,
            Some(MaskBlocks {
                rows: 3,
                cols: 25,
                by_channel: true
            })
        );
        assert_eq!(p.size, (40, 16));
        assert_eq!(p.tasks.len(), 4);
        for (t, panel) in p.tasks.iter().enumerate() {
            assert_eq!(panel.len(), 40 * 16);
            for (k, &v) in panel.iter().enumerate() {
                let channel = k % 16;
                let want = if channel.is_multiple_of(t + 1) {
                    1.0
                } else {
                    0.0
                };
                assert_eq!(v, want, "task {t} pixel {k}");
            }
        }
        // Channel 0 is kept by all 4 tasks, channel 6 by tasks 0, 1, 2 (6 % 4 != 0), 1 by one.
        assert_eq!(p.kept_by[0], 4.0);
        assert_eq!(p.kept_by[6], 3.0);
        assert_eq!(p.kept_by[1], 1.0);
        // Without a conv before it: blocks of 8 inputs (400 / 50) and a fractional share.
        let p = MaskPanels::of(&layer, None);
        assert_eq!(p.size, (40, 50));
        assert!(!p.blocks.unwrap().by_channel);
        // Task 1 keeps even channels: the block of inputs 24..32 holds 1 input of channel 0.
        assert_eq!(p.tasks[1][3], 1.0 / 8.0);
    }

    #[test]
    fn small_masks_keep_one_pixel_per_weight() {
        let layer = channel_layer(2, 40, 50);
        let p = MaskPanels::of(&layer, None);
        assert_eq!(p.blocks, None);
        assert_eq!(p.size, (40, 50));
        assert!(p.tasks[1].iter().all(|&v| v == 0.0 || v == 1.0));
        assert_eq!(p.tasks[1][49], 0.0);
        assert_eq!(p.tasks[1][0], 1.0);
        assert_eq!(p.kept_by[0], 2.0);
        assert_eq!(p.kept_by[25], 1.0);
        // Conv kernels: tiles with gaps, which are NaN (drawn grey).
        let conv = MaskLayer {
            name: "conv1.weight".into(),
            shape: vec![2, 3, 2, 2],
            on: vec![vec![true; 24]],
        };
        let p = MaskPanels::of(&conv, None);
        assert_eq!(p.size, (5, 8));
        assert_eq!(p.tasks[0].iter().filter(|v| v.is_nan()).count(), 40 - 24);
    }

    #[test]
    fn legend_lists_every_count() {
        let legend = kept_by_legend(4);
        let counts: Vec<usize> = legend.iter().map(|(_, v)| *v).collect();
        assert_eq!(counts, [0, 1, 2, 3, 4]);
        assert_eq!(legend[0].0, "kept by none");
        assert_eq!(legend[4].0, "by all 4");
        // Every count has its own colour.
        let colors: std::collections::BTreeSet<(u8, u8, u8)> = counts
            .iter()
            .map(|&v| {
                let c = count_color(v as f64, 4);
                (c.0, c.1, c.2)
            })
            .collect();
        assert_eq!(colors.len(), 5);
    }
}
