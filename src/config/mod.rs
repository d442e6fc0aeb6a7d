//! What a user writes to describe a run, parsed and checked: task-set files ([`TaskSet`]) and
//! their resolved `[run]` table ([`RunConfig`], grouped by what each value controls; files
//! keep the flat keys), with the schedule and `W` policies of continual learning. A room of its own so that every reader of a run (eval, export, report,
//! adapt) and the trainer share one parser without depending on each other.

mod launcher;
mod order;
mod run_config;
mod run_table;
mod scenario;
pub mod settings;
mod task_set;

pub use crate::optim::{OptimizerConfig, OptimizerKind, Schedule};
pub use launcher::{DEFAULT_MAX_REQUEUES, SlurmResources, slurm_resources};
pub use order::{TaskOrder, WPolicy};
pub use run_config::{
    Continual, EngineChoice, EvalSplit, Evaluation, Gates, MaskRecipe, Precision, RunConfig,
    TaskSchedule, WeightOptimizer,
};
pub use scenario::Scenario;
pub use settings::{RUN_KEYS, Setting};
pub use task_set::TaskSet;
