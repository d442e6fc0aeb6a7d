//! The one naming scheme of a run's tensors.
//!
//! | tensor | key (inside a strategy) | in the checkpoint |
//! |---|---|---|
//! | a model's parameter | `fc1.weight` | `gated/fc1.weight`, `shared/fc1.weight` |
//! | a per-task model's parameter (`separate`) | `t0/fc1.weight` | `separate/t0/fc1.weight` |
//! | a task's mask of a parameter | `fc1.weight.mask.t0` | `gated/fc1.weight.mask.t0` |
//! | a task's layer state (gated; batch-norm statistics) | `bn1.running_mean.state.t0` | `gated/bn1.running_mean.state.t0` |
//! | a plain model's layer state | like its weights: `bn1.running_mean`, `t0/bn1.running_mean` | `shared/bn1.running_mean` |
//! | an optimizer slot | the parameter's key | `gated/optim.w/fc1.weight.first`, `gated/optim.mask/fc1.weight.mask.t0.steps` |
//!
//! Task and parameter names are portable names (letters, digits, `-`, `_`; see
//! [`crate::task::check_portable_name`] for tasks, layer names for parameters), so `/`,
//! `.mask.` and `.state.` cannot occur inside them and every key parses back unambiguously.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A task's position in its run's task set (file order): how the library addresses tasks.
/// A newtype, so a task index cannot be passed where a model index is expected. Serialized as
/// the bare number (a run's `state.json` keeps the training batches' sums per task).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub usize);

impl TaskId {
    /// The index into the run's task list.
    pub fn index(self) -> usize {
        self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {}", self.0)
    }
}

/// One of a strategy's models: a position in its [`crate::params::ParamStore`]'s `models`.
///
/// Why a type apart from [`TaskId`]: tasks and models are counted differently. A plain
/// strategy (`shared`, `finetune`, `joint`) has one model that answers every task, `separate`
/// has one model per task, and `gated` has one `W` with a mask per task (one model, many
/// tasks). Which model answers a task is the strategy's to say
/// (`crate::learn::Strategy::model_of`), so "the model" of a one-model strategy is
/// [`ModelId::ONLY`], never a task's id that happens to be 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelId(pub usize);

impl ModelId {
    /// The model of a strategy that has one: the shared `W` of `gated`, the plain model of
    /// `shared`, `finetune` and `joint`.
    pub const ONLY: ModelId = ModelId(0);

    /// The index into the store's models.
    pub fn index(self) -> usize {
        self.0
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "model {}", self.0)
    }
}

/// What a tensor of a strategy is; [`fmt::Display`] gives its key inside the strategy and
/// [`ParamKey::in_strategy`] its checkpoint name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKey<'a> {
    /// A parameter of the strategy's one model: `fc1.weight`.
    Weight {
        /// The parameter (`fc1.weight`, `conv1.bias`).
        param: &'a str,
    },
    /// A parameter of task `task`'s own model (the `separate` strategy): `t0/fc1.weight`.
    TaskWeight {
        /// The task's name.
        task: &'a str,
        /// The parameter.
        param: &'a str,
    },
    /// Task `task`'s mask of a parameter: `fc1.weight.mask.t0`.
    Mask {
        /// The parameter the mask gates.
        param: &'a str,
        /// The task's name.
        task: &'a str,
    },
    /// Task `task`'s value of a layer's per-task state tensor in a gated run (plain models
    /// keep theirs under their weights' keys): `bn1.running_mean.state.t0`.
    TaskState {
        /// The state tensor (`bn1.running_mean`).
        param: &'a str,
        /// The task's name.
        task: &'a str,
    },
}

/// The optimizer slots of the shared weights, under `{strategy}/optim.w/`.
pub const W_SLOTS: &str = "optim.w";
/// The optimizer slots of the masks, under `{strategy}/optim.mask/`.
pub const MASK_SLOTS: &str = "optim.mask";

/// `{strategy}/{group}/`: the prefix of one optimizer's slots in a checkpoint.
pub fn slot_prefix(strategy: &str, group: &str) -> String {
    format!("{strategy}/{group}/")
}

const MASK_INFIX: &str = ".mask.";
const STATE_INFIX: &str = ".state.";

impl<'a> ParamKey<'a> {
    /// The checkpoint name: `{strategy}/{key}`.
    pub fn in_strategy(&self, strategy: &str) -> String {
        format!("{strategy}/{self}")
    }

    /// The checkpoint name of this key's slot in the optimizer `group` ([`W_SLOTS`] or
    /// [`MASK_SLOTS`]): `{strategy}/{group}/{key}`.
    pub fn slot(&self, strategy: &str, group: &str) -> String {
        format!("{}{self}", slot_prefix(strategy, group))
    }

    /// The task this tensor belongs to, if any.
    pub fn task(&self) -> Option<&'a str> {
        match *self {
            ParamKey::Weight { .. } => None,
            ParamKey::TaskWeight { task, .. }
            | ParamKey::Mask { task, .. }
            | ParamKey::TaskState { task, .. } => Some(task),
        }
    }

    /// The parameter this tensor is, or gates.
    pub fn param(&self) -> &'a str {
        match *self {
            ParamKey::Weight { param }
            | ParamKey::TaskWeight { param, .. }
            | ParamKey::Mask { param, .. }
            | ParamKey::TaskState { param, .. } => param,
        }
    }

    /// Reads a checkpoint name back: the strategy and the key (optimizer slots give the key
    /// of their parameter, without the `.first`/`.second`/`.steps` suffix). `None` for a name
    /// that is not a tensor of a strategy.
    pub fn parse(name: &'a str) -> Option<(&'a str, ParamKey<'a>)> {
        let (strategy, mut rest) = name.split_once('/')?;
        for group in [W_SLOTS, MASK_SLOTS] {
            if let Some(r) = rest.strip_prefix(group).and_then(|r| r.strip_prefix('/')) {
                rest = r
                    .rsplit_once('.')
                    .filter(|(_, s)| ["first", "second", "steps"].contains(s))
                    .map_or(r, |(k, _)| k);
            }
        }
        let key = if let Some((param, task)) = rest.split_once(MASK_INFIX) {
            ParamKey::Mask { param, task }
        } else if let Some((param, task)) = rest.split_once(STATE_INFIX) {
            ParamKey::TaskState { param, task }
        } else if let Some((task, param)) = rest.split_once('/') {
            ParamKey::TaskWeight { task, param }
        } else {
            ParamKey::Weight { param: rest }
        };
        Some((strategy, key))
    }
}

impl fmt::Display for ParamKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamKey::Weight { param } => f.write_str(param),
            ParamKey::TaskWeight { task, param } => write!(f, "{task}/{param}"),
            ParamKey::Mask { param, task } => write!(f, "{param}{MASK_INFIX}{task}"),
            ParamKey::TaskState { param, task } => write!(f, "{param}{STATE_INFIX}{task}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_print_and_parse_back() {
        let cases = [
            (
                ParamKey::Weight {
                    param: "fc1.weight",
                },
                "gated/fc1.weight",
            ),
            (
                ParamKey::TaskWeight {
                    task: "t0",
                    param: "fc1.bias",
                },
                "separate/t0/fc1.bias",
            ),
            (
                ParamKey::Mask {
                    param: "conv1.weight",
                    task: "red",
                },
                "gated/conv1.weight.mask.red",
            ),
            (
                ParamKey::TaskState {
                    param: "bn1.running_var",
                    task: "red",
                },
                "gated/bn1.running_var.state.red",
            ),
        ];
        for (key, name) in cases {
            let strategy = name.split('/').next().unwrap();
            assert_eq!(key.in_strategy(strategy), name);
            assert_eq!(ParamKey::parse(name), Some((strategy, key)));
        }
        let mask = ParamKey::Mask {
            param: "fc2.weight",
            task: "t-3",
        };
        let slot = mask.slot("gated", MASK_SLOTS);
        assert_eq!(slot, "gated/optim.mask/fc2.weight.mask.t-3");
        let steps = format!("{slot}.steps");
        assert_eq!(ParamKey::parse(&steps), Some(("gated", mask)));
        assert_eq!(mask.task(), Some("t-3"));
        assert_eq!(mask.param(), "fc2.weight");
        assert_eq!(ParamKey::parse("no-strategy"), None);
        assert_eq!(TaskId(3).index(), 3);
        assert_eq!(ModelId(2).index(), 2);
        assert_eq!(ModelId::ONLY.to_string(), "model 0");
    }
}
