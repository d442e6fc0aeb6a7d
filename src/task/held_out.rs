//! The validation split (`val_fraction`): a seeded share of a task's training examples held
//! out of training, for any task kind, by wrapping the built task.
//!
//! Two views of one task share its data: the training view ([`held_out`]'s first value)
//! trains on the rest and tests on the test split as before; the validation view (its second)
//! has the held-out examples as its `Test` split, so every measuring path (probes, full
//! evaluations) runs on it unchanged. Which examples are held out depends on the run's seed
//! and the task's position only, so a resumed run and `gtk eval` hold out the same ones.

use super::{Batch, Objective, Split, Task, TrueMask};
use crate::error::{Error, Result};
use candle_core::{DType, Device};
use std::sync::Arc;

/// The held-out positions of a training split of `n` examples: `round(n · fraction)` of them
/// (at least one), drawn without replacement by a seeded shuffle, in increasing order; the
/// training positions are the others, in increasing order.
pub fn split_positions(
    n: usize,
    fraction: f64,
    seed: u64,
    index: usize,
) -> (Vec<usize>, Vec<usize>) {
    let k = ((n as f64 * fraction).round() as usize).clamp(1, n.saturating_sub(1).max(1));
    let mut rng = crate::rng::Rng::stream(seed, "validation", index as u64);
    let mut order: Vec<usize> = (0..n).collect();
    // Fisher–Yates on the first k positions only.
    for i in 0..k.min(n) {
        let j = i + rng.below(n - i);
        order.swap(i, j);
    }
    let mut val: Vec<usize> = order[..k.min(n)].to_vec();
    val.sort_unstable();
    let mut held = vec![false; n];
    for &v in &val {
        held[v] = true;
    }
    let train = (0..n).filter(|&i| !held[i]).collect();
    (train, val)
}

struct Shared {
    inner: Box<dyn Task>,
    train: Vec<usize>,
    val: Vec<usize>,
}

/// One view of a task with a held-out share.
pub struct HeldOut {
    shared: Arc<Shared>,
    /// The validation view: `Test` is the held-out examples.
    validation: bool,
}

/// Wraps `task` (position `index` in its set) with `fraction` of its training examples held
/// out: the training view, whose [`Task::validation`] is the validation view. Refuses a split
/// that would leave no example on either side.
pub fn held_out(
    task: Box<dyn Task>,
    fraction: f64,
    seed: u64,
    index: usize,
) -> Result<Box<dyn Task>> {
    let n = task.len(Split::Train);
    let k = (n as f64 * fraction).round() as usize;
    if n < 2 || k == 0 || k >= n {
        return Err(Error::config(
            "task set",
            "run.val_fraction",
            format!(
                "= {fraction} holds out {k} of task `{}`'s {n} training examples; it must leave at least one on each side",
                task.name()
            ),
        ));
    }
    let (train, val) = split_positions(n, fraction, seed, index);
    Ok(Box::new(HeldOut {
        shared: Arc::new(Shared {
            inner: task,
            train,
            val,
        }),
        validation: false,
    }))
}

impl HeldOut {
    /// The inner split and positions that `split` of this view reads.
    fn source(&self, split: Split) -> (Split, Option<&[usize]>) {
        match (split, self.validation) {
            (Split::Train, _) => (Split::Train, Some(&self.shared.train)),
            (Split::Test, true) => (Split::Train, Some(&self.shared.val)),
            (Split::Test, false) => (Split::Test, None),
        }
    }
}

impl Task for HeldOut {
    fn name(&self) -> &str {
        self.shared.inner.name()
    }
    fn input_shape(&self) -> &[usize] {
        self.shared.inner.input_shape()
    }
    fn outputs(&self) -> usize {
        self.shared.inner.outputs()
    }
    fn objective(&self) -> Objective {
        self.shared.inner.objective()
    }
    fn classes(&self) -> Option<Vec<u32>> {
        self.shared.inner.classes()
    }
    fn len(&self, split: Split) -> usize {
        match self.source(split) {
            (_, Some(positions)) => positions.len(),
            (s, None) => self.shared.inner.len(s),
        }
    }
    fn batch(
        &self,
        split: Split,
        indices: &[usize],
        device: &Device,
        dtype: DType,
    ) -> Result<Batch> {
        match self.source(split) {
            (s, Some(positions)) => {
                let mapped = indices
                    .iter()
                    .map(|&i| {
                        positions.get(i).copied().ok_or_else(|| {
                            Error::Shape(format!(
                                "task `{}`: example {i} of a split of {}",
                                self.name(),
                                positions.len()
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                self.shared.inner.batch(s, &mapped, device, dtype)
            }
            (s, None) => self.shared.inner.batch(s, indices, device, dtype),
        }
    }
    fn true_mask(&self) -> Option<TrueMask> {
        self.shared.inner.true_mask()
    }
    fn pinned_params(&self) -> Option<toml::Table> {
        self.shared.inner.pinned_params()
    }
    fn data_fingerprints(&self) -> Result<Vec<crate::data::DataFingerprint>> {
        self.shared.inner.data_fingerprints()
    }
    fn validation(&self) -> Option<Box<dyn Task>> {
        (!self.validation).then(|| {
            Box::new(HeldOut {
                shared: self.shared.clone(),
                validation: true,
            }) as Box<dyn Task>
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mnist_sizes_disjoint_and_seeded() {
        let (train, val) = split_positions(60_000, 1.0 / 12.0, 0, 0);
        assert_eq!((train.len(), val.len()), (55_000, 5_000));
        let mut all: Vec<usize> = train.iter().chain(&val).copied().collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..60_000).collect::<Vec<_>>(),
            "disjoint and complete"
        );
        assert_eq!(split_positions(60_000, 1.0 / 12.0, 0, 0).1, val, "seeded");
        assert_ne!(split_positions(60_000, 1.0 / 12.0, 1, 0).1, val, "by seed");
        assert_ne!(split_positions(60_000, 1.0 / 12.0, 0, 1).1, val, "by task");
    }
}
