//! The files a Slurm launch keeps in the sweep folder (`slurm/…`), and reading them back.

use crate::error::{Error, Result};
use crate::run_folder::fsio;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The folder of a sweep's Slurm files.
pub const SLURM_DIR: &str = "slurm";
/// The submissions, inside [`SLURM_DIR`].
pub const JOBS: &str = "jobs.json";
/// The elements' output, inside [`SLURM_DIR`].
pub const LOGS_DIR: &str = "logs";
/// One file per member: how its last attempt ended, inside [`SLURM_DIR`].
pub const EXIT_DIR: &str = "exit";
const JOBS_FORMAT: &str = "gatekit-slurm-jobs-1";

/// One `sbatch` of the sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    /// The array job's id.
    pub job_id: u64,
    /// The members it runs (array indices = indices into `Sweep::members`).
    pub members: Vec<usize>,
    /// The script, relative to the sweep folder.
    pub script: String,
    /// The dependent job that writes the summary once the array has ended, if submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_job: Option<u64>,
}

/// `slurm/jobs.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submissions {
    /// `gatekit-slurm-jobs-1`.
    pub format: String,
    /// Oldest first.
    pub submissions: Vec<Submission>,
}

impl Submissions {
    /// The latest submission that ran member `index`.
    pub fn latest_for(&self, index: usize) -> Option<&Submission> {
        self.submissions
            .iter()
            .rev()
            .find(|s| s.members.contains(&index))
    }

    /// Appends `s` and rewrites `jobs.json` atomically.
    pub(crate) fn record(&mut self, sweep: &Path, s: Submission) -> Result<()> {
        self.submissions.push(s);
        self.save(sweep)
    }

    /// Rewrites `jobs.json` atomically.
    pub(crate) fn save(&mut self, sweep: &Path) -> Result<()> {
        self.format = JOBS_FORMAT.into();
        let path = sweep.join(SLURM_DIR).join(JOBS);
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| Error::encode(&path, "the Slurm submissions", e))?;
        fsio::write_atomic(&path, json.as_bytes())
    }
}

/// The submissions recorded in the sweep folder `sweep` (none yet: empty).
pub fn read_submissions(sweep: &Path) -> Result<Submissions> {
    let path = sweep.join(SLURM_DIR).join(JOBS);
    if !path.exists() {
        return Ok(Submissions::default());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let jobs: Submissions = serde_json::from_str(&text)
        .map_err(|e| Error::json(&path, "is not a record of Slurm submissions", e))?;
    if jobs.format != JOBS_FORMAT {
        return Err(Error::Run {
            path,
            message: format!(
                "has format `{}`; this gtk reads `{JOBS_FORMAT}`",
                jobs.format
            ),
        });
    }
    Ok(jobs)
}

/// How the last attempt of a member ended, as its array script wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitRecord {
    /// The exit code (128 + N: killed by signal N).
    pub code: i32,
    /// `SLURM_RESTART_COUNT` of that attempt.
    pub restarts: u32,
    /// Whether the script requeued the element.
    pub requeued: bool,
}

/// The exit record of member `index` (none: the member has not ended under Slurm, or its
/// current attempt is running).
pub fn read_exit(sweep: &Path, index: usize) -> Option<ExitRecord> {
    let text =
        std::fs::read_to_string(sweep.join(SLURM_DIR).join(EXIT_DIR).join(index.to_string()))
            .ok()?;
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
    };
    Some(ExitRecord {
        code: field("code")?.parse().ok()?,
        restarts: field("restarts").and_then(|r| r.parse().ok()).unwrap_or(0),
        requeued: field("requeued") == Some("yes"),
    })
}

/// Slurm's `--array` list for `indices` (sorted, distinct): runs of consecutive indices as
/// ranges, `0-5` or `1,3-4,9`.
pub fn array_ranges(indices: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let mut j = i;
        while j + 1 < indices.len() && indices[j + 1] == indices[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            indices[i].to_string()
        } else {
            format!("{}-{}", indices[i], indices[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// Why `dir` is probably not visible to a cluster's other nodes (a folder for temporary files,
/// or a memory file system), if it is.
pub fn local_path_reason(dir: &Path) -> Option<String> {
    let abs: PathBuf = std::path::absolute(dir).unwrap_or_else(|_| dir.into());
    for local in ["/tmp", "/var/tmp", "/dev/shm", "/run"] {
        if abs.starts_with(local) {
            return Some(format!(
                "it is under {local}, which each machine has for itself"
            ));
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    // The mount holding `abs` is the one with the longest mount point that is a prefix of it.
    let (point, fs) = mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, point, fs) = (f.next()?, f.next()?, f.next()?);
            abs.starts_with(point).then_some((point, fs))
        })
        .max_by_key(|(point, _)| point.len())?;
    matches!(fs, "tmpfs" | "ramfs").then(|| {
        format!("it is on a {fs} file system (mounted at {point}), in this machine's memory")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_lists() {
        assert_eq!(array_ranges(&[0, 1, 2, 3, 4, 5]), "0-5");
        assert_eq!(array_ranges(&[1, 3, 4, 9]), "1,3-4,9");
        assert_eq!(array_ranges(&[7]), "7");
        assert_eq!(array_ranges(&[]), "");
    }

    #[test]
    fn temporary_folders_are_local() {
        assert!(local_path_reason(Path::new("/tmp/x/sweep")).is_some());
        assert!(local_path_reason(Path::new("/dev/shm/s")).is_some());
        assert!(local_path_reason(Path::new("/tmpx/s")).is_none_or(|r| !r.contains("/tmp,")));
    }
}
