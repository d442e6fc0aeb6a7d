//! The stored masks as one mixture: `θ_p(α) = W_p ⊙ Σ_i α_i g_{i,p}`, with `g_{i,p}` task i's
//! gate values for parameter p (soft `g(M_i)` or binary `1[M_i > 0]`), and the exact gradient
//! of an objective with respect to α.
//!
//! The gradient comes from one ordinary backward pass through [`Network::forward`] on a scratch
//! copy of the network whose plain parameters hold `θ(α)`: that gives `∂L/∂θ_p`, and the chain
//! rule through the (linear in α) mixture is
//! `∂L/∂α_i = Σ_p ⟨∂L/∂θ_p ⊙ W_p, g_{i,p}⟩`, one matrix-vector product per parameter.
//!
//! A model with batch norm: the new task has no statistics of its own yet, so the mixture's
//! forward normalizes every batch with that batch's own statistics (training mode).
//!
//! # Shapes
//! - gates of parameter p stacked as `[T, n_p]` (T stored tasks, n_p entries)
//! - α: `T` weights (not constrained here; `pick` uses 1/|C| on candidates, `mix` a softmax)

use super::config::MixGates;
use crate::gate::GateMode;
use crate::model::{NetState, Network, WeightInit};
use crate::rng::Rng;
use crate::task::Objective;
use candle_core::{DType, Result, Tensor, Var};

/// What the gradient is of.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// Mean entropy of `softmax(output)` over the batch (no labels).
    Entropy,
    /// The objective's loss against these targets.
    Loss(Objective, &'a Tensor),
    /// Mean over the batch of `logsumexp` over all outputs, the first `used` held constant
    /// (SupSup's `supsup_g`): its gradient flows only through the unused outputs.
    UnusedLogsumexp {
        /// Outputs the labels use.
        used: usize,
    },
}

impl Target<'_> {
    /// The scalar objective of a model output.
    pub fn value(&self, out: &Tensor) -> Result<Tensor> {
        match self {
            Target::Entropy => {
                let logp = candle_nn::ops::log_softmax(out, 1)?;
                (logp.exp()? * &logp)?.sum(1)?.neg()?.mean_all()
            }
            Target::Loss(objective, y) => objective.loss(out, y),
            Target::UnusedLogsumexp { used } => {
                let width = out.dim(1)?;
                let used = (*used).min(width);
                let held = out.narrow(1, 0, used)?.detach();
                let all = if used < width {
                    Tensor::cat(&[&held, &out.narrow(1, used, width - used)?], 1)?
                } else {
                    held
                };
                // Shifted by the (constant) row maximum for stability.
                let top = all.detach().max_keepdim(1)?;
                let sum = all.broadcast_sub(&top)?.exp()?.sum_keepdim(1)?;
                (sum.log()? + top)?.mean_all()
            }
        }
    }
}

/// The stored tasks' gates and the shared weights, ready to mix.
pub struct Mixture {
    w: Vec<Tensor>,
    gates: Vec<Tensor>,
    scratch: Network,
    tasks: usize,
    /// Layer state to run batch norms in training mode on (empty without batch norm).
    state: Vec<Tensor>,
}

impl Mixture {
    /// Gates of the stored `masks` (per task, per parameter of `net`) under `mode`/`scale`.
    pub fn new(
        net: &Network,
        masks: &[&[Var]],
        mode: GateMode,
        scale: f64,
        gates: MixGates,
    ) -> Result<Self> {
        let params = net.params();
        let dtype = params[0].1.dtype();
        let device = params[0].1.device().clone();
        let mut stacked = Vec::with_capacity(params.len());
        for p in 0..params.len() {
            let rows = masks
                .iter()
                .map(|m| {
                    let m = m[p].as_tensor().detach();
                    let g = match gates {
                        MixGates::Soft => mode.gate_value(&m, scale)?,
                        MixGates::Binary => m.gt(0.0)?.to_dtype(dtype)?,
                    };
                    g.flatten_all()
                })
                .collect::<Result<Vec<_>>>()?;
            stacked.push(Tensor::stack(&rows, 0)?);
        }
        let scratch = Network::new(
            net.spec(),
            WeightInit::Zeros,
            &mut Rng::new(0),
            dtype,
            &device,
        )?;
        let state = scratch.initial_state(dtype, &device)?;
        Ok(Mixture {
            w: params.iter().map(|(_, v)| v.as_tensor().detach()).collect(),
            gates: stacked,
            scratch,
            tasks: masks.len(),
            state,
        })
    }

    /// T, the number of stored tasks.
    pub fn tasks(&self) -> usize {
        self.tasks
    }

    /// The mixed gate `Σ_i α_i g_{i,p}` of every parameter, in its shape.
    pub fn gate(&self, alpha: &[f64]) -> Result<Vec<Tensor>> {
        let a = self.alpha_row(alpha)?;
        self.gates
            .iter()
            .zip(&self.w)
            .map(|(g, w)| a.matmul(g)?.reshape(w.shape()))
            .collect()
    }

    fn alpha_row(&self, alpha: &[f64]) -> Result<Tensor> {
        let dtype = self.w[0].dtype();
        Tensor::from_vec(alpha.to_vec(), (1, alpha.len()), self.w[0].device())?.to_dtype(dtype)
    }

    /// Loads `θ(α)` into the scratch network.
    fn load(&self, alpha: &[f64]) -> Result<()> {
        for ((_, var), (w, g)) in self
            .scratch
            .params()
            .iter()
            .zip(self.w.iter().zip(self.gate(alpha)?))
        {
            var.set(&(w * g)?)?;
        }
        Ok(())
    }

    /// The mixed model's output on `x` (no graph kept).
    pub fn forward(&self, alpha: &[f64], x: &Tensor) -> Result<Tensor> {
        self.load(alpha)?;
        Ok(self.run(x)?.detach())
    }

    /// The scratch network's forward: batch norms (if any) on the batch's own statistics.
    fn run(&self, x: &Tensor) -> Result<Tensor> {
        if self.state.is_empty() {
            return self.scratch.forward(x, None);
        }
        let mut state = self.state.clone();
        self.scratch
            .forward_with_state(x, None, NetState::Train(&mut state))
    }

    /// The objective at α and its gradient `∂L/∂α`.
    pub fn grad(&self, alpha: &[f64], x: &Tensor, target: Target) -> Result<(f64, Vec<f64>)> {
        self.load(alpha)?;
        let out = self.run(x)?;
        let loss = target.value(&out)?;
        let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let grads = loss.backward()?;
        let mut d = vec![0.0; self.tasks];
        for ((_, var), (w, g)) in self
            .scratch
            .params()
            .iter()
            .zip(self.w.iter().zip(&self.gates))
        {
            let Some(dtheta) = grads.get(var) else {
                continue;
            };
            let u = (dtheta * w)?.flatten_all()?.unsqueeze(1)?;
            let part = g
                .matmul(&u)?
                .flatten_all()?
                .to_dtype(DType::F64)?
                .to_vec1::<f64>()?;
            for (di, pi) in d.iter_mut().zip(part) {
                *di += pi;
            }
        }
        Ok((value, d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelSpec;
    use candle_core::Device;
    use std::path::Path;

    /// The analytic α-gradient matches central finite differences of the same objective.
    #[test]
    fn alpha_gradient_matches_finite_differences() -> Result<()> {
        let spec = ModelSpec::parse(
            "name = \"m\"\ninput = [3]\n[[layer]]\ntype = \"linear\"\nout = 4\n[[layer]]\ntype = \"tanh\"\n[[layer]]\ntype = \"linear\"\nout = 2\n",
            Path::new("m.toml"),
        )
        .expect("model");
        let dev = Device::Cpu;
        let net = Network::new(&spec, WeightInit::He, &mut Rng::new(1), DType::F64, &dev)?;
        let mut rng = Rng::new(2);
        let masks: Vec<Vec<Var>> = (0..3)
            .map(|_| {
                net.params()
                    .iter()
                    .map(|(_, w)| {
                        let v: Vec<f64> = (0..w.elem_count()).map(|_| rng.normal()).collect();
                        Var::from_tensor(&Tensor::from_vec(v, w.shape(), &dev)?)
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        let refs: Vec<&[Var]> = masks.iter().map(|m| m.as_slice()).collect();
        let mix = Mixture::new(&net, &refs, GateMode::Sigmoid, 1.0, MixGates::Soft)?;
        let x = Tensor::new(&[[0.5f64, -1.0, 2.0], [1.5, 0.3, -0.7]], &dev)?;
        let alpha = [0.2, 0.5, 0.3];
        let (_, g) = mix.grad(&alpha, &x, Target::Entropy)?;
        for i in 0..3 {
            let h = 1e-6;
            let mut up = alpha;
            up[i] += h;
            let mut down = alpha;
            down[i] -= h;
            let f = |a: &[f64]| -> Result<f64> {
                Target::Entropy
                    .value(&mix.forward(a, &x)?)?
                    .to_scalar::<f64>()
            };
            let numeric = (f(&up)? - f(&down)?) / (2.0 * h);
            assert!((numeric - g[i]).abs() < 1e-6, "{i}: {numeric} vs {}", g[i]);
        }
        Ok(())
    }
}
