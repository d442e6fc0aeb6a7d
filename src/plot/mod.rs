//! Figures drawn once through plotters' bitmap backend (encoded as PNG) and once through its
//! SVG backend, from the same drawing code: the `Plot` trait, `render`, the colours, the
//! figure header with its legend (`Header`) and grids of line panels (`LineGrid`). The run
//! report ([`crate::report`]) and the sweep report ([`crate::sweep`]) draw with these; what a
//! figure shows (runs, records, masks) is theirs, how it is drawn is here.
//!
//! Text is rendered with an embedded font (Noto Sans, `typeset.rs`) because the bitmap backend
//! has no access to system fonts without C libraries.

mod color;
mod header;
mod line;
mod typeset;

pub use color::strategy_color;
pub(crate) use color::{MUTED, PALETTE, TEXT, lighten, task_colors};
pub(crate) use header::{Header, MIN_WIDTH, Mark};
pub(crate) use line::{LineGrid, LinePanel, Series, grid_cols};

use crate::error::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use typeset::Typeset;

/// One rendered figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// File name without extension (`.png` and `.svg` are written).
    pub stem: String,
    /// Heading in the report.
    pub title: String,
    /// What the figure shows and how to read it.
    pub caption: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The PNG file.
    pub png: Vec<u8>,
    /// The SVG file.
    pub svg: String,
}

pub(crate) type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Something drawable on any plotters backend.
pub(crate) trait Plot {
    /// Pixel size.
    fn size(&self) -> (u32, u32);
    /// Draws onto a white area of [`Plot::size`].
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static;
}

/// The font family every figure's text names (the embedded Noto Sans draws it).
pub(crate) const FONT: &str = "sans-serif";

/// Renders a plot to PNG and SVG.
pub(crate) fn render(stem: &str, title: &str, caption: String, plot: &impl Plot) -> Result<Figure> {
    let (w, h) = plot.size();
    let fail = |e: Box<dyn std::error::Error>| Error::Run {
        path: format!("{stem}.png").into(),
        message: format!("drawing the figure failed: {e}"),
    };
    let mut rgb = vec![255u8; w as usize * h as usize * 3];
    {
        let root = Typeset {
            inner: BitMapBackend::with_buffer(&mut rgb, (w, h)),
            raster: true,
        }
        .into_drawing_area();
        draw_root(&root, plot).map_err(fail)?;
    }
    let png = encode_png(&rgb, w, h).map_err(|e| Error::Run {
        path: format!("{stem}.png").into(),
        message: format!("encoding the PNG failed: {e}"),
    })?;
    let mut svg = String::new();
    {
        let root = Typeset {
            inner: SVGBackend::with_string(&mut svg, (w, h)),
            raster: false,
        }
        .into_drawing_area();
        draw_root(&root, plot).map_err(fail)?;
    }
    Ok(Figure {
        stem: stem.into(),
        title: title.into(),
        caption,
        width: w,
        height: h,
        png,
        svg,
    })
}

fn draw_root<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, plot: &impl Plot) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    plot.draw(root)?;
    root.present()?;
    Ok(())
}

/// 8-bit RGB pixels to a PNG file.
pub fn encode_png(rgb: &[u8], w: u32, h: u32) -> std::result::Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::High);
        let mut writer = enc.write_header()?;
        writer.write_image_data(rgb)?;
    }
    Ok(out)
}
