//! `gtk report`.

use crate::cli::ReportArgs;
use anyhow::{Context, Result};
use gatekit::report::write_report;
use std::path::{Path, PathBuf};

pub fn run(args: ReportArgs) -> Result<()> {
    let runs = if args.runs.is_empty() {
        vec![latest_run(&args.runs_dir)?]
    } else {
        args.runs.clone()
    };
    let out = args.out.clone().unwrap_or_else(|| runs[0].join("report"));
    let summary = write_report(&runs, &out)?;
    let figures = summary.figures.len() / 2;
    println!(
        "wrote {figures} figures (PNG and SVG), {} and {}",
        summary.markdown.display(),
        summary.html.display()
    );
    for tb in &summary.tensorboard {
        println!("wrote TensorBoard events {}", tb.display());
    }
    let logdirs: Vec<String> = runs
        .iter()
        .map(|r| r.join("tb").display().to_string())
        .collect();
    println!("view with: tensorboard --logdir {}", logdirs.join(","));
    Ok(())
}

/// The run folder under `runs` whose state was written last.
fn latest_run(runs: &Path) -> Result<PathBuf> {
    let entries = std::fs::read_dir(runs).with_context(|| {
        format!(
            "{}: no runs folder; train first with `gtk train`",
            runs.display()
        )
    })?;
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for e in entries.flatten() {
        let state = e.path().join("state.json");
        if let Ok(m) = std::fs::metadata(&state).and_then(|m| m.modified())
            && best.as_ref().is_none_or(|(t, _)| m > *t)
        {
            best = Some((m, e.path()));
        }
    }
    best.map(|(_, p)| p).with_context(|| {
        format!(
            "{}: no finished run found; train first with `gtk train`",
            runs.display()
        )
    })
}
