//! Request and response bodies: a batch of inputs as JSON nested arrays or as a `.npy` array
//! (`Content-Type: application/x-npy`), outputs answered in the same format. Every malformed
//! body is a 400 whose message names what was expected and what was got.

use super::error::{Result, ServeError};
use crate::task::tensors::array::{Dtype, parse_npy};
use serde_json::Value;

/// The media type of `.npy` bodies.
pub const NPY: &str = "application/x-npy";

/// A batch of inputs, row-major `[batch, ..input]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The values.
    pub values: Vec<f32>,
    /// Examples in it.
    pub batch: usize,
}

fn shape_text(shape: &[usize]) -> String {
    let inner: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", inner.join(", "))
}

/// Checks a received shape against the model's input: `[batch, ..input]`, or one example
/// `input`; returns the batch size.
pub fn batch_of(got: &[usize], input: &[usize]) -> Result<usize> {
    let expected = || {
        format!(
            "expected inputs of shape [batch, {}] (or one example {}), got {}",
            input
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            shape_text(input),
            shape_text(got)
        )
    };
    let batch = if got == input {
        1
    } else if got.len() == input.len() + 1 && got[1..] == *input {
        got[0]
    } else {
        return Err(ServeError::BadRequest(expected()));
    };
    if batch == 0 {
        return Err(ServeError::BadRequest(format!(
            "{}: the batch is empty",
            expected()
        )));
    }
    Ok(batch)
}

/// The shape of a nested JSON array, its numbers appended to `out`; `null` is read as NaN.
fn walk(v: &Value, depth: usize, shape: &mut Vec<usize>, out: &mut Vec<f32>) -> Result<()> {
    match v {
        Value::Array(items) => {
            if shape.len() == depth {
                shape.push(items.len());
            } else if shape.len() < depth || shape[depth] != items.len() {
                return Err(ServeError::BadRequest(format!(
                    "`inputs` is ragged: at depth {depth} a list has {} items where an earlier one had {}",
                    items.len(),
                    shape.get(depth).copied().unwrap_or(0)
                )));
            }
            for item in items {
                walk(item, depth + 1, shape, out)?;
            }
            Ok(())
        }
        Value::Number(n) => {
            if shape.len() != depth {
                return Err(ServeError::BadRequest(format!(
                    "`inputs` is ragged: a number at depth {depth} where lists of depth {} are expected",
                    shape.len()
                )));
            }
            out.push(n.as_f64().unwrap_or(f64::NAN) as f32);
            Ok(())
        }
        Value::Null if shape.len() == depth => {
            out.push(f32::NAN);
            Ok(())
        }
        other => Err(ServeError::BadRequest(format!(
            "`inputs` must hold only numbers (nested lists of float); got {}",
            match other {
                Value::String(_) => "a string",
                Value::Bool(_) => "a boolean",
                Value::Object(_) => "an object",
                _ => "null inside a list of lists",
            }
        ))),
    }
}

/// A JSON body: `{"inputs": [[...], ...]}` (with `"task": "name"` for `POST /v1/predict`), or
/// the bare nested array. Returns the task field, if any, and the batch.
pub fn parse_json(body: &[u8], input: &[usize]) -> Result<(Option<String>, Batch)> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ServeError::BadRequest(format!(
            "body is not valid JSON ({e}); expected {{\"inputs\": [[...], ...]}}"
        ))
    })?;
    let (task, inputs) = match value {
        Value::Object(mut map) => {
            let task = match map.remove("task") {
                None => None,
                Some(Value::String(s)) => Some(s),
                Some(other) => {
                    return Err(ServeError::BadRequest(format!(
                        "`task` must be a string (a task name), got {other}"
                    )));
                }
            };
            let inputs = map.remove("inputs").ok_or_else(|| {
                ServeError::BadRequest(
                    "body has no `inputs`; expected {\"inputs\": [[...], ...]}".into(),
                )
            })?;
            (task, inputs)
        }
        v @ Value::Array(_) => (None, v),
        _ => {
            return Err(ServeError::BadRequest(
                "body must be a JSON object {\"inputs\": [[...], ...]} or a nested array".into(),
            ));
        }
    };
    let mut shape = Vec::new();
    let mut values = Vec::new();
    walk(&inputs, 0, &mut shape, &mut values)?;
    let batch = batch_of(&shape, input)?;
    Ok((task, Batch { values, batch }))
}

/// A `.npy` body: float32/float64 (or integer) array `[batch, ..input]`, C order.
pub fn parse_npy_body(body: &[u8], input: &[usize]) -> Result<Batch> {
    let (dtype, shape, offset) =
        parse_npy(body).map_err(|m| ServeError::BadRequest(format!("the .npy body {m}")))?;
    let batch = batch_of(&shape, input)?;
    let n: usize = shape.iter().product();
    let data = &body[offset..];
    let size = dtype.size();
    let read = |i: usize| -> f32 {
        let b = &data[i * size..(i + 1) * size];
        match dtype {
            Dtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Dtype::F64 => {
                f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }
            Dtype::I8 => b[0] as i8 as f32,
            Dtype::U8 | Dtype::Bool => b[0] as f32,
            Dtype::I16 => i16::from_le_bytes([b[0], b[1]]) as f32,
            Dtype::U16 => u16::from_le_bytes([b[0], b[1]]) as f32,
            Dtype::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            Dtype::U32 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            Dtype::I64 => {
                i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }
            Dtype::U64 => {
                u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }
        }
    };
    Ok(Batch {
        values: (0..n).map(read).collect(),
        batch,
    })
}

/// Index of the largest value per row; `None` for a row with a NaN.
pub fn argmax(outputs: &[f32], width: usize) -> Vec<Option<usize>> {
    outputs
        .chunks(width.max(1))
        .map(|row| {
            if row.iter().any(|v| v.is_nan()) {
                return None;
            }
            let mut best = 0;
            for (i, v) in row.iter().enumerate() {
                if *v > row[best] {
                    best = i;
                }
            }
            Some(best)
        })
        .collect()
}

/// The JSON answer: `{"task", "outputs": [[...]], "argmax": [...]}` (argmax for
/// classification only); non-finite outputs are `null`. A Task-IL task's answer also names
/// its `head` (the output units its values are, in order: argmax `i` is unit `head[i]`).
pub fn json_response(
    task: &str,
    outputs: &[f32],
    width: usize,
    classes: bool,
    head: Option<&[usize]>,
) -> Value {
    let rows: Vec<Value> = outputs
        .chunks(width.max(1))
        .map(|row| {
            Value::Array(
                row.iter()
                    .map(|&v| {
                        serde_json::Number::from_f64(v as f64)
                            .map(Value::Number)
                            .unwrap_or(Value::Null)
                    })
                    .collect(),
            )
        })
        .collect();
    let mut map = serde_json::Map::new();
    map.insert("task".into(), Value::String(task.into()));
    map.insert("outputs".into(), Value::Array(rows));
    if let Some(units) = head {
        map.insert("head".into(), Value::from(units.to_vec()));
    }
    if classes {
        map.insert(
            "argmax".into(),
            Value::Array(
                argmax(outputs, width)
                    .into_iter()
                    .map(|a| a.map_or(Value::Null, |i| Value::from(i as u64)))
                    .collect(),
            ),
        );
    }
    Value::Object(map)
}

/// A float32 `.npy` (format 1.0) of shape `shape`.
pub fn npy_bytes(values: &[f32], shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * values.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_batches_single_examples_and_bad_shapes() {
        let (task, b) =
            parse_json(br#"{"task": "t1", "inputs": [[1, 2], [3, 4.5]]}"#, &[2]).unwrap();
        assert_eq!(task.as_deref(), Some("t1"));
        assert_eq!(
            b,
            Batch {
                values: vec![1.0, 2.0, 3.0, 4.5],
                batch: 2
            }
        );
        let (_, b) = parse_json(b"[1, 2]", &[2]).unwrap();
        assert_eq!(b.batch, 1);
        let e = parse_json(br#"{"inputs": [[1, 2, 3]]}"#, &[2]).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(
            e.to_string()
                .contains("expected inputs of shape [batch, 2]"),
            "{e}"
        );
        assert!(e.to_string().contains("got [1, 3]"), "{e}");
        let e = parse_json(br#"{"inputs": [[1, 2], [3]]}"#, &[2]).unwrap_err();
        assert!(e.to_string().contains("ragged"), "{e}");
        let e = parse_json(br#"{"inputs": [["a", 2]]}"#, &[2]).unwrap_err();
        assert!(e.to_string().contains("a string"), "{e}");
        let e = parse_json(b"{", &[2]).unwrap_err();
        assert!(e.to_string().contains("not valid JSON"), "{e}");
        let e = parse_json(br#"{"inputs": []}"#, &[2]).unwrap_err();
        assert_eq!(e.status(), 400);
    }

    /// A Task-IL answer names its head; argmax counts within it.
    #[test]
    fn json_answer_names_the_head() {
        let v = json_response("t1", &[0.1, 0.9, 0.7, 0.2], 2, true, Some(&[2, 3]));
        assert_eq!(v["head"], serde_json::json!([2, 3]));
        assert_eq!(v["argmax"], serde_json::json!([1, 0]));
        assert!(
            json_response("t", &[0.1], 1, false, None)
                .get("head")
                .is_none()
        );
    }

    #[test]
    fn npy_round_trips_and_argmax_skips_nan() {
        let bytes = npy_bytes(&[1.0, 2.0, 3.0, f32::NAN], &[2, 2]);
        let b = parse_npy_body(&bytes, &[2]).unwrap();
        assert_eq!(b.batch, 2);
        assert_eq!(&b.values[..3], &[1.0, 2.0, 3.0]);
        assert!(b.values[3].is_nan());
        assert_eq!(argmax(&b.values, 2), vec![Some(1), None]);
        let e = parse_npy_body(&bytes[..bytes.len() - 1], &[2]).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let e = parse_npy_body(&bytes, &[3]).unwrap_err();
        assert!(e.to_string().contains("got [2, 2]"), "{e}");
    }
}
