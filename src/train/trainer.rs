//! The training loop: one task sampler drives every strategy of a run step by step, so they
//! see the same task and batch sequence. Two tiers of evaluation: a probe every `eval_every`
//! steps (a fixed test subset per task, and the training batches since the last probe) and
//! the full evaluation every `full_eval_every` steps and at the end; commits every
//! `checkpoint_every` steps. A run folder can be resumed to bit-identical weights.
//!
//! The run folder itself (files, the commit protocol, the lock, read-only snapshots) is
//! [`crate::run_folder`]; this module decides what goes into it.

use super::TaskSet;
use super::checkpoint::{CheckpointFile, encode, first_non_finite};
use super::continual::{ContinualSummary, TaskOrder, WPolicy};
use super::evaluation::{
    BatchSums, ForwardClock, ModelParams, PROBE_SEED, Pass, measure_all, model_params, probe_subset,
};
use super::learner::Learner;
use super::record::{MetricsLog, Record};
use super::sampler::TaskSampler;
use super::state::{RunSnapshot, RunState, TrainLoss};
use super::strategy::{Models, StepSettings, Strategy};
use super::table::ComparisonTable;
use super::tensorboard::{TensorBoardSink, write_events};
use crate::data::{DataChange, DataFingerprint};
use crate::error::{Error, Result};
use crate::gate::{GateView, TaskGate};
use crate::params::ParamKey;
use crate::params::TaskId;
use crate::run_folder::{Overrides, RunWriter, fsio};
use crate::task::{Objective, Split, Task, TrueMask, mean_predictor_mse};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use crate::run_folder::files;

/// Wall-clock figures of one training session (what `timing.json` holds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// `fast` or `reference`, per strategy trained.
    pub engines: Vec<(Strategy, String)>,
    /// Why `engine = "fast"` trains on the reference instead, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_fallback: Option<String>,
    /// rayon threads.
    pub threads: usize,
    /// Steps taken in this session.
    pub loop_steps: usize,
    /// Seconds spent in those steps: task and batch draws, on-the-fly transforms, forward,
    /// backward and update of every strategy; evaluation, logging and checkpoints excluded.
    pub loop_seconds: f64,
    /// `loop_steps / loop_seconds`.
    pub steps_per_second: f64,
    /// Seconds from the origin (process start when the CLI sets it, else the trainer's
    /// creation) to the start of the first training step.
    pub first_step_seconds: Option<f64>,
    /// Commits made in this session and the seconds they took (checkpoint encoding,
    /// checksums, writes and fsyncs).
    #[serde(default)]
    pub commits: usize,
    /// Seconds spent in those commits.
    #[serde(default)]
    pub commit_seconds: f64,
    /// Probes made in this session and the seconds they took (test subsets; the training
    /// split comes from the batches).
    #[serde(default)]
    pub probes: usize,
    /// Seconds spent in those probes.
    #[serde(default)]
    pub probe_seconds: f64,
    /// Full evaluations made in this session and the seconds they took.
    #[serde(default)]
    pub full_evals: usize,
    /// Seconds spent in those full evaluations.
    #[serde(default)]
    pub full_eval_seconds: f64,
    /// Images (examples) through the engine's evaluation forward, every model and gate view
    /// counted, in probes and full evaluations.
    #[serde(default)]
    pub forward_images: u64,
    /// Seconds inside that forward (rendering the images and scoring excluded).
    #[serde(default)]
    pub forward_seconds: f64,
    /// `forward_images / forward_seconds`.
    #[serde(default)]
    pub forward_images_per_second: f64,
}

/// What the loop reports as it goes (the CLI turns it into a progress bar or log lines).
#[derive(Debug)]
pub enum Event<'a> {
    /// A step finished; `losses` holds each strategy's training loss on the step's batch.
    Step {
        /// Steps done.
        step: usize,
        /// Steps in the run.
        total: usize,
        /// Training loss per strategy.
        losses: &'a [(Strategy, f64)],
    },
    /// A probe or a full evaluation finished.
    Eval {
        /// Steps done.
        step: usize,
        /// Whether the full evaluation ran (else only the probe).
        full: bool,
        /// What was measured.
        records: &'a [Record],
    },
}

/// The writing side of a trainer: the run folder's writer and the live TensorBoard events.
struct Writer {
    run: RunWriter<RunState>,
    /// Live TensorBoard events in `tb/`, fed the same records as `metrics.jsonl`.
    tensorboard: TensorBoardSink,
}

/// A run in progress, or a run opened read-only for evaluation.
pub struct Trainer {
    set: TaskSet,
    tasks: Vec<Box<dyn Task>>,
    learners: Vec<Learner>,
    sampler: TaskSampler,
    /// The `joint` strategy's draws (sequential runs with `joint` only).
    joint_sampler: Option<TaskSampler>,
    step: usize,
    dir: PathBuf,
    device: Device,
    /// None when the run was opened read-only.
    writer: Option<Writer>,
    overrides: Overrides,
    train_loss: TrainLoss,
    /// The training batches since the last probe.
    probe_train: BatchSums,
    /// Per task, the test positions every probe measures.
    probe_sets: Vec<Vec<usize>>,
    /// Whether `metrics.jsonl` already holds the probe sets.
    probe_sets_logged: bool,
    /// The evaluation forward's throughput.
    clock: ForwardClock,
    origin: std::time::Instant,
    timing: Timing,
    /// The records of the last full evaluation and the step it ran at.
    last_eval: Option<(usize, Vec<Record>)>,
    /// What opening the run cleaned up (lines logged after the last commit, temp files), and
    /// what it found about the data (changes accepted, fingerprints recorded).
    notes: Vec<String>,
    /// Fingerprints of the data files the tasks read (committed in the state).
    data: Vec<DataFingerprint>,
    /// Data changes accepted on resume, oldest first (committed in the state).
    data_changes: Vec<DataChange>,
}

/// What opening a run does when a data file holds other bytes than the run recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ChangedData {
    /// Refuse with an error naming the file and both fingerprints: the run would mix two data
    /// sets (resume) or report numbers of data it was not trained on (eval, export, adapt).
    #[default]
    Refuse,
    /// Go on with the new data (`--allow-changed-data`) and say so in [`Trainer::notes`]; a
    /// resume records the change in `state.json` (`data_changes`) and the new fingerprints.
    Allow,
}

impl Trainer {
    /// Starts a new run in `dir`, which must not exist. Everything is checked (tasks built,
    /// model fit, memory) before anything is written; the folder is created with its step-0
    /// commit in one step and locked for this trainer.
    pub fn create(
        mut set: TaskSet,
        strategies: &[Strategy],
        dir: &Path,
        data_dir: Option<&Path>,
        device: &Device,
    ) -> Result<Self> {
        if strategies.is_empty() {
            return Err(Error::Run {
                path: dir.into(),
                message: "no strategy to train".into(),
            });
        }
        let empty = std::fs::read_dir(dir).is_ok_and(|mut e| e.next().is_none());
        if dir.exists() && !empty {
            return Err(Error::Run {
                path: dir.into(),
                message: "already exists; choose another --name, or continue it with --resume"
                    .into(),
            });
        }
        check_strategies(&set, strategies, dir)?;
        check_memory(&set, strategies)?;
        let tasks = set.build_tasks(data_dir)?;
        // Statistics computed from the data (standardisation) go into config.toml, so every
        // reader of the run applies the same transform.
        set.pin(&tasks)?;
        let data = data_fingerprints(&tasks)?;
        let names = set.task_names();
        let learners = strategies
            .iter()
            .map(|s| Learner::new(*s, &set.run, &set.model, &names, device))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let sampler = match set.run.phase_steps {
            Some(p) => TaskSampler::sequential(set.run.seed, p),
            None => TaskSampler::new(set.run.seed, set.run.steps_per_task),
        };
        let joint_sampler = strategies
            .contains(&Strategy::Joint)
            .then(|| TaskSampler::interleaved_beside(set.run.seed, set.run.steps_per_task));
        let state = RunState {
            sampler: sampler.clone(),
            strategies: strategies.to_vec(),
            train_loss: TrainLoss::default(),
            probe_train: BatchSums::default(),
            joint_sampler: joint_sampler.clone(),
            data: data.clone(),
            data_changes: Vec::new(),
        };
        let probe_sets = probe_sets(&set, &tasks);
        let run = RunWriter::create(dir, &set.to_toml(), state)?;
        let tensorboard = TensorBoardSink::create(dir, &set)?;
        Ok(Trainer {
            set,
            tasks,
            learners,
            sampler,
            joint_sampler,
            step: 0,
            dir: dir.into(),
            device: device.clone(),
            writer: Some(Writer { run, tensorboard }),
            overrides: Overrides::default(),
            train_loss: TrainLoss::default(),
            probe_train: BatchSums::default(),
            probe_sets,
            probe_sets_logged: false,
            clock: ForwardClock::default(),
            origin: std::time::Instant::now(),
            timing: Timing::default(),
            last_eval: None,
            notes: Vec::new(),
            data,
            data_changes: Vec::new(),
        })
    }

    /// Re-opens a run folder at its last commit to continue training: takes the run's lock,
    /// drops what was logged after the commit, removes leftovers of an interrupted writer and
    /// rebuilds `tb/`. `overrides` (e.g. a smaller learning rate after a divergence) are
    /// committed at once and kept by later commits.
    ///
    /// A data file whose bytes differ from the run's record is refused; see
    /// [`Trainer::resume_with`] to accept it.
    pub fn resume(
        dir: &Path,
        data_dir: Option<&Path>,
        device: &Device,
        overrides: Overrides,
    ) -> Result<Self> {
        Self::resume_with(dir, data_dir, device, overrides, ChangedData::Refuse)
    }

    /// [`Trainer::resume`], with a choice for data files that changed since the run recorded
    /// them. Accepted changes are committed at once (new fingerprints, and the change in
    /// `data_changes`), so the run folder says which data trained which steps.
    pub fn resume_with(
        dir: &Path,
        data_dir: Option<&Path>,
        device: &Device,
        overrides: Overrides,
        changed: ChangedData,
    ) -> Result<Self> {
        let (run, snapshot, mut notes) = RunWriter::<RunState>::open(dir)?;
        let all = snapshot.commit.overrides.merged(&overrides);
        // The new values are checked first, so a bad `--lr` is named as the flag it came from
        // rather than as the state.json overrides it would have become.
        let set = TaskSet::parse_with(
            &snapshot.config_text,
            &dir.join(files::CONFIG),
            &|_: &str| {
                Err(Error::Run {
                    path: dir.join(files::CONFIG),
                    message: "has no inline [model] table".into(),
                })
            },
        )?;
        for (flag, v) in [("--lr", overrides.lr), ("--mask-lr", overrides.mask_lr)] {
            if let Some(v) = v {
                set.run.check_rate("command line", flag, v)?;
            }
        }
        let mut trainer = Self::from_snapshot(&snapshot, data_dir, device, all, changed)?;
        let accepted = trainer.data_changes.len() > snapshot.commit.state.data_changes.len();
        for c in &trainer.data_changes[snapshot.commit.state.data_changes.len()..] {
            notes.push(format!(
                "{}; training goes on with the new data from step {} (--allow-changed-data; recorded in state.json's data_changes)",
                c.describe(),
                c.step
            ));
        }
        if snapshot.commit.state.data.is_empty() && !trainer.data.is_empty() {
            notes.push(format!(
                "the run recorded no data fingerprints (it was created before gatekit recorded them): recording the {} data file(s) it reads now, so later changes are caught",
                trainer.data.len()
            ));
        }
        trainer.notes = notes;
        // Rebuild tb/ from the committed log (already read and verified), then append live
        // events after it.
        let records = MetricsLog::parse(&snapshot.metrics, &dir.join(files::METRICS))?;
        trainer.adopt_probe_sets(&records, &dir.join(files::METRICS))?;
        write_events(&records, &dir.join(files::TB_DIR), &trainer.set)?;
        let tensorboard = TensorBoardSink::create(dir, &trainer.set)?;
        trainer.writer = Some(Writer { run, tensorboard });
        if !overrides.is_empty() || accepted {
            trainer.commit(snapshot.checkpoint.as_deref())?;
        }
        trainer.apply_gate_switch();
        Ok(trainer)
    }

    /// Opens a run folder read-only at its last commit (`gtk eval`, `export`, `adapt`): every
    /// file is verified and nothing is written, so it works while a trainer writes the run and
    /// on a folder it cannot write to.
    ///
    /// A data file whose bytes differ from the run's record is refused unless `changed` is
    /// [`ChangedData::Allow`]; what was allowed, and changes an earlier resume accepted, are
    /// in [`Trainer::notes`].
    pub fn open_read_only(
        dir: &Path,
        data_dir: Option<&Path>,
        device: &Device,
        changed: ChangedData,
    ) -> Result<Self> {
        let snapshot = RunSnapshot::open(dir)?;
        let overrides = snapshot.commit.overrides.clone();
        let mut trainer = Self::from_snapshot(&snapshot, data_dir, device, overrides, changed)?;
        let before = snapshot.commit.state.data_changes.len();
        for c in &snapshot.commit.state.data_changes {
            trainer.notes.push(format!(
                "the run was resumed on changed data at step {}: {}",
                c.step,
                c.describe()
            ));
        }
        for c in &trainer.data_changes[before..] {
            trainer.notes.push(format!(
                "{}; the numbers below are on the new data (--allow-changed-data)",
                c.describe()
            ));
        }
        let metrics = dir.join(files::METRICS);
        trainer.adopt_probe_sets(&MetricsLog::parse(&snapshot.metrics, &metrics)?, &metrics)?;
        trainer.apply_gate_switch();
        Ok(trainer)
    }

    /// Takes the probe sets a run logged (so its probes keep measuring the examples its curves
    /// started with, whatever this build would draw); a run from before probes existed keeps
    /// the fresh draw and logs it when it trains next.
    fn adopt_probe_sets(&mut self, records: &[Record], path: &Path) -> Result<()> {
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
            let len = self.tasks[t].len(Split::Test);
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
        if found.iter().all(Option::is_some) {
            self.probe_sets = found.into_iter().flatten().collect();
            self.probe_sets_logged = true;
        }
        Ok(())
    }

    /// Builds the trainer a snapshot describes, checking the config, the state and the
    /// checkpoint against each other.
    fn from_snapshot(
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
            set.run.lr = lr;
        }
        if let Some(lr) = overrides.mask_lr {
            set.run.mask_lr = lr;
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
        let probe_sets = probe_sets(&set, &tasks);
        let names = set.task_names();
        let mut learners = state
            .strategies
            .iter()
            .map(|s| Learner::new(*s, &set.run, &set.model, &names, device))
            .collect::<candle_core::Result<Vec<_>>>()?;
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
        Ok(Trainer {
            set,
            tasks,
            learners,
            sampler: state.sampler.clone(),
            joint_sampler: state.joint_sampler.clone(),
            step: commit.step,
            dir: dir.clone(),
            device: device.clone(),
            writer: None,
            overrides,
            train_loss: state.train_loss.clone(),
            probe_train: state.probe_train.clone(),
            probe_sets,
            probe_sets_logged: false,
            clock: ForwardClock::default(),
            origin: std::time::Instant::now(),
            timing: Timing::default(),
            last_eval: None,
            notes: Vec::new(),
            data,
            data_changes,
        })
    }

    /// What opening the run cleaned up (for writing) and what it found about the data, one
    /// line each (for the user to see).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Measures `first_step_seconds` from `origin` (the CLI passes its process start).
    pub fn set_origin(&mut self, origin: std::time::Instant) {
        self.origin = origin;
    }

    /// Per task, the positions in its test split that every probe measures.
    pub fn probe_sets(&self) -> &[Vec<usize>] {
        &self.probe_sets
    }

    /// The records of the full evaluation at the current step, if [`Trainer::train`] ran one.
    pub fn last_evaluation(&self) -> Option<&[Record]> {
        match &self.last_eval {
            Some((step, records)) if *step == self.step => Some(records),
            _ => None,
        }
    }

    /// Wall-clock figures of the training done by this trainer so far.
    pub fn timing(&self) -> &Timing {
        &self.timing
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

    fn dtype(&self) -> DType {
        self.set.run.dtype.dtype()
    }

    /// HAT's gate scale after `step` steps: 1 → `hat_max_scale`, linearly.
    pub fn hat_scale(&self, step: usize) -> f64 {
        let run = &self.set.run;
        1.0 + (run.hat_max_scale - 1.0) * (step as f64 / run.steps as f64).min(1.0)
    }

    /// Trains until the configured step count, or until `stop_at` steps are done (then saves a
    /// checkpoint so the run can be resumed).
    pub fn train(&mut self, stop_at: Option<usize>, on: &mut dyn FnMut(Event)) -> Result<()> {
        if self.writer.is_none() {
            return Err(Error::Run {
                path: self.dir.clone(),
                message: "was opened read-only; only `gtk train` writes a run".into(),
            });
        }
        let total = self.set.run.steps;
        let until = stop_at.map_or(total, |s| s.min(total));
        if !self.probe_sets_logged {
            let records = self.probe_set_records();
            self.record(&records)?;
            self.probe_sets_logged = true;
        }
        // The step-0 probe's parameters, measured once something else is logged.
        let mut start_probe: Option<Vec<ModelParams>> = None;
        if self.step == 0 {
            let run = &self.set.run;
            let (full, probe) = (run.full_eval_at_start, run.eval_at_start);
            let mut records = Vec::new();
            if probe && !full && self.step < until {
                start_probe = self.probe_params_now()?;
            }
            if probe && start_probe.is_none() {
                records.extend(self.timed_probe()?);
            }
            if full {
                records.extend(self.timed_evaluate()?);
            }
            if !records.is_empty() {
                self.record(&records)?;
                on(Event::Eval {
                    step: 0,
                    full,
                    records: &records,
                });
            }
        }
        let objective = self.objective();
        let (dtype, bs, t_n) = (self.dtype(), self.set.run.batch_size, self.tasks.len());
        let mut losses = Vec::with_capacity(self.learners.len());
        let mut scored = Vec::with_capacity(self.learners.len());
        let mut saved = self.step;
        self.timing.engines = self
            .learners
            .iter()
            .map(|l| (l.strategy(), l.engine_name().to_string()))
            .collect();
        self.timing.engine_fallback = self
            .learners
            .iter()
            .find_map(|l| l.engine_refusal())
            .map(str::to_string);
        self.timing.threads = rayon::current_num_threads();
        while self.step < until {
            let started = std::time::Instant::now();
            if self.timing.first_step_seconds.is_none() {
                self.timing.first_step_seconds =
                    Some(started.duration_since(self.origin).as_secs_f64());
            }
            self.apply_gate_switch();
            let t = self.sampler.next_task(t_n);
            let idx = self.sampler.batch(self.tasks[t].len(Split::Train), bs);
            let batch = self.tasks[t].batch(Split::Train, &idx, &self.device, dtype)?;
            let joint = match &mut self.joint_sampler {
                Some(j) => {
                    let jt = j.next_task(t_n);
                    let idx = j.batch(self.tasks[jt].len(Split::Train), bs);
                    Some((
                        jt,
                        self.tasks[jt].batch(Split::Train, &idx, &self.device, dtype)?,
                    ))
                }
                None => None,
            };
            let run = &self.set.run;
            let w_trains = run.w_policy.trains_w(run.phase_of(self.step));
            let at = StepSettings {
                gate_scale: self.hat_scale(self.step),
                w_lr_factor: run.lr_schedule.factor(self.step, total, run.lr_warmup),
                mask_lr_factor: if run.binarize_after.is_some_and(|b| self.step >= b) {
                    0.0
                } else {
                    run.mask_lr_schedule
                        .factor(self.step, total, run.mask_lr_warmup)
                },
            };
            losses.clear();
            scored.clear();
            for l in &mut self.learners {
                let (task, batch) = match (&joint, l.strategy()) {
                    (Some((jt, jb)), Strategy::Joint) => (*jt, jb),
                    _ => (t, &batch),
                };
                let mut at = at;
                if l.strategy() == Strategy::Gated && !w_trains {
                    at.w_lr_factor = 0.0;
                }
                let (loss, metric) = l.train_step_scored(TaskId(task), batch, objective, at)?;
                losses.push((l.strategy(), loss));
                scored.push((l.strategy(), loss, metric));
            }
            if let Some((s, _)) = losses.iter().find(|(_, l)| !l.is_finite()) {
                return Err(self.diverged(
                    self.step + 1,
                    "the training loss",
                    *s,
                    &format!("task `{}`", self.tasks[t].name()),
                ));
            }
            self.step += 1;
            self.timing.loop_steps += 1;
            self.timing.loop_seconds += started.elapsed().as_secs_f64();
            self.train_loss.add(&losses);
            match &joint {
                // The joint model trained on its own task's batch.
                Some((jt, _)) => {
                    let (own, other): (Vec<_>, Vec<_>) =
                        scored.iter().partition(|(s, ..)| *s != Strategy::Joint);
                    self.probe_train.add(t, idx.len(), &own);
                    self.probe_train.add(*jt, idx.len(), &other);
                }
                None => self.probe_train.add(t, idx.len(), &scored),
            }
            let run = &self.set.run;
            let last = self.step == total;
            let full = last
                || run
                    .full_eval_every
                    .is_some_and(|k| self.step.is_multiple_of(k));
            let probe = last || self.step.is_multiple_of(run.eval_every);
            // The end of a sequential phase: a row of every accuracy matrix, committed.
            let phase_end = run.phase_steps.is_some_and(|p| self.step.is_multiple_of(p));
            let commit = full || phase_end || self.step.is_multiple_of(run.checkpoint_every.max(1));
            let stop = self.step == until;
            if let Some(params) = start_probe.take_if(|_| {
                probe || full || commit || stop || self.step.is_multiple_of(run.log_every)
            }) {
                let started = std::time::Instant::now();
                let records = self.probe_at(0, Some(&params))?;
                self.timing.probes += 1;
                self.timing.probe_seconds += started.elapsed().as_secs_f64();
                self.record(&records)?;
                on(Event::Eval {
                    step: 0,
                    full: false,
                    records: &records,
                });
            }
            if self.step.is_multiple_of(self.set.run.log_every) {
                let records = self.train_loss.drain(self.step);
                self.record(&records)?;
            }
            on(Event::Step {
                step: self.step,
                total,
                losses: &losses,
            });
            let mut records = Vec::new();
            if phase_end {
                records.extend(self.phase_records()?);
            }
            if probe {
                records.extend(self.probe_train_records());
                records.extend(self.timed_probe()?);
                // Weight histograms at a few probes besides the full evaluations, so Figure 2
                // can show how the distributions move over training.
                let every = histogram_every(total, self.set.run.eval_every);
                if !full && self.step.is_multiple_of(every) {
                    for l in &self.learners {
                        records.extend(self.histograms(l)?);
                    }
                }
            }
            if full {
                let full_records = self.timed_evaluate()?;
                records.extend(full_records.iter().cloned());
                self.last_eval = Some((self.step, full_records));
            }
            if !records.is_empty() {
                self.record(&records)?;
            }
            if commit {
                self.save()?;
                saved = self.step;
            }
            if !records.is_empty() {
                on(Event::Eval {
                    step: self.step,
                    full,
                    records: &records,
                });
            }
        }
        if saved != self.step {
            self.save()?;
        }
        if self.set.run.schedule == TaskOrder::Sequential && self.step == total {
            self.write_continual_summary()?;
        }
        self.timing.steps_per_second =
            self.timing.loop_steps as f64 / self.timing.loop_seconds.max(1e-12);
        let (images, seconds) = self.clock.read();
        self.timing.forward_images = images;
        self.timing.forward_seconds = seconds;
        self.timing.forward_images_per_second = images as f64 / seconds.max(1e-12);
        let json = serde_json::to_string_pretty(&self.timing)
            .map_err(|e| Error::io(&self.dir, e.into()))?;
        fsio::write_atomic(&self.dir.join(files::TIMING), json.as_bytes())
    }

    fn diverged(&self, step: usize, what: &str, strategy: Strategy, task: &str) -> Error {
        let last_good = self
            .writer
            .as_ref()
            .map_or(self.step, |w| w.run.committed().step);
        Error::Diverged {
            path: self.dir.clone(),
            step,
            what: what.into(),
            strategy: strategy.to_string(),
            task: task.into(),
            last_good,
        }
    }

    /// Switches every learner to the binary (STE) gate once `binarize_after` steps are done;
    /// the step loop also stops updating masks from then on.
    fn apply_gate_switch(&mut self) {
        if let Some(at) = self.set.run.binarize_after
            && self.step >= at
        {
            for l in &mut self.learners {
                l.set_gate_mode(crate::gate::GateMode::Ste);
            }
        }
    }

    /// Appends records to `metrics.jsonl` and to the TensorBoard events. A record holding a
    /// NaN or an infinity stops training instead (JSON has no such numbers).
    fn record(&mut self, records: &[Record]) -> Result<()> {
        if let Some(bad) = records.iter().find(|r| !r.is_finite()) {
            let (strategy, task) = bad.strategy_and_task();
            let strategy = strategy.parse().unwrap_or(Strategy::Gated);
            return Err(self.diverged(
                bad.step(),
                &format!("the {} record", bad.kind()),
                strategy,
                &format!("task `{task}`"),
            ));
        }
        let text = MetricsLog::encode(records)?;
        let Some(writer) = &mut self.writer else {
            return Err(Error::Run {
                path: self.dir.clone(),
                message: "was opened read-only; only `gtk train` writes a run".into(),
            });
        };
        writer.run.append_metrics(&text)?;
        writer.tensorboard.append(records)
    }

    /// Commits the current step: checkpoint, state and the log so far, atomically as a whole.
    /// Refuses (as a divergence) when a tensor is not finite, so the last commit stays good.
    pub fn save(&mut self) -> Result<()> {
        let started = std::time::Instant::now();
        let mut tensors = Vec::new();
        for l in &self.learners {
            tensors.extend(l.tensors()?);
        }
        if let Some((name, _)) = first_non_finite(&tensors)? {
            let strategy = name
                .split('/')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(Strategy::Gated);
            // `gated/fc1.weight.mask.a`, `separate/a/fc1.weight`: the task is in the key.
            let task = ParamKey::parse(&name)
                .and_then(|(_, key)| key.task())
                .map_or("all tasks".to_string(), |t| format!("task `{t}`"));
            return Err(self.diverged(self.step, &format!("tensor `{name}`"), strategy, &task));
        }
        let bytes = encode(&tensors, self.step, &self.dir)?;
        self.commit(Some(&bytes))?;
        self.timing.commits += 1;
        self.timing.commit_seconds += started.elapsed().as_secs_f64();
        Ok(())
    }

    fn commit(&mut self, checkpoint: Option<&[u8]>) -> Result<()> {
        let state = RunState {
            sampler: self.sampler.clone(),
            strategies: self.learners.iter().map(Learner::strategy).collect(),
            train_loss: self.train_loss.clone(),
            probe_train: self.probe_train.clone(),
            joint_sampler: self.joint_sampler.clone(),
            data: self.data.clone(),
            data_changes: self.data_changes.clone(),
        };
        let (step, overrides) = (self.step, self.overrides.clone());
        let Some(writer) = &mut self.writer else {
            return Err(Error::Run {
                path: self.dir.clone(),
                message: "was opened read-only; only `gtk train` writes a run".into(),
            });
        };
        writer.run.commit(step, checkpoint, state, overrides)
    }

    /// Mean loss and metric of one learner on one task's split (train split: the first
    /// `eval_train_limit` examples).
    pub fn measure(
        &self,
        learner: &Learner,
        task: TaskId,
        split: Split,
        view: GateView,
    ) -> Result<(f64, f64)> {
        let task = task.index();
        let indices = self.full_indices(task, split);
        let pass = self.pass(task, split, &indices);
        Ok(measure_all(&pass, &[(learner, view)], None)?[0])
    }

    /// The examples a full evaluation measures: the whole test split, or the first
    /// `eval_train_limit` training examples.
    fn full_indices(&self, task: usize, split: Split) -> Vec<usize> {
        let data = &self.tasks[task];
        let n = match split {
            Split::Train => data.len(split).min(self.set.run.eval_train_limit),
            Split::Test => data.len(split),
        };
        (0..n).collect()
    }

    /// The end of a phase: every strategy's full test metric on every task (a row of each
    /// strategy's accuracy matrix).
    fn phase_records(&self) -> Result<Vec<Record>> {
        let metric_name = self.objective().metric_name().to_string();
        let phase = self.set.run.phase_of(self.step.saturating_sub(1)) + 1;
        let mut out = Vec::new();
        for l in &self.learners {
            for (t, task) in self.tasks.iter().enumerate() {
                let (_, metric) = self.measure(l, TaskId(t), Split::Test, GateView::Trained)?;
                out.push(Record::Phase {
                    step: self.step,
                    phase,
                    strategy: l.strategy().to_string(),
                    task: task.name().into(),
                    metric,
                    metric_name: metric_name.clone(),
                });
            }
        }
        Ok(out)
    }

    /// The accuracy matrix and its measures per strategy, from the committed log (complete
    /// once every phase has ended).
    pub fn continual_summaries(&self) -> Result<Vec<ContinualSummary>> {
        let records = MetricsLog::read_committed(&self.dir)?;
        Ok(continual_summaries(
            &records,
            &self.set.task_names(),
            self.objective(),
        ))
    }

    /// Writes `continual.json`: every strategy's accuracy matrix, average, backward transfer
    /// and forgetting (derived from `metrics.jsonl`, so it can always be rewritten from it).
    fn write_continual_summary(&self) -> Result<()> {
        let summaries = self.continual_summaries()?;
        let json =
            serde_json::to_string_pretty(&summaries).map_err(|e| Error::io(&self.dir, e.into()))?;
        fsio::write_atomic(&self.dir.join(files::CONTINUAL), json.as_bytes())
    }

    fn pass<'a>(&'a self, task: usize, split: Split, indices: &'a [usize]) -> Pass<'a> {
        Pass {
            task: (self.tasks[task].as_ref(), task),
            split,
            indices,
            scale: self.hat_scale(self.step),
            device: &self.device,
            dtype: self.dtype(),
            clock: &self.clock,
        }
    }

    /// The probe at the current step: every strategy on every task's probe set (test split).
    /// The training-split probe comes from the batches and is logged by [`Trainer::train`].
    pub fn probe(&self) -> Result<Vec<Record>> {
        self.probe_at(self.step, None)
    }

    fn probe_models(&self) -> Vec<(&Learner, GateView)> {
        self.learners
            .iter()
            .map(|l| (l, GateView::Trained))
            .collect()
    }

    /// Per task, the parameters a probe now would measure: the step-0 probe keeps them and
    /// runs after the first steps, so training starts right after loading. `None` when a
    /// learner runs on the reference path (its probe cannot be deferred).
    fn probe_params_now(&self) -> Result<Option<Vec<ModelParams>>> {
        if !self.learners.iter().all(Learner::has_engine) {
            return Ok(None);
        }
        let (models, scale) = (self.probe_models(), self.hat_scale(self.step));
        (0..self.tasks.len())
            .map(|t| model_params(&models, t, scale))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// The probe records of `step`, measured now with the current weights or, when `given`,
    /// with parameters kept from that step.
    fn probe_at(&self, step: usize, given: Option<&[ModelParams]>) -> Result<Vec<Record>> {
        let metric_name = self.objective().metric_name().to_string();
        let models = self.probe_models();
        let mut per_task = Vec::with_capacity(self.tasks.len());
        for (t, indices) in self.probe_sets.iter().enumerate() {
            let pass = self.pass(t, Split::Test, indices);
            per_task.push(measure_all(&pass, &models, given.map(|g| &g[t]))?);
        }
        let mut out = Vec::new();
        for (k, l) in self.learners.iter().enumerate() {
            for (t, task) in self.tasks.iter().enumerate() {
                let (loss, metric) = per_task[t][k];
                out.push(Record::Probe {
                    step,
                    strategy: l.strategy().to_string(),
                    task: task.name().into(),
                    split: Split::Test.as_str().into(),
                    loss,
                    metric,
                    metric_name: metric_name.clone(),
                    examples: self.probe_sets[t].len(),
                });
            }
        }
        Ok(out)
    }

    /// The probe's training split: each strategy's mean loss and metric on the batches of each
    /// task trained since the last probe (tasks without a batch in that window have none).
    fn probe_train_records(&mut self) -> Vec<Record> {
        let metric_name = self.objective().metric_name().to_string();
        let strategies: Vec<Strategy> = self.learners.iter().map(Learner::strategy).collect();
        self.probe_train
            .drain(&strategies)
            .into_iter()
            .map(|(s, t, loss, metric, examples)| Record::Probe {
                step: self.step,
                strategy: s.to_string(),
                task: self.tasks[t].name().into(),
                split: Split::Train.as_str().into(),
                loss,
                metric,
                metric_name: metric_name.clone(),
                examples,
            })
            .collect()
    }

    fn timed_probe(&mut self) -> Result<Vec<Record>> {
        let started = std::time::Instant::now();
        let out = self.probe()?;
        self.timing.probes += 1;
        self.timing.probe_seconds += started.elapsed().as_secs_f64();
        Ok(out)
    }

    fn timed_evaluate(&mut self) -> Result<Vec<Record>> {
        let started = std::time::Instant::now();
        let out = self.evaluate()?;
        self.timing.full_evals += 1;
        self.timing.full_eval_seconds += started.elapsed().as_secs_f64();
        Ok(out)
    }

    /// The probe sets as records, for the log.
    fn probe_set_records(&self) -> Vec<Record> {
        self.tasks
            .iter()
            .zip(&self.probe_sets)
            .map(|(task, indices)| Record::ProbeSet {
                step: self.step,
                task: task.name().into(),
                of: task.len(Split::Test),
                seed: PROBE_SEED,
                indices: indices.clone(),
            })
            .collect()
    }

    /// The full evaluation: every strategy on every task's whole test split and training
    /// limit, plus, for the gated model, the binarized masks on the test split (in the same
    /// pass over the data as the soft gates), mask shares, histograms and mask recovery.
    pub fn evaluate(&self) -> Result<Vec<Record>> {
        let metric_name = self.objective().metric_name().to_string();
        let scale = self.hat_scale(self.step);
        // Which tasks each learner is measured binarized on: the gated model's picked tasks.
        let picked: Vec<Vec<usize>> = self.learners.iter().map(Learner::masked_tasks).collect();
        // results[split][task][(learner, view)]
        let mut trained = vec![vec![Vec::new(); self.tasks.len()]; 2];
        let mut binary = vec![vec![None; self.learners.len()]; self.tasks.len()];
        for t in 0..self.tasks.len() {
            for split in [Split::Test, Split::Train] {
                let mut models: Vec<(&Learner, GateView)> = self
                    .learners
                    .iter()
                    .map(|l| (l, GateView::Trained))
                    .collect();
                let mut binarized = Vec::new();
                if split == Split::Test {
                    for (k, l) in self.learners.iter().enumerate() {
                        if picked[k].contains(&t) {
                            binarized.push(k);
                            models.push((l, GateView::Binary));
                        }
                    }
                }
                let indices = self.full_indices(t, split);
                let mut values = measure_all(&self.pass(t, split, &indices), &models, None)?;
                for (&k, v) in binarized.iter().zip(values.split_off(self.learners.len())) {
                    binary[t][k] = Some(v);
                }
                trained[split.index()][t] = values;
            }
        }
        let mut out = Vec::new();
        for (k, l) in self.learners.iter().enumerate() {
            for (t, task) in self.tasks.iter().enumerate() {
                for split in [Split::Test, Split::Train] {
                    let (loss, metric) = trained[split.index()][t][k];
                    out.push(Record::Eval {
                        step: self.step,
                        strategy: l.strategy().to_string(),
                        task: task.name().into(),
                        split: split.as_str().into(),
                        loss,
                        metric,
                        metric_name: metric_name.clone(),
                    });
                }
            }
            out.extend(self.histograms(l)?);
            for &t in &picked[k] {
                let name = self.tasks[t].name().to_string();
                for (param, s) in l.mask_stats(TaskId(t), scale)? {
                    out.push(Record::Mask {
                        step: self.step,
                        task: name.clone(),
                        param,
                        off: s.off,
                        undecided: s.undecided,
                    });
                }
                if let Some((loss, metric)) = binary[t][k] {
                    out.push(Record::Binarized {
                        step: self.step,
                        task: name.clone(),
                        loss,
                        metric,
                    });
                }
            }
            out.extend(self.recovery(l, &picked[k])?);
        }
        Ok(out)
    }

    /// Histogram snapshots of every parameter's effective values per task (and gate values for
    /// the gated model).
    fn histograms(&self, learner: &Learner) -> Result<Vec<Record>> {
        let scale = self.hat_scale(self.step);
        let mut out = Vec::new();
        let layout = learner.strategy().layout();
        let bank = learner.masks()?;
        let tasks: Vec<usize> = match (layout.models, &bank) {
            (_, Some(bank)) => bank.tasks(),
            (Models::PerTask, _) => (0..self.tasks.len()).collect(),
            (Models::One, None) => vec![0],
        };
        for t in tasks {
            let task = if learner.strategy().one_plain_model() {
                "all".to_string()
            } else {
                self.tasks[t].name().to_string()
            };
            let masks = bank.as_ref().and_then(|b| b.get(t));
            let net = learner.network(TaskId(t))?;
            for (i, (param, w)) in net.params().iter().enumerate() {
                let w = w.as_tensor();
                let (eff, gate) = match masks {
                    Some(m) => {
                        let g = TaskGate {
                            masks: m,
                            mode: learner.gate_mode(),
                            scale,
                            view: GateView::Trained,
                        };
                        let values = g.values(i)?.detach();
                        ((w * &values)?, Some(values))
                    }
                    None => (w.clone(), None),
                };
                out.push(histogram(
                    self.step,
                    learner.strategy(),
                    &task,
                    param,
                    "effective",
                    &eff,
                )?);
                if let Some(g) = gate {
                    out.push(histogram(
                        self.step,
                        learner.strategy(),
                        &task,
                        param,
                        "gate",
                        &g,
                    )?);
                }
            }
        }
        Ok(out)
    }

    /// Share of the generating masks recovered, when the model is one linear layer and the
    /// tasks have ground-truth masks.
    fn recovery(&self, learner: &Learner, picked: &[usize]) -> Result<Vec<Record>> {
        let Some(bank) = learner.masks()? else {
            return Ok(Vec::new());
        };
        let truths: Vec<_> = self.tasks.iter().map(|t| t.true_mask()).collect();
        let Some(truths) = truths.into_iter().collect::<Option<Vec<_>>>() else {
            return Ok(Vec::new());
        };
        let net = learner.network(TaskId(0))?;
        let params = net.params();
        if params.len() != 2
            || truths.iter().any(|m| {
                m.weight.len() != params[0].1.elem_count()
                    || m.bias.len() != params[1].1.elem_count()
            })
        {
            return Ok(Vec::new());
        }
        let flat =
            |m: &TrueMask| -> Vec<bool> { m.weight.iter().chain(&m.bias).copied().collect() };
        let values = truths[0].values.clone();
        let truths: Vec<Vec<bool>> = truths.iter().map(flat).collect();
        let identifiable: Vec<bool> = (0..truths[0].len())
            .map(|i| truths.iter().any(|m| m[i]) && values[i].abs() >= TrueMask::IDENTIFIABLE_MIN)
            .collect();
        let mut out = Vec::new();
        for &t in picked {
            let masks = bank.get(t).unwrap_or(&[]);
            let mut learned = Vec::new();
            for m in masks {
                let on = m
                    .as_tensor()
                    .flatten_all()?
                    .gt(0.0)?
                    .to_dtype(DType::U8)?
                    .to_vec1::<u8>()?;
                learned.extend(on.into_iter().map(|b| b == 1));
            }
            let hits = learned
                .iter()
                .zip(&truths[t])
                .filter(|(a, b)| a == b)
                .count();
            let (id_hits, id_n) = learned
                .iter()
                .zip(&truths[t])
                .zip(&identifiable)
                .filter(|(_, id)| **id)
                .fold((0, 0), |(h, n), ((a, b), _)| {
                    (h + usize::from(a == b), n + 1)
                });
            out.push(Record::Recovery {
                step: self.step,
                task: self.tasks[t].name().into(),
                all: hits as f64 / learned.len().max(1) as f64,
                identifiable: id_hits as f64 / id_n.max(1) as f64,
            });
        }
        Ok(out)
    }

    /// The strategies compared on the latest evaluation (`records` from [`Trainer::evaluate`]),
    /// with the predict-the-training-mean MSE as a reference column for regression.
    pub fn table(&self, records: &[Record]) -> Result<ComparisonTable> {
        let columns: Vec<String> = self
            .learners
            .iter()
            .map(|l| l.strategy().to_string())
            .collect();
        let mut table = ComparisonTable::from_records(
            self.objective(),
            &self.set.task_names(),
            &columns,
            records,
        );
        if self.objective() == Objective::Regression {
            let mut reference = Vec::new();
            for task in &self.tasks {
                reference.push(mean_predictor_mse(task.as_ref())?);
            }
            table.reference = Some(("predict-mean".into(), reference));
        }
        Ok(table)
    }
}

/// Probes at multiples of this many steps also log histogram snapshots (Figure 2's weights over
/// training): the smallest multiple of `eval_every` that is at least a quarter of the run, so
/// a run keeps about three snapshots besides its full evaluations, whatever its length.
pub fn histogram_every(steps: usize, eval_every: usize) -> usize {
    let every = eval_every.max(1);
    (steps / 4).max(1).div_ceil(every) * every
}

/// Bins of a histogram snapshot.
const HISTOGRAM_BINS: usize = 40;

fn histogram(
    step: usize,
    strategy: Strategy,
    task: &str,
    param: &str,
    of: &str,
    t: &Tensor,
) -> Result<Record> {
    let values = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let (mut lo, mut hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if of == "gate" {
        (lo, hi) = (0.0, 1.0);
    } else if !(lo.is_finite() && hi.is_finite()) || lo == hi {
        (lo, hi) = (lo.min(0.0) - 0.5, hi.max(0.0) + 0.5);
    }
    let mut counts = vec![0u32; HISTOGRAM_BINS];
    let width = (hi - lo) / HISTOGRAM_BINS as f64;
    for v in values {
        let b = (((v - lo) / width).floor().max(0.0) as usize).min(HISTOGRAM_BINS - 1);
        counts[b] += 1;
    }
    Ok(Record::Histogram {
        step,
        strategy: strategy.to_string(),
        task: task.into(),
        param: param.into(),
        of: of.into(),
        lo,
        hi,
        counts,
    })
}

/// Per task, the positions of its test split that probes measure.
fn probe_sets(set: &TaskSet, tasks: &[Box<dyn Task>]) -> Vec<Vec<usize>> {
    tasks
        .iter()
        .map(|t| probe_subset(t.len(Split::Test), set.run.eval_subset))
        .collect()
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

/// Checks a commit's trainer state against the run's config, so that no edit of
/// `state.json` can panic the trainer or silently drop weights.
/// Strategies must fit the schedule (shared is interleaved, finetune and joint sequential), and
/// a `w_policy` other than `train` needs a gated model to apply to.
fn check_strategies(set: &TaskSet, strategies: &[Strategy], at: &Path) -> Result<()> {
    let run = &set.run;
    if let Some(s) = strategies.iter().find(|s| !s.fits(run.schedule)) {
        let instead = match run.schedule {
            TaskOrder::Interleaved => "gated, shared or separate",
            TaskOrder::Sequential => "gated, finetune, separate or joint",
        };
        return Err(Error::Run {
            path: at.into(),
            message: format!(
                "strategy `{s}` does not fit run.schedule = \"{}\" of {}: use {instead}",
                run.schedule.as_str(),
                set.origin.display()
            ),
        });
    }
    if run.w_policy != WPolicy::Train && !strategies.contains(&Strategy::Gated) {
        return Err(Error::Run {
            path: at.into(),
            message: format!(
                "run.w_policy = \"{}\" of {} applies to the gated model, which this run does not train (plain models always train W); add --strategy gated or all, or remove run.w_policy",
                run.w_policy.as_str(),
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
        .check(set.tasks.len(), set.run.steps_per_task, set.run.phase_steps)
        .map_err(|m| bad(format!("sampler state: {m}")))?;
    match (
        &state.joint_sampler,
        state.strategies.contains(&Strategy::Joint),
    ) {
        (Some(j), true) => j
            .check(set.tasks.len(), set.run.steps_per_task, None)
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
fn check_memory(set: &TaskSet, strategies: &[Strategy]) -> Result<()> {
    let counts = set.model.param_counts()?;
    let per_model: u128 = counts.iter().map(|(_, n)| *n).sum();
    let t = set.tasks.len() as u128;
    let bytes_per = set.run.dtype.dtype().size_in_bytes() as u128;
    // W plus two optimizer slots per model; masks plus two slots per task for gated; the
    // engine keeps its own copy of each; a factor 2 for gradients and work buffers.
    let mut copies: u128 = 0;
    for s in strategies {
        let layout = s.layout();
        copies +=
            3 * layout.model_count(set.tasks.len()) as u128 + if layout.gated { 3 * t } else { 0 };
    }
    let needed = per_model
        .saturating_mul(copies)
        .saturating_mul(bytes_per)
        .saturating_mul(4);
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
pub fn open_run(dir: &Path, data_dir: Option<&Path>, device: &Device) -> Result<Trainer> {
    Trainer::open_read_only(dir, data_dir, device, ChangedData::Refuse)
}

/// [`open_run`] with a choice for data files that changed since the run recorded them.
pub fn open_run_with(
    dir: &Path,
    data_dir: Option<&Path>,
    device: &Device,
    changed: ChangedData,
) -> Result<Trainer> {
    Trainer::open_read_only(dir, data_dir, device, changed)
}

/// The fingerprints of the files `tasks` read, each file once (image tasks share a dataset).
fn data_fingerprints(tasks: &[Box<dyn Task>]) -> Result<Vec<DataFingerprint>> {
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

/// Each strategy's accuracy matrix from the `phase` records of a run, once every phase has
/// ended (a run stopped mid-way has none yet); strategies in record order.
pub fn continual_summaries(
    records: &[Record],
    tasks: &[String],
    objective: Objective,
) -> Vec<ContinualSummary> {
    let mut strategies: Vec<String> = Vec::new();
    let mut rows: std::collections::BTreeMap<(String, usize), Vec<Option<f64>>> =
        Default::default();
    let mut metric_name = objective.metric_name().to_string();
    for r in records {
        if let Record::Phase {
            phase,
            strategy,
            task,
            metric,
            metric_name: m,
            ..
        } = r
        {
            if !strategies.contains(strategy) {
                strategies.push(strategy.clone());
            }
            metric_name.clone_from(m);
            let Some(j) = tasks.iter().position(|t| t == task) else {
                continue;
            };
            let row = rows
                .entry((strategy.clone(), *phase))
                .or_insert_with(|| vec![None; tasks.len()]);
            row[j] = Some(*metric);
        }
    }
    // Phases 1..=P with a row each; the columns are the tasks measured in every one of them
    // (an adapted run's new tasks have none). Complete when that is square: P phases, P tasks.
    strategies
        .into_iter()
        .filter_map(|s| {
            let phase_rows: Vec<&Vec<Option<f64>>> =
                (1..).map_while(|p| rows.get(&(s.clone(), p))).collect();
            let columns: Vec<usize> = (0..tasks.len())
                .filter(|&j| phase_rows.iter().all(|r| r[j].is_some()))
                .collect();
            if phase_rows.is_empty() || columns.len() != phase_rows.len() {
                return None;
            }
            let matrix = phase_rows
                .iter()
                .map(|r| columns.iter().map(|&j| r[j].unwrap_or(f64::NAN)).collect())
                .collect();
            Some(ContinualSummary::new(
                &s,
                &metric_name,
                columns.iter().map(|&j| tasks[j].clone()).collect(),
                matrix,
                objective.higher_is_better(),
            ))
        })
        .collect()
}
