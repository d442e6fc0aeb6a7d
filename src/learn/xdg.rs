//! XdG's gates (Masse, Grant & Freedman, PNAS 2018): per task, a fixed random set of each
//! hidden layer's units switched off, drawn once from the run's seed and the task's index
//! and never trained. As masks over W (the learner's gate code, with the STE gate whose
//! forward value is exactly `1[M > 0]`): a unit's row of its layer's weight and its bias
//! entry are +1 when the unit is kept and −1 when it is off; the output layer is never gated.
//! As in the reference code (`np.random.choice(units, int(share · units), replace=False)`),
//! exactly `⌊share · units⌋` units of every hidden layer are off.

use crate::params::TaskId;
use crate::rng::Rng;
use candle_core::Shape;

/// The parameters' layers: the name up to its last dot (`fc1` of `fc1.weight`).
fn layer_of(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(layer, _)| layer)
}

/// The indices of the output layer's parameters (those of the last parameter's layer).
pub fn output_layer(params: &[(String, Shape)]) -> Vec<usize> {
    let Some((last, _)) = params.last() else {
        return Vec::new();
    };
    let layer = layer_of(last);
    (0..params.len())
        .filter(|&p| layer_of(&params[p].0) == layer)
        .collect()
}

/// Task `task`'s XdG masks over `params` (values ±1, one vector per parameter in order):
/// in every layer but the output layer whose weight has two or more dimensions, the first
/// dimension is the layer's units, and `⌊share_off · units⌋` of them, drawn without
/// replacement from the stream (`seed`, "xdg", `task`), are off in that layer's every
/// parameter. Everything else (the output layer, layers without a matrix) is kept.
pub fn unit_gates(
    params: &[(String, Shape)],
    share_off: f64,
    gate_bias: bool,
    seed: u64,
    task: TaskId,
) -> Vec<Vec<f32>> {
    let output = output_layer(params);
    let mut rng = Rng::stream(seed, "xdg", task.index() as u64);
    let mut off_units: Vec<(&str, Vec<bool>)> = Vec::new();
    for (p, (name, shape)) in params.iter().enumerate() {
        let layer = layer_of(name);
        let gated = !output.contains(&p) && shape.rank() >= 2;
        if !gated || off_units.iter().any(|(l, _)| *l == layer) {
            continue;
        }
        let units = shape.dims()[0];
        let count = ((share_off * units as f64).floor() as usize).min(units);
        // A partial Fisher–Yates shuffle: the first `count` of a random permutation.
        let mut order: Vec<usize> = (0..units).collect();
        for i in 0..count {
            let j = i + rng.below(units - i);
            order.swap(i, j);
        }
        let mut off = vec![false; units];
        for &u in &order[..count] {
            off[u] = true;
        }
        off_units.push((layer, off));
    }
    params
        .iter()
        .map(|(name, shape)| {
            let n = shape.elem_count();
            match off_units.iter().find(|(l, _)| *l == layer_of(name)) {
                Some((_, off))
                    if shape.dims().first() == Some(&off.len())
                        && (gate_bias || shape.rank() >= 2) =>
                {
                    let row = n / off.len().max(1);
                    off.iter()
                        .flat_map(|&o| std::iter::repeat_n(if o { -1.0 } else { 1.0 }, row))
                        .collect()
                }
                _ => vec![1.0; n],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mlp() -> Vec<(String, Shape)> {
        vec![
            ("fc1.weight".into(), Shape::from((10, 4))),
            ("fc1.bias".into(), Shape::from(10)),
            ("fc2.weight".into(), Shape::from((3, 10))),
            ("fc2.bias".into(), Shape::from(3)),
        ]
    }

    #[test]
    fn hidden_units_are_off_whole_rows_and_the_output_layer_is_kept() {
        let g = unit_gates(&mlp(), 0.8, true, 7, TaskId(2));
        let off: Vec<usize> = (0..10).filter(|&u| g[1][u] < 0.0).collect();
        assert_eq!(off.len(), 8);
        for u in 0..10 {
            let row = &g[0][u * 4..u * 4 + 4];
            assert!(
                row.iter().all(|&v| v == g[1][u]),
                "row {u} is one unit's gate"
            );
        }
        assert!(g[2].iter().chain(&g[3]).all(|&v| v == 1.0));
        assert_eq!(output_layer(&mlp()), vec![2, 3]);
    }

    /// van de Ven & Tolias's XdG multiplies `x·Wᵀ` and adds the bias after: an off unit keeps
    /// its bias. The same units are off as when the bias is gated.
    #[test]
    fn the_bias_can_stay_on_with_the_same_units_off() {
        let gated = unit_gates(&mlp(), 0.6, true, 3, TaskId(1));
        let kept = unit_gates(&mlp(), 0.6, false, 3, TaskId(1));
        assert_eq!(gated[0], kept[0]);
        assert_eq!(gated[1].iter().filter(|&&v| v < 0.0).count(), 6);
        assert!(kept[1].iter().all(|&v| v == 1.0));
        assert_eq!(gated[2..], kept[2..]);
    }

    #[test]
    fn the_draw_is_fixed_per_seed_and_task_and_differs_between_tasks() {
        assert_eq!(
            unit_gates(&mlp(), 0.5, true, 1, TaskId(0)),
            unit_gates(&mlp(), 0.5, true, 1, TaskId(0))
        );
        assert_ne!(
            unit_gates(&mlp(), 0.5, true, 1, TaskId(0))[1],
            unit_gates(&mlp(), 0.5, true, 1, TaskId(1))[1]
        );
        assert_ne!(
            unit_gates(&mlp(), 0.5, true, 1, TaskId(0))[1],
            unit_gates(&mlp(), 0.5, true, 2, TaskId(0))[1]
        );
    }
}
