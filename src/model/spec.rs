//! The architecture file format and its shape checks.

use super::SpecError;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use crate::layers::LayerSpec;
use crate::layers::StateSpec;

/// A model architecture: an input shape and a list of layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Short name, used in exports.
    pub name: String,
    /// Shape of one example, without the batch axis: `[features]` or `[channels, height, width]`.
    pub input: Vec<usize>,
    /// Layers in order.
    #[serde(rename = "layer")]
    pub layers: Vec<LayerSpec>,
}

/// One layer of a model in place: what [`ModelSpec::walk`] gives.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerStep<'a> {
    /// The layer.
    pub layer: &'a LayerSpec,
    /// Its parameter name prefix (`fc1`, `conv2`), for layers with parameters.
    pub name: Option<String>,
    /// What names its ONNX nodes and its state tensors: its parameter name prefix, else its
    /// kind and position (`relu2`).
    pub label: String,
    /// Shape of its input, without the batch axis.
    pub input: Vec<usize>,
    /// Shape of its output.
    pub output: Vec<usize>,
}

impl LayerStep<'_> {
    /// The layer's per-task state tensors, named `{label}.{name}` (`bn1.running_mean`).
    pub fn state(&self) -> Vec<(String, StateSpec)> {
        (self.layer.layer().state(&self.input).into_iter())
            .map(|s| (format!("{}.{}", self.label, s.name), s))
            .collect()
    }
}

impl ModelSpec {
    /// Reads and checks a model file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses and checks a model file's text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let spec: ModelSpec = toml::from_str(text).map_err(|e| Error::toml(path, text, e))?;
        spec.shapes().map_err(|source| Error::Model {
            origin: path.display().to_string(),
            source: Box::new(source),
        })?;
        Ok(spec)
    }

    /// The names of the layers with parameters (given in the file, or the layer's prefix
    /// counted over the layers of that prefix: `fc1`, `conv2`); `None` for the others.
    pub fn layer_names(&self) -> Vec<Option<String>> {
        let mut counts = std::collections::HashMap::<&str, usize>::new();
        self.layers
            .iter()
            .map(|l| {
                let (prefix, given) = l.layer().naming()?;
                let n = counts.entry(prefix).or_default();
                *n += 1;
                Some(given.map_or_else(|| format!("{prefix}{n}"), str::to_string))
            })
            .collect()
    }

    /// Shapes after every layer (without batch axis), checking that each layer fits its input.
    pub fn shapes(&self) -> std::result::Result<Vec<Vec<usize>>, SpecError> {
        if self.input.is_empty() || self.input.contains(&0) {
            return Err(SpecError::Input(self.input.clone()));
        }
        if self.layers.is_empty() {
            return Err(SpecError::NoLayers);
        }
        let names = self.layer_names();
        let mut seen = std::collections::BTreeSet::new();
        let mut shape = self.input.clone();
        let mut out = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let at = format!("layer {} ({})", i + 1, layer.kind());
            if let Some(name) = &names[i]
                && !seen.insert(name.clone())
            {
                return Err(SpecError::DuplicateName {
                    at,
                    name: name.clone(),
                });
            }
            shape = layer.layer().output_shape(&at, &shape)?;
            out.push(shape.clone());
        }
        Ok(out)
    }

    /// Every layer with its name (for layers with parameters), its input shape and its output
    /// shape: the one walk over the layer list that the network, the engine's plan and the
    /// parameter counts share.
    pub fn walk(&self) -> std::result::Result<Vec<LayerStep<'_>>, SpecError> {
        let shapes = self.shapes()?;
        let names = self.layer_names();
        let mut input = self.input.clone();
        let mut steps = Vec::with_capacity(self.layers.len());
        for (i, ((layer, name), output)) in self.layers.iter().zip(names).zip(shapes).enumerate() {
            let label = (name.clone()).unwrap_or_else(|| format!("{}{}", layer.kind(), i + 1));
            steps.push(LayerStep {
                layer,
                name,
                label,
                input: std::mem::replace(&mut input, output.clone()),
                output,
            });
        }
        Ok(steps)
    }

    /// Parameters (weight and bias) of each layer that has any, by layer name, counted without
    /// overflow, so a model too large to allocate can be refused before anything is made.
    pub fn param_counts(&self) -> Result<Vec<(String, u128)>> {
        let steps = self.walk().map_err(|source| self.error(source))?;
        Ok(steps
            .iter()
            .enumerate()
            .filter_map(|(i, step)| {
                let (weight, _) = step.layer.weight_shape(&step.input)?;
                let count = weight
                    .iter()
                    .fold(1u128, |n, &d| n.saturating_mul(d as u128))
                    .saturating_add(weight[0] as u128);
                let name = step
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("layer {}", i + 1));
                Some((name, count))
            })
            .collect())
    }

    /// `source` as the library error, naming this model.
    fn error(&self, source: SpecError) -> Error {
        Error::Model {
            origin: format!("model `{}`", self.name),
            source: Box::new(source),
        }
    }

    /// Shape of the model's output, without the batch axis.
    pub fn output_shape(&self) -> Result<Vec<usize>> {
        let shapes = self.shapes().map_err(|source| self.error(source))?;
        Ok(shapes.last().cloned().unwrap_or_default())
    }

    /// Checks that the model maps a task's inputs to its outputs.
    pub fn check_fits(&self, task: &str, input: &[usize], outputs: usize) -> Result<()> {
        if self.input != input {
            return Err(Error::Shape(format!(
                "model `{}` takes input {:?} but task `{task}` gives {:?}",
                self.name, self.input, input
            )));
        }
        let out = self.output_shape()?;
        if out != [outputs] {
            return Err(Error::Shape(format!(
                "model `{}` outputs {:?} but task `{task}` needs [{outputs}]",
                self.name, out
            )));
        }
        Ok(())
    }
}

/// `models/lenet5.toml`, for unit tests.
#[cfg(test)]
pub(crate) fn lenet5() -> ModelSpec {
    ModelSpec::parse(
        include_str!("../../models/lenet5.toml"),
        Path::new("lenet5.toml"),
    )
    .expect("models/lenet5.toml parses")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenet_shapes() {
        let spec = lenet5();
        let shapes = spec.shapes().unwrap();
        assert_eq!(shapes[2], vec![6, 14, 14]);
        assert_eq!(shapes[6], vec![400]);
        assert_eq!(spec.output_shape().unwrap(), vec![10]);
    }

    #[test]
    fn linear_on_image_is_rejected_with_a_hint() {
        let text = "name = \"bad\"\ninput = [1, 4, 4]\n[[layer]]\ntype = \"linear\"\nout = 2\n";
        let err = ModelSpec::parse(text, Path::new("bad.toml")).unwrap_err();
        assert!(
            matches!(&err, Error::Model { source, .. } if matches!(**source, SpecError::NeedsFlat { .. })),
            "{err:?}"
        );
        let err = format!("{:#}", anyhow::Error::from(err));
        assert!(
            err.starts_with("bad.toml: layer 1 (linear) needs a flat input but gets [1, 4, 4]"),
            "{err}"
        );
        assert!(err.contains("add a `flatten` layer"), "{err}");
    }

    #[test]
    fn unknown_layer_field_names_line() {
        let text = "name = \"bad\"\ninput = [4]\n[[layer]]\ntype = \"linear\"\nouts = 2\n";
        // Printed as the CLI prints it (the parser's message is the error's source).
        let err = format!(
            "{:#}",
            anyhow::Error::from(ModelSpec::parse(text, Path::new("bad.toml")).unwrap_err())
        );
        // One line, `file:line:column: message`, like task-set files (not the TOML parser's
        // multi-line rendering).
        assert!(
            err.starts_with("bad.toml:3:1: unknown field `outs`"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }
}
