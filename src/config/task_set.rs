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

use super::launcher::LauncherTable;
use super::run_config::{
    IMAGE_EVAL_EVERY, RawRun, RunConfig, default_checkpoint_every, is_image_kind, resolve_run,
};
use super::settings::Setting;
use crate::error::{Error, Result};
use crate::model::ModelSpec;
use crate::task::{
    ParamType, Params, Task, TaskContext, TaskEntry, TaskKind, check_portable_name, find_kind,
};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    run: RawRun,
    model: Option<ModelSpec>,
    defaults: Option<toml::Table>,
    #[serde(default)]
    task: Vec<toml::Table>,
    /// How sweeps of this set are launched (`[launcher.slurm]`): checked here, read by
    /// [`super::launcher::slurm_resources`] when a sweep is submitted.
    launcher: Option<LauncherTable>,
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
        Self::load_text(path, &text)
    }

    /// Reads the task set `path` (none: the built-in set) with `settings` applied to its text
    /// (`gtk train --set`), so each value is checked and recorded as if the file held it. A
    /// value the set refuses is named as the `--set` that gave it.
    pub fn load_with(path: Option<&Path>, settings: &[Setting]) -> Result<Self> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?,
            None => BUILTIN_SET.to_string(),
        };
        let load = |text: &str| match path {
            Some(p) => Self::load_text(p, text),
            None => Self::builtin_text(text),
        };
        if settings.is_empty() {
            return load(&text);
        }
        let mut doc: toml::Table = toml::from_str(&text)
            .map_err(|e| Error::toml(path.unwrap_or(Path::new("<built-in>")), &text, e))?;
        super::settings::apply(&mut doc, settings)?;
        let changed = toml::to_string(&doc).map_err(|e| {
            Error::config(
                "command line",
                "--set",
                format!("cannot write the task set: {e}"),
            )
        })?;
        load(&changed).map_err(|e| {
            let given: Vec<String> = settings.iter().map(Setting::arg).collect();
            let message = format!("{e}");
            Error::config(
                "command line",
                "--set",
                format!(
                    "{} is refused by the task set: {}",
                    given.join(" "),
                    message.replace('\n', " ")
                ),
            )
        })
    }

    /// The task parameters `--set` takes as `[defaults]` keys: every parameter of the set's
    /// task kinds, in kind order.
    pub fn default_keys(&self) -> Vec<&'static str> {
        let mut keys: Vec<&'static str> = Vec::new();
        for t in &self.tasks {
            if let Ok(kind) = find_kind(&t.name, &t.kind) {
                for p in kind.params {
                    if !keys.contains(&p.name) {
                        keys.push(p.name);
                    }
                }
            }
        }
        keys
    }

    fn load_text(path: &Path, text: &str) -> Result<Self> {
        // In a task-set file, `run.model` next to an inline [model] would be silently ignored.
        // (A run folder's config.toml holds both by design: it is read with `parse_with`.)
        if let Ok(doc) = toml::from_str::<toml::Table>(text)
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
        Self::parse_with(text, path, &|model: &str| {
            let file = base.join(model);
            // The OS error alone ("No such file") would not say which key named the file, nor
            // that the path is relative to the task set rather than the working folder.
            ModelSpec::load(&file).map_err(|e| match e {
                Error::Io { path: p, source } if p == file => Error::config(
                    path.display().to_string(),
                    "run.model",
                    format!(
                        "= \"{model}\": cannot read {}: {source} (a relative path is taken from the task-set file's folder)",
                        file.display()
                    ),
                ),
                other => other,
            })
        })
    }

    /// The built-in default set (sinusoid regression with the paper's MLP).
    pub fn builtin() -> Result<Self> {
        Self::builtin_text(BUILTIN_SET)
    }

    fn builtin_text(text: &str) -> Result<Self> {
        Self::parse_with(
            text,
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
        let raw: RawFile = toml::from_str(text).map_err(|e| Error::toml(origin, text, e))?;
        let at = origin.display().to_string();
        if let Some(l) = &raw.launcher {
            l.check(&at)?;
        }
        let model = match raw.model {
            Some(m) => {
                m.shapes().map_err(|source| Error::Model {
                    origin: format!("{at}: [model]"),
                    source: Box::new(source),
                })?;
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
        check_batch_statistics(&at, &model, run.schedule.batch_size)?;
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
            run.evaluation.eval_every = IMAGE_EVAL_EVERY.min(run.steps);
        }
        if !checkpoint_every_given {
            run.evaluation.checkpoint_every =
                default_checkpoint_every(run.steps, run.evaluation.eval_every);
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
            let mut task = (kind.build)(&ctx)?;
            let fraction = self.run.evaluation.val_fraction;
            if fraction > 0.0 {
                task = crate::task::held_out(task, fraction, self.run.seed, index)?;
            }
            // Task-IL may give every task a block of outputs of its own (tasks × classes).
            let blocks = self.tasks.len() * task.outputs();
            let outputs = match (self.run.continual.scenario, self.model.output_shape()) {
                (Some(super::Scenario::Task), Ok(out)) if out == [blocks] => blocks,
                _ => task.outputs(),
            };
            self.model
                .check_fits(&entry.name, task.input_shape(), outputs)
                .map_err(|e| shape_hint(e, &self.model.input, task.input_shape(), kind))?;
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
    /// into equal phases. A sequential set's `eval_every` is scaled with its phases (an
    /// `eval_every` longer than a phase would draw each phase as a straight line between its
    /// ends and hide the forgetting within it), and so is `checkpoint_every`. Returns a
    /// line saying what was changed besides `steps`, for the user to see.
    pub fn set_steps(&mut self, steps: usize) -> Result<Option<String>> {
        let t = self.tasks.len();
        if steps == 0 {
            return Err(Error::config(
                "command line",
                "--steps",
                "must be a positive integer, got 0",
            ));
        }
        let mut note = None;
        if let Some(old_phase) = self.run.schedule.phase_steps {
            if t == 0 || steps < t || !steps.is_multiple_of(t) {
                return Err(Error::config(
                    "command line",
                    "--steps",
                    format!(
                        "is {steps}, which does not split into {t} equal phases of the sequential schedule; give a multiple of {t}"
                    ),
                ));
            }
            let phase = steps / t;
            self.run.schedule.phase_steps = Some(phase);
            let mut changed = vec![format!("phase_steps {old_phase} → {phase} ({t} tasks)")];
            let evaluation = &mut self.run.evaluation;
            let (eval, checkpoint) = (evaluation.eval_every, evaluation.checkpoint_every);
            if phase != old_phase {
                // The same number of probes per phase as the file asks for, at least one.
                let scaled = |v: usize| (v * phase / old_phase.max(1)).clamp(1, phase);
                evaluation.eval_every = scaled(eval);
                evaluation.checkpoint_every = scaled(checkpoint);
                if evaluation.eval_every != eval {
                    changed.push(format!(
                        "eval_every {eval} → {} ({} probe{} per phase, as in the file)",
                        evaluation.eval_every,
                        phase / evaluation.eval_every,
                        if phase / evaluation.eval_every == 1 {
                            ""
                        } else {
                            "s"
                        }
                    ));
                }
                if evaluation.checkpoint_every != checkpoint {
                    changed.push(format!(
                        "checkpoint_every {checkpoint} → {}",
                        evaluation.checkpoint_every
                    ));
                }
            }
            note = Some(format!(
                "--steps {steps} on a sequential task set: {}",
                changed.join(", ")
            ));
        }
        self.run.steps = steps;
        Ok(note)
    }

    /// Replaces the learning rates (`gtk train --lr/--mask-lr` on a new run), checked like the
    /// file's and named as command-line flags in errors. The masks' rate is only replaced
    /// when given: a `mask_lr` derived from `mask_lr_scale` is not recomputed.
    pub fn set_rates(&mut self, lr: Option<f64>, mask_lr: Option<f64>) -> Result<()> {
        for (flag, v) in [("--lr", lr), ("--mask-lr", mask_lr)] {
            if let Some(v) = v {
                self.run.check_rate("command line", flag, v)?;
            }
        }
        if let Some(v) = lr {
            self.run.optimizer.lr = v;
        }
        if let Some(v) = mask_lr {
            self.run.gates.mask_lr = v;
        }
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

/// Batch norm normalises each channel over the batch (and the pixels, for `batchnorm2d`): with
/// one value per channel its variance is 0 and it outputs its bias whatever the input, so a
/// run would train to nonsense without a word (PyTorch refuses it too).
fn check_batch_statistics(at: &str, model: &ModelSpec, batch_size: usize) -> Result<()> {
    let Ok(steps) = model.walk() else {
        return Ok(()); // shape errors are reported where the model is checked
    };
    for step in steps {
        if !matches!(
            step.layer,
            crate::layers::LayerSpec::BatchNorm1d(_) | crate::layers::LayerSpec::BatchNorm2d(_)
        ) {
            continue;
        }
        let per_channel = batch_size * step.input.iter().skip(1).product::<usize>();
        if per_channel < 2 {
            return Err(Error::config(
                at,
                "run.batch_size",
                format!(
                    "= {batch_size} gives the batch norm layer `{}` one value per channel to normalise over (its variance is 0, so it outputs its bias whatever the input); use batch_size ≥ 2",
                    step.label
                ),
            ));
        }
    }
    Ok(())
}

/// A model/task input mismatch where only the layout differs (the model takes [3, 32, 32], a
/// `tensors` task gives flat rows of 3072) gets the fix: the kind's `shape` parameter.
fn shape_hint(e: Error, model: &[usize], task: &[usize], kind: &TaskKind) -> Error {
    let has_shape = kind.params.iter().any(|p| p.name == "shape");
    let same_size = model.iter().product::<usize>() == task.iter().product::<usize>();
    match e {
        Error::Shape(message) if has_shape && same_size && model != task => Error::Shape(format!(
            "{message}; the sizes agree, so set the task's `shape = {model:?}` to reshape its rows"
        )),
        other => other,
    }
}

/// Makes the relative values of `kind`'s path parameters in `table` absolute, relative to the
/// folder of the task-set file `origin` (the working directory for a bare file name).
fn resolve_paths(origin: &Path, kind: &TaskKind, table: &mut toml::Table) {
    let base = origin.parent().unwrap_or(Path::new(""));
    for spec in kind.params.iter().filter(|p| p.ty == ParamType::Path) {
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
        assert_eq!(set.run.gates.mask_lr, 0.1);
        assert_eq!(set.run.gates.mask_init, [2.0, 1.0]);
        let set = parse("[run]\nmodel = \"m\"\nmask_recipe = \"paper\"\nlr = 0.01\n[[task]]\nname = \"a\"\nkind = \"linear\"\n[[task]]\nname = \"b\"\nkind = \"linear\"\n").unwrap();
        assert!(
            (set.run.gates.mask_lr - 0.08).abs() < 1e-12,
            "{}",
            set.run.gates.mask_lr
        );
        assert_eq!(set.run.gates.mask_init, [0.0, 1.0]);
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
        let err = format!(
            "{:#}",
            anyhow::Error::from(parse("[run]\nmodel = \"m\"\nsteps = \n").unwrap_err())
        );
        assert!(err.starts_with("t.toml:3:"), "{err}");
        assert!(
            err.len() > "t.toml:3:9: ".len(),
            "the parser's message is kept: {err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }
}
