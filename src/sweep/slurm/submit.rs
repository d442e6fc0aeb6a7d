//! Submitting: the array script written into the sweep folder, `sbatch --array` run on it, the
//! job id parsed from its answer and recorded in `slurm/jobs.json`.

use super::paths::{LOGS_DIR, SLURM_DIR, Submission, array_ranges, read_submissions};
use crate::error::{Error, Result};
use crate::run_folder::fsio;
use crate::sweep::Sweep;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `program` is found on `PATH`, if it is.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Runs `sbatch` with `args`; the job id of its `--parsable` answer, or an error of one line
/// holding what sbatch said.
fn sbatch(sweep: &Path, args: &[String]) -> Result<u64> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .args(args)
        .output()
        .map_err(|e| Error::Run {
            path: sweep.into(),
            message: format!(
                "cannot run `sbatch` ({e}); the Slurm launcher needs Slurm's commands on PATH (run on the cluster's login node), or use --launcher local"
            ),
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // `--parsable` answers `ID` or `ID;CLUSTER`.
    let id = stdout
        .lines()
        .rev()
        .find_map(|l| l.split(';').next()?.trim().parse::<u64>().ok());
    match id {
        Some(id) if out.status.success() => Ok(id),
        _ => {
            let said: Vec<&str> = stderr
                .lines()
                .chain(stdout.lines())
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            Err(Error::Run {
                path: sweep.into(),
                message: format!(
                    "sbatch refused the job ({}): {}",
                    out.status,
                    if said.is_empty() {
                        "it said nothing".to_string()
                    } else {
                        said.join("; ")
                    }
                ),
            })
        }
    }
}

/// Writes `script` as `slurm/submit-N.sbatch` and submits it for the members `indices`
/// (sorted), at most `throttle` running at once when given. Returns the recorded submission.
pub fn submit(
    sweep: &Sweep,
    script: &str,
    indices: &[usize],
    throttle: Option<usize>,
) -> Result<Submission> {
    let slurm = sweep.dir.join(SLURM_DIR);
    let logs = slurm.join(LOGS_DIR);
    std::fs::create_dir_all(&logs).map_err(|e| Error::io(&logs, e))?;
    let mut jobs = read_submissions(&sweep.dir)?;
    let name = format!("submit-{}.sbatch", jobs.submissions.len() + 1);
    let path = slurm.join(&name);
    fsio::write_atomic(&path, script.as_bytes())?;
    let mut array = array_ranges(indices);
    if let Some(n) = throttle {
        array.push_str(&format!("%{n}"));
    }
    let job_id = sbatch(
        &sweep.dir,
        &[
            format!("--array={array}"),
            path.to_string_lossy().into_owned(),
        ],
    )?;
    let s = Submission {
        job_id,
        members: indices.to_vec(),
        script: format!("{SLURM_DIR}/{name}"),
        summary_job: None,
    };
    jobs.record(&sweep.dir, s.clone())?;
    Ok(s)
}

/// Submits `gtk sweep summary SWEEP` to run once the array `job_id` has ended (`afterany`:
/// also when some members failed, so its log says which), and records its id.
pub fn submit_summary_job(sweep: &Sweep, gtk: &Path, job_id: u64) -> Result<u64> {
    let logs = sweep.dir.join(SLURM_DIR).join(LOGS_DIR);
    let wrap = format!(
        "'{}' sweep summary '{}'",
        gtk.to_string_lossy().replace('\'', r"'\''"),
        sweep.dir.to_string_lossy().replace('\'', r"'\''")
    );
    let id = sbatch(
        &sweep.dir,
        &[
            format!("--dependency=afterany:{job_id}"),
            "--job-name=gtk-summary".into(),
            "--cpus-per-task=1".into(),
            format!("--output={}/summary-%j.out", logs.display()),
            format!("--wrap={wrap}"),
        ],
    )?;
    let mut jobs = read_submissions(&sweep.dir)?;
    if let Some(s) = jobs.submissions.iter_mut().find(|s| s.job_id == job_id) {
        s.summary_job = Some(id);
        jobs.save(&sweep.dir)?;
    }
    Ok(id)
}
