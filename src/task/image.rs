//! Image classification tasks over an MNIST-layout dataset. The dataset is decoded once into
//! u8 pixels and shared by every task ([`crate::data::load_mnist`] returns the same `Arc`); each
//! task turns the examples of a batch into floats on the fly (colour, inversion, permutation,
//! rotation, padding). The paper stored a transformed copy per task (22 GB each); this stores
//! none.
//!
//! Per example: grayscale `x ∈ [0, 1]` (u8 / 255) on the source grid, optionally permuted or
//! rotated, padded with `x = 0` by `pad` pixels on each side (so the padding takes the
//! background: the background colour, or white when inverted), then mapped to `channels`
//! channels (and, with `normalize = [mean, std]`, every value v to `(v − mean) / std`, as
//! torchvision's `Normalize` after `ToTensor`):
//! - background colour c: channel k = x + (1 − x)·c[k] (black c = 0 leaves the digit as is);
//! - inverted with digit colour c: channel k = x·c[k] + (1 − x) (a c-coloured digit on white);
//! - fill c: every pixel of channel k is c[k] (the image carries no information).

use super::registry::{Params, TaskContext};
use super::{Batch, Objective, Split, Task};
use crate::data::{DataFingerprint, Mnist, load_mnist, mnist_paths, resolve_data_dir};
use crate::error::Result;
use candle_core::{DType, Device, Tensor};
use std::path::PathBuf;
use std::sync::Arc;

/// How grayscale becomes colour channels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Colour {
    /// channel k = x + (1 − x)·c[k].
    Background([f32; 3]),
    /// channel k = x·c[k] + (1 − x).
    Inverted([f32; 3]),
    /// channel k = c[k] everywhere.
    Fill([f32; 3]),
}

/// Where each output pixel of the source grid reads from.
#[derive(Debug, Clone)]
pub enum Resample {
    /// The image as it is.
    Identity,
    /// Output pixel i reads source pixel `perm[i]`.
    Permute(Arc<Vec<u32>>),
    /// Output pixel i is a bilinear mix of up to four source pixels: `(index, weight)`.
    Bilinear(Arc<Vec<[(u32, f32); 4]>>),
}

/// One image classification task.
#[derive(Debug, Clone)]
pub struct ImageTask {
    name: String,
    data: Arc<Mnist>,
    input: Vec<usize>,
    pad: usize,
    colour: Colour,
    resample: Resample,
    /// Example indices per split (`[train, test]`) into the dataset's splits.
    examples: [Arc<Vec<u32>>; 2],
    /// The `dataset` parameter (the folder's name under the data dir).
    dataset: String,
    /// The four IDX files the dataset was read from.
    files: Arc<[PathBuf; 4]>,
    /// The labels the task keeps when only some (`split-mnist`); `None`: all ten.
    pub(super) classes: Option<Vec<u32>>,
    /// The model's output width: the 10 labels' outputs and any unused ones.
    outputs: usize,
    /// `(mean, std)`: every input value v becomes `(v − mean) / std`; `None` leaves it.
    normalize: Option<(f32, f32)>,
    /// A permutation of each padded channel plane (`permuted-mnist`'s `permute_padding`):
    /// output pixel i reads pixel `perm[i]` of the padded, coloured plane.
    plane_permutation: Option<Arc<Vec<u32>>>,
}

/// Settings shared by the image kinds, read from the common parameters.
pub(super) struct ImageSettings {
    pub data: Arc<Mnist>,
    pub dataset: String,
    pub files: [PathBuf; 4],
    pub channels: usize,
    pub pad: usize,
    pub train_limit: Option<usize>,
    pub test_limit: Option<usize>,
    pub outputs: usize,
    pub normalize: Option<(f32, f32)>,
}

/// The parameters every image kind has.
pub(super) const COMMON_PARAMS: &[super::ParamSpec] = &[
    super::ParamSpec {
        name: "dataset",
        ty: super::ParamType::Str,
        default: Some("\"mnist\""),
        help: "folder under the data dir with the four IDX files (any MNIST-layout dataset)",
    },
    super::ParamSpec {
        name: "channels",
        ty: super::ParamType::Int,
        default: Some("3"),
        help: "1 (grayscale) or 3 (RGB)",
    },
    super::ParamSpec {
        name: "pad",
        ty: super::ParamType::Int,
        default: Some("2"),
        help: "padding on each side in the background (the background colour; white when inverted); 2 turns 28x28 into LeNet-5's 32x32",
    },
    super::ParamSpec {
        name: "train_limit",
        ty: super::ParamType::Int,
        default: Some("0"),
        help: "use only the first N training examples (0 = all)",
    },
    super::ParamSpec {
        name: "test_limit",
        ty: super::ParamType::Int,
        default: Some("0"),
        help: "use only the first N test examples (0 = all)",
    },
    super::ParamSpec {
        name: "outputs",
        ty: super::ParamType::Int,
        default: Some("10"),
        help: "width of the model's output (≥ 10); the labels use the first 10, the rest stay unused (SupSup's GNu setting: 500 outputs for permuted MNIST, the unused ones let `gtk eval --infer-task logsumexp` infer the task)",
    },
    super::ParamSpec {
        name: "normalize",
        ty: super::ParamType::FloatList,
        default: Some("[]"),
        help: "[mean, std]: every input value v (after colour and padding) becomes (v − mean) / std, as torchvision's Normalize (SupSup's permuted MNIST: [0.1307, 0.3081]); [] leaves the values in [0, 1]",
    },
];

/// An image kind's parameter list: [`COMMON_PARAMS`] followed by the kind's own, so the shared
/// ones are written in one place (a `const` slice cannot be concatenated otherwise).
macro_rules! image_params {
    ($($own:expr),* $(,)?) => {
        &[
            $crate::task::image::COMMON_PARAMS[0],
            $crate::task::image::COMMON_PARAMS[1],
            $crate::task::image::COMMON_PARAMS[2],
            $crate::task::image::COMMON_PARAMS[3],
            $crate::task::image::COMMON_PARAMS[4],
            $crate::task::image::COMMON_PARAMS[5],
            $crate::task::image::COMMON_PARAMS[6],
            $($own),*
        ]
    };
}
pub(super) use image_params;

// `image_params!` lists the common parameters one by one.
const _: () = assert!(COMMON_PARAMS.len() == 7);

impl ImageSettings {
    pub fn from_params(ctx: &TaskContext) -> Result<Self> {
        let p = ctx.params;
        let channels = p.i64("channels")?;
        if channels != 1 && channels != 3 {
            return Err(p.invalid("channels", format!("must be 1 or 3, got {channels}")));
        }
        let pad = usize::try_from(p.i64("pad")?).map_err(|_| p.invalid("pad", "must be ≥ 0"))?;
        let limit = |name: &str| -> Result<Option<usize>> {
            let v = p.i64(name)?;
            match usize::try_from(v) {
                Ok(0) => Ok(None),
                Ok(n) => Ok(Some(n)),
                Err(_) => Err(p.invalid(name, format!("must be ≥ 0, got {v}"))),
            }
        };
        let outputs = p.i64("outputs")?;
        if outputs < 10 {
            return Err(p.invalid(
                "outputs",
                format!("must be ≥ 10 (the labels 0–9 need an output each), got {outputs}"),
            ));
        }
        let normalize = match p.f64_list("normalize")?[..] {
            [] => None,
            [mean, std] if mean.is_finite() && std.is_finite() && std > 0.0 => {
                Some((mean as f32, std as f32))
            }
            ref v => {
                return Err(p.invalid(
                    "normalize",
                    format!(
                        "must be [] or [mean, std] with a finite mean and std > 0 \
                         (e.g. [0.1307, 0.3081] for MNIST), got {v:?}"
                    ),
                ));
            }
        };
        let dataset = p.str("dataset")?;
        if dataset.is_empty() || dataset.contains(['/', '\\']) || dataset == ".." {
            return Err(p.invalid(
                "dataset",
                format!("must be a folder name, got \"{dataset}\""),
            ));
        }
        let dir = resolve_data_dir(ctx.data_dir.as_deref()).join(dataset);
        let data = load_mnist(&dir)?;
        Ok(ImageSettings {
            data,
            dataset: dataset.to_string(),
            files: mnist_paths(&dir)?,
            channels: channels as usize,
            pad,
            train_limit: limit("train_limit")?,
            test_limit: limit("test_limit")?,
            outputs: outputs as usize,
            normalize,
        })
    }

    /// Builds a task over the examples whose label passes `keep`.
    pub fn build(
        self,
        name: &str,
        colour: Colour,
        resample: Resample,
        keep: impl Fn(u8) -> bool,
    ) -> ImageTask {
        let select = |set: &crate::data::ImageSet, limit: Option<usize>| {
            let mut idx: Vec<u32> = (0..set.len() as u32)
                .filter(|&i| keep(set.labels[i as usize]))
                .collect();
            if let Some(n) = limit {
                idx.truncate(n);
            }
            Arc::new(idx)
        };
        let examples = [
            select(&self.data.train, self.train_limit),
            select(&self.data.test, self.test_limit),
        ];
        let (rows, cols) = (self.data.train.rows, self.data.train.cols);
        ImageTask {
            name: name.into(),
            input: vec![self.channels, rows + 2 * self.pad, cols + 2 * self.pad],
            data: self.data,
            pad: self.pad,
            colour,
            resample,
            examples,
            dataset: self.dataset,
            files: Arc::new(self.files),
            classes: None,
            outputs: self.outputs,
            normalize: self.normalize,
            plane_permutation: None,
        }
    }
}

/// Reads a colour parameter `[r, g, b]` with components in [0, 1].
pub(super) fn colour_param(p: &Params, name: &str) -> Result<[f32; 3]> {
    let v = p.f64_list(name)?;
    match v[..] {
        [r, g, b] if [r, g, b].iter().all(|c| (0.0..=1.0).contains(c)) => {
            Ok([r as f32, g as f32, b as f32])
        }
        _ => Err(p.invalid(
            name,
            format!("must be [r, g, b] with components in [0, 1], got {v:?}"),
        )),
    }
}

impl ImageTask {
    /// The task with each padded channel plane permuted by `perm` (one entry per pixel of the
    /// padded plane) after colouring, before `normalize`.
    pub(super) fn with_plane_permutation(mut self, perm: Arc<Vec<u32>>) -> Self {
        self.plane_permutation = Some(perm);
        self
    }

    /// Writes example `src` (grayscale u8) as `channels` planes of the padded size into `out`.
    /// `grey` (the source grid) and `plane` (one padded plane, for `plane_permutation`) are
    /// scratch buffers the caller keeps across a batch.
    fn render(&self, src: &[u8], grey: &mut [f32], plane: &mut Vec<f32>, out: &mut [f32]) {
        let (c_n, h, w) = (self.input[0], self.input[1], self.input[2]);
        let (rows, cols) = (h - 2 * self.pad, w - 2 * self.pad);
        // Source-grid grayscale after resampling.
        match &self.resample {
            Resample::Identity => {
                for (g, &s) in grey.iter_mut().zip(src) {
                    *g = f32::from(s) / 255.0;
                }
            }
            Resample::Permute(perm) => {
                for (g, &j) in grey.iter_mut().zip(perm.iter()) {
                    *g = f32::from(src[j as usize]) / 255.0;
                }
            }
            Resample::Bilinear(map) => {
                for (g, taps) in grey.iter_mut().zip(map.iter()) {
                    *g = taps
                        .iter()
                        .map(|&(j, wt)| wt * f32::from(src[j as usize]))
                        .sum::<f32>()
                        / 255.0;
                }
            }
        }
        for c in 0..c_n {
            let plane = &mut out[c * h * w..(c + 1) * h * w];
            let (bg, map): (f32, Box<dyn Fn(f32) -> f32>) = match self.colour {
                // Padding is x = 0 before colouring, so it takes the background colour.
                Colour::Background(k) => (k[c], Box::new(move |x| x + (1.0 - x) * k[c])),
                Colour::Inverted(k) => (1.0, Box::new(move |x| x * k[c] + (1.0 - x))),
                Colour::Fill(k) => (k[c], Box::new(move |_| k[c])),
            };
            plane.fill(bg);
            for r in 0..rows {
                let row =
                    &mut plane[(r + self.pad) * w + self.pad..(r + self.pad) * w + self.pad + cols];
                for (o, &x) in row.iter_mut().zip(&grey[r * cols..(r + 1) * cols]) {
                    *o = map(x);
                }
            }
        }
        if let Some(perm) = &self.plane_permutation {
            for target in out.chunks_exact_mut(h * w) {
                plane.clear();
                plane.extend_from_slice(target);
                for (o, &j) in target.iter_mut().zip(perm.iter()) {
                    *o = plane[j as usize];
                }
            }
        }
        if let Some((mean, std)) = self.normalize {
            for v in out.iter_mut() {
                *v = (*v - mean) / std;
            }
        }
    }
}

impl Task for ImageTask {
    fn name(&self) -> &str {
        &self.name
    }
    fn input_shape(&self) -> &[usize] {
        &self.input
    }
    fn outputs(&self) -> usize {
        self.outputs
    }
    fn objective(&self) -> Objective {
        Objective::Classification
    }
    fn classes(&self) -> Option<Vec<u32>> {
        self.classes.clone()
    }
    fn len(&self, split: Split) -> usize {
        self.examples[split.index()].len()
    }
    fn batch(
        &self,
        split: Split,
        indices: &[usize],
        device: &Device,
        dtype: DType,
    ) -> Result<Batch> {
        let p = split.index();
        let set = if p == 0 {
            &self.data.train
        } else {
            &self.data.test
        };
        let per = self.input.iter().product::<usize>();
        let mut xs = vec![0f32; indices.len() * per];
        let mut labels = Vec::with_capacity(indices.len());
        let mut grey = vec![0f32; set.rows * set.cols];
        let mut plane = Vec::new();
        for (slot, &i) in indices.iter().enumerate() {
            let src = self.examples[p][i] as usize;
            self.render(
                set.image(src),
                &mut grey,
                &mut plane,
                &mut xs[slot * per..(slot + 1) * per],
            );
            labels.push(u32::from(set.labels[src]));
        }
        let mut shape = vec![indices.len()];
        shape.extend_from_slice(&self.input);
        let x = Tensor::from_vec(xs, shape, device)?;
        let x = if dtype == DType::F32 {
            x
        } else {
            x.to_dtype(dtype)?
        };
        let y = Tensor::from_vec(labels, indices.len(), device)?;
        Ok(Batch { x, y })
    }
    fn data_fingerprints(&self) -> Result<Vec<DataFingerprint>> {
        Ok(crate::data::fingerprint::fingerprint_mnist(
            &self.dataset,
            &self.data,
            &self.files,
        ))
    }
}
