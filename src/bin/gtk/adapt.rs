//! `gtk adapt RUN --task-set NEW.toml`.

use crate::cli::{AdaptArgs, MethodArg, PickVariantArg};
use anyhow::{Result, bail};
use gatekit::adapt::{AdaptEvent, AdaptJob, AdaptSummary, Method, NewTasks, PickVariant, adapt};
use gatekit::run_folder::OutputDir;
use gatekit::train::{format_metric, read_run_config};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;

pub fn run(args: AdaptArgs) -> Result<()> {
    let run_set = read_run_config(&args.run)?;
    let mut new = NewTasks::load(&args.task_set, &run_set)?;
    let cfg = &mut new.config;
    if let Some(m) = args.method {
        cfg.method = match m {
            MethodArg::Pick => Method::Pick,
            MethodArg::Mix => Method::Mix,
            MethodArg::Mask => Method::Mask,
        };
    }
    for (flag, value, slot) in [
        ("--shots", args.shots, &mut cfg.shots),
        ("--steps", args.steps, &mut cfg.steps),
    ] {
        if let Some(v) = value {
            if v == 0 {
                bail!("{flag} must be a positive integer, got 0");
            }
            *slot = v;
        }
    }
    if let Some(v) = args.pick_variant {
        cfg.pick.variant = match v {
            PickVariantArg::OneShot => PickVariant::OneShot,
            PickVariantArg::Halving => PickVariant::Halving,
        };
    }
    if let Some(n) = args.meta_iterations {
        cfg.meta.iterations = n;
    }
    cfg.compare |= args.compare;
    cfg.baselines &= !args.no_baselines;
    let out = args.out.clone().unwrap_or_else(|| {
        let run = args
            .run
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("run");
        let stem = args
            .task_set
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or("adapt");
        let name = format!("{run}-{stem}");
        // A second adaptation with the same file gets `-2`, … instead of a refusal.
        OutputDir::free_default(&match args.run.parent() {
            Some(p) => p.join(name),
            None => PathBuf::from(name),
        })
    });
    let job = AdaptJob {
        run: &args.run,
        new: &new,
        out: &out,
        data_dir: args.data.data_dir.as_deref(),
        changed_data: crate::runs::changed_data(args.allow_changed_data),
    };
    let show = !args.quiet.quiet && std::io::stdout().is_terminal();
    let mut bar: Option<ProgressBar> = None;
    let quiet = args.quiet.quiet;
    let summary = adapt(&job, &mut |e| match e {
        AdaptEvent::Start { steps } if show => {
            let b = ProgressBar::new(steps as u64);
            b.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} steps  eta {eta}  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar = Some(b);
        }
        AdaptEvent::Stage { task, what } => match &bar {
            Some(b) => b.set_message(format!("{task}: {what}")),
            None if !quiet => println!("{task}: {what}"),
            None => {}
        },
        AdaptEvent::Step => {
            if let Some(b) = &bar {
                b.inc(1);
            }
        }
        AdaptEvent::Start { .. } => {}
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    print_summary(&summary?);
    Ok(())
}

fn print_summary(s: &AdaptSummary) {
    let c = &s.config;
    println!(
        "\nadapted {} -> {} with {} (K = {}, {} steps, batch {}); test {}:",
        s.run.display(),
        s.out.display(),
        c.method,
        c.shots,
        c.steps,
        s.batch_size,
        s.metric_name
    );
    let models: Vec<&str> = s
        .tasks
        .first()
        .map(|t| t.rows.iter().map(|r| r.model.as_str()).collect())
        .unwrap_or_default();
    let width = s
        .tasks
        .iter()
        .map(|t| t.task.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut header = format!("{:width$}", "task");
    for m in &models {
        header.push_str(&format!("  {m:>20}"));
    }
    println!("{header}");
    let objective = s.objective();
    for t in &s.tasks {
        let best = t.best_rows(objective);
        let mut line = format!("{:width$}", t.task);
        for (i, r) in t.rows.iter().enumerate() {
            let mark = match (best.contains(&i), r.stored) {
                (true, true) => "*†",
                (true, false) => "* ",
                (false, true) => " †",
                (false, false) => "  ",
            };
            let cell = match r.binarized {
                Some(b) => format!("{} ({})", format_metric(r.metric), format_metric(b)),
                None => format_metric(r.metric),
            };
            line.push_str(&format!("  {:>18}{mark}", cell));
        }
        println!("{line}");
    }
    println!(
        "(* best per task, every row of a tie; †: stored in the adapted run; in brackets: binarized masks W ⊙ 1[M > 0])"
    );
    println!(
        "(shared (fine-tuned) is not stored: `gtk eval` on the adapted run shows the shared model as trained)"
    );
    for t in &s.tasks {
        if let Some(p) = &t.pick {
            println!(
                "{}: pick chose `{}` on {} of {} {} batches ({}, {} gradient(s) each)",
                t.task,
                p.chosen,
                p.votes
                    .iter()
                    .find(|(n, _)| *n == p.chosen)
                    .map_or(0, |(_, v)| *v),
                p.trials,
                p.signal,
                p.variant,
                p.rounds
            );
        }
    }
}
