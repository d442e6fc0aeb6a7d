//! gatekit: train one neural network on many related tasks with conditional weights, and ship
//! each task's model anywhere.
//!
//! Every gated layer's effective parameter is `θ = W ⊙ g(M_t)`: `W` is shared by all tasks and
//! `M_t` is one real-valued mask of the same shape per task; with the sigmoid gate `g = σ` each
//! weight is switched on or off per task ("Like A Light Switch: Conditional Weights for
//! Meta-Learning"). The paper's baselines, `shared` (one plain model) and `separate` (one model
//! per task), run through the same code.
//!
//! - [`gate`]: gated layers, gate modes and the per-task [`gate::MaskBank`]
//! - [`model`]: architecture files and the network built from them
//! - [`task`]: the [`task::Task`] trait, the self-registering task kinds and task-set files
//! - [`train`]: strategies, optimizers, the sampler and the [`train::Trainer`]
//! - [`data`]: dataset files (IDX/MNIST), finding and fetching them
//! - [`export`]: 1-bit mask files and ONNX models per task
//! - [`kernel`]: hand-written CPU ops (conv2d, max-pool) with their own backward passes
//! - [`report`]: figures, `report.md`/`report.html` and TensorBoard event files for runs
//! - [`run_folder`]: the run folder: one writer, atomic commits, verified read-only snapshots
//! - [`sweep`]: one run per seed and the summary over seeds (confidence intervals, paired tests)
#![deny(missing_docs)]

pub mod adapt;
pub mod atomic;
pub mod data;
mod engine;
pub mod error;
pub mod export;
pub mod gate;
pub mod kernel;
pub mod model;
pub mod optim;
pub mod params;
pub mod report;
pub mod rng;
pub mod run_folder;
pub mod sweep;
pub mod task;
pub mod tfevents;
pub mod train;

pub use error::{Error, Result};
pub use gate::{GateMode, MaskBank};
pub use model::{ModelSpec, Network};
pub use task::{Task, TaskKind};
pub use train::{Strategy, TaskSet, Trainer};

/// Re-exported so task kinds outside this crate can register with `gatekit::inventory::submit!`.
pub use inventory;
