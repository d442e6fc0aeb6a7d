//! `gtk export`.

use crate::cli::ExportArgs;
use anyhow::{Result, bail};
use candle_core::Device;
use gatekit::export::{ExportOptions, export_into};
use gatekit::run::BnRecalibration;
use gatekit::run_folder::OutputDir;
use gatekit::train::{format_metric, open_run_with};
use std::path::PathBuf;

pub fn run(args: ExportArgs) -> Result<()> {
    let run_dir = match &args.run {
        Some(r) => r.clone(),
        None => gatekit::train::latest_run(&args.runs_dir.runs_dir)?,
    };
    if args.rescale && !args.binarize {
        bail!("--rescale applies to binarized masks: add --binarize");
    }
    let name = run_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("run")
        .to_string();
    let out = match &args.out {
        Some(out) => out.clone(),
        None => OutputDir::free_default(&PathBuf::from("exports").join(&name)),
    };
    // Claimed before the run is read, so a bad --out fails before any work.
    let out = OutputDir::claim(&out, "export", &[&run_dir], args.force)?;
    let trainer = open_run_with(
        &run_dir,
        args.data.data_dir.as_deref(),
        &Device::Cpu,
        crate::runs::changed_data(args.allow_changed_data),
    )?;
    for note in trainer.notes() {
        eprintln!("note: {note}");
    }
    let tasks = args.tasks.as_ref().map(|t| {
        t.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    let opts = ExportOptions {
        binarize: args.binarize,
        rescale: args.rescale,
        tasks,
        bn: BnRecalibration {
            batches: args.bn_batches,
        },
    };
    let summary = export_into(&trainer, out, &opts)?;
    println!(
        "exported {} (step {}) to {}",
        run_dir.display(),
        trainer.step(),
        summary.out.display()
    );
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>8} {:>10}",
        "task",
        format!("soft {}", short(&summary.metric)),
        "binarized",
        "rescaled",
        "off",
        "onnx bytes"
    );
    for t in &summary.tasks {
        println!(
            "{:<12} {:>10} {:>10} {:>10} {:>7.1}% {:>10}",
            t.task,
            format_metric(t.soft),
            format_metric(t.binary),
            format_metric(t.rescaled),
            100.0 * t.off,
            t.onnx_bytes
        );
    }
    if args.quiet.quiet {
        return Ok(());
    }
    println!(
        "masks.safetensors: {} bytes ({} packed mask bytes; as float32 masks {} bytes, {:.1}x larger)",
        summary.masks_bytes,
        summary.masks_payload_bytes,
        summary.masks_f32_bytes,
        summary.masks_f32_bytes as f64 / summary.masks_bytes.max(1) as f64
    );
    println!(
        "weights.safetensors: {} bytes; all_tasks.onnx: {} bytes",
        summary.weights_bytes, summary.all_tasks_bytes
    );
    if let Some(warning) = summary.binarization_warning(&trainer)? {
        eprintln!("{warning}");
    }
    Ok(())
}

fn short(metric: &str) -> &str {
    if metric == "accuracy" { "acc" } else { metric }
}
