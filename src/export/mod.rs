//! Deployment: a task's model is `W ⊙ 1[M_t > 0]`, so a new task costs one bit per parameter.
//!
//! [`export_run`] writes, for a run's gated model:
//! - `weights.safetensors`: the shared W (float32, `{layer}.weight`, `{layer}.bias`);
//! - `masks.safetensors`: every task's binarized mask per parameter, bit-packed MSB-first into
//!   U8 `[⌈n/8⌉]` (numpy `packbits` order) under `{param}.mask.{task}`, with shapes, bit order,
//!   threshold, task and model names in the metadata (one JSON string under the key
//!   `gatekit`, so equal content gives equal bytes);
//! - `state.safetensors`, for a model with stateful layers only: every task's layer state
//!   (float32, `{layer}.{state}.state.{task}`, e.g. a batch norm's running statistics), which a
//!   task's model needs besides `W` and its mask. With `binarize`, a batch norm's statistics
//!   are re-estimated under the task's binarized mask from its training data
//!   ([`ExportOptions::bn`], see [`crate::run::BnRecalibration`]): the statistics gathered in
//!   training belong to the soft gates;
//! - `<task>.onnx` per task: the effective network with its weights baked in (binarized with
//!   `binarize`, else the exact trained function `W ⊙ g(M)`);
//! - `all_tasks.onnx`: W, every task's gates and layer state in one graph, the task picked by
//!   an input.
//!
//! Every file is written to a temporary folder that is renamed into place at the end, so a
//! failed export leaves no partial files; an existing output folder is never deleted (see
//! [`OutputDir`]).

pub mod bitpack;
pub mod check;
pub mod interpreter;
pub mod onnx;
pub mod proto;

use crate::error::{Error, Result};
use crate::gate::{GateMode, GateView, MaskBank, TaskGate};
use crate::learn::{Learner, Strategy};
use crate::model::Network;
use crate::params::ParamKey;
use crate::params::{ModelId, TaskId};
use crate::run::{BinarizationWarning, BnRecalibration, Run, undecided_range};
use crate::run_folder::OutputDir;
use crate::run_folder::fsio::write_atomic;
use crate::task::Split;
use candle_core::{DType, Tensor};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What to export.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Bake `W ⊙ 1[M > 0]` into the ONNX models (else the trained gate).
    pub binarize: bool,
    /// With `binarize`: rescale kept weights by the mean trained gate per parameter.
    pub rescale: bool,
    /// Only these tasks (names); all when `None`.
    pub tasks: Option<Vec<String>>,
    /// With `binarize`, for a model with batch norm: how each task's statistics are
    /// re-estimated under its binarized mask (what the ONNX files, `state.safetensors` and the
    /// binarized test metrics use).
    pub bn: BnRecalibration,
}

/// Per-task results of an export.
#[derive(Debug, Clone, Serialize)]
pub struct TaskExport {
    /// Task name.
    pub task: String,
    /// Test metric of the trained (soft) gated model.
    pub soft: f64,
    /// Test metric of `W ⊙ 1[M > 0]`.
    pub binary: f64,
    /// Test metric of the binarized model with per-parameter rescaling.
    pub rescaled: f64,
    /// Share of all gated weights switched off for this task.
    pub off: f64,
    /// Size of `<task>.onnx`.
    pub onnx_bytes: u64,
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    /// Output folder.
    pub out: PathBuf,
    /// Name of the metric (`mse` or `accuracy`).
    pub metric: String,
    /// One entry per exported task.
    pub tasks: Vec<TaskExport>,
    /// Size of `masks.safetensors`.
    pub masks_bytes: u64,
    /// What the same masks take as float32 (4 bytes per entry), for comparison.
    pub masks_f32_bytes: u64,
    /// Packed payload only: Σ ⌈n/8⌉ over masks.
    pub masks_payload_bytes: u64,
    /// Size of `weights.safetensors`.
    pub weights_bytes: u64,
    /// Size of `all_tasks.onnx`.
    pub all_tasks_bytes: u64,
}

impl ExportSummary {
    /// The warning that the exported binarized model is much worse than the soft one (means
    /// over the exported tasks; see [`BinarizationWarning`] for the rule), with the run's
    /// undecided gates from its committed log and what helps for its settings. `None` when
    /// they are close.
    pub fn binarization_warning(&self, trainer: &Run) -> Result<Option<BinarizationWarning>> {
        let n = self.tasks.len();
        if n == 0 {
            return Ok(None);
        }
        let mean = |f: fn(&TaskExport) -> f64| self.tasks.iter().map(f).sum::<f64>() / n as f64;
        let records = crate::run::MetricsLog::read_committed(trainer.dir())?;
        Ok(BinarizationWarning::check(
            &self.metric,
            mean(|t| t.soft),
            mean(|t| t.binary),
            Some(mean(|t| t.rescaled)),
            undecided_range(&records),
            &trainer.task_set().run,
        ))
    }
}

/// Where an ONNX metadata key appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataFile {
    /// Only in `<task>.onnx`.
    PerTask,
    /// Only in `all_tasks.onnx`.
    AllTasks,
    /// In every ONNX file.
    Both,
}

/// Every metadata key gatekit writes into its ONNX files, where, and what it holds; the book's
/// table (book/src/exporting.md) is [`onnx_metadata_markdown`] of this, checked by a test.
pub const ONNX_METADATA: &[(&str, MetadataFile, &str)] = &[
    ("gatekit.task", MetadataFile::PerTask, "the task's name"),
    (
        "gatekit.tasks",
        MetadataFile::AllTasks,
        "the task names, comma separated, in the order of the `task` input",
    ),
    (
        "gatekit.gate",
        MetadataFile::Both,
        "the gate baked in: `binary` (W ⊙ 1[M > 0], `--binarize`), `binary-rescaled` (`--binarize --rescale`), or the run's `gate` setting (`sigmoid`, `ste`, `hat`) for the trained gate",
    ),
    (
        "gatekit.off_share",
        MetadataFile::PerTask,
        "the share of the task's gated weights switched off (M ≤ 0), 6 decimals",
    ),
    (
        "gatekit.task_set",
        MetadataFile::Both,
        "the run's resolved task set (TOML, model inline), from which `gtk eval --onnx` rebuilds the test set",
    ),
];

/// [`ONNX_METADATA`] as a Markdown table.
pub fn onnx_metadata_markdown() -> String {
    let mut s = String::from("| key | in | holds |\n| --- | --- | --- |\n");
    for (key, file, what) in ONNX_METADATA {
        let file = match file {
            MetadataFile::PerTask => "`<task>.onnx`",
            MetadataFile::AllTasks => "`all_tasks.onnx`",
            MetadataFile::Both => "both",
        };
        s.push_str(&format!("| `{key}` | {file} | {what} |\n"));
    }
    s
}

/// The `gatekit.gate` value (see [`ONNX_METADATA`]).
fn gate_name(view: GateView, mode: crate::gate::GateMode) -> &'static str {
    match view {
        GateView::Binary => "binary",
        GateView::BinaryRescaled => "binary-rescaled",
        GateView::Trained => match mode {
            crate::gate::GateMode::Sigmoid => "sigmoid",
            crate::gate::GateMode::Ste => "ste",
            crate::gate::GateMode::Hat => "hat",
        },
    }
}

#[derive(Serialize)]
struct MaskMetadata<'a> {
    format: &'static str,
    bit_order: &'static str,
    threshold: &'static str,
    model: &'a str,
    tasks: Vec<&'a str>,
    shapes: BTreeMap<&'a str, Vec<usize>>,
    dtype: &'static str,
    /// Task-IL (`scenario = "task"`): each task's output head, the output units its answer
    /// is read from (argmax over these only). Absent for one head shared by every task.
    #[serde(skip_serializing_if = "Option::is_none")]
    heads: Option<BTreeMap<&'a str, Vec<usize>>>,
}

/// Exports the gated model of `trainer`'s run into `out`, which must be new or empty (see
/// [`OutputDir`]).
pub fn export_run(trainer: &Run, out: &Path, opts: &ExportOptions) -> Result<ExportSummary> {
    export_into(
        trainer,
        OutputDir::claim(out, "export", &[trainer.dir()], false)?,
        opts,
    )
}

/// [`export_run`] into an already claimed output folder (the CLI claims it before opening the
/// run, so a bad `--out` fails before any work).
pub fn export_into(trainer: &Run, out: OutputDir, opts: &ExportOptions) -> Result<ExportSummary> {
    let learner = trainer
        .learners()
        .iter()
        .find(|l| l.strategy() == Strategy::Gated)
        .ok_or_else(|| Error::Run {
            path: trainer.dir().into(),
            message: "has no gated model to export (train with --strategy gated or all)".into(),
        })?;
    let set = trainer.task_set();
    let names = set.task_names();
    let selected: Vec<TaskId> = match &opts.tasks {
        None => (0..names.len()).map(TaskId).collect(),
        Some(wanted) => wanted
            .iter()
            .map(|w| {
                names.iter().position(|n| n == w).ok_or_else(|| {
                    Error::config(
                        "--tasks",
                        w.clone(),
                        format!(
                            "is not a task of this run; its tasks are: {}",
                            names.join(", ")
                        ),
                    )
                })
            })
            .map(|t| t.map(TaskId))
            .collect::<Result<_>>()?,
    };
    let dest = out.destination().to_path_buf();
    let summary = write_export(trainer, learner, &selected, out.path(), opts)?;
    out.finish()?;
    Ok(ExportSummary {
        out: dest,
        ..summary
    })
}

fn file_len(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len())
}

fn write_export(
    trainer: &Run,
    learner: &Learner,
    selected: &[TaskId],
    dir: &Path,
    opts: &ExportOptions,
) -> Result<ExportSummary> {
    let set = trainer.task_set();
    let names = set.task_names();
    let net = learner.model(ModelId::ONLY)?;
    let bank = learner
        .masks()?
        .ok_or_else(|| Error::Shape("gated model without masks".into()))?;
    let gates = Gates {
        mode: learner.gate_mode(),
        scale: trainer.hat_scale(trainer.step()),
        view: match (opts.binarize, opts.rescale) {
            (false, _) => GateView::Trained,
            (true, false) => GateView::Binary,
            (true, true) => GateView::BinaryRescaled,
        },
    };
    let weights = write_weights(&net, dir)?;
    let masks = write_masks(trainer, learner, &net, &bank, selected, dir)?;
    // With batch norm, the binarized models' statistics re-estimated under each task's
    // binarized (or rescaled) mask, on copies of the learner (the run is only read).
    let binary = trainer.recalibrated(learner, selected, GateView::Binary, opts.bn)?;
    let rescaled = trainer.recalibrated(learner, selected, GateView::BinaryRescaled, opts.bn)?;
    let learners = Learners {
        soft: learner,
        binary: binary.as_ref().unwrap_or(learner),
        rescaled: rescaled.as_ref().unwrap_or(learner),
    };
    // The learner whose layer state goes with the exported gate.
    let exported = match gates.view {
        GateView::Trained => learners.soft,
        GateView::Binary => learners.binary,
        GateView::BinaryRescaled => learners.rescaled,
    };
    // Layer state (batch-norm statistics) per task, once: raw next to the masks (so a task's
    // model can be rebuilt from files) and as the ONNX graphs read it.
    let mut raw_state: Vec<(String, Tensor)> = Vec::new();
    let mut task_states: Vec<Vec<(String, Tensor)>> = Vec::new();
    for &t in selected {
        let raw = exported.layer_state(t)?;
        for ((name, _), value) in net.state_specs().iter().zip(&raw) {
            let key = ParamKey::TaskState {
                param: name,
                task: &names[t.index()],
            };
            raw_state.push((key.to_string(), value.to_dtype(DType::F32)?));
        }
        task_states.push(net.onnx_state(&raw)?);
    }
    // Task-IL: each selected task's head, the output units its exported models answer with.
    let heads: Option<Vec<Vec<usize>>> = (selected.iter())
        .map(|&t| learner.head(t).map(|h| h.units()))
        .collect();
    let mut tasks = Vec::new();
    for (k, &t) in selected.iter().enumerate() {
        let on = TaskOnnx {
            task: t,
            masks: &masks.per_task[k],
            state: &task_states[k],
            head: heads.as_ref().map(|h| h[k].as_slice()),
        };
        tasks.push(write_task_model(
            trainer, learners, &net, &bank, gates, on, dir,
        )?);
    }
    let all_path = write_all_tasks(
        trainer,
        &net,
        selected,
        gates,
        &masks,
        &weights,
        &raw_state,
        &task_states,
        heads.as_deref(),
        dir,
    )?;
    Ok(ExportSummary {
        out: dir.into(),
        metric: run_metric_name(trainer),
        tasks,
        masks_bytes: file_len(&dir.join("masks.safetensors"))?,
        masks_f32_bytes: 4 * masks.values,
        masks_payload_bytes: masks.payload_bytes,
        weights_bytes: file_len(&dir.join("weights.safetensors"))?,
        all_tasks_bytes: file_len(&all_path)?,
    })
}

/// How the exported graphs gate the weights: the run's gate mode and HAT scale, and the view
/// the options ask for (soft, binary, binary rescaled).
#[derive(Clone, Copy)]
struct Gates {
    mode: GateMode,
    scale: f64,
    view: GateView,
}

/// The learners an export measures: the trained one (soft gates) and the copies whose
/// batch-norm statistics were re-estimated under the binarized and the rescaled masks (the
/// trained one again for a model without batch norm).
#[derive(Clone, Copy)]
struct Learners<'a> {
    soft: &'a Learner,
    binary: &'a Learner,
    rescaled: &'a Learner,
}

/// The selected tasks' masks as written to `masks.safetensors`.
struct WrittenMasks {
    /// Per selected task, its mask per parameter.
    per_task: Vec<Vec<candle_core::Var>>,
    /// Mask values in all (the f32 size they would take is 4 bytes each).
    values: u64,
    /// Bytes of the packed bits.
    payload_bytes: u64,
}

/// One task's part of the per-task ONNX export.
#[derive(Clone, Copy)]
struct TaskOnnx<'a> {
    task: TaskId,
    masks: &'a [candle_core::Var],
    state: &'a [(String, Tensor)],
    /// Task-IL: the output units of the task's head (the model's output is these alone).
    head: Option<&'a [usize]>,
}

/// Writes `weights.safetensors` (the shared `W`, f32) and returns the weights.
fn write_weights(net: &Network, dir: &Path) -> Result<Vec<(String, Tensor)>> {
    let weights: Vec<(String, Tensor)> = net
        .params()
        .iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().to_dtype(DType::F32)?)))
        .collect::<Result<_>>()?;
    let weights_path = dir.join("weights.safetensors");
    let weights_bytes = safetensors::serialize(weights.iter().map(|(n, t)| (n.as_str(), t)), None)
        .map_err(|e| Error::encode(&weights_path, "the shared weights", e))?;
    write_atomic(&weights_path, &weights_bytes)?;
    Ok(weights)
}

/// Writes `masks.safetensors`: every selected task's masks, bit-packed, with the metadata a
/// reader needs to unpack them. Refuses a task that was never trained.
fn write_masks(
    trainer: &Run,
    learner: &Learner,
    net: &Network,
    bank: &MaskBank,
    selected: &[TaskId],
    dir: &Path,
) -> Result<WrittenMasks> {
    let set = trainer.task_set();
    let names = set.task_names();
    // Masks, bit-packed.
    let masks_path = dir.join("masks.safetensors");
    let mut packed: Vec<(String, Vec<u8>, usize)> = Vec::new();
    let mut mask_values = 0u64;
    let mut task_masks: Vec<Vec<candle_core::Var>> = Vec::new();
    for &t in selected {
        let masks = match bank.get(t) {
            Some(m) => m.to_vec(),
            None => {
                return Err(Error::Run {
                    path: trainer.dir().into(),
                    message: format!(
                        "task `{}` was never trained (no masks); train longer or leave it out with --tasks",
                        names[t.index()]
                    ),
                });
            }
        };
        for ((pname, _), m) in net.params().iter().zip(&masks) {
            let bits = bitpack::deployed_bits(m.as_tensor())?;
            mask_values += bits.len() as u64;
            packed.push((
                ParamKey::Mask {
                    param: pname,
                    task: &names[t.index()],
                }
                .to_string(),
                bitpack::pack(&bits),
                bits.len(),
            ));
        }
        task_masks.push(masks);
    }
    let views: Vec<safetensors::tensor::TensorView> = packed
        .iter()
        .map(|(_, bytes, _)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![bytes.len()], bytes)
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::encode(&masks_path, "the packed masks", e))?;
    let meta = MaskMetadata {
        format: "gatekit-masks/1",
        bit_order: "msb-first (numpy packbits): element i is bit 7 - i % 8 of byte i / 8",
        threshold: "M > 0 (sigmoid(M) > 0.5)",
        model: &set.model.name,
        tasks: selected
            .iter()
            .map(|&t| names[t.index()].as_str())
            .collect(),
        shapes: net
            .params()
            .iter()
            .map(|(n, v)| (n.as_str(), v.dims().to_vec()))
            .collect(),
        dtype: "U8 packed bits; reshape np.unpackbits(x)[:prod(shape)] to shape",
        heads: selected
            .iter()
            .map(|&t| {
                let head = learner.head(t)?;
                let units = (0..head.active.len()).filter(|&u| head.active[u]);
                Some((names[t.index()].as_str(), units.collect()))
            })
            .collect(),
    };
    let meta_json = serde_json::to_string(&meta)
        .map_err(|e| Error::encode(&masks_path, "the mask metadata", e))?;
    let masks_bytes = safetensors::serialize(
        packed.iter().map(|(n, _, _)| n.as_str()).zip(views),
        Some(std::collections::HashMap::from([(
            "gatekit".to_string(),
            meta_json,
        )])),
    )
    .map_err(|e| Error::encode(&masks_path, "the packed masks", e))?;
    write_atomic(&masks_path, &masks_bytes)?;
    Ok(WrittenMasks {
        per_task: task_masks,
        values: mask_values,
        payload_bytes: packed.iter().map(|(_, b, _)| b.len() as u64).sum(),
    })
}

/// Writes one task's ONNX model (its effective weights under `gates`, its layer state and
/// metadata) and measures it soft, binary and rescaled on the test split.
fn write_task_model(
    trainer: &Run,
    learners: Learners,
    net: &Network,
    bank: &MaskBank,
    gates: Gates,
    on: TaskOnnx,
    dir: &Path,
) -> Result<TaskExport> {
    let set = trainer.task_set();
    let names = set.task_names();
    let (id, Gates { mode, scale, view }) = (on.task, gates);
    let t = id.index();
    let gate = TaskGate {
        masks: on.masks,
        mode,
        scale,
        view,
    };
    let params: Vec<(String, Tensor)> = net
        .params()
        .iter()
        .enumerate()
        .map(|(i, (n, v))| Ok((n.clone(), gate.apply(i, v.as_tensor())?)))
        .collect::<Result<_>>()?;
    // Share of all gated weights off, from the same statistics the training log reports.
    let stats = bank.stats(id, mode, scale)?;
    let total: f64 = on.masks.iter().map(|m| m.elem_count() as f64).sum();
    let off_n: f64 = stats
        .iter()
        .zip(on.masks)
        .map(|(st, m)| st.off * m.elem_count() as f64)
        .sum();
    let mut metadata = vec![
        ("gatekit.task".to_string(), names[t].clone()),
        (
            "gatekit.gate".to_string(),
            gate_name(view, mode).to_string(),
        ),
        (
            "gatekit.off_share".to_string(),
            format!("{:.6}", off_n / total),
        ),
        ("gatekit.task_set".to_string(), set.to_toml()),
    ];
    if let Some(units) = on.head {
        metadata.push(("gatekit.head".to_string(), unit_list(units)));
    }
    let model = onnx::task_model(&set.model, &params, on.state, on.head, &metadata)?;
    let path = dir.join(format!("{}.onnx", names[t]));
    write_atomic(&path, &onnx::encode(&model))?;
    let (_, soft) = trainer.measure(learners.soft, id, Split::Test, GateView::Trained)?;
    let (_, binary) = trainer.measure(learners.binary, id, Split::Test, GateView::Binary)?;
    let (_, rescaled) =
        trainer.measure(learners.rescaled, id, Split::Test, GateView::BinaryRescaled)?;
    Ok(TaskExport {
        task: names[t].clone(),
        soft,
        binary,
        rescaled,
        off: off_n / total,
        onnx_bytes: file_len(&path)?,
    })
}

/// Writes `state.safetensors` (when the model has layer state) and `all_tasks.onnx`: every
/// selected task's gates stacked, selected by the task index input. Returns the ONNX path.
#[allow(clippy::too_many_arguments)]
fn write_all_tasks(
    trainer: &Run,
    net: &Network,
    selected: &[TaskId],
    gates: Gates,
    masks: &WrittenMasks,
    weights: &[(String, Tensor)],
    raw_state: &[(String, Tensor)],
    task_states: &[Vec<(String, Tensor)>],
    heads: Option<&[Vec<usize>]>,
    dir: &Path,
) -> Result<PathBuf> {
    let set = trainer.task_set();
    let names = set.task_names();
    let (task_masks, Gates { mode, scale, view }) = (&masks.per_task, gates);
    // All tasks in one graph.
    let mut stacked = Vec::new();
    for (i, (pname, _)) in net.params().iter().enumerate() {
        let per_task = task_masks
            .iter()
            .map(|masks| {
                TaskGate {
                    masks,
                    mode,
                    scale,
                    view,
                }
                .values(i)
                .and_then(|g| g.to_dtype(DType::F32))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        stacked.push((pname.clone(), Tensor::stack(&per_task, 0)?));
    }
    // all_tasks.onnx reads every task's layer state stacked, gathered by the task index.
    let stacked_states = (0..task_states.first().map_or(0, Vec::len))
        .map(|i| {
            let per_task: Vec<Tensor> = task_states.iter().map(|s| s[i].1.clone()).collect();
            Ok((task_states[0][i].0.clone(), Tensor::stack(&per_task, 0)?))
        })
        .collect::<Result<Vec<_>>>()?;
    if !raw_state.is_empty() {
        let path = dir.join("state.safetensors");
        let bytes = safetensors::serialize(raw_state.iter().map(|(n, t)| (n.as_str(), t)), None)
            .map_err(|e| Error::encode(&path, "the layer state", e))?;
        write_atomic(&path, &bytes)?;
    }
    let binary = view == GateView::Binary;
    // Heads of unequal width cannot share one output shape: the graph then answers with
    // every unit, and `gatekit.heads` says which are whose.
    let even = heads.filter(|h| h.iter().all(|u| u.len() == h.first().map_or(0, Vec::len)));
    let mut metadata = vec![
        (
            "gatekit.tasks".to_string(),
            selected
                .iter()
                .map(|&t| names[t.index()].as_str())
                .collect::<Vec<_>>()
                .join(","),
        ),
        (
            "gatekit.gate".to_string(),
            gate_name(view, mode).to_string(),
        ),
        ("gatekit.task_set".to_string(), set.to_toml()),
    ];
    if let Some(heads) = heads {
        let lists: Vec<String> = heads.iter().map(|u| unit_list(u)).collect();
        metadata.push(("gatekit.heads".to_string(), lists.join(";")));
        metadata.push((
            "gatekit.heads_applied".to_string(),
            even.is_some().to_string(),
        ));
    }
    let all = onnx::all_tasks_model(
        &set.model,
        weights,
        &stacked,
        &stacked_states,
        binary,
        even,
        &metadata,
    )?;
    let all_path = dir.join("all_tasks.onnx");
    write_atomic(&all_path, &onnx::encode(&all))?;
    Ok(all_path)
}

/// A head's units as metadata text: `2,3`.
fn unit_list(units: &[usize]) -> String {
    units
        .iter()
        .map(|u| u.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn run_metric_name(trainer: &Run) -> String {
    trainer.objective().metric_name().to_string()
}
