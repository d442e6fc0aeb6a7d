//! `gtk eval [RUN]` and `gtk eval --onnx FILE`: read a run (or an exported model) and print its
//! test metrics; nothing is written.

use crate::cli::{EvalArgs, InferSignalArg, PickVariantArg, RuntimeArg};
use anyhow::Result;
use candle_core::Device;
use gatekit::adapt::infer::{InferConfig, InferReport, InferSignal, infer_tasks};
use gatekit::adapt::{MixGates, PickVariant};
use gatekit::export::check::{Runtime, evaluate_onnx};
use gatekit::train::{format_metric, open_run_with};

pub fn run(args: EvalArgs) -> Result<()> {
    let data = args.data.data_dir.clone();
    if let Some(file) = &args.onnx {
        let runtime = match args.runtime {
            RuntimeArg::Reference => Runtime::Reference,
            RuntimeArg::Tract => Runtime::Tract,
            RuntimeArg::Candle => Runtime::Candle,
        };
        let r = evaluate_onnx(file, args.task.as_deref(), data.as_deref(), runtime)?;
        println!(
            "{}: task {} test {} {} on {} examples ({})",
            file.display(),
            r.task,
            r.metric_name,
            format_metric(r.metric),
            r.examples,
            runtime.name()
        );
        return Ok(());
    }
    // Like export and report: no RUN means the most recently trained run.
    let run = match &args.run {
        Some(run) => run.clone(),
        None => gatekit::train::latest_run(&args.runs_dir.runs_dir)?,
    };
    let run = run.as_path();
    let trainer = open_run_with(
        run,
        data.as_deref(),
        &Device::Cpu,
        crate::runs::changed_data(args.allow_changed_data),
    )?;
    for note in trainer.notes() {
        eprintln!("note: {note}");
    }
    if !args.quiet.quiet && !args.json {
        println!(
            "evaluating run {} at step {} (read only)",
            run.display(),
            trainer.step()
        );
    }
    if let Some(signal) = args.infer_task {
        let report = infer_tasks(&trainer, &infer_config(&args, signal))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print_inference(&report);
        }
        return Ok(());
    }
    let records = trainer.evaluate()?;
    crate::results::print_results(&trainer, &records)?;
    if let Some(new) = adapted_tasks(run).filter(|_| !args.quiet.quiet) {
        println!(
            "adapted run: for the new tasks ({}) `gated` is the mask gtk adapt stored and `separate` its from-scratch model, but `shared` is the run's shared model as trained, not fine-tuned (gtk adapt's `shared (fine-tuned)` row is not stored)",
            new.join(", ")
        );
    }
    Ok(())
}

/// The new tasks of an adapted run (from its `adapt.json`), if it is one.
fn adapted_tasks(run: &std::path::Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(run.join(gatekit::adapt::folder::SUMMARY)).ok()?;
    let summary: gatekit::adapt::AdaptSummary = serde_json::from_str(&text).ok()?;
    Some(summary.tasks.iter().map(|t| t.task.clone()).collect())
}

/// The library's settings from the `--infer-*` flags.
fn infer_config(args: &EvalArgs, signal: InferSignalArg) -> InferConfig {
    InferConfig {
        signal: match signal {
            InferSignalArg::Entropy => InferSignal::Entropy,
            InferSignalArg::Logsumexp => InferSignal::Logsumexp,
        },
        variant: match args.infer_variant {
            PickVariantArg::OneShot => PickVariant::OneShot,
            PickVariantArg::Halving => PickVariant::Halving,
        },
        gates: if args.infer_binary {
            MixGates::Binary
        } else {
            MixGates::Soft
        },
        batch: args.infer_batch,
        limit: args.infer_limit,
        used_outputs: args.used_outputs,
        profile_examples: args.profile_masks,
    }
}

/// One line per task, then the means.
fn print_inference(r: &InferReport) {
    println!(
        "task inferred by {} ({}, {} gradient(s) per batch of {}), step {}",
        r.config.signal.as_str(),
        r.config.variant.as_str(),
        r.rounds,
        r.config.batch,
        r.step
    );
    println!("task        batches  inferred  acc. task inferred  acc. task given");
    for t in &r.tasks {
        let inferred = 100.0 * t.inferred as f64 / t.batches.max(1) as f64;
        let cells = [
            format!("{inferred:.1} %"),
            format!("{:.2} %", 100.0 * t.accuracy_inferred),
            format!("{:.2} %", 100.0 * t.accuracy_given),
        ];
        println!(
            "{:<10} {:>8} {:>9} {:>19} {:>16}",
            t.task, t.batches, cells[0], cells[1], cells[2]
        );
    }
    if !r.profiles.is_empty() {
        println!("mask      density  mean gate  logit norm own/other  max-softmax own/other");
        for p in &r.profiles {
            println!(
                "{:<9} {:>7.3} {:>10.3} {:>10.2} / {:<9.2} {:>6.3} / {:.3}",
                p.task,
                p.density,
                p.mean_gate,
                p.own_logit_norm,
                p.other_logit_norm,
                p.own_max_softmax,
                p.other_max_softmax
            );
        }
    }
    println!(
        "mean over {} tasks: inference {:.2} %, accuracy with the task inferred {:.2} %, given {:.2} %",
        r.tasks.len(),
        100.0 * r.inference_accuracy,
        100.0 * r.accuracy_inferred,
        100.0 * r.accuracy_given
    );
}
