//! Sweeps on a Slurm cluster (`gtk train --seeds … --launcher slurm`): one `sbatch` array
//! job per submission, one array element per member. There is no daemon: the sweep folder on
//! the shared file system is the state, and everything here either writes a file into it or
//! asks Slurm's own commands (`sbatch`, `squeue`, `sacct`).
//!
//! What a sweep folder holds besides its run folders, under `slurm/`:
//! - `submit-N.sbatch`: the array script of the N-th submission (kept, for reading and for
//!   resubmitting by hand);
//! - `jobs.json`: every submission's job id and the members (array indices) it ran;
//! - `logs/JOB_INDEX.out`: each element's output (appended to across requeues);
//! - `exit/INDEX`: how the last attempt of member INDEX ended, written by the script.
//!
//! - [`array_script`]: the script's text
//! - [`submit`]: runs `sbatch` and records the submission
//! - [`queue`]: what `squeue` and `sacct` say about a sweep's elements
//! - [`member_statuses`]: each member's state from its run folder, the queue and its exit file

mod paths;
mod queue;
mod script;
mod status;
mod submit;

pub use paths::{
    EXIT_DIR, ExitRecord, JOBS, LOGS_DIR, SLURM_DIR, Submission, Submissions, array_ranges,
    local_path_reason, read_exit, read_submissions,
};
pub use queue::{QueueEntry, queue};
pub use script::{ArrayScript, array_script};
pub use status::{MemberStatus, State, member_statuses, unfinished};
pub use submit::{find_on_path, submit, submit_summary_job};

/// The exit code of a `gtk train` (or array element) stopped by SIGTERM or SIGINT after
/// committing its last step: sysexits' EX_TEMPFAIL, "try again later". The array script
/// requeues its element on it; any other non-zero code is a failure and is not retried.
pub const STOPPED_EXIT: i32 = 75;
