//! A run's committed checkpoint: encoded with one metadata key (so equal runs give equal
//! bytes), and read through a verified [`Snapshot`](crate::run_folder::Snapshot) by resuming,
//! `gtk eval`, `gtk export`, `gtk report`'s mask figures and `gtk adapt` alike.

use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The `format` recorded in a checkpoint's metadata.
pub const CHECKPOINT_FORMAT: &str = "gatekit-checkpoint/2";

/// The single metadata entry of a checkpoint (key `gatekit`, a JSON string): one key because
/// safetensors stores metadata as a hash map, whose order, and so the file's bytes, would
/// otherwise change from run to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// [`CHECKPOINT_FORMAT`].
    pub format: String,
    /// Steps done.
    pub step: usize,
}

/// Encodes `tensors` (any order) as checkpoint bytes for `step`.
pub fn encode(tensors: &[(String, Tensor)], step: usize, path: &Path) -> Result<Vec<u8>> {
    let meta = CheckpointMeta {
        format: CHECKPOINT_FORMAT.into(),
        step,
    };
    let json = serde_json::to_string(&meta)
        .map_err(|e| Error::encode(path, "the checkpoint metadata", e))?;
    let metadata = HashMap::from([("gatekit".to_string(), json)]);
    let sorted: BTreeMap<&str, &Tensor> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    safetensors::serialize(sorted, Some(metadata))
        .map_err(|e| Error::encode(path, "the checkpoint tensors", e))
}

/// The first tensor among `tensors` holding a NaN or an infinity, with the offending value.
pub fn first_non_finite(tensors: &[(String, Tensor)]) -> Result<Option<(String, f64)>> {
    for (name, t) in tensors {
        if !t.dtype().is_float() {
            continue;
        }
        let values = t
            .flatten_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_vec1::<f64>()?;
        if let Some(v) = values.iter().find(|v| !v.is_finite()) {
            return Ok(Some((name.clone(), *v)));
        }
    }
    Ok(None)
}

/// The bytes of a run folder's committed checkpoint and where they came from.
#[derive(Debug, Clone)]
pub struct CheckpointFile {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl CheckpointFile {
    /// Checkpoint bytes read (and checksum-verified) from `path`.
    pub fn new(path: PathBuf, bytes: Vec<u8>) -> Self {
        CheckpointFile { path, bytes }
    }

    /// The committed checkpoint of the run folder `run_dir` (none at step 0).
    pub fn read(run_dir: &Path) -> Result<Option<Self>> {
        let snapshot = super::state::RunSnapshot::open(run_dir)?;
        Ok(Self::of(&snapshot))
    }

    /// The checkpoint of a snapshot (none at step 0).
    pub fn of(snapshot: &super::state::RunSnapshot) -> Option<Self> {
        let file = snapshot.commit.checkpoint.as_ref()?;
        let bytes = snapshot.checkpoint.clone()?;
        Some(CheckpointFile::new(snapshot.dir.join(&file.file), bytes))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw safetensors bytes (for zero-copy views).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// A "corrupt checkpoint" error naming this file.
    pub fn corrupt(&self, message: impl Into<String>) -> Error {
        Error::Checkpoint {
            path: self.path.clone(),
            message: message.into(),
            source: None,
        }
    }

    /// A "corrupt checkpoint" error naming this file, `what` failed and the reader's error as
    /// its source.
    pub fn unreadable(
        &self,
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Checkpoint {
            path: self.path.clone(),
            message: what.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The header's metadata: format and step.
    pub fn meta(&self) -> Result<CheckpointMeta> {
        let (_, meta) = safetensors::SafeTensors::read_metadata(&self.bytes)
            .map_err(|e| self.unreadable("unreadable safetensors header", e))?;
        let json = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("gatekit"))
            .ok_or_else(|| self.corrupt("no `gatekit` metadata entry"))?;
        let meta: CheckpointMeta =
            serde_json::from_str(json).map_err(|e| self.unreadable("bad `gatekit` metadata", e))?;
        if meta.format != CHECKPOINT_FORMAT {
            return Err(self.corrupt(format!(
                "format `{}`, expected `{CHECKPOINT_FORMAT}`",
                meta.format
            )));
        }
        Ok(meta)
    }

    /// Every tensor, on `device`; refuses NaN and infinities (a commit never holds them, so
    /// they mean damage), naming the tensor.
    pub fn tensors(&self, device: &Device) -> Result<HashMap<String, Tensor>> {
        let map = candle_core::safetensors::load_buffer(&self.bytes, device)
            .map_err(|e| self.unreadable("unreadable tensors", e))?;
        let mut list: Vec<(String, Tensor)> = map.into_iter().collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some((name, v)) = first_non_finite(&list)? {
            return Err(self.corrupt(format!(
                "tensor `{name}` holds {v}: a checkpoint must hold finite values only"
            )));
        }
        Ok(list.into_iter().collect())
    }
}
