//! The `sbatch` array script: one element per member, each running `gtk sweep run-member
//! SWEEP $SLURM_ARRAY_TASK_ID`, forwarding SIGTERM to it, and requeueing the element when the
//! member stopped cleanly ([`super::STOPPED_EXIT`]) — a bounded number of times.

use super::STOPPED_EXIT;
use super::paths::{EXIT_DIR, LOGS_DIR, SLURM_DIR};
use crate::config::{DEFAULT_MAX_REQUEUES, SlurmResources};
use crate::sweep::Sweep;
use std::fmt::Write;
use std::path::Path;

/// What an array script runs, besides its resources.
#[derive(Debug, Clone)]
pub struct ArrayScript<'a> {
    /// The `gtk` executable (the one submitting), by absolute path: the nodes must see it
    /// there (a shared file system, or the same install on every node).
    pub gtk: &'a Path,
    /// `--data-dir` for every member, when given.
    pub data_dir: Option<&'a Path>,
    /// `--allow-changed-data` on resumes.
    pub allow_changed_data: bool,
}

/// Single-quotes `text` for bash.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn quote_path(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

/// The script's text for `sweep` (whose `dir` is absolute) with resources `res`.
pub fn array_script(sweep: &Sweep, res: &SlurmResources, run: &ArrayScript) -> String {
    let slurm = sweep.dir.join(SLURM_DIR);
    let name = sweep
        .dir
        .file_name()
        .map_or("sweep".into(), |n| n.to_string_lossy().into_owned());
    let mut s = String::from("#!/bin/bash\n");
    let mut opt = |line: String| {
        let _ = writeln!(s, "#SBATCH {line}");
    };
    opt(format!("--job-name=gtk-{name}"));
    opt(format!(
        "--output={}/%A_%a.out",
        slurm.join(LOGS_DIR).display()
    ));
    opt("--open-mode=append".into());
    // Slurm may requeue the element (preemption, a node failure), and sends SIGTERM to this
    // script 60 s before the time limit, so the member commits and is requeued.
    opt("--requeue".into());
    opt("--signal=B:TERM@60".into());
    opt(format!(
        "--cpus-per-task={}",
        res.cpus_per_task.unwrap_or(sweep.spec.threads_per_run)
    ));
    for (flag, value) in [
        ("partition", &res.partition),
        ("time", &res.time),
        ("mem", &res.mem),
        ("account", &res.account),
    ] {
        if let Some(v) = value {
            opt(format!("--{flag}={v}"));
        }
    }
    for line in &res.extra {
        opt(line.clone());
    }
    let mut member = format!(
        "{} sweep run-member {} \"$SLURM_ARRAY_TASK_ID\"",
        quote_path(run.gtk),
        quote_path(&sweep.dir)
    );
    if let Some(d) = run.data_dir {
        member.push_str(&format!(" --data-dir {}", quote_path(d)));
    }
    if run.allow_changed_data {
        member.push_str(" --allow-changed-data");
    }
    let max = res.max_requeues.unwrap_or(DEFAULT_MAX_REQUEUES);
    let threads = sweep.spec.threads_per_run;
    let exit_dir = quote_path(&slurm.join(EXIT_DIR));
    let _ = write!(
        s,
        r#"# Written by gtk for the sweep {sweep}; submitted with sbatch --array=INDICES.
# Each element trains member $SLURM_ARRAY_TASK_ID (see `gtk sweep status`). A member that gets
# SIGTERM commits its current step and exits {stopped}; it is then requeued (at most {max}
# times) and resumes from that commit. Any other failure is left for a person to look at.
set -u
exit_dir={exit_dir}
index="$SLURM_ARRAY_TASK_ID"
restarts="${{SLURM_RESTART_COUNT:-0}}"
mkdir -p "$exit_dir"
rm -f "$exit_dir/$index"
export RAYON_NUM_THREADS={threads}
echo "gtk: member $index, job ${{SLURM_ARRAY_JOB_ID}}_$index, attempt $((restarts + 1)) on $(hostname) at $(date -u +%FT%TZ)"
{member} &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
while :; do
  wait "$child"
  kill -0 "$child" 2>/dev/null || break
done
wait "$child"
code=$?
requeue=no
if [ "$code" -eq {stopped} ]; then
  if [ "$restarts" -lt {max} ]; then
    requeue=yes
    echo "gtk: member $index stopped by SIGTERM after its last commit; requeueing it"
  else
    echo "gtk: member $index stopped by SIGTERM and was requeued {max} times already; not again (resubmit: gtk train --resume {sweep_q} --launcher slurm)"
  fi
fi
# Written before the requeue: requeueing ends this script.
printf 'code=%s restarts=%s requeued=%s job=%s_%s\n' "$code" "$restarts" "$requeue" "${{SLURM_ARRAY_JOB_ID}}" "$index" > "$exit_dir/.$index.tmp"
mv -f "$exit_dir/.$index.tmp" "$exit_dir/$index"
if [ "$requeue" = yes ] && ! scontrol requeue "${{SLURM_ARRAY_JOB_ID}}_$index"; then
  # Already being requeued by Slurm itself (preemption, `scontrol requeue`), or refused.
  echo "gtk: scontrol requeue refused; if the element does not come back, resubmit: gtk train --resume {sweep_q} --launcher slurm"
fi
exit "$code"
"#,
        sweep = sweep.dir.display(),
        sweep_q = quote_path(&sweep.dir),
        stopped = STOPPED_EXIT,
    );
    s
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quoting() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
