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
pub mod infer;
pub mod mask;
pub mod mask_mixture;
pub mod mask_profile;
pub mod meta;
pub mod mix;
mod new_tasks;
pub mod pick;
pub mod shots;

pub use config::{AdaptConfig, MetaConfig, Method, MixGates, PickConfig, PickVariant, Signal};
pub use new_tasks::NewTasks;

use crate::config::{OptimizerConfig, RunConfig, TaskSet};
use crate::error::{Error, Result};
use crate::gate::{GateMode, GateView, MaskBank};
use crate::learn::{Learner, Strategy};
use crate::model::Network;
use crate::params::ParamKey;
use crate::params::{ModelId, TaskId};
use crate::rng::Rng;
use crate::run::{ChangedData, Run, open_run_with};
use crate::task::{Objective, Split, Task};
use candle_core::{DType, Device, Tensor, Var};
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
    let (gated, bank) = gated_masks(job.run, &trainer)?;
    let stored: Vec<TaskId> = bank.tasks();
    let net = gated.model(ModelId::ONLY)?;
    refuse_layer_state(job.run, &net, cfg, &at)?;
    let stored_masks: Vec<&[Var]> = stored.iter().filter_map(|&t| bank.get(t)).collect();
    let stored_names: Vec<String> = stored
        .iter()
        .map(|&t| run_set.tasks[t.index()].name.clone())
        .collect();
    let set = job.new.appended_to(&run_set);
    let tasks = build_new_tasks(&set, &run_set, job.data_dir, &at)?;
    let first_new = run_set.tasks.len();
    let objective = trainer.objective();
    check_shots(cfg, &tasks[first_new..], &at)?;
    let signal = pick_signal(cfg, objective, &at)?;
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
    let w_opt = run.w_optimizer();
    let mask_opt = OptimizerConfig {
        lr: cfg.mask_lr.unwrap_or(run.gates.mask_lr),
        ..run.mask_optimizer()
    };
    let (soft, pick_mix) = mixtures(net, &stored_masks, mode, scale, cfg.pick.gates)?;
    // Evaluation runs on the learner too (the engine's forward where the run has one).
    let optimizers = (run.w_optimizer(), mask_opt);
    let adaptation = Adaptation {
        cfg,
        at: &at,
        set: &set,
        run,
        net,
        device: &device,
        dtype,
        mode,
        scale,
        seed,
        batch,
        methods,
        signal,
        stored_masks,
        stored_names: &stored_names,
        soft,
        pick_mix,
        w_opt,
        mask_opt,
        optimizers,
        shared,
        has_separate,
        train_separate,
        train_shared,
        param_names: bank.param_names(),
    };
    on(AdaptEvent::Start {
        steps: adaptation.total_steps(metas, job.new.tasks.len()),
    });
    let meta_inits = adaptation.meta_inits(metas, &tasks[..first_new], on)?;
    let mut results = Vec::new();
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for (j, task) in tasks[first_new..].iter().enumerate() {
        let index = first_new + j;
        let (result, stored) = adaptation.adapt_task(index, task.as_ref(), &meta_inits, on)?;
        results.push(result);
        tensors.extend(stored);
    }
    drop(adaptation);
    let summary = AdaptSummary {
        run: job.run.into(),
        out: job.out.into(),
        config: cfg.clone(),
        batch_size: batch,
        metric_name: objective.metric_name().into(),
        tasks: results,
    };
    drop(trainer);
    write_adapted(job, &set, first_new, tensors, &summary, &device)?;
    Ok(summary)
}

/// Writes the adapted run folder: the run's files, the new tasks' tensors and `adapt.json`.
fn write_adapted(
    job: &AdaptJob,
    set: &TaskSet,
    first_new: usize,
    tensors: Vec<(String, Tensor)>,
    summary: &AdaptSummary,
    device: &Device,
) -> Result<()> {
    let summary_json = serde_json::to_string_pretty(summary)
        .map_err(|e| Error::io(job.out.join(folder::SUMMARY), e.into()))?;
    folder::write(
        job.run,
        job.out,
        &folder::Addition {
            set,
            new_tasks: (first_new..set.tasks.len()).collect(),
            tensors,
            summary_json,
        },
        job.data_dir,
        device,
    )
}

/// The soft mixture of the stored masks' gates, and pick's binary one when it picks on
/// binary gates.
fn mixtures(
    net: &Network,
    stored_masks: &[&[Var]],
    mode: GateMode,
    scale: f64,
    gates: MixGates,
) -> Result<(Mixture, Option<Mixture>)> {
    let soft = Mixture::new(net, stored_masks, mode, scale, MixGates::Soft)?;
    let pick_mix = match gates {
        MixGates::Soft => None,
        MixGates::Binary => Some(Mixture::new(
            net,
            stored_masks,
            mode,
            scale,
            MixGates::Binary,
        )?),
    };
    Ok((soft, pick_mix))
}

/// The run's gated learner and its stored masks: what every method adapts from.
fn gated_masks<'r>(path: &Path, trainer: &'r Run) -> Result<(&'r Learner, MaskBank)> {
    let gated = trainer
        .learners()
        .iter()
        .find(|l| l.strategy() == Strategy::Gated)
        .ok_or_else(|| Error::Run {
            path: path.into(),
            message: "has no gated model to adapt (train with --strategy gated or all)".into(),
        })?;
    let bank = gated.masks()?.ok_or_else(|| Error::Run {
        path: path.into(),
        message: "its gated model has no masks".into(),
    })?;
    if bank.tasks().is_empty() {
        return Err(Error::Run {
            path: path.into(),
            message: "no task has a trained mask yet; train the run first".into(),
        });
    }
    Ok((gated, bank))
}

/// Refuses the meta-learned baselines on a model with per-task layer state (batch norm): their
/// functional inner loop keeps no layer state. Everything else adapts a batch-norm run: pick
/// and mix normalize with each batch's own statistics, and a new task's statistics are
/// estimated from its K shots under its mask ([`Learner::estimate_state`]).
fn refuse_layer_state(path: &Path, net: &Network, cfg: &AdaptConfig, at: &str) -> Result<()> {
    if let (Some((name, _)), true) = (net.state_specs().first(), cfg.meta.iterations > 0) {
        return Err(Error::config(
            at,
            "adapt.meta.iterations",
            format!(
                "= {} asks for the meta-learned baselines, which do not support a model with \
                 per-task layer state (`{name}` of {}, batch norm) yet; set it to 0",
                cfg.meta.iterations,
                path.display()
            ),
        ));
    }
    Ok(())
}

/// The tasks of `set` (the run's, then the new ones), with a shape error that names the run's
/// input and output.
fn build_new_tasks(
    set: &TaskSet,
    run_set: &TaskSet,
    data_dir: Option<&Path>,
    at: &str,
) -> Result<Vec<Box<dyn Task>>> {
    set.build_tasks(data_dir).map_err(|e| match e {
        Error::Shape(m) => Error::Shape(format!(
            "{at}: {m}; a new task must have the run's input {:?} and output {:?}",
            run_set.model.input,
            run_set.model.output_shape().unwrap_or_default()
        )),
        other => other,
    })
}

/// Refuses a K larger than a new task's training split.
fn check_shots(cfg: &AdaptConfig, new_tasks: &[Box<dyn Task>], at: &str) -> Result<()> {
    for t in new_tasks {
        let n = t.len(Split::Train);
        if cfg.shots > n {
            return Err(Error::config(
                at,
                "adapt.shots",
                format!(
                    "K = {} is larger than task `{}`'s {n} training examples; use --shots {n} or fewer",
                    cfg.shots,
                    t.name()
                ),
            ));
        }
    }
    Ok(())
}

/// Pick's signal: the stated one, else entropy for classification and loss for regression.
fn pick_signal(cfg: &AdaptConfig, objective: Objective, at: &str) -> Result<Signal> {
    Ok(match (cfg.pick.signal, objective) {
        (Some(Signal::Entropy), Objective::Regression) => {
            return Err(Error::config(
                at,
                "adapt.pick.signal",
                "\"entropy\" needs a classification task; use \"loss\" for regression",
            ));
        }
        (Some(s), _) => s,
        (None, Objective::Classification) => Signal::Entropy,
        (None, Objective::Regression) => Signal::Loss,
    })
}

/// What every new task is adapted with: the run's frozen W and stored masks, the settings,
/// and which methods and baselines run.
struct Adaptation<'a> {
    cfg: &'a AdaptConfig,
    at: &'a str,
    set: &'a TaskSet,
    run: &'a RunConfig,
    net: &'a Network,
    device: &'a Device,
    dtype: DType,
    mode: GateMode,
    scale: f64,
    seed: u64,
    batch: usize,
    methods: Vec<Method>,
    signal: Signal,
    stored_masks: Vec<&'a [Var]>,
    stored_names: &'a [String],
    soft: Mixture,
    pick_mix: Option<Mixture>,
    w_opt: OptimizerConfig,
    mask_opt: OptimizerConfig,
    optimizers: (OptimizerConfig, OptimizerConfig),
    shared: Option<&'a Learner>,
    has_separate: bool,
    train_separate: bool,
    train_shared: bool,
    param_names: &'a [String],
}

/// What one method found on a task besides its masks.
#[derive(Default)]
struct Found {
    pick: Option<PickReport>,
    mixture: Option<Vec<(String, f64)>>,
}

impl Adaptation<'_> {
    /// Gradient steps in all: methods and baselines on each of `new_tasks` tasks, and the
    /// meta-learning before them.
    fn total_steps(&self, metas: &[meta::MetaMethod], new_tasks: usize) -> usize {
        let cfg = self.cfg;
        let per_task = self
            .methods
            .iter()
            .map(|m| if *m == Method::Pick { 0 } else { cfg.steps })
            .sum::<usize>()
            + cfg.steps
                * (usize::from(self.train_separate) + usize::from(self.train_shared) + metas.len());
        per_task * new_tasks + cfg.meta.iterations * metas.len()
    }

    /// The meta-learned initialisations, once for all new tasks (they see only the run's tasks).
    fn meta_inits(
        &self,
        metas: &[meta::MetaMethod],
        run_tasks: &[Box<dyn Task>],
        on: &mut dyn FnMut(AdaptEvent),
    ) -> Result<Vec<(meta::MetaMethod, Network)>> {
        let Adaptation {
            cfg,
            set,
            run,
            device,
            dtype,
            seed,
            batch,
            ..
        } = *self;
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
                device,
            )?;
            meta::meta_train(
                m,
                &meta::MetaJob {
                    run,
                    tasks: run_tasks,
                    init: &init,
                    shots: cfg.shots,
                    steps: cfg.steps,
                    batch,
                    seed,
                    device,
                    dtype,
                },
                &cfg.meta,
                &mut || on(AdaptEvent::Step),
            )?;
            meta_inits.push((m, init));
        }
        Ok(meta_inits)
    }

    /// Every method and baseline on the new task `index`: its result, and the tensors the
    /// adapted run stores for it (the stored method's masks, a separate model's weights).
    fn adapt_task(
        &self,
        index: usize,
        task: &dyn Task,
        meta_inits: &[(meta::MetaMethod, Network)],
        on: &mut dyn FnMut(AdaptEvent),
    ) -> Result<(TaskResult, Vec<(String, Tensor)>)> {
        let Adaptation {
            cfg,
            device,
            dtype,
            seed,
            param_names,
            ..
        } = *self;
        let name = task.name();
        let shots = Shots::draw(
            task,
            cfg.shots,
            &mut Rng::stream(seed, "adapt/shots", index as u64),
            device,
            dtype,
        );
        let mut rng = Rng::stream(seed, "adapt/batches", index as u64);
        let mut rows = Vec::new();
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        let mut found = Found::default();
        let mut stored_mask: Option<Vec<Tensor>> = None;
        for &method in &self.methods {
            on(AdaptEvent::Stage {
                task: name,
                what: method.as_str(),
            });
            let masks = self.method_masks(method, index, &shots, &mut rng, &mut found, on)?;
            let stored_here = method == cfg.method;
            let (metric, binarized, state) = self.gated_metrics(index, task, &shots, &masks)?;
            rows.push(Row {
                model: method.to_string(),
                metric,
                binarized: Some(binarized),
                stored: stored_here,
            });
            if stored_here {
                stored_mask = Some(masks.iter().map(|m| m.as_tensor().detach()).collect());
                // The new task's layer state (batch norm) under its soft gates, which the
                // adapted run's checkpoint keeps like a trained task's.
                for ((name_s, _), value) in self.net.state_specs().iter().zip(state) {
                    tensors.push((
                        ParamKey::TaskState {
                            param: name_s,
                            task: name,
                        }
                        .in_strategy(Strategy::Gated.as_str()),
                        value,
                    ));
                }
            }
        }
        if let Some(masks) = stored_mask {
            for (m, p) in masks.into_iter().zip(param_names) {
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
        self.baselines(index, task, &shots, meta_inits, &mut rows, &mut tensors, on)?;
        let result = TaskResult {
            task: name.to_string(),
            pick: found.pick,
            mixture: found.mixture,
            rows,
        };
        Ok((result, tensors))
    }

    /// The masks `method` adapts on the K shots of task `index`.
    fn method_masks(
        &self,
        method: Method,
        index: usize,
        shots: &Shots,
        rng: &mut Rng,
        found: &mut Found,
        on: &mut dyn FnMut(AdaptEvent),
    ) -> Result<Vec<Var>> {
        let Adaptation {
            cfg,
            run,
            net,
            mode,
            scale,
            seed,
            batch,
            signal,
            stored_names,
            mask_opt,
            ..
        } = *self;
        let (soft, stored_masks) = (&self.soft, &self.stored_masks);
        let masks: Vec<Var> = match method {
            Method::Pick => {
                let mix = self.pick_mix.as_ref().unwrap_or(soft);
                let (report, chosen) = run_pick(
                    mix,
                    shots,
                    signal,
                    &cfg.pick,
                    stored_names,
                    &mut Rng::stream(seed, "adapt/pick", index as u64),
                )?;
                found.pick = Some(report);
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
                    soft,
                    shots,
                    mix_steps,
                    cfg.mix_lr,
                    batch,
                    rng,
                    &mut || on(AdaptEvent::Step),
                )?;
                // Mix's own mixture wins over mask's shorter starting one.
                if method == Method::Mix || found.mixture.is_none() {
                    found.mixture = Some(
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
                        shots,
                        cfg.steps - mix_steps,
                        mask_opt,
                        batch,
                        rng,
                        &mut || on(AdaptEvent::Step),
                    )?
                }
            }
        };
        Ok(masks)
    }

    /// Test metrics of the soft and the binarized gates of `masks`, from one learner, and the
    /// new task's layer state under the soft gates. With batch norm the new task's statistics
    /// are estimated from its K shots (batches of the adaptation's batch size, seeded by the
    /// task's position) under each view's gates, as the binarized model of a trained task is
    /// ([`crate::run::BnRecalibration`]); without, the state is empty.
    fn gated_metrics(
        &self,
        index: usize,
        task: &dyn Task,
        shots: &Shots,
        masks: &[Var],
    ) -> Result<(f64, f64, Vec<Tensor>)> {
        let Adaptation {
            run,
            net,
            device,
            dtype,
            mode,
            scale,
            optimizers,
            seed,
            batch,
            ..
        } = *self;
        let start = masks.iter().map(|m| m.as_tensor().clone()).collect();
        let mut learner =
            Learner::starting_from(Strategy::Gated, run, net, Some(start), optimizers)?;
        learner.set_gate_mode(mode);
        let inputs: Vec<Tensor> = if learner.has_layer_state() {
            let mut rng = Rng::stream(seed, "adapt/bn", index as u64);
            (0..crate::run::DEFAULT_BN_BATCHES)
                .map(|_| Ok(shots.batch(batch, &mut rng)?.x))
                .collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        let mut measure = |view: GateView| -> Result<(f64, Vec<Tensor>)> {
            let state = learner.estimate_state(Learner::NEW_TASK, scale, view, &inputs)?;
            if !inputs.is_empty() {
                learner.set_layer_state(Learner::NEW_TASK, &state)?;
            }
            let metric = test_metric(task, device, dtype, &|x: &Tensor| {
                learner.predict(Learner::NEW_TASK, x, scale, view)
            })?;
            Ok((metric, state))
        };
        let (soft, state) = measure(GateView::Trained)?;
        let (binarized, _) = measure(GateView::Binary)?;
        Ok((soft, binarized, state))
    }

    /// The test metric of a plain learner.
    fn plain_metric(&self, task: &dyn Task, learner: &Learner) -> Result<f64> {
        test_metric(task, self.device, self.dtype, &|x: &Tensor| {
            learner.predict(Learner::NEW_TASK, x, 1.0, GateView::Trained)
        })
    }

    /// The baselines on task `index`: a separate model from scratch, the shared model
    /// fine-tuned, and each meta-learned initialisation fine-tuned; their rows (and a separate
    /// model's weights, when the run has separate models) added to `rows` and `tensors`.
    #[allow(clippy::too_many_arguments)]
    fn baselines(
        &self,
        index: usize,
        task: &dyn Task,
        shots: &Shots,
        meta_inits: &[(meta::MetaMethod, Network)],
        rows: &mut Vec<Row>,
        tensors: &mut Vec<(String, Tensor)>,
        on: &mut dyn FnMut(AdaptEvent),
    ) -> Result<()> {
        let Adaptation {
            cfg,
            set,
            run,
            device,
            dtype,
            seed,
            batch,
            w_opt,
            shared,
            has_separate,
            train_separate,
            train_shared,
            ..
        } = *self;
        let name = task.name();
        // Both baselines: the same steps and batches on the K shots, then the whole test split.
        let baseline_metric = |net: &Network, on: &mut dyn FnMut(AdaptEvent)| -> Result<f64> {
            let learner = baseline::train_plain(
                run,
                net,
                shots,
                cfg.steps,
                w_opt,
                batch,
                &mut Rng::stream(seed, "adapt/baseline", index as u64),
                &mut || on(AdaptEvent::Step),
            )?;
            self.plain_metric(task, &learner)
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
                device,
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
            let tuned = baseline::copy_network(&shared.model(ModelId::ONLY)?)?;
            rows.push(Row {
                model: "shared (fine-tuned)".into(),
                metric: baseline_metric(&tuned, on)?,
                binarized: None,
                stored: false,
            });
        }
        self.meta_rows(index, task, shots, meta_inits, rows, on)
    }

    /// Each meta-learned initialisation fine-tuned on task `index`'s shots: a row each.
    fn meta_rows(
        &self,
        index: usize,
        task: &dyn Task,
        shots: &Shots,
        meta_inits: &[(meta::MetaMethod, Network)],
        rows: &mut Vec<Row>,
        on: &mut dyn FnMut(AdaptEvent),
    ) -> Result<()> {
        let Adaptation {
            cfg,
            at,
            run,
            seed,
            batch,
            ..
        } = *self;
        let name = task.name();
        for (m, init) in meta_inits {
            on(AdaptEvent::Stage {
                task: name,
                what: m.as_str(),
            });
            let tuned = baseline::copy_network(init)?;
            let learner = baseline::train_plain(
                run,
                &tuned,
                shots,
                cfg.steps,
                meta::inner_optimizer(cfg.meta.inner_lr),
                batch,
                &mut Rng::stream(seed, "adapt/baseline", index as u64),
                &mut || on(AdaptEvent::Step),
            )?;
            let metric = self.plain_metric(task, &learner)?;
            if !metric.is_finite() {
                return Err(Error::config(
                    at,
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
        Ok(())
    }
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
