//! Why the engine refuses a model or a batch. A refused model is not an error for the user:
//! the learner falls back to the reference path; a refused batch is a bug upstream and
//! surfaces as a tensor error with this as its source.

use crate::error::SpecError;
use crate::layers::EngineRefusal;
use crate::params::TaskId;

/// What the engine cannot do.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The model's own shapes do not work out.
    #[error("the model does not fit together")]
    Spec(#[from] SpecError),
    /// A layer the engine cannot run.
    #[error(transparent)]
    Layer(#[from] EngineRefusal),
    /// A model the engine's plan cannot end with.
    #[error("the engine has no op for {0}")]
    Unsupported(&'static str),
    /// A batch's values do not split into whole samples.
    #[error("{values} input values do not make whole samples of {sample}")]
    PartialBatch {
        /// Values in the batch.
        values: usize,
        /// Values per sample.
        sample: usize,
    },
    /// A gated step for a task whose masks were never set.
    #[error("{0} has no masks in the engine")]
    NoMasks(TaskId),
    /// Labels and logits disagree in count.
    #[error("{labels} labels for {logits} logits")]
    LabelCount {
        /// Labels in the batch.
        labels: usize,
        /// Logits of the batch.
        logits: usize,
    },
    /// A label outside the classes.
    #[error("label {label} with {classes} classes")]
    LabelRange {
        /// The label.
        label: usize,
        /// Classes of the model.
        classes: usize,
    },
    /// Regression targets and outputs disagree in count.
    #[error("{targets} target values for {outputs} outputs")]
    TargetCount {
        /// Target values.
        targets: usize,
        /// Output values.
        outputs: usize,
    },
}
