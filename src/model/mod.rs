//! Model architectures: a TOML layer list ([`ModelSpec`]) and the network built from it
//! ([`Network`]).
//!
//! ```toml
//! name = "mlp"
//! input = [8]
//! [[layer]]
//! type = "linear"
//! out = 40
//! [[layer]]
//! type = "relu"
//! ```
//! The layer types, their keys and their parameters are the files of [`crate::layers`]; layers
//! with parameters are gated and named `fc1, fc2, …`, `conv1, …` (their type's prefix) unless
//! given a `name`.

mod network;
mod spec;

pub use crate::error::SpecError;
pub use network::{LinearTap, NetState, Network, WeightInit};
#[cfg(test)]
pub(crate) use spec::lenet5;
pub use spec::{LayerSpec, LayerStep, ModelSpec};
