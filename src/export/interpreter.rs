//! gatekit's own ONNX runtime: a small interpreter that reads the graph of an ONNX file and
//! runs it node by node on candle-core tensors.
//!
//! Why a third runtime: `gtk eval --onnx` must work in the default build, and the default build
//! must stay small and need no `protoc` (issue 13). tract is pure Rust but would make the
//! release build over 70 % slower; candle-onnx needs `protoc`. Both stay available behind the
//! `tract` and `candle-onnx` features, and the test suite checks that all of them (and
//! onnxruntime) agree on every exported model.
//!
//! It reads the graph, not the run: the nodes, attributes and initializers of the file are all
//! it uses, so a wrong node in an export shows up here as it would in any other runtime. It
//! implements the op set gatekit writes (see [`super::onnx`]) with ONNX semantics, including
//! NumPy broadcasting and `Gather`'s negative indices, and refuses any other op, attribute
//! value or data type with an error naming the node.

use super::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, tensor_proto::DataType,
};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;

/// The ops the interpreter runs.
pub const SUPPORTED_OPS: &[&str] = &[
    "Gemm",
    "Conv",
    "MaxPool",
    "Relu",
    "Tanh",
    "Sigmoid",
    "Flatten",
    "Reshape",
    "GreaterOrEqual",
    "Less",
    "And",
    "Where",
    "Gather",
    "Cast",
    "Mul",
    "Add",
];

/// Why a graph could not run; every variant names the node or tensor.
#[derive(Debug, thiserror::Error)]
pub enum InterpretError {
    /// The file has no graph.
    #[error("the model has no graph")]
    NoGraph,
    /// A graph input was not given.
    #[error("graph input `{0}` was not given")]
    MissingInput(String),
    /// An initializer could not be read.
    #[error("initializer `{name}`: {message}")]
    Initializer {
        /// The initializer's name.
        name: String,
        /// What is wrong with it.
        message: String,
    },
    /// A node could not run.
    #[error("node `{node}` ({op}): {problem}")]
    Node {
        /// The node's name.
        node: String,
        /// Its op type.
        op: String,
        /// What went wrong (boxed: candle's error is large).
        problem: Box<NodeProblem>,
    },
    /// A graph output was never computed.
    #[error("graph output `{0}` is not made by any node")]
    MissingOutput(String),
}

/// What went wrong in one node.
#[derive(Debug, thiserror::Error)]
pub enum NodeProblem {
    /// It reads a name that nothing defines.
    #[error("reads `{0}`, which no input, initializer or earlier node makes")]
    Undefined(String),
    /// It uses an op, attribute value or type outside what the interpreter runs.
    #[error("{0}")]
    Unsupported(String),
    /// A tensor operation failed (shapes that do not fit).
    #[error("{0}")]
    Tensor(#[from] candle_core::Error),
}

type Result<T> = std::result::Result<T, InterpretError>;

/// A model ready to run: its graph and its initializers decoded once.
pub struct Interpreter {
    graph: GraphProto,
    initializers: HashMap<String, Tensor>,
}

impl Interpreter {
    /// Decodes the initializers of `model`'s graph.
    pub fn new(model: &ModelProto) -> Result<Self> {
        let graph = model.graph.clone().ok_or(InterpretError::NoGraph)?;
        let initializers = graph
            .initializer
            .iter()
            .map(|t| Ok((t.name.clone(), tensor_from_proto(t)?)))
            .collect::<Result<HashMap<_, _>>>()?;
        Ok(Self {
            graph,
            initializers,
        })
    }

    /// The graph's inputs that are not initializers (the ones a caller gives).
    pub fn input_names(&self) -> Vec<&str> {
        self.graph
            .input
            .iter()
            .map(|i| i.name.as_str())
            .filter(|n| !self.initializers.contains_key(*n))
            .collect()
    }

    /// Runs the graph; returns every graph output by name.
    pub fn run(&self, inputs: &HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
        let mut values: HashMap<&str, Tensor> = HashMap::new();
        for name in self.input_names() {
            let t = inputs
                .get(name)
                .ok_or_else(|| InterpretError::MissingInput(name.to_string()))?;
            values.insert(name, t.clone());
        }
        for node in &self.graph.node {
            let args = node
                .input
                .iter()
                .map(|name| {
                    values
                        .get(name.as_str())
                        .or_else(|| self.initializers.get(name))
                        .cloned()
                        .ok_or_else(|| node_failed(node, NodeProblem::Undefined(name.clone())))
                })
                .collect::<Result<Vec<_>>>()?;
            let out = run_node(node, &args)?;
            let name = node
                .output
                .first()
                .ok_or_else(|| node_error(node, "has no output"))?;
            values.insert(name.as_str(), out);
        }
        self.graph
            .output
            .iter()
            .map(|o| {
                values
                    .remove(o.name.as_str())
                    .map(|t| (o.name.clone(), t))
                    .ok_or_else(|| InterpretError::MissingOutput(o.name.clone()))
            })
            .collect()
    }
}

fn node_failed(node: &NodeProto, problem: NodeProblem) -> InterpretError {
    InterpretError::Node {
        node: node.name.clone(),
        op: node.op_type.clone(),
        problem: Box::new(problem),
    }
}

fn node_error(node: &NodeProto, message: impl Into<String>) -> InterpretError {
    node_failed(node, NodeProblem::Unsupported(message.into()))
}

fn tensor_from_proto(t: &TensorProto) -> Result<Tensor> {
    let bad = |message: String| InterpretError::Initializer {
        name: t.name.clone(),
        message,
    };
    let dims = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad(format!("negative dimension {d}"))))
        .collect::<Result<Vec<_>>>()?;
    let count: usize = dims.iter().product();
    let raw = &t.raw_data;
    let from_raw = |width: usize| -> Result<()> {
        if raw.len() != count * width {
            return Err(bad(format!(
                "raw data holds {} bytes, shape {dims:?} needs {}",
                raw.len(),
                count * width
            )));
        }
        Ok(())
    };
    let device = &Device::Cpu;
    let tensor = match DataType::try_from(t.data_type) {
        Ok(DataType::Float) => {
            let values: Vec<f32> = if raw.is_empty() && count > 0 {
                t.float_data.clone()
            } else {
                from_raw(4)?;
                raw.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            };
            Tensor::from_vec(values, dims.as_slice(), device)
        }
        Ok(DataType::Int64) => {
            let values: Vec<i64> = if raw.is_empty() && count > 0 {
                t.int64_data.clone()
            } else {
                from_raw(8)?;
                raw.chunks_exact(8)
                    .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                    .collect()
            };
            Tensor::from_vec(values, dims.as_slice(), device)
        }
        Ok(DataType::Uint8 | DataType::Bool) => {
            // Both are stored one byte per element (in int32_data when not raw).
            let values: Vec<u8> = if raw.is_empty() && count > 0 {
                t.int32_data.iter().map(|&v| v as u8).collect()
            } else {
                from_raw(1)?;
                raw.clone()
            };
            Tensor::from_vec(values, dims.as_slice(), device)
        }
        other => {
            return Err(bad(format!(
                "data type {} is not supported (float, int64, uint8, bool are)",
                other.map_or_else(|_| t.data_type.to_string(), |d| d.as_str_name().into())
            )));
        }
    };
    tensor.map_err(|e| bad(e.to_string()))
}

fn attribute<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn int_attr(node: &NodeProto, name: &str, default: i64) -> i64 {
    attribute(node, name).map_or(default, |a| a.i)
}

fn float_attr(node: &NodeProto, name: &str, default: f32) -> f32 {
    attribute(node, name).map_or(default, |a| a.f)
}

fn ints_attr(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attribute(node, name).map(|a| a.ints.clone())
}

/// A square 2-D window attribute (`kernel_shape`, `strides`, `dilations`) as one size.
fn square(node: &NodeProto, name: &str, default: usize) -> Result<usize> {
    match ints_attr(node, name).as_deref() {
        None => Ok(default),
        Some([a, b]) if a == b && *a > 0 => Ok(*a as usize),
        Some(v) => Err(node_error(
            node,
            format!("{name} {v:?} is not supported (two equal positive values are)"),
        )),
    }
}

/// Symmetric `pads` `[p, p, p, p]` as one size.
fn symmetric_pads(node: &NodeProto) -> Result<usize> {
    match ints_attr(node, "pads").as_deref() {
        None => Ok(0),
        Some([a, b, c, d]) if a == b && b == c && c == d && *a >= 0 => Ok(*a as usize),
        Some(v) => Err(node_error(
            node,
            format!("pads {v:?} are not supported (four equal values are)"),
        )),
    }
}

fn arity(node: &NodeProto, args: &[Tensor], allowed: &[usize]) -> Result<()> {
    if allowed.contains(&args.len()) {
        Ok(())
    } else {
        Err(node_error(
            node,
            format!("takes {allowed:?} inputs, got {}", args.len()),
        ))
    }
}

/// The three tensors of `Where` (or two of a binary op) broadcast to one shape.
fn broadcast_all(args: &[Tensor]) -> candle_core::Result<Vec<Tensor>> {
    let mut shape = args[0].shape().clone();
    for a in &args[1..] {
        shape = shape.broadcast_shape_binary_op(a.shape(), "broadcast")?;
    }
    args.iter().map(|a| a.broadcast_as(&shape)).collect()
}

fn run_node(node: &NodeProto, args: &[Tensor]) -> Result<Tensor> {
    let op = node.op_type.as_str();
    if !node.domain.is_empty() && node.domain != "ai.onnx" {
        return Err(node_error(
            node,
            format!("domain `{}` is not supported", node.domain),
        ));
    }
    let tensor_error = |e: candle_core::Error| node_failed(node, NodeProblem::Tensor(e));
    match op {
        "Relu" | "Tanh" | "Sigmoid" | "Flatten" | "Cast" => arity(node, args, &[1])?,
        "Gemm" | "Conv" => arity(node, args, &[2, 3])?,
        "MaxPool" => arity(node, args, &[1])?,
        "Where" => arity(node, args, &[3])?,
        _ => {}
    }
    let out = match op {
        "Relu" => args[0].relu(),
        "Tanh" => args[0].tanh(),
        "Sigmoid" => candle_nn::ops::sigmoid(&args[0]),
        "Add" | "Mul" | "GreaterOrEqual" | "Less" | "And" => {
            arity(node, args, &[2])?;
            let (a, b) = (&args[0], &args[1]);
            match op {
                "Add" => a.broadcast_add(b),
                "Mul" => a.broadcast_mul(b),
                "GreaterOrEqual" => a.broadcast_ge(b),
                "Less" => a.broadcast_lt(b),
                _ => broadcast_all(args).and_then(|v| {
                    v[0].ne(0u8)?
                        .to_dtype(DType::U8)?
                        .mul(&v[1].ne(0u8)?.to_dtype(DType::U8)?)
                }),
            }
        }
        "Where" => {
            let cond = args[0].ne(0u8).map_err(tensor_error)?;
            broadcast_all(&[cond, args[1].clone(), args[2].clone()])
                .and_then(|v| v[0].where_cond(&v[1], &v[2]))
        }
        "Cast" => {
            let to = int_attr(node, "to", 0);
            let dtype = match DataType::try_from(to as i32) {
                Ok(DataType::Float) => DType::F32,
                Ok(DataType::Int64) => DType::I64,
                Ok(DataType::Uint8 | DataType::Bool) => DType::U8,
                _ => {
                    return Err(node_error(
                        node,
                        format!(
                            "cast to data type {to} is not supported (float, int64, uint8 are)"
                        ),
                    ));
                }
            };
            args[0].to_dtype(dtype)
        }
        "Flatten" => {
            let dims = args[0].dims();
            let axis = int_attr(node, "axis", 1);
            let axis = if axis < 0 {
                axis + dims.len() as i64
            } else {
                axis
            };
            if axis < 0 || axis as usize > dims.len() {
                return Err(node_error(
                    node,
                    format!("axis out of range for a rank-{} input", dims.len()),
                ));
            }
            let (head, tail) = dims.split_at(axis as usize);
            args[0].reshape((
                head.iter().product::<usize>(),
                tail.iter().product::<usize>(),
            ))
        }
        "Reshape" => {
            arity(node, args, &[2])?;
            if int_attr(node, "allowzero", 0) != 0 {
                return Err(node_error(node, "allowzero = 1 is not supported"));
            }
            let wanted = args[1]
                .to_dtype(DType::I64)
                .and_then(|s| s.flatten_all()?.to_vec1::<i64>())
                .map_err(tensor_error)?;
            let dims = args[0].dims();
            let mut shape: Vec<usize> = Vec::with_capacity(wanted.len());
            let mut infer = None;
            for (i, &d) in wanted.iter().enumerate() {
                match d {
                    0 => shape.push(*dims.get(i).ok_or_else(|| {
                        node_error(node, format!("shape entry {i} copies a missing dimension"))
                    })?),
                    -1 if infer.is_none() => {
                        infer = Some(i);
                        shape.push(1);
                    }
                    d if d > 0 => shape.push(d as usize),
                    d => return Err(node_error(node, format!("invalid shape entry {d}"))),
                }
            }
            if let Some(i) = infer {
                let known: usize = shape.iter().product();
                shape[i] = args[0].elem_count() / known.max(1);
            }
            args[0].reshape(shape)
        }
        "Gather" => {
            arity(node, args, &[2])?;
            let (data, index) = (&args[0], &args[1]);
            let rank = data.rank() as i64;
            let axis = int_attr(node, "axis", 0);
            let axis = if axis < 0 { axis + rank } else { axis };
            if !(0..rank).contains(&axis) {
                return Err(node_error(
                    node,
                    format!("axis {axis} is out of range for data of rank {rank}"),
                ));
            }
            let axis = axis as usize;
            let rows = data.dims()[axis] as i64;
            let wanted = index
                .to_dtype(DType::I64)
                .and_then(|i| i.flatten_all()?.to_vec1::<i64>())
                .map_err(tensor_error)?;
            // ONNX: negative indices count from the end; anything outside -rows..rows is an
            // error, never a silent clamp.
            let picked = wanted
                .iter()
                .map(|&i| {
                    let j = if i < 0 { i + rows } else { i };
                    if (0..rows).contains(&j) {
                        Ok(j as u32)
                    } else {
                        Err(node_error(
                            node,
                            format!("index {i} is out of range for {rows} rows"),
                        ))
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            let ids = Tensor::new(picked, data.device()).map_err(tensor_error)?;
            // Output shape: data's dims before `axis`, the index's dims, data's after it.
            data.index_select(&ids, axis).and_then(|g| {
                let mut shape = data.dims()[..axis].to_vec();
                shape.extend_from_slice(index.dims());
                shape.extend_from_slice(&data.dims()[axis + 1..]);
                g.reshape(shape)
            })
        }
        "Gemm" => {
            let (a, b) = (&args[0], &args[1]);
            let a = if int_attr(node, "transA", 0) != 0 {
                a.t()
            } else {
                Ok(a.clone())
            };
            let b = if int_attr(node, "transB", 0) != 0 {
                b.t()
            } else {
                Ok(b.clone())
            };
            let (alpha, beta) = (
                float_attr(node, "alpha", 1.0),
                float_attr(node, "beta", 1.0),
            );
            a.and_then(|a| a.matmul(&b?.contiguous()?))
                .and_then(|y| {
                    if alpha == 1.0 {
                        Ok(y)
                    } else {
                        y.affine(alpha as f64, 0.0)
                    }
                })
                .and_then(|y| match args.get(2) {
                    Some(c) if beta == 1.0 => y.broadcast_add(c),
                    Some(c) => y.broadcast_add(&c.affine(beta as f64, 0.0)?),
                    None => Ok(y),
                })
        }
        "Conv" => {
            if int_attr(node, "group", 1) != 1 {
                return Err(node_error(node, "group ≠ 1 is not supported"));
            }
            if attribute(node, "auto_pad").is_some_and(|a| a.s != b"NOTSET") {
                return Err(node_error(
                    node,
                    "auto_pad is not supported (explicit pads are)",
                ));
            }
            let stride = square(node, "strides", 1)?;
            let dilation = square(node, "dilations", 1)?;
            let padding = symmetric_pads(node)?;
            let kernel = args[1].dims().get(2).copied().unwrap_or(0);
            if let Some(k) = ints_attr(node, "kernel_shape")
                && k.iter().any(|&v| v as usize != kernel)
            {
                return Err(node_error(
                    node,
                    format!(
                        "kernel_shape {k:?} does not match the weight's shape {:?}",
                        args[1].dims()
                    ),
                ));
            }
            args[0]
                .conv2d(&args[1], padding, stride, dilation, 1)
                .and_then(|y| match args.get(2) {
                    Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?),
                    None => Ok(y),
                })
        }
        "MaxPool" => {
            if symmetric_pads(node)? != 0 {
                return Err(node_error(node, "padding is not supported"));
            }
            if int_attr(node, "ceil_mode", 0) != 0 {
                return Err(node_error(node, "ceil_mode = 1 is not supported"));
            }
            if square(node, "dilations", 1)? != 1 {
                return Err(node_error(node, "dilations are not supported"));
            }
            let kernel = square(node, "kernel_shape", 0)?;
            if kernel == 0 {
                return Err(node_error(node, "kernel_shape is required"));
            }
            let stride = square(node, "strides", 1)?;
            args[0].max_pool2d_with_stride(kernel, stride)
        }
        other => {
            return Err(node_error(
                node,
                format!(
                    "op `{other}` is not supported by gatekit's reference runtime (it runs {}); use --runtime tract or candle",
                    SUPPORTED_OPS.join(", ")
                ),
            ));
        }
    };
    out.map_err(tensor_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::proto::{AttributeProto, attribute_proto::AttributeType};

    fn node(op: &str, inputs: &[&str], attribute: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            name: format!("{op}1"),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec!["y".into()],
            attribute,
            ..Default::default()
        }
    }

    fn int(name: &str, i: i64) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Int as i32,
            i,
            ..Default::default()
        }
    }

    fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Ints as i32,
            ints: v.to_vec(),
            ..Default::default()
        }
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    fn cpu() -> Device {
        Device::Cpu
    }

    #[test]
    fn gemm_follows_trans_alpha_beta() {
        // y = 2 · A · Bᵀ + 0.5 · C, by hand: A = [[1, 2]], B = [[3, 4], [5, 6]], C = [10, 20].
        let a = Tensor::new(&[[1f32, 2.]], &cpu()).unwrap();
        let b = Tensor::new(&[[3f32, 4.], [5., 6.]], &cpu()).unwrap();
        let c = Tensor::new(&[10f32, 20.], &cpu()).unwrap();
        let mut n = node("Gemm", &["a", "b", "c"], vec![int("transB", 1)]);
        n.attribute.push(AttributeProto {
            name: "alpha".into(),
            f: 2.0,
            ..Default::default()
        });
        n.attribute.push(AttributeProto {
            name: "beta".into(),
            f: 0.5,
            ..Default::default()
        });
        let y = run_node(&n, &[a, b, c]).unwrap();
        assert_eq!(values(&y), [2. * 11. + 5., 2. * 17. + 10.]);
    }

    #[test]
    fn gather_counts_negative_indices_from_the_end_and_refuses_out_of_range() {
        let data = Tensor::new(&[[1f32, 2.], [3., 4.], [5., 6.]], &cpu()).unwrap();
        let n = node("Gather", &["d", "i"], vec![int("axis", 0)]);
        let last = run_node(&n, &[data.clone(), Tensor::new(-1i64, &cpu()).unwrap()]).unwrap();
        assert_eq!(last.dims(), [2]);
        assert_eq!(values(&last), [5., 6.]);
        let two = Tensor::new(&[0i64, 2], &cpu()).unwrap();
        assert_eq!(
            values(&run_node(&n, &[data.clone(), two]).unwrap()),
            [1., 2., 5., 6.]
        );
        // Axis 1 (a Task-IL head's units of a [batch, units] output).
        let columns = node("Gather", &["d", "i"], vec![int("axis", 1)]);
        let picked = run_node(
            &columns,
            &[data.clone(), Tensor::new(&[1i64, 0], &cpu()).unwrap()],
        )
        .unwrap();
        assert_eq!(picked.dims(), [3, 2]);
        assert_eq!(values(&picked), [2., 1., 4., 3., 6., 5.]);
        let e = run_node(
            &node("Gather", &["d", "i"], vec![int("axis", 2)]),
            &[data.clone(), Tensor::new(0i64, &cpu()).unwrap()],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("axis 2 is out of range"), "{e}");
        for bad in [3i64, -4] {
            let e = run_node(&n, &[data.clone(), Tensor::new(bad, &cpu()).unwrap()])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("Gather1") && e.contains(&format!("index {bad}")),
                "{e}"
            );
        }
    }

    #[test]
    fn reshape_copies_zero_and_infers_minus_one() {
        let x = Tensor::arange(0f32, 24., &cpu())
            .unwrap()
            .reshape((2, 3, 4))
            .unwrap();
        let n = node("Reshape", &["x", "s"], vec![]);
        let s = Tensor::new(&[0i64, -1], &cpu()).unwrap();
        assert_eq!(run_node(&n, &[x.clone(), s]).unwrap().dims(), [2, 12]);
        let scalar = Tensor::new(&[7i64], &cpu()).unwrap();
        let empty = Tensor::new(&[0i64; 0], &cpu()).unwrap();
        assert_eq!(run_node(&n, &[scalar, empty]).unwrap().dims(), [0usize; 0]);
    }

    #[test]
    fn where_and_comparisons_broadcast() {
        let t = Tensor::new(&[-1i64, 0, 2, 5], &cpu()).unwrap();
        let zero = Tensor::new(0i64, &cpu()).unwrap();
        let count = Tensor::new(3i64, &cpu()).unwrap();
        let ge = run_node(
            &node("GreaterOrEqual", &["t", "z"], vec![]),
            &[t.clone(), zero],
        )
        .unwrap();
        let lt = run_node(&node("Less", &["t", "c"], vec![]), &[t, count]).unwrap();
        let ok = run_node(&node("And", &["a", "b"], vec![]), &[ge, lt]).unwrap();
        assert_eq!(values(&ok), [0., 1., 1., 0.]);
        let one = Tensor::new(1f32, &cpu()).unwrap();
        let nan = Tensor::new(f32::NAN, &cpu()).unwrap();
        let w = run_node(&node("Where", &["c", "a", "b"], vec![]), &[ok, one, nan]).unwrap();
        let w = values(&w);
        assert!(
            w[0].is_nan() && w[3].is_nan() && w[1] == 1. && w[2] == 1.,
            "{w:?}"
        );
    }

    #[test]
    fn conv_and_maxpool_match_hand_computed_values() {
        // A 1×1×3×3 input, a 2×2 kernel of ones, bias 0.5, stride 1, no padding: window sums.
        let x = Tensor::arange(1f32, 10., &cpu())
            .unwrap()
            .reshape((1, 1, 3, 3))
            .unwrap();
        let w = Tensor::ones((1, 1, 2, 2), DType::F32, &cpu()).unwrap();
        let b = Tensor::new(&[0.5f32], &cpu()).unwrap();
        let conv = node(
            "Conv",
            &["x", "w", "b"],
            vec![ints("kernel_shape", &[2, 2])],
        );
        let y = run_node(&conv, &[x.clone(), w, b]).unwrap();
        assert_eq!(values(&y), [12.5, 16.5, 24.5, 28.5]);
        let pool = node(
            "MaxPool",
            &["x"],
            vec![ints("kernel_shape", &[2, 2]), ints("strides", &[1, 1])],
        );
        assert_eq!(values(&run_node(&pool, &[x]).unwrap()), [5., 6., 8., 9.]);
    }

    #[test]
    fn unsupported_ops_and_attributes_name_the_node() {
        let x = Tensor::ones((1, 1, 4, 4), DType::F32, &cpu()).unwrap();
        let e = run_node(&node("Softmax", &["x"], vec![]), std::slice::from_ref(&x))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Softmax1") && e.contains("op `Softmax` is not supported"),
            "{e}"
        );
        let pool = node(
            "MaxPool",
            &["x"],
            vec![ints("kernel_shape", &[2, 2]), int("ceil_mode", 1)],
        );
        let e = run_node(&pool, &[x]).unwrap_err().to_string();
        assert!(e.contains("MaxPool1") && e.contains("ceil_mode"), "{e}");
    }
}
