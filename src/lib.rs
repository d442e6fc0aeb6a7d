//! gatekit: train one neural network on many related tasks with conditional weights, and ship
//! each task's model anywhere.
//!
//! Every gated layer's effective parameter is `θ = W ⊙ g(M_t)`: `W` is shared by all tasks and
//! `M_t` is one real-valued mask of the same shape per task; with the sigmoid gate `g = σ` each
//! weight is switched on or off per task ("Like A Light Switch: Conditional Weights for
//! Meta-Learning"). The paper's baselines, `shared` (one plain model) and `separate` (one model
//! per task), run through the same code.
//!
//! The modules, bottom layer first (`tests/layering.rs` holds the order: a module uses only
//! the layers below it; the book's "Architecture" page draws it):
//! - [`error`], [`rng`]: the library's error type; seeded random streams
//! - [`kernel`]: hand-written CPU ops (conv2d, max-pool) with their own backward passes: single
//!   operations on slices, knowing nothing of layers, tasks or training
//! - [`run_folder`]: the run folder: one writer, atomic commits (and atomic output files,
//!   [`run_folder::fsio::write_atomic`]), verified read-only snapshots
//! - [`tfevents`]: the TensorBoard event-file format
//! - [`optim`]: optimizer settings and the reference optimizers (SGD, momentum, Adam)
//! - [`plot`]: figures drawn to PNG and SVG (colours, headers, line panels, embedded font)
//! - [`params`]: the names of a run's tensors ([`params::ParamKey`]), [`params::TaskId`] and
//!   [`params::ModelId`]
//! - [`gate`]: gated layers, gate modes and the per-task [`gate::MaskBank`]
//! - [`layers`]: the layer types, one file each: shapes, reference forward, engine op and
//!   ONNX nodes
//! - [`data`], [`model`]: dataset files (IDX/MNIST); architecture files and the network
//! - [`task`]: the [`task::Task`] trait and the self-registering task kinds
//! - `engine` (private): the fast fused training step over plain `f32` buffers
//! - [`config`]: task-set files and the resolved run configuration
//! - [`learn`]: the strategies and their learners (one training step, fast or reference)
//! - [`run`]: a run folder read-only at its last commit ([`run::Run`]: measure, evaluate) and
//!   the formats of its files (checkpoint, state, metrics, TensorBoard)
//! - [`train`]: the loop ([`train::Trainer`]), the only writer of a run
//! - [`export`], [`report`], [`adapt`]: 1-bit masks and ONNX per task; figures and reports;
//!   new tasks on a trained run
//! - [`serve`]: an HTTP server holding one `W` and every task's 1-bit mask, answering any task
//!   (a reader of exports and runs, like export and report)
//! - [`sweep`]: one run per seed and the summary over seeds (confidence intervals, paired tests)
#![deny(missing_docs)]

pub mod adapt;
pub mod config;
pub mod data;
mod engine;
pub mod error;
pub mod export;
pub mod gate;
pub mod kernel;
pub mod layers;
pub mod learn;
pub mod model;
pub mod optim;
pub mod params;
pub mod plot;
pub mod report;
pub mod rng;
pub mod run;
pub mod run_folder;
pub mod serve;
pub mod sweep;
pub mod task;
pub mod tfevents;
pub mod train;

pub use config::TaskSet;
pub use error::{Error, Result};
pub use gate::{GateMode, MaskBank};
pub use learn::Strategy;
pub use model::{ModelSpec, Network};
pub use run::Run;
pub use task::{Task, TaskKind};
pub use train::Trainer;

/// Re-exported so task kinds outside this crate can register with `gatekit::inventory::submit!`.
pub use inventory;
