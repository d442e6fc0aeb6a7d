//! The task-kind registry: each kind submits a [`TaskKind`] with `inventory::submit!` from its
//! own file, so adding a kind never touches a central list. Iteration order of `inventory` is
//! unspecified, so [`kinds`] sorts by name.

use super::Task;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The type of a task parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// A TOML integer.
    Int,
    /// A TOML float (integers are accepted).
    Float,
    /// `true` / `false`.
    Bool,
    /// A string.
    Str,
    /// An array of floats.
    FloatList,
    /// An array of integers.
    IntList,
    /// A file or folder path (a string). A relative path is relative to the task-set file; the
    /// run stores it absolute, so a run folder opens from anywhere.
    Path,
}

impl ParamType {
    /// The type's name in messages and docs.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::Int => "integer",
            ParamType::Float => "float",
            ParamType::Bool => "bool",
            ParamType::Str => "string",
            ParamType::FloatList => "list of floats",
            ParamType::IntList => "list of integers",
            ParamType::Path => "path",
        }
    }
}

/// One typed parameter of a task kind.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    /// Key in the `[[task]]` table.
    pub name: &'static str,
    /// Expected type.
    pub ty: ParamType,
    /// Default as a TOML literal (`"0.5"`, `"[-1.0, 1.0]"`, `"\"masked\""`); `None` = required.
    pub default: Option<&'static str>,
    /// One line of help.
    pub help: &'static str,
}

/// What a kind's constructor gets.
#[derive(Debug)]
pub struct TaskContext<'a> {
    /// The task's name.
    pub name: &'a str,
    /// Its position in the task set.
    pub index: usize,
    /// The task set's seed: kinds draw their data (and data shared across tasks) from it.
    pub seed: u64,
    /// Checked parameters with defaults filled in.
    pub params: &'a Params,
    /// Where datasets live, for kinds that read files.
    pub data_dir: Option<PathBuf>,
}

/// A registered task kind.
pub struct TaskKind {
    /// Kebab-case name used in `kind = "..."`.
    pub name: &'static str,
    /// One line shown by `gtk tasks`.
    pub summary: &'static str,
    /// Parameters with types and defaults.
    pub params: &'static [ParamSpec],
    /// Builds a task.
    pub build: fn(&TaskContext) -> Result<Box<dyn Task>>,
}

inventory::collect!(TaskKind);

/// All registered kinds, sorted by name.
pub fn kinds() -> Vec<&'static TaskKind> {
    let mut all: Vec<&'static TaskKind> = inventory::iter::<TaskKind>.into_iter().collect();
    all.sort_by_key(|k| k.name);
    all
}

/// The kind called `name`; an error naming the known kinds if there is none (or two).
pub fn find_kind(task: &str, name: &str) -> Result<&'static TaskKind> {
    let all = kinds();
    let found: Vec<_> = all.iter().filter(|k| k.name == name).collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => {
            let mut known = all.iter().map(|k| k.name).collect::<Vec<_>>().join(", ");
            let hint = crate::error::did_you_mean(name, all.iter().map(|k| k.name));
            if !hint.is_empty() {
                known = format!("{known}; {hint}");
            }
            Err(Error::UnknownTaskKind {
                task: task.into(),
                kind: name.into(),
                known,
            })
        }
        _ => Err(Error::param(
            task,
            "kind",
            format!("`{name}` is registered twice; rename one of the kinds"),
        )),
    }
}

/// Parameters (kind, name) added after run folders were recorded: left at their default, they
/// are not written into a resolved config, so the `config.toml` of a set that never used them
/// keeps its bytes (like the `[run]` keys added late). The image kinds' `outputs` (not the
/// `linear` kind's, which was always written), `normalize` and `permute_padding`.
const WRITTEN_WHEN_SET: &[(&str, &str)] = &[
    ("mnist", "outputs"),
    ("permuted-mnist", "outputs"),
    ("rotated-mnist", "outputs"),
    ("split-mnist", "outputs"),
    ("mnist", "normalize"),
    ("permuted-mnist", "normalize"),
    ("rotated-mnist", "normalize"),
    ("split-mnist", "normalize"),
    ("permuted-mnist", "permute_padding"),
];

/// A task's parameters, checked against its kind's specs, defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    task: String,
    values: BTreeMap<String, toml::Value>,
    /// Keys of [`WRITTEN_WHEN_SET`] that took their default.
    unwritten: Vec<String>,
}

impl Params {
    /// Checks `given` against `kind`'s parameters: unknown keys and wrong types are errors.
    pub fn resolve(task: &str, kind: &TaskKind, given: &toml::Table) -> Result<Params> {
        let mut values = BTreeMap::new();
        for (key, value) in given {
            let Some(spec) = kind.params.iter().find(|p| p.name == key) else {
                let known: Vec<&str> = kind.params.iter().map(|p| p.name).collect();
                let hint = crate::error::did_you_mean(key, known.iter().copied());
                return Err(Error::param(
                    task,
                    key,
                    format!(
                        "is not a parameter of kind `{}`; {}its parameters are: {}",
                        kind.name,
                        if hint.is_empty() {
                            String::new()
                        } else {
                            format!("{hint} ")
                        },
                        known.join(", ")
                    ),
                ));
            };
            values.insert(key.clone(), coerce(task, spec, value.clone())?);
        }
        let mut unwritten = Vec::new();
        for spec in kind.params {
            if values.contains_key(spec.name) {
                continue;
            }
            if WRITTEN_WHEN_SET.contains(&(kind.name, spec.name)) {
                unwritten.push(spec.name.to_string());
            }
            let Some(default) = spec.default else {
                return Err(Error::param(
                    task,
                    spec.name,
                    format!("is required ({})", spec.help),
                ));
            };
            let value = parse_literal(default).ok_or_else(|| {
                Error::param(
                    task,
                    spec.name,
                    format!("kind `{}` has a bad default `{default}`", kind.name),
                )
            })?;
            values.insert(spec.name.to_string(), coerce(task, spec, value)?);
        }
        Ok(Params {
            task: task.into(),
            values,
            unwritten,
        })
    }

    /// All values, for writing the resolved config (but a late parameter left at its
    /// default, [`WRITTEN_WHEN_SET`]).
    pub fn to_table(&self) -> toml::Table {
        self.values
            .iter()
            .filter(|(k, _)| !self.unwritten.iter().any(|u| u == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn get(&self, name: &str) -> Result<&toml::Value> {
        self.values.get(name).ok_or_else(|| {
            Error::param(
                &self.task,
                name,
                "is not declared by this task kind (a bug in the kind)",
            )
        })
    }

    /// A float parameter.
    pub fn f64(&self, name: &str) -> Result<f64> {
        match self.get(name)? {
            toml::Value::Float(f) => Ok(*f),
            toml::Value::Integer(i) => Ok(*i as f64),
            v => Err(self.type_error(name, "float", v)),
        }
    }

    /// An integer parameter.
    pub fn i64(&self, name: &str) -> Result<i64> {
        match self.get(name)? {
            toml::Value::Integer(i) => Ok(*i),
            v => Err(self.type_error(name, "integer", v)),
        }
    }

    /// A positive integer parameter.
    pub fn positive(&self, name: &str) -> Result<usize> {
        let v = self.i64(name)?;
        usize::try_from(v).ok().filter(|&u| u > 0).ok_or_else(|| {
            Error::param(
                &self.task,
                name,
                format!("must be a positive integer, got {v}"),
            )
        })
    }

    /// A boolean parameter.
    pub fn bool(&self, name: &str) -> Result<bool> {
        match self.get(name)? {
            toml::Value::Boolean(b) => Ok(*b),
            v => Err(self.type_error(name, "bool", v)),
        }
    }

    /// A string parameter.
    pub fn str(&self, name: &str) -> Result<&str> {
        match self.get(name)? {
            toml::Value::String(s) => Ok(s),
            v => Err(self.type_error(name, "string", v)),
        }
    }

    /// A list of floats.
    pub fn f64_list(&self, name: &str) -> Result<Vec<f64>> {
        match self.get(name)? {
            toml::Value::Array(a) => a
                .iter()
                .map(|v| match v {
                    toml::Value::Float(f) => Ok(*f),
                    toml::Value::Integer(i) => Ok(*i as f64),
                    v => Err(self.type_error(name, "list of floats", v)),
                })
                .collect(),
            v => Err(self.type_error(name, "list of floats", v)),
        }
    }

    /// A list of integers.
    pub fn i64_list(&self, name: &str) -> Result<Vec<i64>> {
        match self.get(name)? {
            toml::Value::Array(a) => a
                .iter()
                .map(|v| {
                    v.as_integer()
                        .ok_or_else(|| self.type_error(name, "list of integers", v))
                })
                .collect(),
            v => Err(self.type_error(name, "list of integers", v)),
        }
    }

    /// An error for parameter `name` that the task's constructor found invalid.
    pub fn invalid(&self, name: &str, message: impl Into<String>) -> Error {
        Error::param(&self.task, name, message)
    }

    fn type_error(&self, name: &str, want: &str, got: &toml::Value) -> Error {
        Error::param(
            &self.task,
            name,
            format!("must be a {want}, got {} `{got}`", got.type_str()),
        )
    }
}

fn parse_literal(text: &str) -> Option<toml::Value> {
    let table: toml::Table = toml::from_str(&format!("v = {text}")).ok()?;
    table.get("v").cloned()
}

fn coerce(task: &str, spec: &ParamSpec, value: toml::Value) -> Result<toml::Value> {
    use toml::Value as V;
    let ok = match (spec.ty, &value) {
        (ParamType::Int, V::Integer(_))
        | (ParamType::Float, V::Float(_))
        | (ParamType::Bool, V::Boolean(_))
        | (ParamType::Str, V::String(_))
        | (ParamType::Path, V::String(_)) => true,
        (ParamType::Float, V::Integer(i)) => return Ok(V::Float(*i as f64)),
        (ParamType::FloatList, V::Array(a)) => {
            if a.iter().all(|v| v.is_float() || v.is_integer()) {
                return Ok(V::Array(
                    a.iter()
                        .map(|v| {
                            V::Float(
                                v.as_float()
                                    .unwrap_or_else(|| v.as_integer().unwrap_or(0) as f64),
                            )
                        })
                        .collect(),
                ));
            }
            false
        }
        (ParamType::IntList, V::Array(a)) => a.iter().all(|v| v.is_integer()),
        _ => false,
    };
    if ok {
        Ok(value)
    } else {
        Err(Error::param(
            task,
            spec.name,
            format!(
                "must be a {}, got {} `{value}`",
                spec.ty.as_str(),
                value.type_str()
            ),
        ))
    }
}
