//! The strategies and their learners: what one strategy keeps (one plain model, one per task,
//! or one `W` with a mask per task), and one training step of it on the fast engine or on the
//! candle reference ([`Learner`]). Knows nothing of run folders: [`crate::run`] loads learners
//! from a checkpoint and [`crate::train`] steps them.

mod backend;
mod head;
mod learner;
mod strategy;
mod xdg;

pub use crate::params::Penalty;
pub(crate) use backend::targets_of;
pub use head::{Head, HeadError, heads_for};
pub use learner::Learner;
pub use strategy::{Models, StepSettings, Strategy, StrategyLayout, UnknownStrategy};
