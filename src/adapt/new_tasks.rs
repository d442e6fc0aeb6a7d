//! A new-task file (`NEW.toml`): `[[task]]` entries (and `[defaults]`) in the task-set format,
//! an optional `[adapt]` table ([`AdaptConfig`]), and no training settings — the run's `[run]`
//! and model apply. `[run] model = "..."` may name a model file; it must be the run's model.

use super::config::AdaptConfig;
use crate::config::TaskSet;
use crate::error::{Error, Result};
use crate::model::ModelSpec;
use crate::task::TaskEntry;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Stands for "the run's model" when the file names none.
const RUN_MODEL: &str = "<the run's model>";

/// Keys a new-task file may have at the top level.
const TOP_LEVEL: &[&str] = &["run", "model", "defaults", "task", "adapt"];

/// The tasks of a new-task file and its adaptation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTasks {
    /// The file.
    pub origin: PathBuf,
    /// The new tasks, parameters resolved.
    pub tasks: Vec<TaskEntry>,
    /// The `[adapt]` table (defaults where absent).
    pub config: AdaptConfig,
}

impl NewTasks {
    /// Reads `path` against the run's task set `run`: the model, if named, must be the run's,
    /// and no task may reuse a name of the run.
    pub fn load(path: &Path, run: &TaskSet) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, path, &base, run)
    }

    /// Parses a new-task file's text; `base` resolves a model path.
    pub fn parse(text: &str, origin: &Path, base: &Path, run: &TaskSet) -> Result<Self> {
        let at = origin.display().to_string();
        let mut doc: toml::Table = match toml::from_str(text) {
            Ok(t) => t,
            // The task-set parser reports syntax errors with line and column.
            Err(_) => {
                TaskSet::parse_with(text, origin, &|_: &str| Ok(run.model.clone()))?;
                return Err(Error::config(&at, "file", "is not valid TOML"));
            }
        };
        if let Some(key) = doc.keys().find(|k| !TOP_LEVEL.contains(&k.as_str())) {
            return Err(Error::config(
                &at,
                key.clone(),
                format!(
                    "is not a table of a new-task file; expected {}",
                    TOP_LEVEL.join(", ")
                ),
            ));
        }
        let config = match doc.remove("adapt") {
            None => AdaptConfig::default(),
            Some(v) => {
                AdaptConfig::deserialize(v).map_err(|e| Error::toml_at(origin, "[adapt]: ", e))?
            }
        };
        config.check(&at)?;
        let inline_model = doc.contains_key("model");
        let run_table = doc
            .entry("run")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(run_table) = run_table.as_table_mut() else {
            return Err(Error::config(&at, "run", "must be a table"));
        };
        if let Some(key) = run_table.keys().find(|k| k.as_str() != "model") {
            return Err(Error::config(
                &at,
                format!("run.{key}"),
                "is not used by `gtk adapt`: the run's own [run] settings apply; put adaptation settings in [adapt]",
            ));
        }
        if !inline_model && !run_table.contains_key("model") {
            run_table.insert("model".into(), RUN_MODEL.into());
        }
        let text = toml::to_string(&doc).map_err(|e| Error::config(&at, "file", e.to_string()))?;
        let set = TaskSet::parse_with(&text, origin, &|model: &str| {
            if model == RUN_MODEL {
                return Ok(run.model.clone());
            }
            ModelSpec::load(&base.join(model))
        })?;
        if set.model != run.model {
            let (inp, out) = (set.model.input.clone(), set.model.output_shape()?);
            return Err(Error::Shape(format!(
                "{at}: model `{}` (input {inp:?}, output {out:?}) is not the run's model `{}` (input {:?}, output {:?}); new tasks are adapted on the run's model: drop [run] model or name the run's model file",
                set.model.name,
                run.model.name,
                run.model.input,
                run.model.output_shape()?
            )));
        }
        let names = run.task_names();
        if let Some(t) = set.tasks.iter().find(|t| names.contains(&t.name)) {
            return Err(Error::config(
                &at,
                format!("task `{}`.name", t.name),
                format!(
                    "is already a task of the run (its tasks: {}); give the new task another name",
                    names.join(", ")
                ),
            ));
        }
        Ok(NewTasks {
            origin: origin.into(),
            tasks: set.tasks,
            config,
        })
    }

    /// The run's task set with the new tasks appended (their index is their position in it).
    /// A sequential run's new tasks count as phases after its own (same `phase_steps`), so the
    /// appended set stays consistent with its schedule.
    pub fn appended_to(&self, run: &TaskSet) -> TaskSet {
        let mut set = run.clone();
        set.tasks.extend(self.tasks.iter().cloned());
        if let Some(p) = set.run.schedule.phase_steps {
            set.run.steps = p * set.tasks.len();
        }
        set
    }
}
