//! `mnist`: MNIST digits, optionally coloured (the paper's colour experiments): a background
//! colour, an inverted black-on-white digit with a digit colour, or a constant fill (the
//! paper's "useless" all-white task).

use super::Task;
use super::image::{Colour, ImageSettings, Resample, colour_param, image_params};
use super::registry::{ParamSpec, ParamType, TaskContext, TaskKind};
use crate::error::Result;

const PARAMS: &[ParamSpec] = image_params![
    ParamSpec {
        name: "background",
        ty: ParamType::FloatList,
        default: Some("[0.0, 0.0, 0.0]"),
        help: "background colour [r, g, b]: channel k = x + (1 − x)·c[k]",
    },
    ParamSpec {
        name: "inverted",
        ty: ParamType::Bool,
        default: Some("false"),
        help: "black-on-white: channel k = x·digit[k] + (1 − x)",
    },
    ParamSpec {
        name: "digit",
        ty: ParamType::FloatList,
        default: Some("[0.0, 0.0, 0.0]"),
        help: "digit colour when inverted",
    },
    ParamSpec {
        name: "fill",
        ty: ParamType::FloatList,
        default: Some("[]"),
        help: "constant colour [r, g, b] for every pixel (a task with no information); [] = off",
    },
];

fn build(ctx: &TaskContext) -> Result<Box<dyn Task>> {
    let p = ctx.params;
    let settings = ImageSettings::from_params(ctx)?;
    let colour = if !p.f64_list("fill")?.is_empty() {
        Colour::Fill(colour_param(p, "fill")?)
    } else if p.bool("inverted")? {
        Colour::Inverted(colour_param(p, "digit")?)
    } else {
        Colour::Background(colour_param(p, "background")?)
    };
    if settings.channels == 1 {
        let grey = match colour {
            Colour::Background(c) | Colour::Inverted(c) | Colour::Fill(c) => {
                c[1..].iter().all(|&v| v == c[0])
            }
        };
        if !grey {
            return Err(p.invalid(
                "channels",
                "is 1, but a colour is not gray (equal r, g, b): use channels = 3",
            ));
        }
    }
    Ok(Box::new(settings.build(
        ctx.name,
        colour,
        Resample::Identity,
        |_| true,
    )))
}

inventory::submit! {
    TaskKind {
        name: "mnist",
        summary: "MNIST digits with a background colour, inverted with a digit colour, or a constant fill",
        params: PARAMS,
        build,
    }
}
