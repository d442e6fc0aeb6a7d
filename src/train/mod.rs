//! Training: task-set files and their resolved `[run]` table ([`TaskSet`], [`RunConfig`]), the
//! strategies ([`Learner`]), the task sampler and the loop ([`Trainer`]) with its run folder
//! (checkpoint, state, metrics) and TensorBoard sink.

mod backend;
mod binarization;
mod checkpoint;
mod config;
mod continual;
mod dump;
mod evaluation;
mod learner;
mod record;
mod sampler;
mod state;
mod strategy;
mod table;
mod task_set;
mod tensorboard;
mod trainer;

pub use crate::optim::{OptimizerConfig, OptimizerKind, Schedule};
pub use binarization::{
    ACCURACY_DROP, BinarizationWarning, MSE_RATIO, much_worse, undecided_range,
};
pub use checkpoint::{
    CHECKPOINT_FORMAT, CheckpointFile, CheckpointMeta, encode as checkpoint_encode,
    first_non_finite,
};
pub use config::{EngineChoice, MaskRecipe, Precision, RunConfig};
pub use continual::{ContinualSummary, TaskOrder, WPolicy};
pub use dump::{DumpSpec, Dumped, dump_examples};
pub use evaluation::{PROBE_SEED, probe_subset};
pub use learner::Learner;
pub use record::{GatedSummary, MetricsLog, Record, mean_test_metric, test_metrics};
pub use sampler::{SamplerMismatch, TaskSampler};
pub use state::{RunSnapshot, RunState};
pub use strategy::{Models, StepSettings, Strategy, StrategyLayout, UnknownStrategy};
pub use table::{ComparisonTable, NumberFormat, format_metric};
pub use task_set::TaskSet;
pub use tensorboard::{TensorBoardSink, write_events, write_run_events};
pub(crate) use trainer::check_state;
pub use trainer::{
    ChangedData, Event, Timing, Trainer, continual_summaries, files, histogram_every, latest_run,
    open_run, open_run_with, read_run_config,
};
