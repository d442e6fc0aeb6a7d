"""gatekit's TensorBoard event files read by TensorBoard itself.

Trains a small synthetic run with the real `gtk` binary ($GTK_BIN, else target/debug/gtk, which
`cargo test` builds), lets `gtk report` write the run's `tb/` folder, and reads it with
TensorBoard's EventAccumulator: one TensorBoard run per strategy with the same tags (so they
overlay), the number of points per tag and the logged values (and the means over tasks) must be
those of the run's metrics.jsonl, the histograms must be there, and the hparams plugin's
summaries must name each run's strategy and settings.
"""
import json
import os
import pathlib
import subprocess

import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

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
    accs = {}
    # One TensorBoard run per strategy (a folder of tb/), and the root with the hparams experiment.
    for name in ["", *STRATEGIES, "gated-binarized"]:
        acc = event_accumulator.EventAccumulator(
            str(run_dir / "tb" / name),
            size_guidance={event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0},
        )
        acc.Reload()
        accs[name] = acc
    return records, accs, run_dir


def test_one_run_per_strategy(run):
    _, _, run_dir = run
    runs = sorted(p.name for p in (run_dir / "tb").iterdir() if p.is_dir())
    assert runs == sorted([*STRATEGIES, "gated-binarized"])


def test_scalar_tags_and_step_counts_match_the_log(run):
    records, accs, _ = run
    evals = [r for r in records if r["record"] == "eval"]
    steps = sorted({r["step"] for r in evals})
    assert steps == [0, 40, 80, 120]
    for s in STRATEGIES:
        # The same tags in every strategy's run: TensorBoard overlays them in one chart.
        expected = {f"{r['split']}/{r['task']}/{q}" for r in evals if r["strategy"] == s for q in (r["metric_name"], "loss")}
        expected |= {f"{split}_mean/{q}" for split in ("test", "train", "probe_test") for q in ("mse", "loss")}
        tags = set(accs[s].Tags()["scalars"])
        assert expected <= tags, (s, sorted(expected - tags))
        assert len(expected) == len(TASKS) * 2 * 2 + 6
        for t in TASKS:
            assert [p.step for p in accs[s].Scalars(f"test/{t}/mse")] == steps
        assert [p.step for p in accs[s].Scalars("test_mean/mse")] == steps
    gated = set(accs["gated"].Tags()["scalars"])
    assert {f"mask_off/{r['task']}/{r['param']}" for r in records if r["record"] == "mask"} <= gated
    binarized = set(accs["gated-binarized"].Tags()["scalars"])
    assert {f"test/{t}/mse" for t in TASKS} | {"test_mean/mse"} <= binarized


def test_logged_values_match_the_log(run):
    records, accs, _ = run
    last = max(r["step"] for r in records if r["record"] == "eval")
    at_last = [
        r for r in records
        if r["record"] == "eval" and r["step"] == last and r["strategy"] == "separate" and r["split"] == "test"
    ]
    want = next(r for r in at_last if r["task"] == "t1")
    got = accs["separate"].Scalars("test/t1/mse")[-1]
    assert got.step == last
    assert got.value == pytest.approx(want["metric"], rel=1e-6)
    mean = accs["separate"].Scalars("test_mean/mse")[-1]
    assert mean.step == last
    assert mean.value == pytest.approx(sum(r["metric"] for r in at_last) / len(TASKS), rel=1e-6)
    off = next(r for r in records if r["record"] == "mask" and r["step"] == last and r["task"] == "t0")
    got_off = accs["gated"].Scalars(f"mask_off/t0/{off['param']}")[-1]
    assert got_off.value == pytest.approx(off["off"], rel=1e-6)
    binarized = [r for r in records if r["record"] == "binarized" and r["step"] == last]
    got_bin = accs["gated-binarized"].Scalars("test_mean/mse")[-1]
    assert got_bin.value == pytest.approx(sum(r["metric"] for r in binarized) / len(binarized), rel=1e-6)


def test_hparams_name_each_run_and_its_settings(run):
    _, accs, _ = run
    for s in [*STRATEGIES, "gated-binarized"]:
        content = accs[s].PluginTagToContent("hparams")["_hparams_/session_start_info"]
        info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
        assert info.hparams["strategy"].string_value == s
        assert info.hparams["lr"].number_value == pytest.approx(0.2)
        assert info.hparams["steps"].number_value == 120
        assert info.hparams["dtype"].string_value == "f64"
        assert info.hparams["model_name"].string_value != ""
    content = accs[""].PluginTagToContent("hparams")["_hparams_/experiment"]
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content).experiment
    names = {h.name for h in experiment.hparam_infos}
    assert {"strategy", "lr", "steps", "seed", "batch_size"} <= names
    metrics = {m.name.tag for m in experiment.metric_infos}
    assert {"test_mean/mse", "probe_test_mean/mse", "test_mean/loss"} <= metrics


def test_histograms_are_present(run):
    records, accs, _ = run
    for s, tag in [("gated", "effective/t0/fc1.weight"), ("gated", "gate/t1/fc1.weight"), ("shared", "effective/all/fc1.weight")]:
        tags = set(accs[s].Tags()["histograms"])
        assert tag in tags, (s, sorted(tags)[:10])
    logged = [
        r for r in records
        if r["record"] == "histogram" and r["strategy"] == "gated" and r["task"] == "t0"
        and r["param"] == "fc1.weight" and r["of"] == "gate"
    ]
    events = accs["gated"].Histograms("gate/t0/fc1.weight")
    assert [e.step for e in events] == [r["step"] for r in logged]
    first = events[0].histogram_value
    assert first.num == sum(logged[0]["counts"]) == 32  # the 4x8 weight matrix
    assert list(first.bucket) == [float(c) for c in logged[0]["counts"]]
