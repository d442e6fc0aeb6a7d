//! `gtk train`.

use crate::cli::{StrategyArg, TrainArgs};
use crate::progress::Progress;
use anyhow::{Context, Result, bail};
use candle_core::Device;
use gatekit::TaskSet;
use gatekit::run_folder::Overrides;
use gatekit::train::{
    BinarizationWarning, GatedSummary, Record, Strategy, TaskOrder, Trainer, format_metric,
};
use std::path::{Path, PathBuf};

pub fn run(args: TrainArgs) -> Result<()> {
    let origin = std::time::Instant::now();
    if args.exit_with_parent {
        crate::sweep::exit_when_stdin_closes();
    }
    let resumes_sweep = args.resume.as_deref().is_some_and(gatekit::sweep::is_sweep);
    if args.seeds.is_some() || resumes_sweep {
        return crate::sweep::run(args);
    }
    if args.jobs.is_some() || args.threads_per_run.is_some() {
        if let Some(dir) = &args.resume {
            // Names the folder and why it is not a sweep (a plain run, or neither).
            gatekit::sweep::Sweep::open(dir)?;
        }
        bail!(
            "--jobs and --threads-per-run are for sweeps: give --seeds (e.g. --seeds 0..5), or --resume a sweep folder"
        );
    }
    let device = Device::Cpu;
    let data = args.data.data_dir.clone();
    let quiet = args.quiet.quiet;
    let mut trainer = match &args.resume {
        Some(dir) => {
            let overrides = Overrides {
                lr: args.lr,
                mask_lr: args.mask_lr,
            };
            let changed = crate::changed_data(args.allow_changed_data);
            let t = Trainer::resume_with(dir, data.as_deref(), &device, overrides, changed)?;
            // Notes say what changed on resume (accepted data changes, new rates): printed
            // with --quiet too.
            for note in t.notes() {
                eprintln!("note: {note}");
            }
            t
        }
        None => {
            let mut set = match &args.task_set {
                Some(path) => TaskSet::load(path)?,
                None => TaskSet::builtin()?,
            };
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
            let strategies = strategies(&args.strategy, set.run.schedule)?;
            let dir = run_dir(
                &args.runs_dir.runs_dir,
                args.name.as_deref(),
                args.task_set.as_deref(),
            )?;
            Trainer::create(set, &strategies, &dir, data.as_deref(), &device)?
        }
    };
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
    Ok(())
}

pub fn print_results(trainer: &gatekit::Run, records: &[Record]) -> Result<()> {
    println!("\n{}", trainer.table(records)?);
    let summary = GatedSummary::of(records);
    if let Some(mean) = summary.binarized_metric {
        let metric = records
            .iter()
            .find_map(|r| match r {
                Record::Eval { metric_name, .. } => Some(metric_name.as_str()),
                _ => None,
            })
            .unwrap_or("metric");
        println!(
            "gated, binarized masks W ⊙ 1[M > 0]: test {metric} {} (mean over tasks)",
            format_metric(mean)
        );
        let parts: Vec<String> = summary
            .off_share
            .iter()
            .map(|(p, off)| format!("{p} {:.1}%", 100.0 * off))
            .collect();
        println!(
            "gated, weights switched off (mean over tasks): {}",
            parts.join(", ")
        );
    }
    if let Some(recovered) = summary.recovered {
        println!(
            "gated, generating mask entries recovered (identifiable entries): {:.1}% mean over tasks",
            100.0 * recovered
        );
    }
    if let Some(warning) = BinarizationWarning::from_records(records, &trainer.task_set().run) {
        eprintln!("{warning}");
    }
    print_continual(trainer)?;
    Ok(())
}

/// The strategies of `--strategy LIST` for a task set of `schedule`: `all` stands for every
/// strategy of the schedule, so it comes alone; a strategy named twice is refused rather than
/// trained once without a word.
pub fn strategies(list: &[StrategyArg], schedule: TaskOrder) -> Result<Vec<Strategy>> {
    let mut out: Vec<Strategy> = Vec::with_capacity(list.len());
    for s in list {
        let s = match s {
            StrategyArg::All if list.len() == 1 => return Ok(Strategy::all_for(schedule)),
            StrategyArg::All => bail!(
                "--strategy: `all` already stands for every strategy of the schedule; give it alone or list strategies without it"
            ),
            StrategyArg::Gated => Strategy::Gated,
            StrategyArg::Shared => Strategy::Shared,
            StrategyArg::Separate => Strategy::Separate,
            StrategyArg::Finetune => Strategy::Finetune,
            StrategyArg::Joint => Strategy::Joint,
        };
        if out.contains(&s) {
            bail!("--strategy lists `{s}` twice");
        }
        out.push(s);
    }
    Ok(out)
}

/// Sequential runs: each strategy's accuracy matrix, then average, backward transfer and
/// forgetting side by side.
fn print_continual(trainer: &gatekit::Run) -> Result<()> {
    if trainer.task_set().run.schedule != TaskOrder::Sequential {
        return Ok(());
    }
    let summaries = trainer.continual_summaries()?;
    if summaries.is_empty() {
        println!("continual learning: the accuracy matrix is complete once every phase has ended");
        return Ok(());
    }
    for s in &summaries {
        println!("\n{}", s.matrix_table(trainer.task_set().run.phase_steps));
    }
    let metric = &summaries[0].metric_name;
    println!(
        "{:<10} {:>12} {:>18} {:>12}",
        "strategy",
        format!("average {metric}"),
        "backward transfer",
        "forgetting"
    );
    for s in &summaries {
        println!(
            "{:<10} {:>12} {:>18} {:>12}",
            s.strategy,
            format_metric(s.average),
            if s.is_sequential() {
                format!("{:+.4}", s.backward_transfer)
            } else {
                "-".into()
            },
            if s.is_sequential() {
                format!("{:.4}", s.forgetting)
            } else {
                "-".into()
            }
        );
    }
    if summaries.iter().any(|s| !s.is_sequential()) {
        println!("(joint trains on every task throughout: no backward transfer or forgetting)");
    }
    Ok(())
}

/// `runs/<name>` or `runs/<task-set>-<UTC time>`.
pub fn run_dir(runs: &Path, name: Option<&str>, task_set: Option<&Path>) -> Result<PathBuf> {
    if let Some(name) = name {
        if let Err(why) = gatekit::task::check_portable_name(name) {
            bail!("--name `{name}` {why}");
        }
        return Ok(runs.join(name));
    }
    let stem = task_set
        .and_then(|p| p.file_stem())
        .and_then(|s| s.to_str())
        .unwrap_or("sinusoid");
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("system clock before 1970")?
        .as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let base = format!(
        "{stem}-{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    let mut dir = runs.join(&base);
    let mut n = 2;
    while dir.exists() {
        dir = runs.join(format!("{base}-{n}"));
        n += 1;
    }
    Ok(dir)
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
