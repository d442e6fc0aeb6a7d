//! Sweeps over seeds: one normal run folder per seed inside a sweep folder, and the summary
//! over seeds (mean, Student-t confidence interval, paired differences and tests) that
//! turns single runs into results with error bars.
//!
//! - [`parse_seeds`]: `0..5`, `0..=4`, `0,3,7`
//! - [`Sweep`]: the sweep folder, `sweep.json` and where each seed's run stands
//! - [`Summary`]: `summary.json` and its Markdown tables
//! - [`stats`]: the t distribution, intervals and the paired t-test
//! - [`GridSummary`], [`grid_figure_data`]: a grid's ranking (on the validation split when the
//!   runs hold one out) and its figures, one per swept key
//! - [`write_sweep_report`]: `gtk report SWEEP`
//! - [`slurm`]: launching a sweep's members as a Slurm array job, and their status

mod figures;
mod folder;
mod grid_figures;
mod report;
mod seeds;
pub mod slurm;
pub mod stats;
mod summary;

pub use figures::{BandPanel, BandSeries, SweepReport, band, metric_range, sweep_figure_data};
pub use folder::{
    Configuration, FORMAT, GridAxis, LOCK, MANIFEST, Member, MemberState, SUMMARY_JSON, SUMMARY_MD,
    Sweep, SweepSpec, grid_axes, grid_configurations, is_sweep, member_name,
};
pub use grid_figures::{GridKeyFigure, grid_figure_data};
pub use report::write_sweep_report;
pub use seeds::{MAX_SEEDS, parse_seeds};
pub use summary::{
    BINARIZED, CONFIDENCE, Cell, ConfigurationResult, GRID_SUMMARY_FORMAT, GridSummary, MEAN_ROW,
    MemberResult, Paired, SUMMARY_FORMAT, SelectionTest, Summary, UNDECIDED_ROW, format_interval,
    format_p, strategy_label,
};
