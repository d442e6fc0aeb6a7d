//! The order tasks are trained in and when the gated model's `W` learns: the two continual-
//! learning settings of the `[run]` table.

use serde::{Deserialize, Serialize};

/// The order tasks are trained in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskOrder {
    /// The paper's schedule: a task drawn uniformly at random every `steps_per_task` steps.
    #[default]
    Interleaved,
    /// Tasks in file order, one phase of `phase_steps` steps each; a task's mask trains only in
    /// its phase.
    Sequential,
}

impl TaskOrder {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskOrder::Interleaved => "interleaved",
            TaskOrder::Sequential => "sequential",
        }
    }
}

/// When the gated model's shared `W` learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WPolicy {
    /// In every step (the paper's method).
    #[default]
    Train,
    /// In the first phase only, then frozen (Piggyback-style: later tasks only learn masks,
    /// so earlier tasks' predictions cannot change).
    FreezeAfterFirst,
    /// Never: masks alone on the initial random `W` (SupSup's supermasks; use with
    /// `w_init = "signed-constant"`).
    Frozen,
}

impl WPolicy {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WPolicy::Train => "train",
            WPolicy::FreezeAfterFirst => "freeze-after-first",
            WPolicy::Frozen => "frozen",
        }
    }

    /// Whether the gated model's `W` trains in `phase` (0-based; the interleaved schedule is
    /// one phase).
    pub fn trains_w(self, phase: usize) -> bool {
        match self {
            WPolicy::Train => true,
            WPolicy::FreezeAfterFirst => phase == 0,
            WPolicy::Frozen => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_say_when_w_trains() {
        assert!(WPolicy::Train.trains_w(3));
        assert!(WPolicy::FreezeAfterFirst.trains_w(0) && !WPolicy::FreezeAfterFirst.trains_w(1));
        assert!(!WPolicy::Frozen.trains_w(0));
    }
}
