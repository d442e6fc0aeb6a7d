//! The `[run]` table of a task-set file, resolved: every hyperparameter explicit
//! ([`RunConfig`]), grouped by what it controls ([`WeightOptimizer`], [`TaskSchedule`],
//! [`Evaluation`], [`Gates`]) while files keep the flat `[run]` keys (`run_table.rs`). The
//! task module never sees it; the trainer, the engine's settings and the run folder do.

use super::{OptimizerConfig, OptimizerKind, Scenario, Schedule, TaskOrder, WPolicy};
use crate::error::{Error, Result};
use crate::gate::{GateMode, MaskInit, Regularizer};
use crate::model::WeightInit;
use serde::{Deserialize, Serialize};

/// Floating-point precision of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats (the default).
    #[default]
    F32,
    /// 64-bit floats: for the noise-free regression claims, where f32 rounding sits above the
    /// target error.
    F64,
}

impl Precision {
    /// The candle dtype.
    pub fn dtype(self) -> candle_core::DType {
        match self {
            Precision::F32 => candle_core::DType::F32,
            Precision::F64 => candle_core::DType::F64,
        }
    }
}

/// Families of mask settings. Explicit `mask_*` keys override the family's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MaskRecipe {
    /// Masks start N(2, 1) (gates ≈ 0.88) and have their own Adam at lr 0.1. Measured with the
    /// PyTorch peer, this is the family where masks actually switch weights off.
    #[default]
    Adam,
    /// The paper's literal recipe: masks N(0, 1), W's optimizer at lr × 4T.
    Paper,
}

/// What the masks do once `binarize_after` switches the gate to `1[M > 0]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BinarizedMasks {
    /// The masks stop training; only W is fitted to the 1-bit model. A mask whose sign was
    /// wrong at the switch stays wrong.
    #[default]
    Frozen,
    /// The masks keep training through the straight-through gate (forward `1[M > 0]`,
    /// backward `σ'(M)`), with their optimizer state reset at the switch, so a sign found
    /// wrong after the switch can still flip. The reset matters: Adam's second moment remembers
    /// the soft phase's far larger gradients and would otherwise hold every mask still for
    /// hundreds of steps.
    Trained,
}

impl BinarizedMasks {
    /// Whether this is the default (`frozen`), which files leave out.
    pub fn is_frozen(&self) -> bool {
        *self == BinarizedMasks::Frozen
    }
}

/// Which implementation runs a training step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// gatekit's own fused forward/backward/update over plain f32 buffers, where it applies
    /// (f32 on the CPU); the reference otherwise.
    #[default]
    Fast,
    /// candle's autograd over the `Network` layers: slower, kept as the reference.
    Reference,
}

/// Resolved hyperparameters of a run: every value explicit. The run-wide values sit at the
/// top and the rest is grouped by what it controls, so a reader takes the group it needs
/// (`run.optimizer`, `run.gates`) instead of picking from 37 flat fields, and a new setting
/// has an obvious home. A field keeps its `[run]` key's name, so the file, the error messages
/// and the code say the same thing; only the key that names its group is renamed
/// (`optimizer` is `optimizer.kind`, `schedule` is `schedule.order`, `gate` is `gates.mode`).
///
/// The grouping is in Rust only: serde reads and writes the flat `[run]` table
/// (`config/run_table.rs`), key for key and in the order it always had, so task sets, run folders'
/// `config.toml`, the exported `gatekit.task_set` metadata and TensorBoard's hparams are
/// unchanged, and runs written before still open and resume.
/// (`Serialize` and `Deserialize` are implemented there, through `RunTable`, so this file does
/// not depend on its file form.)
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// The model file as written in the task set (informational once resolved).
    pub model: String,
    /// Training steps; each step is one batch of one task. With the sequential schedule, all
    /// phases together (`phase_steps` × tasks).
    pub steps: usize,
    /// Seed for data, init, masks and the task/batch sequence.
    pub seed: u64,
    /// f32 or f64.
    pub dtype: Precision,
    /// Which implementation trains (`fast` falls back to `reference` for f64).
    pub engine: EngineChoice,
    /// Initialisation of the shared weights: every strategy's, gated or plain, so it sits
    /// with the run-wide values rather than with the masks.
    pub w_init: WeightInit,
    /// How the shared weights learn.
    pub optimizer: WeightOptimizer,
    /// Which task each step trains, on how many examples, and whether W trains.
    pub schedule: TaskSchedule,
    /// When the run measures, logs and commits.
    pub evaluation: Evaluation,
    /// How masks gate the weights, and how the masks learn.
    pub gates: Gates,
    /// The continual-learning baselines' settings (`ewc`, `online-ewc`, `si`).
    pub continual: Continual,
}

/// The shared weights' optimizer and learning-rate schedule. The masks' optimizer takes its
/// momentum and β₂ from here too ([`RunConfig::mask_optimizer`]): one pair per run.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightOptimizer {
    /// The update rule of the shared weights (`[run]` key `optimizer`).
    pub kind: OptimizerKind,
    /// Learning rate of the shared weights.
    pub lr: f64,
    /// Momentum (`momentum` optimizer) or Adam's β₁.
    pub momentum: f64,
    /// Adam's β₂ (both parameter groups). 0.999 remembers early, large gradients for
    /// thousands of steps, which stalls masks whose gradients have become small.
    pub adam_beta2: f64,
    /// Schedule of W's learning rate.
    pub lr_schedule: Schedule,
    /// Steps over which W's learning rate ramps up linearly from 0.
    pub lr_warmup: usize,
}

/// Which task each step trains and on what: the task order (interleaved or in phases), the
/// batch, and whether the gated model's W trains in a phase. The sampler, the strategies'
/// fit to the order and the continual-learning summaries read this group.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSchedule {
    /// The order tasks are trained in: `interleaved` (the paper's) or `sequential` (`[run]`
    /// key `schedule`).
    pub order: TaskOrder,
    /// Steps of each task's phase (the sequential schedule only).
    pub phase_steps: Option<usize>,
    /// N: consecutive steps on a task once it is picked.
    pub steps_per_task: usize,
    /// When the gated model's W trains: `train`, `freeze-after-first` (sequential only) or
    /// `frozen`.
    pub w_policy: WPolicy,
    /// Examples per batch, drawn uniformly with replacement from the task's training set.
    pub batch_size: usize,
}

/// When a run measures, logs and commits: none of it changes what is trained, only what is
/// seen of it and how much a killed run loses.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Probe every K steps: the test metric on a fixed subset of each task's test split
    /// (`eval_subset` examples) and the training metric of the batches trained since the last
    /// probe. Default 10 (the paper's cadence) for image task sets, `steps / 10` otherwise.
    pub eval_every: usize,
    /// Test examples per task in a probe: a fixed, seeded draw of positions in the test split,
    /// the same for every strategy, run and resume (recorded in `metrics.jsonl`). 0 = the
    /// whole test split.
    pub eval_subset: usize,
    /// Full evaluation (whole test and training-limit splits, binarized model, mask shares,
    /// histograms) every K steps; none = at the end only. The last step always gets one.
    pub full_eval_every: Option<usize>,
    /// Also run the full evaluation before the first step (the step-0 point of the full
    /// curves); off by default, the step-0 probe gives the curves their start.
    pub full_eval_at_start: bool,
    /// Probe before the first step (the step-0 point of every curve); benchmarks turn it
    /// off so the first step starts right after loading.
    pub eval_at_start: bool,
    /// Training examples evaluated per task at each eval (the first N of the split).
    pub eval_train_limit: usize,
    /// Commit (checkpoint, state, log) every K steps: how much a killed run loses. Default: the
    /// smallest multiple of `eval_every` that is at least `steps / 10`. Full evaluations and
    /// the last step always commit.
    pub checkpoint_every: usize,
    /// Log the mean training loss every this many steps (the paper logged every 10).
    pub log_every: usize,
    /// Share of each task's training examples held out as a validation split (seeded by the
    /// run's seed and the task's position), never trained on; full evaluations then also
    /// measure it (split `val`), and a grid sweep selects on it. 0 (the default): none.
    pub val_fraction: f64,
    /// The split that choices are made on: what the probes measure (the curves every
    /// `eval_every` steps) and what a grid sweep ranks its configurations on. Default: `val`
    /// with a validation split, else `test`; `test` with a validation split is allowed and
    /// labelled as a selection on the test split.
    pub eval_split: EvalSplit,
}

/// The split probes measure and sweeps select on (`[run]` key `eval_split`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvalSplit {
    /// The task's test split.
    Test,
    /// The held-out share of the training split (`val_fraction`).
    Val,
}

impl EvalSplit {
    /// The default: the validation split when one is held out.
    pub fn default_for(val_fraction: f64) -> Self {
        if val_fraction > 0.0 {
            EvalSplit::Val
        } else {
            EvalSplit::Test
        }
    }

    /// `test` or `val`, as `metrics.jsonl` records name the split.
    pub fn as_str(self) -> &'static str {
        match self {
            EvalSplit::Test => "test",
            EvalSplit::Val => "val",
        }
    }
}

/// How masks gate the shared weights (θ = W ⊙ g(M_t)) and how the masks themselves learn:
/// everything that only the gated model reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Gates {
    /// How masks gate weights (`[run]` key `gate`).
    pub mode: GateMode,
    /// From this step on the masks are binarized (forward `1[M > 0]`) and frozen, and only W
    /// trains: soft gates find the masks, then W is fitted to the deployed 1-bit model.
    pub binarize_after: Option<usize>,
    /// Whether masks keep training after `binarize_after` (`[run]` key `binarized_masks`).
    pub binarized_masks: BinarizedMasks,
    /// Final HAT scale `s` (gate = `hat`).
    pub hat_max_scale: f64,
    /// The family the mask settings below came from.
    pub mask_recipe: MaskRecipe,
    /// Optimizer of the masks.
    pub mask_optimizer: OptimizerKind,
    /// Learning rate of the masks (resolved from `mask_lr_scale` when not given).
    pub mask_lr: f64,
    /// Schedule of the masks' learning rate.
    pub mask_lr_schedule: Schedule,
    /// Steps over which the masks' learning rate ramps up linearly from 0: lets W settle on
    /// the all-tasks average (right-signed wherever some task uses a weight) before masks move.
    pub mask_lr_warmup: usize,
    /// Mask lr as a multiple of `lr` (`"4T"` or a number); used only when `mask_lr` is not
    /// given (the `paper` recipe, or an `adam` recipe that sets a scale).
    pub mask_lr_scale: String,
    /// Masks start i.i.d. N(mean, std²): `[mean, std]`.
    pub mask_init: [f64; 2],
    /// Penalty on masks near 0.
    pub mask_regularizer: Regularizer,
    /// Weight of the penalty.
    pub mask_regularizer_weight: f64,
}

/// The settings of the continual-learning baselines that protect earlier tasks with a
/// quadratic penalty on W (EWC, online EWC, SI; see `crate::learn::Consolidation`): read only
/// by those strategies. Their defaults are the reference code's (van de Ven & Tolias,
/// `GMvandeVen/continual-learning`, `param_values.py`) for permuted MNIST in Task-IL; the
/// published values were tuned on the test sets, so set them to the table you compare with.
#[derive(Debug, Clone, PartialEq)]
pub struct Continual {
    /// EWC's λ: the penalty is λ/2 Σ_i F_i (θ_i − θ*_i)² (`[run]` key `ewc_lambda`).
    pub ewc_lambda: f64,
    /// Online EWC's decay γ of the running Fisher, F ← γF + F_new, in [0, 1].
    pub ewc_gamma: f64,
    /// Training examples of the finished task whose per-example gradients estimate its
    /// diagonal Fisher (fewer when the task has fewer).
    pub ewc_samples: usize,
    /// SI's strength c: the penalty is c Σ_i Ω_i (θ_i − θ*_i)².
    pub si_c: f64,
    /// SI's damping ξ in Ω_i += ω_i / (Δ_i² + ξ).
    pub si_xi: f64,
    /// The continual-learning scenario (`task`, `domain`, `class`); none: the scenario is
    /// not set, and as before it existed the gated model is told the task while the plain
    /// models share one head without it.
    pub scenario: Option<Scenario>,
    /// XdG's share of each hidden layer's units gated off per task, in [0, 1).
    pub xdg_share_off: f64,
    /// Whether XdG's gate switches off a unit's bias with its weights (the unit outputs 0, as
    /// Masse et al. gate the activity) or only its weights (it outputs ReLU(b), as van de Ven &
    /// Tolias's code gates the product `x·Wᵀ` before adding the bias).
    pub xdg_gate_bias: bool,
}

/// Defaults of [`Continual`] (a `[run]` table without the keys gets these, and a config
/// holding them writes no key, so run folders written before keep their bytes).
impl Default for Continual {
    fn default() -> Self {
        Continual {
            ewc_lambda: DEFAULT_EWC_LAMBDA,
            ewc_gamma: DEFAULT_EWC_GAMMA,
            ewc_samples: DEFAULT_EWC_SAMPLES,
            si_c: DEFAULT_SI_C,
            si_xi: DEFAULT_SI_XI,
            scenario: None,
            xdg_share_off: DEFAULT_XDG_SHARE_OFF,
            xdg_gate_bias: true,
        }
    }
}

/// EWC's λ when not given: the reference code's for permuted MNIST (Task-IL and Domain-IL).
pub const DEFAULT_EWC_LAMBDA: f64 = 100.0;
/// Online EWC's γ when not given: 1 (no decay), the reference code's default.
pub const DEFAULT_EWC_GAMMA: f64 = 1.0;
/// Examples per Fisher estimate when not given.
pub const DEFAULT_EWC_SAMPLES: usize = 1000;
/// SI's c when not given: the reference code's for permuted MNIST Task-IL (and split MNIST).
pub const DEFAULT_SI_C: f64 = 10.0;
/// SI's ξ when not given: the reference code's `epsilon`.
pub const DEFAULT_SI_XI: f64 = 0.1;
/// XdG's default share of hidden units off per task: 0.8, the gating proportion of Masse et
/// al.'s reference code (van de Ven & Tolias's `param_values.py` uses 0.9 for split MNIST
/// and 0.6 for permuted MNIST in Task-IL).
pub const DEFAULT_XDG_SHARE_OFF: f64 = 0.8;

/// Test examples per task in a probe, when the task set does not say.
pub const DEFAULT_EVAL_SUBSET: usize = 500;

impl RunConfig {
    /// The mask initialisation.
    pub fn mask_init(&self) -> MaskInit {
        MaskInit {
            mean: self.gates.mask_init[0],
            std: self.gates.mask_init[1],
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRun {
    pub(crate) model: Option<String>,
    steps: Option<i64>,
    schedule: Option<TaskOrder>,
    phase_steps: Option<i64>,
    w_policy: Option<WPolicy>,
    batch_size: Option<i64>,
    optimizer: Option<OptimizerKind>,
    lr: Option<f64>,
    momentum: Option<f64>,
    lr_schedule: Option<Schedule>,
    lr_warmup: Option<i64>,
    mask_lr_warmup: Option<i64>,
    adam_beta2: Option<f64>,
    mask_lr_schedule: Option<Schedule>,
    steps_per_task: Option<i64>,
    pub(crate) eval_every: Option<i64>,
    eval_subset: Option<i64>,
    full_eval_every: Option<i64>,
    full_eval_at_start: Option<bool>,
    pub(crate) checkpoint_every: Option<i64>,
    log_every: Option<i64>,
    seed: Option<i64>,
    dtype: Option<Precision>,
    gate: Option<GateMode>,
    hat_max_scale: Option<f64>,
    binarize_after: Option<i64>,
    binarized_masks: Option<BinarizedMasks>,
    w_init: Option<WeightInit>,
    mask_recipe: Option<MaskRecipe>,
    mask_optimizer: Option<OptimizerKind>,
    mask_lr: Option<f64>,
    mask_lr_scale: Option<toml::Value>,
    mask_init: Option<Vec<f64>>,
    mask_regularizer: Option<Regularizer>,
    mask_regularizer_weight: Option<f64>,
    eval_train_limit: Option<i64>,
    engine: Option<EngineChoice>,
    eval_at_start: Option<bool>,
    val_fraction: Option<f64>,
    eval_split: Option<EvalSplit>,
    ewc_lambda: Option<f64>,
    ewc_gamma: Option<f64>,
    ewc_samples: Option<i64>,
    si_c: Option<f64>,
    si_xi: Option<f64>,
    scenario: Option<Scenario>,
    xdg_share_off: Option<f64>,
    xdg_gate_bias: Option<bool>,
}

/// Probe cadence of image task sets when `eval_every` is not given: the paper's.
pub(crate) const IMAGE_EVAL_EVERY: usize = 10;

/// Whether a task kind classifies images (its parameters include the image kinds' `channels`
/// and `dataset`): such sets default to probing every [`IMAGE_EVAL_EVERY`] steps.
pub(crate) fn is_image_kind(kind: &str) -> bool {
    crate::task::kinds().iter().any(|k| {
        k.name == kind
            && ["channels", "dataset"]
                .iter()
                .all(|p| k.params.iter().any(|s| s.name == *p))
    })
}

/// The smallest multiple of `eval_every` that is at least a tenth of the run (so commits land
/// on probe steps, about ten per run).
pub fn default_checkpoint_every(steps: usize, eval_every: usize) -> usize {
    let tenth = (steps / 10).max(1);
    tenth.div_ceil(eval_every.max(1)) * eval_every.max(1)
}

fn positive(at: &str, field: &str, v: Option<i64>, default: i64) -> Result<usize> {
    let v = v.unwrap_or(default);
    usize::try_from(v).ok().filter(|&u| u > 0).ok_or_else(|| {
        Error::config(
            at,
            format!("run.{field}"),
            format!("must be a positive integer, got {v}"),
        )
    })
}

fn non_negative(at: &str, field: &str, v: Option<i64>) -> Result<usize> {
    let v = v.unwrap_or(0);
    usize::try_from(v).map_err(|_| {
        Error::config(
            at,
            format!("run.{field}"),
            format!("must be a non-negative integer, got {v}"),
        )
    })
}

fn finite(at: &str, field: &str, v: f64, min: f64, inclusive: bool) -> Result<f64> {
    let ok = v.is_finite() && if inclusive { v >= min } else { v > min };
    if ok {
        Ok(v)
    } else {
        let op = if inclusive { "≥" } else { ">" };
        Err(Error::config(
            at,
            format!("run.{field}"),
            format!("must be a finite number {op} {min}, got {v}"),
        ))
    }
}

pub(crate) fn resolve_run(at: &str, raw: RawRun, num_tasks: usize) -> Result<RunConfig> {
    let schedule = raw.schedule.unwrap_or_default();
    let (steps, phase_steps) = resolve_phases(at, &raw, schedule, num_tasks)?;
    let w_policy = raw.w_policy.unwrap_or_default();
    if w_policy == WPolicy::FreezeAfterFirst && schedule != TaskOrder::Sequential {
        return Err(Error::config(
            at,
            "run.w_policy",
            "\"freeze-after-first\" needs run.schedule = \"sequential\" (the interleaved schedule has no first phase); use \"train\" or \"frozen\"",
        ));
    }
    let optimizer = raw.optimizer.unwrap_or(OptimizerKind::Sgd);
    let lr = finite(at, "lr", raw.lr.unwrap_or(0.01), 0.0, false)?;
    let masks = mask_settings(at, &raw, optimizer, lr, num_tasks)?;
    let seed = raw.seed.unwrap_or(0);
    let seed = u64::try_from(seed).map_err(|_| {
        Error::config(
            at,
            "run.seed",
            format!("must be a non-negative integer, got {seed}"),
        )
    })?;
    let run = RunConfig {
        model: raw.model.clone().unwrap_or_else(|| "<inline>".into()),
        steps,
        seed,
        dtype: raw.dtype.unwrap_or_default(),
        engine: raw.engine.unwrap_or_default(),
        w_init: raw.w_init.unwrap_or_default(),
        optimizer: weight_optimizer(at, &raw, optimizer, lr)?,
        schedule: TaskSchedule {
            order: schedule,
            phase_steps,
            steps_per_task: positive(at, "steps_per_task", raw.steps_per_task, 1)?,
            w_policy,
            batch_size: positive(at, "batch_size", raw.batch_size, 32)?,
        },
        evaluation: evaluation(at, &raw, steps)?,
        gates: gates(at, &raw, masks)?,
        continual: continual(at, &raw)?,
    };
    run.check_rates(at)?;
    Ok(run)
}

/// W's optimizer group: the rule and rate resolved by [`resolve_run`], the rest checked here.
fn weight_optimizer(
    at: &str,
    raw: &RawRun,
    kind: OptimizerKind,
    lr: f64,
) -> Result<WeightOptimizer> {
    Ok(WeightOptimizer {
        kind,
        lr,
        momentum: below_one(at, "momentum", raw.momentum.unwrap_or(0.9))?,
        adam_beta2: below_one(at, "adam_beta2", raw.adam_beta2.unwrap_or(0.999))?,
        lr_schedule: raw.lr_schedule.unwrap_or_default(),
        lr_warmup: non_negative(at, "lr_warmup", raw.lr_warmup)?,
    })
}

/// The evaluation group. `eval_every` defaults to a tenth of the run here; image sets and the
/// commit cadence get their defaults in `TaskSet::parse_with`, which knows the tasks.
fn evaluation(at: &str, raw: &RawRun, steps: usize) -> Result<Evaluation> {
    let val_fraction = match raw.val_fraction {
        None => 0.0,
        Some(v) if v.is_finite() && (0.0..1.0).contains(&v) => v,
        Some(v) => {
            return Err(Error::config(
                at,
                "run.val_fraction",
                format!(
                    "must be at least 0 and below 1 (the share of training examples held out, e.g. 0.0833 for MNIST's 5,000 of 60,000), got {v}"
                ),
            ));
        }
    };
    Ok(Evaluation {
        eval_every: positive(at, "eval_every", raw.eval_every, (steps as i64 / 10).max(1))?,
        eval_subset: match raw.eval_subset {
            None => DEFAULT_EVAL_SUBSET,
            Some(v) => usize::try_from(v).map_err(|_| {
                Error::config(
                    at,
                    "run.eval_subset",
                    format!(
                        "must be a non-negative integer (test examples per task in a probe; 0 = the whole test split), got {v}"
                    ),
                )
            })?,
        },
        full_eval_every: match raw.full_eval_every {
            None => None,
            Some(v) => Some(positive(at, "full_eval_every", Some(v), 1)?),
        },
        full_eval_at_start: raw.full_eval_at_start.unwrap_or(false),
        eval_at_start: raw.eval_at_start.unwrap_or(true),
        eval_train_limit: positive(at, "eval_train_limit", raw.eval_train_limit, 2000)?,
        checkpoint_every: match raw.checkpoint_every {
            None => 0,
            Some(v) => positive(at, "checkpoint_every", Some(v), 1)?,
        },
        log_every: positive(at, "log_every", raw.log_every, 10)?,
        val_fraction,
        eval_split: eval_split(at, raw.eval_split, val_fraction)?,
    })
}

/// `eval_split`: given, or the default for `val_fraction`; `val` without a validation split
/// is refused.
fn eval_split(at: &str, given: Option<EvalSplit>, val_fraction: f64) -> Result<EvalSplit> {
    match given {
        Some(EvalSplit::Val) if val_fraction == 0.0 => Err(Error::config(
            at,
            "run.eval_split",
            "= \"val\" needs a validation split: set val_fraction (e.g. 0.0833333, MNIST's 5,000 of 60,000) or use \"test\"".to_string(),
        )),
        Some(split) => Ok(split),
        None => Ok(EvalSplit::default_for(val_fraction)),
    }
}

/// The continual-learning baselines' group ([`Continual`]).
fn continual(at: &str, raw: &RawRun) -> Result<Continual> {
    let gamma = finite(
        at,
        "ewc_gamma",
        raw.ewc_gamma.unwrap_or(DEFAULT_EWC_GAMMA),
        0.0,
        true,
    )?;
    if gamma > 1.0 {
        return Err(Error::config(
            at,
            "run.ewc_gamma",
            format!("must be in [0, 1] (the running Fisher's decay), got {gamma}"),
        ));
    }
    let share = finite(
        at,
        "xdg_share_off",
        raw.xdg_share_off.unwrap_or(DEFAULT_XDG_SHARE_OFF),
        0.0,
        true,
    )?;
    if share >= 1.0 {
        return Err(Error::config(
            at,
            "run.xdg_share_off",
            format!(
                "must be in [0, 1) (the share of hidden units XdG gates off per task), got {share}"
            ),
        ));
    }
    Ok(Continual {
        ewc_lambda: finite(
            at,
            "ewc_lambda",
            raw.ewc_lambda.unwrap_or(DEFAULT_EWC_LAMBDA),
            0.0,
            true,
        )?,
        ewc_gamma: gamma,
        ewc_samples: positive(
            at,
            "ewc_samples",
            raw.ewc_samples,
            DEFAULT_EWC_SAMPLES as i64,
        )?,
        si_c: finite(at, "si_c", raw.si_c.unwrap_or(DEFAULT_SI_C), 0.0, true)?,
        si_xi: finite(at, "si_xi", raw.si_xi.unwrap_or(DEFAULT_SI_XI), 0.0, false)?,
        scenario: raw.scenario,
        xdg_share_off: share,
        xdg_gate_bias: raw.xdg_gate_bias.unwrap_or(true),
    })
}

/// The masks' settings that follow from the recipe and W's optimizer ([`mask_settings`]).
struct MaskSettings {
    recipe: MaskRecipe,
    optimizer: OptimizerKind,
    lr: f64,
    scale_text: String,
    init: [f64; 2],
}

/// The gates group: the recipe's mask settings, the rest checked here.
fn gates(at: &str, raw: &RawRun, masks: MaskSettings) -> Result<Gates> {
    Ok(Gates {
        mode: raw.gate.unwrap_or_default(),
        binarize_after: match raw.binarize_after {
            None => None,
            Some(v) => Some(usize::try_from(v).map_err(|_| {
                Error::config(
                    at,
                    "run.binarize_after",
                    format!("must be a non-negative step, got {v}"),
                )
            })?),
        },
        binarized_masks: match (raw.binarized_masks, raw.binarize_after) {
            (Some(BinarizedMasks::Trained), None) => {
                return Err(Error::config(
                    at,
                    "run.binarized_masks",
                    "\"trained\" says what masks do after `binarize_after`, which is not set; \
                     set `binarize_after = STEP` or remove `binarized_masks`"
                        .to_string(),
                ));
            }
            (m, _) => m.unwrap_or_default(),
        },
        hat_max_scale: finite(
            at,
            "hat_max_scale",
            raw.hat_max_scale.unwrap_or(50.0),
            1.0,
            true,
        )?,
        mask_recipe: masks.recipe,
        mask_optimizer: masks.optimizer,
        mask_lr: finite(at, "mask_lr", masks.lr, 0.0, false)?,
        mask_lr_schedule: raw.mask_lr_schedule.unwrap_or_default(),
        mask_lr_warmup: non_negative(at, "mask_lr_warmup", raw.mask_lr_warmup)?,
        mask_lr_scale: masks.scale_text,
        mask_init: masks.init,
        mask_regularizer: raw.mask_regularizer.unwrap_or_default(),
        mask_regularizer_weight: finite(
            at,
            "mask_regularizer_weight",
            raw.mask_regularizer_weight.unwrap_or(0.0),
            0.0,
            true,
        )?,
    })
}

/// `mask_lr_scale` as written (a number, or `"kT"`: k times the task count) and its value;
/// `"4T"` when not given.
fn mask_lr_scale(at: &str, raw: &Option<toml::Value>, num_tasks: usize) -> Result<(String, f64)> {
    Ok(match raw {
        None => ("4T".to_string(), 4.0 * num_tasks as f64),
        Some(toml::Value::Float(f)) => (f.to_string(), *f),
        Some(toml::Value::Integer(i)) => (i.to_string(), *i as f64),
        Some(toml::Value::String(s)) => {
            let factor = s.strip_suffix('T').and_then(|k| {
                if k.is_empty() {
                    Some(1.0)
                } else {
                    k.trim().parse::<f64>().ok()
                }
            });
            match factor {
                Some(k) => (s.clone(), k * num_tasks as f64),
                None => {
                    return Err(Error::config(
                        at,
                        "run.mask_lr_scale",
                        format!("must be a number or \"kT\" (e.g. \"4T\"), got \"{s}\""),
                    ));
                }
            }
        }
        Some(v) => {
            return Err(Error::config(
                at,
                "run.mask_lr_scale",
                format!("must be a number or \"kT\", got `{v}`"),
            ));
        }
    })
}

/// The masks' recipe, optimizer, learning rate (and the scale it may come from) and initial
/// `[mean, std]`: the recipe's family values, overridden by explicit `mask_*` keys.
fn mask_settings(
    at: &str,
    raw: &RawRun,
    optimizer: OptimizerKind,
    lr: f64,
    num_tasks: usize,
) -> Result<MaskSettings> {
    let recipe = raw.mask_recipe.unwrap_or_default();
    let (scale_text, scale) = mask_lr_scale(at, &raw.mask_lr_scale, num_tasks)?;
    finite(at, "mask_lr_scale", scale, 0.0, false)?;
    let (mask_optimizer, mask_lr, mask_init) = match recipe {
        MaskRecipe::Adam => (
            raw.mask_optimizer.unwrap_or(OptimizerKind::Adam),
            match (raw.mask_lr, &raw.mask_lr_scale) {
                (Some(v), _) => v,
                (None, Some(_)) => lr * scale,
                (None, None) => 0.1,
            },
            [2.0, 1.0],
        ),
        MaskRecipe::Paper => (
            raw.mask_optimizer.unwrap_or(optimizer),
            raw.mask_lr.unwrap_or(lr * scale),
            [0.0, 1.0],
        ),
    };
    let mask_init = match &raw.mask_init {
        None => mask_init,
        Some(v) => match v[..] {
            [mean, std] if mean.is_finite() && std.is_finite() && std >= 0.0 => [mean, std],
            _ => {
                return Err(Error::config(
                    at,
                    "run.mask_init",
                    format!("must be [mean, std] with std ≥ 0, got {v:?}"),
                ));
            }
        },
    };
    Ok(MaskSettings {
        recipe,
        optimizer: mask_optimizer,
        lr: mask_lr,
        scale_text,
        init: mask_init,
    })
}

/// A value in `[0, 1)` (momentum, Adam's β₂).
fn below_one(at: &str, field: &str, v: f64) -> Result<f64> {
    if !(0.0..1.0).contains(&v) {
        return Err(Error::config(
            at,
            format!("run.{field}"),
            format!("must be in [0, 1), got {v}"),
        ));
    }
    Ok(v)
}

/// Total steps and steps per phase. Sequential: `phase_steps` per task, `steps` (if given)
/// must be their product; or `steps` alone, divisible by the number of tasks.
fn resolve_phases(
    at: &str,
    raw: &RawRun,
    schedule: TaskOrder,
    num_tasks: usize,
) -> Result<(usize, Option<usize>)> {
    match (schedule, raw.phase_steps) {
        (TaskOrder::Interleaved, Some(_)) => Err(Error::config(
            at,
            "run.phase_steps",
            "is only for run.schedule = \"sequential\" (the interleaved schedule has no phases); remove it or set the schedule",
        )),
        (TaskOrder::Interleaved, None) => Ok((positive(at, "steps", raw.steps, 1000)?, None)),
        (TaskOrder::Sequential, Some(_)) => {
            let phase = positive(at, "phase_steps", raw.phase_steps, 1)?;
            let total = phase * num_tasks.max(1);
            match raw.steps {
                Some(s) if s != total as i64 => Err(Error::config(
                    at,
                    "run.steps",
                    format!(
                        "is {s}, but phase_steps = {phase} for {num_tasks} tasks makes {total}; give one of the two"
                    ),
                )),
                _ => Ok((total, Some(phase))),
            }
        }
        (TaskOrder::Sequential, None) => {
            let steps = positive(at, "steps", raw.steps, 1000)?;
            if num_tasks == 0 || !steps.is_multiple_of(num_tasks) || steps < num_tasks {
                return Err(Error::config(
                    at,
                    "run.steps",
                    format!(
                        "is {steps}, which does not split into {num_tasks} equal phases; set run.phase_steps (steps per task) instead"
                    ),
                ));
            }
            Ok((steps, Some(steps / num_tasks)))
        }
    }
}

impl RunConfig {
    /// The shared weights' optimizer.
    pub fn w_optimizer(&self) -> OptimizerConfig {
        OptimizerConfig {
            kind: self.optimizer.kind,
            lr: self.optimizer.lr,
            momentum: self.optimizer.momentum,
            beta2: self.optimizer.adam_beta2,
        }
    }

    /// The masks' optimizer (same momentum and β₂ as W's).
    pub fn mask_optimizer(&self) -> OptimizerConfig {
        OptimizerConfig {
            kind: self.gates.mask_optimizer,
            lr: self.gates.mask_lr,
            ..self.w_optimizer()
        }
    }

    /// The phase (0-based) that step `step` (0-based) belongs to: always 0 for the
    /// interleaved schedule.
    pub fn phase_of(&self, step: usize) -> usize {
        self.schedule.phase_steps.map_or(0, |p| step / p.max(1))
    }

    /// Learning rates must be finite in the run's dtype (1e300 is a valid f64 but `inf` in
    /// f32, which would turn every weight into NaN at the first step).
    pub fn check_rates(&self, origin: &str) -> Result<()> {
        self.check_rate(origin, "run.lr", self.optimizer.lr)?;
        self.check_rate(origin, "run.mask_lr", self.gates.mask_lr)
    }

    /// One learning rate `v`, named `field` in `origin` (`run.lr` of a file, `--lr` of the
    /// command line), checked as [`RunConfig::check_rates`] does.
    pub fn check_rate(&self, origin: &str, field: &str, v: f64) -> Result<()> {
        let finite = match self.dtype.dtype() {
            candle_core::DType::F32 => (v as f32).is_finite(),
            _ => v.is_finite(),
        };
        if !finite || v <= 0.0 {
            return Err(Error::config(
                origin,
                field,
                format!(
                    "must be a positive number that is finite in {:?} (at most {:e}), got {v:e}",
                    self.dtype.dtype(),
                    match self.dtype.dtype() {
                        candle_core::DType::F32 => f64::from(f32::MAX),
                        _ => f64::MAX,
                    }
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::RunConfig;
    use crate::config::TaskSet;

    /// The grouping stays in Rust: serde sees the one flat `[run]` table, with each group's
    /// fields under their file keys (a renamed field under its group's key), reads it back
    /// into the same groups, and still refuses a key it does not know.
    #[test]
    fn serde_sees_the_flat_run_table() {
        let mut run = TaskSet::builtin().expect("built-in set").run;
        run.gates.binarize_after = Some(7);
        let json = serde_json::to_value(&run).expect("json");
        let map = json.as_object().expect("a flat object");
        // 37 keys; `phase_steps` and `full_eval_every` are left out when unset.
        assert_eq!(map.len(), 35, "{map:?}");
        assert!(map.values().all(|v| !v.is_object()), "{map:?}");
        assert_eq!(map["optimizer"], "adam");
        assert_eq!(map["lr"], 0.003);
        assert_eq!(map["schedule"], "interleaved");
        assert_eq!(map["gate"], "sigmoid");
        assert_eq!(map["binarize_after"], 7);
        assert_eq!(map["eval_every"], 500);
        let text = toml::to_string(&run).expect("toml");
        let back: RunConfig = toml::from_str(&text).expect("read back");
        assert_eq!(back, run);
        let err = toml::from_str::<RunConfig>(&format!("{text}bogus = 1\n")).expect_err("unknown");
        assert!(err.to_string().contains("unknown field `bogus`"), "{err}");
    }
}
