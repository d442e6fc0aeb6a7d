//! Evaluating an exported ONNX file without Python: candle-onnx runs the graph on the task's
//! test set, rebuilt from the resolved task set stored in the file's metadata.

use super::onnx::{INPUT, OUTPUT, TASK_INPUT};
use crate::error::{Error, Result};
use crate::task::{Split, TaskSet};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

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

/// Reads an ONNX model written by gatekit.
pub fn read_model(path: &Path) -> Result<candle_onnx::onnx::ModelProto> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    prost::Message::decode(bytes.as_slice()).map_err(|e| Error::Data {
        path: path.into(),
        message: format!("not an ONNX model: {e}"),
    })
}

fn metadata<'a>(model: &'a candle_onnx::onnx::ModelProto, key: &str) -> Option<&'a str> {
    model
        .metadata_props
        .iter()
        .find(|p| p.key == key)
        .map(|p| p.value.as_str())
}

/// Runs `model` on a batch (`task` selects the task in an all-tasks model).
pub fn run_model(
    model: &candle_onnx::onnx::ModelProto,
    x: &Tensor,
    task: Option<i64>,
) -> Result<Tensor> {
    let mut inputs = HashMap::from([(INPUT.to_string(), x.to_dtype(DType::F32)?)]);
    if let Some(t) = task {
        inputs.insert(TASK_INPUT.to_string(), Tensor::new(t, x.device())?);
    }
    let mut outputs = candle_onnx::simple_eval(model, inputs)?;
    outputs
        .remove(OUTPUT)
        .ok_or_else(|| Error::Shape(format!("the model has no output `{OUTPUT}`")))
}

/// Evaluates a per-task ONNX file (or `task` of an all-tasks file) on its task's test set.
pub fn evaluate_onnx(path: &Path, task: Option<&str>, data_dir: Option<&Path>) -> Result<OnnxEval> {
    let model = read_model(path)?;
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
    let device = Device::Cpu;
    let n = task.len(Split::Test);
    let idx: Vec<usize> = (0..n).collect();
    let mut sum = 0.0;
    for chunk in idx.chunks(1000) {
        let batch = task.batch(Split::Test, chunk, &device, DType::F32)?;
        let out = run_model(&model, &batch.x, index_in_graph)?;
        sum += objective.metric_sum(&out, &batch.y)?;
    }
    Ok(OnnxEval {
        task: name,
        metric_name: objective.metric_name().into(),
        metric: sum / n.max(1) as f64,
        examples: n,
    })
}
