//! The header of a figure: title, subtitle and a figure-wide legend that wraps into rows.

use super::FONT;
use super::color::{MUTED, TEXT};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// How a legend entry is marked.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mark {
    Line,
    Dashed,
    Box,
    /// A filled circle (a full evaluation on a probe curve).
    Dot,
    /// A hollow circle (the binarized model's full evaluations on a probe curve).
    Ring,
}

/// Title, subtitle and a figure-wide legend above a grid of panels.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub(crate) title: String,
    pub(crate) subtitle: Option<String>,
    pub(crate) legend: Vec<(String, RGBColor, Mark)>,
}

/// Narrowest figure: room for the title, subtitle and legend of a one-panel figure.
pub(crate) const MIN_WIDTH: u32 = 900;
const TITLE_H: u32 = 38;
const SUBTITLE_H: u32 = 22;
const LEGEND_ROW_H: u32 = 26;

impl Header {
    fn legend_width(label: &str) -> u32 {
        // Noto Sans at plotters size 16 (13 px em) averages under 8 px per character.
        34 + 8 * label.chars().count() as u32 + 18
    }

    fn legend_rows(&self, width: u32) -> Vec<Vec<usize>> {
        let mut rows: Vec<Vec<usize>> = Vec::new();
        let mut x = 20;
        for (i, (label, _, _)) in self.legend.iter().enumerate() {
            let w = Self::legend_width(label);
            if rows.is_empty() || x + w > width.saturating_sub(20) {
                rows.push(Vec::new());
                x = 20;
            }
            if let Some(r) = rows.last_mut() {
                r.push(i);
            }
            x += w;
        }
        rows
    }

    pub(crate) fn height(&self, width: u32) -> u32 {
        TITLE_H
            + self.subtitle.as_ref().map_or(0, |_| SUBTITLE_H)
            + LEGEND_ROW_H * self.legend_rows(width).len() as u32
            + 6
    }

    /// Draws the header and returns the area below it.
    pub(crate) fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<DrawingArea<DB, Shift>, Box<dyn std::error::Error>>
    where
        DB::ErrorType: 'static,
    {
        let (w, _) = root.dim_in_pixel();
        let h = self.height(w);
        let (top, rest) = root.split_vertically(h);
        let centre = Pos::new(HPos::Center, VPos::Center);
        top.draw(&Text::new(
            self.title.clone(),
            (w as i32 / 2, TITLE_H as i32 / 2 + 2),
            TextStyle::from((FONT, 24).into_font())
                .color(&TEXT)
                .pos(centre),
        ))?;
        let mut y = TITLE_H as i32;
        if let Some(sub) = &self.subtitle {
            top.draw(&Text::new(
                sub.clone(),
                (w as i32 / 2, y + SUBTITLE_H as i32 / 2 - 2),
                TextStyle::from((FONT, 16).into_font())
                    .color(&MUTED)
                    .pos(centre),
            ))?;
            y += SUBTITLE_H as i32;
        }
        for row in self.legend_rows(w) {
            let total: u32 = row
                .iter()
                .map(|&i| Self::legend_width(&self.legend[i].0))
                .sum();
            let mut x = (w.saturating_sub(total) / 2) as i32;
            let cy = y + LEGEND_ROW_H as i32 / 2;
            for &i in &row {
                let (label, color, mark) = &self.legend[i];
                match mark {
                    Mark::Line => {
                        top.draw(&PathElement::new(
                            vec![(x, cy), (x + 26, cy)],
                            color.stroke_width(3),
                        ))?;
                    }
                    Mark::Dashed => {
                        for k in 0..3 {
                            let x0 = x + k * 10;
                            top.draw(&PathElement::new(
                                vec![(x0, cy), (x0 + 6, cy)],
                                color.stroke_width(3),
                            ))?;
                        }
                    }
                    Mark::Dot => {
                        top.draw(&Circle::new((x + 13, cy), 5, color.filled()))?;
                    }
                    Mark::Ring => {
                        top.draw(&Circle::new((x + 13, cy), 6, color.stroke_width(2)))?;
                    }
                    Mark::Box => {
                        top.draw(&Rectangle::new(
                            [(x + 6, cy - 7), (x + 20, cy + 7)],
                            color.filled(),
                        ))?;
                        top.draw(&Rectangle::new(
                            [(x + 6, cy - 7), (x + 20, cy + 7)],
                            MUTED.stroke_width(1),
                        ))?;
                    }
                }
                top.draw(&Text::new(
                    label.clone(),
                    (x + 34, cy),
                    TextStyle::from((FONT, 16).into_font())
                        .color(&TEXT)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                ))?;
                x += Self::legend_width(label) as i32;
            }
            y += LEGEND_ROW_H as i32;
        }
        Ok(rest)
    }
}
