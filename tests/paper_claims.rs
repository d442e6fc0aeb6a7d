//! The core issue's claims, trained for real on the shipped task sets.

mod common;
use candle_core::Device;
use gatekit::TaskSet;
use gatekit::train::{Record, Strategy, Trainer, mean_test_metric, test_metrics};

struct Finished {
    records: Vec<Record>,
}

impl Finished {
    fn test_metric(&self, strategy: &str) -> Vec<f64> {
        test_metrics(&self.records, strategy).collect()
    }
    fn mean(&self, strategy: &str) -> f64 {
        mean_test_metric(&self.records, strategy)
    }
}

fn train(set: &str, seed: u64, strategies: &[Strategy]) -> Finished {
    let mut set = TaskSet::load(&common::repo(set)).expect("task set loads");
    set.run.seed = seed;
    let tmp = tempfile::tempdir().unwrap();
    let mut trainer =
        Trainer::create(set, strategies, &tmp.path().join("run"), None, &Device::Cpu).unwrap();
    trainer.train(None, &mut |_| {}).unwrap();
    Finished {
        records: trainer.evaluate().unwrap(),
    }
}

/// Paper: W → A and σ(M) → A_M on noise-free data. Here: test MSE < 1e-8 and the binarized
/// masks equal the generating masks on every identifiable entry, on 5 of 5 seeds.
#[test]
fn noise_free_linear_is_solved_exactly_on_five_seeds() {
    for seed in 0..5 {
        let run = train("tasks/linear.toml", seed, &[Strategy::Gated]);
        for mse in run.test_metric("gated") {
            assert!(mse < 1e-8, "seed {seed}: test MSE {mse:e}");
        }
        let recovered: Vec<f64> = run
            .records
            .iter()
            .filter_map(|r| {
                if let Record::Recovery { identifiable, .. } = r {
                    Some(*identifiable)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(
            recovered.len(),
            4,
            "seed {seed}: one recovery record per task"
        );
        assert!(
            recovered.iter().all(|&r| r == 1.0),
            "seed {seed}: recovered {recovered:?}"
        );
    }
}

/// Paper's Figure 1: with noise and few points per task, gated beats both baselines. Also: the
/// default gated recipe really switches weights off (≥ 5 % of every parameter's mask entries).
#[test]
fn noisy_linear_gated_beats_shared_and_separate_over_five_seeds() {
    let (mut gated, mut shared, mut separate) = (0.0, 0.0, 0.0);
    for seed in 0..5 {
        let run = train("tasks/linear-noise.toml", seed, &Strategy::ALL);
        gated += run.mean("gated") / 5.0;
        shared += run.mean("shared") / 5.0;
        separate += run.mean("separate") / 5.0;
        let mut off: std::collections::BTreeMap<String, (f64, usize)> = Default::default();
        for r in &run.records {
            if let Record::Mask { param, off: o, .. } = r {
                let e = off.entry(param.clone()).or_default();
                e.0 += o;
                e.1 += 1;
            }
        }
        for (param, (sum, n)) in off {
            assert!(
                sum / n as f64 >= 0.05,
                "seed {seed}: {param} has only {:.3} off",
                sum / n as f64
            );
        }
    }
    // Measured: gated 0.386, shared 1.23, separate 0.66 (noise floor 0.16).
    assert!(
        gated < shared && gated < separate,
        "gated {gated} shared {shared} separate {separate}"
    );
    assert!(gated < 0.5, "gated {gated}");
}

/// A well-posed sinusoid set: every strategy clearly beats predicting the mean, and gated is
/// within 5 % of the best strategy.
#[test]
fn sinusoid_all_strategies_learn_and_gated_is_near_the_best() {
    let run = train("tasks/sinusoid.toml", 0, &Strategy::ALL);
    let set = TaskSet::load(&common::repo("tasks/sinusoid.toml")).unwrap();
    let tasks = set.build_tasks(None).unwrap();
    let mean_predictor: f64 = tasks
        .iter()
        .map(|t| gatekit::task::mean_predictor_mse(t.as_ref()).unwrap())
        .sum::<f64>()
        / tasks.len() as f64;
    let means: Vec<f64> = ["gated", "shared", "separate"]
        .iter()
        .map(|s| run.mean(s))
        .collect();
    for (s, m) in ["gated", "shared", "separate"].iter().zip(&means) {
        // Shared must average ten different maps: measured 0.38 vs 0.46 (seed 0), so 0.9
        // leaves room for float differences between machines.
        assert!(
            *m < 0.9 * mean_predictor,
            "{s}: {m} vs predict-mean {mean_predictor}"
        );
    }
    let best = means.iter().cloned().fold(f64::INFINITY, f64::min);
    assert!(means[0] <= 1.05 * best, "gated {} vs best {best}", means[0]);
}

/// Issue 25 item 4: the paper's literal recipe is a named preset (tasks/paper-recipe/, made by
/// bench/paper/paper_recipe.py) that keeps the default set's tasks, steps and W optimizer and
/// resolves to the paper's masks: N(0, 1), W's optimizer at lr × 4T, sigmoid gate, no
/// binarizing phase, no warm-up.
#[test]
fn paper_recipe_presets_resolve_to_the_papers_mask_settings() {
    use gatekit::GateMode;
    use gatekit::train::MaskRecipe;
    for name in ["linear", "linear-noise", "sinusoid", "colors"] {
        let default = TaskSet::load(&common::repo(&format!("tasks/{name}.toml"))).unwrap();
        let paper =
            TaskSet::load(&common::repo(&format!("tasks/paper-recipe/{name}.toml"))).unwrap();
        let (d, p) = (&default.run, &paper.run);
        let t = paper.task_names().len() as f64;
        assert_eq!(default.task_names(), paper.task_names(), "{name}");
        assert_eq!(
            (
                d.steps,
                d.schedule.batch_size,
                d.optimizer.kind,
                d.optimizer.lr,
                d.dtype
            ),
            (
                p.steps,
                p.schedule.batch_size,
                p.optimizer.kind,
                p.optimizer.lr,
                p.dtype
            ),
            "{name}: the W settings are the default set's"
        );
        let (g, lr) = (&p.gates, p.optimizer.lr);
        assert_eq!(g.mask_recipe, MaskRecipe::Paper, "{name}");
        assert_eq!(
            g.mask_optimizer, p.optimizer.kind,
            "{name}: masks on W's optimizer"
        );
        assert!(
            (g.mask_lr - 4.0 * t * lr).abs() < 1e-12,
            "{name}: mask lr {} vs lr × 4T = {}",
            g.mask_lr,
            4.0 * t * lr
        );
        assert_eq!(g.mask_init, [0.0, 1.0], "{name}");
        assert_eq!(g.mode, GateMode::Sigmoid, "{name}");
        assert_eq!((g.binarize_after, g.mask_lr_warmup), (None, 0), "{name}");
    }
}

/// Issue 25 item 5: the Figure 2 and 3 statistics of a run folder. A short sinusoid run: every
/// strategy gets a clustering value per histogram step, between a uniform spread (5 of 50
/// bins) and 1; the gated model's three weight layers each get a mask agreement over all
/// 45 task pairs, with soft and binary agreement in (0, 1].
#[test]
fn figure_statistics_of_a_run_folder() {
    use gatekit::report::statistics::{BINS, TOP_BINS, figure_statistics};
    let mut set = TaskSet::load(&common::repo("tasks/sinusoid.toml")).unwrap();
    set.run.steps = 200;
    set.run.evaluation.eval_every = 100;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut trainer = Trainer::create(set, &Strategy::ALL, &dir, None, &Device::Cpu).unwrap();
    trainer.train(None, &mut |_| {}).unwrap();
    drop(trainer);
    let stats = figure_statistics(&dir).unwrap();
    for strategy in ["gated", "shared", "separate"] {
        let series = &stats.clustering[strategy];
        assert!(series.len() >= 2, "{strategy}: {series:?}");
        assert!(series.windows(2).all(|w| w[0].step < w[1].step));
        for c in series {
            assert_eq!(c.params.len(), 3, "{strategy}: {:?}", c.params);
            assert!(
                c.value > 0.5 * TOP_BINS as f64 / BINS as f64 && c.value <= 1.0,
                "{strategy} at {}: {}",
                c.step,
                c.value
            );
        }
    }
    assert_eq!(stats.mask_agreement.len(), 3);
    for a in &stats.mask_agreement {
        assert_eq!(a.pairs, 45, "{}", a.param);
        assert!(a.soft > 0.0 && a.soft <= 1.0 && a.binary > 0.0 && a.binary <= 1.0);
        assert!(a.soft_range[0] <= a.soft && a.soft <= a.soft_range[1]);
    }
}

/// Issue 25 item 6, cut down for CI: three of the linear task sets bench/paper/shapes.py draws
/// with generator seed 25 (shape-09, shape-11, shape-12 of the book's table: 16→2 with 3 tasks
/// and 223 points, 6→1 with 10 tasks and 98 points, 4→4 with 8 tasks and 451 points), trained
/// with tasks/linear.toml's [run] table in f32 (gatekit's default recipe, no per-set
/// tuning): gated and separate both end at test MSE ≤ 1e-6 × the targets' variance (the MSE
/// of predicting the mean), the paper's "essentially zero loss" (line 80).
#[test]
fn default_linear_recipe_solves_generated_shapes() {
    let text = std::fs::read_to_string(common::repo("tasks/linear.toml")).unwrap();
    let start = text.find("[run]").unwrap();
    let end = text.find("[defaults]").unwrap();
    let run: String = text[start..end]
        .lines()
        .filter(|l| !l.starts_with("model"))
        // The goal is stated in f32 (issue 25 item 6); the recipe's f64 is for the paper's
        // 1e-8 claim on tasks/linear.toml.
        .map(|l| {
            if l.starts_with("dtype") {
                "dtype = \"f32\"\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    for (name, inputs, outputs, tasks, train) in [
        ("shape-09", 16, 2, 3, 223),
        ("shape-11", 6, 1, 10, 98),
        ("shape-12", 4, 4, 8, 451),
    ] {
        let mut toml = format!(
            "{run}\n[defaults]\nkind = \"linear\"\ninputs = {inputs}\noutputs = {outputs}\n\
             train = {train}\ntest = 500\n\n[model]\nname = \"linear\"\ninput = [{inputs}]\n\n\
             [[model.layer]]\ntype = \"linear\"\nout = {outputs}\n"
        );
        for t in 0..tasks {
            toml += &format!("\n[[task]]\nname = \"t{t}\"\n");
        }
        let path = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&path, toml).unwrap();
        let set = TaskSet::load(&path).unwrap();
        let built = set.build_tasks(None).unwrap();
        let variance: f64 = built
            .iter()
            .map(|t| gatekit::task::mean_predictor_mse(t.as_ref()).unwrap())
            .sum::<f64>()
            / built.len() as f64;
        let mut trainer = Trainer::create(
            set,
            &[Strategy::Gated, Strategy::Separate],
            &tmp.path().join(name),
            None,
            &Device::Cpu,
        )
        .unwrap();
        trainer.train(None, &mut |_| {}).unwrap();
        let records = trainer.evaluate().unwrap();
        for strategy in ["gated", "separate"] {
            let worst = test_metrics(&records, strategy).fold(0.0, f64::max);
            assert!(
                worst <= 1e-6 * variance,
                "{name} {strategy}: worst task's test MSE {worst:e} vs 1e-6 × variance {variance}"
            );
        }
    }
}
