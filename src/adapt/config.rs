//! What `gtk adapt` does, as plain serde data: the `[adapt]` table of a new-task file, with
//! command-line flags layered on top.
//!
//! ```toml
//! [adapt]
//! method = "mask"   # pick | mix | mask
//! shots = 100       # K labelled training examples per new task
//! steps = 200       # gradient steps of mix, mask and both baselines (the shared budget)
//! [adapt.pick]
//! variant = "halving"
//! ```

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// How a new task gets its mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Select one stored mask (SupSup's one-shot gradient, or its halving variant).
    #[default]
    Pick,
    /// Learn a softmax-weighted combination of the stored masks, W frozen.
    Mix,
    /// Learn a new real-valued mask, W and the stored masks frozen, starting from the mixture.
    Mask,
}

impl Method {
    /// All three, in table order.
    pub const ALL: [Method; 3] = [Method::Pick, Method::Mix, Method::Mask];

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Pick => "pick",
            Method::Mix => "mix",
            Method::Mask => "mask",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `pick` differentiates with respect to the mixture weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    /// Mean entropy of the softmax output on an unlabelled batch (classification only).
    Entropy,
    /// The task's loss on the K labelled shots.
    Loss,
}

impl Signal {
    /// The spelling of the `[adapt.pick]` table (`signal = "entropy"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Entropy => "entropy",
            Signal::Loss => "loss",
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// SupSup's two ways to read the gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PickVariant {
    /// α = 1/T, one gradient, take the mask whose weight lowers the objective most.
    #[default]
    OneShot,
    /// Repeat on the surviving candidates, keeping the better half each round (⌈log₂ T⌉
    /// gradients).
    Halving,
}

impl PickVariant {
    /// The spelling of the `[adapt.pick]` table and of `--pick-variant` (`one-shot`).
    pub fn as_str(self) -> &'static str {
        match self {
            PickVariant::OneShot => "one-shot",
            PickVariant::Halving => "halving",
        }
    }
}

impl std::fmt::Display for PickVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which gate values enter the mixture `Σ α_i g(M_i)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MixGates {
    /// The trained gate `g(M)` (σ for the default gate).
    #[default]
    Soft,
    /// The deployed 1-bit gate `1[M > 0]`.
    Binary,
}

/// Settings of `pick`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PickConfig {
    /// Entropy (unlabelled) or loss (the K shots); default: entropy for classification, loss
    /// for regression.
    pub signal: Option<Signal>,
    /// One-shot or halving.
    pub variant: PickVariant,
    /// Soft or binary gates in the mixture.
    pub gates: MixGates,
    /// Unlabelled examples per entropy batch.
    pub batch: usize,
    /// Entropy picks on this many random batches; the mask chosen most often is used and the
    /// votes are reported (the identification rate).
    pub trials: usize,
}

impl Default for PickConfig {
    fn default() -> Self {
        PickConfig {
            signal: None,
            variant: PickVariant::OneShot,
            gates: MixGates::Soft,
            batch: 32,
            trials: 20,
        }
    }
}

/// First-order MAML and Reptile as baselines (`[adapt.meta]`): meta-trained here on the
/// run's training tasks with the adaptation's K, steps and batch size, then adapted to each new
/// task with `steps` SGD steps at `inner_lr`. Off while `iterations` is 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetaConfig {
    /// Meta-iterations of each meta-learner; 0: no meta-learning baselines.
    pub iterations: usize,
    /// Training tasks per meta-iteration.
    pub tasks_per_iteration: usize,
    /// Learning rate of the inner SGD steps (meta-training and test-time adaptation).
    pub inner_lr: f64,
    /// Adam's learning rate on first-order MAML's meta-gradient.
    pub outer_lr: f64,
    /// Reptile's step ε towards the adapted weights, in (0, 1].
    pub reptile_step: f64,
}

impl Default for MetaConfig {
    fn default() -> Self {
        // MAML's sinusoid settings (Finn et al. 2017, §5.1): 10 tasks per meta-batch, inner
        // step 0.01, meta Adam 0.001.
        MetaConfig {
            iterations: 0,
            tasks_per_iteration: 10,
            inner_lr: 0.01,
            outer_lr: 0.001,
            reptile_step: 0.1,
        }
    }
}

/// Everything `gtk adapt` needs besides the run and the new tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptConfig {
    /// The method whose mask is stored in the adapted run.
    pub method: Method,
    /// K: labelled training examples per new task (the first K of a seeded shuffle).
    pub shots: usize,
    /// Gradient steps of `mix`, of `mask` (its mixture start included) and of each baseline.
    pub steps: usize,
    /// Examples per step, drawn with replacement from the shots; default min(K, run batch).
    pub batch_size: Option<usize>,
    /// Adam's learning rate on the mixture logits.
    pub mix_lr: f64,
    /// Learning rate of the new mask; default: the run's `mask_lr` (with its mask optimizer).
    pub mask_lr: Option<f64>,
    /// Share of `mask`'s step budget spent learning its starting mixture, in [0, 1): the
    /// first ⌊share · steps⌋ steps learn the mixture, the rest the mask.
    pub mask_init_share: f64,
    /// Settings of `pick`.
    pub pick: PickConfig,
    /// Measure all three methods for the table (only `method`'s mask is stored).
    pub compare: bool,
    /// Train the two baselines (a separate model from scratch, the shared model fine-tuned).
    /// A run with a `separate` model always gets the from-scratch model for each new task:
    /// the adapted run needs one to load.
    pub baselines: bool,
    /// Seed of the shots, batches and the separate baseline's init; default: the run's seed.
    pub seed: Option<u64>,
    /// First-order MAML and Reptile baselines.
    pub meta: MetaConfig,
}

impl Default for AdaptConfig {
    fn default() -> Self {
        AdaptConfig {
            method: Method::Pick,
            shots: 100,
            steps: 200,
            batch_size: None,
            mix_lr: 0.1,
            mask_lr: None,
            mask_init_share: 0.1,
            pick: PickConfig::default(),
            compare: false,
            baselines: true,
            seed: None,
            meta: MetaConfig::default(),
        }
    }
}

impl AdaptConfig {
    /// Checks every value; `origin` names where they came from (the file, or the command line).
    pub fn check(&self, origin: &str) -> Result<()> {
        let positive = |field: &str, v: usize| {
            if v == 0 {
                Err(Error::config(
                    origin,
                    format!("adapt.{field}"),
                    "must be a positive integer, got 0",
                ))
            } else {
                Ok(())
            }
        };
        positive("shots", self.shots)?;
        positive("steps", self.steps)?;
        positive("pick.batch", self.pick.batch)?;
        positive("pick.trials", self.pick.trials)?;
        if let Some(b) = self.batch_size {
            positive("batch_size", b)?;
        }
        let rate = |field: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::config(
                    origin,
                    format!("adapt.{field}"),
                    format!("must be a finite number > 0, got {v}"),
                ))
            }
        };
        rate("mix_lr", self.mix_lr)?;
        if let Some(lr) = self.mask_lr {
            rate("mask_lr", lr)?;
        }
        if self.meta.iterations > 0 {
            positive("meta.tasks_per_iteration", self.meta.tasks_per_iteration)?;
            rate("meta.inner_lr", self.meta.inner_lr)?;
            rate("meta.outer_lr", self.meta.outer_lr)?;
            if !(self.meta.reptile_step > 0.0 && self.meta.reptile_step <= 1.0) {
                return Err(Error::config(
                    origin,
                    "adapt.meta.reptile_step",
                    format!("must be in (0, 1], got {}", self.meta.reptile_step),
                ));
            }
        }
        if !(0.0..1.0).contains(&self.mask_init_share) {
            return Err(Error::config(
                origin,
                "adapt.mask_init_share",
                format!(
                    "must be in [0, 1) so that mask has steps left to learn the mask, got {}",
                    self.mask_init_share
                ),
            ));
        }
        Ok(())
    }

    /// Steps of `mask`'s budget that learn the starting mixture.
    pub fn mask_init_steps(&self) -> usize {
        // ⌊share · steps⌋ < steps for share < 1, so at least one mask step remains.
        ((self.mask_init_share * self.steps as f64).floor() as usize)
            .min(self.steps.saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_a_partial_table() {
        let c: AdaptConfig =
            toml::from_str("method = \"mix\"\n[pick]\nvariant = \"halving\"\n").expect("parses");
        assert_eq!(c.method, Method::Mix);
        assert_eq!(c.pick.variant, PickVariant::Halving);
        assert_eq!(c.pick.trials, 20);
        assert_eq!(c.shots, 100);
        assert!(toml::from_str::<AdaptConfig>("shot = 3").is_err());
    }

    /// What `gtk adapt` prints is what the `[adapt]` table accepts.
    #[test]
    fn printed_names_are_the_config_spellings() {
        for v in [PickVariant::OneShot, PickVariant::Halving] {
            assert_eq!(serde_json::to_value(v).unwrap(), v.to_string());
        }
        for s in [Signal::Entropy, Signal::Loss] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.to_string());
        }
        assert_eq!(PickVariant::OneShot.to_string(), "one-shot");
        assert_eq!(Signal::Entropy.to_string(), "entropy");
    }

    #[test]
    fn mask_keeps_at_least_one_step_for_the_mask() {
        let c = |steps, share| AdaptConfig {
            steps,
            mask_init_share: share,
            ..AdaptConfig::default()
        };
        assert_eq!(c(10, 0.8).mask_init_steps(), 8);
        assert_eq!(c(1, 0.8).mask_init_steps(), 0);
        assert_eq!(c(200, 0.1).mask_init_steps(), 20);
        assert!(c(10, 1.0).check("x").is_err());
    }

    #[test]
    fn zero_shots_and_bad_rates_are_rejected() {
        let c = AdaptConfig {
            shots: 0,
            ..AdaptConfig::default()
        };
        let e = c.check("new.toml").unwrap_err().to_string();
        assert!(e.contains("adapt.shots"), "{e}");
        let c = AdaptConfig {
            mix_lr: f64::NAN,
            ..AdaptConfig::default()
        };
        assert!(c.check("x").is_err());
    }
}
