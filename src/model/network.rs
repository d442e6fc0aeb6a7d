//! A network built from a [`ModelSpec`]: the layers with their shared parameters, and a forward
//! pass that takes an optional task gate.

use super::spec::ModelSpec;
use crate::gate::TaskGate;
use crate::layers::{Layer, LayerState, StateSpec};
use crate::rng::Rng;
use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use serde::{Deserialize, Serialize};

/// How the shared weights start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WeightInit {
    /// Kaiming normal (fan-in, gain √2), zero bias. Under PyTorch's default init a gated LeNet-5
    /// stays at chance (peer measurement), so this is the default.
    #[default]
    He,
    /// PyTorch's `nn.Linear`/`nn.Conv2d` default: U(±1/√fan_in) for weight and bias (the
    /// kaiming-uniform a = √5 rule reduces to that bound).
    Torch,
    /// All zeros: for convex models (one linear layer), where it lets every task's mask see the
    /// same-signed shared weight before the masks move; useless for deep nets (no symmetry
    /// breaking).
    Zeros,
    /// Signed Kaiming constant: every weight is ±√(2/fan_in) with a random sign, biases 0 —
    /// the initialisation supermask papers (Ramanujan et al. 2020, SupSup) found best for
    /// masks on a frozen random network (`w_policy = "frozen"`).
    #[serde(rename = "signed-constant")]
    SignedConstant,
}

/// The layers of a model and their parameters.
#[derive(Debug, Clone)]
pub struct Network {
    spec: ModelSpec,
    /// Per layer, the position of its weight in `params` (its bias follows it).
    param_index: Vec<Option<usize>>,
    params: Vec<(String, Var)>,
    /// Per layer, the range of its tensors in [`Network::state_specs`].
    state_range: Vec<std::ops::Range<usize>>,
    state: Vec<(String, StateSpec)>,
}

/// The per-task state of a whole network ([`Network::state_specs`]) as a forward pass uses it.
#[derive(Debug)]
pub enum NetState<'a> {
    /// Evaluation with a task's state.
    Eval(&'a [Tensor]),
    /// Training: stateful layers replace their tensors with updated values.
    Train(&'a mut [Tensor]),
    /// None at hand: refused by a model with stateful layers.
    Missing,
}

/// One linear layer's view in [`Network::forward_linear_taps`].
#[derive(Debug, Clone)]
pub struct LinearTap {
    /// Index of the layer's weight in [`Network::params`]; the bias is the next one.
    pub weight: usize,
    /// The layer's input, `[batch, in]`.
    pub input: Tensor,
    /// A zero variable `[batch, out]` added to the layer's output: its gradient is the
    /// gradient at the output (δ).
    pub probe: Var,
}

impl Network {
    /// Builds the network with fresh weights drawn from `rng`.
    pub fn new(
        spec: &ModelSpec,
        init: WeightInit,
        rng: &mut Rng,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        Self::build(spec, |layer, w_shape, fan_in| {
            let out = w_shape.dims()[0];
            let (w, b): (Vec<f64>, Vec<f64>) = match (layer.constant_init(), init) {
                (Some((w, b)), _) => (vec![w; w_shape.elem_count()], vec![b; out]),
                (None, WeightInit::He) => {
                    let std = (2.0 / fan_in as f64).sqrt();
                    (
                        (0..w_shape.elem_count())
                            .map(|_| std * rng.normal())
                            .collect(),
                        vec![0.0; out],
                    )
                }
                (None, WeightInit::Torch) => {
                    let bound = 1.0 / (fan_in as f64).sqrt();
                    (
                        (0..w_shape.elem_count())
                            .map(|_| rng.uniform_in(-bound, bound))
                            .collect(),
                        (0..out).map(|_| rng.uniform_in(-bound, bound)).collect(),
                    )
                }
                (None, WeightInit::Zeros) => (vec![0.0; w_shape.elem_count()], vec![0.0; out]),
                (None, WeightInit::SignedConstant) => {
                    let c = (2.0 / fan_in as f64).sqrt();
                    (
                        (0..w_shape.elem_count())
                            .map(|_| if rng.below(2) == 0 { -c } else { c })
                            .collect(),
                        vec![0.0; out],
                    )
                }
            };
            let w = Var::from_tensor(&Tensor::from_vec(w, w_shape, device)?.to_dtype(dtype)?)?;
            let b = Var::from_tensor(&Tensor::from_vec(b, out, device)?.to_dtype(dtype)?)?;
            Ok((w, b))
        })
    }

    /// The network of `spec` whose parameters are `params`, in the order of
    /// [`Network::params`] (weight, bias, weight, …): a view of weights kept elsewhere (the
    /// learner's parameter store), sharing their storage.
    pub fn from_params(spec: &ModelSpec, params: Vec<Var>) -> Result<Self> {
        let count = params.len();
        let mut given = params.into_iter();
        let net = Self::build(spec, |_, w_shape, _| {
            let (Some(w), Some(b)) = (given.next(), given.next()) else {
                candle_core::bail!("model `{}`: {count} parameters are too few", spec.name);
            };
            if w.shape() != &w_shape || b.dims() != [w_shape.dims()[0]] {
                candle_core::bail!(
                    "model `{}`: parameters {:?} and {:?} where {w_shape:?} is expected",
                    spec.name,
                    w.dims(),
                    b.dims()
                );
            }
            Ok((w, b))
        })?;
        if given.next().is_some() {
            candle_core::bail!("model `{}`: {count} parameters are too many", spec.name);
        }
        Ok(net)
    }

    /// The network's layers, with each layer's weight and bias from `make(layer, weight shape,
    /// fan-in)`.
    fn build(
        spec: &ModelSpec,
        mut make: impl FnMut(&dyn Layer, Shape, usize) -> Result<(Var, Var)>,
    ) -> Result<Self> {
        let steps = spec.walk().map_err(candle_core::Error::wrap)?;
        let mut param_index = Vec::with_capacity(spec.layers.len());
        let mut params: Vec<(String, Var)> = Vec::new();
        let mut state_range = Vec::with_capacity(spec.layers.len());
        let mut state = Vec::new();
        for step in &steps {
            let layer = step.layer.layer();
            let from = state.len();
            state.extend(step.state());
            state_range.push(from..state.len());
            let Some((w_shape, fan_in)) = layer.weight_shape(&step.input) else {
                param_index.push(None);
                continue;
            };
            param_index.push(Some(params.len()));
            let (w, b) = make(layer, Shape::from(w_shape), fan_in)?;
            params.push((format!("{}.weight", step.label), w));
            params.push((format!("{}.bias", step.label), b));
        }
        Ok(Network {
            spec: spec.clone(),
            param_index,
            params,
            state_range,
            state,
        })
    }

    /// The architecture.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The shared parameters, named `{layer}.weight` and `{layer}.bias`, in layer order.
    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// Names and shapes of the parameters, for building a mask bank.
    pub fn param_shapes(&self) -> Vec<(String, Shape)> {
        self.params
            .iter()
            .map(|(n, v)| (n.clone(), v.shape().clone()))
            .collect()
    }

    /// Number of scalar parameters.
    pub fn param_count(&self) -> usize {
        self.params.iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// The per-task state tensors of the layers (`{layer}.{name}`, e.g. `bn1.running_mean`),
    /// in layer order; empty for a model without stateful layers.
    pub fn state_specs(&self) -> &[(String, StateSpec)] {
        &self.state
    }

    /// The state every task starts with.
    pub fn initial_state(&self, dtype: DType, device: &Device) -> Result<Vec<Tensor>> {
        self.state
            .iter()
            .map(|(_, s)| Tensor::full(s.init, s.shape.as_slice(), device)?.to_dtype(dtype))
            .collect()
    }

    /// A task's state as its ONNX graph reads it ([`crate::layers::Layer::onnx_state`]).
    pub fn onnx_state(&self, state: &[Tensor]) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(state.len());
        for (spec, range) in self.spec.layers.iter().zip(&self.state_range) {
            if range.is_empty() {
                continue;
            }
            let values = spec.layer().onnx_state(state[range.clone()].to_vec())?;
            out.extend(
                self.state[range.clone()]
                    .iter()
                    .map(|(n, _)| n.clone())
                    .zip(values),
            );
        }
        Ok(out)
    }

    /// Forward pass on a batch `[batch, ..input]`; plain when `gate` is `None`. For a model
    /// with stateful layers, see [`Network::forward_with_state`].
    pub fn forward(&self, x: &Tensor, gate: Option<&TaskGate>) -> Result<Tensor> {
        self.forward_with_state(x, gate, NetState::Missing)
    }

    /// Forward pass with a task's state ([`Network::state_specs`]).
    pub fn forward_with_state(
        &self,
        x: &Tensor,
        gate: Option<&TaskGate>,
        mut state: NetState<'_>,
    ) -> Result<Tensor> {
        let mut x = x.clone();
        for ((spec, index), range) in (self.spec.layers.iter())
            .zip(&self.param_index)
            .zip(&self.state_range)
        {
            let params = match index {
                Some(i) => vec![self.effective(*i, gate)?, self.effective(i + 1, gate)?],
                None => Vec::new(),
            };
            let layer_state = match &mut state {
                NetState::Eval(s) if s.len() >= range.end => LayerState::Eval(&s[range.clone()]),
                NetState::Train(s) if s.len() >= range.end => {
                    LayerState::Train(&mut s[range.clone()])
                }
                _ => LayerState::Missing,
            };
            x = spec.layer().forward(&x, &params, layer_state)?;
        }
        Ok(x)
    }

    /// A plain forward pass that also returns a [`LinearTap`] per linear layer: its weight's
    /// index, its input, and a zero variable on its output whose gradient is the output's.
    /// In a network whose only parametrised layers are linear, example i's gradient of a loss
    /// summed over the batch is `δᵢ ⊗ aᵢ` for each weight (δ the gradient at the layer's
    /// output, a its input), so sums over examples of squared per-example gradients (the EWC
    /// Fisher) take one backward pass and one matrix product per layer. `None` when a
    /// parametrised layer is not linear (a convolution shares its weight across positions) or
    /// a layer keeps state (batch norm).
    pub fn forward_linear_taps(&self, x: &Tensor) -> Result<Option<(Tensor, Vec<LinearTap>)>> {
        let linear_only = (self.spec.layers.iter())
            .zip(&self.param_index)
            .all(|(spec, index)| index.is_none() || spec.layer().kind() == "linear");
        if !linear_only || !self.state.is_empty() {
            return Ok(None);
        }
        let mut taps = Vec::new();
        let mut x = x.clone();
        for (spec, index) in self.spec.layers.iter().zip(&self.param_index) {
            let params = match index {
                Some(i) => vec![self.effective(*i, None)?, self.effective(i + 1, None)?],
                None => Vec::new(),
            };
            let mut y = spec.layer().forward(&x, &params, LayerState::Missing)?;
            if let Some(i) = index {
                // candle's backward keeps the gradients of variables only; a zero variable
                // added to the output carries the output's gradient without changing it.
                let probe = Var::zeros(y.shape(), y.dtype(), y.device())?;
                y = (y + probe.as_tensor())?;
                taps.push(LinearTap {
                    weight: *i,
                    input: x,
                    probe,
                });
            }
            x = y;
        }
        Ok(Some((x, taps)))
    }

    /// Parameter `index` as a layer sees it: `W` itself, or `W ⊙ g(M_t)` under a task's gate.
    fn effective(&self, index: usize, gate: Option<&TaskGate>) -> Result<Tensor> {
        let w = self.params[index].1.as_tensor();
        match gate {
            Some(g) => g.apply(index, w),
            None => Ok(w.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pooling `forward` runs (`crate::kernel::max_pool2d`, not a test-only copy) routes
    /// the whole gradient to each window's maximum (candle 0.11.1's own `max_pool2d` scales it
    /// by 1/4 instead), and a 3x3 input floors to one 2x2 window.
    #[test]
    fn max_pool_routes_gradient_to_the_maximum() -> Result<()> {
        let x = Var::new(
            &[[[[1f32, 2., 9.], [5., 4., 9.], [9., 9., 9.]]]],
            &Device::Cpu,
        )?;
        let y = crate::kernel::max_pool2d(x.as_tensor(), 2)?;
        assert_eq!(y.dims(), &[1, 1, 1, 1]);
        assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, vec![5.0]);
        let g = (y * 3.0)?.sum_all()?.backward()?;
        assert_eq!(
            g.get(&x).unwrap().flatten_all()?.to_vec1::<f32>()?,
            vec![0., 0., 0., 3., 0., 0., 0., 0., 0.]
        );
        Ok(())
    }

    #[test]
    fn lenet_forward_shape_and_param_count() -> Result<()> {
        let spec = crate::model::lenet5();
        let net = Network::new(
            &spec,
            WeightInit::He,
            &mut Rng::new(0),
            DType::F32,
            &Device::Cpu,
        )?;
        assert_eq!(net.param_count(), 62_006); // the peer's LeNet-5
        let y = net.forward(
            &Tensor::zeros((2, 3, 32, 32), DType::F32, &Device::Cpu)?,
            None,
        )?;
        assert_eq!(y.dims(), &[2, 10]);
        Ok(())
    }
}
