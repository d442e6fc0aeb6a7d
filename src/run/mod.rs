//! A run as its readers see it: the read-only [`Run`] (config, tasks, learners at the last
//! commit; measure and evaluate), and the formats of the run folder's files: the checkpoint,
//! `state.json` with the sampler's state, `metrics.jsonl`'s records, TensorBoard events, the
//! comparison table and the continual-learning summary. `gtk eval`, `export`, `report` and
//! `adapt` depend on this room only; the trainer ([`crate::train`]) builds on it and is the
//! only writer of a run.

mod binarization;
mod checkpoint;
mod continual;
mod evaluation;
mod measure;
mod open;
mod recalibrate;
mod record;
mod sampler;
mod state;
mod table;
mod tensorboard;

pub use crate::run_folder::files;
pub use binarization::{
    ACCURACY_DROP, BinarizationWarning, MSE_RATIO, much_worse, undecided_range,
};
pub use checkpoint::{
    CHECKPOINT_FORMAT, CheckpointFile, CheckpointMeta, encode as checkpoint_encode,
    first_non_finite,
};
pub use continual::ContinualSummary;
pub(crate) use evaluation::{BatchSums, ModelParams, measure_all, model_params};
pub use evaluation::{PROBE_SEED, probe_subset};
pub use measure::continual_summaries;
pub use open::{ChangedData, Run, latest_run, open_run, open_run_with, read_run_config};
pub(crate) use open::{
    check_memory, check_state, check_strategies, data_fingerprints, learners_for, probed_len,
    probed_view,
};
pub use recalibrate::{BnRecalibration, DEFAULT_BN_BATCHES, recalibration_inputs};
pub use record::{GatedSummary, MetricsLog, Record, mean_test_metric, test_metrics};
pub use sampler::{SamplerMismatch, TaskSampler};
pub(crate) use state::TrainLoss;
pub use state::{RunSnapshot, RunState};
pub use table::{ComparisonTable, NumberFormat, format_metric, format_significant};
pub use tensorboard::{TensorBoardSink, write_events, write_run_events};
