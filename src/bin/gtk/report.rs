//! `gtk report`.

use crate::cli::ReportArgs;
use anyhow::{Result, bail};
use gatekit::report::write_report_into;
use gatekit::run_folder::OutputDir;

pub fn run(args: ReportArgs) -> Result<()> {
    let runs = if args.runs.is_empty() {
        vec![gatekit::train::latest_run(&args.runs_dir)?]
    } else {
        args.runs.clone()
    };
    let out = args.out.clone().unwrap_or_else(|| {
        let name = runs[0]
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "run".into());
        std::path::PathBuf::from("reports").join(name)
    });
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
    for tb in &summary.tensorboard {
        println!("wrote TensorBoard events {}", tb.display());
    }
    println!("view with: {}", gatekit::report::tensorboard_command(&runs));
    Ok(())
}
