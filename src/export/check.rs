//! Evaluating an exported ONNX file without Python: gatekit's own interpreter (the default,
//! always built), tract (with the `tract` feature) or candle-onnx (with the `candle-onnx`
//! feature) runs the graph on the task's test set, rebuilt from the resolved task set stored in
//! the file's metadata.

use super::interpreter::Interpreter;
use super::onnx::{INPUT, OUTPUT, TASK_INPUT};
use super::proto::ModelProto;
use crate::config::TaskSet;
use crate::error::{Error, Result};
use crate::task::Split;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
#[cfg(feature = "tract")]
use std::sync::Arc;
#[cfg(feature = "tract")]
use tract_onnx::prelude::{
    DatumExt, Framework, InferenceModelExt, IntoRunnable, IntoTValue, TValue, TVec,
    TypedRunnableModel, tract_ndarray,
};
/// Test metric of an exported model.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxEval {
    /// Task evaluated.
    pub task: String,
    /// `mse` or `accuracy`.
    pub metric_name: String,
    /// The metric on the whole test split.
    pub metric: f64,
    /// Test examples.
    pub examples: usize,
}

/// The ONNX runtime that evaluates an exported file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Runtime {
    /// gatekit's own interpreter of the graph ([`super::interpreter`]); always built.
    #[default]
    Reference,
    /// tract-onnx, pure Rust; only in builds with the `tract` feature (it makes the release
    /// build over 70 % slower).
    Tract,
    /// candle-onnx; only in builds with the `candle-onnx` feature (its build needs `protoc`).
    Candle,
}

impl Runtime {
    /// The spelling of `--runtime`.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Reference => "reference",
            Runtime::Tract => "tract",
            Runtime::Candle => "candle",
        }
    }

    /// The cargo feature that builds it in, if any.
    pub fn feature(self) -> Option<&'static str> {
        match self {
            Runtime::Reference => None,
            Runtime::Tract => Some("tract"),
            Runtime::Candle => Some("candle-onnx"),
        }
    }

    /// The runtimes this build can run.
    pub fn available() -> Vec<Runtime> {
        let mut r = vec![Runtime::Reference];
        if cfg!(feature = "tract") {
            r.push(Runtime::Tract);
        }
        if cfg!(feature = "candle-onnx") {
            r.push(Runtime::Candle);
        }
        r
    }
}

/// Reads an ONNX model written by gatekit.
pub fn read_model(path: &Path) -> Result<ModelProto> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(path, &bytes)
}

fn decode(path: &Path, bytes: &[u8]) -> Result<ModelProto> {
    prost::Message::decode(bytes).map_err(|e| Error::Data {
        path: path.into(),
        message: format!("not an ONNX model: {e}"),
    })
}

fn metadata<'a>(model: &'a ModelProto, key: &str) -> Option<&'a str> {
    model
        .metadata_props
        .iter()
        .find(|p| p.key == key)
        .map(|p| p.value.as_str())
}

/// The shapes a tract plan is made for: the input's and the task index's.
#[cfg(feature = "tract")]
type PlanKey = (Vec<usize>, Option<Vec<usize>>);

/// An ONNX model loaded for one runtime; errors name the file.
pub struct OnnxSession {
    path: PathBuf,
    runtime: Runtime,
    model: ModelProto,
    /// The reference interpreter, made on first use.
    reference: Option<Interpreter>,
    #[cfg(feature = "tract")]
    bytes: Vec<u8>,
    /// tract plans, one per (input shape, task shape).
    #[cfg(feature = "tract")]
    tract: HashMap<PlanKey, Arc<TypedRunnableModel>>,
    #[cfg(feature = "candle-onnx")]
    candle: Option<candle_onnx::onnx::ModelProto>,
}

impl OnnxSession {
    /// Reads `path` for `runtime`; fails when this build lacks the runtime.
    pub fn open(path: &Path, runtime: Runtime) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(path, bytes, runtime)
    }

    /// A model already in memory; `path` is only used in messages.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>, runtime: Runtime) -> Result<Self> {
        if !Runtime::available().contains(&runtime) {
            let feature = runtime.feature().unwrap_or_default();
            let protoc = if runtime == Runtime::Candle {
                " (needs protoc)"
            } else {
                ""
            };
            return Err(Error::config(
                "command line",
                "--runtime",
                format!(
                    "`{}` is not built in: build gatekit with `--features {feature}`{protoc}, or use --runtime reference",
                    runtime.name()
                ),
            ));
        }
        let model = decode(path, &bytes)?;
        #[cfg(feature = "candle-onnx")]
        let candle = match runtime {
            Runtime::Candle => {
                Some(
                    prost::Message::decode(bytes.as_slice()).map_err(|e| Error::Data {
                        path: path.into(),
                        message: format!("not an ONNX model: {e}"),
                    })?,
                )
            }
            Runtime::Tract | Runtime::Reference => None,
        };
        Ok(Self {
            path: path.into(),
            runtime,
            model,
            reference: None,
            #[cfg(feature = "tract")]
            bytes,
            #[cfg(feature = "tract")]
            tract: HashMap::new(),
            #[cfg(feature = "candle-onnx")]
            candle,
        })
    }

    /// The decoded model (graph and metadata).
    pub fn model(&self) -> &ModelProto {
        &self.model
    }

    /// The runtime it runs in.
    pub fn runtime(&self) -> Runtime {
        self.runtime
    }

    fn failed(&self, e: impl std::fmt::Display) -> Error {
        // candle appends a backtrace on further lines when RUST_BACKTRACE is set: one line.
        let e = e.to_string();
        Error::Data {
            path: self.path.clone(),
            message: format!(
                "{} could not run the ONNX graph: {}",
                self.runtime.name(),
                e.lines().next().unwrap_or_default().trim_end()
            ),
        }
    }

    /// Runs the model on a batch; `task` (an int64 tensor, normally a scalar) selects the task
    /// in an all-tasks model.
    pub fn run_with_task_tensor(&mut self, x: &Tensor, task: Option<&Tensor>) -> Result<Tensor> {
        let x = x.to_dtype(DType::F32)?;
        match self.runtime {
            Runtime::Reference => self.run_reference(&x, task),
            Runtime::Tract => self.run_tract(&x, task),
            Runtime::Candle => self.run_candle(&x, task),
        }
    }

    /// Runs the model on a batch (`task` selects the task in an all-tasks model).
    pub fn run(&mut self, x: &Tensor, task: Option<i64>) -> Result<Tensor> {
        let task = task.map(|t| Tensor::new(t, x.device())).transpose()?;
        self.run_with_task_tensor(x, task.as_ref())
    }

    fn run_reference(&mut self, x: &Tensor, task: Option<&Tensor>) -> Result<Tensor> {
        if self.reference.is_none() {
            let interpreter = Interpreter::new(&self.model).map_err(|e| self.failed(e))?;
            self.reference = Some(interpreter);
        }
        let mut inputs = HashMap::from([(INPUT.to_string(), x.clone())]);
        if let Some(t) = task {
            inputs.insert(TASK_INPUT.to_string(), t.to_dtype(DType::I64)?);
        }
        let outputs = self
            .reference
            .as_ref()
            .map(|r| r.run(&inputs))
            .transpose()
            .map_err(|e| self.failed(e))?;
        outputs
            .and_then(|mut o| o.remove(OUTPUT))
            .ok_or_else(|| self.failed(format!("the model has no output `{OUTPUT}`")))
    }

    #[cfg(not(feature = "tract"))]
    fn run_tract(&mut self, _x: &Tensor, _task: Option<&Tensor>) -> Result<Tensor> {
        Err(self.failed("tract is not built in (feature `tract`)"))
    }

    #[cfg(feature = "tract")]
    fn run_tract(&mut self, x: &Tensor, task: Option<&Tensor>) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let task_dims = task.map(|t| t.dims().to_vec());
        let key = (dims.clone(), task_dims.clone());
        if !self.tract.contains_key(&key) {
            let plan = (|| {
                let mut model = tract_onnx::onnx()
                    .model_for_read(&mut self.bytes.as_slice())?
                    .with_input_fact(0, f32::fact(&dims).into())?;
                if let Some(td) = &task_dims {
                    model = model.with_input_fact(1, i64::fact(td).into())?;
                }
                model.into_optimized()?.into_runnable()
            })()
            .map_err(|e| self.failed(format!("{e:#}")))?;
            self.tract.insert(key.clone(), plan);
        }
        let plan = &self.tract[&key];
        let data = x.flatten_all()?.to_vec1::<f32>()?;
        let input =
            tract_ndarray::ArrayD::from_shape_vec(dims, data).map_err(|e| self.failed(e))?;
        let mut inputs: TVec<TValue> = TVec::new();
        inputs.push(tract_onnx::prelude::Tensor::from(input).into_tvalue());
        if let Some(t) = task {
            let values = t.flatten_all()?.to_dtype(DType::I64)?.to_vec1::<i64>()?;
            let arr = tract_ndarray::ArrayD::from_shape_vec(t.dims().to_vec(), values)
                .map_err(|e| self.failed(e))?;
            inputs.push(tract_onnx::prelude::Tensor::from(arr).into_tvalue());
        }
        let out = plan
            .run(inputs)
            .map_err(|e| self.failed(format!("{e:#}")))?;
        let first = out
            .first()
            .ok_or_else(|| self.failed(format!("the model has no output `{OUTPUT}`")))?;
        let view = first
            .to_plain_array_view::<f32>()
            .map_err(|e| self.failed(format!("{e:#}")))?;
        let shape = view.shape().to_vec();
        let values: Vec<f32> = view.iter().copied().collect();
        Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
    }

    #[cfg(feature = "candle-onnx")]
    fn run_candle(&mut self, x: &Tensor, task: Option<&Tensor>) -> Result<Tensor> {
        let model = self
            .candle
            .as_ref()
            .ok_or_else(|| self.failed("not loaded for candle-onnx"))?;
        let mut inputs = HashMap::from([(INPUT.to_string(), x.clone())]);
        if let Some(t) = task {
            inputs.insert(TASK_INPUT.to_string(), t.to_dtype(DType::I64)?);
        }
        let mut outputs = candle_onnx::simple_eval(model, inputs).map_err(|e| self.failed(e))?;
        outputs
            .remove(OUTPUT)
            .ok_or_else(|| self.failed(format!("the model has no output `{OUTPUT}`")))
    }

    #[cfg(not(feature = "candle-onnx"))]
    fn run_candle(&mut self, _x: &Tensor, _task: Option<&Tensor>) -> Result<Tensor> {
        Err(self.failed("candle-onnx is not built in (feature `candle-onnx`)"))
    }
}

/// Evaluates a per-task ONNX file (or `task` of an all-tasks file) on its task's test set.
pub fn evaluate_onnx(
    path: &Path,
    task: Option<&str>,
    data_dir: Option<&Path>,
    runtime: Runtime,
) -> Result<OnnxEval> {
    let mut session = OnnxSession::open(path, runtime)?;
    let model = session.model().clone();
    let bad = |m: &str| Error::Data {
        path: path.into(),
        message: m.into(),
    };
    let set_text = metadata(&model, "gatekit.task_set")
        .ok_or_else(|| bad("has no gatekit.task_set metadata: not exported by gatekit"))?;
    let set = TaskSet::parse_with(set_text, path, &|_: &str| {
        Err(bad("task set without inline model"))
    })?;
    let (name, index_in_graph) = match (
        metadata(&model, "gatekit.task"),
        metadata(&model, "gatekit.tasks"),
    ) {
        (Some(t), _) => (t.to_string(), None),
        (None, Some(all)) => {
            let names: Vec<&str> = all.split(',').collect();
            let wanted = task
                .ok_or_else(|| bad(&format!("is an all-tasks model: pass --task, one of {all}")))?;
            let i = names
                .iter()
                .position(|n| *n == wanted)
                .ok_or_else(|| bad(&format!("has no task `{wanted}`; its tasks are {all}")))?;
            (wanted.to_string(), Some(i as i64))
        }
        _ => return Err(bad("names no task in its metadata")),
    };
    let t = set
        .tasks
        .iter()
        .position(|e| e.name == name)
        .ok_or_else(|| bad(&format!("task `{name}` not in its task set")))?;
    let tasks = set.build_tasks(data_dir)?;
    let task = &tasks[t];
    let objective = task.objective();
    // Task-IL: a graph that answers with the task's head alone is scored on the labels'
    // positions within the head (an all-tasks graph with heads of unequal width answers with
    // every unit, scored as one head).
    let head_applied = match index_in_graph {
        None => metadata(&model, "gatekit.head").is_some(),
        Some(_) => metadata(&model, "gatekit.heads_applied") == Some("true"),
    };
    let head = if head_applied {
        let outputs = set.model.output_shape()?.iter().product();
        let heads = crate::learn::heads_for(set.run.continual.scenario, &tasks, outputs)
            .map_err(|e| bad(&e.to_string()))?;
        heads.map(|h| h[t].clone())
    } else {
        None
    };
    let device = Device::Cpu;
    let n = task.len(Split::Test);
    let idx: Vec<usize> = (0..n).collect();
    let mut sum = 0.0;
    for chunk in idx.chunks(1000) {
        let batch = task.batch(Split::Test, chunk, &device, DType::F32)?;
        let out = session.run(&batch.x, index_in_graph)?;
        // gatekit's graphs answer NaN for a task index they hold no mask for; a metric over
        // NaN would print as "-" with success, so it is an error naming the cause.
        let values = out.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        if let Some(at) = values.iter().position(|v| !v.is_finite()) {
            let row = chunk[at / (values.len() / chunk.len().max(1)).max(1)];
            return Err(bad(&match index_in_graph {
                Some(i) => format!(
                    "answers NaN for task `{name}` (index {i} in gatekit.tasks) on test example {row}: the graph holds no mask for that index, so its metadata and graph disagree (an edited or mismatched file); export the run again"
                ),
                None => format!(
                    "answers a non-finite value for task `{name}` on test example {row}: the file's weights are damaged or edited; export the run again"
                ),
            }));
        }
        let y = match &head {
            None => batch.y,
            Some(h) => {
                let local = h.local_labels(&batch.y.to_vec1::<u32>()?).ok_or_else(|| {
                    bad(&format!(
                        "a test label of task `{name}` is outside its head (units {:?})",
                        h.units()
                    ))
                })?;
                Tensor::from_vec(local, chunk.len(), &device)?
            }
        };
        sum += objective.metric_sum(&out, &y)?;
    }
    Ok(OnnxEval {
        task: name,
        metric_name: objective.metric_name().into(),
        metric: sum / n.max(1) as f64,
        examples: n,
    })
}
