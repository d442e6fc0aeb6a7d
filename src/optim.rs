//! Optimizers with per-parameter state that can be saved: SGD, SGD with momentum (PyTorch's
//! form: `buf = μ·buf + g`, `p -= lr·buf`) and Adam.
//!
//! candle-nn's SGD has no momentum and its AdamW state cannot be saved, hence these. State is
//! kept per parameter name, so a parameter that gets no gradient in a step (another task's mask,
//! another task's model under `separate`) keeps its state untouched, and Adam counts steps per
//! parameter so its bias correction is right for masks picked rarely.
//!
//! Gradients from candle's `backward()` can still carry graph history; storing them in a
//! momentum buffer would chain every step's graph (measured: ~4 MB per step). Everything stored
//! here is detached first.

use candle_core::{Result, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Plain SGD.
    Sgd,
    /// SGD with (heavy-ball) momentum.
    Momentum,
    /// Adam (Kingma & Ba), ε = 1e-8.
    Adam,
}

/// How a learning rate changes over training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// The same rate throughout.
    #[default]
    Constant,
    /// Cosine decay from the rate to 0 over the run (`CosineAnnealingLR` with `T_max` = steps).
    Cosine,
}

impl Schedule {
    /// Multiplier of the base rate for the step after `step` of `total` steps, ramped up
    /// linearly over the first `warmup` steps.
    pub fn factor(self, step: usize, total: usize, warmup: usize) -> f64 {
        let ramp = if step < warmup {
            (step + 1) as f64 / (warmup + 1) as f64
        } else {
            1.0
        };
        ramp * match self {
            Schedule::Constant => 1.0,
            Schedule::Cosine => {
                0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total.max(1) as f64).cos())
            }
        }
    }
}

/// An optimizer's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OptimizerConfig {
    /// Update rule.
    pub kind: OptimizerKind,
    /// Learning rate.
    pub lr: f64,
    /// Momentum μ, or Adam's β₁.
    pub momentum: f64,
    /// Adam's β₂.
    pub beta2: f64,
}

/// One parameter's state as plain values: first moment, second moment, update count.
pub(crate) type SlotValues = (Vec<f32>, Vec<f32>, u64);

#[derive(Debug, Clone)]
struct ParamState {
    first: Option<Tensor>,
    second: Option<Tensor>,
    steps: u64,
}

/// An optimizer over named parameters.
#[derive(Debug, Clone)]
pub struct Optimizer {
    config: OptimizerConfig,
    state: BTreeMap<String, ParamState>,
}

const EPS: f64 = 1e-8;

impl Optimizer {
    /// A fresh optimizer.
    pub fn new(config: OptimizerConfig) -> Self {
        Optimizer {
            config,
            state: BTreeMap::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> OptimizerConfig {
        self.config
    }

    /// Updates `var` (called `name`) with gradient `grad`, at `lr_factor` × the base rate.
    pub fn step(&mut self, name: &str, var: &Var, grad: &Tensor, lr_factor: f64) -> Result<()> {
        let g = grad.detach();
        let mut c = self.config;
        c.lr *= lr_factor;
        let st = self.state.entry(name.to_string()).or_insert(ParamState {
            first: None,
            second: None,
            steps: 0,
        });
        st.steps += 1;
        let p = var.as_tensor().detach();
        let update = match c.kind {
            OptimizerKind::Sgd => (g * c.lr)?,
            OptimizerKind::Momentum => {
                let buf = match &st.first {
                    Some(b) => ((b * c.momentum)? + &g)?,
                    None => g,
                };
                let u = (&buf * c.lr)?;
                st.first = Some(buf.detach());
                u
            }
            OptimizerKind::Adam => {
                let b1 = c.momentum;
                let m = match &st.first {
                    Some(m) => ((m * b1)? + (&g * (1.0 - b1))?)?,
                    None => (&g * (1.0 - b1))?,
                };
                let v = match &st.second {
                    Some(v) => ((v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?,
                    None => (g.sqr()? * (1.0 - c.beta2))?,
                };
                let t = st.steps as i32;
                let m_hat = (&m / (1.0 - b1.powi(t)))?;
                let v_hat = (&v / (1.0 - c.beta2.powi(t)))?;
                let u = ((m_hat / (v_hat.sqrt()? + EPS)?)? * c.lr)?;
                st.first = Some(m.detach());
                st.second = Some(v.detach());
                u
            }
        };
        var.set(&(p - update)?)
    }

    /// One parameter's state as plain `f32` values: first moment (momentum buffer), second
    /// moment and update count; `None` when the parameter has not been updated yet.
    pub(crate) fn slot_values(&self, name: &str) -> Result<Option<SlotValues>> {
        let Some(st) = self.state.get(name) else {
            return Ok(None);
        };
        let values = |t: &Option<Tensor>| -> Result<Vec<f32>> {
            match t {
                Some(t) => t
                    .flatten_all()?
                    .to_dtype(candle_core::DType::F32)?
                    .to_vec1(),
                None => Ok(Vec::new()),
            }
        };
        Ok(Some((values(&st.first)?, values(&st.second)?, st.steps)))
    }

    /// The state as named tensors under `prefix` (`{prefix}{param}.first`, `.second`, `.steps`).
    pub fn state_tensors(
        &self,
        prefix: &str,
        device: &candle_core::Device,
    ) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (name, st) in &self.state {
            if let Some(t) = &st.first {
                out.push((format!("{prefix}{name}.first"), t.clone()));
            }
            if let Some(t) = &st.second {
                out.push((format!("{prefix}{name}.second"), t.clone()));
            }
            out.push((
                format!("{prefix}{name}.steps"),
                Tensor::new(&[st.steps as i64], device)?,
            ));
        }
        Ok(out)
    }

    /// Restores the state written by [`Optimizer::state_tensors`] with the same prefix.
    pub fn load_state(&mut self, prefix: &str, tensors: &HashMap<String, Tensor>) -> Result<()> {
        self.state.clear();
        for (key, t) in tensors {
            let Some(rest) = key.strip_prefix(prefix) else {
                continue;
            };
            let Some(name) = rest.strip_suffix(".steps") else {
                continue;
            };
            let steps = t
                .flatten_all()?
                .to_vec1::<i64>()?
                .first()
                .copied()
                .unwrap_or(0);
            let steps = u64::try_from(steps)
                .map_err(|_| candle_core::Error::msg(format!("{key}: negative step count")))?;
            self.state.insert(
                name.to_string(),
                ParamState {
                    first: tensors.get(&format!("{prefix}{name}.first")).cloned(),
                    second: tensors.get(&format!("{prefix}{name}.second")).cloned(),
                    steps,
                },
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn run(kind: OptimizerKind, steps: usize) -> Result<f64> {
        // minimise (p - 3)²
        let p = Var::new(&[0.0f64], &Device::Cpu)?;
        let mut opt = Optimizer::new(OptimizerConfig {
            kind,
            lr: 0.1,
            momentum: 0.9,
            beta2: 0.999,
        });
        for _ in 0..steps {
            let loss = (p.as_tensor() - 3.0)?.sqr()?.sum_all()?;
            let g = loss.backward()?;
            opt.step("p", &p, g.get(&p).unwrap(), 1.0)?;
        }
        Ok(p.as_tensor().to_vec1::<f64>()?[0])
    }

    #[test]
    fn all_kinds_converge_on_a_quadratic() -> Result<()> {
        assert!((run(OptimizerKind::Sgd, 100)? - 3.0).abs() < 1e-6);
        assert!((run(OptimizerKind::Momentum, 300)? - 3.0).abs() < 1e-4);
        assert!((run(OptimizerKind::Adam, 500)? - 3.0).abs() < 1e-2);
        Ok(())
    }

    #[test]
    fn first_adam_step_moves_by_lr() -> Result<()> {
        // Adam's first bias-corrected step is lr · sign(g).
        let p = Var::new(&[1.0f64, -1.0], &Device::Cpu)?;
        let mut opt = Optimizer::new(OptimizerConfig {
            kind: OptimizerKind::Adam,
            lr: 0.1,
            momentum: 0.9,
            beta2: 0.999,
        });
        let g = Tensor::new(&[0.5f64, -2.0], &Device::Cpu)?;
        opt.step("p", &p, &g, 1.0)?;
        let v = p.as_tensor().to_vec1::<f64>()?;
        assert!(
            (v[0] - 0.9).abs() < 1e-6 && (v[1] + 0.9).abs() < 1e-6,
            "{v:?}"
        );
        Ok(())
    }

    #[test]
    fn momentum_matches_pytorch_form() -> Result<()> {
        let p = Var::new(&[0.0f64], &Device::Cpu)?;
        let mut opt = Optimizer::new(OptimizerConfig {
            kind: OptimizerKind::Momentum,
            lr: 1.0,
            momentum: 0.5,
            beta2: 0.999,
        });
        let g = Tensor::new(&[1.0f64], &Device::Cpu)?;
        opt.step("p", &p, &g, 1.0)?; // buf = 1, p = -1
        opt.step("p", &p, &g, 1.0)?; // buf = 1.5, p = -2.5
        assert_eq!(p.as_tensor().to_vec1::<f64>()?, vec![-2.5]);
        Ok(())
    }
}
