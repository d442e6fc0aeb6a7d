//! Training: task-set files and their resolved `[run]` table ([`TaskSet`], [`RunConfig`]), the
//! strategies ([`Learner`]), the task sampler and the loop ([`Trainer`]) with its run folder
//! (checkpoint, state, metrics) and TensorBoard sink.

mod backend;
mod checkpoint;
mod config;
mod continual;
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
pub use checkpoint::{
    CHECKPOINT_FORMAT, CheckpointFile, CheckpointMeta, encode as checkpoint_encode,
    first_non_finite,
};
pub use config::{EngineChoice, MaskRecipe, Precision, RunConfig};
pub use continual::{ContinualSummary, TaskOrder, WPolicy};
pub use evaluation::{PROBE_SEED, probe_subset};
pub use learner::Learner;
pub use record::{GatedSummary, MetricsLog, Record, mean_test_metric, test_metrics};
pub use sampler::{SamplerMismatch, TaskSampler};
pub use state::{RunSnapshot, RunState};
pub use strategy::{Models, StepSettings, Strategy, StrategyLayout, UnknownStrategy};
pub use table::{ComparisonTable, format_metric};
pub use task_set::TaskSet;
pub use tensorboard::{TensorBoardSink, write_events, write_run_events};
pub(crate) use trainer::check_state;
pub use trainer::{
    Event, Timing, Trainer, continual_summaries, files, latest_run, open_run, read_run_config,
};
