//! Forward + backward of LeNet-5's two convolutions and its first 2x2 max-pool at batch 32, f32:
//! gatekit's CPU kernels (`gatekit::kernel`) against candle's own ops and autograd.
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo bench --bench kernels
//! ```
//!
//! Each step is `y = op(x)` then `y.backward()` (candle seeds the output gradient with ones, a
//! contiguous tensor like the one a ReLU passes back), so only the op and candle's gradient
//! bookkeeping are timed. conv1 reads the input image, a plain tensor (no gradient wanted); conv2
//! and the pool read a variable, as they do inside the network. `conv1 x-grad` is conv1 with a
//! variable input, to show what skipping the image gradient saves.

use candle_core::{Device, Result, Tensor, Var};
use criterion::{Criterion, criterion_group, criterion_main};
use gatekit::kernel;
use gatekit::rng::Rng;
use std::hint::black_box;
use std::time::Duration;

const BATCH: usize = 32;

fn randn(rng: &mut Rng, dims: &[usize], std: f64) -> Tensor {
    let v: Vec<f32> = (0..dims.iter().product())
        .map(|_| (std * rng.normal()) as f32)
        .collect();
    Tensor::from_vec(v, dims, &Device::Cpu).expect("tensor")
}

/// One 5x5 convolution's inputs: `x` plain or a variable, kernel and bias variables.
struct Conv {
    x: Tensor,
    w: Var,
    b: Var,
}

impl Conv {
    fn new(rng: &mut Rng, (c, hw, m): (usize, usize, usize), x_var: bool) -> Self {
        let x = randn(rng, &[BATCH, c, hw, hw], 1.0);
        let x = if x_var {
            Var::from_tensor(&x).expect("var").as_tensor().clone()
        } else {
            x
        };
        let w = Var::from_tensor(&randn(rng, &[m, c, 5, 5], 0.1)).expect("var");
        let b = Var::from_tensor(&randn(rng, &[m], 0.1)).expect("var");
        Conv { x, w, b }
    }

    /// Forward and backward, through gatekit's kernel or candle's conv2d + bias add.
    fn step(&self, ours: bool) -> Result<()> {
        let y = if ours {
            kernel::conv2d(&self.x, &self.w, &self.b, 1, 0)?
        } else {
            let m = self.b.dim(0)?;
            self.x
                .conv2d(&self.w, 0, 1, 1, 1)?
                .broadcast_add(&self.b.reshape((1, m, 1, 1))?)?
        };
        black_box(y.backward()?);
        Ok(())
    }
}

fn kernel_pool(x: &Tensor) -> Result<Tensor> {
    kernel::max_pool2d(x, 2)
}

/// The reshape + max reduction the network used before the kernel.
fn reshape_max(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    x.reshape((n, c, h / 2, 2, w / 2, 2))?.max(5)?.max(3)
}

fn convs(c: &mut Criterion) {
    let mut rng = Rng::new(0);
    let layers = [
        ("conv1", Conv::new(&mut rng, (3, 32, 6), false)),
        ("conv1 x-grad", Conv::new(&mut rng, (3, 32, 6), true)),
        ("conv2", Conv::new(&mut rng, (6, 14, 16), true)),
    ];
    for (name, layer) in &layers {
        let mut group = c.benchmark_group(*name);
        group.bench_function("gatekit", |b| b.iter(|| layer.step(true).expect("step")));
        group.bench_function("candle", |b| b.iter(|| layer.step(false).expect("step")));
        group.finish();
    }
}

fn pool(c: &mut Criterion) {
    let mut rng = Rng::new(1);
    let x = Var::from_tensor(&randn(&mut rng, &[BATCH, 6, 28, 28], 1.0)).expect("var");
    let step = |pool: fn(&Tensor) -> Result<Tensor>| -> Result<()> {
        black_box(pool(&x)?.backward()?);
        Ok(())
    };
    let mut group = c.benchmark_group("pool");
    group.bench_function("gatekit", |b| b.iter(|| step(kernel_pool).expect("step")));
    group.bench_function("reshape-max", |b| {
        b.iter(|| step(reshape_max).expect("step"))
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = convs, pool
}
criterion_main!(benches);
