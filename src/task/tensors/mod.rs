//! `tensors`: a task read from your own files, with no Rust to write. Inputs and targets come
//! from a `.npz`, a safetensors file, a folder of `.npy` files or a CSV file with a header;
//! the test split is a second file or a seeded share of the training rows.
//!
//! The files are checked once when the task is built (shapes, dtypes, NaN/inf, labels), then
//! read row by row from memory-mapped files as batches are drawn (see [`array`]). With
//! `standardize`, each input feature is shifted and scaled by the mean and standard deviation
//! of the training split; `gtk train` stores them in the run's `config.toml` (`mean`, `std`), so
//! eval, export and adapt apply the same transform (the files themselves are fingerprinted:
//! [`crate::task::Task::data_fingerprints`]).

pub mod array;

use super::registry::{ParamSpec, ParamType, Params, TaskContext, TaskKind};
use super::{Batch, Objective, Split, Task};
use crate::error::{Error, Result};
use crate::rng::Rng;
use array::{Array, Format};
use candle_core::{DType, Device, Tensor};
use std::path::Path;
use std::sync::Arc;

const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "train",
        ty: ParamType::Path,
        default: None,
        help: "training data: a .npz, .safetensors or .csv file, or a folder of .npy files (relative to the task-set file)",
    },
    ParamSpec {
        name: "test",
        ty: ParamType::Path,
        default: Some("\"\""),
        help: "test data in the same forms, with the same arrays; \"\" = hold out test_fraction of the training rows",
    },
    ParamSpec {
        name: "test_fraction",
        ty: ParamType::Float,
        default: Some("0.2"),
        help: "without a test file: share of the training rows held out for testing, drawn from run.seed and the task's position",
    },
    ParamSpec {
        name: "x",
        ty: ParamType::Str,
        default: Some("\"x\""),
        help: "inputs: array name (.npz, .npy folder: x.npy), tensor name (safetensors), or comma-separated CSV columns (\"*\" = every column but y)",
    },
    ParamSpec {
        name: "y",
        ty: ParamType::Str,
        default: Some("\"y\""),
        help: "targets: array, tensor or CSV column; [n] or [n, outputs] floats for regression, [n] integer labels for classification",
    },
    ParamSpec {
        name: "objective",
        ty: ParamType::Str,
        default: Some("\"auto\""),
        help: "\"regression\" (MSE), \"classification\" (cross-entropy) or \"auto\": integer targets classify, float targets regress (CSV has no dtypes: say which)",
    },
    ParamSpec {
        name: "classes",
        ty: ParamType::Int,
        default: Some("0"),
        help: "classification: labels are 0..classes; 0 = the largest label in the files + 1",
    },
    ParamSpec {
        name: "shape",
        ty: ParamType::IntList,
        default: Some("[]"),
        help: "shape of one input example, e.g. [1, 28, 28] for a conv model over rows of 784; [] = as stored",
    },
    ParamSpec {
        name: "standardize",
        ty: ParamType::Bool,
        default: Some("false"),
        help: "(x - mean) / std per input feature, mean and std of the training split (a constant feature gets std 1); stored in the run",
    },
    ParamSpec {
        name: "mean",
        ty: ParamType::FloatList,
        default: Some("[]"),
        help: "per-feature means for standardize; [] = computed from the training split (gtk train stores them here)",
    },
    ParamSpec {
        name: "std",
        ty: ParamType::FloatList,
        default: Some("[]"),
        help: "per-feature standard deviations for standardize; [] = computed with mean",
    },
];

/// Per-feature `(x - mean) / std`.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardize {
    /// Means, one per input feature.
    pub mean: Vec<f64>,
    /// Standard deviations (never 0).
    pub std: Vec<f64>,
}

/// One split: the arrays and which of their rows belong to it.
#[derive(Debug, Clone)]
struct Part {
    x: Array,
    y: Array,
    /// Row numbers in `x` and `y`; `None` = every row in order.
    rows: Option<Arc<Vec<u32>>>,
}

impl Part {
    fn len(&self) -> usize {
        self.rows.as_ref().map_or(self.x.rows(), |r| r.len())
    }
    fn row(&self, i: usize) -> usize {
        self.rows.as_ref().map_or(i, |r| r[i] as usize)
    }
}

/// A task over arrays read from files.
#[derive(Debug, Clone)]
pub struct TensorsTask {
    name: String,
    input: Vec<usize>,
    outputs: usize,
    objective: Objective,
    parts: [Part; 2],
    standardize: Option<Standardize>,
    /// Whether the statistics were computed here (and should be stored in the run).
    computed: bool,
}

impl Task for TensorsTask {
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
        self.objective
    }
    fn len(&self, split: Split) -> usize {
        self.parts[split.index()].len()
    }
    fn batch(
        &self,
        split: Split,
        indices: &[usize],
        device: &Device,
        dtype: DType,
    ) -> Result<Batch> {
        let part = &self.parts[split.index()];
        let n = part.x.row_len();
        let mut row = vec![0.0; n];
        let mut xs = vec![0.0f64; indices.len() * n];
        for (slot, &i) in indices.iter().enumerate() {
            let out = &mut xs[slot * n..(slot + 1) * n];
            part.x.read_row(part.row(i), out);
            if let Some(s) = &self.standardize {
                for ((v, m), d) in out.iter_mut().zip(&s.mean).zip(&s.std) {
                    *v = (*v - m) / d;
                }
            }
        }
        let mut shape = vec![indices.len()];
        shape.extend_from_slice(&self.input);
        let x = match dtype {
            DType::F64 => Tensor::from_vec(xs, shape, device)?,
            _ => Tensor::from_vec(
                xs.into_iter().map(|v| v as f32).collect::<Vec<f32>>(),
                shape,
                device,
            )?
            .to_dtype(dtype)?,
        };
        let k = part.y.row_len().max(1);
        row.resize(k, 0.0);
        let y = match self.objective {
            Objective::Classification => {
                let labels: Vec<u32> = indices
                    .iter()
                    .map(|&i| {
                        part.y.read_row(part.row(i), &mut row);
                        row[0] as u32
                    })
                    .collect();
                Tensor::from_vec(labels, indices.len(), device)?
            }
            Objective::Regression => {
                let mut ys = Vec::with_capacity(indices.len() * k);
                for &i in indices {
                    part.y.read_row(part.row(i), &mut row);
                    ys.extend_from_slice(&row[..k]);
                }
                Tensor::from_vec(ys, (indices.len(), k), device)?.to_dtype(dtype)?
            }
        };
        Ok(Batch { x, y })
    }
    fn pinned_params(&self) -> Option<toml::Table> {
        let s = self.standardize.as_ref().filter(|_| self.computed)?;
        let list = |v: &[f64]| toml::Value::Array(v.iter().map(|&f| f.into()).collect());
        let mut t = toml::Table::new();
        t.insert("mean".into(), list(&s.mean));
        t.insert("std".into(), list(&s.std));
        Some(t)
    }
    /// Each file read once (x and y of one `.npz` are one file; a `.npy` folder gives one
    /// per array), keyed by its path as the task set resolved it.
    fn data_fingerprints(&self) -> Result<Vec<crate::data::DataFingerprint>> {
        let mut paths: Vec<&Path> = Vec::new();
        for part in &self.parts {
            for a in [&part.x, &part.y] {
                if !paths.contains(&a.path.as_path()) {
                    paths.push(&a.path);
                }
            }
        }
        paths
            .into_iter()
            .map(|p| crate::data::fingerprint::fingerprint_file(&p.display().to_string(), p))
            .collect()
    }
}

fn data_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Data {
        path: path.into(),
        message: message.into(),
    }
}

/// Opens `x` and `y` of one file.
fn open_pair(p: &Params, path: &Path, objective_stated: bool) -> Result<(Array, Array)> {
    let (x, y) = (p.str("x")?, p.str("y")?);
    match array::format_of(path)? {
        Format::Csv => {
            if !objective_stated {
                return Err(p.invalid(
                    "objective",
                    format!(
                        "must be \"regression\" or \"classification\" for CSV data ({}): a CSV column has no dtype to infer it from",
                        path.display()
                    ),
                ));
            }
            let ya = array::open_csv_columns(path, y, &[], true)?;
            let targets: Vec<&str> = y.split(',').map(str::trim).collect();
            let xa = array::open_csv_columns(path, x, &targets, false)?;
            Ok((xa, ya))
        }
        _ => Ok((array::open(path, x)?, array::open(path, y)?)),
    }
}

/// Builds a `tensors` task: opens the files, checks targets and shapes, splits off the test
/// rows, reads every array once (finite values, labels, statistics) and settles the outputs
/// and the standardisation.
fn build(ctx: &TaskContext) -> Result<Box<dyn Task>> {
    let p = ctx.params;
    let objective = objective_param(p)?;
    let stated = objective.is_some();
    let train_path = Path::new(p.str("train")?).to_path_buf();
    let test_path = p.str("test")?.to_string();
    let (train_x, train_y) = open_pair(p, &train_path, stated)?;
    check_pair(&train_x, &train_y)?;
    let objective = match objective {
        Some(o) => o,
        None if train_y.dtype.is_float() => Objective::Regression,
        None => Objective::Classification,
    };
    check_targets(p, &train_y, objective, stated)?;
    let input = input_shape(p, &train_x)?;
    let (test, train_rows, test_rows) = if test_path.is_empty() {
        let (train_rows, test_rows) = split_rows(ctx, &train_path, train_x.rows())?;
        (None, Some(Arc::new(train_rows)), Some(Arc::new(test_rows)))
    } else {
        let test = open_test(p, Path::new(&test_path), &train_x, &train_y)?;
        (Some(test), None, None)
    };
    let classes = p.i64("classes")?;
    let classes = usize::try_from(classes)
        .map_err(|_| p.invalid("classes", format!("must be ≥ 0, got {classes}")))?;
    // One pass over every array: finite values, labels, and the training statistics.
    let stated_stats = (p.f64_list("mean")?, p.f64_list("std")?);
    let want_stats =
        p.bool("standardize")? && stated_stats.0.is_empty() && stated_stats.1.is_empty();
    let mut is_train = vec![true; train_x.rows()];
    if let Some(rows) = &test_rows {
        for &r in rows.iter() {
            is_train[r as usize] = false;
        }
    }
    let mut stats = Welford::new(train_x.row_len());
    scan_finite(&train_x, &mut |r, v| {
        if want_stats && is_train[r] {
            stats.add(v);
        }
    })?;
    let mut max_label = scan_targets(&train_y, objective)?;
    if let Some((tx, ty)) = &test {
        scan_finite(tx, &mut |_, _| {})?;
        max_label = max_label.max(scan_targets(ty, objective)?);
    }
    let outputs = match objective {
        Objective::Regression => train_y.row_len(),
        Objective::Classification => {
            class_count(&train_y, test.as_ref().map(|t| &t.1), classes, max_label)?
        }
    };
    let standardize = if want_stats {
        let (mean, std) = stats.finish();
        Some(Standardize { mean, std })
    } else if p.bool("standardize")? {
        Some(stated_standardize(p, stated_stats, train_x.row_len())?)
    } else {
        None
    };
    let (test_x, test_y) = match test {
        Some((x, y)) => (x, y),
        None => (train_x.clone(), train_y.clone()),
    };
    Ok(Box::new(TensorsTask {
        name: ctx.name.into(),
        input,
        outputs,
        objective,
        parts: [
            Part {
                x: train_x,
                y: train_y,
                rows: train_rows,
            },
            Part {
                x: test_x,
                y: test_y,
                rows: test_rows,
            },
        ],
        standardize,
        computed: want_stats,
    }))
}

/// `objective`: `None` for "auto" (decided by the targets' type).
fn objective_param(p: &Params) -> Result<Option<Objective>> {
    match p.str("objective")? {
        "auto" => Ok(None),
        "regression" => Ok(Some(Objective::Regression)),
        "classification" => Ok(Some(Objective::Classification)),
        other => Err(p.invalid(
            "objective",
            format!("must be \"auto\", \"regression\" or \"classification\", got \"{other}\""),
        )),
    }
}

/// The training targets fit `objective` (`stated`: given in the task set, not chosen by
/// "auto"): `[n]` or `[n, k]`, integer labels for classification, no `classes` on regression.
fn check_targets(p: &Params, train_y: &Array, objective: Objective, stated: bool) -> Result<()> {
    // `classes` only means something to classification: set on a task that regresses (often
    // because float labels made `auto` choose regression) it would be ignored without a word.
    let classes_given = p.i64("classes")?;
    if objective == Objective::Regression && classes_given != 0 {
        return Err(p.invalid(
            "classes",
            if stated {
                format!(
                    "= {classes_given} applies to classification, but objective = \"regression\"; drop `classes` or set objective = \"classification\""
                )
            } else {
                format!(
                    "= {classes_given} applies to classification, but the targets of {} are {} (floats), so objective = \"auto\" chose regression; store integer labels (y.astype(np.int64)) or set objective = \"classification\"",
                    train_y.path.display(),
                    train_y.dtype.name()
                )
            },
        ));
    }
    // Targets: [n] or [n, k].
    if train_y.shape.len() > 2 {
        return Err(train_y.error(format!(
            "has shape {:?}; targets must be [n] or [n, outputs]",
            train_y.shape
        )));
    }
    if objective == Objective::Classification {
        if train_y.dtype.is_float() && train_y.path.extension().is_none_or(|e| e != "csv") {
            return Err(train_y.error(format!(
                "is {}, but classification needs integer labels 0..classes: save y.astype(np.int64), or set objective = \"regression\"",
                train_y.dtype.name()
            )));
        }
        if train_y.row_len() != 1 {
            return Err(train_y.error(format!(
                "has shape {:?}; classification labels must be [n] (one label per example)",
                train_y.shape
            )));
        }
    }
    Ok(())
}

/// The input shape of one example: `shape` if given (its product must be the stored row's
/// length), else the stored array's shape after the first axis.
fn input_shape(p: &Params, train_x: &Array) -> Result<Vec<usize>> {
    let stored_row = train_x.row_len();
    let wanted = p.i64_list("shape")?;
    if wanted.is_empty() {
        return Ok(if train_x.shape.len() == 1 {
            vec![1]
        } else {
            train_x.shape[1..].to_vec()
        });
    }
    let dims: Vec<usize> = wanted
        .iter()
        .map(|&d| usize::try_from(d).ok().filter(|&d| d > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| p.invalid("shape", format!("must hold positive sizes, got {wanted:?}")))?;
    if dims.iter().product::<usize>() != stored_row {
        return Err(p.invalid(
            "shape",
            format!(
                "is {dims:?} ({} values per example) but {} of {} has {stored_row} per example (shape {:?})",
                dims.iter().product::<usize>(),
                train_x.what,
                train_x.path.display(),
                train_x.shape
            ),
        ));
    }
    Ok(dims)
}

/// Without a test file: `test_fraction` of the `n` training rows, drawn with the task's own
/// seeded stream, as sorted (train rows, test rows).
fn split_rows(ctx: &TaskContext, train_path: &Path, n: usize) -> Result<(Vec<u32>, Vec<u32>)> {
    let p = ctx.params;
    let f = p.f64("test_fraction")?;
    let n_test = (f * n as f64).round() as usize;
    if !(f > 0.0 && f < 1.0) || n_test == 0 || n_test >= n {
        return Err(p.invalid(
            "test_fraction",
            format!(
                "must leave at least one training and one test row of the {n} in {} (0 < f < 1), got {f}; or name a test file",
                train_path.display()
            ),
        ));
    }
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut rng = Rng::stream(ctx.seed, "tensors/split", ctx.index as u64);
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut test_rows = order[..n_test].to_vec();
    let mut train_rows = order[n_test..].to_vec();
    test_rows.sort_unstable();
    train_rows.sort_unstable();
    Ok((train_rows, test_rows))
}

/// The test file's inputs and targets, with examples shaped like the training file's.
fn open_test(p: &Params, path: &Path, train_x: &Array, train_y: &Array) -> Result<(Array, Array)> {
    let (tx, ty) = open_pair(p, path, true)?;
    check_pair(&tx, &ty)?;
    for (a, b) in [(&tx, train_x), (&ty, train_y)] {
        if a.shape[1..] != b.shape[1..] {
            return Err(a.error(format!(
                "has examples of shape {:?} but the training file's {} has {:?} ({}); test and train must match",
                &a.shape[1..],
                b.what,
                &b.shape[1..],
                b.path.display()
            )));
        }
    }
    if tx.rows() == 0 {
        return Err(tx.error("has no rows; the test split needs at least one"));
    }
    Ok((tx, ty))
}

/// A classification task's outputs: `classes`, or (0, not given) the largest label seen + 1;
/// a label at or past a given `classes` is an error naming it.
fn class_count(
    train_y: &Array,
    test_y: Option<&Array>,
    classes: usize,
    max_label: Option<usize>,
) -> Result<usize> {
    let seen = max_label.map_or(0, |m| m + 1);
    if classes == 0 {
        Ok(seen.max(1))
    } else if seen > classes {
        let (array, row, label) = find_label(train_y, test_y, classes)?;
        Err(array.error(format!(
            "has label {label} at {}, outside 0..{classes} (classes = {classes}); labels must be 0..classes-1",
            row_label(array, row)
        )))
    } else {
        Ok(classes)
    }
}

/// The `mean` and `std` the task set states, checked against the features per example.
fn stated_standardize(
    p: &Params,
    (mean, std): (Vec<f64>, Vec<f64>),
    stored_row: usize,
) -> Result<Standardize> {
    if mean.len() != stored_row || std.len() != stored_row {
        return Err(p.invalid(
            "mean",
            format!(
                "and `std` hold {} and {} values but each example has {stored_row} features",
                mean.len(),
                std.len()
            ),
        ));
    }
    if let Some(i) = std.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(p.invalid("std", format!("value {i} is {}; it must be > 0", std[i])));
    }
    Ok(Standardize { mean, std })
}

/// Inputs and targets of one file: the same number of examples, at least one.
fn check_pair(x: &Array, y: &Array) -> Result<()> {
    if x.shape.is_empty() || y.shape.is_empty() {
        let a = if x.shape.is_empty() { x } else { y };
        return Err(a.error("is a scalar; it needs an example axis (shape [n, ...])"));
    }
    if x.rows() != y.rows() {
        return Err(data_error(
            &x.path,
            format!(
                "{} has {} rows but {} has {}; inputs and targets need one row per example",
                x.what,
                x.rows(),
                y.what,
                y.rows()
            ),
        ));
    }
    if x.rows() == 0 {
        return Err(x.error("has no rows"));
    }
    Ok(())
}

/// Where row `r` of `a` is, in words: CSV line numbers count the header as line 1.
fn row_label(a: &Array, r: usize) -> String {
    if a.path.extension().is_some_and(|e| e == "csv") {
        format!("line {}", r + 2)
    } else {
        format!("row {r}")
    }
}

fn scan_finite(a: &Array, each: &mut dyn FnMut(usize, &[f64])) -> Result<()> {
    // Integers are always finite; CSV columns are float64.
    let check = a.dtype.is_float();
    a.scan(&mut |r, v| {
        if check && let Some(j) = v.iter().position(|x| !x.is_finite()) {
            return Err(a.error(format!(
                "has {} at {}, element {j}; remove or impute non-finite values first",
                v[j],
                row_label(a, r)
            )));
        }
        each(r, v);
        Ok(())
    })
}

/// Checks targets (finite; for classification whole non-negative numbers) and returns the
/// largest label.
fn scan_targets(y: &Array, objective: Objective) -> Result<Option<usize>> {
    let mut max: Option<usize> = None;
    scan_finite(y, &mut |_, _| {})?;
    if objective == Objective::Classification {
        y.scan(&mut |r, v| {
            let l = v[0];
            if l < 0.0 || l.fract() != 0.0 || l > u32::MAX as f64 {
                return Err(y.error(format!(
                    "has label {l} at {}; classification labels are whole numbers 0..classes-1",
                    row_label(y, r)
                )));
            }
            max = Some(max.map_or(l as usize, |m| m.max(l as usize)));
            Ok(())
        })?;
    }
    Ok(max)
}

/// The first label ≥ `classes`, training file first.
fn find_label<'a>(
    train: &'a Array,
    test: Option<&'a Array>,
    classes: usize,
) -> Result<(&'a Array, usize, usize)> {
    for a in std::iter::once(train).chain(test) {
        let mut found = None;
        a.scan(&mut |r, v| {
            if found.is_none() && v[0] as usize >= classes {
                found = Some((r, v[0] as usize));
            }
            Ok(())
        })?;
        if let Some((r, l)) = found {
            return Ok((a, r, l));
        }
    }
    Err(train.error("internal: no label out of range"))
}

/// Running mean and variance per feature (Welford).
struct Welford {
    n: f64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Welford {
    fn new(features: usize) -> Self {
        Welford {
            n: 0.0,
            mean: vec![0.0; features],
            m2: vec![0.0; features],
        }
    }
    fn add(&mut self, v: &[f64]) {
        self.n += 1.0;
        for ((m, s), &x) in self.mean.iter_mut().zip(&mut self.m2).zip(v) {
            let d = x - *m;
            *m += d / self.n;
            *s += d * (x - *m);
        }
    }
    /// Means and population standard deviations; a constant feature gets 1.
    fn finish(self) -> (Vec<f64>, Vec<f64>) {
        let n = self.n.max(1.0);
        let std = self
            .m2
            .iter()
            .map(|s| {
                let sd = (s / n).sqrt();
                if sd > 1e-12 { sd } else { 1.0 }
            })
            .collect();
        (self.mean, std)
    }
}

inventory::submit! {
    TaskKind {
        name: "tensors",
        summary: "your own data: inputs and targets from .npz, .npy folders, safetensors or CSV files",
        params: PARAMS,
        build,
    }
}
