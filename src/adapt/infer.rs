//! Task inference at test time (`gtk eval --infer-task`): the task id is withheld, and each test
//! batch is answered by the stored mask that one gradient picks (SupSup's GNu setting,
//! Wortsman et al. 2020).
//!
//! Per test batch of task t: [`pick`] on the stored masks' mixture at α = 1/T (one-shot or
//! halving) chooses mask j; the batch then scores its accuracy under mask j if j = t and 0
//! otherwise (a wrong inference scores 0, as SupSup counts it). The report gives the share of
//! batches whose task was inferred, the accuracy with the task inferred and, for comparison, with
//! the task given, per task and averaged over tasks, and every task's votes (the inference
//! matrix).
//!
//! Two objectives ([`InferSignal`]): the mean output entropy (SupSup's `H`), and SupSup's
//! `supsup_g` objective for models with more outputs than labels: `logsumexp` over all outputs
//! with the used outputs held constant, so its gradient only reads how much each mask raises the
//! unused outputs, which no mask was trained to raise for its own task's data.

use super::config::{MixGates, PickVariant};
use super::mask_mixture::{Mixture, Target};
use super::mask_profile::{MaskProfile, profile_masks};
use super::pick::pick;
use crate::error::{Error, Result};
use crate::gate::GateView;
use crate::learn::{Learner, Strategy};
use crate::params::{ModelId, TaskId};
use crate::run::Run;
use crate::task::{Objective, Split, Task};
use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

/// What the inference gradient is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InferSignal {
    /// Mean entropy of the softmax over all outputs (SupSup's one-shot `H`).
    Entropy,
    /// Mean `logsumexp` of all outputs with the used ones held constant (SupSup's `supsup_g`):
    /// needs a model with unused outputs.
    Logsumexp,
}

impl InferSignal {
    /// The spelling of `--infer-task`.
    pub fn as_str(self) -> &'static str {
        match self {
            InferSignal::Entropy => "entropy",
            InferSignal::Logsumexp => "logsumexp",
        }
    }
}

/// Settings of a task-inference evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InferConfig {
    /// The objective whose α-gradient picks the mask.
    pub signal: InferSignal,
    /// One gradient, or halving the candidates.
    pub variant: PickVariant,
    /// The trained gates or the binarized ones (the same for a `ste` run).
    pub gates: MixGates,
    /// Test examples per inference (one gradient per batch).
    pub batch: usize,
    /// Test examples per task, the first ones of its test split (0 = all).
    pub limit: usize,
    /// Outputs the labels use (the first ones); the rest are the unused outputs of
    /// [`InferSignal::Logsumexp`].
    pub used_outputs: usize,
    /// Test examples per task for the masks' density and output gain (0 = not measured).
    pub profile_examples: usize,
}

/// The inference result on one task's test batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInference {
    /// The task whose test data was given without its id.
    pub task: String,
    /// Test examples scored.
    pub examples: usize,
    /// Batches inferred.
    pub batches: usize,
    /// Batches whose inferred task was this one.
    pub inferred: usize,
    /// Accuracy under the task's own mask.
    pub accuracy_given: f64,
    /// Accuracy with the task inferred (a wrongly inferred batch scores 0).
    pub accuracy_inferred: f64,
    /// How many batches chose each stored task (run order).
    pub votes: Vec<usize>,
}

/// A task-inference evaluation of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferReport {
    /// The settings.
    pub config: InferConfig,
    /// The run's step.
    pub step: usize,
    /// The stored tasks, in run order (the columns of every `votes`).
    pub stored: Vec<String>,
    /// Gradients per inference.
    pub rounds: usize,
    /// Per task.
    pub tasks: Vec<TaskInference>,
    /// Share of all batches whose task was inferred.
    pub inference_accuracy: f64,
    /// Mean over tasks of the accuracy with the task inferred.
    pub accuracy_inferred: f64,
    /// Mean over tasks of the accuracy with the task given.
    pub accuracy_given: f64,
    /// Each stored mask's density and output gain (empty unless asked for).
    pub profiles: Vec<MaskProfile>,
}

/// Infers the task of every test batch of every task of `run` that has a mask.
pub fn infer_tasks(run: &Run, cfg: &InferConfig) -> Result<InferReport> {
    let path = run.dir();
    let fail = |message: String| Error::Run {
        path: path.into(),
        message,
    };
    if cfg.batch == 0 {
        return Err(fail(
            "task inference needs a batch of at least 1 example".into(),
        ));
    }
    if run.objective() != Objective::Classification {
        return Err(fail(
            "task inference reads class outputs; this run's tasks are regression".into(),
        ));
    }
    let gated = run
        .learners()
        .iter()
        .find(|l| l.strategy() == Strategy::Gated)
        .ok_or_else(|| {
            fail("has no gated model whose masks could be inferred (train --strategy gated)".into())
        })?;
    let bank = gated
        .masks()?
        .ok_or_else(|| fail("its gated model has no masks".into()))?;
    let stored = bank.tasks();
    if stored.len() < 2 {
        return Err(fail(format!(
            "{} task(s) have masks; inferring the task needs at least 2",
            stored.len()
        )));
    }
    let net = gated.model(ModelId::ONLY)?;
    check_outputs(run, cfg, &stored, &fail)?;
    let masks: Vec<&[Var]> = stored.iter().filter_map(|&t| bank.get(t)).collect();
    let scale = run.hat_scale(run.step());
    let mix = Mixture::new(&net, &masks, gated.gate_mode(), scale, cfg.gates)?;
    let view = match cfg.gates {
        MixGates::Soft => GateView::Trained,
        MixGates::Binary => GateView::Binary,
    };
    let judge = Judge {
        mix: &mix,
        learner: gated,
        cfg,
        scale,
        view,
        dtype: net.params()[0].1.dtype(),
    };
    let mut tasks = Vec::with_capacity(stored.len());
    let mut rounds = 0;
    for (position, &task) in stored.iter().enumerate() {
        let (result, r) = judge.task(run.tasks[task.index()].as_ref(), task, position)?;
        rounds = rounds.max(r);
        tasks.push(result);
    }
    let profiles = if cfg.profile_examples == 0 {
        Vec::new()
    } else {
        let own: Vec<&dyn Task> = stored
            .iter()
            .map(|t| run.tasks[t.index()].as_ref())
            .collect();
        let mode = gated.gate_mode();
        let size = (cfg.profile_examples, judge.dtype);
        profile_masks(gated, &own, &stored, &masks, mode, scale, view, size)?
    };
    let n = tasks.len() as f64;
    let batches: usize = tasks.iter().map(|t| t.batches).sum();
    let inferred: usize = tasks.iter().map(|t| t.inferred).sum();
    Ok(InferReport {
        config: *cfg,
        step: run.step(),
        stored: stored
            .iter()
            .map(|&t| run.task_set().tasks[t.index()].name.clone())
            .collect(),
        rounds,
        inference_accuracy: inferred as f64 / batches.max(1) as f64,
        accuracy_inferred: tasks.iter().map(|t| t.accuracy_inferred).sum::<f64>() / n,
        accuracy_given: tasks.iter().map(|t| t.accuracy_given).sum::<f64>() / n,
        tasks,
        profiles,
    })
}

/// The logsumexp objective needs unused outputs, and `used_outputs` must leave the labels theirs.
fn check_outputs(
    run: &Run,
    cfg: &InferConfig,
    stored: &[TaskId],
    fail: &dyn Fn(String) -> Error,
) -> Result<()> {
    let outputs = run.tasks[stored[0].index()].outputs();
    if cfg.used_outputs == 0 || cfg.used_outputs > outputs {
        return Err(fail(format!(
            "used outputs {} must be between 1 and the model's {outputs} outputs",
            cfg.used_outputs
        )));
    }
    if cfg.signal == InferSignal::Logsumexp && cfg.used_outputs == outputs {
        return Err(fail(format!(
            "the logsumexp objective needs unused outputs, but the model has {outputs} and the \
             labels use {}: train with more outputs (e.g. `outputs = 500` on permuted-mnist \
             tasks and models/lenet-300-100-500.toml) or infer with entropy",
            cfg.used_outputs
        )));
    }
    Ok(())
}

/// What every batch's inference and scoring reads.
struct Judge<'a> {
    mix: &'a Mixture,
    learner: &'a Learner,
    cfg: &'a InferConfig,
    scale: f64,
    view: GateView,
    dtype: DType,
}

impl Judge<'_> {
    /// Infers and scores every test batch of `task` (stored at `position`); also returns the
    /// gradients per inference.
    fn task(&self, task: &dyn Task, id: TaskId, position: usize) -> Result<(TaskInference, usize)> {
        let n = match self.cfg.limit {
            0 => task.len(Split::Test),
            limit => limit.min(task.len(Split::Test)),
        };
        let indices: Vec<usize> = (0..n).collect();
        let mut votes = vec![0usize; self.mix.tasks()];
        let (mut hits_given, mut hits_inferred, mut rounds) = (0.0, 0.0, 0);
        for chunk in indices.chunks(self.cfg.batch) {
            let b = task.batch(Split::Test, chunk, &Device::Cpu, self.dtype)?;
            let target = match self.cfg.signal {
                InferSignal::Entropy => Target::Entropy,
                InferSignal::Logsumexp => Target::UnusedLogsumexp {
                    used: self.cfg.used_outputs,
                },
            };
            let choice = pick(self.mix, &b.x, target, self.cfg.variant)?;
            rounds = choice.rounds;
            votes[choice.chosen] += 1;
            let out = self.learner.predict(id, &b.x, self.scale, self.view)?;
            let hits = Objective::Classification.metric_sum(&out, &b.y)?;
            hits_given += hits;
            if choice.chosen == position {
                hits_inferred += hits;
            }
        }
        let examples = n.max(1) as f64;
        Ok((
            TaskInference {
                task: task.name().to_string(),
                examples: n,
                batches: votes.iter().sum(),
                inferred: votes[position],
                accuracy_given: hits_given / examples,
                accuracy_inferred: hits_inferred / examples,
                votes,
            },
            rounds,
        ))
    }
}

/// The α-gradient objective of `signal` on a model output, as a scalar (for tests and tools).
pub fn objective_value(signal: InferSignal, used_outputs: usize, out: &Tensor) -> Result<f64> {
    let target = match signal {
        InferSignal::Entropy => Target::Entropy,
        InferSignal::Logsumexp => Target::UnusedLogsumexp { used: used_outputs },
    };
    Ok(target
        .value(out)?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::GateMode;
    use crate::model::{ModelSpec, Network, WeightInit};
    use crate::rng::Rng;
    use std::path::Path;

    /// A 2→4 linear layer with two stored masks, on inputs x = (1, 1):
    /// - W's first row is (2, 2), the others (1, 1);
    /// - mask 0 keeps only the first row: logits (4, 0, 0, 0), confident, unused outputs 0;
    /// - mask 1 keeps the first row's first entry and every other row: logits (2, 2, 2, 2),
    ///   flat, and it raises the unused outputs 1–3.
    ///
    /// Data of task 0: both objectives must pick mask 0. Entropy: raising α₁ shifts every
    /// logit by the same amount (no change to the softmax, gradient 0) while raising α₀ sharpens
    /// the top logit (gradient < 0). Logsumexp with output 0 used: mask 0 leaves the unused
    /// outputs at 0 (gradient 0), mask 1 raises them (gradient > 0).
    fn constructed() -> Result<(Mixture, Tensor)> {
        let spec = ModelSpec::parse(
            "name = \"m\"\ninput = [2]\n[[layer]]\ntype = \"linear\"\nout = 4\n",
            Path::new("m.toml"),
        )
        .expect("model");
        let dev = Device::Cpu;
        let net = Network::new(&spec, WeightInit::Zeros, &mut Rng::new(0), DType::F64, &dev)?;
        let params = net.params();
        params[0].1.set(&Tensor::new(
            &[[2f64, 2.], [1., 1.], [1., 1.], [1., 1.]],
            &dev,
        )?)?;
        let on = 5.0f64;
        let off = -5.0f64;
        let mask = |w: [[f64; 2]; 4]| -> Result<Vec<Var>> {
            Ok(vec![
                Var::from_tensor(&Tensor::new(&w, &dev)?)?,
                Var::from_tensor(&Tensor::new(&[off; 4], &dev)?)?,
            ])
        };
        let m0 = mask([[on, on], [off, off], [off, off], [off, off]])?;
        let m1 = mask([[on, off], [on, on], [on, on], [on, on]])?;
        let masks = [m0.as_slice(), m1.as_slice()];
        let mix = Mixture::new(&net, &masks, GateMode::Ste, 1.0, MixGates::Binary)?;
        let x = Tensor::new(&[[1f64, 1.], [1., 1.], [1., 1.]], &dev)?;
        Ok((mix, x))
    }

    #[test]
    fn both_objectives_pick_the_confident_mask_on_a_constructed_case() -> Result<()> {
        let (mix, x) = constructed()?;
        let (_, g) = mix.grad(&[0.5, 0.5], &x, Target::Entropy)?;
        assert!(g[0] < -0.1, "entropy gradient of mask 0: {}", g[0]);
        assert!(
            g[1].abs() < 1e-12,
            "a uniform shift moves no entropy: {}",
            g[1]
        );
        let lse = Target::UnusedLogsumexp { used: 1 };
        let (_, g) = mix.grad(&[0.5, 0.5], &x, lse)?;
        assert!(
            g[0].abs() < 1e-12,
            "mask 0 keeps the unused outputs at 0: {}",
            g[0]
        );
        assert!(g[1] > 0.5, "mask 1 raises the unused outputs: {}", g[1]);
        for variant in [PickVariant::OneShot, PickVariant::Halving] {
            assert_eq!(pick(&mix, &x, Target::Entropy, variant)?.chosen, 0);
            assert_eq!(pick(&mix, &x, lse, variant)?.chosen, 0);
        }
        Ok(())
    }

    /// SupSup's `supsup_g`: logsumexp over all outputs, the used ones held constant: the value
    /// is the full logsumexp, and the used outputs get no gradient.
    #[test]
    fn logsumexp_objective_holds_the_used_outputs() -> Result<()> {
        let dev = Device::Cpu;
        let z = Var::new(&[[1f64, 2., 3., 4.], [0., 0., 0., 0.]], &dev)?;
        let v = Target::UnusedLogsumexp { used: 2 }.value(z.as_tensor())?;
        let want = ((1f64.exp() + 2f64.exp() + 3f64.exp() + 4f64.exp()).ln() + 4f64.ln()) / 2.0;
        assert!((v.to_scalar::<f64>()? - want).abs() < 1e-12);
        let grads = v.backward()?;
        let d = grads.get(&z).expect("gradient").to_vec2::<f64>()?;
        assert_eq!((d[0][0], d[0][1], d[1][0], d[1][1]), (0.0, 0.0, 0.0, 0.0));
        let total = 1f64.exp() + 2f64.exp() + 3f64.exp() + 4f64.exp();
        assert!((d[0][3] - 0.5 * 4f64.exp() / total).abs() < 1e-12);
        assert!((d[1][2] - 0.5 * 0.25).abs() < 1e-12);
        let e = objective_value(InferSignal::Entropy, 2, z.as_tensor())?;
        assert!(e > 0.0 && e < 4f64.ln());
        Ok(())
    }
}
