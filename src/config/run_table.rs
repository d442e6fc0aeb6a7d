//! The resolved `[run]` table as files hold it: flat keys in a fixed order. [`RunConfig`] is
//! serialized and deserialized through [`RunTable`], so its grouping never reaches a file: a
//! run folder's `config.toml`, the exported `gatekit.task_set` metadata and TensorBoard's
//! hparams keep the keys, the order and the bytes they had before the grouping, and unknown
//! keys are still refused (serde's `flatten` would have lost `deny_unknown_fields`).

use super::run_config::{
    BinarizedMasks, Continual, DEFAULT_EVAL_SUBSET, DEFAULT_EWC_GAMMA, DEFAULT_EWC_LAMBDA,
    DEFAULT_EWC_SAMPLES, DEFAULT_SI_C, DEFAULT_SI_XI, DEFAULT_XDG_SHARE_OFF, EngineChoice,
    EvalSplit, Evaluation, Gates, MaskRecipe, Precision, RunConfig, TaskSchedule, WeightOptimizer,
};
use super::{OptimizerKind, Scenario, Schedule, TaskOrder, WPolicy};
use crate::gate::{GateMode, Regularizer};
use crate::model::WeightInit;
use serde::{Deserialize, Serialize};

/// [`RunConfig`] as one flat table. The field order is the file's key order (serde writes
/// fields in declaration order): do not reorder. Each field means what the [`RunConfig`]
/// field of the same name (or its group's renamed one) says.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunTable {
    model: String,
    steps: usize,
    #[serde(default)]
    schedule: TaskOrder,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    phase_steps: Option<usize>,
    #[serde(default)]
    w_policy: WPolicy,
    batch_size: usize,
    optimizer: OptimizerKind,
    lr: f64,
    momentum: f64,
    adam_beta2: f64,
    lr_schedule: Schedule,
    lr_warmup: usize,
    steps_per_task: usize,
    eval_every: usize,
    #[serde(default = "default_eval_subset")]
    eval_subset: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    full_eval_every: Option<usize>,
    #[serde(default)]
    full_eval_at_start: bool,
    #[serde(default)]
    checkpoint_every: usize,
    log_every: usize,
    seed: u64,
    dtype: Precision,
    gate: GateMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    binarize_after: Option<usize>,
    #[serde(default, skip_serializing_if = "BinarizedMasks::is_frozen")]
    binarized_masks: BinarizedMasks,
    hat_max_scale: f64,
    w_init: WeightInit,
    mask_recipe: MaskRecipe,
    mask_optimizer: OptimizerKind,
    mask_lr: f64,
    mask_lr_schedule: Schedule,
    mask_lr_warmup: usize,
    mask_lr_scale: String,
    mask_init: [f64; 2],
    mask_regularizer: Regularizer,
    mask_regularizer_weight: f64,
    eval_train_limit: usize,
    #[serde(default)]
    engine: EngineChoice,
    #[serde(default = "yes")]
    eval_at_start: bool,
    /// Absent when 0, so the config.toml of a run without a validation split keeps its bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    val_fraction: f64,
    /// Absent when it is the default for `val_fraction` (`val` with one, else `test`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    eval_split: Option<EvalSplit>,
    // The continual-learning baselines' keys come last and only when they differ from their
    // defaults: a config that never set them keeps the bytes it had before they existed.
    #[serde(default = "ewc_lambda", skip_serializing_if = "is_ewc_lambda")]
    ewc_lambda: f64,
    #[serde(default = "ewc_gamma", skip_serializing_if = "is_ewc_gamma")]
    ewc_gamma: f64,
    #[serde(default = "ewc_samples", skip_serializing_if = "is_ewc_samples")]
    ewc_samples: usize,
    #[serde(default = "si_c", skip_serializing_if = "is_si_c")]
    si_c: f64,
    #[serde(default = "si_xi", skip_serializing_if = "is_si_xi")]
    si_xi: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scenario: Option<Scenario>,
    #[serde(default = "xdg_share_off", skip_serializing_if = "is_xdg_share_off")]
    xdg_share_off: f64,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    xdg_gate_bias: bool,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn ewc_lambda() -> f64 {
    DEFAULT_EWC_LAMBDA
}
fn is_ewc_lambda(v: &f64) -> bool {
    *v == DEFAULT_EWC_LAMBDA
}
fn ewc_gamma() -> f64 {
    DEFAULT_EWC_GAMMA
}
fn is_ewc_gamma(v: &f64) -> bool {
    *v == DEFAULT_EWC_GAMMA
}
fn ewc_samples() -> usize {
    DEFAULT_EWC_SAMPLES
}
fn is_ewc_samples(v: &usize) -> bool {
    *v == DEFAULT_EWC_SAMPLES
}
fn si_c() -> f64 {
    DEFAULT_SI_C
}
fn is_si_c(v: &f64) -> bool {
    *v == DEFAULT_SI_C
}
fn si_xi() -> f64 {
    DEFAULT_SI_XI
}
fn is_si_xi(v: &f64) -> bool {
    *v == DEFAULT_SI_XI
}

fn xdg_share_off() -> f64 {
    DEFAULT_XDG_SHARE_OFF
}
fn is_xdg_share_off(v: &f64) -> bool {
    *v == DEFAULT_XDG_SHARE_OFF
}

fn yes() -> bool {
    true
}
fn is_true(v: &bool) -> bool {
    *v
}

fn default_eval_subset() -> usize {
    DEFAULT_EVAL_SUBSET
}

impl From<RunConfig> for RunTable {
    fn from(run: RunConfig) -> Self {
        // Destructured in full, so a field added to a group and not to the table is a
        // compile error rather than a key silently missing from config.toml.
        let RunConfig {
            model,
            steps,
            seed,
            dtype,
            engine,
            w_init,
            optimizer:
                WeightOptimizer {
                    kind: optimizer,
                    lr,
                    momentum,
                    adam_beta2,
                    lr_schedule,
                    lr_warmup,
                },
            schedule:
                TaskSchedule {
                    order: schedule,
                    phase_steps,
                    steps_per_task,
                    w_policy,
                    batch_size,
                },
            evaluation:
                Evaluation {
                    eval_every,
                    eval_subset,
                    full_eval_every,
                    full_eval_at_start,
                    eval_at_start,
                    eval_train_limit,
                    checkpoint_every,
                    log_every,
                    val_fraction,
                    eval_split,
                },
            gates:
                Gates {
                    mode: gate,
                    binarize_after,
                    binarized_masks,
                    hat_max_scale,
                    mask_recipe,
                    mask_optimizer,
                    mask_lr,
                    mask_lr_schedule,
                    mask_lr_warmup,
                    mask_lr_scale,
                    mask_init,
                    mask_regularizer,
                    mask_regularizer_weight,
                },
            continual:
                Continual {
                    ewc_lambda,
                    ewc_gamma,
                    ewc_samples,
                    si_c,
                    si_xi,
                    scenario,
                    xdg_share_off,
                    xdg_gate_bias,
                },
        } = run;
        RunTable {
            model,
            steps,
            schedule,
            phase_steps,
            w_policy,
            batch_size,
            optimizer,
            lr,
            momentum,
            adam_beta2,
            lr_schedule,
            lr_warmup,
            steps_per_task,
            eval_every,
            eval_subset,
            full_eval_every,
            full_eval_at_start,
            checkpoint_every,
            log_every,
            seed,
            dtype,
            gate,
            binarize_after,
            binarized_masks,
            hat_max_scale,
            w_init,
            mask_recipe,
            mask_optimizer,
            mask_lr,
            mask_lr_schedule,
            mask_lr_warmup,
            mask_lr_scale,
            mask_init,
            mask_regularizer,
            mask_regularizer_weight,
            eval_train_limit,
            engine,
            eval_at_start,
            val_fraction,
            eval_split: (eval_split != EvalSplit::default_for(val_fraction)).then_some(eval_split),
            ewc_lambda,
            ewc_gamma,
            ewc_samples,
            si_c,
            si_xi,
            scenario,
            xdg_share_off,
            xdg_gate_bias,
        }
    }
}

impl From<RunTable> for RunConfig {
    fn from(t: RunTable) -> Self {
        RunConfig {
            model: t.model,
            steps: t.steps,
            seed: t.seed,
            dtype: t.dtype,
            engine: t.engine,
            w_init: t.w_init,
            optimizer: WeightOptimizer {
                kind: t.optimizer,
                lr: t.lr,
                momentum: t.momentum,
                adam_beta2: t.adam_beta2,
                lr_schedule: t.lr_schedule,
                lr_warmup: t.lr_warmup,
            },
            schedule: TaskSchedule {
                order: t.schedule,
                phase_steps: t.phase_steps,
                steps_per_task: t.steps_per_task,
                w_policy: t.w_policy,
                batch_size: t.batch_size,
            },
            evaluation: Evaluation {
                eval_every: t.eval_every,
                eval_subset: t.eval_subset,
                full_eval_every: t.full_eval_every,
                full_eval_at_start: t.full_eval_at_start,
                eval_at_start: t.eval_at_start,
                eval_train_limit: t.eval_train_limit,
                checkpoint_every: t.checkpoint_every,
                log_every: t.log_every,
                val_fraction: t.val_fraction,
                eval_split: t
                    .eval_split
                    .unwrap_or(EvalSplit::default_for(t.val_fraction)),
            },
            gates: Gates {
                mode: t.gate,
                binarize_after: t.binarize_after,
                binarized_masks: t.binarized_masks,
                hat_max_scale: t.hat_max_scale,
                mask_recipe: t.mask_recipe,
                mask_optimizer: t.mask_optimizer,
                mask_lr: t.mask_lr,
                mask_lr_schedule: t.mask_lr_schedule,
                mask_lr_warmup: t.mask_lr_warmup,
                mask_lr_scale: t.mask_lr_scale,
                mask_init: t.mask_init,
                mask_regularizer: t.mask_regularizer,
                mask_regularizer_weight: t.mask_regularizer_weight,
            },
            continual: Continual {
                ewc_lambda: t.ewc_lambda,
                ewc_gamma: t.ewc_gamma,
                ewc_samples: t.ewc_samples,
                si_c: t.si_c,
                si_xi: t.si_xi,
                scenario: t.scenario,
                xdg_share_off: t.xdg_share_off,
                xdg_gate_bias: t.xdg_gate_bias,
            },
        }
    }
}

/// `RunConfig` is written as the flat [`RunTable`].
impl Serialize for RunConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RunTable::from(self.clone()).serialize(serializer)
    }
}

/// `RunConfig` is read from the flat [`RunTable`] (unknown keys refused).
impl<'de> Deserialize<'de> for RunConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        RunTable::deserialize(deserializer).map(RunConfig::from)
    }
}
