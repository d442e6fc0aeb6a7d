//! How a run's tensors are addressed. Every weight, mask and optimizer slot of a run has one
//! name, built and parsed here only: the checkpoint, the mask file, the ONNX initializers, the
//! report and `gtk adapt` all go through [`ParamKey`], and tasks are [`TaskId`]s and a
//! strategy's models [`ModelId`]s inside the library (task names appear only in keys and
//! files). A strategy's tensors themselves live
//! once, in a [`ParamStore`].

mod consolidation;
mod key;
mod store;

pub use consolidation::{Anchor, Consolidation, PathIntegral, Penalty};
pub use key::{MASK_SLOTS, ModelId, ParamKey, TaskId, W_SLOTS, slot_prefix};
pub use store::{ParamStore, TaskMasks};
