//! The book's Rust deployment snippets (book/src/exporting.md includes the parts between the
//! `ANCHOR` comments), compiled and run here: a tiny run is trained and exported with the real
//! `gtk` binary, then one task's ONNX file is loaded with tract-onnx and with candle-onnx, and
//! `all_tasks.onnx` with the task's index must agree with the per-task file.

mod common;
use std::path::Path;

// ANCHOR: tract
/// Runs an exported per-task model (`exports/<run>/<task>.onnx`) with tract-onnx on a batch
/// of `batch` rows of `features` floats; returns the `output` tensor, row-major.
fn predict_with_tract(
    path: &Path,
    x: Vec<f32>,
    batch: usize,
    features: usize,
) -> tract_onnx::prelude::TractResult<Vec<f32>> {
    use tract_onnx::prelude::*;
    let model = tract_onnx::onnx()
        .model_for_path(path)?
        // The batch axis is dynamic in the file; fix it for this call.
        .with_input_fact(0, f32::fact([batch, features]).into())?
        .into_optimized()?
        .into_runnable()?;
    let input = tract_ndarray::Array2::from_shape_vec((batch, features), x)?;
    let outputs = model.run(tvec!(input.into_tensor().into_tvalue()))?;
    Ok(outputs[0]
        .to_plain_array_view::<f32>()?
        .iter()
        .copied()
        .collect())
}
// ANCHOR_END: tract

// ANCHOR: candle
/// The same with candle-onnx; `task` selects the mask when `path` is `all_tasks.onnx` (the
/// task's position in the task set, an int64 scalar).
fn predict_with_candle(
    path: &Path,
    x: Vec<f32>,
    batch: usize,
    features: usize,
    task: Option<i64>,
) -> candle_core::Result<Vec<f32>> {
    use candle_core::{Device, Tensor};
    use std::collections::HashMap;
    let model = candle_onnx::read_file(path)?;
    let mut inputs = HashMap::new();
    inputs.insert(
        "input".to_string(),
        Tensor::from_vec(x, (batch, features), &Device::Cpu)?,
    );
    if let Some(t) = task {
        inputs.insert("task".to_string(), Tensor::new(t, &Device::Cpu)?);
    }
    let mut outputs = candle_onnx::simple_eval(&model, inputs)?;
    let output = outputs
        .remove("output")
        .ok_or_else(|| candle_core::Error::Msg("no `output`".into()))?;
    output.flatten_all()?.to_vec1::<f32>()
}
// ANCHOR_END: candle

#[test]
fn book_deployment_snippets_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let set = common::write_task_set(
        tmp.path(),
        "set.toml",
        "[run]\nmodel = \"MODELS/mlp.toml\"\nsteps = 100\n[defaults]\nkind = \"sinusoid\"\n[[task]]\nname = \"a\"\n[[task]]\nname = \"b\"\n",
    );
    let set = set.to_str().unwrap();
    let out = common::gtk(
        tmp.path(),
        &["train", "--task-set", set, "--name", "r", "-q"],
    );
    assert!(out.status.success(), "{:?}", common::text(&out));
    let out = common::gtk(tmp.path(), &["export", "runs/r", "--binarize"]);
    assert!(out.status.success(), "{:?}", common::text(&out));
    let (batch, features) = (5, 8);
    let x: Vec<f32> = (0..batch * features)
        .map(|i| ((i * 7) % 11) as f32 / 11.0 - 0.5)
        .collect();
    let dir = tmp.path().join("exports/r");
    let tract = predict_with_tract(&dir.join("b.onnx"), x.clone(), batch, features).unwrap();
    let candle =
        predict_with_candle(&dir.join("b.onnx"), x.clone(), batch, features, None).unwrap();
    let all =
        predict_with_candle(&dir.join("all_tasks.onnx"), x, batch, features, Some(1)).unwrap();
    assert_eq!(tract.len(), batch);
    for ((t, c), a) in tract.iter().zip(&candle).zip(&all) {
        assert!(
            (t - c).abs() < 1e-4 && (c - a).abs() < 1e-4,
            "{tract:?} {candle:?} {all:?}"
        );
    }
}
