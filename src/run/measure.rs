//! What a run measures at its current weights: one learner on one task
//! ([`Run::measure`]), the full evaluation ([`Run::evaluate`]: every strategy on every task,
//! the binarized masks, mask shares, histograms, mask recovery) and the comparison table.

use super::Run;
use super::continual::ContinualSummary;
use super::evaluation::{Pass, measure_all};
use super::recalibrate::BnRecalibration;
use super::record::{MetricsLog, Record};
use super::table::ComparisonTable;
use crate::error::Result;
use crate::gate::{GateView, TaskGate};
use crate::learn::{Learner, Models, Strategy};
use crate::params::{ModelId, TaskId};
use crate::task::{Objective, Split, TrueMask, mean_predictor_mse};
use candle_core::{DType, Tensor};

impl Run {
    /// Mean loss and metric of one learner on one task's split (train split: the first
    /// `eval_train_limit` examples).
    pub fn measure(
        &self,
        learner: &Learner,
        task: TaskId,
        split: Split,
        view: GateView,
    ) -> Result<(f64, f64)> {
        let indices = self.full_indices(task, split);
        let pass = self.pass(task, split, &indices);
        Ok(measure_all(&pass, &[(learner, view)], None)?[0])
    }

    /// The examples a full evaluation measures: the whole test split, or the first
    /// `eval_train_limit` training examples.
    fn full_indices(&self, task: TaskId, split: Split) -> Vec<usize> {
        let data = &self.tasks[task.index()];
        let n = match split {
            Split::Train => data
                .len(split)
                .min(self.set.run.evaluation.eval_train_limit),
            Split::Test => data.len(split),
        };
        (0..n).collect()
    }

    /// With a validation split: learner `k` on every task's whole validation split, as
    /// `val` evaluation records; none without one.
    fn validation_records(&self, k: usize, metric_name: &str) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        let l = &self.learners[k];
        for (t, task) in self.tasks.iter().enumerate() {
            let Some(val) = task.validation() else {
                continue;
            };
            let indices: Vec<usize> = (0..val.len(Split::Test)).collect();
            let mut pass = self.pass(TaskId(t), Split::Test, &indices);
            pass.task = (val.as_ref(), TaskId(t));
            let (loss, metric) = measure_all(&pass, &[(l, GateView::Trained)], None)?[0];
            out.push(Record::Eval {
                step: self.step,
                strategy: l.strategy().to_string(),
                task: task.name().into(),
                split: "val".into(),
                loss,
                metric,
                metric_name: metric_name.to_string(),
            });
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

    pub(crate) fn pass<'a>(&'a self, task: TaskId, split: Split, indices: &'a [usize]) -> Pass<'a> {
        Pass {
            task: (self.tasks[task.index()].as_ref(), task),
            split,
            indices,
            scale: self.hat_scale(self.step),
            device: &self.device,
            dtype: self.dtype(),
            clock: &self.clock,
        }
    }

    /// The full evaluation: every strategy on every task's whole test split and training
    /// limit, plus, for the gated model, the binarized masks on the test split (in the same
    /// pass over the data as the soft gates), mask shares, histograms and mask recovery.
    pub fn evaluate(&self) -> Result<Vec<Record>> {
        let metric_name = self.objective().metric_name().to_string();
        let scale = self.hat_scale(self.step);
        // Which tasks each learner is measured binarized on: the gated model's picked tasks.
        let picked: Vec<Vec<TaskId>> = self.learners.iter().map(Learner::masked_tasks).collect();
        // The binarized model as it ships: with batch norm, each picked task's statistics
        // re-estimated under its binarized mask (see `recalibrate`); else the learner itself.
        let binarized_learners: Vec<Option<Learner>> = (self.learners.iter().zip(&picked))
            .map(|(l, p)| self.recalibrated(l, p, GateView::Binary, BnRecalibration::default()))
            .collect::<Result<_>>()?;
        // results[split][task][(learner, view)]
        let mut trained = vec![vec![Vec::new(); self.tasks.len()]; 2];
        let mut binary = vec![vec![None; self.learners.len()]; self.tasks.len()];
        for (t, id) in (0..self.tasks.len()).map(|t| (t, TaskId(t))) {
            for split in [Split::Test, Split::Train] {
                let mut models: Vec<(&Learner, GateView)> = self
                    .learners
                    .iter()
                    .map(|l| (l, GateView::Trained))
                    .collect();
                let mut binarized = Vec::new();
                if split == Split::Test {
                    for (k, l) in self.learners.iter().enumerate() {
                        if picked[k].contains(&id) {
                            binarized.push(k);
                            let b = binarized_learners[k].as_ref().unwrap_or(l);
                            models.push((b, GateView::Binary));
                        }
                    }
                }
                let indices = self.full_indices(id, split);
                let mut values = measure_all(&self.pass(id, split, &indices), &models, None)?;
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
            out.extend(self.validation_records(k, &metric_name)?);
            out.extend(self.histograms(l)?);
            for &id in &picked[k] {
                let t = id.index();
                let name = self.tasks[t].name().to_string();
                for (param, s) in l.mask_stats(id, scale)? {
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
    pub(crate) fn histograms(&self, learner: &Learner) -> Result<Vec<Record>> {
        let scale = self.hat_scale(self.step);
        let mut out = Vec::new();
        let layout = learner.strategy().layout();
        let bank = learner.masks()?;
        // (label, model, the task whose masks gate it): each picked task of the gated model,
        // each task's own model, or the one plain model under "all".
        let named = |t: TaskId| self.tasks[t.index()].name().to_string();
        let views: Vec<(String, ModelId, Option<TaskId>)> = match (layout.models, &bank) {
            (_, Some(bank)) => (bank.tasks().into_iter())
                .map(|t| (named(t), learner.model_of(t), Some(t)))
                .collect(),
            (Models::PerTask, _) => (0..self.tasks.len())
                .map(|t| (named(TaskId(t)), learner.model_of(TaskId(t)), None))
                .collect(),
            (Models::One, None) => vec![("all".to_string(), ModelId::ONLY, None)],
        };
        for (task, model, gated_by) in views {
            let masks = (bank.as_ref().zip(gated_by)).and_then(|(b, t)| b.get(t));
            let net = learner.model(model)?;
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
    fn recovery(&self, learner: &Learner, picked: &[TaskId]) -> Result<Vec<Record>> {
        let Some(bank) = learner.masks()? else {
            return Ok(Vec::new());
        };
        let truths: Vec<_> = self.tasks.iter().map(|t| t.true_mask()).collect();
        let Some(truths) = truths.into_iter().collect::<Option<Vec<_>>>() else {
            return Ok(Vec::new());
        };
        let net = learner.model(ModelId::ONLY)?;
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
        for &id in picked {
            let (t, masks) = (id.index(), bank.get(id).unwrap_or(&[]));
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

    /// The strategies compared on the latest evaluation (`records` from [`Run::evaluate`]),
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

/// Each strategy's accuracy matrix from the `phase` records of a run, once every phase has
/// ended (a run stopped mid-way has none yet), with the metric at initialisation (the
/// `phase` 0 records at step 0) when the run has it; strategies in record order.
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
            let summary = ContinualSummary::new(
                &s,
                &metric_name,
                columns.iter().map(|&j| tasks[j].clone()).collect(),
                matrix,
                objective.higher_is_better(),
            );
            // Phase 0: the metric at initialisation (GEM's b_j), for the forward transfer.
            let initial: Option<Vec<f64>> = rows
                .get(&(s.clone(), 0))
                .and_then(|r| columns.iter().map(|&j| r[j]).collect());
            Some(match initial {
                Some(b) => summary.with_initial(b, objective.higher_is_better()),
                None => summary,
            })
        })
        .collect()
}
