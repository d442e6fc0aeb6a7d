//! Every file-system operation a run folder's writer makes, counted in one place.
//!
//! Counting them is what makes the commit protocol testable: with `GATEKIT_ABORT_AT_FS_OP=N`
//! in the environment the process aborts (no destructors, no flushing: like `kill -9`) right
//! before the N-th operation, so a test can stop a trainer between any two of them and check
//! that the run still resumes to the uninterrupted result. `GATEKIT_TRACE_FS_OPS=1` prints each
//! operation to stderr with its number.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Environment variable: abort right before the N-th file-system operation (1-based).
pub const ABORT_AT_ENV: &str = "GATEKIT_ABORT_AT_FS_OP";
/// Environment variable: print every operation to stderr.
pub const TRACE_ENV: &str = "GATEKIT_TRACE_FS_OPS";

static OPS: AtomicUsize = AtomicUsize::new(0);

fn abort_at() -> Option<usize> {
    static AT: OnceLock<Option<usize>> = OnceLock::new();
    *AT.get_or_init(|| std::env::var(ABORT_AT_ENV).ok()?.trim().parse().ok())
}

fn trace() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os(TRACE_ENV).is_some_and(|v| v != "0"))
}

/// Counts one operation and aborts the process there when the test hook asks for it.
fn op(what: &str, path: &Path) {
    let n = OPS.fetch_add(1, Ordering::SeqCst) + 1;
    if trace() {
        eprintln!("fs-op {n}: {what} {}", path.display());
    }
    if abort_at() == Some(n) {
        eprintln!(
            "aborting before fs-op {n} ({what} {}) as {ABORT_AT_ENV} asks",
            path.display()
        );
        std::process::abort();
    }
}

/// The temp name used while `path` is being written: a dot file next to it, tagged with the
/// process id, so that the next writer can recognise and remove leftovers of a killed one.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    parent(path).join(format!(".{name}.tmp-{}", std::process::id()))
}

/// Whether `name` is a temp name made by [`temp_path`].
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.')
        && name
            .rsplit_once(".tmp-")
            .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `bytes` to `path` so that after a crash `path` holds either its old content or all
/// of the new: temp file, write, fsync, rename over `path`, fsync the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| -> std::io::Result<()> {
        op("create", &tmp);
        let mut f = std::fs::File::create(&tmp)?;
        op("write", &tmp);
        f.write_all(bytes)?;
        op("fsync", &tmp);
        f.sync_all()?;
        drop(f);
        op("rename", path);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    sync_dir(parent(path))
}

/// Appends `bytes` to `path` (created if missing). When the write fails part-way (a full
/// disk), the file is cut back to its old length so no torn line is left behind.
pub fn append(path: &Path, bytes: &[u8]) -> Result<()> {
    op("append", path);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let before = f.metadata().map_err(|e| Error::io(path, e))?.len();
    if let Err(e) = f.write_all(bytes) {
        let _ = f.set_len(before);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// Flushes `path`'s content to the disk.
pub fn fsync(path: &Path) -> Result<()> {
    op("fsync", path);
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(path, e))
}

/// Flushes a folder's entries (a rename or a new file in it) to the disk.
pub fn sync_dir(dir: &Path) -> Result<()> {
    op("fsync-dir", dir);
    // Opening a folder for fsync works on Linux and macOS; elsewhere it is skipped.
    match std::fs::File::open(dir) {
        Ok(f) => match f.sync_all() {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(()),
            Err(e) if e.raw_os_error() == Some(22) => Ok(()), // EINVAL: not supported here
            Err(e) => Err(Error::io(dir, e)),
        },
        Err(_) => Ok(()),
    }
}

/// Cuts `path` to `len` bytes and flushes it.
pub fn truncate(path: &Path, len: u64) -> Result<()> {
    op("truncate", path);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.set_len(len)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(path, e))
}

/// Removes a file the writer made (a superseded checkpoint, a stale temp file).
pub fn remove(path: &Path) -> Result<()> {
    op("remove", path);
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Creates a folder that must not exist yet (the race-free way to claim a name).
pub fn create_dir(path: &Path) -> Result<()> {
    op("mkdir", path);
    std::fs::create_dir(path).map_err(|e| Error::io(path, e))
}

/// Renames a folder over `to`, which must not exist or be empty.
pub fn rename_dir(from: &Path, to: &Path) -> Result<()> {
    op("rename", to);
    std::fs::rename(from, to).map_err(|e| Error::io(to, e))?;
    sync_dir(parent(to))
}

/// Whether the process `pid` (digits, from a temp name) has ended: known only where `/proc`
/// exists (Linux); elsewhere a temp folder is never taken for stale.
pub fn process_is_gone(pid: &str) -> bool {
    Path::new("/proc/self").exists()
        && !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && !Path::new("/proc").join(pid).exists()
}

/// Removes the temp folders (`.NAME.tmp-PID`) that earlier writers of `path` left when they
/// were killed: only those whose process is gone (Linux: no `/proc/PID`; elsewhere nothing is
/// removed).
pub fn remove_stale_temp_dirs(path: &Path) {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = std::fs::read_dir(parent(path)) else {
        return;
    };
    for entry in entries.flatten() {
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = entry_name.strip_prefix(&prefix) else {
            continue;
        };
        if process_is_gone(pid) && entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised() {
        let t = temp_path(Path::new("runs/r/state.json"));
        let name = t.file_name().unwrap().to_str().unwrap();
        assert!(is_temp_name(name), "{name}");
        assert!(!is_temp_name("state.json"));
        assert!(!is_temp_name(".state.json.tmp-"));
        assert!(!is_temp_name(".state.json.tmp-12a"));
    }

    #[test]
    fn append_adds_and_atomic_write_replaces_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        append(&p, b"one\n").unwrap();
        append(&p, b"two\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one\ntwo\n");
        write_atomic(&p, b"x").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"x");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }
}
