//! `gtk report`.

use crate::cli::ReportArgs;
use anyhow::{Result, bail};
use gatekit::report::write_report_into;
use gatekit::run_folder::OutputDir;

pub fn run(args: ReportArgs) -> Result<()> {
    let runs = if args.runs.is_empty() {
        vec![gatekit::train::latest_run(&args.runs_dir.runs_dir)?]
    } else {
        args.runs.clone()
    };
    let out = match &args.out {
        Some(out) => out.clone(),
        None => {
            OutputDir::free_default(&std::path::PathBuf::from("reports").join(default_name(&runs)))
        }
    };
    let reads: Vec<&std::path::Path> = runs.iter().map(|r| r.as_path()).collect();
    if let Some(sweep) = runs.iter().find(|r| gatekit::sweep::is_sweep(r)) {
        if runs.len() > 1 {
            bail!(
                "{} is a sweep: report it alone (`gtk report {}`), or give its seeds' runs (seed-N) side by side",
                sweep.display(),
                sweep.display()
            );
        }
        let out = OutputDir::claim(&out, "report", &reads, args.force)?;
        let report = gatekit::sweep::write_sweep_report(sweep, out)?;
        println!(
            "wrote {} figures (PNG and SVG), {} and {}",
            report.figures.len() / 2,
            report.markdown.display(),
            report.html.display()
        );
        return Ok(());
    }
    let out = OutputDir::claim(&out, "report", &reads, args.force)?;
    let summary = write_report_into(&runs, out)?;
    let figures = summary.figures.len() / 2;
    println!(
        "wrote {figures} figures (PNG and SVG), {} and {}",
        summary.markdown.display(),
        summary.html.display()
    );
    if args.quiet.quiet {
        return Ok(());
    }
    for tb in &summary.tensorboard {
        println!("wrote TensorBoard events {}", tb.display());
    }
    println!("view with: {}", gatekit::report::tensorboard_command(&runs));
    Ok(())
}

/// The default report folder's name: the run's name, or the runs' names joined by `+` (so the
/// report comparing A and B is not A's own report folder).
fn default_name(runs: &[std::path::PathBuf]) -> String {
    let names: Vec<String> = runs
        .iter()
        .map(|r| {
            // `.` or `runs/x/..` have no file name of their own: use the folder's real name.
            std::fs::canonicalize(r)
                .ok()
                .as_deref()
                .unwrap_or(r)
                .file_name()
                .map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned())
        })
        .collect();
    names.join("+")
}
