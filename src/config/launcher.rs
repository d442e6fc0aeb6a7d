//! A task set's `[launcher.slurm]` table: the resources each member of a sweep asks a Slurm
//! cluster for (`gtk train --seeds … --launcher slurm`). Training ignores the table; it is
//! checked whenever the task set is read, so a typo is found before anything is submitted.
//!
//! ```toml
//! [launcher.slurm]
//! partition = "gpu"
//! time = "02:00:00"
//! cpus_per_task = 2
//! mem = "8G"
//! account = "lab42"
//! extra = ["--qos=normal", "--constraint=avx2"]
//! ```

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The `[launcher]` table: one sub-table per launcher (only Slurm takes settings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LauncherTable {
    pub(crate) slurm: Option<SlurmResources>,
}

/// What one array element asks Slurm for; every value is optional (the cluster's defaults
/// apply), and `gtk train`'s flags of the same names replace the table's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmResources {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time`, in any of Slurm's forms (`90`, `1:30:00`, `1-00:00:00`).
    pub time: Option<String>,
    /// `--cpus-per-task` (default: the sweep's threads per run).
    pub cpus_per_task: Option<usize>,
    /// `--mem`, e.g. `4G`.
    pub mem: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// More `#SBATCH` options, one per entry, each starting with `-` (e.g. `--qos=long`).
    #[serde(default)]
    pub extra: Vec<String>,
    /// How often a member stopped by SIGTERM (preemption, time limit) is requeued before it is
    /// left stopped for a person to look at (default [`DEFAULT_MAX_REQUEUES`]).
    pub max_requeues: Option<u32>,
}

/// Requeues of one member after SIGTERM, unless `max_requeues` says otherwise: enough for a
/// long run on a preemptible partition, finite so a member that never gets a step done is
/// not requeued forever.
pub const DEFAULT_MAX_REQUEUES: u32 = 20;

impl SlurmResources {
    /// Refuses values that cannot be one `#SBATCH` line: empty ones, line breaks and other
    /// control characters, `extra` entries that are not options, and zero CPUs. `origin`
    /// names where the values came from (the task-set file, or `command line`).
    pub fn check(&self, origin: &str) -> Result<()> {
        let fields = [
            ("partition", &self.partition),
            ("time", &self.time),
            ("mem", &self.mem),
            ("account", &self.account),
        ];
        for (name, value) in fields {
            if let Some(v) = value {
                one_line(origin, &format!("launcher.slurm.{name}"), v)?;
            }
        }
        for (i, line) in self.extra.iter().enumerate() {
            let field = format!("launcher.slurm.extra[{i}]");
            one_line(origin, &field, line)?;
            if !line.starts_with('-') {
                return Err(Error::config(
                    origin,
                    field,
                    format!(
                        "= {line:?} is not an sbatch option; write it as on sbatch's command line, e.g. \"--qos=long\""
                    ),
                ));
            }
        }
        if self.cpus_per_task == Some(0) {
            return Err(Error::config(
                origin,
                "launcher.slurm.cpus_per_task",
                "= 0; give at least 1",
            ));
        }
        Ok(())
    }

    /// `self` with every value `over` gives replacing its own (`extra` lines are added).
    pub fn overridden_by(&self, over: &SlurmResources) -> SlurmResources {
        let pick = |a: &Option<String>, b: &Option<String>| b.clone().or_else(|| a.clone());
        SlurmResources {
            partition: pick(&self.partition, &over.partition),
            time: pick(&self.time, &over.time),
            cpus_per_task: over.cpus_per_task.or(self.cpus_per_task),
            mem: pick(&self.mem, &over.mem),
            account: pick(&self.account, &over.account),
            extra: self.extra.iter().chain(&over.extra).cloned().collect(),
            max_requeues: over.max_requeues.or(self.max_requeues),
        }
    }
}

fn one_line(origin: &str, field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::config(
            origin,
            field,
            "is empty; give a value or leave it out",
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::config(
            origin,
            field,
            format!("= {value:?} holds a line break or control character; give one line"),
        ));
    }
    Ok(())
}

impl LauncherTable {
    pub(crate) fn check(&self, origin: &str) -> Result<()> {
        match &self.slurm {
            Some(s) => s.check(origin),
            None => Ok(()),
        }
    }
}

/// The `[launcher.slurm]` table of the task-set file `path` (none for the built-in set, or a
/// file without the table).
pub fn slurm_resources(path: Option<&Path>) -> Result<Option<SlurmResources>> {
    #[derive(Deserialize)]
    struct OnlyLauncher {
        launcher: Option<LauncherTable>,
    }
    let Some(path) = path else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let file: OnlyLauncher = toml::from_str(&text).map_err(|e| Error::toml(path, &text, e))?;
    let slurm = file.launcher.and_then(|l| l.slurm);
    if let Some(s) = &slurm {
        s.check(&path.display().to_string())?;
    }
    Ok(slurm)
}
