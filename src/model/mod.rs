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
//! Layer types: `linear` (out), `conv2d` (out, kernel, stride = 1, padding = 0), `relu`, `tanh`,
//! `sigmoid`, `maxpool2d` (kernel, stride = kernel), `flatten`. Linear and conv layers are
//! gated; they are named `fc1, fc2, …` and `conv1, conv2, …` unless given a `name`.

mod network;
mod spec;

pub use crate::error::SpecError;
pub use network::{NetState, Network, WeightInit};
#[cfg(test)]
pub(crate) use spec::lenet5;
pub use spec::{LayerSpec, LayerStep, ModelSpec};
