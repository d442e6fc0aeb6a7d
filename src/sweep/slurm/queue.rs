//! What Slurm says about a sweep's array elements: `squeue` for those still queued or running,
//! `sacct` (where the cluster keeps accounting) for those that ended. Both are optional: with
//! neither command, or a job Slurm has forgotten, the sweep folder alone answers.

use std::collections::BTreeMap;
use std::process::Command;

/// One array element as Slurm reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// Slurm's state: `PENDING`, `RUNNING`, `REQUEUED`, `COMPLETED`, `FAILED`, `TIMEOUT`, …
    pub state: String,
    /// Why it waits (`Resources`, `BeginTime`, …) or its exit code (`2:0`), when known.
    pub detail: String,
    /// Whether the entry came from `squeue` (still in the queue) rather than `sacct`.
    pub queued: bool,
}

impl QueueEntry {
    /// Still waiting or running (or about to run again).
    pub fn is_active(&self) -> bool {
        self.queued
            && !matches!(
                self.state.as_str(),
                "COMPLETED"
                    | "FAILED"
                    | "CANCELLED"
                    | "TIMEOUT"
                    | "OUT_OF_MEMORY"
                    | "NODE_FAIL"
                    | "BOOT_FAIL"
                    | "DEADLINE"
                    | "PREEMPTED"
            )
    }

    /// Running (or finishing) now.
    pub fn is_running(&self) -> bool {
        self.queued
            && matches!(
                self.state.as_str(),
                "RUNNING" | "COMPLETING" | "CONFIGURING"
            )
    }
}

/// `JOB_INDEX|STATE|DETAIL` lines into (index, entry) for the array `job`; a line of another
/// job, or a pending range `JOB_[2-5%2]`, is expanded or skipped.
fn parse(job: u64, text: &str, queued: bool) -> Vec<(usize, QueueEntry)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split('|').map(str::trim);
        let (Some(id), Some(state), detail) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let Some(rest) = id.strip_prefix(&format!("{job}_")) else {
            continue;
        };
        // sacct shows a cancelled job as `CANCELLED by 0`.
        let state = state.split_whitespace().next().unwrap_or("").to_string();
        let entry = QueueEntry {
            state,
            detail: detail.unwrap_or("").to_string(),
            queued,
        };
        let indices: Vec<usize> = match rest.strip_prefix('[') {
            Some(list) => {
                let list = list.trim_end_matches(']');
                let list = list.split('%').next().unwrap_or("");
                list.split(',')
                    .flat_map(|part| match part.split_once('-') {
                        Some((a, b)) => match (a.parse::<usize>(), b.parse::<usize>()) {
                            (Ok(a), Ok(b)) if b >= a => (a..=b).collect::<Vec<usize>>(),
                            _ => Vec::new(),
                        },
                        None => part.parse::<usize>().into_iter().collect(),
                    })
                    .collect()
            }
            None => rest.parse().into_iter().collect(),
        };
        for i in indices {
            out.push((i, entry.clone()));
        }
    }
    out
}

fn run(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Slurm's view of the elements of the array jobs `jobs`, by array index; for an index in
/// several jobs, the later job's answer. `squeue` wins over `sacct` for an element in both.
pub fn queue(jobs: &[u64]) -> BTreeMap<usize, QueueEntry> {
    let mut out = BTreeMap::new();
    for &job in jobs {
        let id = job.to_string();
        if let Some(text) = run(
            "sacct",
            &["-n", "-P", "-X", "-j", &id, "-o", "JobID,State,ExitCode"],
        ) {
            out.extend(parse(job, &text, false));
        }
        if let Some(text) = run("squeue", &["-h", "-r", "-j", &id, "-o", "%i|%T|%r"]) {
            out.extend(parse(job, &text, true));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_and_sacct_lines() {
        let q = parse(
            12,
            "12_0|RUNNING|None\n12_[3-4,7%2]|PENDING|JobArrayTaskLimit\n13_1|RUNNING|None\n",
            true,
        );
        let idx: Vec<usize> = q.iter().map(|(i, _)| *i).collect();
        assert_eq!(idx, vec![0, 3, 4, 7]);
        assert!(q[0].1.is_running() && q[1].1.is_active() && !q[1].1.is_running());
        let a = parse(12, "12_2|CANCELLED by 0|0:15\n12_5|FAILED|2:0\n", false);
        assert_eq!(a[0].1.state, "CANCELLED");
        assert_eq!(a[1].1.detail, "2:0");
        assert!(!a[1].1.is_active());
    }
}
