//! Line panels (curves over steps, histogram outlines) and a header over a grid of them.

use super::color::{GRID, MUTED, TEXT};
use super::header::{Header, MIN_WIDTH};
use super::{DrawResult, FONT, Plot};
use plotters::coord::Shift;
use plotters::coord::combinators::BindKeyPoints;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::prelude::*;

/// One line of a line panel.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub(crate) color: RGBColor,
    pub(crate) dashed: bool,
    /// Points only, no line: the full evaluations on a probe curve (filled circles; hollow
    /// when `dashed`, the binarized model).
    pub(crate) dots: bool,
    pub(crate) width: u32,
    pub(crate) points: Vec<(f64, f64)>,
}

/// An x/y panel with lines (curves over steps, or histogram outlines).
#[derive(Debug, Clone)]
pub(crate) struct LinePanel {
    pub(crate) title: String,
    pub(crate) x_desc: String,
    pub(crate) y_desc: String,
    pub(crate) series: Vec<Series>,
    pub(crate) log_y: bool,
    pub(crate) x_range: Option<(f64, f64)>,
    pub(crate) y_range: Option<(f64, f64)>,
    /// A shaded x interval (the "undecided" gate values 0.1 to 0.9).
    pub(crate) band: Option<(f64, f64)>,
    /// Integer tick labels on x (steps).
    pub(crate) integer_x: bool,
    /// Vertical lines at these x (the ends of a sequential run's phases).
    pub(crate) marks_x: Vec<f64>,
}

impl LinePanel {
    pub(crate) fn new(title: impl Into<String>, x_desc: &str, y_desc: &str) -> Self {
        LinePanel {
            title: title.into(),
            x_desc: x_desc.into(),
            y_desc: y_desc.into(),
            series: Vec::new(),
            log_y: false,
            x_range: None,
            y_range: None,
            band: None,
            integer_x: false,
            marks_x: Vec::new(),
        }
    }

    pub(crate) fn line(&mut self, color: RGBColor, points: Vec<(f64, f64)>) {
        self.series.push(Series {
            color,
            dashed: false,
            dots: false,
            width: 2,
            points,
        });
    }

    pub(crate) fn dots(&mut self, color: RGBColor, points: Vec<(f64, f64)>, hollow: bool) {
        self.series.push(Series {
            color,
            dashed: hollow,
            dots: true,
            width: 2,
            points,
        });
    }

    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let pts = self.series.iter().flat_map(|s| s.points.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        for &(x, y) in pts {
            if !(x.is_finite() && y.is_finite()) || (self.log_y && y <= 0.0) {
                continue;
            }
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        if !x0.is_finite() {
            (x0, x1, y0, y1) = (0.0, 1.0, if self.log_y { 0.1 } else { 0.0 }, 1.0);
        }
        if let Some(r) = self.x_range {
            (x0, x1) = r;
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        if let Some(r) = self.y_range {
            (y0, y1) = r;
        } else if self.log_y {
            (y0, y1) = (y0 / 1.25, y1 * 1.25);
        } else {
            let pad = ((y1 - y0) * 0.06).max(1e-9);
            (y0, y1) = (y0 - pad, y1 + pad);
        }
        if y1 <= y0 {
            y1 = y0 + if self.log_y { y0 } else { 1.0 };
        }
        ((x0, x1), (y0, y1))
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let ((x0, x1), (y0, y1)) = self.ranges();
        let mut builder = ChartBuilder::on(area);
        builder
            .caption(&self.title, (FONT, 18).into_font().color(&TEXT))
            .margin(10)
            .margin_right(18)
            .x_label_area_size(46)
            .y_label_area_size(70);
        if self.log_y {
            let ticks = log_ticks(y0, y1);
            let chart =
                builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale().with_key_points(ticks))?;
            self.fill(chart, (y0, y1))
        } else {
            let chart = builder.build_cartesian_2d(x0..x1, y0..y1)?;
            self.fill(chart, (y0, y1))
        }
    }

    fn fill<DB, Y>(
        &self,
        mut chart: ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
        (y0, y1): (f64, f64),
    ) -> DrawResult
    where
        DB: DrawingBackend,
        DB::ErrorType: 'static,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let integer_x = self.integer_x;
        let x_span = chart.x_range().end - chart.x_range().start;
        let x_fmt = move |x: &f64| {
            if integer_x {
                format!("{}", x.round() as i64)
            } else {
                short(snap(*x, x_span))
            }
        };
        let y_span = y1 - y0;
        let y_fmt = move |y: &f64| short(snap(*y, y_span));
        chart
            .configure_mesh()
            .x_desc(self.x_desc.as_str())
            .y_desc(self.y_desc.as_str())
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .axis_desc_style((FONT, 16).into_font().color(&TEXT))
            .label_style((FONT, 14).into_font().color(&MUTED))
            .draw()?;
        if let Some((b0, b1)) = self.band {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(b0, y0), (b1, y1)],
                RGBColor(238, 238, 238).filled(),
            )))?;
        }
        for &x in &self.marks_x {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x, y0), (x, y1)],
                RGBColor(150, 150, 150).stroke_width(1),
            )))?;
        }
        for s in &self.series {
            let style = s.color.stroke_width(s.width);
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|&(x, y)| x.is_finite() && y.is_finite() && (!self.log_y || y > 0.0))
                .collect();
            if s.dots {
                if s.dashed {
                    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 6, style)))?;
                } else {
                    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 5, s.color.filled())))?;
                }
            } else if s.dashed {
                chart.draw_series(DashedLineSeries::new(pts, 7, 5, style))?;
            } else {
                chart.draw_series(LineSeries::new(pts.iter().copied(), style))?;
                if pts.len() <= 12 {
                    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, s.color.filled())))?;
                }
            }
        }
        Ok(())
    }
}

/// Ticks for a log axis: 1-2-5 steps per decade, more when the range is narrow, fewer when it
/// is wide (plotters' own log ticks are only powers of ten, often just one in a metric's
/// range).
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let pick = |mantissas: &[f64]| -> Vec<f64> {
        let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        (a..=b)
            .flat_map(|k| mantissas.iter().map(move |m| m * 10f64.powi(k)))
            .filter(|v| *v >= lo && *v <= hi)
            .collect()
    };
    let mut ticks = pick(&[1.0, 2.0, 5.0]);
    if ticks.len() < 3 {
        ticks = pick(&[1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0]);
    } else if ticks.len() > 9 {
        ticks = pick(&[1.0]);
    }
    ticks
}

/// Ticks computed as `lo + k·step` land at ±1e-17 instead of 0; values this close to zero
/// relative to the axis span are zero.
fn snap(v: f64, span: f64) -> f64 {
    if v.abs() < span.abs() * 1e-9 { 0.0 } else { v }
}

/// A tick label: few digits, scientific for tiny or huge values.
fn short(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() < 1e-3 || v.abs() >= 1e5 {
        format!("{v:.1e}")
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

/// A header over a grid of line panels.
pub(crate) struct LineGrid {
    pub(crate) header: Header,
    pub(crate) panels: Vec<LinePanel>,
    pub(crate) cols: usize,
    pub(crate) panel: (u32, u32),
}

impl LineGrid {
    fn rows(&self) -> usize {
        self.panels.len().div_ceil(self.cols.max(1))
    }
}

impl Plot for LineGrid {
    fn size(&self) -> (u32, u32) {
        let w = (self.panel.0 * self.cols as u32).max(MIN_WIDTH);
        (w, self.header.height(w) + self.panel.1 * self.rows() as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let rest = self.header.draw(root)?;
        let cells = rest.split_evenly((self.rows(), self.cols));
        for (panel, cell) in self.panels.iter().zip(&cells) {
            panel.draw(cell)?;
        }
        Ok(())
    }
}

/// Columns of a grid of `n` panels.
pub(crate) fn grid_cols(n: usize) -> usize {
    match n {
        0..=3 => n.max(1),
        4 => 2,
        5..=6 => 3,
        7..=8 => 4,
        _ => 5,
    }
}
