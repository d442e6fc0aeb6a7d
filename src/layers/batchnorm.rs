//! `batchnorm1d` and `batchnorm2d`: batch normalization with per-task running statistics and a
//! gated affine transform, the per-task batch norm that mask-based continual learners use
//! (Piggyback, SupSup): a task's statistics are its own, so switching tasks switches them with
//! the masks.
//!
//! `y = γ ⊙ (x − μ) / √(σ² + ε) + β` per channel. Training normalizes with the batch's mean
//! and (biased) variance over the batch (and the pixels, 2-D) and moves the task's running
//! statistics towards them, `r ← (1 − momentum)·r + momentum·batch` with the unbiased
//! variance, as PyTorch does; evaluation normalizes with the running statistics. `γ` (the
//! layer's weight, starting at 1) and `β` (its bias, starting at 0) are shared and gated like
//! every other parameter.
//!
//! Input `[batch, c]` (1-D) or `[batch, c, h, w]` (2-D), output the same; weight and bias
//! `[c]`; state `running_mean` and `running_var`, `[c]` each, per task.

use super::{
    EngineKernel, EngineOp, EngineRefusal, KernelState, Layer, LayerState, OnnxIo, OnnxNode,
    StateSpec, image,
};
use crate::error::SpecError;
use candle_core::{D, Tensor};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

fn eps() -> f64 {
    1e-5
}

fn momentum() -> f64 {
    0.1
}

macro_rules! batchnorm {
    ($ty:ident, $kind:literal, $spatial:literal) => {
        #[doc = concat!("`[[layer]] type = \"", $kind, "\"`.")]
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $ty {
            /// Parameter name prefix; `bnN` by default.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub name: Option<String>,
            /// Added to the variance before the square root.
            #[serde(default = "eps")]
            pub eps: f64,
            /// Weight of a batch's statistics in the running ones.
            #[serde(default = "momentum")]
            pub momentum: f64,
        }

        impl $ty {
            fn norm(&self) -> Norm {
                Norm {
                    spatial: $spatial,
                    eps: self.eps,
                    momentum: self.momentum,
                }
            }
        }

        impl Layer for $ty {
            fn kind(&self) -> &'static str {
                $kind
            }

            fn naming(&self) -> Option<(&'static str, Option<&str>)> {
                Some(("bn", self.name.as_deref()))
            }

            fn output_shape(&self, at: &str, input: &[usize]) -> Result<Vec<usize>, SpecError> {
                self.norm().output_shape(at, input)
            }

            fn weight_shape(&self, input: &[usize]) -> Option<(Vec<usize>, usize)> {
                Some((vec![input[0]], 1))
            }

            fn constant_init(&self) -> Option<(f64, f64)> {
                Some((1.0, 0.0))
            }

            fn state(&self, input: &[usize]) -> Vec<StateSpec> {
                let c = input[0];
                vec![
                    StateSpec {
                        name: "running_mean",
                        shape: vec![c],
                        init: 0.0,
                    },
                    StateSpec {
                        name: "running_var",
                        shape: vec![c],
                        init: 1.0,
                    },
                ]
            }

            fn forward(
                &self,
                x: &Tensor,
                params: &[Tensor],
                state: LayerState<'_>,
            ) -> candle_core::Result<Tensor> {
                self.norm().forward(x, params, state)
            }

            fn engine_op(&self, input: &[usize]) -> Result<EngineOp, EngineRefusal> {
                let channels = input[0];
                let pixels = input[1..].iter().product();
                Ok(EngineOp::Kernel(Arc::new(NormKernel {
                    norm: self.norm(),
                    channels,
                    pixels,
                })))
            }

            fn onnx(&self, io: &OnnxIo<'_>) -> Vec<OnnxNode> {
                self.norm().onnx(io)
            }

            fn onnx_constants(&self, input: &[usize]) -> Vec<(&'static str, Vec<i64>)> {
                match $spatial {
                    true => vec![("shape", vec![input[0] as i64, 1, 1])],
                    false => Vec::new(),
                }
            }

            fn onnx_state(&self, state: Vec<Tensor>) -> candle_core::Result<Vec<Tensor>> {
                self.norm().onnx_state(state)
            }
        }
    };
}

batchnorm!(BatchNorm1d, "batchnorm1d", false);
batchnorm!(BatchNorm2d, "batchnorm2d", true);

/// What the two layer types share.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Norm {
    /// `[c, h, w]` inputs (2-D) rather than `[c]`.
    spatial: bool,
    eps: f64,
    momentum: f64,
}

impl Norm {
    fn output_shape(&self, at: &str, input: &[usize]) -> Result<Vec<usize>, SpecError> {
        if self.spatial {
            image(at, input)?;
        } else if input.len() != 1 {
            return Err(SpecError::NeedsFlat {
                at: at.to_string(),
                shape: input.to_vec(),
            });
        }
        let out_of_range = |field, value, valid| SpecError::OutOfRange {
            at: at.to_string(),
            field,
            value,
            valid,
        };
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(out_of_range(
                "eps",
                self.eps,
                "(0, ∞): a small positive number",
            ));
        }
        if !(self.momentum > 0.0 && self.momentum <= 1.0) {
            return Err(out_of_range("momentum", self.momentum, "(0, 1]"));
        }
        Ok(input.to_vec())
    }

    /// The reference forward: `x` as `[n, c, pixels]`, statistics over axes 0 and 2.
    fn forward(
        &self,
        x: &Tensor,
        params: &[Tensor],
        state: LayerState<'_>,
    ) -> candle_core::Result<Tensor> {
        let [gamma, beta] = params else {
            candle_core::bail!("batch norm takes a weight and a bias, got {}", params.len());
        };
        let dims = x.dims().to_vec();
        let (n, c) = (dims[0], dims[1]);
        let pixels: usize = dims[2..].iter().product();
        let x3 = x.reshape((n, c, pixels))?;
        let per_channel = |t: &Tensor| t.reshape((1, c, 1));
        let (mean, var) = match state {
            LayerState::Train(state) => {
                let count = (n * pixels) as f64;
                let mean = (x3.sum_keepdim(0)?.sum_keepdim(D::Minus1)? / count)?;
                let centred = x3.broadcast_sub(&mean)?;
                let var = (centred.sqr()?.sum_keepdim(0)?.sum_keepdim(D::Minus1)? / count)?;
                let unbiased = if count > 1.0 {
                    count / (count - 1.0)
                } else {
                    1.0
                };
                let m = self.momentum;
                let batch_mean = mean.detach().flatten_all()?;
                let batch_var = (var.detach().flatten_all()? * unbiased)?;
                state[0] = ((&state[0] * (1.0 - m))? + (batch_mean * m)?)?;
                state[1] = ((&state[1] * (1.0 - m))? + (batch_var * m)?)?;
                (mean, var)
            }
            LayerState::Eval([mean, var]) => (per_channel(mean)?, per_channel(var)?),
            LayerState::Eval(_) | LayerState::Missing => candle_core::bail!(
                "batch norm needs a task's running statistics, which this forward pass does not keep"
            ),
        };
        let xhat = x3
            .broadcast_sub(&mean)?
            .broadcast_div(&(var + self.eps)?.sqrt()?)?;
        xhat.broadcast_mul(&per_channel(gamma)?)?
            .broadcast_add(&per_channel(beta)?)?
            .reshape(dims)
    }

    /// Evaluation as Add and Mul nodes (every runtime has them): `((x + (−μ)) · 1/√(σ² + ε))
    /// · γ + β`, with `γ`, `β` reshaped to `[c, 1, 1]` for images.
    fn onnx(&self, io: &OnnxIo<'_>) -> Vec<OnnxNode> {
        let (gamma, beta) = io.weight_and_bias();
        let [neg_mean, inv_std] = &io.state[..] else {
            return Vec::new();
        };
        let node = |op: &'static str, part: &str, inputs: [&str; 2], output: String| OnnxNode {
            op,
            name: io.name(part),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            output,
            attrs: Vec::new(),
        };
        let (centred, scaled, stretched) =
            (io.name("centred"), io.name("normalized"), io.name("scaled"));
        let mut nodes = vec![
            node("Add", "centre", [io.input, neg_mean], centred.clone()),
            node("Mul", "normalize", [&centred, inv_std], scaled.clone()),
        ];
        let (gamma, beta) = if self.spatial {
            let shape = io.name("shape");
            let (g, b) = (io.name("gamma"), io.name("beta"));
            nodes.push(node("Reshape", "gamma", [gamma, &shape], g.clone()));
            nodes.push(node("Reshape", "beta", [beta, &shape], b.clone()));
            (g, b)
        } else {
            (gamma.to_string(), beta.to_string())
        };
        nodes.push(node("Mul", "scale", [&scaled, &gamma], stretched.clone()));
        nodes.push(node(
            "Add",
            "shift",
            [&stretched, &beta],
            io.output.to_string(),
        ));
        nodes
    }

    /// `[−μ, 1/√(σ² + ε)]`, shaped `[c, 1, 1]` for images.
    fn onnx_state(&self, state: Vec<Tensor>) -> candle_core::Result<Vec<Tensor>> {
        let [mean, var] = &state[..] else {
            candle_core::bail!("batch norm keeps 2 state tensors, got {}", state.len());
        };
        let c = mean.elem_count();
        let shape: &[usize] = if self.spatial { &[c, 1, 1] } else { &[c] };
        Ok(vec![
            mean.neg()?.reshape(shape)?,
            (var + self.eps)?.sqrt()?.recip()?.reshape(shape)?,
        ])
    }
}

/// The engine's kernel: buffers `[n, channels, pixels]`.
#[derive(Debug)]
struct NormKernel {
    norm: Norm,
    channels: usize,
    pixels: usize,
}

impl NormKernel {
    /// `y = γ·(x − mean)·inv + β` per channel; `xhat` (when given) gets `(x − mean)·inv`.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        x: &[f32],
        mean: &[f32],
        inv: &[f32],
        gamma: &[f32],
        beta: &[f32],
        y: &mut [f32],
        mut xhat: Option<&mut [f32]>,
    ) {
        let (c, p) = (self.channels, self.pixels);
        for (s, (xs, ys)) in x
            .chunks_exact(c * p)
            .zip(y.chunks_exact_mut(c * p))
            .enumerate()
        {
            for ch in 0..c {
                let (m, k, g, b) = (mean[ch], inv[ch], gamma[ch], beta[ch]);
                let range = ch * p..(ch + 1) * p;
                for (i, (&xv, yv)) in xs[range.clone()].iter().zip(&mut ys[range]).enumerate() {
                    let h = (xv - m) * k;
                    if let Some(xhat) = xhat.as_deref_mut() {
                        xhat[s * c * p + ch * p + i] = h;
                    }
                    *yv = g * h + b;
                }
            }
        }
    }
}

impl EngineKernel for NormKernel {
    fn out_len(&self) -> usize {
        self.channels * self.pixels
    }

    fn forward(
        &self,
        n: usize,
        x: &[f32],
        params: &[&[f32]],
        state: KernelState<'_>,
        y: &mut [f32],
        saved: &mut Vec<f32>,
    ) {
        let (c, p) = (self.channels, self.pixels);
        let (gamma, beta) = (params[0], params[1]);
        let eps = self.norm.eps as f32;
        match state {
            KernelState::Eval(state) => {
                let inv: Vec<f32> = state[1].iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
                self.apply(x, state[0], &inv, gamma, beta, y, None);
            }
            KernelState::Train(state) => {
                // Batch statistics in f64 sums over the samples and pixels of each channel.
                let count = (n * p) as f64;
                let mut sum = vec![0.0f64; c];
                for xs in x.chunks_exact(c * p) {
                    for (ch, s) in sum.iter_mut().enumerate() {
                        *s += xs[ch * p..(ch + 1) * p]
                            .iter()
                            .map(|&v| v as f64)
                            .sum::<f64>();
                    }
                }
                let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
                let mut sq = vec![0.0f64; c];
                for xs in x.chunks_exact(c * p) {
                    for (ch, s) in sq.iter_mut().enumerate() {
                        *s += xs[ch * p..(ch + 1) * p]
                            .iter()
                            .map(|&v| (v as f64 - mean[ch]).powi(2))
                            .sum::<f64>();
                    }
                }
                let var: Vec<f64> = sq.iter().map(|s| s / count).collect();
                let inv: Vec<f32> = var
                    .iter()
                    .map(|v| (1.0 / (v + self.norm.eps).sqrt()) as f32)
                    .collect();
                let mean32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
                saved.resize(n * c * p + c, 0.0);
                let (xhat, inv_saved) = saved.split_at_mut(n * c * p);
                inv_saved.copy_from_slice(&inv);
                self.apply(x, &mean32, &inv, gamma, beta, y, Some(xhat));
                let m = self.norm.momentum;
                let unbiased = if count > 1.0 {
                    count / (count - 1.0)
                } else {
                    1.0
                };
                for ch in 0..c {
                    let r_mean = &mut state[0][ch];
                    *r_mean = ((1.0 - m) * *r_mean as f64 + m * mean[ch]) as f32;
                    let r_var = &mut state[1][ch];
                    *r_var = ((1.0 - m) * *r_var as f64 + m * var[ch] * unbiased) as f32;
                }
            }
        }
    }

    fn backward(
        &self,
        n: usize,
        _x: &[f32],
        params: &[&[f32]],
        saved: &[f32],
        dy: &[f32],
        dparams: Option<(&mut [f32], &mut [f32])>,
        dx: Option<&mut [f32]>,
    ) {
        let (c, p) = (self.channels, self.pixels);
        let (xhat, inv) = saved.split_at(n * c * p);
        // dβ = Σ dy, dγ = Σ dy·x̂ per channel.
        let mut dbeta = vec![0.0f64; c];
        let mut dgamma = vec![0.0f64; c];
        for (ys, hs) in dy.chunks_exact(c * p).zip(xhat.chunks_exact(c * p)) {
            for ch in 0..c {
                let range = ch * p..(ch + 1) * p;
                for (&g, &h) in ys[range.clone()].iter().zip(&hs[range]) {
                    dbeta[ch] += g as f64;
                    dgamma[ch] += (g * h) as f64;
                }
            }
        }
        if let Some(dx) = dx {
            // dx = γ·inv/m · (m·dy − dβ − x̂·dγ), m = values per channel.
            let m = (n * p) as f64;
            let gamma = params[0];
            for ((ys, hs), xs) in dy
                .chunks_exact(c * p)
                .zip(xhat.chunks_exact(c * p))
                .zip(dx.chunks_exact_mut(c * p))
            {
                for ch in 0..c {
                    let k = gamma[ch] as f64 * inv[ch] as f64 / m;
                    let range = ch * p..(ch + 1) * p;
                    for ((&g, &h), d) in ys[range.clone()]
                        .iter()
                        .zip(&hs[range.clone()])
                        .zip(&mut xs[range])
                    {
                        *d = (k * (m * g as f64 - dbeta[ch] - h as f64 * dgamma[ch])) as f32;
                    }
                }
            }
        }
        if let Some((dw, db)) = dparams {
            for ch in 0..c {
                dw[ch] = dgamma[ch] as f32;
                db[ch] = dbeta[ch] as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::Rng::new(seed);
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    /// Bad settings and inputs are refused with the layer, the setting and what is valid.
    #[test]
    fn bad_settings_name_the_layer_and_the_valid_range() {
        let parse = |layer: &str| {
            let text = format!("name = \"m\"\ninput = [4]\n[[layer]]\n{layer}\n");
            let err = crate::model::ModelSpec::parse(&text, std::path::Path::new("m.toml"))
                .expect_err("refused");
            format!("{:#}", anyhow::Error::from(err))
        };
        let err = parse("type = \"batchnorm1d\"\nmomentum = 1.5");
        assert!(
            err.contains("layer 1 (batchnorm1d): `momentum` = 1.5 is outside (0, 1]"),
            "{err}"
        );
        let err = parse("type = \"batchnorm1d\"\neps = 0.0");
        assert!(err.contains("`eps` = 0 is outside (0, ∞)"), "{err}");
        let err = parse("type = \"batchnorm2d\"");
        assert!(
            err.contains("needs a [channels, height, width] input but gets [4]"),
            "{err}"
        );
    }

    /// The engine's kernel against the reference forward under candle's autograd, on a smooth
    /// loss `Σ y·r` (no kinks, so both must agree to float rounding): outputs, the gradients
    /// of the input, γ and β, the running statistics after a training pass, and evaluation
    /// with those statistics; for 1-D and 2-D inputs.
    #[test]
    fn kernel_matches_the_reference_forward_and_backward() -> candle_core::Result<()> {
        for (spatial, dims) in [(false, vec![5usize, 7]), (true, vec![4, 3, 5, 6])] {
            let norm = Norm {
                spatial,
                eps: 1e-5,
                momentum: 0.1,
            };
            let (n, c) = (dims[0], dims[1]);
            let len: usize = dims.iter().product();
            let pixels = len / (n * c);
            let dev = &Device::Cpu;
            // Inputs far from zero mean and unit variance, so normalizing does something.
            let x: Vec<f32> = random(len, 1).iter().map(|v| 3.0 * v + 2.0).collect();
            let gamma: Vec<f32> = random(c, 2).iter().map(|v| 1.0 + 0.5 * v).collect();
            let beta = random(c, 3);
            let r = random(len, 4);
            let mean0 = random(c, 5);
            let var0: Vec<f32> = random(c, 6).iter().map(|v| 1.0 + v.abs()).collect();

            // Reference.
            let xv = Var::from_tensor(&Tensor::from_slice(&x, dims.as_slice(), dev)?)?;
            let gv = Var::from_slice(&gamma, c, dev)?;
            let bv = Var::from_slice(&beta, c, dev)?;
            let mut state = vec![
                Tensor::from_slice(&mean0, c, dev)?,
                Tensor::from_slice(&var0, c, dev)?,
            ];
            let params = [gv.as_tensor().clone(), bv.as_tensor().clone()];
            let y = norm.forward(xv.as_tensor(), &params, LayerState::Train(&mut state))?;
            let rt = Tensor::from_slice(&r, dims.as_slice(), dev)?;
            let grads = (&y * &rt)?.sum_all()?.backward()?;
            let flat = |t: &Tensor| t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>();

            // Engine kernel.
            let kernel = NormKernel {
                norm,
                channels: c,
                pixels,
            };
            let mut kstate = vec![mean0.clone(), var0.clone()];
            let (mut ky, mut saved) = (vec![0.0f32; len], Vec::new());
            kernel.forward(
                n,
                &x,
                &[&gamma, &beta],
                KernelState::Train(&mut kstate),
                &mut ky,
                &mut saved,
            );
            let (mut dx, mut dg, mut db) = (vec![0.0f32; len], vec![0.0f32; c], vec![0.0f32; c]);
            kernel.backward(
                n,
                &x,
                &[&gamma, &beta],
                &saved,
                &r,
                Some((&mut dg, &mut db)),
                Some(&mut dx),
            );

            let close = |what: &str, a: &[f32], b: &[f32], tol: f32| {
                assert_eq!(a.len(), b.len(), "{what}");
                for (i, (p, q)) in a.iter().zip(b).enumerate() {
                    assert!(
                        (p - q).abs() <= tol * (1.0 + q.abs()),
                        "{what} (spatial {spatial}) element {i}: {p} vs {q}"
                    );
                }
            };
            close("output", &ky, &flat(&y)?, 1e-5);
            close("dx", &dx, &flat(grads.get(&xv).expect("dx"))?, 1e-4);
            close("dgamma", &dg, &flat(grads.get(&gv).expect("dgamma"))?, 1e-4);
            close("dbeta", &db, &flat(grads.get(&bv).expect("dbeta"))?, 1e-4);
            close("running mean", &kstate[0], &flat(&state[0])?, 1e-5);
            close("running var", &kstate[1], &flat(&state[1])?, 1e-5);
            // The running variance is the unbiased one: check one channel by hand.
            let m = (n * pixels) as f64;
            let x_ref = &x;
            let values: Vec<f64> = (0..n)
                .flat_map(|s| (0..pixels).map(move |p| x_ref[s * c * pixels + p] as f64))
                .collect();
            let mu = values.iter().sum::<f64>() / m;
            let var = values.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / (m - 1.0);
            let expected = 0.9 * var0[0] as f64 + 0.1 * var;
            assert!((kstate[1][0] as f64 - expected).abs() < 1e-4 * expected);

            // Evaluation with the updated statistics.
            let ey = norm.forward(xv.as_tensor(), &params, LayerState::Eval(&state))?;
            let mut ky = vec![0.0f32; len];
            let eval_state: Vec<&[f32]> = kstate.iter().map(Vec::as_slice).collect();
            kernel.forward(
                n,
                &x,
                &[&gamma, &beta],
                KernelState::Eval(&eval_state),
                &mut ky,
                &mut saved,
            );
            close("eval output", &ky, &flat(&ey)?, 1e-5);
            // No state, no forward.
            assert!(
                norm.forward(xv.as_tensor(), &params, LayerState::Missing)
                    .is_err()
            );
        }
        Ok(())
    }
}
