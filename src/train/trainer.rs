//! The training loop: one task sampler drives every strategy of a run step by step, so they
//! see the same task and batch sequence. Two tiers of evaluation: a probe every `eval_every`
//! steps (a fixed test subset per task, and the training batches since the last probe) and
//! the full evaluation every `full_eval_every` steps and at the end; commits every
//! `checkpoint_every` steps. A run folder can be resumed to bit-identical weights.
//!
//! A [`Trainer`] is a read-only [`Run`] (config, tasks, learners, measuring) plus what only
//! training has: the run folder's writer, the samplers, the running sums of the log, probes
//! and timing. The run folder itself (files, the commit protocol, the lock, read-only
//! snapshots) is [`crate::run_folder`]; this module decides what goes into it.

use crate::config::{TaskOrder, TaskSet};
use crate::error::{Error, Result};
use crate::gate::GateView;
use crate::learn::{Learner, Penalty, StepSettings, Strategy};
use crate::params::{ParamKey, TaskId};
use crate::rng::Rng;
use crate::run::{
    BatchSums, ChangedData, MetricsLog, ModelParams, PROBE_SEED, Record, Run, RunState,
    TaskSampler, TensorBoardSink, TrainLoss, check_memory, check_strategies, checkpoint_encode,
    data_fingerprints, files, first_non_finite, measure_all, model_params, probed_len, probed_view,
    write_events,
};
use crate::run_folder::{Overrides, RunWriter, fsio};
use crate::task::{Objective, Split};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// A run in progress: the [`Run`] it trains (read through `Deref`) and the writer, samplers,
/// sums and clocks of training.
pub struct Trainer {
    run: Run,
    writer: Writer,
    sampler: TaskSampler,
    /// The `joint` strategy's draws (sequential runs with `joint` only).
    joint_sampler: Option<TaskSampler>,
    train_loss: TrainLoss,
    /// The training batches since the last probe.
    probe_train: BatchSums,
    /// Whether `metrics.jsonl` already holds the probe sets.
    probe_sets_logged: bool,
    origin: std::time::Instant,
    timing: Timing,
    /// The records of the last full evaluation and the step it ran at.
    last_eval: Option<(usize, Vec<Record>)>,
    /// Set (by a signal handler) to stop at the next step boundary: [`Trainer::train`] then
    /// ends as if `stop_at` were the step just done, so the run commits there and resumes to
    /// the uninterrupted result.
    stop: Option<Arc<AtomicBool>>,
}

/// Everything a reader can do with a run, a trainer can do with the run it trains.
impl std::ops::Deref for Trainer {
    type Target = Run;
    fn deref(&self) -> &Run {
        &self.run
    }
}

impl Trainer {
    /// The one constructor: a run, its writer and the training state of its last commit
    /// (fresh for a new run).
    fn assemble(run: Run, writer: Writer, state: &RunState, probe_sets_logged: bool) -> Self {
        Trainer {
            run,
            writer,
            sampler: state.sampler.clone(),
            joint_sampler: state.joint_sampler.clone(),
            train_loss: state.train_loss.clone(),
            probe_train: state.probe_train.clone(),
            probe_sets_logged,
            origin: std::time::Instant::now(),
            timing: Timing::default(),
            last_eval: None,
            stop: None,
        }
    }

    /// Stops [`Trainer::train`] after the step during which `flag` becomes true (a SIGTERM
    /// from a cluster's scheduler, say): the run commits that step and can be resumed.
    pub fn stop_when(&mut self, flag: Arc<AtomicBool>) {
        self.stop = Some(flag);
    }

    /// Whether the stop flag of [`Trainer::stop_when`] was raised.
    pub fn stop_requested(&self) -> bool {
        self.stop.as_ref().is_some_and(|f| f.load(Ordering::SeqCst))
    }

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
        let fisher = strategies
            .iter()
            .find(|s| matches!(s.penalty(), Some(Penalty::Ewc | Penalty::OnlineEwc)));
        if let (Some(s), Some(Objective::Regression)) =
            (fisher, tasks.first().map(|t| t.objective()))
        {
            return Err(Error::Run {
                path: dir.into(),
                message: format!(
                    "strategy `{s}` needs classification tasks (its Fisher is that of the model's predicted class), and {} holds regression tasks; use finetune, si or gated",
                    set.origin.display()
                ),
            });
        }
        // Statistics computed from the data (standardisation) go into config.toml, so every
        // reader of the run applies the same transform.
        set.pin(&tasks)?;
        let data = data_fingerprints(&tasks)?;
        let learners = crate::run::learners_for(&set, &tasks, strategies, device, dir)?;
        let sampler = match set.run.schedule.phase_steps {
            Some(p) => TaskSampler::sequential(set.run.seed, p),
            None => TaskSampler::new(set.run.seed, set.run.schedule.steps_per_task),
        };
        let joint_sampler = strategies.contains(&Strategy::Joint).then(|| {
            TaskSampler::interleaved_beside(set.run.seed, set.run.schedule.steps_per_task)
        });
        let state = RunState {
            sampler,
            strategies: strategies.to_vec(),
            train_loss: TrainLoss::default(),
            probe_train: BatchSums::default(),
            joint_sampler,
            data: data.clone(),
            data_changes: Vec::new(),
        };
        let writer = Writer {
            run: RunWriter::create(dir, &set.to_toml(), state.clone())?,
            tensorboard: TensorBoardSink::create(dir, &set)?,
        };
        let run = Run::new(set, tasks, learners, dir, device, data);
        Ok(Self::assemble(run, writer, &state, false))
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
        let (writer, snapshot, mut notes) = RunWriter::<RunState>::open(dir)?;
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
        let mut run = Run::from_snapshot(&snapshot, data_dir, device, all, changed)?;
        let recorded = &snapshot.commit.state;
        let accepted = run.data_changes.len() > recorded.data_changes.len();
        for c in &run.data_changes[recorded.data_changes.len()..] {
            notes.push(format!(
                "{}; training goes on with the new data from step {} (--allow-changed-data; recorded in state.json's data_changes)",
                c.describe(),
                c.step
            ));
        }
        if recorded.data.is_empty() && !run.data.is_empty() {
            notes.push(format!(
                "the run recorded no data fingerprints (it was created before gatekit recorded them): recording the {} data file(s) it reads now, so later changes are caught",
                run.data.len()
            ));
        }
        run.notes = notes;
        // Rebuild tb/ from the committed log (already read and verified), then append live
        // events after it.
        let records = MetricsLog::parse(&snapshot.metrics, &dir.join(files::METRICS))?;
        let logged = run.adopt_probe_sets(&records, &dir.join(files::METRICS))?;
        write_events(&records, &dir.join(files::TB_DIR), &run.set)?;
        let tensorboard = TensorBoardSink::create(dir, &run.set)?;
        let writer = Writer {
            run: writer,
            tensorboard,
        };
        let mut trainer = Self::assemble(run, writer, recorded, logged);
        if !overrides.is_empty() || accepted {
            trainer.commit(snapshot.checkpoint.as_deref())?;
        }
        trainer.run.apply_gate_switch();
        Ok(trainer)
    }

    /// Measures `first_step_seconds` from `origin` (the CLI passes its process start).
    pub fn set_origin(&mut self, origin: std::time::Instant) {
        self.origin = origin;
    }

    /// The records of the full evaluation at the current step, if [`Trainer::train`] ran one.
    pub fn last_evaluation(&self) -> Option<&[Record]> {
        match &self.last_eval {
            Some((step, records)) if *step == self.run.step => Some(records),
            _ => None,
        }
    }

    /// Wall-clock figures of the training done by this trainer so far.
    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    /// Trains until the configured step count, or until `stop_at` steps are done (then saves a
    /// checkpoint so the run can be resumed).
    pub fn train(&mut self, stop_at: Option<usize>, on: &mut dyn FnMut(Event)) -> Result<()> {
        let total = self.run.set.run.steps;
        let mut until = stop_at.map_or(total, |s| s.min(total));
        let mut start_probe = self.begin(until, on)?;
        self.note_engines();
        let mut losses = Vec::with_capacity(self.run.learners.len());
        let mut saved = self.run.step;
        while self.run.step < until {
            self.step_all(total, &mut losses)?;
            if self.stop_requested() {
                // Exactly what `stop_at` = this step would have done.
                until = self.run.step;
            }
            let due = Due::after(&self.run.set.run, self.run.step, total, until);
            if let Some(params) = start_probe.take_if(|_| due.start_probe) {
                self.deferred_start_probe(&params, on)?;
            }
            if self
                .run
                .step
                .is_multiple_of(self.run.set.run.evaluation.log_every)
            {
                let records = self.train_loss.drain(self.run.step);
                self.record(&records)?;
            }
            on(Event::Step {
                step: self.run.step,
                total,
                losses: &losses,
            });
            if self.measure_and_commit(due, total, on)? {
                saved = self.run.step;
            }
        }
        self.finish(saved, total)
    }

    /// Before the first step: logs the probe sets once, and at step 0 runs the start
    /// evaluation. Returns the step-0 probe's parameters when its measuring is deferred until
    /// something else is logged (training starts right after loading).
    fn begin(
        &mut self,
        until: usize,
        on: &mut dyn FnMut(Event),
    ) -> Result<Option<Vec<ModelParams>>> {
        if !self.probe_sets_logged {
            let records = self.probe_set_records();
            self.record(&records)?;
            self.probe_sets_logged = true;
        }
        let mut start_probe: Option<Vec<ModelParams>> = None;
        if self.run.step == 0 {
            let run = &self.run.set.run;
            let (full, probe) = (
                run.evaluation.full_eval_at_start,
                run.evaluation.eval_at_start,
            );
            let mut records = Vec::new();
            // A sequential run's phase 0: every task's metric at initialisation (GEM's b_j,
            // for the forward transfer).
            if run.schedule.order == TaskOrder::Sequential {
                records.extend(self.phase_records_of(0)?);
            }
            if probe && !full && self.run.step < until {
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
        Ok(start_probe)
    }

    /// Which engine each strategy trains on, and the threads, for `timing.json`.
    fn note_engines(&mut self) {
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
    }

    /// One step: draws the task and batch (and the joint model's own), trains every learner
    /// on it, refuses a non-finite loss, and adds the losses to the log's running sums.
    /// `losses` receives each strategy's training loss.
    fn step_all(&mut self, total: usize, losses: &mut Vec<(Strategy, f64)>) -> Result<()> {
        let started = std::time::Instant::now();
        if self.timing.first_step_seconds.is_none() {
            self.timing.first_step_seconds =
                Some(started.duration_since(self.origin).as_secs_f64());
        }
        self.run.apply_gate_switch();
        let objective = self.objective();
        let (dtype, bs, t_n) = (
            self.dtype(),
            self.run.set.run.schedule.batch_size,
            self.run.tasks.len(),
        );
        let t = self.sampler.next_task(t_n);
        let data = &self.run.tasks[t.index()];
        let idx = self.sampler.batch(data.len(Split::Train), bs);
        let batch = data.batch(Split::Train, &idx, &self.run.device, dtype)?;
        let joint = match &mut self.joint_sampler {
            Some(j) => {
                let jt = j.next_task(t_n);
                let data = &self.run.tasks[jt.index()];
                let idx = j.batch(data.len(Split::Train), bs);
                Some((jt, data.batch(Split::Train, &idx, &self.run.device, dtype)?))
            }
            None => None,
        };
        let at = self.step_settings(total);
        let w_trains = {
            let run = &self.run.set.run;
            run.schedule.w_policy.trains_w(run.phase_of(self.run.step))
        };
        losses.clear();
        let mut scored = Vec::with_capacity(self.run.learners.len());
        for l in &mut self.run.learners {
            let (task, batch) = match (&joint, l.strategy()) {
                (Some((jt, jb)), Strategy::Joint) => (*jt, jb),
                _ => (t, &batch),
            };
            let mut at = at;
            if l.strategy() == Strategy::Gated && !w_trains {
                at.w_lr_factor = 0.0;
            }
            let (loss, metric) = l.train_step_scored(task, batch, objective, at)?;
            losses.push((l.strategy(), loss));
            scored.push((l.strategy(), loss, metric));
        }
        if let Some((s, _)) = losses.iter().find(|(_, l)| !l.is_finite()) {
            return Err(self.diverged(
                self.run.step + 1,
                "the training loss",
                *s,
                &format!("task `{}`", self.run.tasks[t.index()].name()),
            ));
        }
        self.run.step += 1;
        self.timing.loop_steps += 1;
        self.timing.loop_seconds += started.elapsed().as_secs_f64();
        self.train_loss.add(losses);
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
        Ok(())
    }

    /// The gate scale and learning-rate factors of the step about to be taken.
    fn step_settings(&self, total: usize) -> StepSettings {
        let run = &self.run.set.run;
        let step = self.run.step;
        StepSettings {
            gate_scale: self.hat_scale(step),
            w_lr_factor: run
                .optimizer
                .lr_schedule
                .factor(step, total, run.optimizer.lr_warmup),
            mask_lr_factor: if run.gates.binarize_after.is_some_and(|b| step >= b)
                && run.gates.binarized_masks.is_frozen()
            {
                0.0
            } else {
                run.gates
                    .mask_lr_schedule
                    .factor(step, total, run.gates.mask_lr_warmup)
            },
        }
    }

    /// The step-0 probe, measured with the parameters kept before the first step.
    fn deferred_start_probe(
        &mut self,
        params: &[ModelParams],
        on: &mut dyn FnMut(Event),
    ) -> Result<()> {
        let started = std::time::Instant::now();
        let records = self.probe_at(0, Some(params))?;
        self.timing.probes += 1;
        self.timing.probe_seconds += started.elapsed().as_secs_f64();
        self.record(&records)?;
        on(Event::Eval {
            step: 0,
            full: false,
            records: &records,
        });
        Ok(())
    }

    /// After a step: the phase row, the probe (with a few histogram snapshots) and the full
    /// evaluation that are due, logged; then the commit when due. Says whether it committed.
    fn measure_and_commit(
        &mut self,
        due: Due,
        total: usize,
        on: &mut dyn FnMut(Event),
    ) -> Result<bool> {
        let mut records = Vec::new();
        if due.phase_end {
            records.extend(self.phase_records()?);
            if self.run.step < total {
                self.end_task()?;
            }
        }
        if due.probe {
            records.extend(self.probe_train_records());
            records.extend(self.timed_probe()?);
            // Weight histograms at a few probes besides the full evaluations, so Figure 2
            // can show how the distributions move over training.
            let every = histogram_every(total, self.run.set.run.evaluation.eval_every);
            if !due.full && self.run.step.is_multiple_of(every) {
                for l in &self.run.learners {
                    records.extend(self.histograms(l)?);
                }
            }
        }
        if due.full {
            let full_records = self.timed_evaluate()?;
            records.extend(full_records.iter().cloned());
            self.last_eval = Some((self.run.step, full_records));
        }
        if !records.is_empty() {
            self.record(&records)?;
        }
        if due.commit {
            self.save()?;
        }
        if !records.is_empty() {
            on(Event::Eval {
                step: self.run.step,
                full: due.full,
                records: &records,
            });
        }
        Ok(due.commit)
    }

    /// After the loop: the last commit if the loop's was not it, `continual.json` at the end
    /// of a sequential run, and `timing.json`.
    fn finish(&mut self, saved: usize, total: usize) -> Result<()> {
        if saved != self.run.step {
            self.save()?;
        }
        if self.run.set.run.schedule.order == TaskOrder::Sequential && self.run.step == total {
            self.write_continual_summary()?;
        }
        self.timing.steps_per_second =
            self.timing.loop_steps as f64 / self.timing.loop_seconds.max(1e-12);
        let (images, seconds) = self.run.clock.read();
        self.timing.forward_images = images;
        self.timing.forward_seconds = seconds;
        self.timing.forward_images_per_second = images as f64 / seconds.max(1e-12);
        let json = serde_json::to_string_pretty(&self.timing)
            .map_err(|e| Error::io(&self.run.dir, e.into()))?;
        fsio::write_atomic(&self.run.dir.join(files::TIMING), json.as_bytes())
    }

    fn diverged(&self, step: usize, what: &str, strategy: Strategy, task: &str) -> Error {
        let last_good = self.writer.run.committed().step;
        Error::Diverged {
            path: self.run.dir.clone(),
            step,
            what: what.into(),
            strategy: strategy.to_string(),
            task: task.into(),
            last_good,
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
        self.writer.run.append_metrics(&text)?;
        self.writer.tensorboard.append(records)
    }

    /// Commits the current step: checkpoint, state and the log so far, atomically as a whole.
    /// Refuses (as a divergence) when a tensor is not finite, so the last commit stays good.
    pub fn save(&mut self) -> Result<()> {
        let started = std::time::Instant::now();
        let mut tensors = Vec::new();
        for l in &self.run.learners {
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
            return Err(self.diverged(self.run.step, &format!("tensor `{name}`"), strategy, &task));
        }
        let bytes = checkpoint_encode(&tensors, self.run.step, &self.run.dir)?;
        self.commit(Some(&bytes))?;
        self.timing.commits += 1;
        self.timing.commit_seconds += started.elapsed().as_secs_f64();
        Ok(())
    }

    fn commit(&mut self, checkpoint: Option<&[u8]>) -> Result<()> {
        let state = RunState {
            sampler: self.sampler.clone(),
            strategies: self.run.learners.iter().map(Learner::strategy).collect(),
            train_loss: self.train_loss.clone(),
            probe_train: self.probe_train.clone(),
            joint_sampler: self.joint_sampler.clone(),
            data: self.run.data.clone(),
            data_changes: self.run.data_changes.clone(),
        };
        let (step, overrides) = (self.run.step, self.run.overrides.clone());
        self.writer.run.commit(step, checkpoint, state, overrides)
    }

    /// The end of a phase that another follows: the strategies with a penalty against
    /// forgetting add the finished task's term (before the phase's commit, so a resumed run
    /// has it). EWC's Fisher is estimated at `run.ewc_samples` training examples of the task
    /// (all of them when it has fewer), the first of a permutation drawn from the run's seed
    /// and the task's index, so a rerun draws the same ones.
    fn end_task(&mut self) -> Result<()> {
        let phase = self.run.set.run.phase_of(self.run.step.saturating_sub(1));
        let task = TaskId(phase);
        let needs_examples = self.run.learners.iter().any(|l| {
            matches!(
                l.strategy().penalty(),
                Some(Penalty::Ewc | Penalty::OnlineEwc)
            )
        });
        let examples = if needs_examples {
            let data = &self.run.tasks[task.index()];
            let len = data.len(Split::Train);
            let n = self.run.set.run.continual.ewc_samples.min(len);
            let mut rng = Rng::stream(self.run.set.run.seed, "fisher", phase as u64);
            let mut order: Vec<usize> = (0..len).collect();
            for i in 0..n {
                let j = i + rng.below(len - i);
                order.swap(i, j);
            }
            order.truncate(n);
            let batch = data.batch(Split::Train, &order, &self.run.device, self.dtype())?;
            Some(batch.x)
        } else {
            None
        };
        for l in &mut self.run.learners {
            l.end_task(task, examples.as_ref())?;
        }
        Ok(())
    }

    /// The end of a phase: every strategy's full test metric on every task (a row of each
    /// strategy's accuracy matrix).
    fn phase_records(&self) -> Result<Vec<Record>> {
        let phase = self.run.set.run.phase_of(self.run.step.saturating_sub(1)) + 1;
        self.phase_records_of(phase)
    }

    /// Every strategy's full test metric on every task as `phase` records of `phase` (0: the
    /// metric at initialisation, before the first step).
    fn phase_records_of(&self, phase: usize) -> Result<Vec<Record>> {
        let metric_name = self.objective().metric_name().to_string();
        let mut out = Vec::new();
        for l in &self.run.learners {
            for (t, task) in self.run.tasks.iter().enumerate() {
                let (_, metric) = self.measure(l, TaskId(t), Split::Test, GateView::Trained)?;
                out.push(Record::Phase {
                    step: self.run.step,
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

    /// Writes `continual.json`: every strategy's accuracy matrix, average, backward transfer
    /// and forgetting (derived from `metrics.jsonl`, so it can always be rewritten from it).
    fn write_continual_summary(&self) -> Result<()> {
        let mut summaries = self.continual_summaries()?;
        let scenario = self.run.set.run.continual.scenario;
        for s in &mut summaries {
            s.scenario = scenario.map(|s| s.as_str().to_string());
        }
        let json = serde_json::to_string_pretty(&summaries)
            .map_err(|e| Error::io(&self.run.dir, e.into()))?;
        fsio::write_atomic(&self.run.dir.join(files::CONTINUAL), json.as_bytes())
    }

    /// The probe at the current step: every strategy on every task's probe set (test split).
    /// The training-split probe comes from the batches and is logged by [`Trainer::train`].
    pub fn probe(&self) -> Result<Vec<Record>> {
        self.probe_at(self.run.step, None)
    }

    fn probe_models(&self) -> Vec<(&Learner, GateView)> {
        self.run
            .learners
            .iter()
            .map(|l| (l, GateView::Trained))
            .collect()
    }

    /// Per task, the parameters a probe now would measure: the step-0 probe keeps them and
    /// runs after the first steps, so training starts right after loading. `None` when a
    /// learner runs on the reference path (its probe cannot be deferred).
    fn probe_params_now(&self) -> Result<Option<Vec<ModelParams>>> {
        if !self.run.learners.iter().all(Learner::has_engine) {
            return Ok(None);
        }
        let (models, scale) = (self.probe_models(), self.hat_scale(self.run.step));
        (0..self.run.tasks.len())
            .map(|t| model_params(&models, TaskId(t), scale))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// The probe records of `step`, measured now with the current weights or, when `given`,
    /// with parameters kept from that step.
    fn probe_at(&self, step: usize, given: Option<&[ModelParams]>) -> Result<Vec<Record>> {
        let metric_name = self.objective().metric_name().to_string();
        let models = self.probe_models();
        let mut per_task = Vec::with_capacity(self.run.tasks.len());
        let split = self.run.set.run.evaluation.eval_split.as_str();
        for (t, indices) in self.run.probe_sets.iter().enumerate() {
            let mut pass = self.pass(TaskId(t), Split::Test, indices);
            // eval_split = "val": the validation view, whose test split is the held-out share.
            let val = probed_view(&self.run.set, self.run.tasks[t].as_ref());
            if let Some(v) = &val {
                pass.task = (v.as_ref(), TaskId(t));
            }
            per_task.push(measure_all(&pass, &models, given.map(|g| &g[t]))?);
        }
        let mut out = Vec::new();
        for (k, l) in self.run.learners.iter().enumerate() {
            for (t, task) in self.run.tasks.iter().enumerate() {
                let (loss, metric) = per_task[t][k];
                out.push(Record::Probe {
                    step,
                    strategy: l.strategy().to_string(),
                    task: task.name().into(),
                    split: split.into(),
                    loss,
                    metric,
                    metric_name: metric_name.clone(),
                    examples: self.run.probe_sets[t].len(),
                });
            }
        }
        Ok(out)
    }

    /// The probe's training split: each strategy's mean loss and metric on the batches of each
    /// task trained since the last probe (tasks without a batch in that window have none).
    fn probe_train_records(&mut self) -> Vec<Record> {
        let metric_name = self.objective().metric_name().to_string();
        let strategies: Vec<Strategy> = self.run.learners.iter().map(Learner::strategy).collect();
        self.probe_train
            .drain(&strategies)
            .into_iter()
            .map(|(s, t, loss, metric, examples)| Record::Probe {
                step: self.run.step,
                strategy: s.to_string(),
                task: self.run.tasks[t.index()].name().into(),
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
        self.run
            .tasks
            .iter()
            .zip(&self.run.probe_sets)
            .map(|(task, indices)| Record::ProbeSet {
                step: self.run.step,
                task: task.name().into(),
                of: probed_len(&self.run.set, task.as_ref()),
                seed: PROBE_SEED,
                indices: indices.clone(),
            })
            .collect()
    }
}

/// What is due after a step (the run's cadences at the new step count).
#[derive(Debug, Clone, Copy)]
struct Due {
    /// The full evaluation (every `full_eval_every` steps and the last step).
    full: bool,
    /// The probe (every `eval_every` steps and the last step).
    probe: bool,
    /// The end of a sequential phase: a row of every accuracy matrix, committed.
    phase_end: bool,
    /// A commit (every `checkpoint_every` steps, full evaluations and phase ends).
    commit: bool,
    /// The deferred step-0 probe: measured once anything else is logged or the session stops.
    start_probe: bool,
}

impl Due {
    fn after(run: &crate::config::RunConfig, step: usize, total: usize, until: usize) -> Due {
        let last = step == total;
        let (every, phase_steps) = (&run.evaluation, run.schedule.phase_steps);
        let full = last
            || every
                .full_eval_every
                .is_some_and(|k| step.is_multiple_of(k));
        let probe = last || step.is_multiple_of(every.eval_every);
        let phase_end = phase_steps.is_some_and(|p| step.is_multiple_of(p));
        let commit = full || phase_end || step.is_multiple_of(every.checkpoint_every.max(1));
        let stop = step == until;
        let start_probe = probe || full || commit || stop || step.is_multiple_of(every.log_every);
        Due {
            full,
            probe,
            phase_end,
            commit,
            start_probe,
        }
    }
}

/// Probes at multiples of this many steps also log histogram snapshots (Figure 2's weights over
/// training): the smallest multiple of `eval_every` that is at least a quarter of the run, so
/// a run keeps about three snapshots besides its full evaluations, whatever its length.
pub fn histogram_every(steps: usize, eval_every: usize) -> usize {
    let every = eval_every.max(1);
    (steps / 4).max(1).div_ceil(every) * every
}
