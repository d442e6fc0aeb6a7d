//! The numbers behind the paper's Figures 2 and 3 (issue 25), so their claims can be tested
//! over seeds instead of judged by eye.
//!
//! - **Weight clustering** (Figure 2: "the histogram becomes more spiky and concentrated over
//!   time"): per strategy and histogram step, the share of the effective weights (gated
//!   `W ⊙ σ(M_t)` pooled over tasks, `W` for shared and separate) that falls in the
//!   [`TOP_BINS`] fullest of [`BINS`] equal bins over that step's own range. It is 1 when
//!   every weight sits on at most [`TOP_BINS`] values, [`TOP_BINS`]/[`BINS`] for a uniform
//!   spread, and does not change when all weights are scaled (the range scales with them), so
//!   steps and strategies compare. Read from the `"effective"` histogram records of
//!   `metrics.jsonl`.
//! - **Mask agreement between tasks** (Figure 3: "for most tasks, the distribution is nearly
//!   identical"): per gated weight parameter, over every pair of tasks, the soft agreement
//!   `1 − mean |σ(M_t) − σ(M_u)|` and the binary agreement (share of entries with
//!   `1[M_t > 0] = 1[M_u > 0]`), from the masks of the run's committed checkpoint.
//!
//! Both only read the run folder.

use crate::error::Result;
use crate::learn::Strategy;
use crate::params::ParamKey;
use crate::report::RunData;
use crate::report::figures::rebin;
use crate::report::masks::floats;
use crate::run::{CheckpointFile, Record, RunSnapshot};
use safetensors::SafeTensors;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Bins over each step's range for the clustering statistic.
pub const BINS: usize = 50;
/// How many of the fullest bins count as the modes.
pub const TOP_BINS: usize = 5;

/// Clustering of the effective weights at one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Clustering {
    /// Steps completed.
    pub step: usize,
    /// The whole network: each weight parameter's share weighted by its number of entries.
    pub value: f64,
    /// Per weight parameter.
    pub params: BTreeMap<String, f64>,
}

/// Agreement of one gated parameter's masks between tasks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaskAgreement {
    /// Parameter, e.g. `fc2.weight`.
    pub param: String,
    /// Mean over task pairs of `1 − mean |σ(M_t) − σ(M_u)|`.
    pub soft: f64,
    /// Mean over task pairs of the share of equal bits `1[M > 0]`.
    pub binary: f64,
    /// Smallest and largest soft agreement of a pair.
    pub soft_range: [f64; 2],
    /// Number of task pairs.
    pub pairs: usize,
}

/// The figure statistics of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FigureStatistics {
    /// Per strategy, per histogram step (ascending).
    pub clustering: BTreeMap<String, Vec<Clustering>>,
    /// Per gated weight parameter in network order; empty without a gated model.
    pub mask_agreement: Vec<MaskAgreement>,
}

/// Share of `counts` in its `top` fullest bins.
pub fn top_share(counts: &[f64], top: usize) -> f64 {
    let total: f64 = counts.iter().sum();
    if total <= 0.0 {
        return f64::NAN;
    }
    let mut sorted = counts.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    sorted.iter().take(top).sum::<f64>() / total
}

/// Weight clustering per strategy and step, from the run's effective-weight histograms.
pub fn clustering(run: &RunData) -> BTreeMap<String, Vec<Clustering>> {
    // (strategy, step, param) → the tasks' histograms (lo, hi, counts).
    type Hists<'a> = BTreeMap<(String, usize, String), Vec<(f64, f64, &'a [u32])>>;
    let mut hists: Hists = BTreeMap::new();
    for r in &run.records {
        if let Record::Histogram {
            step,
            strategy,
            param,
            of,
            lo,
            hi,
            counts,
            ..
        } = r
            && of == "effective"
            && param.ends_with(".weight")
        {
            hists
                .entry((strategy.clone(), *step, param.clone()))
                .or_default()
                .push((*lo, *hi, counts.as_slice()));
        }
    }
    // strategy → step → (Σ share × entries, Σ entries, share per parameter).
    type Acc = (f64, f64, BTreeMap<String, f64>);
    let mut out: BTreeMap<String, BTreeMap<usize, Acc>> = BTreeMap::new();
    for ((strategy, step, param), src) in hists {
        let lo = src.iter().map(|s| s.0).fold(f64::INFINITY, f64::min);
        let hi = src.iter().map(|s| s.1).fold(f64::NEG_INFINITY, f64::max);
        let n: f64 = src
            .iter()
            .map(|s| s.2.iter().map(|&c| f64::from(c)).sum::<f64>())
            .sum();
        let share = if lo.is_finite() && hi > lo {
            top_share(&rebin(&src, lo, hi, BINS), TOP_BINS)
        } else if n > 0.0 {
            // Every weight on one value.
            1.0
        } else {
            continue;
        };
        let e = out
            .entry(strategy)
            .or_default()
            .entry(step)
            .or_insert((0.0, 0.0, BTreeMap::new()));
        if share.is_finite() {
            e.0 += share * n;
            e.1 += n;
        }
        e.2.insert(param, share);
    }
    out.into_iter()
        .map(|(s, steps)| {
            let v = steps
                .into_iter()
                .map(|(step, (sum, n, params))| Clustering {
                    step,
                    value: if n > 0.0 { sum / n } else { f64::NAN },
                    params,
                })
                .collect();
            (s, v)
        })
        .collect()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Pairwise agreement of the gated masks per weight parameter, from the run's committed
/// checkpoint. Empty when the run has no gated model or fewer than two tasks with masks.
pub fn mask_agreement(dir: &Path, run: &RunData) -> Result<Vec<MaskAgreement>> {
    let snapshot = RunSnapshot::open(dir)?;
    let Some(file) = CheckpointFile::of(&snapshot) else {
        return Ok(Vec::new());
    };
    let st = SafeTensors::deserialize(file.bytes())
        .map_err(|e| file.unreadable("unreadable safetensors", e))?;
    let tasks = run.tasks();
    let mut out = Vec::new();
    for param in run.weight_params() {
        let mut masks: Vec<Vec<f64>> = Vec::new();
        for t in &tasks {
            let key = ParamKey::Mask {
                param: &param,
                task: t,
            }
            .in_strategy(Strategy::Gated.as_str());
            let Ok(view) = st.tensor(&key) else { continue };
            let m = floats(view.dtype(), view.data()).ok_or_else(|| {
                file.corrupt(format!(
                    "{key}: masks must be F32 or F64, got {:?}",
                    view.dtype()
                ))
            })?;
            if masks.first().is_some_and(|f| f.len() != m.len()) {
                return Err(file.corrupt(format!("{key}: size differs from the other tasks'")));
            }
            masks.push(m);
        }
        if masks.len() < 2 || masks[0].is_empty() {
            continue;
        }
        let (mut soft, mut binary, mut pairs) = (0.0, 0.0, 0usize);
        let mut range = [f64::INFINITY, f64::NEG_INFINITY];
        for a in 0..masks.len() {
            for b in a + 1..masks.len() {
                let n = masks[a].len() as f64;
                let (mut d, mut same) = (0.0, 0usize);
                for (x, y) in masks[a].iter().zip(&masks[b]) {
                    d += (sigmoid(*x) - sigmoid(*y)).abs();
                    same += usize::from((*x > 0.0) == (*y > 0.0));
                }
                let s = 1.0 - d / n;
                soft += s;
                binary += same as f64 / n;
                range = [range[0].min(s), range[1].max(s)];
                pairs += 1;
            }
        }
        out.push(MaskAgreement {
            param,
            soft: soft / pairs as f64,
            binary: binary / pairs as f64,
            soft_range: range,
            pairs,
        });
    }
    Ok(out)
}

/// Both statistics of a run folder (read only).
pub fn figure_statistics(dir: &Path) -> Result<FigureStatistics> {
    let run = RunData::open(dir)?;
    Ok(FigureStatistics {
        clustering: clustering(&run),
        mask_agreement: mask_agreement(dir, &run)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_share_is_one_on_spikes_and_top_over_bins_when_uniform() {
        let mut spiky = vec![0.0; BINS];
        spiky[3] = 10.0;
        spiky[40] = 30.0;
        assert_eq!(top_share(&spiky, TOP_BINS), 1.0);
        let uniform = vec![2.0; BINS];
        assert!((top_share(&uniform, TOP_BINS) - TOP_BINS as f64 / BINS as f64).abs() < 1e-12);
        assert!(top_share(&[0.0; 4], 2).is_nan());
    }
}
