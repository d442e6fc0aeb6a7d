//! One training step (forward, backward, update) of the issue-5 workloads' models, through the
//! public `Learner` API: the fast engine against the reference (candle autograd over
//! `Network`), gated and shared, batch 32, f32.
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo bench --bench train_step
//! ```
//!
//! The batch is built once (random images / inputs), so only the step is timed; the whole
//! workloads, with data and the PyTorch peer, are timed by `bench/compare.py`.

use candle_core::{Device, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use gatekit::model::ModelSpec;
use gatekit::params::TaskId;
use gatekit::rng::Rng;
use gatekit::task::{Batch, Objective};
use gatekit::train::TaskSet;
use gatekit::train::{Learner, StepSettings, Strategy};
use std::path::Path;
use std::time::Duration;

fn learner(model: &str, run: &str, engine: &str, strategy: Strategy) -> Learner {
    let text = format!(
        "[run]\nmodel = \"{model}\"\nengine = \"{engine}\"\n{run}\n\
         [[task]]\nname = \"a\"\nkind = \"linear\"\n[[task]]\nname = \"b\"\nkind = \"linear\"\n"
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("models/{model}.toml"));
    let set = TaskSet::parse_with(&text, Path::new("bench.toml"), &|_| ModelSpec::load(&path))
        .expect("task set");
    let names = vec!["a".to_string(), "b".to_string()];
    Learner::new(strategy, &set.run, &set.model, &names, &Device::Cpu).expect("learner")
}

fn batch(dims: &[usize], objective: Objective) -> Batch {
    let mut rng = Rng::new(1);
    let n: usize = dims.iter().product();
    let x: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    let x = Tensor::from_vec(x, dims, &Device::Cpu).expect("x");
    let y = match objective {
        Objective::Classification => {
            let l: Vec<u32> = (0..dims[0]).map(|_| rng.below(10) as u32).collect();
            Tensor::from_vec(l, dims[0], &Device::Cpu).expect("y")
        }
        Objective::Regression => {
            let v: Vec<f32> = (0..dims[0]).map(|_| rng.normal() as f32).collect();
            Tensor::from_vec(v, (dims[0], 1), &Device::Cpu).expect("y")
        }
    };
    Batch { x, y }
}

fn bench(c: &mut Criterion) {
    let at = StepSettings {
        gate_scale: 1.0,
        w_lr_factor: 1.0,
        mask_lr_factor: 1.0,
    };
    let cases = [
        (
            "lenet5",
            "optimizer = \"momentum\"\nlr = 0.01\nmomentum = 0.9\nmask_recipe = \"paper\"",
            vec![32, 3, 32, 32],
            Objective::Classification,
        ),
        (
            "mlp",
            "optimizer = \"sgd\"\nlr = 0.01\nmask_recipe = \"paper\"",
            vec![32, 8],
            Objective::Regression,
        ),
    ];
    for (model, run, dims, objective) in cases {
        let b = batch(&dims, objective);
        for strategy in [Strategy::Gated, Strategy::Shared] {
            for engine in ["fast", "reference"] {
                let mut l = learner(model, run, engine, strategy);
                let mut task = 0;
                c.bench_function(&format!("{model} {strategy} {engine}"), |bench| {
                    bench.iter(|| {
                        task = 1 - task;
                        l.train_step(TaskId(task), &b, objective, at).expect("step")
                    })
                });
            }
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
