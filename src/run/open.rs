//! A run folder opened read-only at its last commit: its resolved task set, the tasks, the
//! learners with the committed weights, and what opening found about the data ([`Run`]).
//! Every reader of a run (`gtk eval`, `export`, `report`, `adapt`) holds a `Run`; the trainer
//! ([`crate::train::Trainer`]) holds one too and adds the writer, the sampler and the loop.
//! Nothing here writes: a `Run` works while a trainer writes the folder and on a folder it
//! cannot write to.

use super::checkpoint::CheckpointFile;
use super::evaluation::{ForwardClock, probe_subset};
use super::record::{MetricsLog, Record};
use super::state::{RunSnapshot, RunState};
use crate::config::{TaskOrder, TaskSet, WPolicy};
use crate::data::{DataChange, DataFingerprint};
use crate::error::{Error, Result};
use crate::learn::{Learner, Strategy};
use crate::optim::OptimizerKind;
use crate::run_folder::{Overrides, files};
use crate::task::{Objective, Split, Task};
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};

/// What opening a run does when a data file holds other bytes than the run recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ChangedData {
    /// Refuse with an error naming the file and both fingerprints: the run would mix two data
    /// sets (resume) or report numbers of data it was not trained on (eval, export, adapt).
    #[default]
    Refuse,
    /// Go on with the new data (`--allow-changed-data`) and say so in [`Run::notes`]; a
    /// resume records the change in `state.json` (`data_changes`) and the new fingerprints.
    Allow,
}

/// A run at its last commit, read-only (see the module header).
pub struct Run {
    pub(crate) set: TaskSet,
    pub(crate) tasks: Vec<Box<dyn Task>>,
    pub(crate) learners: Vec<Learner>,
    pub(crate) step: usize,
    pub(crate) dir: PathBuf,
    pub(crate) device: Device,
    /// Learning rates given on resume (`--lr`, `--mask-lr`), kept by later commits.
    pub(crate) overrides: Overrides,
    /// Per task, the test positions every probe measures.
    pub(crate) probe_sets: Vec<Vec<usize>>,
    /// The evaluation forward's throughput.
    pub(crate) clock: ForwardClock,
    /// What opening the run cleaned up (lines logged after the last commit, temp files), and
    /// what it found about the data (changes accepted, fingerprints recorded).
    pub(crate) notes: Vec<String>,
    /// Fingerprints of the data files the tasks read (committed in the state).
    pub(crate) data: Vec<DataFingerprint>,
    /// Data changes accepted on resume, oldest first (committed in the state).
    pub(crate) data_changes: Vec<DataChange>,
}

impl Run {
    /// The one place a `Run` is put together: at step 0 with fresh probe sets, no overrides
    /// and no notes; [`Run::from_snapshot`] sets what a commit adds.
    pub(crate) fn new(
        set: TaskSet,
        tasks: Vec<Box<dyn Task>>,
        learners: Vec<Learner>,
        dir: &Path,
        device: &Device,
        data: Vec<DataFingerprint>,
    ) -> Run {
        Run {
            probe_sets: probe_sets(&set, &tasks),
            set,
            tasks,
            learners,
            step: 0,
            dir: dir.into(),
            device: device.clone(),
            overrides: Overrides::default(),
            clock: ForwardClock::default(),
            notes: Vec::new(),
            data,
            data_changes: Vec::new(),
        }
    }

    /// Opens a run folder read-only at its last commit (`gtk eval`, `export`, `adapt`): every
    /// file is verified and nothing is written, so it works while a trainer writes the run and
    /// on a folder it cannot write to.
    ///
    /// A data file whose bytes differ from the run's record is refused unless `changed` is
    /// [`ChangedData::Allow`]; what was allowed, and changes an earlier resume accepted, are
    /// in [`Run::notes`].
    pub fn open(
        dir: &Path,
        data_dir: Option<&Path>,
        device: &Device,
        changed: ChangedData,
    ) -> Result<Self> {
        let snapshot = RunSnapshot::open(dir)?;
        let overrides = snapshot.commit.overrides.clone();
        let mut run = Self::from_snapshot(&snapshot, data_dir, device, overrides, changed)?;
        let before = snapshot.commit.state.data_changes.len();
        for c in &snapshot.commit.state.data_changes {
            run.notes.push(format!(
                "the run was resumed on changed data at step {}: {}",
                c.step,
                c.describe()
            ));
        }
        for c in &run.data_changes[before..] {
            run.notes.push(format!(
                "{}; the numbers below are on the new data (--allow-changed-data)",
                c.describe()
            ));
        }
        let metrics = dir.join(files::METRICS);
        run.adopt_probe_sets(&MetricsLog::parse(&snapshot.metrics, &metrics)?, &metrics)?;
        run.apply_gate_switch();
        Ok(run)
    }

    /// Takes the probe sets a run logged (so its probes keep measuring the examples its curves
    /// started with, whatever this build would draw); a run from before probes existed keeps
    /// the fresh draw and logs it when it trains next. Says whether the log held them.
    pub(crate) fn adopt_probe_sets(&mut self, records: &[Record], path: &Path) -> Result<bool> {
        let mut found = vec![None; self.tasks.len()];
        for r in records {
            let Record::ProbeSet {
                task, of, indices, ..
            } = r
            else {
                continue;
            };
            let Some(t) = self.tasks.iter().position(|x| x.name() == task) else {
                return Err(Error::Run {
                    path: path.into(),
                    message: format!(
                        "a probe_set record names task `{task}`, not one of the run's"
                    ),
                });
            };
            let len = probed_len(&self.set, self.tasks[t].as_ref());
            if *of != len || indices.iter().any(|&i| i >= len) {
                return Err(Error::Run {
                    path: path.into(),
                    message: format!(
                        "the probe_set of task `{task}` was drawn from {of} test examples with positions up to {}, but the task has {len}; the task's data changed since the run was trained",
                        indices.iter().max().copied().unwrap_or(0)
                    ),
                });
            }
            found[t] = Some(indices.clone());
        }
        if !found.iter().all(Option::is_some) {
            return Ok(false);
        }
        self.probe_sets = found.into_iter().flatten().collect();
        Ok(true)
    }

    /// Builds the run a snapshot describes, checking the config, the state and the
    /// checkpoint against each other.
    pub(crate) fn from_snapshot(
        snapshot: &RunSnapshot,
        data_dir: Option<&Path>,
        device: &Device,
        overrides: Overrides,
        changed: ChangedData,
    ) -> Result<Self> {
        let dir = &snapshot.dir;
        let config = dir.join(files::CONFIG);
        let mut set = TaskSet::parse_with(&snapshot.config_text, &config, &|_: &str| {
            Err(Error::Run {
                path: config.clone(),
                message: "has no inline [model] table".into(),
            })
        })?;
        if let Some(lr) = overrides.lr {
            set.run.optimizer.lr = lr;
        }
        if let Some(lr) = overrides.mask_lr {
            set.run.gates.mask_lr = lr;
        }
        set.run.check_rates("state.json overrides")?;
        let commit = &snapshot.commit;
        let state = &commit.state;
        check_state(&set, commit.step, state, &dir.join(files::STATE))?;
        check_memory(&set, &state.strategies)?;
        let tasks = set.build_tasks(data_dir)?;
        let data = data_fingerprints(&tasks)?;
        let changes = crate::data::fingerprint::changed(&state.data, &data, commit.step);
        if let Some(first) = changes.first()
            && changed == ChangedData::Refuse
        {
            let more = match changes.len() {
                1 => String::new(),
                n => format!(" (and {} more changed file(s))", n - 1),
            };
            return Err(Error::DataChanged {
                path: first.after.path.clone(),
                message: format!(
                    "changed since run {} recorded it{}: recorded {}, now {}{more}; the run would mix two data sets: restore the file, or give --allow-changed-data to go on with the new data",
                    dir.display(),
                    first.key_note(),
                    first.before.describe(),
                    first.after.describe()
                ),
            });
        }
        let mut data_changes = state.data_changes.clone();
        data_changes.extend(changes);
        let mut learners = learners_for(&set, &tasks, &state.strategies, device, dir)?;
        if let Some(file) = CheckpointFile::of(snapshot) {
            let meta = file.meta()?;
            if meta.step != commit.step {
                return Err(file.corrupt(format!(
                    "it holds step {} but state.json commits step {}",
                    meta.step, commit.step
                )));
            }
            let tensors = file.tensors(device)?;
            let mut expected = std::collections::BTreeSet::new();
            for l in &mut learners {
                l.load(&tensors)
                    .map_err(|e| file.unreadable("does not fit the run's models", e))?;
                expected.extend(l.tensors()?.into_iter().map(|(k, _)| k));
            }
            if let Some(extra) = tensors.keys().find(|k| !expected.contains(*k)) {
                return Err(file.corrupt(format!(
                    "tensor `{extra}` belongs to no strategy or task of this run (strategies: {})",
                    state
                        .strategies
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        } else if commit.step != 0 {
            return Err(Error::Run {
                path: dir.join(files::STATE),
                message: format!("commits step {} without a checkpoint", commit.step),
            });
        }
        Ok(Run {
            step: commit.step,
            overrides,
            data_changes,
            ..Run::new(set, tasks, learners, dir, device, data)
        })
    }

    /// What opening the run cleaned up (for writing) and what it found about the data, one
    /// line each (for the user to see).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Per task, the positions in its test split that every probe measures.
    pub fn probe_sets(&self) -> &[Vec<usize>] {
        &self.probe_sets
    }

    /// What one example of this run's tasks is, for rates such as "images/s": `images` when
    /// every task's input is an image (`[channels, height, width]`), else `samples`.
    pub fn example_noun(&self) -> &'static str {
        if !self.tasks.is_empty() && self.tasks.iter().all(|t| t.input_shape().len() == 3) {
            "images"
        } else {
            "samples"
        }
    }

    /// The task set being trained.
    pub fn task_set(&self) -> &TaskSet {
        &self.set
    }

    /// Steps done.
    pub fn step(&self) -> usize {
        self.step
    }

    /// The learners, one per strategy.
    pub fn learners(&self) -> &[Learner] {
        &self.learners
    }

    /// The run folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The objective shared by the run's tasks.
    pub fn objective(&self) -> Objective {
        self.tasks[0].objective()
    }

    pub(crate) fn dtype(&self) -> DType {
        self.set.run.dtype.dtype()
    }

    /// HAT's gate scale after `step` steps: 1 → `hat_max_scale`, linearly.
    pub fn hat_scale(&self, step: usize) -> f64 {
        let run = &self.set.run;
        1.0 + (run.gates.hat_max_scale - 1.0) * (step as f64 / run.steps as f64).min(1.0)
    }

    /// Switches every learner to the binary (STE) gate once `binarize_after` steps are done;
    /// the step loop also stops updating masks from then on, unless `binarized_masks =
    /// "trained"`: then the masks' optimizer state starts afresh at the switch (idempotent,
    /// so a run resumed exactly at the switch takes the same steps).
    pub(crate) fn apply_gate_switch(&mut self) {
        let gates = &self.set.run.gates;
        if let Some(at) = gates.binarize_after
            && self.step >= at
        {
            let reset = self.step == at && !gates.binarized_masks.is_frozen();
            for l in &mut self.learners {
                l.set_gate_mode(crate::gate::GateMode::Ste);
                if reset {
                    l.reset_mask_optimizer();
                }
            }
        }
    }
}

/// Per task, the positions of the split that probes measure (`eval_split`: the test split, or
/// the validation split held out of the training data).
pub(crate) fn probe_sets(set: &TaskSet, tasks: &[Box<dyn Task>]) -> Vec<Vec<usize>> {
    tasks
        .iter()
        .map(|t| probe_subset(probed_len(set, t.as_ref()), set.run.evaluation.eval_subset))
        .collect()
}

/// The examples in the split a task's probes measure.
pub(crate) fn probed_len(set: &TaskSet, task: &dyn Task) -> usize {
    match probed_view(set, task) {
        Some(val) => val.len(Split::Test),
        None => task.len(Split::Test),
    }
}

/// The validation view a task's probes measure (`eval_split = "val"`), or none when they
/// measure its test split.
pub(crate) fn probed_view(set: &TaskSet, task: &dyn Task) -> Option<Box<dyn Task>> {
    match set.run.evaluation.eval_split {
        crate::config::EvalSplit::Val => task.validation(),
        crate::config::EvalSplit::Test => None,
    }
}

/// A run folder's resolved task set (`config.toml`), as committed (verified against
/// `state.json`).
pub fn read_run_config(dir: &Path) -> Result<TaskSet> {
    let snapshot = RunSnapshot::open(dir)?;
    let config = dir.join(files::CONFIG);
    TaskSet::parse_with(&snapshot.config_text, &config, &|_: &str| {
        Err(Error::Run {
            path: config.clone(),
            message: "has no inline [model] table".into(),
        })
    })
}

/// The run folder under `runs` whose state file was written last.
pub fn latest_run(runs: &Path) -> Result<PathBuf> {
    let entries = std::fs::read_dir(runs).map_err(|e| Error::Run {
        path: runs.into(),
        message: format!("no runs folder ({e}); train first with `gtk train`"),
    })?;
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for e in entries.flatten() {
        let state = e.path().join(files::STATE);
        if let Ok(m) = std::fs::metadata(&state).and_then(|m| m.modified())
            && best.as_ref().is_none_or(|(t, _)| m > *t)
        {
            best = Some((m, e.path()));
        }
    }
    best.map(|(_, p)| p).ok_or_else(|| Error::Run {
        path: runs.into(),
        message: "no finished run found; train first with `gtk train`".into(),
    })
}

/// One learner per strategy, each with the run's Task-IL output heads when
/// `scenario = "task"` ([`crate::learn::heads_for`]).
pub(crate) fn learners_for(
    set: &TaskSet,
    tasks: &[Box<dyn Task>],
    strategies: &[Strategy],
    device: &Device,
    at: &Path,
) -> Result<Vec<Learner>> {
    let outputs = set.model.output_shape()?.iter().product();
    let heads =
        crate::learn::heads_for(set.run.continual.scenario, tasks, outputs).map_err(|e| {
            Error::Run {
                path: at.into(),
                message: format!("{} of {}", e, set.origin.display()),
            }
        })?;
    let names = set.task_names();
    Ok(strategies
        .iter()
        .map(|s| {
            Learner::new(*s, &set.run, &set.model, &names, device)
                .map(|l| l.with_heads(heads.clone()))
        })
        .collect::<candle_core::Result<Vec<_>>>()?)
}

/// Checks a commit's trainer state against the run's config, so that no edit of
/// `state.json` can panic the trainer or silently drop weights.
/// Strategies must fit the schedule (shared is interleaved, finetune and joint sequential), and
/// a `w_policy` other than `train` needs a gated model to apply to.
pub(crate) fn check_strategies(set: &TaskSet, strategies: &[Strategy], at: &Path) -> Result<()> {
    let run = &set.run;
    if let Some(s) = strategies.iter().find(|s| !s.fits(run.schedule.order)) {
        let instead = match run.schedule.order {
            TaskOrder::Interleaved => "gated, shared, separate or xdg",
            TaskOrder::Sequential => "gated, finetune, separate, joint, ewc, online-ewc, si or xdg",
        };
        return Err(Error::Run {
            path: at.into(),
            message: format!(
                "strategy `{s}` does not fit run.schedule = \"{}\" of {}: use {instead}",
                run.schedule.order.as_str(),
                set.origin.display()
            ),
        });
    }
    if let Some(scenario) = run.continual.scenario
        && !scenario.gives_task_id()
        && let Some(s) = strategies.iter().find(|s| s.layout().gated)
    {
        return Err(Error::Run {
            path: at.into(),
            message: format!(
                "strategy `{s}` picks its masks by the task id, which run.scenario = \"{scenario}\" of {} does not give; it would have to infer the task from the input, which it does not yet: run it with scenario = \"task\", or drop it from --strategy",
                set.origin.display()
            ),
        });
    }
    if run.schedule.w_policy != WPolicy::Train && !strategies.contains(&Strategy::Gated) {
        return Err(Error::Run {
            path: at.into(),
            message: format!(
                "run.w_policy = \"{}\" of {} applies to the gated model, which this run does not train (plain models always train W); add --strategy gated or all, or remove run.w_policy",
                run.schedule.w_policy.as_str(),
                set.origin.display()
            ),
        });
    }
    Ok(())
}

pub(crate) fn check_state(set: &TaskSet, step: usize, state: &RunState, path: &Path) -> Result<()> {
    let bad = |message: String| Error::Run {
        path: path.into(),
        message,
    };
    if state.strategies.is_empty() {
        return Err(bad("lists no strategy; a run trains at least one".into()));
    }
    for (i, s) in state.strategies.iter().enumerate() {
        if state.strategies[..i].contains(s) {
            return Err(bad(format!("lists strategy `{s}` twice")));
        }
    }
    if step > set.run.steps {
        return Err(bad(format!(
            "commits step {step}, past the run's {} steps",
            set.run.steps
        )));
    }
    state
        .sampler
        .check(
            set.tasks.len(),
            set.run.schedule.steps_per_task,
            set.run.schedule.phase_steps,
        )
        .map_err(|m| bad(format!("sampler state: {m}")))?;
    match (
        &state.joint_sampler,
        state.strategies.contains(&Strategy::Joint),
    ) {
        (Some(j), true) => j
            .check(set.tasks.len(), set.run.schedule.steps_per_task, None)
            .map_err(|m| bad(format!("joint_sampler state: {m}")))?,
        (None, false) => {}
        (Some(_), false) => {
            return Err(bad(
                "holds a joint_sampler but the run has no joint strategy".into(),
            ));
        }
        (None, true) => {
            return Err(bad(
                "lists the joint strategy without its joint_sampler".into()
            ));
        }
    }
    check_strategies(set, &state.strategies, path)?;
    let tl = &state.train_loss;
    if !tl.sums.is_empty()
        && (tl.sums.len() != state.strategies.len()
            || tl
                .sums
                .iter()
                .zip(&state.strategies)
                .any(|(a, b)| a.0 != *b))
    {
        return Err(bad(
            "train_loss lists other strategies than the run's".into()
        ));
    }
    if tl.sums.iter().any(|(_, v)| !v.is_finite()) {
        return Err(bad("train_loss holds a non-finite sum".into()));
    }
    if let Some(why) = state.probe_train.check(&state.strategies, set.tasks.len()) {
        return Err(bad(format!("probe_train {why}")));
    }
    Ok(())
}

/// Refuses a model that could not be allocated, naming its largest layer, before any tensor is
/// made (a failed allocation would abort the process instead of reporting an error).
pub(crate) fn check_memory(set: &TaskSet, strategies: &[Strategy]) -> Result<()> {
    let counts = set.model.param_counts()?;
    let needed = memory_needed(set, strategies)?;
    let available = memory_bytes().map(u128::from);
    let limit = available.unwrap_or(u128::from(u64::MAX));
    if needed > limit {
        let (layer, n) = counts
            .iter()
            .max_by_key(|(_, n)| *n)
            .cloned()
            .unwrap_or_default();
        return Err(Error::config(
            set.origin_label(),
            format!("model.{layer}"),
            format!(
                "has {n} parameters; training {} on {} task(s) needs about {:.1} GiB, more than this machine's {:.1} GiB of memory; make the layer smaller",
                strategies
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                set.tasks.len(),
                needed as f64 / (1u64 << 30) as f64,
                limit as f64 / (1u64 << 30) as f64
            ),
        ));
    }
    Ok(())
}

/// Bytes a run of `strategies` on `set` needs at its peak, estimated from the parameter counts.
fn memory_needed(set: &TaskSet, strategies: &[Strategy]) -> Result<u128> {
    let per_model: u128 = set.model.param_counts()?.iter().map(|(_, n)| *n).sum();
    let t = set.tasks.len() as u128;
    let bytes_per = set.run.dtype.dtype().size_in_bytes() as u128;
    // A model's W with two optimizer slots, ×4 for the engine's copy, gradients and work
    // buffers. A gated run keeps every task's mask and its optimizer slots three times (the
    // bank, the engine's copy, the checkpoint's bytes while one is written), but gradients and
    // work buffers only for the task being trained. Measured: 50 tasks of FC 1024-1024-500
    // with RMSProp masks peaked at 2.85 GiB of RSS; this gives 2.83 GiB.
    let mask_copies = 1 + optimizer_slots(set.run.gates.mask_optimizer) as u128;
    let mut copies: u128 = 0;
    for s in strategies {
        let layout = s.layout();
        copies += 4 * 3 * layout.model_count(set.tasks.len()) as u128;
        if layout.gated {
            copies += 3 * mask_copies * t + 4 * mask_copies;
        }
    }
    Ok(per_model.saturating_mul(copies).saturating_mul(bytes_per))
}

/// The state an optimizer keeps per parameter: Adam two moments, momentum and RMSProp one.
fn optimizer_slots(kind: OptimizerKind) -> usize {
    match kind {
        OptimizerKind::Sgd => 0,
        OptimizerKind::Momentum | OptimizerKind::Rmsprop => 1,
        OptimizerKind::Adam => 2,
    }
}

/// This machine's physical memory in bytes (Linux: `MemTotal` of `/proc/meminfo`); none where
/// it cannot be read.
fn memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Loads a finished (or stopped) run for evaluation, read-only: the task set, the tasks and
/// the learners at their last commit.
///
/// A data file that changed since the run recorded it is refused; [`open_run_with`] can
/// accept it.
pub fn open_run(dir: &Path, data_dir: Option<&Path>, device: &Device) -> Result<Run> {
    Run::open(dir, data_dir, device, ChangedData::Refuse)
}

/// [`open_run`] with a choice for data files that changed since the run recorded them.
pub fn open_run_with(
    dir: &Path,
    data_dir: Option<&Path>,
    device: &Device,
    changed: ChangedData,
) -> Result<Run> {
    Run::open(dir, data_dir, device, changed)
}

/// The fingerprints of the files `tasks` read, each file once (image tasks share a dataset).
pub(crate) fn data_fingerprints(tasks: &[Box<dyn Task>]) -> Result<Vec<DataFingerprint>> {
    let mut all: Vec<DataFingerprint> = Vec::new();
    for t in tasks {
        for f in t.data_fingerprints()? {
            if !all.iter().any(|a| a.file == f.file) {
                all.push(f);
            }
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelSpec;
    use std::path::Path;

    /// SupSup's setting (FC 1024-1024-500, RMSProp masks, W frozen) on 50 tasks peaked at
    /// 2.85 GiB of RSS (`/usr/bin/time -v`, 20 steps per task, 2026-12-07); 250 tasks must fit a
    /// 24 GiB machine, as the same run's mask bytes say they do.
    #[test]
    fn gated_estimate_follows_the_measured_peak() {
        let set_of = |tasks: usize| {
            let mut text = String::from(
                "[run]\nmodel = \"fc\"\nsteps = 100\nbatch_size = 128\noptimizer = \"rmsprop\"\n\
                 lr = 0.0001\ngate = \"ste\"\nw_policy = \"frozen\"\nmask_optimizer = \"rmsprop\"\n\
                 mask_lr = 0.0001\n",
            );
            for k in 0..tasks {
                text.push_str(&format!("[[task]]\nname = \"p{k}\"\nkind = \"linear\"\n"));
            }
            let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fc-1024-1024-500.toml");
            TaskSet::parse_with(&text, Path::new("t.toml"), &|_| ModelSpec::load(&model))
                .expect("task set")
        };
        let gib = |tasks: usize| {
            memory_needed(&set_of(tasks), &[Strategy::Gated]).expect("estimate") as f64
                / (1u64 << 30) as f64
        };
        let fifty = gib(50);
        assert!((2.5..3.3).contains(&fifty), "50 tasks: {fifty:.2} GiB");
        let all = gib(250);
        assert!((12.0..16.0).contains(&all), "250 tasks: {all:.2} GiB");
    }
}
