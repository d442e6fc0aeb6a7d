//! Each member's state, from what the sweep folder holds (its run folder's last commit and
//! lock, the exit record its array script wrote, its log) and what Slurm says, when it
//! says anything (`gtk sweep status`).

use super::STOPPED_EXIT;
use super::paths::{LOGS_DIR, SLURM_DIR, read_exit, read_submissions};
use super::queue::{QueueEntry, queue};
use crate::error::Result;
use crate::run_folder::WriterLock;
use crate::sweep::{Member, MemberState, Sweep};
use std::path::{Path, PathBuf};

/// Where a member stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Never started, and not queued.
    NotStarted,
    /// Queued (waiting for resources, or requeued and waiting to restart).
    Pending,
    /// Training now (its run folder is locked, or Slurm runs it).
    Running,
    /// Trained to its last step.
    Done,
    /// Stopped cleanly before its last step (SIGTERM not followed by a requeue, `--stop-at`,
    /// a local sweep that was interrupted): its last commit is kept; resubmitting resumes it.
    Stopped,
    /// Ended with an error, or was killed: not retried; its last commit is kept.
    Failed,
}

impl State {
    /// The word `gtk sweep status` prints.
    pub fn word(self) -> &'static str {
        match self {
            State::NotStarted => "not started",
            State::Pending => "pending",
            State::Running => "running",
            State::Done => "done",
            State::Stopped => "stopped",
            State::Failed => "failed",
        }
    }
}

/// One member's line of `gtk sweep status`.
#[derive(Debug, Clone)]
pub struct MemberStatus {
    /// Index into `Sweep::members` (the array index under Slurm).
    pub index: usize,
    /// The member.
    pub member: Member,
    /// `seed 3`, or `lr=0.1/seed 3`.
    pub label: String,
    /// Its run folder.
    pub dir: PathBuf,
    /// Where it stands.
    pub state: State,
    /// Its last committed step (0 before its folder exists).
    pub step: usize,
    /// Its step count, once known.
    pub total: Option<usize>,
    /// Why it failed or stopped, or what it waits for (one line; may be empty).
    pub detail: String,
    /// The array element running it (`JOB_INDEX`), when launched on Slurm.
    pub job: Option<String>,
}

/// The last line of `log` that starts with `error: ` (what `gtk` printed before it failed).
fn last_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .find(|l| l.starts_with("error: "))
        .map(|l| l.trim_start_matches("error: ").to_string())
}

/// How an exit code reads.
fn describe_exit(code: i32) -> String {
    match code {
        137 => "killed by SIGKILL (exit 137; out of memory, or killed by hand)".into(),
        143 => "killed by SIGTERM before it could commit (exit 143)".into(),
        c if c > 128 => format!("killed by signal {} (exit {c})", c - 128),
        c => format!("exit {c}"),
    }
}

/// The status of every member, in `Sweep::members` order.
pub fn member_statuses(sweep: &Sweep) -> Result<Vec<MemberStatus>> {
    let jobs = read_submissions(&sweep.dir)?;
    let ids: Vec<u64> = jobs.submissions.iter().map(|s| s.job_id).collect();
    let slurm = if ids.is_empty() {
        Default::default()
    } else {
        queue(&ids)
    };
    let mut out = Vec::new();
    for (index, member) in sweep.members().into_iter().enumerate() {
        let submission = jobs.latest_for(index);
        let queued = submission.and_then(|_| slurm.get(&index));
        let job = submission.map(|s| format!("{}_{index}", s.job_id));
        let log = submission.map(|s| {
            sweep
                .dir
                .join(SLURM_DIR)
                .join(LOGS_DIR)
                .join(format!("{}_{index}.out", s.job_id))
        });
        let mut status = MemberStatus {
            index,
            member,
            label: sweep.label(&member),
            dir: sweep.dir_of(&member),
            state: State::NotStarted,
            step: 0,
            total: None,
            detail: String::new(),
            job,
        };
        classify(sweep, &mut status, queued, log.as_deref());
        out.push(status);
    }
    Ok(out)
}

/// Fills in `s.state`, its steps and detail.
fn classify(sweep: &Sweep, s: &mut MemberStatus, queued: Option<&QueueEntry>, log: Option<&Path>) {
    let run = match sweep.state_of(&s.member) {
        Ok(r) => r,
        Err(e) => {
            s.state = State::Failed;
            s.detail = format!("its run folder cannot be read: {e}").replace('\n', " ");
            return;
        }
    };
    match run {
        MemberState::Done { total } => {
            (s.step, s.total, s.state) = (total, Some(total), State::Done);
            return;
        }
        MemberState::Partial { step, total } => (s.step, s.total) = (step, Some(total)),
        MemberState::New => {}
    }
    if WriterLock::holder(&s.dir).is_some() || queued.is_some_and(QueueEntry::is_running) {
        s.state = State::Running;
        return;
    }
    if let Some(q) = queued.filter(|q| q.is_active()) {
        s.state = State::Pending;
        s.detail = match q.detail.as_str() {
            "BeginTime" => "requeued, restarting shortly".into(),
            "" | "None" => String::new(),
            why => format!("waiting: {why}"),
        };
        return;
    }
    let error = log.and_then(last_error);
    if let Some(exit) = read_exit(&sweep.dir, s.index) {
        (s.state, s.detail) = match exit.code {
            STOPPED_EXIT => (
                State::Stopped,
                if exit.requeued {
                    "stopped by SIGTERM and requeued, but Slurm no longer has it queued".into()
                } else {
                    format!(
                        "stopped by SIGTERM after {} requeue(s), not requeued again",
                        exit.restarts
                    )
                },
            ),
            0 => (State::Stopped, "ended before its last step".into()),
            c => (
                State::Failed,
                match error {
                    Some(e) if c < 128 => e,
                    _ => describe_exit(c),
                },
            ),
        };
        return;
    }
    if let Some(q) = queued {
        // sacct: the element ended without its script's exit record (cancelled, timed out
        // or killed with the script).
        (s.state, s.detail) = (
            State::Failed,
            format!("Slurm says {} (exit {})", q.state, q.detail),
        );
        return;
    }
    if let Some(e) = error {
        (s.state, s.detail) = (State::Failed, e);
        return;
    }
    if !matches!(run, MemberState::New) {
        s.state = State::Stopped;
    }
}

/// The labels of the members not done.
pub fn unfinished(statuses: &[MemberStatus]) -> Vec<String> {
    statuses
        .iter()
        .filter(|s| s.state != State::Done)
        .map(|s| {
            format!(
                "{} ({} at step {}{})",
                s.label,
                s.state.word(),
                s.step,
                s.total.map(|t| format!("/{t}")).unwrap_or_default()
            )
        })
        .collect()
}
