//! Training: the loop ([`Trainer`]) that steps a run's learners with one task sampler and is
//! the only writer of a run folder, and `gtk data dump`'s example writer. What a run is and
//! how it is read is [`crate::run`]; what a user writes is [`crate::config`]; the strategies
//! are [`crate::learn`]. Their public items are re-exported here, so `gatekit::train::X`
//! keeps naming them for code outside the library.

mod dump;
mod trainer;

pub use crate::config::{
    EngineChoice, MaskRecipe, OptimizerConfig, OptimizerKind, Precision, RunConfig, Schedule,
    TaskOrder, TaskSet, WPolicy,
};
pub use crate::learn::{Learner, Models, StepSettings, Strategy, StrategyLayout, UnknownStrategy};
pub use crate::run::{
    ACCURACY_DROP, BinarizationWarning, CHECKPOINT_FORMAT, ChangedData, CheckpointFile,
    CheckpointMeta, ComparisonTable, ContinualSummary, GatedSummary, MSE_RATIO, MetricsLog,
    NumberFormat, PROBE_SEED, Record, Run, RunSnapshot, RunState, SamplerMismatch, TaskSampler,
    TensorBoardSink, checkpoint_encode, continual_summaries, files, first_non_finite,
    format_metric, format_significant, latest_run, mean_test_metric, much_worse, open_run,
    open_run_with, probe_subset, read_run_config, test_metrics, undecided_range, write_events,
    write_run_events,
};
pub use dump::{DumpSpec, Dumped, dump_examples};
pub use trainer::{Event, Timing, Trainer, histogram_every};
