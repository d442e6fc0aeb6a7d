//! `rotated-mnist`: MNIST rotated by a fixed angle per task (a standard domain-incremental
//! benchmark). Bilinear resampling about the image centre on the source grid, zeros outside.

use super::Task;
use super::image::{Colour, ImageSettings, Resample, image_params};
use super::registry::{ParamSpec, ParamType, TaskContext, TaskKind};
use crate::error::Result;
use std::sync::Arc;

const PARAMS: &[ParamSpec] = image_params![ParamSpec {
    name: "angle",
    ty: ParamType::Float,
    default: Some("0.0"),
    help: "rotation in degrees, counter-clockwise",
},];

/// For each output pixel of a `rows`×`cols` grid, the four bilinear taps into the source grid
/// for a counter-clockwise rotation by `degrees` (taps outside the image have weight 0).
pub fn rotation_map(rows: usize, cols: usize, degrees: f64) -> Vec<[(u32, f32); 4]> {
    let (s, c) = degrees.to_radians().sin_cos();
    let (cy, cx) = ((rows as f64 - 1.0) / 2.0, (cols as f64 - 1.0) / 2.0);
    let mut map = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for q in 0..cols {
            let (dy, dx) = (r as f64 - cy, q as f64 - cx);
            // Inverse rotation: where does this output pixel come from?
            let sx = c * dx - s * dy + cx;
            let sy = s * dx + c * dy + cy;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let mut taps = [(0u32, 0f32); 4];
            for (k, (oy, ox, w)) in [
                (0.0, 0.0, (1.0 - fy) * (1.0 - fx)),
                (0.0, 1.0, (1.0 - fy) * fx),
                (1.0, 0.0, fy * (1.0 - fx)),
                (1.0, 1.0, fy * fx),
            ]
            .into_iter()
            .enumerate()
            {
                let (y, x) = (y0 + oy, x0 + ox);
                if y >= 0.0 && x >= 0.0 && (y as usize) < rows && (x as usize) < cols {
                    taps[k] = ((y as usize * cols + x as usize) as u32, w as f32);
                }
            }
            map.push(taps);
        }
    }
    map
}

fn build(ctx: &TaskContext) -> Result<Box<dyn Task>> {
    let settings = ImageSettings::from_params(ctx)?;
    let angle = ctx.params.f64("angle")?;
    if !angle.is_finite() {
        return Err(ctx
            .params
            .invalid("angle", format!("must be finite, got {angle}")));
    }
    let map = Arc::new(rotation_map(
        settings.data.train.rows,
        settings.data.train.cols,
        angle,
    ));
    Ok(Box::new(settings.build(
        ctx.name,
        Colour::Background([0.0; 3]),
        Resample::Bilinear(map),
        |_| true,
    )))
}

inventory::submit! {
    TaskKind {
        name: "rotated-mnist",
        summary: "MNIST rotated by a fixed angle per task (bilinear)",
        params: PARAMS,
        build,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_quarter_turns_are_exact_pixel_moves() {
        let id = rotation_map(4, 4, 0.0);
        for (i, taps) in id.iter().enumerate() {
            assert_eq!(taps[0], (i as u32, 1.0));
        }
        // 90° counter-clockwise: output (r, q) reads source (q', r') with the centre fixed.
        let quarter = rotation_map(4, 4, 90.0);
        let tap = quarter[0].iter().find(|t| t.1 > 0.99).unwrap();
        assert_eq!(
            tap.0, 3,
            "counter-clockwise: the top-left pixel comes from the top-right"
        );
    }
}
