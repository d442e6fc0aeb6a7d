//! ONNX models written directly with prost types (generated from `proto/onnx.proto3` and
//! checked in as [`super::proto`], so no `protoc` at build time; IR version 8, opset 17: loads
//! in onnxruntime ≥ 1.16, tract, candle-onnx and burn-import).
//!
//! - [`task_model`]: one task's effective network with its weights baked in as initializers.
//! - [`all_tasks_model`]: one graph with the shared W and every task's gate values stacked
//!   `[T, ..shape]`; a second input `task` (int64 scalar) selects the gates at run time
//!   (`Gather`), so one file serves every task. Tracing exporters cannot express this: the
//!   task id is data, not a Python branch.
//!
//! The `task` input contract: declared shape `[]` (a scalar). The graph reshapes the input to
//! a scalar first, so a `[1]` tensor selects the same task in tract and onnxruntime (1.32);
//! candle-onnx enforces the declared rank and rejects `[1]` with a rank error.
//! An index outside `0..T` (negative ones included) gives an output that is all NaN in every
//! runtime, never another task's output and never an error deep inside the graph.
//!
//! Ops: `Gemm` (always with its bias input: candle-onnx panics without it), `Conv`,
//! `MaxPool` (no padding, floor), `Relu`, `Tanh`, `Sigmoid`, `Flatten`, and for the all-tasks
//! graph `Reshape`, `GreaterOrEqual`, `Less`, `And`, `Where`, `Gather`, `Cast`, `Mul`, `Add`;
//! `Gather` on axis 1 picks a Task-IL head's units.

use super::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_proto::DataType, tensor_shape_proto::Dimension,
    tensor_shape_proto::dimension::Value as DimValue, type_proto,
};
use crate::error::{Error, Result};
use crate::layers::{OnnxAttr, OnnxIo, OnnxNode};
use crate::model::ModelSpec;
use candle_core::{DType, Tensor};

/// ONNX IR version written.
pub const IR_VERSION: i64 = 8;
/// Default-domain opset written.
pub const OPSET: i64 = 17;
/// Name of the image/feature input.
pub const INPUT: &str = "input";
/// Name of the task-index input of the all-tasks model.
pub const TASK_INPUT: &str = "task";
/// Name of the output (logits or regression outputs).
pub const OUTPUT: &str = "output";

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    output: &str,
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

fn value_info(name: &str, elem: DataType, dims: &[Option<usize>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(n) => DimValue::DimValue(*n as i64),
                None => DimValue::DimParam("batch".into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A float32 initializer from a tensor (stored as little-endian raw data).
pub fn f32_initializer(name: &str, t: &Tensor) -> Result<TensorProto> {
    let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    Ok(TensorProto {
        name: name.into(),
        dims: t.dims().iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        raw_data,
        ..Default::default()
    })
}

/// The layer nodes of `spec` reading parameters from `param(name)` (the tensor names of each
/// layer's effective weight and bias) and per-task state from `{layer}.{state}` (an
/// initializer, or a value gathered for the task), writing the last layer's result to
/// `output`; returns the nodes and the layers' integer constants.
fn layer_nodes(
    spec: &ModelSpec,
    param: &dyn Fn(&str) -> String,
    output: &str,
) -> Result<(Vec<NodeProto>, Vec<TensorProto>)> {
    let steps = spec.walk().map_err(|source| Error::Model {
        origin: format!("model `{}`", spec.name),
        source: Box::new(source),
    })?;
    let mut nodes = Vec::new();
    let mut constants = Vec::new();
    let mut current = INPUT.to_string();
    let last = steps.len() - 1;
    for (i, step) in steps.iter().enumerate() {
        let layer = step.layer.layer();
        let out = if i == last {
            output.to_string()
        } else {
            format!("h{}", i + 1)
        };
        let io = OnnxIo {
            input: &current,
            output: &out,
            label: &step.label,
            params: (step.name.as_ref())
                .map(|l| (param(&format!("{l}.weight")), param(&format!("{l}.bias")))),
            state: step.state().into_iter().map(|(name, _)| name).collect(),
        };
        nodes.extend(layer.onnx(&io).into_iter().map(node_proto));
        for (suffix, values) in layer.onnx_constants(&step.input) {
            constants.push(i64_tensor(
                &io.name(suffix),
                &[values.len() as i64],
                &values,
            ));
        }
        current = out;
    }
    Ok((nodes, constants))
}

/// The last layer's output before a Task-IL head picks its units.
const HEAD_INPUT: &str = "output.all_units";
/// The head's output units (an int64 initializer, or gathered for the task).
const HEAD_UNITS: &str = "head.units";

/// `output = Gather(all, units, axis = 1)`: a head's units of the last layer's output.
fn pick_head(all: &str, units: &str, output: &str) -> NodeProto {
    node(
        "Gather",
        "the task's head",
        &[all, units],
        output,
        vec![attr_int("axis", 1)],
    )
}

/// The output dims `[batch, units]` of a head of `width` units on a model whose output is
/// `[batch, outputs]`.
fn head_dims(output: &Dims, width: usize) -> Result<Dims> {
    match output[..] {
        [batch, Some(_)] => Ok(vec![batch, Some(width)]),
        _ => Err(Error::Shape(format!(
            "a Task-IL head needs a model with flat outputs [batch, units], not {output:?}"
        ))),
    }
}

/// A little-endian int64 initializer.
fn i64_tensor(name: &str, dims: &[i64], values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Int64 as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// A layer's node as ONNX writes it.
fn node_proto(n: OnnxNode) -> NodeProto {
    let attribute = n
        .attrs
        .iter()
        .map(|a| match a {
            OnnxAttr::Int(name, v) => attr_int(name, *v),
            OnnxAttr::Ints(name, v) => attr_ints(name, v),
        })
        .collect();
    NodeProto {
        op_type: n.op.into(),
        name: n.name,
        input: n.inputs,
        output: vec![n.output],
        attribute,
        ..Default::default()
    }
}

fn model(graph: GraphProto, metadata: &[(String, String)]) -> ModelProto {
    ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "gatekit".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        metadata_props: metadata
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        ..Default::default()
    }
}

/// A tensor shape where `None` is the dynamic batch axis.
type Dims = Vec<Option<usize>>;

fn io_dims(spec: &ModelSpec) -> Result<(Dims, Dims)> {
    let mut input = vec![None];
    input.extend(spec.input.iter().map(|&d| Some(d)));
    let mut output = vec![None];
    output.extend(spec.output_shape()?.into_iter().map(Some));
    Ok((input, output))
}

/// One task's network with effective parameters `params` (`{layer}.weight`, `{layer}.bias`)
/// and layer state `state` (`{layer}.{state}`, as [`crate::model::Network::onnx_state`] gives
/// it).
///
/// With `head` (Task-IL, `scenario = "task"`), the output is the task's head alone: the
/// last layer's units `head`, in order, picked by a `Gather` on axis 1, so the model answers
/// with its own task's classes and an argmax over the output needs no task id.
pub fn task_model(
    spec: &ModelSpec,
    params: &[(String, Tensor)],
    state: &[(String, Tensor)],
    head: Option<&[usize]>,
    metadata: &[(String, String)],
) -> Result<ModelProto> {
    let mut initializer = params
        .iter()
        .chain(state)
        .map(|(n, t)| f32_initializer(n, t))
        .collect::<Result<Vec<_>>>()?;
    let last = if head.is_some() { HEAD_INPUT } else { OUTPUT };
    let (mut node, constants) = layer_nodes(spec, &|p| p.to_string(), last)?;
    initializer.extend(constants);
    let (input, mut output) = io_dims(spec)?;
    if let Some(units) = head {
        let units: Vec<i64> = units.iter().map(|&u| u as i64).collect();
        initializer.push(i64_tensor(HEAD_UNITS, &[units.len() as i64], &units));
        node.push(pick_head(HEAD_INPUT, HEAD_UNITS, OUTPUT));
        output = head_dims(&output, units.len())?;
    }
    let graph = GraphProto {
        name: spec.name.clone(),
        node,
        initializer,
        input: vec![value_info(INPUT, DataType::Float, &input)],
        output: vec![value_info(OUTPUT, DataType::Float, &output)],
        ..Default::default()
    };
    Ok(model(graph, metadata))
}

/// All tasks in one graph: `shared` holds W (`{param}`), `gates` the stacked gate values per
/// parameter (`[T, ..shape]`), as u8 0/1 when `binary` (cast to float in the graph, 8x smaller
/// than float) or as float σ(M); `states` the stacked layer state per tensor (`[T, ..shape]`,
/// gathered for the task like the gates).
///
/// With `heads` (Task-IL: one list of output units per task, all of one length), the output
/// is the selected task's head alone, as in [`task_model`]: the units are gathered from a
/// `[T, k]` table by the task index, then from the last layer's output.
pub fn all_tasks_model(
    spec: &ModelSpec,
    shared: &[(String, Tensor)],
    gates: &[(String, Tensor)],
    states: &[(String, Tensor)],
    binary: bool,
    heads: Option<&[Vec<usize>]>,
    metadata: &[(String, String)],
) -> Result<ModelProto> {
    let mut initializer = shared
        .iter()
        .map(|(n, t)| f32_initializer(n, t))
        .collect::<Result<Vec<_>>>()?;
    let count = gates.first().map_or(0, |(_, g)| g.dims()[0]) as i64;
    let (constants, mut nodes) = task_index(count);
    initializer.extend(constants);
    for (name, stacked) in gates {
        gated_param(name, stacked, binary, &mut initializer, &mut nodes)?;
    }
    for (name, stacked) in states {
        let all = format!("{name}.tasks");
        initializer.push(f32_initializer(&all, stacked)?);
        nodes.push(node(
            "Gather",
            &format!("gather {name}"),
            &[&all, "task.index"],
            name,
            vec![attr_int("axis", 0)],
        ));
    }
    if shared.len() != gates.len() {
        return Err(Error::Shape(format!(
            "{} shared parameters but {} gated ones",
            shared.len(),
            gates.len()
        )));
    }
    let (layers, constants) = layer_nodes(spec, &|p| format!("{p}.effective"), "output.raw")?;
    nodes.extend(layers);
    initializer.extend(constants);
    let (input, mut output) = io_dims(spec)?;
    let answer = match heads {
        None => "output.raw",
        Some(heads) => {
            let width = heads.first().map_or(0, Vec::len);
            if heads.iter().any(|h| h.len() != width) || heads.len() as i64 != count {
                return Err(Error::Shape(format!(
                    "all-tasks heads must be one list of equal length per task; got lengths {:?} for {count} tasks",
                    heads.iter().map(Vec::len).collect::<Vec<_>>()
                )));
            }
            let table: Vec<i64> = heads.iter().flatten().map(|&u| u as i64).collect();
            initializer.push(i64_tensor("heads.units", &[count, width as i64], &table));
            nodes.push(node(
                "Gather",
                "the task's head",
                &["heads.units", "task.index"],
                HEAD_UNITS,
                vec![attr_int("axis", 0)],
            ));
            nodes.push(pick_head("output.raw", HEAD_UNITS, "output.head"));
            output = head_dims(&output, width)?;
            "output.head"
        }
    };
    nodes.push(node(
        "Add",
        "output or NaN",
        &[answer, "task.penalty"],
        OUTPUT,
        vec![],
    ));
    let graph = GraphProto {
        name: format!("{}-all-tasks", spec.name),
        node: nodes,
        initializer,
        input: vec![
            value_info(INPUT, DataType::Float, &input),
            value_info(TASK_INPUT, DataType::Int64, &[]),
        ],
        output: vec![value_info(OUTPUT, DataType::Float, &output)],
        ..Default::default()
    };
    Ok(model(graph, metadata))
}

/// The task input as a checked index: reshaped to a scalar, checked against 0..`count`; an
/// invalid index gathers task 0 (so no runtime fails inside Gather or wraps a negative index
/// around) and `task.penalty` adds NaN to every output. Its constants and nodes.
fn task_index(count: i64) -> (Vec<TensorProto>, Vec<NodeProto>) {
    let i64_const = i64_tensor;
    let f32_const = |name: &str, v: f32| TensorProto {
        name: name.into(),
        dims: vec![],
        data_type: DataType::Float as i32,
        raw_data: v.to_le_bytes().to_vec(),
        ..Default::default()
    };
    let constants = vec![
        i64_const("task.scalar_shape", &[0], &[]),
        i64_const("task.zero", &[], &[0]),
        i64_const("task.count", &[], &[count]),
        f32_const("task.ok", 0.0),
        f32_const("task.invalid", f32::NAN),
    ];
    let nodes = vec![
        node(
            "Reshape",
            "task as scalar",
            &[TASK_INPUT, "task.scalar_shape"],
            "task.scalar",
            vec![],
        ),
        node(
            "GreaterOrEqual",
            "task >= 0",
            &["task.scalar", "task.zero"],
            "task.not_negative",
            vec![],
        ),
        node(
            "Less",
            "task < T",
            &["task.scalar", "task.count"],
            "task.below_count",
            vec![],
        ),
        node(
            "And",
            "task in 0..T",
            &["task.not_negative", "task.below_count"],
            "task.valid",
            vec![],
        ),
        node(
            "Where",
            "task index",
            &["task.valid", "task.scalar", "task.zero"],
            "task.index",
            vec![],
        ),
        node(
            "Where",
            "NaN for an invalid task",
            &["task.valid", "task.ok", "task.invalid"],
            "task.penalty",
            vec![],
        ),
    ];
    (constants, nodes)
}

/// One gated parameter `name`: its stacked gates as an initializer, gathered for the task
/// (and cast to float when `binary`), times W: `{name}.effective`.
fn gated_param(
    name: &str,
    stacked: &Tensor,
    binary: bool,
    initializer: &mut Vec<TensorProto>,
    nodes: &mut Vec<NodeProto>,
) -> Result<()> {
    let gate_name = format!("{name}.gates");
    if binary {
        let bytes = stacked
            .to_dtype(DType::U8)?
            .flatten_all()?
            .to_vec1::<u8>()?;
        initializer.push(TensorProto {
            name: gate_name.clone(),
            dims: stacked.dims().iter().map(|&d| d as i64).collect(),
            data_type: DataType::Uint8 as i32,
            raw_data: bytes,
            ..Default::default()
        });
    } else {
        initializer.push(f32_initializer(&gate_name, stacked)?);
    }
    let picked = format!("{name}.gate");
    nodes.push(node(
        "Gather",
        &format!("gather {name}"),
        &[&gate_name, "task.index"],
        &picked,
        vec![attr_int("axis", 0)],
    ));
    let as_float = if binary {
        let f = format!("{name}.gate_f32");
        nodes.push(node(
            "Cast",
            &format!("cast {name}"),
            &[&picked],
            &f,
            vec![attr_int("to", DataType::Float as i64)],
        ));
        f
    } else {
        picked
    };
    nodes.push(node(
        "Mul",
        &format!("gate {name}"),
        &[name, &as_float],
        &format!("{name}.effective"),
        vec![],
    ));
    Ok(())
}

/// Serialises a model to bytes.
pub fn encode(model: &ModelProto) -> Vec<u8> {
    prost::Message::encode_to_vec(model)
}
