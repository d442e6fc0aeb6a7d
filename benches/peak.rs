//! The hardware's limit and where a W2 training step spends its time (issue 28 item 1).
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo bench --bench peak            # peak + profile, markdown tables
//! RAYON_NUM_THREADS=1 cargo bench --bench peak -- --quick # shorter (CI-sized) run
//! ```
//!
//! 1. Sustained single-thread f32 FMA throughput on each SIMD path this CPU has (AVX-512F,
//!    AVX2 + FMA, the portable baseline), and one thread's memory bandwidth (read, triad).
//! 2. A per-op profile of the W2 training step: LeNet-5 on 3×32×32 images, batch 32, gated
//!    (W ⊙ σ(M)), SGD with momentum as `tasks/bench-w2.toml`, through the public `Learner`
//!    API with the engine's profile hooks on: per op and phase the time per step, the
//!    GFLOP/s of the GEMMs and their share of the AVX2 (or AVX-512) peak.
//! 3. The same profile for the permuted-MNIST protocol's step (`tasks/permuted-mnist-vdv.toml`:
//!    MLP 1024-1000-1000-100, batch 128, Adam), whose time is mostly dense products.
//!
//! The batch is random (fixed seed): the step's cost does not depend on the pixel values.

use candle_core::{Device, Tensor};
use gatekit::kernel::peak::{self, Isa};
use gatekit::kernel::profile;
use gatekit::model::ModelSpec;
use gatekit::params::TaskId;
use gatekit::rng::Rng;
use gatekit::task::{Batch, Objective};
use gatekit::train::{Learner, StepSettings, Strategy, TaskSet};
use std::path::Path;
use std::time::Instant;

/// A step to profile: its model file, optimizer settings and batch shape.
struct Workload {
    title: &'static str,
    model: &'static str,
    optimizer: &'static str,
    batch: [usize; 4],
}

/// W2 (`tasks/bench-w2.toml`) and the permuted-MNIST protocol's step
/// (`tasks/permuted-mnist-vdv.toml`: MLP 1024-1000-1000-100, Adam, batch 128, gatekit's
/// default mask recipe).
const WORKLOADS: [Workload; 2] = [
    Workload {
        title: "W2 step, LeNet-5, batch 32",
        model: "lenet5",
        optimizer: "optimizer = \"momentum\"\nlr = 0.01\nmomentum = 0.9\nmask_recipe = \"paper\"\n",
        batch: [32, 3, 32, 32],
    },
    Workload {
        title: "Permuted-MNIST protocol step, MLP 1024-1000-1000-100, batch 128",
        model: "mlp-1000x2-100",
        optimizer: "optimizer = \"adam\"\nlr = 0.0001\n",
        batch: [128, 1, 32, 32],
    },
];

fn learner(strategy: Strategy, w: &Workload) -> Learner {
    let text = format!(
        "[run]\nmodel = \"{}\"\nengine = \"fast\"\n{}\
         [[task]]\nname = \"a\"\nkind = \"linear\"\n[[task]]\nname = \"b\"\nkind = \"linear\"\n",
        w.model, w.optimizer
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("models/{}.toml", w.model));
    let set = TaskSet::parse_with(&text, Path::new("bench.toml"), &|_| ModelSpec::load(&path))
        .expect("task set");
    let names = vec!["a".to_string(), "b".to_string()];
    Learner::new(strategy, &set.run, &set.model, &names, &Device::Cpu).expect("learner")
}

fn batch(dims: [usize; 4]) -> Batch {
    let mut rng = Rng::new(1);
    let n: usize = dims.iter().product();
    let x: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    let y: Vec<u32> = (0..dims[0]).map(|_| rng.below(10) as u32).collect();
    Batch {
        x: Tensor::from_vec(x, &dims[..], &Device::Cpu).expect("x"),
        y: Tensor::from_vec(y, dims[0], &Device::Cpu).expect("y"),
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (secs, steps) = if quick { (0.05, 50) } else { (0.5, 600) };
    let threads = rayon::current_num_threads();
    println!("## Peak (one thread)\n");
    println!("| path | GFLOP/s |\n|---|---:|");
    let mut peak_flops = None;
    for isa in [Isa::Avx512, Isa::Avx2, Isa::Portable] {
        match peak::fma_gflops(isa, secs, 3) {
            Some(g) => {
                println!("| {} | {g:.1} |", isa.name());
                peak_flops.get_or_insert(g);
            }
            None => println!("| {} | not on this CPU |", isa.name()),
        }
    }
    let (read, triad) = peak::bandwidth_gbs(if quick { 32 << 20 } else { 256 << 20 }, 3);
    println!("\nmemory bandwidth, one thread: read {read:.1} GB/s, triad {triad:.1} GB/s\n");
    let peak_flops = peak_flops.expect("the portable path always runs");

    let at = StepSettings {
        gate_scale: 1.0,
        w_lr_factor: 1.0,
        mask_lr_factor: 1.0,
    };
    for (w, strategy) in WORKLOADS
        .iter()
        .flat_map(|w| [(w, Strategy::Gated), (w, Strategy::Shared)])
    {
        let b = batch(w.batch);
        let mut l = learner(strategy, w);
        let steps = if w.batch[0] > 32 { steps / 8 } else { steps };
        let mut task = 0;
        let mut step = |l: &mut Learner| {
            task = 1 - task;
            l.train_step(TaskId(task), &b, Objective::Classification, at)
                .expect("step");
        };
        for _ in 0..steps / 5 {
            step(&mut l);
        }
        let t = Instant::now();
        for _ in 0..steps {
            step(&mut l);
        }
        let plain = t.elapsed().as_secs_f64() / steps as f64;
        profile::enable(true);
        profile::take();
        let t = Instant::now();
        for _ in 0..steps {
            step(&mut l);
        }
        let profiled = t.elapsed().as_secs_f64() / steps as f64;
        profile::enable(false);
        let rows = profile::take();
        let flops: f64 = rows.iter().map(|r| r.flops).sum::<f64>() / steps as f64;
        println!(
            "## {}, {strategy}, {threads} thread(s)\n\n\
             step {:.0} µs ({:.0} steps/s; {:.0} µs with the profile hooks on), \
             {:.1} MFLOP of GEMM per step = {:.1} GFLOP/s = {:.0} % of the one-thread peak \
             ({peak_flops:.1} GFLOP/s)\n",
            w.title,
            plain * 1e6,
            1.0 / plain,
            profiled * 1e6,
            flops * 1e-6,
            flops / plain * 1e-9,
            100.0 * flops / plain * 1e-9 / peak_flops,
        );
        println!(
            "| op | phase | µs/step | share | GFLOP/s | % of peak |\n|---|---|---:|---:|---:|---:|"
        );
        let total: f64 = rows.iter().map(|r| r.seconds).sum();
        for r in &rows {
            let us = r.seconds / steps as f64 * 1e6;
            let op = if r.op == profile::STEP {
                "step".to_string()
            } else {
                format!("{} {}", r.op, r.kind)
            };
            let (g, pct) = if r.flops > 0.0 {
                let g = r.flops / r.seconds * 1e-9;
                (
                    format!("{g:.1}"),
                    format!("{:.0} %", 100.0 * g / peak_flops),
                )
            } else {
                ("".into(), "".into())
            };
            println!(
                "| {op} | {} | {us:.1} | {:.1} % | {g} | {pct} |",
                r.phase.name(),
                100.0 * r.seconds / total
            );
        }
        println!();
    }
}
