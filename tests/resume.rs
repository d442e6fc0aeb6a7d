//! A run stopped at step k and resumed ends with bit-identical tensors and the same metrics as
//! an uninterrupted run (all strategies, momentum on W, Adam on masks), on the fast engine and
//! on the reference.

mod common;
use common::*;
use std::collections::HashMap;

const SET: &str = r#"
[run]
model = "MODELS/mlp.toml"
steps = 120
batch_size = 16
optimizer = "momentum"
lr = 0.01
eval_every = 50
steps_per_task = 3
[defaults]
kind = "sinusoid"
train = 64
test = 64
noise = 0.1
[[task]]
name = "a"
[[task]]
name = "b"
[[task]]
name = "c"
"#;

fn tensors(path: &std::path::Path) -> HashMap<String, (String, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                (
                    format!("{:?}", v.dtype()),
                    v.shape().to_vec(),
                    v.data().to_vec(),
                ),
            )
        })
        .collect()
}

/// The MLP with a batch norm: its per-task running statistics must survive the resume too.
const BATCHNORM_MODEL: &str = r#"
[model]
name = "mlp-bn"
input = [8]
layer = [
  { type = "linear", out = 24 },
  { type = "batchnorm1d" },
  { type = "tanh" },
  { type = "linear", out = 1 },
]
"#;

#[test]
fn stopped_and_resumed_equals_uninterrupted_fast_engine() {
    stopped_and_resumed_equals_uninterrupted("fast", false);
}

#[test]
fn stopped_and_resumed_equals_uninterrupted_reference() {
    stopped_and_resumed_equals_uninterrupted("reference", false);
}

#[test]
fn batchnorm_statistics_survive_a_resume() {
    stopped_and_resumed_equals_uninterrupted("fast", true);
    stopped_and_resumed_equals_uninterrupted("reference", true);
}

fn stopped_and_resumed_equals_uninterrupted(engine: &str, batchnorm: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let mut body = SET.replace("[run]\n", &format!("[run]\nengine = \"{engine}\"\n"));
    if batchnorm {
        body = body.replace("model = \"MODELS/mlp.toml\"\n", "");
        body.push_str(BATCHNORM_MODEL);
    }
    let set = write_task_set(tmp.path(), "set.toml", &body);
    let set = set.to_str().unwrap();
    let full = gtk(
        tmp.path(),
        &[
            "train",
            "--task-set",
            set,
            "--strategy",
            "all",
            "--name",
            "full",
            "--quiet",
        ],
    );
    assert!(full.status.success(), "{:?}", text(&full));
    let part = gtk(
        tmp.path(),
        &[
            "train",
            "--task-set",
            set,
            "--strategy",
            "all",
            "--name",
            "part",
            "--stop-at",
            "37",
        ],
    );
    assert!(part.status.success(), "{:?}", text(&part));
    assert!(
        text(&part).0.contains("stopped at step 37 of 120"),
        "{}",
        text(&part).0
    );
    let state = std::fs::read_to_string(tmp.path().join("runs/part/state.json")).unwrap();
    assert!(state.contains("\"step\": 37"), "{state}");
    let resumed = gtk(tmp.path(), &["train", "--resume", "runs/part", "--quiet"]);
    assert!(resumed.status.success(), "{:?}", text(&resumed));

    let a = tensors(&checkpoint_path(&tmp.path().join("runs/full")));
    let b = tensors(&checkpoint_path(&tmp.path().join("runs/part")));
    assert!(
        a.len() > 30,
        "weights, 3 tasks' masks and optimizer state: {} tensors",
        a.len()
    );
    assert_eq!(
        a.keys().collect::<std::collections::BTreeSet<_>>(),
        b.keys().collect()
    );
    for (k, v) in &a {
        assert!(v == &b[k], "tensor {k} differs after resume");
    }
    if batchnorm {
        // One set of statistics per task (gated) or per model (plain), moved from their start.
        for key in [
            "gated/bn1.running_var.state.a",
            "gated/bn1.running_var.state.c",
            "shared/bn1.running_var",
            "separate/b/bn1.running_var",
        ] {
            let (dtype, shape, bytes) = &a[key];
            assert_eq!(
                (dtype.as_str(), shape.as_slice()),
                ("F32", &[24][..]),
                "{key}"
            );
            assert!(
                bytes
                    .chunks(4)
                    .any(|b| f32::from_le_bytes(b.try_into().unwrap()) != 1.0),
                "{key} never moved from 1"
            );
        }
        assert_ne!(
            a["gated/bn1.running_mean.state.a"], a["gated/bn1.running_mean.state.b"],
            "tasks share statistics"
        );
    }
    let metrics = |name: &str| {
        std::fs::read_to_string(tmp.path().join(format!("runs/{name}/metrics.jsonl"))).unwrap()
    };
    let (full, part) = (metrics("full"), metrics("part"));
    for (i, (a, b)) in full.lines().zip(part.lines()).enumerate() {
        assert_eq!(a, b, "metrics.jsonl line {} differs", i + 1);
    }
    assert_eq!(
        full.lines().count(),
        part.lines().count(),
        "metrics.jsonl line count"
    );
}
