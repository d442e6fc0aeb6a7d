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

#[test]
fn stopped_and_resumed_equals_uninterrupted_fast_engine() {
    stopped_and_resumed_equals_uninterrupted("fast");
}

#[test]
fn stopped_and_resumed_equals_uninterrupted_reference() {
    stopped_and_resumed_equals_uninterrupted("reference");
}

fn stopped_and_resumed_equals_uninterrupted(engine: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let body = SET.replace("[run]\n", &format!("[run]\nengine = \"{engine}\"\n"));
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
