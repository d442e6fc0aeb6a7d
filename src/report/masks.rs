//! A run's binarized masks `1[M > 0]`, read straight from the committed checkpoint (keys
//! `gated/{param}.mask.{task}`), so a report needs neither the dataset nor a rebuilt trainer.

use crate::error::Result;
use crate::learn::Strategy;
use crate::params::ParamKey;
use crate::run::CheckpointFile;
use safetensors::{Dtype, SafeTensors};

/// One gated parameter's binarized mask for every task.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskLayer {
    /// Parameter name, e.g. `conv1.weight`.
    pub name: String,
    /// The parameter's shape, e.g. `[6, 3, 5, 5]`.
    pub shape: Vec<usize>,
    /// Per task (in [`BinaryMasks::tasks`] order), `M > 0` for every entry in row-major order.
    pub on: Vec<Vec<bool>>,
}

impl MaskLayer {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the parameter has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Share of task `t`'s entries that are on.
    pub fn on_share(&self, t: usize) -> f64 {
        let on = self.on[t].iter().filter(|&&b| b).count();
        on as f64 / self.len().max(1) as f64
    }
}

/// The binarized masks of a run's gated model.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryMasks {
    /// Tasks that have masks, in task-set order.
    pub tasks: Vec<String>,
    /// Gated parameters in network order.
    pub layers: Vec<MaskLayer>,
}

impl BinaryMasks {
    /// Reads the masks of `tasks` × `params` from a run's checkpoint. `None` when the run has
    /// no gated model (only shared/separate); tasks whose masks were never created (never
    /// sampled) are left out.
    pub fn read(
        file: &CheckpointFile,
        tasks: &[String],
        params: &[String],
    ) -> Result<Option<Self>> {
        let corrupt = |message: String| file.corrupt(message);
        let st = SafeTensors::deserialize(file.bytes())
            .map_err(|e| file.unreadable("unreadable safetensors", e))?;
        let key = |p: &str, t: &str| {
            ParamKey::Mask { param: p, task: t }.in_strategy(Strategy::Gated.as_str())
        };
        let present: Vec<&String> = tasks
            .iter()
            .filter(|t| params.iter().all(|p| st.tensor(&key(p, t)).is_ok()))
            .collect();
        if present.is_empty() || params.is_empty() {
            return Ok(None);
        }
        let mut layers = Vec::with_capacity(params.len());
        for p in params {
            let mut shape = Vec::new();
            let mut on = Vec::with_capacity(present.len());
            for t in &present {
                let k = key(p, t);
                let view = st
                    .tensor(&k)
                    .map_err(|e| file.unreadable(format!("tensor `{k}`"), e))?;
                if shape.is_empty() {
                    shape = view.shape().to_vec();
                } else if view.shape() != shape.as_slice() {
                    return Err(corrupt(format!(
                        "{k}: shape {:?} differs from the other tasks' {shape:?}",
                        view.shape()
                    )));
                }
                on.push(positive(view.dtype(), view.data()).ok_or_else(|| {
                    corrupt(format!(
                        "{k}: masks must be F32 or F64, got {:?}",
                        view.dtype()
                    ))
                })?);
            }
            layers.push(MaskLayer {
                name: p.clone(),
                shape,
                on,
            });
        }
        Ok(Some(BinaryMasks {
            tasks: present.into_iter().cloned().collect(),
            layers,
        }))
    }

    /// Share of identical mask bits between every pair of tasks over the given layers (all when
    /// `layers` is empty): entry `[a][b]`, 1 on the diagonal.
    pub fn similarity(&self, layers: &[usize]) -> Vec<Vec<f64>> {
        let picked: Vec<&MaskLayer> = self.pick(layers);
        let n: usize = picked.iter().map(|l| l.len()).sum();
        let t = self.tasks.len();
        let same = |a: usize, b: usize| -> f64 {
            let n_same: usize = picked
                .iter()
                .map(|l| l.on[a].iter().zip(&l.on[b]).filter(|(x, y)| x == y).count())
                .sum();
            n_same as f64 / n.max(1) as f64
        };
        (0..t)
            .map(|a| {
                (0..t)
                    .map(|b| if a == b { 1.0 } else { same(a, b) })
                    .collect()
            })
            .collect()
    }

    /// Share of each task's entries that are on, over the given layers (all when empty).
    pub fn on_shares(&self, layers: &[usize]) -> Vec<f64> {
        let picked = self.pick(layers);
        let n: usize = picked.iter().map(|l| l.len()).sum();
        (0..self.tasks.len())
            .map(|t| {
                let on: usize = picked
                    .iter()
                    .map(|l| l.on[t].iter().filter(|&&b| b).count())
                    .sum();
                on as f64 / n.max(1) as f64
            })
            .collect()
    }

    /// The share of identical bits that independent masks with the same on-shares would have,
    /// per pair of tasks: `p_a p_b + (1 - p_a)(1 - p_b)` (1 on the diagonal). Similarity above
    /// it means two tasks keep the *same* weights, not just as many; below it, they split the
    /// weights between them.
    pub fn chance(&self, layers: &[usize]) -> Vec<Vec<f64>> {
        let p = self.on_shares(layers);
        (0..p.len())
            .map(|a| {
                (0..p.len())
                    .map(|b| {
                        if a == b {
                            1.0
                        } else {
                            p[a] * p[b] + (1.0 - p[a]) * (1.0 - p[b])
                        }
                    })
                    .collect()
            })
            .collect()
    }

    fn pick(&self, layers: &[usize]) -> Vec<&MaskLayer> {
        if layers.is_empty() {
            self.layers.iter().collect()
        } else {
            layers.iter().filter_map(|&i| self.layers.get(i)).collect()
        }
    }
}

/// `x > 0` for every little-endian float in `data`; `None` for other dtypes.
fn positive(dtype: Dtype, data: &[u8]) -> Option<Vec<bool>> {
    floats(dtype, data).map(|v| v.into_iter().map(|x| x > 0.0).collect())
}

/// The little-endian F32 or F64 values of a checkpoint tensor's bytes, as f64 (exact for
/// both); `None` for other dtypes. The one decoder of masks for the report's readers.
pub(crate) fn floats(dtype: Dtype, data: &[u8]) -> Option<Vec<f64>> {
    match dtype {
        Dtype::F32 => Some(
            data.chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        ),
        Dtype::F64 => Some(
            data.chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    f64::from_le_bytes(b)
                })
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masks() -> BinaryMasks {
        BinaryMasks {
            tasks: vec!["a".into(), "b".into(), "c".into()],
            layers: vec![MaskLayer {
                name: "w".into(),
                shape: vec![4],
                on: vec![
                    vec![true, true, false, false],
                    vec![true, true, false, true],
                    vec![false, false, true, true],
                ],
            }],
        }
    }

    #[test]
    fn floats_decode_f32_and_f64_little_endian() {
        let f32s: Vec<u8> = [1.5f32, -0.0, -2.25]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(floats(Dtype::F32, &f32s), Some(vec![1.5, -0.0, -2.25]));
        let f64s: Vec<u8> = [0.1f64, -3.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(floats(Dtype::F64, &f64s), Some(vec![0.1, -3.0]));
        assert_eq!(floats(Dtype::U8, &[1, 2]), None);
        // Zero and negative zero are off; only x > 0 is on.
        assert_eq!(positive(Dtype::F32, &f32s), Some(vec![true, false, false]));
    }

    #[test]
    fn similarity_counts_identical_bits() {
        let s = masks().similarity(&[]);
        assert_eq!(s[0][0], 1.0);
        assert_eq!(s[0][1], 0.75);
        assert_eq!(s[1][0], 0.75);
        assert_eq!(s[0][2], 0.0);
        assert_eq!(s[1][2], 0.25);
    }

    #[test]
    fn chance_level_uses_on_shares() {
        let m = masks();
        assert_eq!(m.on_shares(&[]), vec![0.5, 0.75, 0.5]);
        let c = m.chance(&[]);
        // 0.5·0.75 + 0.5·0.25 = 0.5; 0.5·0.5 + 0.5·0.5 = 0.5.
        assert_eq!((c[0][1], c[0][2], c[2][1], c[1][1]), (0.5, 0.5, 0.5, 1.0));
    }
}
