//! Reading a run folder: the committed state only, every file checked, nothing written.
//!
//! A reader may run while a trainer writes. It reads `state.json` (replaced atomically), then
//! the files that commit names; if the trainer committed again and removed the old checkpoint
//! in between, the reader starts over from the new `state.json`. Of `metrics.jsonl` it reads
//! only the committed prefix, so it never sees a record logged after the commit, nor a line
//! torn by a crash or a full disk.

use super::commit::{Commit, sha256_hex};
use super::files;
use crate::error::{Error, Result};
use serde::{Serialize, de::DeserializeOwned};
use std::path::{Path, PathBuf};

/// That `dir` is a folder: "no such run folder" only when nothing is there, and the OS's own
/// reason otherwise (a symlink loop is not a missing folder).
pub(crate) fn check_run_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::Run {
            path: dir.into(),
            message: "is a file, not a run folder (runs are folders created by `gtk train`)".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Run {
            path: dir.into(),
            message: "no such run folder (runs are created by `gtk train`)".into(),
        }),
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// How often a reader starts over when the checkpoint it was pointed to is replaced under it.
const ATTEMPTS: usize = 20;

/// A run folder's committed state, verified.
#[derive(Debug, Clone)]
pub struct Snapshot<S> {
    /// The run folder.
    pub dir: PathBuf,
    /// `config.toml`, whose SHA-256 matches the commit's.
    pub config_text: String,
    /// The commit (`state.json`).
    pub commit: Commit<S>,
    /// The committed checkpoint's bytes (checksum verified), or none at step 0.
    pub checkpoint: Option<Vec<u8>>,
    /// The committed part of `metrics.jsonl`.
    pub metrics: String,
}

impl<S: Serialize + DeserializeOwned> Snapshot<S> {
    /// Reads and verifies the run folder `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let mut last_missing = None;
        for attempt in 0..ATTEMPTS {
            match Self::try_open(dir)? {
                Ok(snapshot) => return Ok(snapshot),
                Err(missing) => {
                    last_missing = Some(missing);
                    std::thread::sleep(std::time::Duration::from_millis(5 << attempt.min(5)));
                }
            }
        }
        let path = last_missing.unwrap_or_else(|| dir.join(files::STATE));
        Err(Error::Run {
            path,
            message: "is named by state.json but missing (a checkpoint must never be removed by hand; restore it from a backup)".into(),
        })
    }

    /// `Ok(Err(path))` when the checkpoint named by the commit is gone (replaced by a newer
    /// commit while we read, or removed): the caller retries.
    fn try_open(dir: &Path) -> Result<std::result::Result<Self, PathBuf>> {
        check_run_dir(dir)?;
        let state_path = dir.join(files::STATE);
        let state_text = match std::fs::read(&state_path) {
            Ok(b) => String::from_utf8(b).map_err(|_| Error::Run {
                path: state_path.clone(),
                message: "is not UTF-8 text: the file is damaged".into(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(missing_state(dir));
            }
            Err(e) => return Err(Error::io(&state_path, e)),
        };
        let commit: Commit<S> = Commit::parse(&state_text, &state_path)?;
        let config_path = dir.join(files::CONFIG);
        let config_bytes = std::fs::read(&config_path).map_err(|e| Error::Run {
            path: config_path.clone(),
            message: format!("cannot read the run's config: {e}"),
        })?;
        if sha256_hex(&config_bytes) != commit.config_sha256 {
            return Err(Error::Run {
                path: config_path,
                message: "was changed after the run's last commit (its SHA-256 differs from the one in state.json); restore the original, or train a new run with the new settings".into(),
            });
        }
        let config_text = String::from_utf8(config_bytes).map_err(|_| Error::Run {
            path: config_path.clone(),
            message: "is not UTF-8 text".into(),
        })?;
        let checkpoint = match &commit.checkpoint {
            None => None,
            Some(file) => {
                if !super::commit::is_checkpoint_name(&file.file) || file.file.contains(['/', '\\'])
                {
                    return Err(Error::Run {
                        path: state_path,
                        message: format!(
                            "names `{}` as its checkpoint, which is not a checkpoint file name",
                            file.file
                        ),
                    });
                }
                let path = dir.join(&file.file);
                let bytes = match std::fs::read(&path) {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Err(path)),
                    Err(e) => return Err(Error::io(&path, e)),
                };
                if bytes.len() as u64 != file.bytes || sha256_hex(&bytes) != file.sha256 {
                    return Err(Error::Checkpoint {
                        path,
                        message: format!(
                            "checksum mismatch ({} bytes, {} expected, SHA-256 differs from state.json's): the file is damaged",
                            bytes.len(),
                            file.bytes
                        ),
                        source: None,
                    });
                }
                Some(bytes)
            }
        };
        let metrics_path = dir.join(files::METRICS);
        let metrics = match std::fs::read(&metrics_path) {
            Ok(mut b) => {
                if (b.len() as u64) < commit.metrics_bytes {
                    return Err(Error::Run {
                        path: metrics_path,
                        message: format!(
                            "holds {} bytes but {} are committed: the log was cut; restore it from a backup",
                            b.len(),
                            commit.metrics_bytes
                        ),
                    });
                }
                b.truncate(commit.metrics_bytes as usize);
                String::from_utf8(b).map_err(|_| Error::Run {
                    path: metrics_path.clone(),
                    message: "the committed part is not UTF-8 text: the file is damaged".into(),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && commit.metrics_bytes == 0 => {
                String::new()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Run {
                    path: metrics_path,
                    message: format!(
                        "is missing, but state.json commits {} bytes of it: the run's log was removed; restore it from a backup",
                        commit.metrics_bytes
                    ),
                });
            }
            Err(e) => return Err(Error::io(&metrics_path, e)),
        };
        if !metrics.is_empty() && !metrics.ends_with('\n') {
            return Err(Error::Run {
                path: metrics_path,
                message:
                    "the committed part does not end with a complete line: the file is damaged"
                        .into(),
            });
        }
        Ok(Ok(Snapshot {
            dir: dir.into(),
            config_text,
            commit,
            checkpoint,
            metrics,
        }))
    }
}

/// Why a folder without `state.json` is not a run, in the words that help.
fn missing_state(dir: &Path) -> Error {
    let state = dir.join(files::STATE);
    let empty = std::fs::read_dir(dir)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    let message = if empty {
        "is missing and the folder is empty: `gtk train` was stopped while creating it; remove the folder and train again".to_string()
    } else if dir.join("sweep.json").is_file() {
        "is missing: this is a sweep folder (gtk train --seeds), not a run; give one of its seed-N runs".into()
    } else if dir.join(files::CONFIG).is_file() {
        "is missing: the run was never committed (or the file was removed); train it again".into()
    } else {
        "is missing: this is not a gatekit run folder".into()
    };
    Error::Run {
        path: state,
        message,
    }
}
