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

#[cfg(feature = "candle-onnx")]
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
    assert_eq!(tract.len(), batch);
    // gatekit's own evaluation path (its reference interpreter) on the all-tasks file agrees
    // as well.
    let xt = candle_core::Tensor::from_vec(x.clone(), (batch, features), &candle_core::Device::Cpu)
        .unwrap();
    let mut session = gatekit::export::check::OnnxSession::open(
        &dir.join("all_tasks.onnx"),
        gatekit::export::check::Runtime::Reference,
    )
    .unwrap();
    let reference_all: Vec<f32> = session
        .run(&xt, Some(1))
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    for (t, a) in tract.iter().zip(&reference_all) {
        assert!((t - a).abs() < 1e-4, "{tract:?} {reference_all:?}");
    }
    #[cfg(feature = "candle-onnx")]
    {
        let candle =
            predict_with_candle(&dir.join("b.onnx"), x.clone(), batch, features, None).unwrap();
        let all =
            predict_with_candle(&dir.join("all_tasks.onnx"), x, batch, features, Some(1)).unwrap();
        for ((t, c), a) in tract.iter().zip(&candle).zip(&all) {
            assert!(
                (t - c).abs() < 1e-4 && (c - a).abs() < 1e-4,
                "{tract:?} {candle:?} {all:?}"
            );
        }
    }
}

/// The exporting page's metadata table is `gatekit::export::ONNX_METADATA`, and exported files
/// carry exactly those keys (per-task keys in `<task>.onnx`, all-tasks keys in
/// `all_tasks.onnx`), with the config spellings of the gate.
#[test]
fn onnx_metadata_table_matches_the_code_and_the_files() {
    use gatekit::export::{MetadataFile, ONNX_METADATA, onnx_metadata_markdown};
    let page = std::fs::read_to_string(common::repo("book/src/exporting.md")).unwrap();
    let begin = "<!-- onnx-metadata: begin -->\n";
    let end = "<!-- onnx-metadata: end -->";
    let start = page.find(begin).expect("begin marker") + begin.len();
    let stop = page.find(end).expect("end marker");
    let expected = onnx_metadata_markdown();
    assert!(
        page[start..stop] == expected,
        "book/src/exporting.md's metadata table is out of date; it should read:\n{expected}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let set = common::write_task_set(
        tmp.path(),
        "set.toml",
        "[run]\nmodel = \"MODELS/mlp.toml\"\nsteps = 20\n[defaults]\nkind = \"sinusoid\"\n[[task]]\nname = \"a\"\n[[task]]\nname = \"b\"\n",
    );
    let out = common::gtk(
        tmp.path(),
        &[
            "train",
            "--task-set",
            set.to_str().unwrap(),
            "--name",
            "r",
            "-q",
        ],
    );
    assert!(out.status.success(), "{:?}", common::text(&out));
    for (flags, gate) in [
        (&[][..], "sigmoid"),
        (&["--binarize"][..], "binary"),
        (&["--binarize", "--rescale"][..], "binary-rescaled"),
    ] {
        // --force: each export replaces the previous one in `e` (only its own files).
        let mut args = vec!["export", "runs/r", "--out", "e", "--force"];
        args.extend_from_slice(flags);
        let out = common::gtk(tmp.path(), &args);
        assert!(out.status.success(), "{:?}", common::text(&out));
        for (file, kind) in [
            ("a.onnx", MetadataFile::PerTask),
            ("all_tasks.onnx", MetadataFile::AllTasks),
        ] {
            let model =
                gatekit::export::check::read_model(&tmp.path().join("e").join(file)).unwrap();
            let mut keys: Vec<&str> = model
                .metadata_props
                .iter()
                .map(|p| p.key.as_str())
                .collect();
            keys.sort();
            let mut documented: Vec<&str> = ONNX_METADATA
                .iter()
                .filter(|(_, f, _)| *f == kind || *f == MetadataFile::Both)
                .map(|(k, _, _)| *k)
                .collect();
            documented.sort();
            assert_eq!(keys, documented, "{file}");
            let value = |k: &str| {
                model
                    .metadata_props
                    .iter()
                    .find(|p| p.key == k)
                    .map(|p| p.value.clone())
                    .unwrap()
            };
            assert_eq!(value("gatekit.gate"), gate, "{file} {flags:?}");
            if kind == MetadataFile::AllTasks {
                assert_eq!(value("gatekit.tasks"), "a,b");
            } else {
                assert_eq!(value("gatekit.task"), "a");
                let off: f64 = value("gatekit.off_share").parse().unwrap();
                assert!((0.0..=1.0).contains(&off));
            }
        }
    }
}
