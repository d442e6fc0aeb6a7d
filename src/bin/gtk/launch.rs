//! `gtk train --seeds … --launcher slurm`: the members go to Slurm as one array job, with the
//! resources of the task set's `[launcher.slurm]` table and the flags; gtk then exits (the
//! sweep folder is the state; `gtk sweep status` and `gtk sweep summary` read it).

use crate::cli::TrainArgs;
use anyhow::{Context, Result, bail};
use gatekit::config::SlurmResources;
use gatekit::sweep::Sweep;
use gatekit::sweep::slurm::{self, ArrayScript, State};

/// The resources the flags give (checked as `command line` values).
fn flag_resources(args: &TrainArgs) -> Result<SlurmResources> {
    let f = &args.slurm;
    let res = SlurmResources {
        partition: f.partition.clone(),
        time: f.time.clone(),
        cpus_per_task: f.cpus_per_task,
        mem: f.mem.clone(),
        account: f.account.clone(),
        extra: f.sbatch_options.clone(),
        max_requeues: f.max_requeues,
    };
    res.check("command line")?;
    Ok(res)
}

/// Refuses the Slurm flags without `--launcher slurm` (they would be ignored).
pub fn refuse_slurm_flags(args: &TrainArgs) -> Result<()> {
    let given = flag_resources(args)? != SlurmResources::default() || args.slurm.no_summary_job;
    if given {
        bail!(
            "--partition, --time, --cpus-per-task, --mem, --account, --sbatch-option, --max-requeues and --no-summary-job are for --launcher slurm; add it, or leave them out"
        );
    }
    Ok(())
}

/// Checks, before a sweep folder is made, that Slurm can be asked at all: `sbatch` on PATH
/// and the flags' values.
pub fn check_slurm(args: &TrainArgs) -> Result<()> {
    flag_resources(args)?;
    if args.stop_at.is_some() {
        bail!(
            "--stop-at is for local sweeps; on Slurm, give --time (members stopped by the time limit commit and are requeued)"
        );
    }
    if slurm::find_on_path("sbatch").is_none() {
        bail!(
            "--launcher slurm: `sbatch` is not on PATH; run this on the cluster's login node (or load its Slurm module), or use --launcher local"
        );
    }
    Ok(())
}

/// Submits the members of `sweep` that are neither done nor queued, as one array job, and
/// (unless --no-summary-job) the job that writes the summary after it.
pub fn submit_sweep(sweep: &Sweep, args: &TrainArgs) -> Result<()> {
    let dir = std::path::absolute(&sweep.dir)
        .with_context(|| format!("{}: cannot make the path absolute", sweep.dir.display()))?;
    let sweep = Sweep {
        dir,
        spec: sweep.spec.clone(),
    };
    if let Some(why) = slurm::local_path_reason(&sweep.dir) {
        eprintln!(
            "warning: the sweep folder {} may not be visible to the cluster's nodes: {why}; put sweeps on a shared file system (e.g. --runs-dir in your home or project folder)",
            sweep.dir.display()
        );
    }
    let _lock = sweep.lock()?;
    let statuses = slurm::member_statuses(&sweep)?;
    let todo: Vec<usize> = statuses
        .iter()
        .filter(|s| !matches!(s.state, State::Done | State::Pending | State::Running))
        .map(|s| s.index)
        .collect();
    if todo.is_empty() {
        let done = statuses.iter().all(|s| s.state == State::Done);
        println!(
            "sweep {}: nothing to submit ({}); see gtk sweep status {}",
            sweep.dir.display(),
            if done {
                "every member is done"
            } else {
                "the members not done are queued or running"
            },
            sweep.dir.display()
        );
        return Ok(());
    }
    if todo
        .iter()
        .any(|&i| statuses[i].state == State::NotStarted && statuses[i].step == 0)
    {
        sweep.check_task_set()?;
    }
    let table = gatekit::config::slurm_resources(sweep.spec.task_set.as_deref())?;
    let res = table
        .unwrap_or_default()
        .overridden_by(&flag_resources(args)?);
    let gtk = std::env::current_exe().context("cannot find the gtk executable")?;
    let data_dir = match &args.data.data_dir {
        Some(d) => Some(std::path::absolute(d).with_context(|| d.display().to_string())?),
        None => None,
    };
    let script = slurm::array_script(
        &sweep,
        &res,
        &ArrayScript {
            gtk: &gtk,
            data_dir: data_dir.as_deref(),
            allow_changed_data: args.allow_changed_data,
        },
    );
    let sub = slurm::submit(&sweep, &script, &todo, args.jobs).map_err(|e| {
        anyhow::anyhow!(
            "{e}; the sweep folder is kept: submit it again with `gtk train --resume {} --launcher slurm` and other resources",
            sweep.dir.display()
        )
    })?;
    let summary = if args.slurm.no_summary_job {
        String::new()
    } else {
        let id = slurm::submit_summary_job(&sweep, &gtk, sub.job_id)?;
        format!("; job {id} writes the summary after it")
    };
    println!(
        "sweep {}: {} member{} submitted as Slurm array job {} (--array={}, script {}){summary}",
        sweep.dir.display(),
        todo.len(),
        if todo.len() == 1 { "" } else { "s" },
        sub.job_id,
        slurm::array_ranges(&todo),
        sub.script,
    );
    println!("follow it with: gtk sweep status {}", sweep.dir.display());
    Ok(())
}
