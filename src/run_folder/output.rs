//! Folders that commands write their results into (`--out` of `gtk export`, `gtk report` and
//! `gtk adapt`), claimed so that no command deletes what it did not make.
//!
//! The rules: an existing file is refused; so are a run folder, a folder holding runs, and any
//! folder inside or above the run being read. An existing folder must be empty — unless
//! `--force` is given and everything in it is listed in the manifest (`.gatekit-output`) that
//! the same kind of command left there, in which case exactly those files are replaced.
//! Results are written into a temp folder next to the destination and renamed into place at
//! the end, so a failed command leaves nothing half-written.

use super::{files, fsio};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The manifest file inside an output folder: which command wrote which files.
pub const MANIFEST: &str = ".gatekit-output";

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    kind: String,
    files: Vec<String>,
}

/// A claimed output folder; results go into [`OutputDir::path`] until [`OutputDir::finish`].
#[derive(Debug)]
pub struct OutputDir {
    out: PathBuf,
    tmp: PathBuf,
    kind: &'static str,
    /// Files of an earlier output of the same kind to replace (with `--force`).
    replace: Vec<PathBuf>,
    /// Folders above `out` that the claim created, deepest first: removed again (when still
    /// empty) if the command fails, so a failed command leaves no trace.
    created: Vec<PathBuf>,
    finished: bool,
}

/// Whether `dir` looks like a run folder (what `gtk train` or `gtk adapt` made).
pub fn is_run_folder(dir: &Path) -> bool {
    [files::STATE, files::CONFIG, super::lock::LOCK_FILE]
        .iter()
        .any(|f| dir.join(f).is_file())
}

fn absolute(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    // Resolve symlinks of the part that exists, so two spellings of a folder compare equal.
    let mut existing = abs.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name(), existing.parent()) {
            (Some(n), Some(parent)) => {
                rest.push(n.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => return abs,
        }
    }
    let mut out = std::fs::canonicalize(&existing).unwrap_or(existing);
    for n in rest.iter().rev() {
        out.push(n);
    }
    out
}

impl OutputDir {
    /// Claims `out` for a command of `kind` (`export`, `report`, `adapt`) that reads the runs
    /// `reads`; `force` allows replacing an earlier output of the same kind.
    pub fn claim(out: &Path, kind: &'static str, reads: &[&Path], force: bool) -> Result<Self> {
        let replace = Self::plan(out, kind, reads, force)?;
        let parent = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let created: Vec<PathBuf> = parent
            .ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .take_while(|a| std::fs::symlink_metadata(a).is_err())
            .map(Path::to_path_buf)
            .collect();
        let claimed = OutputDir {
            out: out.into(),
            tmp: fsio::temp_path(out),
            kind,
            replace,
            created,
            finished: false,
        };
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let _ = std::fs::remove_dir_all(&claimed.tmp); // ours: this process's own temp name
        fsio::remove_stale_temp_dirs(out);
        std::fs::create_dir(&claimed.tmp).map_err(|e| Error::io(&claimed.tmp, e))?;
        Ok(claimed)
    }

    /// The default output folder `base` if it is free (missing, or an empty folder), else the
    /// first free of `base-2`, `base-3`, …: a command run twice without `--out` writes a new
    /// folder instead of refusing over a folder the user never named.
    pub fn free_default(base: &Path) -> PathBuf {
        // A path that cannot be looked at (no permission) counts as free: claiming it then
        // reports the real error instead of this loop trying names forever.
        let free = |p: &Path| match std::fs::symlink_metadata(p) {
            Err(_) => true,
            Ok(m) => m.is_dir() && std::fs::read_dir(p).is_ok_and(|mut e| e.next().is_none()),
        };
        if free(base) {
            return base.to_path_buf();
        }
        let name = base
            .file_name()
            .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
        let mut n = 2u64;
        loop {
            let candidate = base.with_file_name(format!("{name}-{n}"));
            if free(&candidate) {
                return candidate;
            }
            n += 1;
        }
    }

    /// Checks that `out` could be claimed, without making anything (for a command that makes
    /// its output its own way, like `gtk adapt`'s run folder).
    pub fn check(out: &Path, kind: &'static str, reads: &[&Path], force: bool) -> Result<()> {
        Self::plan(out, kind, reads, force).map(drop)
    }

    /// The rules of [`OutputDir`]; returns the files of an earlier output to replace.
    fn plan(out: &Path, kind: &str, reads: &[&Path], force: bool) -> Result<Vec<PathBuf>> {
        let refuse = |message: String| Error::Run {
            path: out.into(),
            message,
        };
        let abs = absolute(out);
        for run in reads {
            let run_abs = absolute(run);
            if abs == run_abs {
                return Err(refuse(format!(
                    "is the run being read; choose an --out outside {}",
                    run.display()
                )));
            }
            if abs.starts_with(&run_abs) {
                return Err(refuse(format!(
                    "is inside the run {} (commands that read a run never write into it); choose an --out outside it",
                    run.display()
                )));
            }
            if run_abs.starts_with(&abs) {
                return Err(refuse(format!(
                    "contains the run {}; choose a new, empty folder for --out",
                    run.display()
                )));
            }
        }
        if let Some(run) = abs.ancestors().skip(1).find(|a| is_run_folder(a)) {
            return Err(refuse(format!(
                "is inside the run folder {}; choose an --out outside it",
                run.display()
            )));
        }
        let mut replace = Vec::new();
        match std::fs::symlink_metadata(out) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(out, e)),
            Ok(meta) if !meta.is_dir() => {
                return Err(refuse(
                    "exists and is not a folder; --out needs a new or empty folder".into(),
                ));
            }
            Ok(_) => {
                if is_run_folder(out) {
                    return Err(refuse(
                        "is a run folder; choose a new, empty folder for --out".into(),
                    ));
                }
                let entries: Vec<String> = std::fs::read_dir(out)
                    .map_err(|e| Error::io(out, e))?
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                if let Some(run) = entries.iter().find(|n| is_run_folder(&out.join(n))) {
                    return Err(refuse(format!(
                        "holds run folders (e.g. `{run}`); choose a new, empty folder for --out"
                    )));
                }
                if !entries.is_empty() {
                    if !force {
                        return Err(refuse(format!(
                            "exists and is not empty; choose a new --out{}",
                            if kind == "adapt" {
                                String::new()
                            } else {
                                format!(
                                    ", or add --force to replace the files an earlier `gtk {kind}` wrote there"
                                )
                            }
                        )));
                    }
                    let manifest = std::fs::read(out.join(MANIFEST))
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok());
                    let Some(manifest) = manifest.filter(|m| m.kind == kind) else {
                        return Err(refuse(format!(
                            "was not written by `gtk {kind}` (no {MANIFEST} manifest of it); --force replaces only gatekit's own files"
                        )));
                    };
                    let foreign: Vec<&String> = entries
                        .iter()
                        .filter(|n| *n != MANIFEST && !manifest.files.contains(n))
                        .collect();
                    if let Some(f) = foreign.first() {
                        return Err(refuse(format!(
                            "holds `{f}`, which `gtk {kind}` did not write; --force replaces only gatekit's own files, so move it away first"
                        )));
                    }
                    replace = entries.iter().map(|n| out.join(n)).collect();
                }
            }
        }
        Ok(replace)
    }

    /// Where to write the results until [`OutputDir::finish`].
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// The destination.
    pub fn destination(&self) -> &Path {
        &self.out
    }

    /// Moves the results into place (with a manifest of them) and returns the destination.
    pub fn finish(mut self) -> Result<PathBuf> {
        let mut names: Vec<String> = std::fs::read_dir(&self.tmp)
            .map_err(|e| Error::io(&self.tmp, e))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let manifest = Manifest {
            kind: self.kind.into(),
            files: names,
        };
        let text = serde_json::to_string_pretty(&manifest)
            .map_err(|e| Error::encode(self.out.join(MANIFEST), "the output manifest", e))?;
        fsio::write_atomic(&self.tmp.join(MANIFEST), text.as_bytes())?;
        for old in &self.replace {
            let removed = if old.is_dir() {
                std::fs::remove_dir_all(old)
            } else {
                std::fs::remove_file(old)
            };
            removed.map_err(|e| Error::io(old, e))?;
        }
        // rename(2) replaces an empty folder, so an existing empty --out is filled atomically.
        fsio::rename_dir(&self.tmp, &self.out)?;
        self.finished = true;
        Ok(self.out.clone())
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_dir_all(&self.tmp);
            // Only folders this claim made, and only while empty (remove_dir refuses others).
            for dir in &self.created {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}
