//! Adapting a trained gated run to tasks it has not seen (`gtk adapt`): W stays frozen, and
//! each new task gets a mask built from the stored ones.
//!
//! With T stored masks `M_1..M_T` and their gates `g(M_i)`:
//! - [`Method::Pick`]: one stored mask, chosen by the gradient of the output entropy (no
//!   labels) or of the loss on the K shots with respect to the mixture weights at α = 1/T
//!   (SupSup; also its halving variant), see [`pick`];
//! - [`Method::Mix`]: `g = Σ softmax(a)_i g(M_i)`, `a` learned on the K shots, see [`mix`];
//! - [`Method::Mask`]: a new real-valued mask learned on the K shots, starting from the
//!   learned mixture, see [`mask`].
//!
//! Every method's result is stored as an ordinary mask (`M = g⁻¹(gate)`), so the adapted run is
//! a normal run folder ([`folder`]) that `gtk eval`, `gtk export` and `gtk report` read
//! unchanged. Two baselines get the same steps and batches ([`baseline`]): a plain model from
//! scratch and the run's shared model fine-tuned.

pub mod baseline;
mod config;
pub mod folder;
pub mod mask;
pub mod mask_mixture;
pub mod meta;
pub mod mix;
mod new_tasks;
pub mod pick;
pub mod shots;

pub use config::{AdaptConfig, MetaConfig, Method, MixGates, PickConfig, PickVariant, Signal};
pub use new_tasks::NewTasks;

use crate::config::OptimizerConfig;
use crate::error::{Error, Result};
use crate::gate::GateView;
use crate::learn::{Learner, Strategy};
use crate::model::Network;
use crate::params::ParamKey;
use crate::params::TaskId;
use crate::rng::Rng;
use crate::run::{ChangedData, open_run_with};
use crate::task::{Objective, Split, Task};
use candle_core::{Device, Tensor, Var};
use mask_mixture::{Mixture, Target};
use serde::{Deserialize, Serialize};
use shots::{Shots, test_metric};
use std::path::{Path, PathBuf};

/// What `pick` decided for one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PickReport {
    /// Entropy or loss.
    pub signal: Signal,
    /// One-shot or halving.
    pub variant: PickVariant,
    /// The stored task whose mask was chosen most often.
    pub chosen: String,
    /// How often each stored task was chosen, over `trials` batches (run order).
    pub votes: Vec<(String, usize)>,
    /// Batches picked on.
    pub trials: usize,
    /// Gradients per pick.
    pub rounds: usize,
}

impl PickReport {
    /// Share of trials that chose `task`.
    pub fn rate(&self, task: &str) -> f64 {
        let hits = self
            .votes
            .iter()
            .find(|(t, _)| t == task)
            .map_or(0, |(_, n)| *n);
        hits as f64 / self.trials.max(1) as f64
    }
}

/// One model's test result on a new task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// `pick`, `mix`, `mask`, `separate (scratch)` or `shared (fine-tuned)`.
    pub model: String,
    /// Test metric (accuracy or MSE) on the task's whole test split.
    pub metric: f64,
    /// Test metric of the binarized gate `W ⊙ 1[M > 0]` (gated rows only).
    pub binarized: Option<f64>,
    /// Whether this row's mask is the one stored in the adapted run.
    pub stored: bool,
}

/// Everything measured on one new task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// The new task.
    pub task: String,
    /// `pick`'s decision, when pick ran.
    pub pick: Option<PickReport>,
    /// The learned mixture weights per stored task: mix's when it ran, else mask's start.
    pub mixture: Option<Vec<(String, f64)>>,
    /// Methods and baselines.
    pub rows: Vec<Row>,
}

impl TaskResult {
    /// The rows with the best test metric (soft gates): every one of them on a tie.
    pub fn best_rows(&self, objective: Objective) -> Vec<usize> {
        let metrics: Vec<f64> = self.rows.iter().map(|r| r.metric).collect();
        objective.best(&metrics)
    }
}

/// The outcome of an adaptation (also written as `adapt.json` in the adapted run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptSummary {
    /// The run adapted.
    pub run: PathBuf,
    /// The adapted run written.
    pub out: PathBuf,
    /// The settings used.
    pub config: AdaptConfig,
    /// Examples per step.
    pub batch_size: usize,
    /// `accuracy` or `mse`.
    pub metric_name: String,
    /// One entry per new task.
    pub tasks: Vec<TaskResult>,
}

impl AdaptSummary {
    /// The objective of [`AdaptSummary::metric_name`] (MSE when the name is unknown).
    pub fn objective(&self) -> Objective {
        Objective::from_metric_name(&self.metric_name).unwrap_or(Objective::Regression)
    }
}

/// Progress of an adaptation.
#[derive(Debug, Clone, Copy)]
pub enum AdaptEvent<'a> {
    /// Work starts: this many gradient steps in all.
    Start {
        /// Total gradient steps (methods and baselines, all tasks).
        steps: usize,
    },
    /// A stage starts on a task.
    Stage {
        /// The new task.
        task: &'a str,
        /// What runs: a method or a baseline.
        what: &'a str,
    },
    /// One gradient step finished.
    Step,
}

/// Inputs of [`adapt`].
pub struct AdaptJob<'a> {
    /// The trained run folder.
    pub run: &'a Path,
    /// The new tasks and settings.
    pub new: &'a NewTasks,
    /// The adapted run folder to create (must not exist).
    pub out: &'a Path,
    /// Dataset folder (else `$GATEKIT_DATA`).
    pub data_dir: Option<&'a Path>,
    /// Whether to go on when a data file of the run changed since it was recorded.
    pub changed_data: ChangedData,
}

/// Adapts the run to the new tasks and writes the adapted run folder. Every input is checked
/// (shapes, K, names, settings) before any work, and nothing is written unless all succeeds.
pub fn adapt(job: &AdaptJob, on: &mut dyn FnMut(AdaptEvent)) -> Result<AdaptSummary> {
    let device = Device::Cpu;
    let cfg = &job.new.config;
    let at = job.new.origin.display().to_string();
    cfg.check(&at)?;
    if job.new.tasks.is_empty() {
        return Err(Error::config(&at, "task", "has no new tasks to adapt to"));
    }
    folder::check_destination(job.run, job.out)?;
    let trainer = open_run_with(job.run, job.data_dir, &device, job.changed_data)?;
    let run_set = trainer.task_set().clone();
    let gated = trainer
        .learners()
        .iter()
        .find(|l| l.strategy() == Strategy::Gated)
        .ok_or_else(|| Error::Run {
            path: job.run.into(),
            message: "has no gated model to adapt (train with --strategy gated or all)".into(),
        })?;
    let bank = gated.masks()?.ok_or_else(|| Error::Run {
        path: job.run.into(),
        message: "its gated model has no masks".into(),
    })?;
    let stored: Vec<usize> = bank.tasks();
    if stored.is_empty() {
        return Err(Error::Run {
            path: job.run.into(),
            message: "no task has a trained mask yet; train the run first".into(),
        });
    }
    let net = gated.network(TaskId(0))?;
    if let Some((name, _)) = net.state_specs().first() {
        // A new task would need statistics of its own, and picking or mixing stored masks
        // their tasks' statistics; neither is built, so refuse rather than measure wrongly.
        return Err(Error::Run {
            path: job.run.into(),
            message: format!(
                "its model keeps per-task layer state (`{name}`, batch norm), which gtk adapt \
                 does not support yet; adapt a run of a model without batch norm"
            ),
        });
    }
    let stored_masks: Vec<&[Var]> = stored.iter().filter_map(|&t| bank.get(t)).collect();
    let stored_names: Vec<String> = stored
        .iter()
        .map(|&t| run_set.tasks[t].name.clone())
        .collect();
    let set = job.new.appended_to(&run_set);
    let tasks = set.build_tasks(job.data_dir).map_err(|e| match e {
        Error::Shape(m) => Error::Shape(format!(
            "{at}: {m}; a new task must have the run's input {:?} and output {:?}",
            run_set.model.input,
            run_set.model.output_shape().unwrap_or_default()
        )),
        other => other,
    })?;
    let first_new = run_set.tasks.len();
    let objective = trainer.objective();
    for t in &tasks[first_new..] {
        let n = t.len(Split::Train);
        if cfg.shots > n {
            return Err(Error::config(
                &at,
                "adapt.shots",
                format!(
                    "K = {} is larger than task `{}`'s {n} training examples; use --shots {n} or fewer",
                    cfg.shots,
                    t.name()
                ),
            ));
        }
    }
    let signal = match (cfg.pick.signal, objective) {
        (Some(Signal::Entropy), Objective::Regression) => {
            return Err(Error::config(
                &at,
                "adapt.pick.signal",
                "\"entropy\" needs a classification task; use \"loss\" for regression",
            ));
        }
        (Some(s), _) => s,
        (None, Objective::Classification) => Signal::Entropy,
        (None, Objective::Regression) => Signal::Loss,
    };
    let methods: Vec<Method> = if cfg.compare {
        Method::ALL.to_vec()
    } else {
        vec![cfg.method]
    };
    let shared = trainer
        .learners()
        .iter()
        .find(|l| l.strategy() == Strategy::Shared);
    let has_separate = trainer
        .learners()
        .iter()
        .any(|l| l.strategy() == Strategy::Separate);
    let run = &set.run;
    let dtype = run.dtype.dtype();
    let batch = cfg
        .batch_size
        .unwrap_or(run.schedule.batch_size.min(cfg.shots));
    let scale = trainer.hat_scale(trainer.step());
    let mode = gated.gate_mode();
    let net = &net;
    let seed = cfg.seed.unwrap_or(run.seed);
    let train_separate = cfg.baselines || has_separate;
    let train_shared = cfg.baselines && shared.is_some();
    let metas: &[meta::MetaMethod] = if cfg.meta.iterations > 0 {
        &meta::MetaMethod::ALL
    } else {
        &[]
    };
    let per_task = methods
        .iter()
        .map(|m| if *m == Method::Pick { 0 } else { cfg.steps })
        .sum::<usize>()
        + cfg.steps * (usize::from(train_separate) + usize::from(train_shared) + metas.len());
    on(AdaptEvent::Start {
        steps: per_task * job.new.tasks.len() + cfg.meta.iterations * metas.len(),
    });
    let w_opt = run.w_optimizer();
    let mask_opt = OptimizerConfig {
        lr: cfg.mask_lr.unwrap_or(run.gates.mask_lr),
        ..run.mask_optimizer()
    };
    let soft = Mixture::new(net, &stored_masks, mode, scale, MixGates::Soft)?;
    let pick_mix = match cfg.pick.gates {
        MixGates::Soft => None,
        MixGates::Binary => Some(Mixture::new(
            net,
            &stored_masks,
            mode,
            scale,
            MixGates::Binary,
        )?),
    };
    // Evaluation runs on the learner too (the engine's forward where the run has one).
    let optimizers = (run.w_optimizer(), mask_opt);
    // Test metrics of the soft and the binarized gates of `masks`, from one learner.
    let gated_metrics = |task: &dyn Task, masks: &[Var]| -> Result<(f64, f64)> {
        let start = masks.iter().map(|m| m.as_tensor().clone()).collect();
        let mut learner =
            Learner::starting_from(Strategy::Gated, run, net, Some(start), optimizers)?;
        learner.set_gate_mode(mode);
        let metric = |view: GateView| {
            test_metric(task, &device, dtype, &|x: &Tensor| {
                learner.predict(TaskId(0), x, scale, view)
            })
        };
        Ok((metric(GateView::Trained)?, metric(GateView::Binary)?))
    };
    let plain_metric = |task: &dyn Task, learner: &Learner| -> Result<f64> {
        test_metric(task, &device, dtype, &|x: &Tensor| {
            learner.predict(TaskId(0), x, 1.0, GateView::Trained)
        })
    };
    // The meta-learned initialisations, once for all new tasks (they see only the run's tasks).
    let mut meta_inits = Vec::new();
    for &m in metas {
        on(AdaptEvent::Stage {
            task: "(run's tasks)",
            what: m.as_str(),
        });
        // PyTorch's default init, the scale of MAML's reference code: from the He init the
        // inner SGD steps at MAML's 0.01 diverge on this family's targets (|y| up to 5).
        let init = Network::new(
            &set.model,
            crate::model::WeightInit::Torch,
            &mut Rng::stream(run.seed, "adapt/meta-init", 0),
            dtype,
            &device,
        )?;
        meta::meta_train(
            m,
            &meta::MetaJob {
                run,
                tasks: &tasks[..first_new],
                init: &init,
                shots: cfg.shots,
                steps: cfg.steps,
                batch,
                seed,
                device: &device,
                dtype,
            },
            &cfg.meta,
            &mut || on(AdaptEvent::Step),
        )?;
        meta_inits.push((m, init));
    }
    let mut results = Vec::new();
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let param_names = bank.param_names().to_vec();
    for (j, task) in tasks[first_new..].iter().enumerate() {
        let index = first_new + j;
        let name = task.name();
        let task: &dyn Task = task.as_ref();
        let shots = Shots::draw(
            task,
            cfg.shots,
            &mut Rng::stream(seed, "adapt/shots", index as u64),
            &device,
            dtype,
        );
        let mut rng = Rng::stream(seed, "adapt/batches", index as u64);
        let mut rows = Vec::new();
        let mut pick_report = None;
        let mut mixture_report = None;
        let mut stored_mask: Option<Vec<Tensor>> = None;
        for &method in &methods {
            on(AdaptEvent::Stage {
                task: name,
                what: method.as_str(),
            });
            let masks: Vec<Var> = match method {
                Method::Pick => {
                    let mix = pick_mix.as_ref().unwrap_or(&soft);
                    let (report, chosen) = run_pick(
                        mix,
                        &shots,
                        signal,
                        &cfg.pick,
                        &stored_names,
                        &mut Rng::stream(seed, "adapt/pick", index as u64),
                    )?;
                    pick_report = Some(report);
                    stored_masks[chosen]
                        .iter()
                        .map(|m| Var::from_tensor(&m.as_tensor().copy()?))
                        .collect::<candle_core::Result<_>>()?
                }
                Method::Mix | Method::Mask => {
                    let mix_steps = if method == Method::Mix {
                        cfg.steps
                    } else {
                        cfg.mask_init_steps()
                    };
                    let alpha = mix::learn_mixture(
                        &soft,
                        &shots,
                        mix_steps,
                        cfg.mix_lr,
                        batch,
                        &mut rng,
                        &mut || on(AdaptEvent::Step),
                    )?;
                    // Mix's own mixture wins over mask's shorter starting one.
                    if method == Method::Mix || mixture_report.is_none() {
                        mixture_report = Some(
                            stored_names
                                .iter()
                                .cloned()
                                .zip(alpha.iter().copied())
                                .collect(),
                        );
                    }
                    let init = soft
                        .gate(&alpha)?
                        .iter()
                        .map(|g| mask::mask_for_gate(g, mode, scale))
                        .collect::<Result<Vec<_>>>()?;
                    if method == Method::Mix {
                        init.iter()
                            .map(Var::from_tensor)
                            .collect::<candle_core::Result<_>>()?
                    } else {
                        mask::learn_mask(
                            run,
                            net,
                            init,
                            mode,
                            scale,
                            &shots,
                            cfg.steps - mix_steps,
                            mask_opt,
                            batch,
                            &mut rng,
                            &mut || on(AdaptEvent::Step),
                        )?
                    }
                }
            };
            let stored_here = method == cfg.method;
            let (metric, binarized) = gated_metrics(task, &masks)?;
            rows.push(Row {
                model: method.to_string(),
                metric,
                binarized: Some(binarized),
                stored: stored_here,
            });
            if stored_here {
                stored_mask = Some(masks.iter().map(|m| m.as_tensor().detach()).collect());
            }
        }
        if let Some(masks) = stored_mask {
            for (m, p) in masks.into_iter().zip(&param_names) {
                tensors.push((
                    ParamKey::Mask {
                        param: p,
                        task: name,
                    }
                    .in_strategy(Strategy::Gated.as_str()),
                    m,
                ));
            }
        }
        // Both baselines: the same steps and batches on the K shots, then the whole test split.
        let baseline_metric = |net: &Network, on: &mut dyn FnMut(AdaptEvent)| -> Result<f64> {
            let learner = baseline::train_plain(
                run,
                net,
                &shots,
                cfg.steps,
                w_opt,
                batch,
                &mut Rng::stream(seed, "adapt/baseline", index as u64),
                &mut || on(AdaptEvent::Step),
            )?;
            plain_metric(task, &learner)
        };
        if train_separate {
            on(AdaptEvent::Stage {
                task: name,
                what: "separate (scratch)",
            });
            // The init a `separate` model for this task would get in training.
            let fresh = Network::new(
                &set.model,
                run.w_init,
                &mut Rng::stream(run.seed, "init", index as u64),
                dtype,
                &device,
            )?;
            rows.push(Row {
                model: "separate (scratch)".into(),
                metric: baseline_metric(&fresh, on)?,
                binarized: None,
                stored: has_separate,
            });
            if has_separate {
                for (p, v) in fresh.params() {
                    let key = ParamKey::TaskWeight {
                        task: name,
                        param: p,
                    };
                    tensors.push((
                        key.in_strategy(Strategy::Separate.as_str()),
                        v.as_tensor().detach(),
                    ));
                }
            }
        }
        if let (true, Some(shared)) = (train_shared, shared) {
            on(AdaptEvent::Stage {
                task: name,
                what: "shared (fine-tuned)",
            });
            let tuned = baseline::copy_network(&shared.network(TaskId(0))?)?;
            rows.push(Row {
                model: "shared (fine-tuned)".into(),
                metric: baseline_metric(&tuned, on)?,
                binarized: None,
                stored: false,
            });
        }
        for (m, init) in &meta_inits {
            on(AdaptEvent::Stage {
                task: name,
                what: m.as_str(),
            });
            let tuned = baseline::copy_network(init)?;
            let learner = baseline::train_plain(
                run,
                &tuned,
                &shots,
                cfg.steps,
                meta::inner_optimizer(cfg.meta.inner_lr),
                batch,
                &mut Rng::stream(seed, "adapt/baseline", index as u64),
                &mut || on(AdaptEvent::Step),
            )?;
            let metric = plain_metric(task, &learner)?;
            if !metric.is_finite() {
                return Err(Error::config(
                    &at,
                    "adapt.meta.inner_lr",
                    format!(
                        "{} adapted to task `{name}` diverged (test metric {metric}); lower adapt.meta.inner_lr ({})",
                        m.as_str(),
                        cfg.meta.inner_lr
                    ),
                ));
            }
            rows.push(Row {
                model: m.as_str().into(),
                metric,
                binarized: None,
                stored: false,
            });
        }
        results.push(TaskResult {
            task: name.to_string(),
            pick: pick_report,
            mixture: mixture_report,
            rows,
        });
    }
    let summary = AdaptSummary {
        run: job.run.into(),
        out: job.out.into(),
        config: cfg.clone(),
        batch_size: batch,
        metric_name: objective.metric_name().into(),
        tasks: results,
    };
    let summary_json = serde_json::to_string_pretty(&summary)
        .map_err(|e| Error::io(job.out.join(folder::SUMMARY), e.into()))?;
    drop(trainer);
    folder::write(
        job.run,
        job.out,
        &folder::Addition {
            set: &set,
            new_tasks: (first_new..set.tasks.len()).collect(),
            tensors,
            summary_json,
        },
        job.data_dir,
        &device,
    )?;
    Ok(summary)
}

/// Runs `pick` on `trials` unlabelled batches (entropy) or once on the shots (loss); returns
/// the report and the position of the chosen stored mask.
fn run_pick(
    mix: &Mixture,
    shots: &Shots,
    signal: Signal,
    cfg: &PickConfig,
    names: &[String],
    rng: &mut Rng,
) -> Result<(PickReport, usize)> {
    let mut votes = vec![0usize; mix.tasks()];
    let mut rounds = 0;
    let trials = match signal {
        Signal::Entropy => cfg.trials,
        Signal::Loss => 1,
    };
    for _ in 0..trials {
        let choice = match signal {
            Signal::Entropy => {
                let x = shots.unlabelled(cfg.batch, rng)?;
                pick::pick(mix, &x, Target::Entropy, cfg.variant)?
            }
            Signal::Loss => {
                // One gradient over (at most 1024 of) the K labelled shots.
                let b = shots.head(1024)?;
                let objective = shots.task().objective();
                pick::pick(mix, &b.x, Target::Loss(objective, &b.y), cfg.variant)?
            }
        };
        votes[choice.chosen] += 1;
        rounds = choice.rounds;
    }
    // Most votes; ties go to the earlier stored task.
    let chosen = (0..votes.len())
        .max_by(|&a, &b| votes[a].cmp(&votes[b]).then(b.cmp(&a)))
        .unwrap_or(0);
    Ok((
        PickReport {
            signal,
            variant: cfg.variant,
            chosen: names[chosen].clone(),
            votes: names.iter().cloned().zip(votes).collect(),
            trials,
            rounds,
        },
        chosen,
    ))
}
