"""gatekit's TensorBoard event files read by TensorBoard itself.

Trains a small synthetic run with the real `gtk` binary ($GTK_BIN, else target/debug/gtk, which
`cargo test` builds), lets `gtk report` write the run's `tb/` folder, and reads it with
TensorBoard's EventAccumulator: the scalar tags, the number of points per tag and the logged
values must be those of the run's metrics.jsonl, and the histograms must be there.
"""
import json
import os
import pathlib
import subprocess

import pytest
from tensorboard.backend.event_processing import event_accumulator

ROOT = pathlib.Path(__file__).resolve().parents[2]
GTK = pathlib.Path(os.environ.get("GTK_BIN", ROOT / "target" / "debug" / "gtk"))
TASKS = ["t0", "t1"]
STRATEGIES = ["gated", "shared", "separate"]

TASK_SET = f"""
[run]
model = "{(ROOT / "models" / "linear.toml").as_posix()}"
steps = 120
batch_size = 10
lr = 0.2
eval_every = 40
# Full evaluations (the `eval` records) at 0, 40, 80 and 120, not only at the end (the default).
full_eval_every = 40
full_eval_at_start = true
dtype = "f64"
[defaults]
kind = "linear"
inputs = 8
outputs = 4
train = 10
test = 100
noise = 0.4
[[task]]
name = "t0"
[[task]]
name = "t1"
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not GTK.exists():
        pytest.fail(f"{GTK} is missing: run `cargo build` (or `cargo test`) first, or set GTK_BIN")
    tmp = tmp_path_factory.mktemp("tb")
    (tmp / "set.toml").write_text(TASK_SET)
    env = {k: v for k, v in os.environ.items() if k != "GATEKIT_DATA"}
    train = [str(GTK), "train", "--task-set", "set.toml", "--strategy", "all", "--name", "r", "--quiet"]
    subprocess.run(train, cwd=tmp, env=env, check=True, capture_output=True)
    subprocess.run([str(GTK), "report", "runs/r"], cwd=tmp, env=env, check=True, capture_output=True)
    run_dir = tmp / "runs" / "r"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    acc = event_accumulator.EventAccumulator(
        str(run_dir / "tb"),
        size_guidance={event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0},
    )
    acc.Reload()
    return records, acc


def test_scalar_tags_and_step_counts_match_the_log(run):
    records, acc = run
    evals = [r for r in records if r["record"] == "eval"]
    steps = sorted({r["step"] for r in evals})
    assert steps == [0, 40, 80, 120]
    expected = {f"{r['strategy']}/{r['task']}/{r['split']}/{q}" for r in evals for q in (r["metric_name"], "loss")}
    expected |= {f"gated/{r['task']}/mask_off/{r['param']}" for r in records if r["record"] == "mask"}
    expected |= {f"gated/{r['task']}/binarized/mse" for r in records if r["record"] == "binarized"}
    tags = set(acc.Tags()["scalars"])
    assert expected <= tags, sorted(expected - tags)
    assert len(expected) == len(STRATEGIES) * len(TASKS) * 2 * 2 + len(TASKS) * 2 + len(TASKS)
    for s in STRATEGIES:
        for t in TASKS:
            points = acc.Scalars(f"{s}/{t}/test/mse")
            assert [p.step for p in points] == steps


def test_logged_values_match_the_log(run):
    records, acc = run
    last = max(r["step"] for r in records if r["record"] == "eval")
    want = next(
        r for r in records
        if r["record"] == "eval" and r["step"] == last and r["strategy"] == "separate"
        and r["task"] == "t1" and r["split"] == "test"
    )
    got = acc.Scalars("separate/t1/test/mse")[-1]
    assert got.step == last
    assert got.value == pytest.approx(want["metric"], rel=1e-6)
    off = next(r for r in records if r["record"] == "mask" and r["step"] == last and r["task"] == "t0")
    got_off = acc.Scalars(f"gated/t0/mask_off/{off['param']}")[-1]
    assert got_off.value == pytest.approx(off["off"], rel=1e-6)


def test_histograms_are_present(run):
    records, acc = run
    tags = set(acc.Tags()["histograms"])
    for tag in ["gated/t0/effective/fc1.weight", "gated/t1/gate/fc1.weight", "shared/all/effective/fc1.weight"]:
        assert tag in tags, sorted(tags)[:10]
    logged = [
        r for r in records
        if r["record"] == "histogram" and r["strategy"] == "gated" and r["task"] == "t0"
        and r["param"] == "fc1.weight" and r["of"] == "gate"
    ]
    events = acc.Histograms("gated/t0/gate/fc1.weight")
    assert [e.step for e in events] == [r["step"] for r in logged]
    first = events[0].histogram_value
    assert first.num == sum(logged[0]["counts"]) == 32  # the 4x8 weight matrix
    assert list(first.bucket) == [float(c) for c in logged[0]["counts"]]
