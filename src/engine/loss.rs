//! Losses with their gradients in one pass: mean squared error (candle-nn's `mse`, the mean
//! over every output) and cross-entropy on logits (the mean over the batch).

use super::EngineError;

/// Targets of a batch.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Targets<'a> {
    /// `[n, outputs]` values.
    Values(&'a [f32]),
    /// `[n]` class labels.
    Labels(&'a [u32]),
}

/// The loss of `out` (`[n, outputs]`) and its gradient written to `dout`. A label outside
/// `0..outputs` is an error naming it.
pub(crate) fn loss_and_grad(
    out: &[f32],
    targets: Targets,
    outputs: usize,
    dout: &mut [f32],
) -> Result<f64, EngineError> {
    match targets {
        Targets::Values(y) => {
            check_values(y, out)?;
            let scale = 2.0 / out.len().max(1) as f32;
            let mut sum = 0.0f64;
            for ((d, &o), &t) in dout.iter_mut().zip(out).zip(y) {
                let e = o - t;
                sum += (e * e) as f64;
                *d = scale * e;
            }
            Ok(sum / out.len().max(1) as f64)
        }
        Targets::Labels(labels) => {
            let n = labels.len();
            if n * outputs != out.len() {
                return Err(EngineError::LabelCount {
                    labels: n,
                    logits: out.len(),
                });
            }
            let inv_n = 1.0 / n.max(1) as f32;
            let mut sum = 0.0f64;
            for ((row, drow), &label) in out
                .chunks_exact(outputs)
                .zip(dout.chunks_exact_mut(outputs))
                .zip(labels)
            {
                let label = label as usize;
                if label >= outputs {
                    return Err(EngineError::LabelRange {
                        label,
                        classes: outputs,
                    });
                }
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut z = 0.0f32;
                for (d, &v) in drow.iter_mut().zip(row) {
                    let e = (v - max).exp();
                    *d = e;
                    z += e;
                }
                sum += (z.ln() + max - row[label]) as f64;
                let inv_z = 1.0 / z;
                for d in drow.iter_mut() {
                    *d *= inv_z * inv_n;
                }
                drow[label] -= inv_n;
            }
            Ok(sum / n.max(1) as f64)
        }
    }
}

/// Regression targets must match the outputs one for one.
fn check_values(y: &[f32], out: &[f32]) -> Result<(), EngineError> {
    if y.len() == out.len() {
        Ok(())
    } else {
        Err(EngineError::TargetCount {
            targets: y.len(),
            outputs: out.len(),
        })
    }
}

/// Sums over a batch for evaluation, so pieces can be added up: the summed per-example loss
/// (squared error averaged over outputs, or cross-entropy) and the summed per-example metric
/// (the same squared error, or 1 for a correct argmax). Accumulated in f64. A label outside
/// `0..outputs` is an error naming it.
pub(crate) fn score(
    out: &[f32],
    targets: Targets,
    outputs: usize,
) -> Result<(f64, f64), EngineError> {
    let outputs = outputs.max(1);
    match targets {
        Targets::Values(y) => {
            check_values(y, out)?;
            let mut se = 0.0f64;
            for (&o, &t) in out.iter().zip(y) {
                let e = f64::from(o - t);
                se += e * e;
            }
            let per_example = se / outputs as f64;
            Ok((per_example, per_example))
        }
        Targets::Labels(labels) => {
            if labels.len() * outputs != out.len() {
                return Err(EngineError::LabelCount {
                    labels: labels.len(),
                    logits: out.len(),
                });
            }
            let (mut loss, mut hits) = (0.0f64, 0.0f64);
            for (row, &label) in out.chunks_exact(outputs).zip(labels) {
                let label = label as usize;
                if label >= outputs {
                    return Err(EngineError::LabelRange {
                        label,
                        classes: outputs,
                    });
                }
                // First maximum wins, as candle's argmax.
                let (best, max) =
                    row.iter()
                        .enumerate()
                        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                            if v > bv { (i, v) } else { (bi, bv) }
                        });
                let z: f64 = row.iter().map(|&v| f64::from(v - max).exp()).sum();
                loss += z.ln() - f64::from(row[label] - max);
                hits += f64::from(u8::from(best == label));
            }
            Ok((loss, hits))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_of_uniform_logits_is_ln_classes() {
        let out = vec![0.5f32; 20];
        let mut d = vec![0.0; 20];
        let l = loss_and_grad(&out, Targets::Labels(&[3, 7]), 10, &mut d).unwrap();
        assert!((l - 10f64.ln()).abs() < 1e-6);
        assert!((d[3] - (0.1 - 1.0) / 2.0).abs() < 1e-6 && (d[0] - 0.05).abs() < 1e-6);
        assert!(loss_and_grad(&out, Targets::Labels(&[3, 10]), 10, &mut d).is_err());
    }

    #[test]
    fn mse_is_the_mean_over_all_outputs() {
        let mut d = vec![0.0; 4];
        let l =
            loss_and_grad(&[1.0, 2.0, 3.0, 4.0], Targets::Values(&[0.0; 4]), 2, &mut d).unwrap();
        assert!((l - 7.5).abs() < 1e-9);
        assert_eq!(d, vec![0.5, 1.0, 1.5, 2.0]);
    }

    #[test]
    fn evaluation_sums_match_the_training_losses() {
        // Two examples of 3 classes: the first predicted right, the second wrong.
        let out = [2.0f32, 0.5, -1.0, 0.1, 0.3, 0.2];
        let mut d = vec![0.0; 6];
        let mean = loss_and_grad(&out, Targets::Labels(&[0, 2]), 3, &mut d).unwrap();
        let (loss, hits) = score(&out, Targets::Labels(&[0, 2]), 3).unwrap();
        assert!((loss / 2.0 - mean).abs() < 1e-6, "{loss} {mean}");
        assert_eq!(hits, 1.0);
        // Regression: per example the squared error averaged over its outputs.
        let (loss, metric) = score(&[1.0, 2.0, 3.0, 4.0], Targets::Values(&[0.0; 4]), 2).unwrap();
        assert_eq!((loss, metric), (15.0, 15.0));
        assert!(score(&out, Targets::Labels(&[0, 3]), 3).is_err());
    }
}
