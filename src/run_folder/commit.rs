//! `state.json`: the commit record of a run folder. It names the one checkpoint file that
//! belongs to the committed step, with its SHA-256 and size, the SHA-256 of `config.toml`, and
//! how many bytes of `metrics.jsonl` are committed. Replacing it (one atomic rename) is the
//! commit: everything it points to was written and flushed before.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The `format` value of a commit written by this version.
pub const FORMAT: &str = "gatekit-run/2";

/// One commit of a run folder; `S` is the trainer's own state (sampler, strategies, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commit<S> {
    /// Always [`FORMAT`].
    pub format: String,
    /// Training steps done at this commit.
    pub step: usize,
    /// The checkpoint file of this step (inside the run folder), or none at step 0: the
    /// initial weights follow from `config.toml` and its seed.
    pub checkpoint: Option<FileRef>,
    /// SHA-256 of `config.toml` (hex): the config the checkpoint was trained with.
    pub config_sha256: String,
    /// Bytes of `metrics.jsonl` that belong to this commit; anything after them was logged
    /// after the commit and is dropped by the next writer.
    pub metrics_bytes: u64,
    /// Settings changed on resume (`gtk train --resume RUN --lr X`), kept by later commits.
    #[serde(default, skip_serializing_if = "Overrides::is_empty")]
    pub overrides: Overrides,
    /// The trainer's state at this step.
    pub state: S,
}

/// A file of the run folder with its checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    /// File name inside the run folder.
    pub file: String,
    /// SHA-256 of its bytes (hex).
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Run settings replaced on resume, e.g. a smaller learning rate after a divergence.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// Replaces `run.lr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Replaces `run.mask_lr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_lr: Option<f64>,
}

impl Overrides {
    /// No setting replaced.
    pub fn is_empty(&self) -> bool {
        self.lr.is_none() && self.mask_lr.is_none()
    }

    /// `self` with every setting of `newer` that is set.
    pub fn merged(&self, newer: &Overrides) -> Overrides {
        Overrides {
            lr: newer.lr.or(self.lr),
            mask_lr: newer.mask_lr.or(self.mask_lr),
        }
    }
}

/// SHA-256 of `bytes` as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The checkpoint file name for `step` and content hash `sha256`: content-addressed, so a new
/// checkpoint never overwrites the committed one, and equal contents get equal names (two
/// identical runs hold identical files).
pub fn checkpoint_name(step: usize, sha256: &str) -> String {
    format!(
        "checkpoint-{step:08}-{}.safetensors",
        &sha256[..12.min(sha256.len())]
    )
}

/// Whether `name` has the form of [`checkpoint_name`].
pub fn is_checkpoint_name(name: &str) -> bool {
    name.starts_with("checkpoint-") && name.ends_with(".safetensors")
}

impl<S: Serialize + DeserializeOwned> Commit<S> {
    /// The commit as `state.json` text (pretty, stable key order).
    pub fn to_json(&self) -> Result<String> {
        let mut s = serde_json::to_string_pretty(self)
            .map_err(|e| Error::encode("state.json", "the commit", e))?;
        s.push('\n');
        Ok(s)
    }

    /// Parses `state.json` text; `path` is for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        #[derive(Deserialize)]
        struct Head {
            format: Option<String>,
        }
        let head: Head = serde_json::from_str(text)
            .map_err(|e| Error::json(path, "not a valid commit record", e))?;
        match head.format.as_deref() {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(Error::Run {
                    path: path.into(),
                    message: format!(
                        "format `{other}` is not supported (this gatekit reads `{FORMAT}`)"
                    ),
                });
            }
            None => {
                return Err(Error::Run {
                    path: path.into(),
                    message: format!(
                        "has no `format` field: written by a gatekit older than run format `{FORMAT}`; train the run again with this version"
                    ),
                });
            }
        }
        serde_json::from_str(text).map_err(|e| Error::json(path, "not a valid commit record", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_names_are_content_addressed() {
        let a = checkpoint_name(500, &sha256_hex(b"a"));
        let b = checkpoint_name(500, &sha256_hex(b"b"));
        assert_ne!(a, b);
        assert_eq!(a, checkpoint_name(500, &sha256_hex(b"a")));
        assert_eq!(a, "checkpoint-00000500-ca978112ca1b.safetensors");
        assert!(is_checkpoint_name(&a));
    }

    #[test]
    fn commit_round_trips_and_refuses_old_formats() {
        let c = Commit {
            format: FORMAT.into(),
            step: 3,
            checkpoint: None,
            config_sha256: sha256_hex(b""),
            metrics_bytes: 10,
            overrides: Overrides::default(),
            state: vec![1u32, 2],
        };
        let text = c.to_json().unwrap();
        assert!(!text.contains("overrides"));
        let back: Commit<Vec<u32>> = Commit::parse(&text, Path::new("state.json")).unwrap();
        assert_eq!(back, c);
        let old = r#"{"step": 5, "sampler": {}}"#;
        let err = Commit::<Vec<u32>>::parse(old, Path::new("state.json")).unwrap_err();
        assert!(err.to_string().contains("older than run format"), "{err}");
    }
}
