//! `gtk eval [RUN]` and `gtk eval --onnx FILE`: read a run (or an exported model) and print its
//! test metrics; nothing is written.

use crate::cli::{EvalArgs, RuntimeArg};
use anyhow::Result;
use candle_core::Device;
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
    if !args.quiet.quiet {
        println!(
            "evaluating run {} at step {} (read only)",
            run.display(),
            trainer.step()
        );
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
