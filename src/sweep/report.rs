//! `gtk report SWEEP`: a sweep over seeds gets its curves with bands over seeds
//! ([`super::figures`]), a grid one figure per swept key ([`super::grid_figures`]).

use super::Sweep;
use super::figures::{SweepReport, write_seeds_report};
use super::grid_figures::write_grid_report;
use crate::error::Result;
use crate::run_folder::OutputDir;

/// Reads a finished sweep and writes its figures, `report.md` and `report.html` (the summary
/// tables and the figures) into the claimed folder `out`.
pub fn write_sweep_report(sweep_dir: &std::path::Path, out: OutputDir) -> Result<SweepReport> {
    let sweep = Sweep::open(sweep_dir)?;
    if sweep.is_grid() {
        write_grid_report(&sweep, out)
    } else {
        write_seeds_report(&sweep, out)
    }
}
