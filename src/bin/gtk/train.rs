//! `gtk train`.

use crate::cli::TrainArgs;
use crate::progress::Progress;
use crate::results::print_results;
use crate::runs::{run_dir, strategies};
use anyhow::{Result, bail};
use candle_core::Device;
use gatekit::run_folder::Overrides;
use gatekit::train::Trainer;

pub fn run(args: TrainArgs) -> Result<()> {
    let origin = std::time::Instant::now();
    if args.exit_with_parent {
        crate::runs::exit_when_stdin_closes();
    }
    let resumes_sweep = args.resume.as_deref().is_some_and(gatekit::sweep::is_sweep);
    if args.seeds.is_some() || resumes_sweep {
        return crate::sweep::run(args);
    }
    let slurm = args.launcher == crate::cli::LauncherArg::Slurm;
    if args.jobs.is_some() || args.threads_per_run.is_some() || slurm {
        if let Some(dir) = &args.resume {
            // Names the folder and why it is not a sweep (a plain run, or neither).
            gatekit::sweep::Sweep::open(dir)?;
        }
        bail!(
            "--jobs, --threads-per-run and --launcher are for sweeps: give --seeds (e.g. --seeds 0..5), or --resume a sweep folder"
        );
    }
    crate::launch::refuse_slurm_flags(&args)?;
    // Before the (possibly long) loading, so a SIGTERM then still ends in a commit.
    let stop = crate::stop::on_signal();
    let device = Device::Cpu;
    let quiet = args.quiet.quiet;
    let mut trainer = open_trainer(&args, &device)?;
    let total = trainer.task_set().run.steps;
    if !quiet {
        let set = trainer.task_set();
        let strategies: Vec<String> = trainer
            .learners()
            .iter()
            .map(|l| l.strategy().to_string())
            .collect();
        println!(
            "training {} tasks with model `{}` ({}), {} steps, run folder {}",
            set.tasks.len(),
            set.model.name,
            strategies.join(", "),
            total,
            trainer.dir().display()
        );
    }
    trainer.set_origin(origin);
    trainer.stop_when(stop);
    let mut progress = Progress::new(total, quiet);
    let every = (total / 200).max(1);
    let progress_lines = args.progress_lines;
    trainer.train(args.stop_at, &mut |e| {
        if progress_lines
            && let gatekit::train::Event::Step { step, total, .. } = &e
            && (step.is_multiple_of(every) || step == total)
        {
            println!("@step {step}/{total}");
        }
        progress.on(e)
    })?;
    progress.finish();
    if trainer.stop_requested() && trainer.step() < total {
        return Err(crate::stop::Stopped {
            step: trainer.step(),
            total,
            dir: trainer.dir().to_path_buf(),
        }
        .into());
    }
    let records = match trainer.last_evaluation() {
        Some(records) => records.to_vec(),
        None => trainer.evaluate()?,
    };
    if trainer.step() < total {
        println!(
            "stopped at step {} of {total}; continue with: gtk train --resume {}",
            trainer.step(),
            trainer.dir().display()
        );
    }
    print_results(&trainer, &records)?;
    println!("run saved in {}", trainer.dir().display());
    if !quiet {
        print_timing(&trainer);
    }
    Ok(())
}

/// A new run from the task set and flags, or the run `--resume` names.
fn open_trainer(args: &TrainArgs, device: &Device) -> Result<Trainer> {
    let data = args.data.data_dir.clone();
    Ok(match &args.resume {
        Some(dir) => {
            let overrides = Overrides {
                lr: args.lr,
                mask_lr: args.mask_lr,
            };
            let changed = crate::runs::changed_data(args.allow_changed_data);
            let t = Trainer::resume_with(dir, data.as_deref(), device, overrides, changed)?;
            // Notes say what changed on resume (accepted data changes, new rates): printed
            // with --quiet too.
            for note in t.notes() {
                eprintln!("note: {note}");
            }
            t
        }
        None => {
            let settings = crate::sweep::single_settings(args)?;
            let mut set = gatekit::TaskSet::load_with(args.task_set.as_deref(), &settings)?;
            if let Some(seed) = args.seed {
                set.run.seed = seed;
            }
            if let Some(steps) = args.steps
                && let Some(note) = set.set_steps(steps)?
            {
                eprintln!("note: {note}");
            }
            // Recorded in the new run's config.toml like any task-set value.
            set.set_rates(args.lr, args.mask_lr)?;
            let strategies = strategies(&args.strategy, set.run.schedule.order)?;
            let dir = run_dir(
                &args.runs_dir.runs_dir,
                args.name.as_deref(),
                args.task_set.as_deref(),
            )?;
            Trainer::create(set, &strategies, &dir, data.as_deref(), device)?
        }
    })
}

/// How fast the loop ran, on which engine, and what evaluation cost.
fn print_timing(trainer: &Trainer) {
    let t = trainer.timing();
    let engines: Vec<String> = t.engines.iter().map(|(s, e)| format!("{s} {e}")).collect();
    println!(
        "training loop: {:.1} steps/s over {} steps, evals excluded ({} engine, {} thread{}){}",
        t.steps_per_second,
        t.loop_steps,
        engines.join(", "),
        t.threads,
        if t.threads == 1 { "" } else { "s" },
        t.first_step_seconds
            .map(|s| format!("; first step {s:.2} s after start"))
            .unwrap_or_default()
    );
    if let Some(why) = &t.engine_fallback {
        println!("reference engine: {why}");
    }
    if t.probes + t.full_evals > 0 {
        println!(
            "evaluation: {} probe{} {:.1} s, {} full evaluation{} {:.1} s; forward {:.0} {}/s",
            t.probes,
            if t.probes == 1 { "" } else { "s" },
            t.probe_seconds,
            t.full_evals,
            if t.full_evals == 1 { "" } else { "s" },
            t.full_eval_seconds,
            t.forward_images_per_second,
            trainer.example_noun()
        );
    }
}
