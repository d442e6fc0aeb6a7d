//! The training loop: one task sampler drives every strategy of a run step by step, so they
//! see the same task and batch sequence; evaluation, logging and checkpoints happen every
//! `eval_every` steps, and a run folder can be resumed to bit-identical weights.
//!
//! Run folder layout:
//! - `config.toml`: the resolved task set (every key explicit, model inline)
//! - `checkpoint.safetensors`: weights, masks and optimizer state of every strategy
//! - `state.json`: steps done, sampler state, strategies
//! - `metrics.jsonl`: one [`Record`] per line

use super::checkpoint::CheckpointFile;
use super::learner::{Learner, StepSettings, Strategy};
use super::record::{MetricsLog, Record};
use super::sampler::TaskSampler;
use super::table::ComparisonTable;
use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::gate::{GateView, TaskGate};
use crate::report::tensorboard::{TensorBoardSink, write_run_events};
use crate::task::{Objective, Split, Task, TaskSet, TrueMask, mean_predictor_mse};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Examples per forward pass during evaluation.
const EVAL_CHUNK: usize = 1000;

/// File names inside a run folder.
pub mod files {
    /// The resolved task set.
    pub const CONFIG: &str = "config.toml";
    /// Weights, masks and optimizer state.
    pub const CHECKPOINT: &str = "checkpoint.safetensors";
    /// Step and sampler state.
    pub const STATE: &str = "state.json";
    /// Logged records.
    pub const METRICS: &str = "metrics.jsonl";
    /// How fast the last `gtk train` session's training loop ran (not part of the results:
    /// it differs from run to run, so it is kept out of `metrics.jsonl`).
    pub const TIMING: &str = "timing.json";
}

/// Wall-clock figures of one training session (what `timing.json` holds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// `fast` or `reference`, per strategy trained.
    pub engines: Vec<(Strategy, String)>,
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunState {
    step: usize,
    sampler: TaskSampler,
    strategies: Vec<Strategy>,
    /// Training losses since the last `log_every` boundary, so a resumed run logs the same
    /// means as an uninterrupted one.
    #[serde(default)]
    train_loss: TrainLoss,
}

/// Running sums of each strategy's batch losses between two training-loss records.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TrainLoss {
    sums: Vec<(Strategy, f64)>,
    count: usize,
}

impl TrainLoss {
    fn add(&mut self, losses: &[(Strategy, f64)]) {
        if self.sums.len() != losses.len() {
            self.sums = losses.iter().map(|(s, _)| (*s, 0.0)).collect();
        }
        for (sum, (_, l)) in self.sums.iter_mut().zip(losses) {
            sum.1 += l;
        }
        self.count += 1;
    }

    fn drain(&mut self, step: usize) -> Vec<Record> {
        let n = self.count.max(1) as f64;
        let out = self
            .sums
            .iter()
            .map(|(s, sum)| Record::Train {
                step,
                strategy: s.to_string(),
                loss: sum / n,
            })
            .collect();
        *self = TrainLoss::default();
        out
    }
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
    /// An evaluation finished.
    Eval {
        /// Steps done.
        step: usize,
        /// What was measured.
        records: &'a [Record],
    },
}

/// A run in progress.
pub struct Trainer {
    set: TaskSet,
    tasks: Vec<Box<dyn Task>>,
    learners: Vec<Learner>,
    sampler: TaskSampler,
    step: usize,
    dir: PathBuf,
    device: Device,
    log: MetricsLog,
    /// Live TensorBoard events in `tb/`, fed the same records as `metrics.jsonl`.
    tensorboard: TensorBoardSink,
    train_loss: TrainLoss,
    origin: std::time::Instant,
    timing: Timing,
    /// The records of the last evaluation and the step it ran at.
    last_eval: Option<(usize, Vec<Record>)>,
}

impl Trainer {
    /// Starts a new run in `dir`, which must not exist. Everything is checked (tasks built,
    /// model fit) before anything is written.
    pub fn create(
        mut set: TaskSet,
        strategies: &[Strategy],
        dir: &Path,
        data_dir: Option<&Path>,
        device: &Device,
    ) -> Result<Self> {
        let tasks = set.build_tasks(data_dir)?;
        set.pin(&tasks)?;
        if dir.exists() {
            return Err(Error::Run {
                path: dir.into(),
                message: "already exists; choose another --name, or continue it with --resume"
                    .into(),
            });
        }
        let names = set.task_names();
        let learners = strategies
            .iter()
            .map(|s| Learner::new(*s, &set.run, &set.model, &names, device))
            .collect::<candle_core::Result<Vec<_>>>()?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        write_atomic(&dir.join(files::CONFIG), set.to_toml().as_bytes())?;
        let sampler = TaskSampler::new(set.run.seed, set.run.steps_per_task);
        Ok(Trainer {
            set,
            tasks,
            learners,
            sampler,
            step: 0,
            dir: dir.into(),
            device: device.clone(),
            log: MetricsLog::new(dir.join(files::METRICS)),
            tensorboard: TensorBoardSink::create(dir)?,
            train_loss: TrainLoss::default(),
            origin: std::time::Instant::now(),
            timing: Timing::default(),
            last_eval: None,
        })
    }

    /// Re-opens a run folder at its last checkpoint.
    pub fn resume(dir: &Path, data_dir: Option<&Path>, device: &Device) -> Result<Self> {
        let (set, state) = read_run(dir)?;
        let tasks = set.build_tasks(data_dir)?;
        let names = set.task_names();
        let mut learners = state
            .strategies
            .iter()
            .map(|s| Learner::new(*s, &set.run, &set.model, &names, device))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let tensors = read_checkpoint(dir, state.step, device)?;
        let ckpt = dir.join(files::CHECKPOINT);
        for l in &mut learners {
            l.load(&tensors).map_err(|e| Error::Checkpoint {
                path: ckpt.clone(),
                message: e.to_string(),
            })?;
        }
        let log = MetricsLog::new(dir.join(files::METRICS));
        log.truncate_after(state.step)?;
        // Rebuild tb/ from the truncated log, then append live events after it.
        write_run_events(dir)?;
        let tensorboard = TensorBoardSink::create(dir)?;
        let mut trainer = Trainer {
            set,
            tasks,
            learners,
            sampler: state.sampler,
            step: state.step,
            dir: dir.into(),
            device: device.clone(),
            log,
            tensorboard,
            train_loss: state.train_loss,
            origin: std::time::Instant::now(),
            timing: Timing::default(),
            last_eval: None,
        };
        trainer.apply_gate_switch();
        Ok(trainer)
    }

    /// Measures `first_step_seconds` from `origin` (the CLI passes its process start).
    pub fn set_origin(&mut self, origin: std::time::Instant) {
        self.origin = origin;
    }

    /// The records of the evaluation at the current step, if [`Trainer::train`] ran one.
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
        let total = self.set.run.steps;
        let until = stop_at.map_or(total, |s| s.min(total));
        if self.step == 0 && self.set.run.eval_at_start {
            let records = self.evaluate()?;
            self.record(&records)?;
            on(Event::Eval {
                step: 0,
                records: &records,
            });
        }
        let objective = self.objective();
        let (dtype, bs, t_n) = (self.dtype(), self.set.run.batch_size, self.tasks.len());
        let mut losses = Vec::with_capacity(self.learners.len());
        let mut saved = self.step;
        self.timing.engines = self
            .learners
            .iter()
            .map(|l| (l.strategy(), l.engine_name().to_string()))
            .collect();
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
            let run = &self.set.run;
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
            for l in &mut self.learners {
                losses.push((l.strategy(), l.train_step(t, &batch, objective, at)?));
            }
            self.step += 1;
            self.timing.loop_steps += 1;
            self.timing.loop_seconds += started.elapsed().as_secs_f64();
            self.train_loss.add(&losses);
            if self.step.is_multiple_of(self.set.run.log_every) {
                let records = self.train_loss.drain(self.step);
                self.record(&records)?;
            }
            on(Event::Step {
                step: self.step,
                total,
                losses: &losses,
            });
            if self.step.is_multiple_of(self.set.run.eval_every) || self.step == total {
                let records = self.evaluate()?;
                self.record(&records)?;
                self.last_eval = Some((self.step, records.clone()));
                self.save()?;
                saved = self.step;
                on(Event::Eval {
                    step: self.step,
                    records: &records,
                });
            }
        }
        if saved != self.step {
            self.save()?;
        }
        self.timing.steps_per_second =
            self.timing.loop_steps as f64 / self.timing.loop_seconds.max(1e-12);
        let json = serde_json::to_string_pretty(&self.timing)
            .map_err(|e| Error::io(&self.dir, e.into()))?;
        write_atomic(&self.dir.join(files::TIMING), json.as_bytes())
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

    /// Appends records to `metrics.jsonl` and to the TensorBoard events.
    fn record(&mut self, records: &[Record]) -> Result<()> {
        self.log.append(records)?;
        self.tensorboard.append(records)
    }

    /// Writes the checkpoint and the state file (each atomically).
    pub fn save(&self) -> Result<()> {
        let mut tensors = Vec::new();
        for l in &self.learners {
            tensors.extend(l.tensors()?);
        }
        let meta = HashMap::from([
            ("format".to_string(), "gatekit-checkpoint/1".to_string()),
            ("step".to_string(), self.step.to_string()),
        ]);
        let ckpt = self.dir.join(files::CHECKPOINT);
        let bytes =
            safetensors::serialize(tensors.iter().map(|(k, t)| (k.as_str(), t)), Some(meta))
                .map_err(|e| Error::Checkpoint {
                    path: ckpt.clone(),
                    message: e.to_string(),
                })?;
        write_atomic(&ckpt, &bytes)?;
        let state = RunState {
            step: self.step,
            sampler: self.sampler.clone(),
            strategies: self.learners.iter().map(Learner::strategy).collect(),
            train_loss: self.train_loss.clone(),
        };
        let json =
            serde_json::to_string_pretty(&state).map_err(|e| Error::io(&self.dir, e.into()))?;
        write_atomic(&self.dir.join(files::STATE), json.as_bytes())
    }

    /// Mean loss and metric of one learner on one task's split (train split: the first
    /// `eval_train_limit` examples).
    pub fn measure(
        &self,
        learner: &Learner,
        task: usize,
        split: Split,
        view: GateView,
    ) -> Result<(f64, f64)> {
        let data = &self.tasks[task];
        let n = match split {
            Split::Train => data.len(split).min(self.set.run.eval_train_limit),
            Split::Test => data.len(split),
        };
        let objective = data.objective();
        let scale = self.hat_scale(self.step);
        let (mut loss_sum, mut metric_sum) = (0.0, 0.0);
        let indices: Vec<usize> = (0..n).collect();
        for chunk in indices.chunks(EVAL_CHUNK) {
            let batch = data.batch(split, chunk, &self.device, self.dtype())?;
            let out = learner.predict(task, &batch.x, scale, view)?.detach();
            let loss = objective
                .loss(&out, &batch.y)?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
            loss_sum += loss * chunk.len() as f64;
            metric_sum += objective.metric_sum(&out, &batch.y)?;
        }
        Ok((loss_sum / n.max(1) as f64, metric_sum / n.max(1) as f64))
    }

    /// Evaluates every strategy on every task, plus mask statistics for the gated model.
    pub fn evaluate(&self) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        let metric_name = self.objective().metric_name().to_string();
        let scale = self.hat_scale(self.step);
        for l in &self.learners {
            for (t, task) in self.tasks.iter().enumerate() {
                for split in [Split::Test, Split::Train] {
                    let (loss, metric) = self.measure(l, t, split, GateView::Trained)?;
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
            let Some(bank) = l.masks() else { continue };
            let picked = bank.tasks();
            for &t in &picked {
                let name = self.tasks[t].name().to_string();
                for (param, s) in l.mask_stats(t, scale)? {
                    out.push(Record::Mask {
                        step: self.step,
                        task: name.clone(),
                        param,
                        off: s.off,
                        undecided: s.undecided,
                    });
                }
                let (loss, metric) = self.measure(l, t, Split::Test, GateView::Binary)?;
                out.push(Record::Binarized {
                    step: self.step,
                    task: name.clone(),
                    loss,
                    metric,
                });
            }
            out.extend(self.recovery(l, &picked)?);
        }
        Ok(out)
    }

    /// Histogram snapshots of every parameter's effective values per task (and gate values for
    /// the gated model).
    fn histograms(&self, learner: &Learner) -> Result<Vec<Record>> {
        let scale = self.hat_scale(self.step);
        let mut out = Vec::new();
        let tasks: Vec<usize> = match (learner.strategy(), learner.masks()) {
            (Strategy::Gated, Some(bank)) => bank.tasks(),
            (Strategy::Separate, _) => (0..self.tasks.len()).collect(),
            _ => vec![0],
        };
        for t in tasks {
            let task = if learner.strategy() == Strategy::Shared {
                "all".to_string()
            } else {
                self.tasks[t].name().to_string()
            };
            let masks = learner.masks().and_then(|b| b.get(t));
            for (i, (param, w)) in learner.network(t).params().iter().enumerate() {
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
        let Some(bank) = learner.masks() else {
            return Ok(Vec::new());
        };
        let truths: Vec<_> = self.tasks.iter().map(|t| t.true_mask()).collect();
        let Some(truths) = truths.into_iter().collect::<Option<Vec<_>>>() else {
            return Ok(Vec::new());
        };
        let params = learner.network(0).params();
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

/// A run folder's resolved task set (`config.toml`), with errors that say what is missing.
pub fn read_run_config(dir: &Path) -> Result<TaskSet> {
    if !dir.is_dir() {
        return Err(Error::Run {
            path: dir.into(),
            message: "no such run folder (runs are created by `gtk train`)".into(),
        });
    }
    let config = dir.join(files::CONFIG);
    let text = std::fs::read_to_string(&config).map_err(|e| Error::Run {
        path: config.clone(),
        message: format!("cannot read the run's config: {e}; is this a gatekit run folder?"),
    })?;
    TaskSet::parse_with(&text, &config, &|_: &str| {
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

fn read_run(dir: &Path) -> Result<(TaskSet, RunState)> {
    let set = read_run_config(dir)?;
    let state_path = dir.join(files::STATE);
    let state_text = std::fs::read_to_string(&state_path).map_err(|e| Error::Run {
        path: state_path.clone(),
        message: format!("cannot read the run state: {e}; the run has no checkpoint yet"),
    })?;
    let state: RunState = serde_json::from_str(&state_text).map_err(|e| Error::Checkpoint {
        path: state_path.clone(),
        message: e.to_string(),
    })?;
    Ok((set, state))
}

fn read_checkpoint(dir: &Path, step: usize, device: &Device) -> Result<HashMap<String, Tensor>> {
    let file = CheckpointFile::read(dir)?;
    let saved_step = file
        .metadata()?
        .get("step")
        .and_then(|s| s.parse::<usize>().ok());
    if saved_step != Some(step) {
        return Err(file.corrupt(format!(
            "it holds step {saved_step:?} but state.json says step {step}"
        )));
    }
    file.tensors(device)
}

/// Loads a finished (or stopped) run for evaluation: the task set, the tasks and the learners
/// at their checkpoint.
pub fn open_run(dir: &Path, data_dir: Option<&Path>, device: &Device) -> Result<Trainer> {
    Trainer::resume(dir, data_dir, device)
}
