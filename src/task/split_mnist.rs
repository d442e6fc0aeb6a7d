//! `split-mnist`: the MNIST examples of a subset of classes per task (Zenke et al. 2017), e.g.
//! {0, 1}, {2, 3}, …. Labels keep their digit value (one 10-way head shared by all tasks).

use super::Task;
use super::image::{Colour, ImageSettings, Resample, image_params};
use super::registry::{ParamSpec, ParamType, TaskContext, TaskKind};
use crate::error::Result;

const PARAMS: &[ParamSpec] = image_params![ParamSpec {
    name: "classes",
    ty: ParamType::IntList,
    default: None,
    help: "the digits of this task, e.g. [0, 1]",
},];

fn build(ctx: &TaskContext) -> Result<Box<dyn Task>> {
    let classes = ctx.params.i64_list("classes")?;
    if classes.is_empty() || classes.iter().any(|c| !(0..10).contains(c)) {
        return Err(ctx.params.invalid(
            "classes",
            format!("must be a non-empty list of digits 0–9, got {classes:?}"),
        ));
    }
    let keep: Vec<u8> = classes.iter().map(|&c| c as u8).collect();
    let settings = ImageSettings::from_params(ctx)?;
    let mut task = settings.build(
        ctx.name,
        Colour::Background([0.0; 3]),
        Resample::Identity,
        |l| keep.contains(&l),
    );
    task.classes = Some(keep.iter().map(|&c| u32::from(c)).collect());
    Ok(Box::new(task))
}

inventory::submit! {
    TaskKind {
        name: "split-mnist",
        summary: "the MNIST examples of a subset of the classes per task",
        params: PARAMS,
        build,
    }
}
