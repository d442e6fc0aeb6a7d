//! The run folder: the one record of an experiment, a small database with one writer and any
//! number of readers (the contract is the book's "The run folder" page).
//!
//! - [`RunWriter`]: `gtk train` creates a run or reopens it under an exclusive lock
//!   ([`WriterLock`]), appends to `metrics.jsonl` and commits. Each commit is atomic as a
//!   whole: `state.json` ([`Commit`]) names the checkpoint with its checksum and the committed
//!   length of the log, and replacing `state.json` is the commit.
//! - [`Snapshot`]: `eval`, `export`, `report` and `adapt` read the committed state only, check
//!   every checksum and write nothing.
//! - [`OutputDir`]: what those commands write goes to a folder claimed so that nothing of the
//!   user's is replaced.
//! - [`fsio`]: every file operation of the writer, counted for fault-injection tests.

mod commit;
pub mod fsio;
mod lock;
mod output;
mod snapshot;
mod writer;

pub use commit::{Commit, FORMAT, FileRef, Overrides, checkpoint_name, sha256_hex};
pub use lock::{LOCK_FILE, WriterLock};
pub use output::{MANIFEST, OutputDir, is_run_folder};
pub use snapshot::Snapshot;
pub use writer::RunWriter;

/// File names inside a run folder.
pub mod files {
    /// The resolved task set, written once when the run is created.
    pub const CONFIG: &str = "config.toml";
    /// The commit record: step, the checkpoint file and its checksum, the trainer's state.
    pub const STATE: &str = "state.json";
    /// Logged records, one JSON object per line; only the committed prefix counts.
    pub const METRICS: &str = "metrics.jsonl";
    /// How fast the last `gtk train` session's training loop ran (not part of the results:
    /// it differs from run to run, so it is kept out of `metrics.jsonl`).
    pub const TIMING: &str = "timing.json";
    /// Sequential runs: each strategy's accuracy matrix, average, backward transfer and
    /// forgetting, written when the last phase ends (derived from `metrics.jsonl`).
    pub const CONTINUAL: &str = "continual.json";
    /// TensorBoard event files, rebuilt from `metrics.jsonl` by the writer on resume.
    pub const TB_DIR: &str = "tb";
    /// The writer's lock.
    pub const LOCK: &str = super::lock::LOCK_FILE;
}
