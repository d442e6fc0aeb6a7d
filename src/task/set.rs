//! Task-set files: a `[run]` table of hyperparameters, an optional `[defaults]` table of task
//! parameters shared by every task, and `[[task]]` entries (name, kind, parameters).
//!
//! ```toml
//! [run]
//! model = "../models/linear.toml"   # relative to this file
//! steps = 3000
//! [defaults]
//! kind = "linear"
//! noise = 0.4
//! [[task]]
//! name = "t0"
//! ```
//! The resolved set (every key explicit, the model inline as `[model]`) is what a run folder
//! stores, so a run can be rebuilt without the original files.

use super::Task;
use super::registry::{Params, TaskContext, find_kind};
use crate::error::{Error, Result};
use crate::gate::{GateMode, MaskInit};
use crate::model::{ModelSpec, WeightInit};
use crate::train::{OptimizerKind, Schedule, TaskOrder, WPolicy};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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

/// Optional penalty on the current task's masks that pushes them away from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Regularizer {
    /// No penalty.
    #[default]
    None,
    /// mean exp(−|m|).
    Abs,
    /// mean exp(−m²).
    Sq,
}

/// Resolved hyperparameters of a run: every value explicit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The model file as written in the task set (informational once resolved).
    pub model: String,
    /// Training steps; each step is one batch of one task. With the sequential schedule, all
    /// phases together (`phase_steps` × tasks).
    pub steps: usize,
    /// The order tasks are trained in: `interleaved` (the paper's) or `sequential`.
    #[serde(default)]
    pub schedule: TaskOrder,
    /// Steps of each task's phase (the sequential schedule only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_steps: Option<usize>,
    /// When the gated model's W trains: `train`, `freeze-after-first` (sequential only) or
    /// `frozen`.
    #[serde(default)]
    pub w_policy: WPolicy,
    /// Examples per batch, drawn uniformly with replacement from the task's training set.
    pub batch_size: usize,
    /// Optimizer of the shared weights.
    pub optimizer: OptimizerKind,
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
    /// N: consecutive steps on a task once it is picked.
    pub steps_per_task: usize,
    /// Probe every K steps: the test metric on a fixed subset of each task's test split
    /// (`eval_subset` examples) and the training metric of the batches trained since the last
    /// probe. Default 10 (the paper's cadence) for image task sets, `steps / 10` otherwise.
    pub eval_every: usize,
    /// Test examples per task in a probe: a fixed, seeded draw of positions in the test split,
    /// the same for every strategy, run and resume (recorded in `metrics.jsonl`). 0 = the
    /// whole test split.
    #[serde(default = "default_eval_subset")]
    pub eval_subset: usize,
    /// Full evaluation (whole test and training-limit splits, binarized model, mask shares,
    /// histograms) every K steps; none = at the end only. The last step always gets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_eval_every: Option<usize>,
    /// Also run the full evaluation before the first step (the step-0 point of the full
    /// curves); off by default, the step-0 probe gives the curves their start.
    #[serde(default)]
    pub full_eval_at_start: bool,
    /// Commit (checkpoint, state, log) every K steps: how much a killed run loses. Default: the
    /// smallest multiple of `eval_every` that is at least `steps / 10`. Full evaluations and
    /// the last step always commit.
    #[serde(default)]
    pub checkpoint_every: usize,
    /// Log the mean training loss every this many steps (the paper logged every 10).
    pub log_every: usize,
    /// Seed for data, init, masks and the task/batch sequence.
    pub seed: u64,
    /// f32 or f64.
    pub dtype: Precision,
    /// How masks gate weights.
    pub gate: GateMode,
    /// From this step on the masks are binarized (forward `1[M > 0]`) and frozen, and only W
    /// trains: soft gates find the masks, then W is fitted to the deployed 1-bit model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binarize_after: Option<usize>,
    /// Final HAT scale `s` (gate = `hat`).
    pub hat_max_scale: f64,
    /// Initialisation of the shared weights.
    pub w_init: WeightInit,
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
    /// Training examples evaluated per task at each eval (the first N of the split).
    pub eval_train_limit: usize,
    /// Which implementation trains (`fast` falls back to `reference` for f64).
    #[serde(default)]
    pub engine: EngineChoice,
    /// Probe before the first step (the step-0 point of every curve); benchmarks turn it
    /// off so the first step starts right after loading.
    #[serde(default = "yes")]
    pub eval_at_start: bool,
}

fn yes() -> bool {
    true
}

/// Test examples per task in a probe, when the task set does not say.
pub const DEFAULT_EVAL_SUBSET: usize = 500;

fn default_eval_subset() -> usize {
    DEFAULT_EVAL_SUBSET
}

impl RunConfig {
    /// The mask initialisation.
    pub fn mask_init(&self) -> MaskInit {
        MaskInit {
            mean: self.mask_init[0],
            std: self.mask_init[1],
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    model: Option<String>,
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
    eval_every: Option<i64>,
    eval_subset: Option<i64>,
    full_eval_every: Option<i64>,
    full_eval_at_start: Option<bool>,
    checkpoint_every: Option<i64>,
    log_every: Option<i64>,
    seed: Option<i64>,
    dtype: Option<Precision>,
    gate: Option<GateMode>,
    hat_max_scale: Option<f64>,
    binarize_after: Option<i64>,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    run: RawRun,
    model: Option<ModelSpec>,
    defaults: Option<toml::Table>,
    #[serde(default)]
    task: Vec<toml::Table>,
}

/// One task of a set, with checked parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEntry {
    /// Unique name (letters, digits, `-`, `_`): used in tensor keys and file names.
    pub name: String,
    /// Registered kind.
    pub kind: String,
    /// Parameters, defaults filled in.
    pub params: Params,
}

/// A parsed, checked task set.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSet {
    /// Where it came from (for messages).
    pub origin: PathBuf,
    /// Hyperparameters.
    pub run: RunConfig,
    /// The architecture.
    pub model: ModelSpec,
    /// The tasks, in file order.
    pub tasks: Vec<TaskEntry>,
}

/// The built-in default task set (`tasks/sinusoid.toml`), so `gtk train` runs with no files.
const BUILTIN_SET: &str = include_str!("../../tasks/sinusoid.toml");
const BUILTIN_MODELS: &[(&str, &str)] = &[
    ("mlp.toml", include_str!("../../models/mlp.toml")),
    ("linear.toml", include_str!("../../models/linear.toml")),
    ("lenet5.toml", include_str!("../../models/lenet5.toml")),
];

impl TaskSet {
    /// Reads a task-set file; its `model` path is relative to the file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        // In a task-set file, `run.model` next to an inline [model] would be silently ignored.
        // (A run folder's config.toml holds both by design: it is read with `parse_with`.)
        if let Ok(doc) = toml::from_str::<toml::Table>(&text)
            && doc.contains_key("model")
            && let Some(file) = doc
                .get("run")
                .and_then(|r| r.get("model"))
                .and_then(|m| m.as_str())
        {
            return Err(Error::config(
                path.display().to_string(),
                "run.model",
                format!(
                    "= \"{file}\" and an inline [model] table are both given; keep one (the inline table would be used and the file ignored)"
                ),
            ));
        }
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse_with(&text, path, &|model: &str| {
            ModelSpec::load(&base.join(model))
        })
    }

    /// The built-in default set (sinusoid regression with the paper's MLP).
    pub fn builtin() -> Result<Self> {
        Self::parse_with(
            BUILTIN_SET,
            Path::new("<built-in tasks/sinusoid.toml>"),
            &|model: &str| {
                let file = Path::new(model)
                    .file_name()
                    .and_then(|f| f.to_str())
                    .unwrap_or(model);
                let (_, text) = BUILTIN_MODELS
                    .iter()
                    .find(|(name, _)| *name == file)
                    .ok_or_else(|| {
                        Error::config(
                            "<built-in>",
                            "run.model",
                            format!("no built-in model `{model}`"),
                        )
                    })?;
                ModelSpec::parse(text, Path::new(model))
            },
        )
    }

    /// Parses a task set's text. `load_model` resolves `run.model` when there is no inline
    /// `[model]` table.
    pub fn parse_with(
        text: &str,
        origin: &Path,
        load_model: &dyn Fn(&str) -> Result<ModelSpec>,
    ) -> Result<Self> {
        let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(origin, text, &e))?;
        let at = origin.display().to_string();
        let model = match raw.model {
            Some(m) => {
                m.output_shape()
                    .map_err(|e| Error::Shape(format!("{at}: [model]: {e}")))?;
                m
            }
            None => {
                let path = raw.run.model.as_deref().ok_or_else(|| {
                    Error::config(
                        &at,
                        "run.model",
                        "is missing: name a model file, e.g. model = \"../models/mlp.toml\"",
                    )
                })?;
                load_model(path)?
            }
        };
        if raw.task.is_empty() {
            return Err(Error::config(
                &at,
                "task",
                "a task set needs at least one [[task]] entry",
            ));
        }
        let eval_every_given = raw.run.eval_every.is_some();
        let checkpoint_every_given = raw.run.checkpoint_every.is_some();
        let mut run = resolve_run(&at, raw.run, raw.task.len())?;
        let defaults = raw.defaults.unwrap_or_default();
        let mut tasks = Vec::with_capacity(raw.task.len());
        for (i, entry) in raw.task.iter().enumerate() {
            let mut table = defaults.clone();
            for (k, v) in entry {
                table.insert(k.clone(), v.clone());
            }
            let name = match table.remove("name") {
                Some(toml::Value::String(s)) => s,
                Some(v) => {
                    return Err(Error::config(
                        &at,
                        format!("task[{i}].name"),
                        format!("must be a string, got `{v}`"),
                    ));
                }
                None => return Err(Error::config(&at, format!("task[{i}].name"), "is missing")),
            };
            if let Err(why) = check_portable_name(&name) {
                let shown: String = name.chars().take(80).collect();
                let more = if name.chars().count() > 80 { "…" } else { "" };
                return Err(Error::config(
                    &at,
                    format!("task[{i}].name"),
                    format!("`{shown}{more}` {why} (it names tensors and files)"),
                ));
            }
            if tasks.iter().any(|t: &TaskEntry| t.name == name) {
                return Err(Error::config(
                    &at,
                    format!("task[{i}].name"),
                    format!("`{name}` is used twice"),
                ));
            }
            let kind = match table.remove("kind") {
                Some(toml::Value::String(s)) => s,
                Some(v) => {
                    return Err(Error::config(
                        &at,
                        format!("task `{name}`.kind"),
                        format!("must be a string, got `{v}`"),
                    ));
                }
                None => {
                    return Err(Error::config(
                        &at,
                        format!("task `{name}`.kind"),
                        "is missing (or set `kind` in [defaults])",
                    ));
                }
            };
            let spec = find_kind(&name, &kind)?;
            resolve_paths(origin, spec, &mut table);
            let params = Params::resolve(&name, spec, &table)?;
            tasks.push(TaskEntry { name, kind, params });
        }
        // Image sets probe at the paper's cadence; others (often thousands of cheap steps)
        // keep a tenth of the run.
        if !eval_every_given && tasks.iter().all(|t| is_image_kind(&t.kind)) {
            run.eval_every = IMAGE_EVAL_EVERY.min(run.steps);
        }
        if !checkpoint_every_given {
            run.checkpoint_every = default_checkpoint_every(run.steps, run.eval_every);
        }
        Ok(TaskSet {
            origin: origin.into(),
            run,
            model,
            tasks,
        })
    }

    /// Builds every task and checks that the model fits each one.
    pub fn build_tasks(&self, data_dir: Option<&Path>) -> Result<Vec<Box<dyn Task>>> {
        let mut built = Vec::with_capacity(self.tasks.len());
        for (index, entry) in self.tasks.iter().enumerate() {
            let kind = find_kind(&entry.name, &entry.kind)?;
            let ctx = TaskContext {
                name: &entry.name,
                index,
                seed: self.run.seed,
                params: &entry.params,
                data_dir: data_dir.map(Path::to_path_buf),
            };
            let task = (kind.build)(&ctx)?;
            self.model
                .check_fits(&entry.name, task.input_shape(), task.outputs())?;
            built.push(task);
        }
        if let Some(first) = built.first()
            && let Some(other) = built.iter().find(|t| t.objective() != first.objective())
        {
            return Err(Error::Shape(format!(
                "tasks `{}` and `{}` mix regression and classification; one task set trains one objective",
                first.name(),
                other.name()
            )));
        }
        Ok(built)
    }

    /// Stores what each built task derived from its data ([`Task::pinned_params`], e.g. the
    /// standardisation statistics of `tensors` tasks) in its parameters, so the resolved set
    /// rebuilds the same tasks. `tasks` are this set's tasks, from [`TaskSet::build_tasks`].
    pub fn pin(&mut self, tasks: &[Box<dyn Task>]) -> Result<()> {
        for (entry, task) in self.tasks.iter_mut().zip(tasks) {
            if let Some(pinned) = task.pinned_params() {
                let mut table = entry.params.to_table();
                table.extend(pinned);
                let kind = find_kind(&entry.name, &entry.kind)?;
                entry.params = Params::resolve(&entry.name, kind, &table)?;
            }
        }
        Ok(())
    }

    /// The resolved set as TOML: every `[run]` key explicit, the model inline.
    pub fn to_toml(&self) -> String {
        let mut doc = toml::Table::new();
        doc.insert(
            "run".into(),
            toml::Value::try_from(&self.run).unwrap_or(toml::Value::Table(Default::default())),
        );
        doc.insert(
            "model".into(),
            toml::Value::try_from(&self.model).unwrap_or(toml::Value::Table(Default::default())),
        );
        let tasks = self
            .tasks
            .iter()
            .map(|t| {
                let mut table = toml::Table::new();
                table.insert("name".into(), t.name.clone().into());
                table.insert("kind".into(), t.kind.clone().into());
                table.extend(t.params.to_table());
                toml::Value::Table(table)
            })
            .collect();
        doc.insert("task".into(), toml::Value::Array(tasks));
        toml::to_string(&doc).unwrap_or_default()
    }

    /// Changes the total step count (`gtk train --steps`); the sequential schedule splits it
    /// into equal phases.
    pub fn set_steps(&mut self, steps: usize) -> Result<()> {
        let t = self.tasks.len();
        if steps == 0 {
            return Err(Error::config(
                "command line",
                "--steps",
                "must be a positive integer, got 0",
            ));
        }
        if self.run.phase_steps.is_some() {
            if t == 0 || steps < t || !steps.is_multiple_of(t) {
                return Err(Error::config(
                    "command line",
                    "--steps",
                    format!(
                        "is {steps}, which does not split into {t} equal phases of the sequential schedule; give a multiple of {t}"
                    ),
                ));
            }
            self.run.phase_steps = Some(steps / t);
        }
        self.run.steps = steps;
        Ok(())
    }

    /// The file the set came from, for messages.
    pub fn origin_label(&self) -> String {
        self.origin.display().to_string()
    }

    /// Task names in order.
    pub fn task_names(&self) -> Vec<String> {
        self.tasks.iter().map(|t| t.name.clone()).collect()
    }
}

/// Makes the relative values of `kind`'s path parameters in `table` absolute, relative to the
/// folder of the task-set file `origin` (the working directory for a bare file name).
fn resolve_paths(origin: &Path, kind: &super::TaskKind, table: &mut toml::Table) {
    let base = origin.parent().unwrap_or(Path::new(""));
    for spec in kind
        .params
        .iter()
        .filter(|p| p.ty == super::ParamType::Path)
    {
        if let Some(toml::Value::String(s)) = table.get_mut(spec.name)
            && !s.is_empty()
            && Path::new(s.as_str()).is_relative()
        {
            let joined = base.join(s.as_str());
            let absolute = std::path::absolute(&joined).unwrap_or(joined);
            *s = absolute.to_string_lossy().into_owned();
        }
    }
}

/// Probe cadence of image task sets when `eval_every` is not given: the paper's.
pub const IMAGE_EVAL_EVERY: usize = 10;

/// Whether a task kind classifies images (its parameters include the image kinds' `channels`
/// and `dataset`): such sets default to probing every [`IMAGE_EVAL_EVERY`] steps.
fn is_image_kind(kind: &str) -> bool {
    super::registry::kinds().iter().any(|k| {
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

fn resolve_run(at: &str, raw: RawRun, num_tasks: usize) -> Result<RunConfig> {
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
    let recipe = raw.mask_recipe.unwrap_or_default();
    let (scale_text, scale) = match &raw.mask_lr_scale {
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
    };
    finite(at, "mask_lr_scale", scale, 0.0, false)?;
    let (mask_optimizer, mask_lr, mask_init, scale_text) = match recipe {
        MaskRecipe::Adam => (
            raw.mask_optimizer.unwrap_or(OptimizerKind::Adam),
            match (raw.mask_lr, &raw.mask_lr_scale) {
                (Some(v), _) => v,
                (None, Some(_)) => lr * scale,
                (None, None) => 0.1,
            },
            [2.0, 1.0],
            scale_text,
        ),
        MaskRecipe::Paper => (
            raw.mask_optimizer.unwrap_or(optimizer),
            raw.mask_lr.unwrap_or(lr * scale),
            [0.0, 1.0],
            scale_text,
        ),
    };
    let mask_init = match raw.mask_init {
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
    let seed = raw.seed.unwrap_or(0);
    let seed = u64::try_from(seed).map_err(|_| {
        Error::config(
            at,
            "run.seed",
            format!("must be a non-negative integer, got {seed}"),
        )
    })?;
    Ok(RunConfig {
        model: raw.model.unwrap_or_else(|| "<inline>".into()),
        steps,
        schedule,
        phase_steps,
        w_policy,
        batch_size: positive(at, "batch_size", raw.batch_size, 32)?,
        optimizer,
        lr,
        momentum: {
            let m = raw.momentum.unwrap_or(0.9);
            if !(0.0..1.0).contains(&m) {
                return Err(Error::config(
                    at,
                    "run.momentum",
                    format!("must be in [0, 1), got {m}"),
                ));
            }
            m
        },
        lr_schedule: raw.lr_schedule.unwrap_or_default(),
        lr_warmup: non_negative(at, "lr_warmup", raw.lr_warmup)?,
        mask_lr_warmup: non_negative(at, "mask_lr_warmup", raw.mask_lr_warmup)?,
        adam_beta2: {
            let b = raw.adam_beta2.unwrap_or(0.999);
            if !(0.0..1.0).contains(&b) {
                return Err(Error::config(
                    at,
                    "run.adam_beta2",
                    format!("must be in [0, 1), got {b}"),
                ));
            }
            b
        },
        mask_lr_schedule: raw.mask_lr_schedule.unwrap_or_default(),
        steps_per_task: positive(at, "steps_per_task", raw.steps_per_task, 1)?,
        eval_every: positive(at, "eval_every", raw.eval_every, (steps as i64 / 10).max(1))?,
        log_every: positive(at, "log_every", raw.log_every, 10)?,
        seed,
        dtype: raw.dtype.unwrap_or_default(),
        gate: raw.gate.unwrap_or_default(),
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
        hat_max_scale: finite(
            at,
            "hat_max_scale",
            raw.hat_max_scale.unwrap_or(50.0),
            1.0,
            true,
        )?,
        w_init: raw.w_init.unwrap_or_default(),
        mask_recipe: recipe,
        mask_optimizer,
        mask_lr: finite(at, "mask_lr", mask_lr, 0.0, false)?,
        mask_lr_scale: scale_text,
        mask_init,
        mask_regularizer: raw.mask_regularizer.unwrap_or_default(),
        mask_regularizer_weight: finite(
            at,
            "mask_regularizer_weight",
            raw.mask_regularizer_weight.unwrap_or(0.0),
            0.0,
            true,
        )?,
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
        checkpoint_every: match raw.checkpoint_every {
            None => 0,
            Some(v) => positive(at, "checkpoint_every", Some(v), 1)?,
        },
        eval_train_limit: positive(at, "eval_train_limit", raw.eval_train_limit, 2000)?,
        engine: raw.engine.unwrap_or_default(),
        eval_at_start: raw.eval_at_start.unwrap_or(true),
    })
    .and_then(|run| {
        run.check_rates(at)?;
        Ok(run)
    })
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
    /// The phase (0-based) that step `step` (0-based) belongs to: always 0 for the
    /// interleaved schedule.
    pub fn phase_of(&self, step: usize) -> usize {
        self.phase_steps.map_or(0, |p| step / p.max(1))
    }

    /// Learning rates must be finite in the run's dtype (1e300 is a valid f64 but `inf` in
    /// f32, which would turn every weight into NaN at the first step).
    pub fn check_rates(&self, origin: &str) -> Result<()> {
        for (field, v) in [("lr", self.lr), ("mask_lr", self.mask_lr)] {
            let finite = match self.dtype.dtype() {
                candle_core::DType::F32 => (v as f32).is_finite(),
                _ => v.is_finite(),
            };
            if !finite || v <= 0.0 {
                return Err(Error::config(
                    origin,
                    format!("run.{field}"),
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
        }
        Ok(())
    }
}

/// Longest task or run name: file names built from it (`<task>.onnx`, mask keys) stay far
/// below the 255-byte limit of Linux, macOS and Windows file systems.
pub const MAX_NAME_LEN: usize = 64;

/// Checks that `name` can name files on Linux, macOS and Windows: 1 to [`MAX_NAME_LEN`]
/// ASCII letters, digits, `-` or `_`, and not a name Windows reserves (`CON`, `NUL`, `COM1`, …).
/// The error says what is wrong and what is valid.
pub fn check_portable_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "is {} characters long; at most {MAX_NAME_LEN} are allowed",
            name.chars().count()
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("must be letters, digits, '-' or '_' only".into());
    }
    let upper = name.to_ascii_uppercase();
    let reserved = ["CON", "PRN", "AUX", "NUL"].contains(&upper.as_str())
        || ((upper.starts_with("COM") || upper.starts_with("LPT"))
            && upper.len() == 4
            && upper.as_bytes()[3].is_ascii_digit());
    if reserved {
        return Err("is a device name reserved by Windows; choose another".into());
    }
    Ok(())
}

/// A TOML error as one line: `file:line:column: message`.
pub(crate) fn toml_error(origin: &Path, text: &str, e: &toml::de::Error) -> Error {
    let message = e.message().trim().replace('\n', " ");
    let location = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!(":{line}:{column}")
    });
    Error::Toml {
        path: PathBuf::from(format!(
            "{}{}",
            origin.display(),
            location.unwrap_or_default()
        )),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TaskSet> {
        TaskSet::parse_with(text, Path::new("t.toml"), &|m: &str| {
            ModelSpec::parse(include_str!("../../models/linear.toml"), Path::new(m))
        })
    }

    #[test]
    fn defaults_and_recipes_resolve() {
        let set = parse("[run]\nmodel = \"m\"\n[defaults]\nkind = \"linear\"\n[[task]]\nname = \"a\"\n[[task]]\nname = \"b\"\n").unwrap();
        assert_eq!(set.run.mask_lr, 0.1);
        assert_eq!(set.run.mask_init, [2.0, 1.0]);
        let set = parse("[run]\nmodel = \"m\"\nmask_recipe = \"paper\"\nlr = 0.01\n[[task]]\nname = \"a\"\nkind = \"linear\"\n[[task]]\nname = \"b\"\nkind = \"linear\"\n").unwrap();
        assert!(
            (set.run.mask_lr - 0.08).abs() < 1e-12,
            "{}",
            set.run.mask_lr
        );
        assert_eq!(set.run.mask_init, [0.0, 1.0]);
    }

    #[test]
    fn resolved_toml_round_trips() {
        let set =
            parse("[run]\nmodel = \"m\"\n[[task]]\nname = \"a\"\nkind = \"linear\"\nnoise = 1\n")
                .unwrap();
        let again = TaskSet::parse_with(
            &set.to_toml(),
            Path::new("t.toml"),
            &|_: &str| unreachable!(),
        )
        .unwrap();
        assert_eq!(again.run, set.run);
        assert_eq!(again.model, set.model);
        assert_eq!(again.tasks, set.tasks);
    }

    #[test]
    fn toml_errors_are_one_line_with_position() {
        let err = parse("[run]\nmodel = \"m\"\nsteps = \n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("t.toml:3:"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}
