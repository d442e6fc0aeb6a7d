//! The one writer of a run folder: creates it, appends to its log and commits its state.
//!
//! A commit writes, in this order: `metrics.jsonl` flushed; the new checkpoint under a new,
//! content-addressed name (temp file, fsync, rename, fsync of the folder); then `state.json`
//! the same way — that rename is the commit; last, the superseded checkpoint is removed. A
//! crash before the rename of `state.json` leaves the previous commit whole (the new
//! checkpoint is an orphan that the next writer removes); a crash after it leaves the new one.

use super::commit::{
    Commit, FORMAT, FileRef, Overrides, checkpoint_name, is_checkpoint_name, sha256_hex,
};
use super::files;
use super::fsio;
use super::lock::WriterLock;
use super::snapshot::Snapshot;
use crate::error::{Error, Result};
use serde::{Serialize, de::DeserializeOwned};
use std::path::{Path, PathBuf};

/// The writer of one run folder (holds its lock).
#[derive(Debug)]
pub struct RunWriter<S> {
    dir: PathBuf,
    _lock: WriterLock,
    committed: Commit<S>,
    metrics_len: u64,
}

impl<S: Serialize + DeserializeOwned + Clone> RunWriter<S> {
    /// Creates the run folder `dir` (which must not exist) holding `config_text` and the
    /// step-0 commit of `state`. The folder is claimed with one `mkdir` (so two trainers given
    /// the same name cannot both get it) and filled in a temp folder that is renamed over it,
    /// so it is never seen half-made.
    pub fn create(dir: &Path, config_text: &str, state: S) -> Result<Self> {
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        remove_stale_temp_folders(parent);
        let empty = |d: &Path| std::fs::read_dir(d).is_ok_and(|mut e| e.next().is_none());
        // An empty folder of that name is claimed too (a creation killed before its end leaves
        // one); if another creator fills it first, the final rename fails and this one stops.
        let created = fsio::create_dir(dir);
        let made_here = created.is_ok();
        if let Err(e) = created
            && !(dir.is_dir() && empty(dir))
        {
            if dir.exists() {
                let by = WriterLock::holder(dir)
                    .map(|h| format!(" and is being trained by {h}"))
                    .unwrap_or_default();
                return Err(Error::Run {
                    path: dir.into(),
                    message: format!(
                        "already exists{by}; choose another --name, or continue it with --resume"
                    ),
                });
            }
            return Err(e);
        }
        let tmp = fsio::temp_path(dir);
        let made = (|| -> Result<(WriterLock, Commit<S>)> {
            fsio::create_dir(&tmp)?;
            let lock = WriterLock::acquire(&tmp)?;
            fsio::write_atomic(&tmp.join(files::CONFIG), config_text.as_bytes())?;
            let commit = Commit {
                format: FORMAT.into(),
                step: 0,
                checkpoint: None,
                config_sha256: sha256_hex(config_text.as_bytes()),
                metrics_bytes: 0,
                overrides: Overrides::default(),
                state,
            };
            fsio::write_atomic(&tmp.join(files::STATE), commit.to_json()?.as_bytes())?;
            fsio::rename_dir(&tmp, dir).map_err(|e| Error::Run {
                path: dir.into(),
                message: format!(
                    "already exists (another `gtk train` created it at the same time: {e}); choose another --name"
                ),
            })?;
            Ok((lock, commit))
        })();
        match made {
            Ok((lock, committed)) => Ok(RunWriter {
                dir: dir.into(),
                _lock: lock,
                committed,
                metrics_len: 0,
            }),
            Err(e) => {
                // Both folders are ours: the claimed (still empty) one and the temp one.
                let _ = std::fs::remove_dir_all(&tmp);
                if made_here {
                    let _ = std::fs::remove_dir(dir);
                }
                Err(e)
            }
        }
    }

    /// Opens the run folder `dir` to continue it: takes the lock, reads and verifies the last
    /// commit, then removes what the commit does not cover — log lines after it, temp files
    /// and orphan checkpoints of a killed writer. Returns the writer, the snapshot, and one
    /// note per thing removed (for the user to see).
    pub fn open(dir: &Path) -> Result<(Self, Snapshot<S>, Vec<String>)> {
        super::snapshot::check_run_dir(dir)?;
        // Not a run (yet): say why without creating the lock file in it.
        if !dir.join(files::STATE).is_file() {
            Snapshot::<S>::open(dir)?;
        }
        let lock = WriterLock::acquire(dir)?;
        let snapshot = Snapshot::<S>::open(dir)?;
        let mut notes = Vec::new();
        let metrics = dir.join(files::METRICS);
        let committed_len = snapshot.commit.metrics_bytes;
        if let Ok(meta) = std::fs::metadata(&metrics)
            && meta.len() > committed_len
        {
            let tail = std::fs::read(&metrics)
                .map(|b| b[committed_len as usize..].to_vec())
                .unwrap_or_default();
            let torn = !tail.ends_with(b"\n");
            let lines = tail.iter().filter(|&&b| b == b'\n').count() + usize::from(torn);
            notes.push(format!(
                "{}: dropped {lines} line(s) logged after the last commit (step {}){}",
                metrics.display(),
                snapshot.commit.step,
                if torn {
                    ", the last of them torn (cut off mid-line)"
                } else {
                    ""
                }
            ));
            fsio::truncate(&metrics, committed_len)?;
        }
        let keep = snapshot.commit.checkpoint.as_ref().map(|f| f.file.clone());
        // tb/ and its runs (one folder per strategy) may hold a rebuild's `.partial-` files.
        let tb = dir.join(files::TB_DIR);
        let tb_runs = std::fs::read_dir(&tb)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path());
        let subs: Vec<std::path::PathBuf> = [dir.to_path_buf(), tb.clone()]
            .into_iter()
            .chain(tb_runs)
            .collect();
        for sub in subs {
            let Ok(entries) = std::fs::read_dir(&sub) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let orphan =
                    sub == dir && is_checkpoint_name(&name) && keep.as_ref() != Some(&name);
                if (fsio::is_temp_name(&name) || orphan || name.starts_with(".partial-"))
                    && entry.file_type().is_ok_and(|t| t.is_file())
                {
                    fsio::remove(&entry.path())?;
                    notes.push(format!(
                        "{}: removed, left by an interrupted write",
                        entry.path().display()
                    ));
                }
            }
        }
        let writer = RunWriter {
            dir: dir.into(),
            _lock: lock,
            committed: snapshot.commit.clone(),
            metrics_len: committed_len,
        };
        Ok((writer, snapshot, notes))
    }

    /// The run folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last commit.
    pub fn committed(&self) -> &Commit<S> {
        &self.committed
    }

    /// Appends `text` (whole lines) to `metrics.jsonl`; committed by the next [`Self::commit`].
    pub fn append_metrics(&mut self, text: &str) -> Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        fsio::append(&self.dir.join(files::METRICS), text.as_bytes())?;
        self.metrics_len += text.len() as u64;
        Ok(())
    }

    /// Commits `step`: the checkpoint bytes (none: the initial weights), the trainer's state
    /// and the overrides in force, with everything appended to the log so far.
    pub fn commit(
        &mut self,
        step: usize,
        checkpoint: Option<&[u8]>,
        state: S,
        overrides: Overrides,
    ) -> Result<()> {
        let metrics = self.dir.join(files::METRICS);
        if self.metrics_len > 0 {
            fsio::fsync(&metrics)?;
        }
        let previous = self.committed.checkpoint.as_ref().map(|f| f.file.clone());
        let file = match checkpoint {
            None => None,
            Some(bytes) => {
                let sha256 = sha256_hex(bytes);
                let name = checkpoint_name(step, &sha256);
                if previous.as_deref() != Some(name.as_str()) {
                    fsio::write_atomic(&self.dir.join(&name), bytes)?;
                }
                Some(FileRef {
                    file: name,
                    sha256,
                    bytes: bytes.len() as u64,
                })
            }
        };
        let commit = Commit {
            format: FORMAT.into(),
            step,
            checkpoint: file,
            config_sha256: self.committed.config_sha256.clone(),
            metrics_bytes: self.metrics_len,
            overrides,
            state,
        };
        fsio::write_atomic(&self.dir.join(files::STATE), commit.to_json()?.as_bytes())?;
        let now = commit.checkpoint.as_ref().map(|f| f.file.clone());
        self.committed = commit;
        if let Some(old) = previous
            && now.as_ref() != Some(&old)
        {
            fsio::remove(&self.dir.join(old))?;
        }
        Ok(())
    }
}

/// Removes `.NAME.tmp-PID` folders of run creations whose process is gone (Linux: no
/// `/proc/PID`), when they hold nothing but what a creation writes.
fn remove_stale_temp_folders(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((_, pid)) = name.rsplit_once(".tmp-") else {
            continue;
        };
        if !fsio::is_temp_name(&name)
            || !entry.file_type().is_ok_and(|t| t.is_dir())
            || !fsio::process_is_gone(pid)
        {
            continue;
        }
        let only_ours = std::fs::read_dir(entry.path()).is_ok_and(|d| {
            d.flatten().all(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                [files::CONFIG, files::STATE, super::lock::LOCK_FILE].contains(&n.as_str())
                    || fsio::is_temp_name(&n)
            })
        });
        if only_ours {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
