//! A run's `checkpoint.safetensors` read into memory once, with every error naming the file:
//! resuming, `gtk report`'s mask figures and `gtk adapt` all read it through this.

use super::trainer::files;
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The bytes of a run folder's checkpoint and where they came from.
#[derive(Debug, Clone)]
pub struct CheckpointFile {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl CheckpointFile {
    /// Reads `run_dir/checkpoint.safetensors`.
    pub fn read(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(files::CHECKPOINT);
        let bytes = std::fs::read(&path).map_err(|e| Error::Run {
            path: path.clone(),
            message: format!("cannot read the checkpoint: {e}"),
        })?;
        Ok(CheckpointFile { path, bytes })
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
        }
    }

    /// The header's free-form metadata (`format`, `step`).
    pub fn metadata(&self) -> Result<HashMap<String, String>> {
        let (_, meta) = safetensors::SafeTensors::read_metadata(&self.bytes)
            .map_err(|e| self.corrupt(e.to_string()))?;
        Ok(meta.metadata().clone().unwrap_or_default())
    }

    /// Every tensor, on `device`.
    pub fn tensors(&self, device: &Device) -> Result<HashMap<String, Tensor>> {
        candle_core::safetensors::load_buffer(&self.bytes, device)
            .map_err(|e| self.corrupt(e.to_string()))
    }
}
