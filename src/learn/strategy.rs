//! The strategies: `gated` (shared W, one mask set per task), `shared` (one plain model, task
//! ignored), `separate` (one plain model per task), and for the sequential schedule `finetune`,
//! `joint` and the regularisation baselines `ewc`, `online-ewc` and `si` (one plain model
//! each), and `xdg` (one plain model under fixed random unit gates per task), as data ([`StrategyLayout`]) that the learner reads.

use crate::config::TaskOrder;
use crate::params::{ModelId, Penalty, TaskId};
use serde::{Deserialize, Serialize};

/// A training strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Conditional weights: W ⊙ g(M_t).
    Gated,
    /// One plain model for all tasks.
    Shared,
    /// One plain model per task.
    Separate,
    /// Sequential schedule: one plain model trained through the phases in order (the naive
    /// continual-learning lower bound: nothing protects earlier tasks).
    Finetune,
    /// Sequential schedule: one plain model trained on all tasks interleaved, from its own
    /// task sampler (the usual continual-learning upper bound: it sees every task throughout).
    Joint,
    /// Sequential schedule: finetune plus Elastic Weight Consolidation (Kirkpatrick et al.
    /// 2017): after each task, a penalty λ/2 Σ_i F_i (θ_i − θ*_i)² with that task's diagonal
    /// Fisher F and final weights θ*, one penalty per finished task.
    Ewc,
    /// Sequential schedule: online EWC (Schwarz et al. 2018): one running Fisher F ← γF + F_new
    /// and the latest θ*, penalty λ/2 Σ_i γF_i (θ_i − θ*_i)².
    #[serde(rename = "online-ewc")]
    OnlineEwc,
    /// Sequential schedule: Synaptic Intelligence (Zenke et al. 2017): importance Ω from each
    /// weight's path integral of the loss, penalty c Σ_i Ω_i (θ_i − θ*_i)².
    Si,
    /// Context-dependent gating (XdG; Masse, Grant & Freedman, "Alleviating catastrophic
    /// forgetting using context-dependent gating and synaptic stabilization", PNAS 2018): one
    /// plain `W`, and per task a fixed random binary gate on each hidden unit, a share
    /// `xdg_share_off` of every hidden layer's units off (`h_j ← h_j · 1[j ∈ kept_t]`).
    /// Expressed as frozen binary masks over the rows of W that compute each hidden unit
    /// (`θ_t = W ⊙ G_t`, the STE gate whose forward value is exactly `1[G > 0]`): a gated-off
    /// unit's pre-activation is 0, so after ReLU it is off, and its row of W gets no gradient
    /// from the task. Needs the task id (Task-IL).
    Xdg,
}

impl Strategy {
    /// The paper's three, in table order (`--strategy all` with the interleaved schedule).
    pub const ALL: [Strategy; 3] = [Strategy::Gated, Strategy::Shared, Strategy::Separate];

    /// Gated and the continual-learning baselines (`--strategy all` with the sequential
    /// schedule).
    pub const CONTINUAL: [Strategy; 4] = [
        Strategy::Gated,
        Strategy::Finetune,
        Strategy::Separate,
        Strategy::Joint,
    ];

    const EVERY: [Strategy; 9] = [
        Strategy::Gated,
        Strategy::Shared,
        Strategy::Separate,
        Strategy::Finetune,
        Strategy::Joint,
        Strategy::Ewc,
        Strategy::OnlineEwc,
        Strategy::Si,
        Strategy::Xdg,
    ];

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Gated => "gated",
            Strategy::Shared => "shared",
            Strategy::Separate => "separate",
            Strategy::Finetune => "finetune",
            Strategy::Joint => "joint",
            Strategy::Ewc => "ewc",
            Strategy::OnlineEwc => "online-ewc",
            Strategy::Si => "si",
            Strategy::Xdg => "xdg",
        }
    }

    /// The penalty that protects earlier tasks, for the regularisation baselines.
    pub fn penalty(self) -> Option<Penalty> {
        match self {
            Strategy::Ewc => Some(Penalty::Ewc),
            Strategy::OnlineEwc => Some(Penalty::OnlineEwc),
            Strategy::Si => Some(Penalty::Si),
            _ => None,
        }
    }

    /// `--strategy all` for a schedule.
    pub fn all_for(order: TaskOrder) -> Vec<Strategy> {
        match order {
            TaskOrder::Interleaved => Strategy::ALL.to_vec(),
            TaskOrder::Sequential => Strategy::CONTINUAL.to_vec(),
        }
    }

    /// Whether the strategy makes sense with `order`: shared is the interleaved schedule's
    /// plain model; finetune, joint and the regularisation baselines are the sequential
    /// schedule's (they need task boundaries).
    pub fn fits(self, order: TaskOrder) -> bool {
        match self {
            Strategy::Gated | Strategy::Separate | Strategy::Xdg => true,
            Strategy::Shared => order == TaskOrder::Interleaved,
            Strategy::Finetune
            | Strategy::Joint
            | Strategy::Ewc
            | Strategy::OnlineEwc
            | Strategy::Si => order == TaskOrder::Sequential,
        }
    }

    /// How the strategy's parameters are laid out: what the learner, the memory estimate and
    /// the histograms work from, so no step branches on the strategy's name.
    pub fn layout(self) -> StrategyLayout {
        match self {
            Strategy::Gated => StrategyLayout {
                models: Models::One,
                gated: true,
                fixed_gates: false,
            },
            Strategy::Xdg => StrategyLayout {
                models: Models::One,
                gated: true,
                fixed_gates: true,
            },
            Strategy::Shared
            | Strategy::Finetune
            | Strategy::Joint
            | Strategy::Ewc
            | Strategy::OnlineEwc
            | Strategy::Si => StrategyLayout::PLAIN,
            Strategy::Separate => StrategyLayout {
                models: Models::PerTask,
                gated: false,
                fixed_gates: false,
            },
        }
    }

    /// One plain model serves every task.
    pub fn one_plain_model(self) -> bool {
        self.layout() == StrategyLayout::PLAIN
    }

    /// The model that answers task `task`: the one model of `gated` (its `W`, gated by the
    /// task's masks), `shared`, `finetune` and `joint`; the task's own model under `separate`.
    pub fn model_of(self, task: TaskId) -> ModelId {
        self.layout().model_of(task)
    }
}

/// How many models a strategy trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Models {
    /// One model (its weights keyed `{param}`).
    One,
    /// One model per task (keyed `{task}/{param}`).
    PerTask,
}

/// A strategy as data: its models, and whether each task gates them with masks of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrategyLayout {
    /// One model or one per task.
    pub models: Models,
    /// Every task has masks over the (one) model's weights.
    pub gated: bool,
    /// The masks are drawn once per task and never trained (XdG's binary unit gates).
    pub fixed_gates: bool,
}

impl StrategyLayout {
    /// One plain model for every task.
    pub const PLAIN: StrategyLayout = StrategyLayout {
        models: Models::One,
        gated: false,
        fixed_gates: false,
    };

    /// How many models for `tasks` tasks.
    pub fn model_count(self, tasks: usize) -> usize {
        match self.models {
            Models::One => 1,
            Models::PerTask => tasks,
        }
    }

    /// The model that serves task `task` ([`Strategy::model_of`]).
    pub fn model_of(self, task: TaskId) -> ModelId {
        match self.models {
            Models::One => ModelId::ONLY,
            Models::PerTask => ModelId(task.index()),
        }
    }
}

/// A strategy name that is none of the nine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown strategy `{0}` (gated, shared, separate, finetune, joint, ewc, online-ewc, si or xdg)"
)]
pub struct UnknownStrategy(pub String);

impl std::str::FromStr for Strategy {
    type Err = UnknownStrategy;

    fn from_str(s: &str) -> std::result::Result<Self, UnknownStrategy> {
        Strategy::EVERY
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownStrategy(s.to_string()))
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-step settings that change over a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepSettings {
    /// HAT's gate scale `s`.
    pub gate_scale: f64,
    /// Multiplier of W's learning rate (schedule).
    pub w_lr_factor: f64,
    /// Multiplier of the masks' learning rate (schedule).
    pub mask_lr_factor: f64,
}
