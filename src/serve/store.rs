//! The model store: an export folder in memory as `gtk serve` holds it — the shared `W` once
//! (float32), every task's mask as packed bits (1 bit per weight, exactly the bytes of
//! `masks.safetensors`), its layer state (batch-norm statistics) and the input transform its
//! task applies. A task's effective network `W ⊙ 1[M_t > 0]` is built from these on demand and
//! kept in the [`EffectiveCache`] under a byte budget.
//!
//! Tasks can be added from another export of the same `W` (e.g. `gtk adapt` output exported)
//! and removed while serving; a folder whose `W` fingerprint differs is refused, since its
//! masks were learned for other weights and would answer nonsense.

use super::cache::{Effective, EffectiveCache};
use super::error::{Result, ServeError};
use crate::config::TaskSet;
use crate::export::check::read_model;
use crate::model::{ModelSpec, NetState, Network, WeightInit};
use crate::params::ParamKey;
use crate::task::{Objective, TaskEntry};
use candle_core::{DType, Device, Tensor, Var};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// One shared parameter: its name (`fc1.weight`), shape and element count.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamInfo {
    /// `{layer}.weight` or `{layer}.bias`.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its element count.
    pub len: usize,
}

/// One task as served: its mask, state and input transform.
#[derive(Debug)]
pub struct TaskView {
    /// The task's name.
    pub name: String,
    /// Its task kind (`sinusoid`, `mnist`, `tensors`, …).
    pub kind: String,
    /// Classification (logits, argmax answered) or regression.
    pub objective: Objective,
    /// The `tensors` kind's standardisation: per-feature mean and standard deviation, applied
    /// to every input as training did (and as `gtk eval --onnx` does).
    pub standardize: Option<(Vec<f32>, Vec<f32>)>,
    /// Per parameter, the packed mask bits (MSB first, `⌈n/8⌉` bytes).
    pub masks: Vec<Vec<u8>>,
    /// The layer state in the order of [`Network::state_specs`] (empty without batch norm).
    pub state: Vec<Tensor>,
    /// Share of weights kept (mask bit 1).
    pub density: f64,
    /// The export folder it was read from.
    pub source: PathBuf,
    /// Task-IL: the output units of the task's head (the export's `heads`). The task answers
    /// with these alone, in this order, as its exported ONNX model does; `None`: every unit.
    pub head: Option<Vec<usize>>,
}

impl TaskView {
    /// Applies the task's input transform to `values`, rows of `features` values each.
    pub fn prepare(&self, values: &mut [f32]) {
        if let Some((mean, std)) = &self.standardize {
            for row in values.chunks_mut(mean.len().max(1)) {
                for ((v, m), s) in row.iter_mut().zip(mean).zip(std) {
                    *v = (*v - m) / s;
                }
            }
        }
    }

    /// Bytes its masks take in memory.
    pub fn mask_bytes(&self) -> usize {
        self.masks.iter().map(Vec::len).sum()
    }
}

/// An export folder read into memory.
#[derive(Debug)]
pub struct ExportFolder {
    /// The folder.
    pub dir: PathBuf,
    /// The architecture (from the ONNX files' `gatekit.task_set`).
    pub model: ModelSpec,
    /// The gate the ONNX files were exported with: `binary`, or `ste` (whose trained function
    /// is exactly the binarized one); a soft export is refused by [`ExportFolder::read`], since
    /// the server answers with the 1-bit masks. `binary` for a run served directly.
    pub gate: String,
    /// The parameters, in network order.
    pub params: Vec<ParamInfo>,
    /// `W`, float32, one flat vector per parameter.
    pub weights: Vec<Vec<f32>>,
    /// SHA-256 of `W` (names, shapes and float32 values).
    pub fingerprint: String,
    /// The tasks in the folder, in task-set order.
    pub tasks: Vec<TaskView>,
    /// What reading it noticed that the user should hear (a run's notes, tasks of a run never
    /// trained and so not served).
    pub notes: Vec<String>,
}

/// `masks.safetensors`' metadata (see `book/src/exporting.md`).
#[derive(Deserialize)]
struct MaskMeta {
    format: String,
    model: String,
    tasks: Vec<String>,
    shapes: BTreeMap<String, Vec<usize>>,
    /// Task-IL: each task's head (absent when every task answers with every unit).
    #[serde(default)]
    heads: Option<BTreeMap<String, Vec<usize>>>,
}

pub(super) fn bad(path: &Path, message: impl Into<String>) -> ServeError {
    ServeError::Gatekit(crate::error::Error::Data {
        path: path.into(),
        message: message.into(),
    })
}

fn onnx_metadata(model: &crate::export::proto::ModelProto, key: &str) -> Option<String> {
    model
        .metadata_props
        .iter()
        .find(|p| p.key == key)
        .map(|p| p.value.clone())
}

/// Whether a task answers classes (argmax) or values, from what its kind declares.
fn objective_of(entry: &TaskEntry, outputs: usize) -> Objective {
    match entry.kind.as_str() {
        "sinusoid" | "linear" => Objective::Regression,
        "tensors" => match entry
            .params
            .to_table()
            .get("objective")
            .and_then(|v| v.as_str())
        {
            Some("regression") => Objective::Regression,
            Some("classification") => Objective::Classification,
            // `auto` follows the labels' dtype, which only the data knows: several outputs
            // are classes.
            _ if outputs > 1 => Objective::Classification,
            _ => Objective::Regression,
        },
        _ => Objective::Classification,
    }
}

/// The `tensors` kind's pinned standardisation statistics, if it standardises.
pub(super) fn standardize_of(entry: &TaskEntry) -> Option<(Vec<f32>, Vec<f32>)> {
    if entry.kind != "tensors" {
        return None;
    }
    let table = entry.params.to_table();
    if table.get("standardize").and_then(|v| v.as_bool()) != Some(true) {
        return None;
    }
    let list = |key: &str| -> Vec<f32> {
        table
            .get(key)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_float().or_else(|| x.as_integer().map(|i| i as f64)))
                    .map(|x| x as f32)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (mean, std) = (list("mean"), list("std"));
    (!mean.is_empty() && mean.len() == std.len()).then_some((mean, std))
}

/// SHA-256 over the parameters' names, shapes and float32 bytes.
pub(super) fn fingerprint(params: &[ParamInfo], weights: &[Vec<f32>]) -> String {
    let mut h = Sha256::new();
    for (p, w) in params.iter().zip(weights) {
        h.update(p.name.as_bytes());
        for d in &p.shape {
            h.update((*d as u64).to_le_bytes());
        }
        for v in w {
            h.update(v.to_le_bytes());
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl ExportFolder {
    /// Reads an export folder written by `gtk export`; every error names the file and what is
    /// wrong with it.
    pub fn read(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(bad(
                dir,
                "is not a folder; pass a folder written by `gtk export` (weights.safetensors, masks.safetensors, *.onnx)",
            ));
        }
        let masks_path = dir.join("masks.safetensors");
        let mask_bytes = std::fs::read(&masks_path)
            .map_err(|e| ServeError::Gatekit(crate::error::Error::io(&masks_path, e)))?;
        let meta = mask_meta(&masks_path, &mask_bytes)?;
        let (set, gate, onnx_path) = export_task_set(dir, &masks_path, &meta)?;
        let mut rng = crate::rng::Rng::new(0);
        let net = Network::new(
            &set.model,
            WeightInit::Zeros,
            &mut rng,
            DType::F32,
            &Device::Cpu,
        )
        .map_err(|e| bad(&onnx_path, format!("its model cannot be built: {e}")))?;
        let params = checked_params(&net, &meta, &set, &masks_path)?;
        let weights = read_weights(dir, &params)?;
        let fingerprint = fingerprint(&params, &weights);

        // Masks and layer state per task.
        let masks_st = safetensors::SafeTensors::deserialize(&mask_bytes)
            .map_err(|e| bad(&masks_path, format!("not a safetensors file: {e}")))?;
        let state_specs = net.state_specs();
        let state: HashMap<String, Tensor> = if state_specs.is_empty() {
            HashMap::new()
        } else {
            let path = dir.join("state.safetensors");
            candle_core::safetensors::load(&path, &Device::Cpu).map_err(|e| {
                bad(
                    &path,
                    format!(
                        "cannot be read (model `{}` has batch norm): {e}",
                        set.model.name
                    ),
                )
            })?
        };
        let outputs = set
            .model
            .output_shape()
            .map(|s| s.iter().product())
            .unwrap_or(1);
        let mut tasks = Vec::new();
        for name in &meta.tasks {
            let entry = set.tasks.iter().find(|e| &e.name == name).ok_or_else(|| {
                bad(
                    &masks_path,
                    format!("holds task `{name}`, which its task set does not name"),
                )
            })?;
            let (masks, density) = task_masks(&masks_st, &masks_path, &params, name)?;
            let task_state = state_specs
                .iter()
                .map(|(sname, _)| {
                    let key = ParamKey::TaskState {
                        param: sname,
                        task: name,
                    }
                    .to_string();
                    let t = state.get(&key).ok_or_else(|| {
                        bad(
                            &dir.join("state.safetensors"),
                            format!("has no tensor `{key}`"),
                        )
                    })?;
                    Ok(t.to_dtype(DType::F32)?)
                })
                .collect::<Result<Vec<_>>>()?;
            let head = head_of(&meta, name, outputs, &masks_path)?;
            tasks.push(TaskView {
                head,
                name: name.clone(),
                kind: entry.kind.clone(),
                objective: objective_of(entry, outputs),
                standardize: standardize_of(entry),
                masks,
                state: task_state,
                density,
                source: dir.to_path_buf(),
            });
        }
        Ok(ExportFolder {
            dir: dir.to_path_buf(),
            model: set.model,
            gate,
            params,
            weights,
            fingerprint,
            tasks,
            notes: Vec::new(),
        })
    }
}

/// Task `name`'s head from the masks' metadata: unit indices below `outputs`, at least one.
fn head_of(
    meta: &MaskMeta,
    name: &str,
    outputs: usize,
    masks_path: &Path,
) -> Result<Option<Vec<usize>>> {
    let Some(heads) = &meta.heads else {
        return Ok(None);
    };
    let units = heads.get(name).ok_or_else(|| {
        bad(
            masks_path,
            format!("`heads` in its metadata has no entry for task `{name}`"),
        )
    })?;
    if units.is_empty() || units.iter().any(|&u| u >= outputs) {
        return Err(bad(
            masks_path,
            format!(
                "task `{name}`'s head {units:?} is not a non-empty list of output units below \
                 {outputs}"
            ),
        ));
    }
    Ok(Some(units.clone()))
}

/// The `gatekit` metadata of `masks.safetensors` (format, model, tasks, shapes).
fn mask_meta(masks_path: &Path, mask_bytes: &[u8]) -> Result<MaskMeta> {
    let (_, st_meta) = safetensors::SafeTensors::read_metadata(mask_bytes)
        .map_err(|e| bad(masks_path, format!("not a safetensors file: {e}")))?;
    let meta_text = st_meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("gatekit"))
        .ok_or_else(|| {
            bad(
                masks_path,
                "has no `gatekit` metadata: not written by gtk export",
            )
        })?;
    let meta: MaskMeta = serde_json::from_str(meta_text)
        .map_err(|e| bad(masks_path, format!("bad `gatekit` metadata: {e}")))?;
    if meta.format != "gatekit-masks/1" {
        return Err(bad(
            masks_path,
            format!(
                "has format `{}`; this gtk reads gatekit-masks/1",
                meta.format
            ),
        ));
    }
    Ok(meta)
}

/// The task set (model, task kinds, pinned statistics) from an ONNX file's metadata, the gate
/// it names and the file; its model must be the masks'.
fn export_task_set(
    dir: &Path,
    masks_path: &Path,
    meta: &MaskMeta,
) -> Result<(TaskSet, String, PathBuf)> {
    let onnx_path = [dir.join("all_tasks.onnx")]
        .into_iter()
        .chain(meta.tasks.iter().map(|t| dir.join(format!("{t}.onnx"))))
        .find(|p| p.is_file())
        .ok_or_else(|| bad(dir, "holds no all_tasks.onnx nor any <task>.onnx"))?;
    let onnx = read_model(&onnx_path)?;
    let set_text = onnx_metadata(&onnx, "gatekit.task_set")
        .ok_or_else(|| bad(&onnx_path, "has no gatekit.task_set metadata"))?;
    let gate = onnx_metadata(&onnx, "gatekit.gate").unwrap_or_else(|| "unknown".into());
    check_gate(&onnx_path, &gate)?;
    let set = TaskSet::parse_with(&set_text, &onnx_path, &|_: &str| {
        Err(crate::error::Error::Data {
            path: onnx_path.clone(),
            message: "task set without inline model".into(),
        })
    })?;
    if set.model.name != meta.model {
        return Err(bad(
            masks_path,
            format!(
                "is for model `{}` but {} holds model `{}`",
                meta.model,
                onnx_path.display(),
                set.model.name
            ),
        ));
    }
    Ok((set, gate, onnx_path))
}

/// The model's parameters, each with the shape the masks' metadata gives it.
fn checked_params(
    net: &Network,
    meta: &MaskMeta,
    set: &TaskSet,
    masks_path: &Path,
) -> Result<Vec<ParamInfo>> {
    let params: Vec<ParamInfo> = net
        .param_shapes()
        .into_iter()
        .map(|(name, s)| ParamInfo {
            name,
            len: s.elem_count(),
            shape: s.dims().to_vec(),
        })
        .collect();
    for p in &params {
        match meta.shapes.get(&p.name) {
            Some(s) if *s == p.shape => {}
            other => {
                return Err(bad(
                    masks_path,
                    format!(
                        "gives `{}` shape {other:?}; model `{}` expects {:?}",
                        p.name, set.model.name, p.shape
                    ),
                ));
            }
        }
    }
    Ok(params)
}

/// W from `weights.safetensors`, float32, one vector per parameter of `params`.
fn read_weights(dir: &Path, params: &[ParamInfo]) -> Result<Vec<Vec<f32>>> {
    let weights_path = dir.join("weights.safetensors");
    let w = candle_core::safetensors::load(&weights_path, &Device::Cpu)
        .map_err(|e| bad(&weights_path, format!("cannot be read: {e}")))?;
    params
        .iter()
        .map(|p| {
            let t = w
                .get(&p.name)
                .ok_or_else(|| bad(&weights_path, format!("has no tensor `{}`", p.name)))?;
            if t.dims() != p.shape.as_slice() {
                return Err(bad(
                    &weights_path,
                    format!(
                        "`{}` has shape {:?}, expected {:?}",
                        p.name,
                        t.dims(),
                        p.shape
                    ),
                ));
            }
            Ok(t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
        })
        .collect()
}

/// Task `name`'s packed mask bits per parameter, and the share of bits set.
fn task_masks(
    masks_st: &safetensors::SafeTensors,
    masks_path: &Path,
    params: &[ParamInfo],
    name: &str,
) -> Result<(Vec<Vec<u8>>, f64)> {
    let mut masks = Vec::with_capacity(params.len());
    let mut kept = 0u64;
    let mut total = 0u64;
    for p in params {
        let key = ParamKey::Mask {
            param: &p.name,
            task: name,
        }
        .to_string();
        let view = masks_st
            .tensor(&key)
            .map_err(|_| bad(masks_path, format!("has no tensor `{key}`")))?;
        let data = view.data();
        if view.dtype() != safetensors::Dtype::U8 || data.len() != p.len.div_ceil(8) {
            return Err(bad(
                masks_path,
                format!(
                    "`{key}` holds {} {:?} values; expected {} U8 bytes ({} bits packed)",
                    data.len(),
                    view.dtype(),
                    p.len.div_ceil(8),
                    p.len
                ),
            ));
        }
        kept += data.iter().map(|b| b.count_ones() as u64).sum::<u64>();
        total += p.len as u64;
        masks.push(data.to_vec());
    }
    Ok((masks, kept as f64 / total.max(1) as f64))
}

/// Refuses an export whose ONNX files hold another function than the 1-bit masks the server
/// computes: serving it would answer other numbers than the files the user exported, without a
/// word. `binary` is `W ⊙ 1[M > 0]`; `ste`'s trained gate is exactly that in the forward pass.
fn check_gate(onnx_path: &Path, gate: &str) -> Result<()> {
    match gate {
        "binary" | "ste" => Ok(()),
        "binary-rescaled" => Err(bad(
            onnx_path,
            "was exported with --rescale (W ⊙ 1[M > 0] times a per-parameter scale that masks.safetensors does not hold); gtk serve answers W ⊙ 1[M > 0]: export with --binarize and without --rescale",
        )),
        other => Err(bad(
            onnx_path,
            format!(
                "was exported with the trained gate `{other}` (W ⊙ g(M), soft); gtk serve answers with the 1-bit masks W ⊙ 1[M > 0], which differ from these ONNX files: export with `gtk export RUN --binarize`, or serve the run itself (`gtk serve RUN`, masks binarized)"
            ),
        )),
    }
}

/// What `gtk serve` holds: `W` once, the tasks, and the cache of effective networks.
#[derive(Debug)]
pub struct ModelStore {
    model: ModelSpec,
    gate: String,
    params: Vec<ParamInfo>,
    weights: Vec<Vec<f32>>,
    fingerprint: String,
    tasks: RwLock<BTreeMap<String, Arc<TaskView>>>,
    cache: Mutex<EffectiveCache>,
}

impl ModelStore {
    /// The store of an export folder, caching effective networks up to `cache_bytes`.
    pub fn new(folder: ExportFolder, cache_bytes: usize) -> Self {
        let tasks = folder
            .tasks
            .into_iter()
            .map(|t| (t.name.clone(), Arc::new(t)))
            .collect();
        let store = ModelStore {
            model: folder.model,
            gate: folder.gate,
            params: folder.params,
            weights: folder.weights,
            fingerprint: folder.fingerprint,
            tasks: RwLock::new(tasks),
            cache: Mutex::new(EffectiveCache::new(cache_bytes)),
        };
        super::heap::release_freed();
        store
    }

    /// The architecture.
    pub fn model(&self) -> &ModelSpec {
        &self.model
    }

    /// The gate the export's ONNX files hold.
    pub fn gate(&self) -> &str {
        &self.gate
    }

    /// SHA-256 of `W`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Scalar parameters in `W`.
    pub fn param_count(&self) -> usize {
        self.params.iter().map(|p| p.len).sum()
    }

    /// Bytes `W` takes (float32).
    pub fn weight_bytes(&self) -> usize {
        4 * self.param_count()
    }

    /// The loaded tasks' names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.read_tasks().keys().cloned().collect()
    }

    /// The loaded tasks.
    pub fn tasks(&self) -> Vec<Arc<TaskView>> {
        self.read_tasks().values().cloned().collect()
    }

    /// Bytes all loaded masks take.
    pub fn mask_bytes(&self) -> usize {
        self.read_tasks().values().map(|t| t.mask_bytes()).sum()
    }

    /// Bytes the cached effective networks take.
    pub fn cache_bytes(&self) -> usize {
        self.lock_cache().bytes()
    }

    fn read_tasks(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<TaskView>>> {
        // A poisoned lock only means a panic elsewhere; the map itself is always consistent.
        self.tasks.read().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, EffectiveCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A loaded task by name (checked against the loaded names only: no file is touched).
    pub fn task(&self, name: &str) -> Result<Arc<TaskView>> {
        let tasks = self.read_tasks();
        tasks
            .get(name)
            .cloned()
            .ok_or_else(|| ServeError::UnknownTask {
                task: name.chars().take(80).collect(),
                known: tasks.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// The model's input shape (one example).
    pub fn input_shape(&self) -> Vec<usize> {
        self.model.input.clone()
    }

    /// Values one example's output has.
    pub fn outputs(&self) -> usize {
        self.model
            .output_shape()
            .map(|s| s.iter().product())
            .unwrap_or(1)
    }

    /// Adds the tasks of another export of the same `W` and model; refuses a different `W`
    /// (fingerprint), another architecture, or a name already loaded. Returns the added names.
    pub fn add(&self, folder: ExportFolder) -> Result<Vec<String>> {
        self.check_same_w(&folder)?;
        let mut tasks = self.tasks.write().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = folder.tasks.iter().find(|t| tasks.contains_key(&t.name)) {
            return Err(ServeError::Conflict(format!(
                "task `{}` is already loaded; remove it first (DELETE /v1/admin/tasks/{})",
                t.name, t.name
            )));
        }
        let names: Vec<String> = folder.tasks.iter().map(|t| t.name.clone()).collect();
        for t in folder.tasks {
            tasks.insert(t.name.clone(), Arc::new(t));
        }
        super::heap::release_freed();
        Ok(names)
    }

    /// Adds the tasks of another export of the same `W` that are not loaded yet (what the
    /// folder watch does: an adapted run's export holds the run's old tasks too). Returns the
    /// names added and the names loaded already with other mask bits, which are left as they
    /// are; refuses a different `W` or architecture like [`ModelStore::add`].
    pub fn add_new(&self, folder: ExportFolder) -> Result<(Vec<String>, Vec<String>)> {
        self.check_same_w(&folder)?;
        let mut tasks = self.tasks.write().unwrap_or_else(|e| e.into_inner());
        let (mut added, mut kept) = (Vec::new(), Vec::new());
        for t in folder.tasks {
            match tasks.get(&t.name) {
                Some(loaded) if loaded.masks != t.masks => kept.push(t.name.clone()),
                Some(_) => {}
                None => {
                    added.push(t.name.clone());
                    tasks.insert(t.name.clone(), Arc::new(t));
                }
            }
        }
        super::heap::release_freed();
        Ok((added, kept))
    }

    /// Refuses `folder` unless it holds the served `W` (fingerprint) and architecture.
    fn check_same_w(&self, folder: &ExportFolder) -> Result<()> {
        if folder.fingerprint != self.fingerprint {
            return Err(ServeError::Conflict(format!(
                "{}: its W fingerprint is {}, the served W is {}: its masks were learned for other weights; export a run (or gtk adapt output) on the served W",
                folder.dir.display(),
                &folder.fingerprint[..16],
                &self.fingerprint[..16]
            )));
        }
        if folder.params != self.params {
            return Err(ServeError::Conflict(format!(
                "{}: model `{}` has other parameters than the served model `{}`",
                folder.dir.display(),
                folder.model.name,
                self.model.name
            )));
        }
        Ok(())
    }

    /// Removes a task (its cached network too); requests already batched still finish.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.task(name)?;
        self.tasks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        self.lock_cache().remove(name);
        Ok(())
    }

    /// The effective network `W ⊙ 1[M_t > 0]` of `task`, from the cache or built now.
    pub fn effective(&self, task: &TaskView) -> Result<Arc<Effective>> {
        if let Some(e) = self.lock_cache().get(&task.name, &task.source) {
            return Ok(e);
        }
        let vars = self
            .params
            .iter()
            .zip(&self.weights)
            .zip(&task.masks)
            .map(|((p, w), bits)| {
                let values: Vec<f32> = w
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        if bits[i / 8] & (0x80 >> (i % 8)) != 0 {
                            v
                        } else {
                            0.0
                        }
                    })
                    .collect();
                Var::from_tensor(&Tensor::from_vec(values, p.shape.as_slice(), &Device::Cpu)?)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let net = Network::from_params(&self.model, vars)?;
        let e = Arc::new(Effective {
            net,
            source: task.source.clone(),
            bytes: self.weight_bytes(),
        });
        self.lock_cache().insert(&task.name, e.clone());
        Ok(e)
    }

    /// Values one example's answer from `task` has: its head's units, or every output.
    pub fn task_outputs(&self, task: &TaskView) -> usize {
        task.head.as_ref().map_or(self.outputs(), Vec::len)
    }

    /// Runs `task`'s network on `x` (`[batch, ..input]`, already prepared);
    /// `[batch, task_outputs]`: a Task-IL task answers with its head's units alone.
    pub fn forward(&self, task: &TaskView, x: &Tensor) -> Result<Tensor> {
        let e = self.effective(task)?;
        let y = e
            .net
            .forward_with_state(x, None, NetState::Eval(&task.state))?;
        let batch = x.dims().first().copied().unwrap_or(0);
        let y = y.reshape((batch, self.outputs()))?;
        match &task.head {
            None => Ok(y),
            Some(units) => {
                let index: Vec<u32> = units.iter().map(|&u| u as u32).collect();
                let index = Tensor::from_vec(index, units.len(), &Device::Cpu)?;
                Ok(y.index_select(&index, 1)?)
            }
        }
    }
}
