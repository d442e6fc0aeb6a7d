//! The sweep folder: `sweep.json` (what to train: task set, strategies, seeds) next to one
//! normal run folder per seed (`seed-0`, `seed-3`, …), and the summary once every seed is done.
//!
//! Nothing here trains: `gtk train --seeds` starts one `gtk train` process per seed. What a
//! sweep knows about its seeds it reads from their run folders' committed state, so a killed
//! sweep resumes exactly where its runs stand.

use crate::config::Setting;
use crate::error::{Error, Result};
use crate::run::{RunSnapshot, read_run_config};
use crate::run_folder::{WriterLock, fsio, is_run_folder, sha256_hex};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The sweep's description, written once when the sweep is created.
pub const MANIFEST: &str = "sweep.json";
/// The summary over seeds, rewritten (atomically) whenever every seed is done.
pub const SUMMARY_JSON: &str = "summary.json";
/// The same summary as Markdown tables.
pub const SUMMARY_MD: &str = "summary.md";
/// Held by the `gtk train --seeds` process that runs the sweep.
pub const LOCK: &str = "sweep.lock";
/// `format` of `sweep.json`.
pub const FORMAT: &str = "gatekit-sweep-1";

/// What a sweep trains: the same task set and strategies once per seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// [`FORMAT`].
    pub format: String,
    /// The seeds, in the order given.
    pub seeds: Vec<u64>,
    /// `gated`, `shared`, `separate`, or `all`.
    pub strategy: String,
    /// The task-set file (absolute), or none for the built-in sinusoid set.
    pub task_set: Option<PathBuf>,
    /// SHA-256 of the task-set file when the sweep began: seeds created later must train the
    /// same tasks, so a changed file stops the sweep.
    pub task_set_sha256: Option<String>,
    /// `--steps`, when given.
    pub steps: Option<usize>,
    /// rayon threads of each seed's process.
    pub threads_per_run: usize,
    /// The swept keys (`gtk train --set`), each with its values: every combination is one
    /// configuration, trained once per seed. Empty for a sweep over seeds only (and absent
    /// from its `sweep.json`, which keeps the bytes it had before grids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grid: Vec<GridAxis>,
}

/// One swept key and its values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridAxis {
    /// `run.NAME` or `defaults.NAME`.
    pub key: String,
    /// The values as TOML text, in the order given.
    pub values: Vec<String>,
}

/// One combination of the grid's values: the settings of its members and the folder they
/// sit in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configuration {
    /// The folder name, `lr=0.003,mask_lr=0.1` (empty for a sweep over seeds only, whose
    /// members sit in the sweep folder itself).
    pub name: String,
    /// One value per swept key, in the grid's key order.
    pub settings: Vec<Setting>,
}

/// One run of a sweep: a configuration (index into [`Sweep::configurations`]) and a seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Index into [`Sweep::configurations`].
    pub config: usize,
    /// The seed.
    pub seed: u64,
}

/// The `--set KEY=V1,V2` arguments as grid axes, their keys resolved against the task set
/// `set` (bare names, `run.NAME`, `defaults.NAME`); a key given twice is refused.
pub fn grid_axes(texts: &[String], set: &crate::TaskSet) -> Result<Vec<GridAxis>> {
    let params = set.default_keys();
    let mut axes: Vec<GridAxis> = Vec::new();
    for text in texts {
        let (key, values) = crate::config::settings::parse_set(text)?;
        let key = crate::config::settings::resolve_key(&key, &params)?;
        if axes.iter().any(|a| a.key == key) {
            return Err(Error::config(
                "command line",
                "--set",
                format!("`{key}` is set twice; give its values in one --set {key}=V1,V2"),
            ));
        }
        axes.push(GridAxis { key, values });
    }
    Ok(axes)
}

/// Every combination of the axes' values, the last key varying fastest; names checked to
/// be distinct (two values that only differ in characters a file name cannot hold would
/// share a folder).
pub fn grid_configurations(grid: &[GridAxis]) -> Result<Vec<Configuration>> {
    let mut configs = vec![Configuration {
        name: String::new(),
        settings: Vec::new(),
    }];
    for axis in grid {
        let mut next = Vec::with_capacity(configs.len() * axis.values.len());
        for c in &configs {
            for v in &axis.values {
                let mut settings = c.settings.clone();
                settings.push(Setting {
                    key: axis.key.clone(),
                    value: v.clone(),
                });
                next.push(Configuration {
                    name: settings
                        .iter()
                        .map(Setting::label)
                        .collect::<Vec<_>>()
                        .join(","),
                    settings,
                });
            }
        }
        configs = next;
    }
    for (i, c) in configs.iter().enumerate() {
        if let Some(other) = configs[..i].iter().find(|o| o.name == c.name) {
            let show = |c: &Configuration| {
                c.settings
                    .iter()
                    .map(Setting::arg)
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            return Err(Error::config(
                "command line",
                "--set",
                format!(
                    "`{}` and `{}` would share the folder `{}`; give values that differ in letters, digits or . _ + -",
                    show(other),
                    show(c),
                    c.name
                ),
            ));
        }
    }
    Ok(configs)
}

/// Where one seed's run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Not created yet (no folder, or an empty one left by a killed creation).
    New,
    /// Committed up to `step` of `total`.
    Partial {
        /// Last committed step.
        step: usize,
        /// The run's step count.
        total: usize,
    },
    /// Trained to its last step.
    Done {
        /// The run's step count.
        total: usize,
    },
}

/// An opened sweep folder.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// The sweep folder.
    pub dir: PathBuf,
    /// Its `sweep.json`.
    pub spec: SweepSpec,
}

/// The folder name of a seed's run inside the sweep.
pub fn member_name(seed: u64) -> String {
    format!("seed-{seed}")
}

/// Where the run in `dir` stands, from its committed state (read-only).
fn state_of_dir(dir: &Path) -> Result<MemberState> {
    let empty = std::fs::read_dir(dir).is_ok_and(|mut e| e.next().is_none());
    if !dir.exists() || empty {
        return Ok(MemberState::New);
    }
    let snapshot = RunSnapshot::open(dir)?;
    let total = read_run_config(dir)?.run.steps;
    let step = snapshot.commit.step;
    Ok(if step >= total {
        MemberState::Done { total }
    } else {
        MemberState::Partial { step, total }
    })
}

/// Whether `dir` is a sweep folder (holds `sweep.json`).
pub fn is_sweep(dir: &Path) -> bool {
    dir.join(MANIFEST).is_file()
}

impl SweepSpec {
    /// A spec for `seeds` of `task_set` (none: the built-in set), hashing the file now.
    pub fn new(
        seeds: Vec<u64>,
        strategy: &str,
        task_set: Option<&Path>,
        steps: Option<usize>,
        threads_per_run: usize,
    ) -> Result<Self> {
        let (task_set, task_set_sha256) = match task_set {
            Some(p) => {
                let abs = std::path::absolute(p).map_err(|e| Error::io(p, e))?;
                let bytes = std::fs::read(&abs).map_err(|e| Error::io(&abs, e))?;
                (Some(abs), Some(sha256_hex(&bytes)))
            }
            None => (None, None),
        };
        Ok(SweepSpec {
            format: FORMAT.into(),
            seeds,
            strategy: strategy.into(),
            task_set,
            task_set_sha256,
            steps,
            threads_per_run: threads_per_run.max(1),
            grid: Vec::new(),
        })
    }
}

impl Sweep {
    /// Creates the sweep folder `dir` (new, or an empty folder) with its `sweep.json`.
    pub fn create(dir: &Path, spec: SweepSpec) -> Result<Self> {
        if spec.seeds.is_empty() {
            return Err(Error::Run {
                path: dir.into(),
                message: "a sweep needs at least one seed".into(),
            });
        }
        grid_configurations(&spec.grid)?;
        let empty = std::fs::read_dir(dir).is_ok_and(|mut e| e.next().is_none());
        if dir.exists() && !empty {
            return Err(Error::Run {
                path: dir.into(),
                message: if is_sweep(dir) {
                    "is a sweep that already exists; continue it with `gtk train --resume` and this folder, or choose another --name".into()
                } else {
                    "already exists; choose another --name".into()
                },
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let json = serde_json::to_string_pretty(&spec)
            .map_err(|e| Error::encode(dir.join(MANIFEST), "the sweep description", e))?;
        fsio::write_atomic(&dir.join(MANIFEST), json.as_bytes())?;
        Ok(Sweep {
            dir: dir.into(),
            spec,
        })
    }

    /// Opens the sweep folder `dir`; a plain run folder, or a folder that is neither, is
    /// refused with a message that says what to give instead.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = dir.join(MANIFEST);
        if !manifest.is_file() {
            let message = if !dir.is_dir() {
                "no such sweep folder (sweeps are made by `gtk train --seeds`)".to_string()
            } else if is_run_folder(dir) {
                "is a plain run folder, not a sweep (it has no sweep.json); a sweep is made by `gtk train --seeds`".to_string()
            } else {
                "is not a sweep folder (no sweep.json; sweeps are made by `gtk train --seeds`)"
                    .to_string()
            };
            return Err(Error::Run {
                path: dir.into(),
                message,
            });
        }
        let text = std::fs::read_to_string(&manifest).map_err(|e| Error::io(&manifest, e))?;
        let spec: SweepSpec = serde_json::from_str(&text)
            .map_err(|e| Error::json(&manifest, "is not a sweep description", e))?;
        if spec.format != FORMAT {
            return Err(Error::Run {
                path: manifest,
                message: format!("has format `{}`; this gtk reads `{FORMAT}`", spec.format),
            });
        }
        if spec.seeds.is_empty() {
            return Err(Error::Run {
                path: manifest,
                message: "lists no seed".into(),
            });
        }
        Ok(Sweep {
            dir: dir.into(),
            spec,
        })
    }

    /// The grid's configurations (one, unnamed, for a sweep over seeds only).
    pub fn configurations(&self) -> Vec<Configuration> {
        // Checked when the sweep was created; a sweep.json edited since falls back to the
        // unchecked product.
        grid_configurations(&self.spec.grid).unwrap_or_default()
    }

    /// Every member, configuration by configuration, seeds in the order given.
    pub fn members(&self) -> Vec<Member> {
        (0..self.configurations().len())
            .flat_map(|config| {
                self.spec
                    .seeds
                    .iter()
                    .map(move |&seed| Member { config, seed })
            })
            .collect()
    }

    /// Whether the sweep has a grid (more than seeds).
    pub fn is_grid(&self) -> bool {
        !self.spec.grid.is_empty()
    }

    /// The folder of a configuration's members (the sweep folder without a grid).
    pub fn configuration_dir(&self, config: &Configuration) -> PathBuf {
        if config.name.is_empty() {
            self.dir.clone()
        } else {
            self.dir.join(&config.name)
        }
    }

    /// The run folder of a member.
    pub fn dir_of(&self, member: &Member) -> PathBuf {
        let configs = self.configurations();
        match configs.get(member.config) {
            Some(c) => self.configuration_dir(c).join(member_name(member.seed)),
            None => self.dir.join(member_name(member.seed)),
        }
    }

    /// How a member is named in messages: `seed 3`, or `lr=0.1/seed 3` in a grid.
    pub fn label(&self, member: &Member) -> String {
        match self.configurations().get(member.config) {
            Some(c) if !c.name.is_empty() => format!("{}/seed {}", c.name, member.seed),
            _ => format!("seed {}", member.seed),
        }
    }

    /// The run folder of `seed` in a sweep over seeds only.
    pub fn member_dir(&self, seed: u64) -> PathBuf {
        self.dir.join(member_name(seed))
    }

    /// The run folders of every member, in [`Sweep::members`] order.
    pub fn member_dirs(&self) -> Vec<PathBuf> {
        self.members().iter().map(|m| self.dir_of(m)).collect()
    }

    /// Where the run of `seed` stands in a sweep over seeds only.
    pub fn member_state(&self, seed: u64) -> Result<MemberState> {
        state_of_dir(&self.member_dir(seed))
    }

    /// Where a member's run stands, from its committed state (read-only).
    pub fn state_of(&self, member: &Member) -> Result<MemberState> {
        state_of_dir(&self.dir_of(member))
    }

    /// Takes the sweep's lock (one `gtk train --seeds` per sweep at a time).
    pub fn lock(&self) -> Result<WriterLock> {
        WriterLock::acquire_named(&self.dir, LOCK)
    }

    /// Checks that the task-set file still has the content the sweep began with (seeds not
    /// yet created would otherwise train other tasks).
    pub fn check_task_set(&self) -> Result<()> {
        let (Some(path), Some(sha)) = (&self.spec.task_set, &self.spec.task_set_sha256) else {
            return Ok(());
        };
        let bytes = std::fs::read(path).map_err(|e| Error::Run {
            path: path.clone(),
            message: format!(
                "the sweep's task-set file cannot be read ({e}); restore it to continue the sweep"
            ),
        })?;
        if &sha256_hex(&bytes) != sha {
            return Err(Error::Run {
                path: path.clone(),
                message: "changed since the sweep began (its SHA-256 differs from sweep.json's); restore it, or start a new sweep for the new task set".into(),
            });
        }
        Ok(())
    }
}
