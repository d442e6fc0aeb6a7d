//! `gtk report`.

use crate::cli::ReportArgs;
use anyhow::Result;
use gatekit::report::write_report;

pub fn run(args: ReportArgs) -> Result<()> {
    let runs = if args.runs.is_empty() {
        vec![gatekit::train::latest_run(&args.runs_dir)?]
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
    println!("view with: {}", gatekit::report::tensorboard_command(&runs));
    Ok(())
}
