//! Export: every model in `models/` exports to ONNX that tract (directly and through
//! gatekit's `OnnxSession`) and, with the `candle-onnx` feature, candle-onnx run with the
//! same outputs as gatekit's own forward (atol 1e-5, rtol 1e-3) on real test inputs; the mask
//! file has the documented size and rebuilds W ⊙ 1[M > 0] exactly. The exports and gatekit's
//! reference outputs are also left in `target/tmp/export-fixtures/` for the Python test
//! (`tests/python/test_export.py`: onnx.checker, onnxruntime, numpy).

mod common;
use candle_core::{DType, Device, Tensor};
use common::flat;
use gatekit::TaskSet;
use gatekit::export::{ExportOptions, bitpack, check, export_run};
use gatekit::gate::{GateView, TaskGate};
use gatekit::params::TaskId;
use gatekit::run::BnRecalibration;
use gatekit::task::Split;
use gatekit::train::{Strategy, Trainer};
use std::path::{Path, PathBuf};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-3;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("export-fixtures")
}

/// A small task set for `model`: two tasks of a kind that fits it.
fn task_set(model: &str) -> Option<String> {
    let models = common::repo("models").display().to_string();
    let image = |kind: &str, extra: &str, a: &str, b: &str| {
        format!(
            "[run]\nmodel = \"{models}/{model}\"\nsteps = 24\nbatch_size = 16\neval_every = 24\neval_train_limit = 64\n\
             [defaults]\nkind = \"{kind}\"\ntest_limit = 64\n{extra}\n[[task]]\nname = \"a\"\n{a}\n[[task]]\nname = \"b\"\n{b}\n"
        )
    };
    match model {
        "linear.toml" => Some(format!(
            "[run]\nmodel = \"{models}/{model}\"\nsteps = 300\n[defaults]\nkind = \"linear\"\nnoise = 0.1\n[[task]]\nname = \"a\"\n[[task]]\nname = \"b\"\n"
        )),
        "mlp.toml" => Some(format!(
            "[run]\nmodel = \"{models}/{model}\"\nsteps = 300\n[defaults]\nkind = \"sinusoid\"\n[[task]]\nname = \"a\"\n[[task]]\nname = \"b\"\n"
        )),
        "lenet5.toml" | "lenet5-bn.toml" => {
            common::shared_data().map(|_| image("mnist", "", "", "background = [1.0, 0.0, 0.0]"))
        }
        "lenet5-gray.toml" => {
            common::shared_data().map(|_| image("mnist", "channels = 1", "", "inverted = true"))
        }
        "mlp-mnist.toml" => {
            common::shared_data().map(|_| image("permuted-mnist", "channels = 1\npad = 0", "", ""))
        }
        // The published continual-learning protocols' MLPs (issue 27): 28×28 split MNIST,
        // 32×32 padded permuted MNIST with one head or ten 10-unit heads.
        "mlp-400x2.toml" => {
            common::shared_data().map(|_| image("permuted-mnist", "channels = 1\npad = 0", "", ""))
        }
        "mlp-1000x2-10.toml" => {
            common::shared_data().map(|_| image("permuted-mnist", "channels = 1", "", ""))
        }
        "mlp-1000x2-100.toml" => common::shared_data()
            .map(|_| image("permuted-mnist", "channels = 1\noutputs = 100", "", "")),
        // SupSup's two permuted-MNIST networks, 500 outputs.
        "lenet-300-100-500.toml" | "fc-1024-1024-500.toml" => common::shared_data().map(|_| {
            image(
                "permuted-mnist",
                "channels = 1\npad = 0\noutputs = 500",
                "",
                "",
            )
        }),
        _ => None,
    }
}

fn close(a: &[f32], b: &[f32]) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("lengths {} vs {}", a.len(), b.len()));
    }
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if (x - y).abs() > ATOL + RTOL * y.abs() {
            return Err(format!("element {i}: {x} vs {y}"));
        }
    }
    Ok(())
}

fn tract_run(path: &Path, x: &Tensor, task: Option<i64>) -> Vec<f32> {
    let task = task.map(|t| Tensor::new(t, &Device::Cpu).unwrap());
    tract_run_with(path, x, task.as_ref())
}

fn tract_run_task_tensor(path: &Path, x: &Tensor, task: &Tensor) -> Vec<f32> {
    tract_run_with(path, x, Some(task))
}

/// tract driven directly (not through gatekit's session), `task` of any shape.
fn tract_run_with(path: &Path, x: &Tensor, task: Option<&Tensor>) -> Vec<f32> {
    use tract_onnx::prelude::*;
    let dims: Vec<usize> = x.dims().to_vec();
    let mut model = tract_onnx::onnx()
        .model_for_path(path)
        .unwrap()
        .with_input_fact(0, f32::fact(&dims).into())
        .unwrap();
    if let Some(t) = task {
        model = model
            .with_input_fact(1, i64::fact(t.dims()).into())
            .unwrap();
    }
    let runnable = model.into_optimized().unwrap().into_runnable().unwrap();
    let data = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let input = tract_ndarray::ArrayD::from_shape_vec(dims, data).unwrap();
    let mut inputs: TVec<TValue> = tvec!(input.into_tensor().into_tvalue());
    if let Some(t) = task {
        let values = t.flatten_all().unwrap().to_vec1::<i64>().unwrap();
        let arr = tract_ndarray::ArrayD::from_shape_vec(t.dims().to_vec(), values).unwrap();
        inputs.push(arr.into_tensor().into_tvalue());
    }
    let out = runnable.run(inputs).unwrap();
    out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

#[test]
fn every_model_exports_to_onnx_that_candle_onnx_and_tract_reproduce() {
    let models: Vec<String> = {
        let mut m: Vec<String> = std::fs::read_dir(common::repo("models"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        m.sort();
        m
    };
    assert!(models.len() >= 5, "{models:?}");
    let _ = std::fs::remove_dir_all(fixtures());
    let mut checked = 0;
    for model in &models {
        let Some(text) = task_set(model) else {
            assert!(
                common::shared_data().is_none(),
                "no task set for model {model}: add one to this test"
            );
            continue;
        };
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("set.toml");
        std::fs::write(&path, text).unwrap();
        let set = TaskSet::load(&path).unwrap();
        let data = common::shared_data();
        let mut trainer = Trainer::create(
            set,
            &[Strategy::Gated],
            &tmp.path().join("run"),
            data.as_deref(),
            &Device::Cpu,
        )
        .unwrap();
        trainer.train(None, &mut |_| {}).unwrap();
        let learner = &trainer.learners()[0];
        let stem = model.trim_end_matches(".toml");
        let mut reference: Vec<(String, Tensor)> = Vec::new();
        for binarize in [false, true] {
            let out = fixtures().join(format!(
                "{stem}-{}",
                if binarize { "binary" } else { "soft" }
            ));
            let summary = export_run(
                &trainer,
                &out,
                &ExportOptions {
                    binarize,
                    ..Default::default()
                },
            )
            .unwrap();
            let view = if binarize {
                GateView::Binary
            } else {
                GateView::Trained
            };
            // A binarized batch-norm model is exported with each task's statistics
            // re-estimated under its binarized mask: gatekit's answer is that model's.
            let recalibrated = trainer
                .recalibrated(
                    learner,
                    &[TaskId(0), TaskId(1)],
                    view,
                    BnRecalibration::default(),
                )
                .unwrap();
            let measured = recalibrated.as_ref().unwrap_or(learner);
            for (t, task) in ["a", "b"].iter().enumerate() {
                let n = trainer.task_set().tasks.len();
                assert_eq!(summary.tasks.len(), n);
                let built = trainer.task_set().build_tasks(data.as_deref()).unwrap();
                let idx: Vec<usize> = (0..16.min(built[t].len(Split::Test))).collect();
                let batch = built[t]
                    .batch(Split::Test, &idx, &Device::Cpu, DType::F32)
                    .unwrap();
                let ours = flat(&measured.predict(TaskId(t), &batch.x, 1.0, view).unwrap());
                let file = out.join(format!("{task}.onnx"));
                for runtime in check::Runtime::available() {
                    let mut session = check::OnnxSession::open(&file, runtime).unwrap();
                    let got = flat(&session.run(&batch.x, None).unwrap());
                    close(&got, &ours).unwrap_or_else(|e| {
                        panic!("{model} {task} binarize={binarize} {runtime:?}: {e}")
                    });
                    let mut all =
                        check::OnnxSession::open(&out.join("all_tasks.onnx"), runtime).unwrap();
                    let got = flat(&all.run(&batch.x, Some(t as i64)).unwrap());
                    close(&got, &ours)
                        .unwrap_or_else(|e| panic!("{model} all_tasks[{t}] {runtime:?}: {e}"));
                }
                let tract = tract_run(&file, &batch.x, None);
                close(&tract, &ours)
                    .unwrap_or_else(|e| panic!("{model} {task} binarize={binarize} tract: {e}"));
                let tract_all = tract_run(&out.join("all_tasks.onnx"), &batch.x, Some(t as i64));
                close(&tract_all, &ours)
                    .unwrap_or_else(|e| panic!("{model} all_tasks[{t}] tract: {e}"));
                let tag = if binarize { "binary" } else { "soft" };
                reference.push((format!("{tag}.input.{task}"), batch.x.clone()));
                reference.push((
                    format!("{tag}.output.{task}"),
                    Tensor::from_vec(ours.clone(), ours.len(), &Device::Cpu).unwrap(),
                ));
            }
            checked += 1;
        }
        // W ⊙ 1[M > 0] for the numpy rebuild check.
        let bank = learner.masks().unwrap().unwrap();
        for (t, task) in ["a", "b"].iter().enumerate() {
            let gate = TaskGate {
                masks: bank.get(TaskId(t)).unwrap(),
                mode: learner.gate_mode(),
                scale: 1.0,
                view: GateView::Binary,
            };
            for (i, (name, w)) in learner
                .network(TaskId(0))
                .unwrap()
                .params()
                .iter()
                .enumerate()
            {
                let eff = gate
                    .apply(i, w.as_tensor())
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap();
                reference.push((format!("effective.{task}.{name}"), eff));
            }
        }
        let bytes =
            safetensors::serialize(reference.iter().map(|(k, v)| (k.as_str(), v)), None).unwrap();
        std::fs::write(
            fixtures().join(format!("{stem}-reference.safetensors")),
            bytes,
        )
        .unwrap();
    }
    assert!(
        checked >= 4,
        "exported and checked {checked} model variants"
    );
}

/// masks.safetensors is 8 + header + Σ ⌈n/8⌉ bytes, and unpacking it rebuilds W ⊙ 1[M > 0]
/// exactly from weights.safetensors.
#[test]
fn mask_file_size_and_exact_rebuild() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("set.toml");
    std::fs::write(&path, task_set("mlp.toml").unwrap()).unwrap();
    let set = TaskSet::load(&path).unwrap();
    let mut trainer = Trainer::create(
        set,
        &[Strategy::Gated],
        &tmp.path().join("run"),
        None,
        &Device::Cpu,
    )
    .unwrap();
    trainer.train(None, &mut |_| {}).unwrap();
    let out = tmp.path().join("export");
    let summary = export_run(
        &trainer,
        &out,
        &ExportOptions {
            binarize: true,
            ..Default::default()
        },
    )
    .unwrap();
    let bytes = std::fs::read(out.join("masks.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let learner = &trainer.learners()[0];
    let net = learner.network(TaskId(0)).unwrap();
    let params = net.params();
    let payload: u64 = 2 * params
        .iter()
        .map(|(_, v)| v.elem_count().div_ceil(8) as u64)
        .sum::<u64>();
    assert_eq!(
        bytes.len() as u64,
        8 + header_len + payload,
        "8 + header + Σ⌈n/8⌉"
    );
    assert_eq!(summary.masks_payload_bytes, payload);
    assert_eq!(
        summary.masks_f32_bytes,
        2 * 4 * learner.network(TaskId(0)).unwrap().param_count() as u64
    );
    let masks = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let info: serde_json::Value =
        serde_json::from_str(&header.metadata().as_ref().unwrap()["gatekit"]).unwrap();
    assert_eq!(info["tasks"], serde_json::json!(["a", "b"]));
    assert!(info["bit_order"].as_str().unwrap().starts_with("msb-first"));
    let weights_bytes = std::fs::read(out.join("weights.safetensors")).unwrap();
    let weights = candle_core::safetensors::load_buffer(&weights_bytes, &Device::Cpu).unwrap();
    let bank = learner.masks().unwrap().unwrap();
    for (t, task) in ["a", "b"].iter().enumerate() {
        let gate = TaskGate {
            masks: bank.get(TaskId(t)).unwrap(),
            mode: learner.gate_mode(),
            scale: 1.0,
            view: GateView::Binary,
        };
        for (i, (name, w)) in params.iter().enumerate() {
            let view = masks.tensor(&format!("{name}.mask.{task}")).unwrap();
            assert_eq!(view.shape(), &[w.elem_count().div_ceil(8)]);
            let bits = bitpack::unpack(view.data(), w.elem_count()).unwrap();
            let w_file = flat(&weights[name]);
            let rebuilt: Vec<f32> = w_file
                .iter()
                .zip(&bits)
                .map(|(w, &b)| if b { *w } else { 0.0 })
                .collect();
            let expected = flat(&gate.apply(i, w.as_tensor()).unwrap());
            assert_eq!(rebuilt, expected, "{name} for task {task}");
        }
    }
    // Same content, same bytes.
    let again = tmp.path().join("export2");
    export_run(
        &trainer,
        &again,
        &ExportOptions {
            binarize: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        std::fs::read(again.join("masks.safetensors")).unwrap(),
        bytes
    );
}

/// The all-tasks `task` input contract in every runtime built in (gatekit's reference
/// interpreter always, tract and candle-onnx with their features, tract also driven directly
/// below; onnxruntime in tests/python/test_export.py): an index outside 0..T gives an all-NaN
/// output instead of another task's output (a negative index would wrap around in Gather) or an
/// error deep in the graph; a `[1]` tensor selects the same task as a scalar in the reference
/// interpreter and tract and is a one-line rank error in candle-onnx.
#[test]
fn all_tasks_task_index_contract_in_every_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("set.toml");
    let text = task_set("mlp.toml")
        .unwrap()
        .replace("steps = 300", "steps = 40");
    std::fs::write(&path, text).unwrap();
    let set = TaskSet::load(&path).unwrap();
    let mut trainer = Trainer::create(
        set,
        &[Strategy::Gated],
        &tmp.path().join("run"),
        None,
        &Device::Cpu,
    )
    .unwrap();
    trainer.train(None, &mut |_| {}).unwrap();
    for binarize in [false, true] {
        let out = tmp.path().join(format!("export-{binarize}"));
        export_run(
            &trainer,
            &out,
            &ExportOptions {
                binarize,
                ..Default::default()
            },
        )
        .unwrap();
        let file = out.join("all_tasks.onnx");
        let x = Tensor::arange(0f32, 24.0, &Device::Cpu)
            .unwrap()
            .affine(0.1, -1.0)
            .unwrap()
            .reshape((3, 8))
            .unwrap();
        let runtimes = check::Runtime::available();
        assert_eq!(
            runtimes.len(),
            1 + cfg!(feature = "tract") as usize + cfg!(feature = "candle-onnx") as usize
        );
        for runtime in runtimes {
            let mut s = check::OnnxSession::open(&file, runtime).unwrap();
            for t in [0i64, 1] {
                let scalar = flat(&s.run(&x, Some(t)).unwrap());
                assert_eq!(scalar.len(), 3);
                assert!(
                    scalar.iter().all(|v| v.is_finite()),
                    "{runtime:?} {t}: {scalar:?}"
                );
                // Shape [1]: tract (and onnxruntime, tests/python) follow the graph's reshape to
                // a scalar; candle-onnx enforces the declared rank with a clear error.
                let one = Tensor::new(&[t], &Device::Cpu).unwrap();
                match runtime {
                    check::Runtime::Reference | check::Runtime::Tract => {
                        let as_1 = flat(&s.run_with_task_tensor(&x, Some(&one)).unwrap());
                        assert_eq!(as_1, scalar, "{runtime:?}: task {t} as shape [1]");
                    }
                    check::Runtime::Candle => {
                        let e = s
                            .run_with_task_tensor(&x, Some(&one))
                            .unwrap_err()
                            .to_string();
                        assert!(e.contains("all_tasks.onnx") && e.contains("rank"), "{e}");
                        assert!(!e.contains('\n'), "{e}");
                    }
                }
            }
            for bad in [-1i64, -2, 2, 1000] {
                let got = flat(&s.run(&x, Some(bad)).unwrap());
                assert_eq!(got.len(), 3, "{runtime:?} task {bad}");
                assert!(
                    got.iter().all(|v| v.is_nan()),
                    "{runtime:?} binarize={binarize}: task {bad} gave {got:?}"
                );
            }
        }
        // tract driven directly, as a user would (tests/book.rs's snippet).
        assert!(tract_run(&file, &x, Some(-1)).iter().all(|v| v.is_nan()));
        let one = Tensor::new(&[1i64], &Device::Cpu).unwrap();
        assert_eq!(
            tract_run_task_tensor(&file, &x, &one),
            tract_run(&file, &x, Some(1))
        );
    }
}
