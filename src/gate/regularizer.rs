//! Penalties on a task's masks that push them away from 0, where a sigmoid gate is neither on
//! nor off.

use serde::{Deserialize, Serialize};

/// Optional penalty on the current task's masks that pushes them away from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Regularizer {
    /// No penalty.
    #[default]
    None,
    /// mean exp(−|m|).
    Abs,
    /// mean exp(−m²).
    Sq,
}
