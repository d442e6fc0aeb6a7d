//! Atomic file writes: write a sibling temp file, flush it, rename it over the target. A crash
//! or a full disk leaves the old file or no file, never half of one. The one implementation is
//! the run folder's ([`crate::run_folder::fsio::write_atomic`]), which also flushes the folder.

pub use crate::run_folder::fsio::write_atomic;
