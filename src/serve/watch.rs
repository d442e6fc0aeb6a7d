//! `gtk serve --watch DIR`: new exports that appear in a folder are loaded while serving, e.g.
//! a `gtk adapt` run exported next to the served export (`gtk export runs/demo-adapt-new
//! --binarize --tasks new --out exports/demo/new`). The folder itself and each of its
//! subfolders holding a `masks.safetensors` are candidates; their tasks not loaded yet are
//! added, an export whose `W` fingerprint differs from the served `W` is refused and logged,
//! and a task already loaded with other mask bits is left as it is and logged (remove it first
//! with `DELETE /v1/admin/tasks/{task}` to replace it).
//!
//! The folder is polled: its listing is read every `--watch-ms` milliseconds and each
//! candidate's `masks.safetensors` is compared by modification time and size with what was
//! seen. Polling rather than file-system notifications because an export appears by one rename
//! of a finished temp folder (see `run_folder::OutputDir`), so a listing never sees half an
//! export and needs no debouncing; the cost is one `readdir` and a `stat` per subfolder per
//! interval (microseconds for hundreds of exports); it behaves the same on every OS and on
//! network file systems, where notifications are often not delivered; and it needs no new
//! dependency (a notification crate and its per-platform backends) in a server that should
//! stay small. The price is a delay of up to one interval, which hot-adding a task can afford.

use super::store::{ExportFolder, ModelStore};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What one poll did to one export folder.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// Tasks of `dir` were loaded; `kept` are tasks it also holds that were loaded already
    /// with other mask bits (left as they were).
    Added {
        /// The export folder.
        dir: PathBuf,
        /// The tasks loaded.
        tasks: Vec<String>,
        /// Tasks loaded before with other masks, not replaced.
        kept: Vec<String>,
    },
    /// Only tasks loaded before with other mask bits: nothing was loaded.
    Kept {
        /// The export folder.
        dir: PathBuf,
        /// Those tasks.
        tasks: Vec<String>,
    },
    /// `dir` could not be loaded (another `W`, another model, an unreadable or soft export).
    Refused {
        /// The export folder.
        dir: PathBuf,
        /// Why, naming the file and what is wrong.
        reason: String,
    },
}

impl std::fmt::Display for WatchEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = |tasks: &[String]| {
            format!(
                "task(s) {} already loaded with other masks, kept (DELETE /v1/admin/tasks/{{task}} to replace)",
                tasks.join(", ")
            )
        };
        match self {
            WatchEvent::Added {
                dir,
                tasks,
                kept: k,
            } => {
                write!(
                    f,
                    "watch: loaded task(s) {} from {}",
                    tasks.join(", "),
                    dir.display()
                )?;
                if !k.is_empty() {
                    write!(f, "; {}", kept(k))?;
                }
                Ok(())
            }
            WatchEvent::Kept { dir, tasks } => {
                write!(f, "watch: {}: {}", dir.display(), kept(tasks))
            }
            WatchEvent::Refused { dir, reason } => {
                write!(f, "watch: refused {}: {reason}", dir.display())
            }
        }
    }
}

/// The watched folder and what was seen in it.
#[derive(Debug)]
pub struct Watcher {
    dir: PathBuf,
    /// Per candidate folder, its `masks.safetensors`' modification time and size when read.
    seen: HashMap<PathBuf, (Option<SystemTime>, u64)>,
    /// Whether the last listing failed (logged once, not every interval).
    listing_failed: bool,
}

impl Watcher {
    /// Watches `dir`, which must be a folder.
    pub fn new(dir: &Path) -> crate::error::Result<Self> {
        if !dir.is_dir() {
            return Err(crate::error::Error::config(
                "--watch",
                dir.display().to_string(),
                "is not a folder; give the folder new exports appear in (e.g. the served export folder)",
            ));
        }
        Ok(Watcher {
            dir: dir.to_path_buf(),
            seen: HashMap::new(),
            listing_failed: false,
        })
    }

    /// The watched folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder itself and its subfolders that hold `masks.safetensors`, sorted; hidden
    /// names (temp folders of exports being written) are skipped.
    fn candidates(&self) -> crate::error::Result<Vec<PathBuf>> {
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| crate::error::Error::io(&self.dir, e))?;
        let mut out = vec![self.dir.clone()];
        for e in entries.flatten() {
            let hidden = e.file_name().to_str().is_none_or(|n| n.starts_with('.'));
            if !hidden && e.path().is_dir() {
                out.push(e.path());
            }
        }
        out.retain(|d| d.join("masks.safetensors").is_file());
        out.sort();
        Ok(out)
    }

    /// Looks at the folder once: every candidate not seen before, or whose
    /// `masks.safetensors` changed since, is read and its new tasks added to `store`.
    pub fn poll(&mut self, store: &ModelStore) -> Vec<WatchEvent> {
        let candidates = match self.candidates() {
            Ok(c) => {
                self.listing_failed = false;
                c
            }
            Err(e) => {
                let reason = e.to_string();
                let first = !self.listing_failed;
                self.listing_failed = true;
                return if first {
                    vec![WatchEvent::Refused {
                        dir: self.dir.clone(),
                        reason,
                    }]
                } else {
                    Vec::new()
                };
            }
        };
        let mut events = Vec::new();
        for dir in candidates {
            let stamp = std::fs::metadata(dir.join("masks.safetensors"))
                .map(|m| (m.modified().ok(), m.len()))
                .unwrap_or((None, 0));
            if self.seen.get(&dir) == Some(&stamp) {
                continue;
            }
            self.seen.insert(dir.clone(), stamp);
            let outcome = ExportFolder::read(&dir).and_then(|folder| store.add_new(folder));
            match outcome {
                Ok((tasks, kept)) if !tasks.is_empty() => {
                    events.push(WatchEvent::Added { dir, tasks, kept })
                }
                Ok((_, kept)) if !kept.is_empty() => {
                    events.push(WatchEvent::Kept { dir, tasks: kept })
                }
                Ok(_) => {}
                Err(e) => events.push(WatchEvent::Refused {
                    dir,
                    reason: e.to_string(),
                }),
            }
        }
        events
    }
}
