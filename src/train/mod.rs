//! Training: the strategies ([`Learner`]), the optimizers, the task sampler and the loop
//! ([`Trainer`]) with its run folder (checkpoint, state, metrics).

mod checkpoint;
mod continual;
mod evaluation;
mod learner;
mod optim;
mod record;
mod sampler;
mod table;
mod trainer;

pub use checkpoint::{
    CHECKPOINT_FORMAT, CheckpointFile, CheckpointMeta, encode as checkpoint_encode,
    first_non_finite,
};
pub use continual::{ContinualSummary, TaskOrder, WPolicy};
pub use evaluation::{PROBE_SEED, probe_subset};
pub use learner::{Learner, StepSettings, Strategy};
pub use optim::{Optimizer, OptimizerConfig, OptimizerKind, Schedule};
pub use record::{MetricsLog, Record, mean_test_metric, test_metrics};
pub use sampler::TaskSampler;
pub use table::{ComparisonTable, format_metric};
pub use trainer::{
    Event, RunSnapshot, RunState, Timing, Trainer, continual_summaries, files, latest_run,
    open_run, read_run_config,
};
