//! One writer per run folder: `gtk train` (new or `--resume`) holds an exclusive advisory lock
//! on `writer.lock` for as long as it runs. The operating system drops the lock when the
//! process ends, however it ends, so a killed trainer never leaves a run locked.

use crate::error::{Error, Result};
use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file inside a run folder.
pub const LOCK_FILE: &str = "writer.lock";

/// The held lock; released when dropped.
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
    path: PathBuf,
}

impl WriterLock {
    /// Takes the lock of the run folder `dir`, or fails naming the process that holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        Self::acquire_named(dir, LOCK_FILE)
    }

    /// Takes the lock file `name` inside `dir` (a sweep folder's `sweep.lock`), or fails
    /// naming the process that holds it.
    pub fn acquire_named(dir: &Path, name: &str) -> Result<Self> {
        let path = dir.join(name);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: dir.into(),
                    holder: read_holder(&mut file),
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        // Who holds it, for the message a second writer gets.
        let args: Vec<String> = std::env::args().collect();
        let holder = format!("process {} (`{}`)", std::process::id(), args.join(" "));
        let write = (|| -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            file.write_all(holder.as_bytes())
        })();
        write.map_err(|e| Error::io(&path, e))?;
        Ok(WriterLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Who holds the lock of `dir` right now, if anyone (a reader's courtesy check: it does
    /// not take the lock, and it writes nothing).
    pub fn holder(dir: &Path) -> Option<String> {
        let path = dir.join(LOCK_FILE);
        let mut file = File::open(&path).ok()?;
        match file.try_lock_shared() {
            Ok(()) => None,
            Err(TryLockError::WouldBlock) => Some(read_holder(&mut file)),
            Err(TryLockError::Error(_)) => None,
        }
    }
}

/// The holder's text in a locked lock file. A holder writes it right after taking the lock, so
/// an empty file is read again for a moment before giving up.
fn read_holder(file: &mut File) -> String {
    for _ in 0..20 {
        let mut s = String::new();
        if file.rewind().is_ok() && file.read_to_string(&mut s).is_ok() && !s.trim().is_empty() {
            return s.trim().to_string();
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    "another process".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_writer_is_refused_with_the_holder_named() {
        let dir = tempfile::tempdir().unwrap();
        let first = WriterLock::acquire(dir.path()).unwrap();
        let err = WriterLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is being written by process"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        assert!(WriterLock::holder(dir.path()).is_some());
        drop(first);
        assert!(WriterLock::holder(dir.path()).is_none());
        WriterLock::acquire(dir.path()).unwrap();
    }
}
