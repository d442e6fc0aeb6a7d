//! The colours of the figures: fixed per strategy (gated blue, shared orange, separate green)
//! in every figure, so a reader learns them once; tasks and runs from a palette that puts the
//! strategy colours last.

use plotters::style::RGBColor;
use std::collections::BTreeSet;

/// Grid lines.
pub(crate) const GRID: RGBColor = RGBColor(225, 225, 225);
/// Text.
pub(crate) const TEXT: RGBColor = RGBColor(30, 30, 30);
/// Axis labels, subtitles, outlines.
pub(crate) const MUTED: RGBColor = RGBColor(90, 90, 90);

/// The colour of a strategy, the same in every figure.
pub fn strategy_color(strategy: &str) -> RGBColor {
    match strategy {
        "gated" => RGBColor(31, 119, 180),
        "shared" => RGBColor(255, 127, 14),
        "separate" => RGBColor(44, 160, 44),
        "finetune" => RGBColor(214, 39, 40),
        "joint" => RGBColor(148, 103, 189),
        _ => RGBColor(127, 127, 127),
    }
}

/// Categorical colours for tasks and runs (tab10 reordered): the strategy colours come last,
/// so a task or run is not mistaken for a strategy unless there are more than seven.
pub(crate) const PALETTE: [RGBColor; 10] = [
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
];

/// Task colours: when every task is named after a colour (`colors.toml`: black, red, green,
/// blue) the lines take that colour, which needs no legend lookup; otherwise the palette.
pub(crate) fn task_colors(tasks: &[String]) -> Vec<RGBColor> {
    let named: Option<Vec<RGBColor>> = tasks.iter().map(|t| named_color(t)).collect();
    match named {
        Some(c)
            if c.iter()
                .map(|c| (c.0, c.1, c.2))
                .collect::<BTreeSet<_>>()
                .len()
                == c.len() =>
        {
            c
        }
        _ => (0..tasks.len())
            .map(|i| PALETTE[i % PALETTE.len()])
            .collect(),
    }
}

fn named_color(name: &str) -> Option<RGBColor> {
    Some(match name.to_ascii_lowercase().as_str() {
        "black" => RGBColor(20, 20, 20),
        "red" => RGBColor(214, 39, 40),
        "green" => RGBColor(44, 160, 44),
        "blue" => RGBColor(31, 90, 200),
        "white" => RGBColor(160, 160, 160),
        "yellow" => RGBColor(200, 170, 0),
        "cyan" => RGBColor(23, 190, 207),
        "magenta" => RGBColor(200, 50, 200),
        "orange" => RGBColor(255, 127, 14),
        "purple" => RGBColor(148, 103, 189),
        "gray" | "grey" => RGBColor(127, 127, 127),
        _ => return None,
    })
}

/// `c` mixed with white: `t = 0` is `c`, `t = 1` white.
pub(crate) fn lighten(c: RGBColor, t: f64) -> RGBColor {
    let m = |v: u8| (f64::from(v) + (255.0 - f64::from(v)) * t).round() as u8;
    RGBColor(m(c.0), m(c.1), m(c.2))
}
