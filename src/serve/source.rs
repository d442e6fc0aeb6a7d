//! What `gtk serve` serves: an export folder, or a run folder at its last commit. A run is read
//! through the read-only [`Run`] (never the trainer: a server must not be able to write into
//! the run it serves) and held exactly as `gtk export --binarize` would write it — `W` as
//! float32, each task's mask as the packed bits `1[M > 0]`, its layer state — so serving a run
//! and serving its binarized export answer the same numbers, without exporting first. With
//! batch norm that includes each task's statistics re-estimated under its binarized mask from
//! its training data ([`BnRecalibration`]), exactly as the export does.

use super::error::Result;
use super::store::{ExportFolder, ParamInfo, TaskView, bad, fingerprint, standardize_of};
use crate::export::bitpack;
use crate::gate::GateView;
use crate::learn::Strategy;
use crate::params::{ModelId, TaskId};
use crate::run::{BnRecalibration, ChangedData, Run, files};
use candle_core::{DType, Device};
use std::path::Path;

/// Whether `dir` is a run folder (it has a committed `state.json`) rather than an export.
pub fn is_run_folder(dir: &Path) -> bool {
    dir.join(files::STATE).is_file()
}

impl ExportFolder {
    /// Reads what `gtk serve PATH` serves: a run folder (opened read-only at its last commit,
    /// its tasks' data from `data_dir`; `changed` decides about data files that changed since
    /// the run recorded them; `bn` how a batch-norm model's statistics are re-estimated under
    /// the binarized masks) or an export folder written by `gtk export --binarize`.
    pub fn open(
        path: &Path,
        data_dir: Option<&Path>,
        changed: ChangedData,
        bn: BnRecalibration,
    ) -> Result<Self> {
        if is_run_folder(path) {
            let run = Run::open(path, data_dir, &Device::Cpu, changed)?;
            return Self::from_run(&run, bn);
        }
        if path.is_dir() && !path.join("masks.safetensors").is_file() {
            return Err(bad(
                path,
                "is neither an export folder (no masks.safetensors; write one with `gtk export RUN --binarize`) nor a run folder (no state.json)",
            ));
        }
        Self::read(path)
    }

    /// A run's gated model at its last commit, its masks binarized (`W ⊙ 1[M > 0]`, the model
    /// `gtk export --binarize` writes). Tasks that were never trained (no masks yet, e.g. the
    /// later phases of a sequential run still training) are left out and named in
    /// [`ExportFolder::notes`]. A model with batch norm gets each task's statistics
    /// re-estimated under its binarized mask (`bn`, as `gtk export --binarize` does).
    pub fn from_run(run: &Run, bn: BnRecalibration) -> Result<Self> {
        let learner = run
            .learners()
            .iter()
            .find(|l| l.strategy() == Strategy::Gated)
            .ok_or_else(|| {
                bad(
                    run.dir(),
                    "has no gated model to serve (train with --strategy gated or all)",
                )
            })?;
        let net = learner.model(ModelId::ONLY)?;
        let params: Vec<ParamInfo> = net
            .params()
            .iter()
            .map(|(name, v)| ParamInfo {
                name: name.clone(),
                shape: v.dims().to_vec(),
                len: v.elem_count(),
            })
            .collect();
        let weights: Vec<Vec<f32>> = net
            .params()
            .iter()
            .map(|(_, v)| v.as_tensor().flatten_all()?.to_dtype(DType::F32)?.to_vec1())
            .collect::<candle_core::Result<_>>()?;
        let bank = learner
            .masks()?
            .ok_or_else(|| bad(run.dir(), "its gated model holds no masks"))?;
        let set = run.task_set();
        let trained = bank.tasks();
        let recalibrated = run.recalibrated(learner, &trained, GateView::Binary, bn)?;
        let learner = recalibrated.as_ref().unwrap_or(learner);
        let mut notes: Vec<String> = run.notes().to_vec();
        let mut tasks = Vec::new();
        for (t, entry) in set.tasks.iter().enumerate() {
            let Some(masks) = bank.get(TaskId(t)) else {
                notes.push(format!(
                    "task `{}` was never trained (no masks yet): not served",
                    entry.name
                ));
                continue;
            };
            let mut packed = Vec::with_capacity(masks.len());
            let (mut kept, mut total) = (0u64, 0u64);
            for m in masks {
                let bits = bitpack::deployed_bits(m.as_tensor())?;
                kept += bits.iter().filter(|&&b| b).count() as u64;
                total += bits.len() as u64;
                packed.push(bitpack::pack(&bits));
            }
            let state = learner
                .layer_state(TaskId(t))?
                .iter()
                .map(|s| s.to_dtype(DType::F32))
                .collect::<candle_core::Result<Vec<_>>>()?;
            tasks.push(TaskView {
                name: entry.name.clone(),
                kind: entry.kind.clone(),
                objective: run.objective(),
                standardize: standardize_of(entry),
                masks: packed,
                state,
                density: kept as f64 / total.max(1) as f64,
                source: run.dir().to_path_buf(),
                // Task-IL: the head its export would gather (`gtk export`'s `heads`).
                head: learner.head(TaskId(t)).map(|h| h.units()),
            });
        }
        if tasks.is_empty() {
            return Err(bad(
                run.dir(),
                "has no trained task to serve yet (no task has masks); train first",
            ));
        }
        Ok(ExportFolder {
            dir: run.dir().to_path_buf(),
            model: set.model.clone(),
            gate: "binary".into(),
            fingerprint: fingerprint(&params, &weights),
            params,
            weights,
            tasks,
            notes,
        })
    }
}
