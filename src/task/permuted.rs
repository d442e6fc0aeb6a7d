//! `permuted-mnist`: MNIST with one fixed pixel permutation per task (Goodfellow et al. 2013;
//! the standard continual-learning benchmark). Pixels are permuted on the source 28x28 grid,
//! before padding, or with `permute_padding = true` on the padded grid, padding included, as
//! van de Ven & Tolias's reference code does (`transforms.Pad(2)`, then a permutation of all
//! 1024 pixels): there the 240 always-zero padding inputs move with each task, so two tasks
//! share fewer informative inputs. A single shared model must fail here: each task scrambles
//! the input space differently.

use super::Task;
use super::image::{Colour, ImageSettings, Resample, image_params};
use super::registry::{ParamSpec, ParamType, TaskContext, TaskKind};
use crate::error::Result;
use crate::rng::Rng;
use std::sync::Arc;

const PARAMS: &[ParamSpec] = image_params![
    ParamSpec {
        name: "permutation",
        ty: ParamType::Int,
        default: Some("-1"),
        help: "which permutation (drawn from the set's seed; equal ids give equal tasks); -1 = the task's position",
    },
    ParamSpec {
        name: "permute_padding",
        ty: ParamType::Bool,
        default: Some("false"),
        help: "permute the padded image, padding included (van de Ven & Tolias's reference code: pad, then permute all pixels), instead of the 28x28 digit before padding",
    },
];

/// The permutation with id `id` of `n` pixels under `seed` (Fisher–Yates).
pub fn permutation(seed: u64, id: u64, n: usize) -> Vec<u32> {
    let mut rng = Rng::stream(seed, "permuted-mnist", id);
    let mut perm: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        perm.swap(i, rng.below(i + 1));
    }
    perm
}

fn build(ctx: &TaskContext) -> Result<Box<dyn Task>> {
    let settings = ImageSettings::from_params(ctx)?;
    let id = ctx.params.i64("permutation")?;
    let id = if id < 0 { ctx.index as u64 } else { id as u64 };
    let (rows, cols) = (settings.data.train.rows, settings.data.train.cols);
    if ctx.params.bool("permute_padding")? {
        let n = (rows + 2 * settings.pad) * (cols + 2 * settings.pad);
        let perm = Arc::new(permutation(ctx.seed, id, n));
        let task = settings.build(
            ctx.name,
            Colour::Background([0.0; 3]),
            Resample::Identity,
            |_| true,
        );
        return Ok(Box::new(task.with_plane_permutation(perm)));
    }
    let perm = Arc::new(permutation(ctx.seed, id, rows * cols));
    Ok(Box::new(settings.build(
        ctx.name,
        Colour::Background([0.0; 3]),
        Resample::Permute(perm),
        |_| true,
    )))
}

inventory::submit! {
    TaskKind {
        name: "permuted-mnist",
        summary: "MNIST with a fixed random pixel permutation per task",
        params: PARAMS,
        build,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_bijections_and_differ_by_id() {
        let a = permutation(0, 0, 784);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..784).collect::<Vec<u32>>());
        assert_ne!(a, permutation(0, 1, 784));
        assert_eq!(a, permutation(0, 0, 784));
    }
}
