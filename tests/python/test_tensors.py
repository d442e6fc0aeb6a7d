"""The `tensors` task kind from the Python side: files written by numpy (np.save, np.savez,
np.savez_compressed), by the `safetensors` package and by Python's csv writer load into the
same tensors gatekit trains on; and a real dataset (scikit-learn's bundled digits) trains with
--strategy all, exports, and the exported ONNX reproduces the run's test accuracy in
onnxruntime when the caller standardises the inputs as the book says.

Uses the `gtk` binary and the `dump_task` example that `cargo test` builds ($GTK_BIN and
$DUMP_TASK_BIN override them). Run after `cargo test` (CI does: see .ci/run).
"""
import csv
import json
import os
import pathlib
import subprocess
import sys
import tomllib

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
GTK = pathlib.Path(os.environ.get("GTK_BIN", TARGET / "debug" / "gtk"))
DUMP = pathlib.Path(os.environ.get("DUMP_TASK_BIN", TARGET / "debug" / "examples" / "dump_task"))

MODEL = '[model]\nname = "m"\ninput = [{inputs}]\n[[model.layer]]\ntype = "linear"\nout = {outputs}\n'


def run(*args, cwd=None):
    p = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True)
    assert p.returncode == 0, f"{args}: {p.stdout}\n{p.stderr}"
    return p.stdout


def dump(tmp, train, extra="", inputs=3, outputs=3):
    """The tensors gatekit feeds the model for one task reading `train`."""
    body = (
        "[run]\nsteps = 1\n"
        + MODEL.format(inputs=inputs, outputs=outputs)
        + f'[[task]]\nname = "t"\nkind = "tensors"\ntrain = "{train}"\n{extra}\n'
    )
    (tmp / "set.toml").write_text(body)
    out = tmp / "dump.safetensors"
    run(DUMP, tmp / "set.toml", out)
    return load_file(str(out))


def data(dtype=np.float32, n=25):
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(n, 3)) * 10).astype(dtype)
    y = rng.integers(0, 3, size=n).astype(np.int64)
    return x, y


def same_file_as_test(path):
    return f'test = "{path}"'


@pytest.mark.parametrize("writer", ["np.save", "np.savez", "np.savez_compressed", "safetensors", "csv"])
def test_every_writer_round_trips(tmp_path, writer):
    x, y = data()
    if writer == "np.save":
        path = tmp_path / "arrays"
        path.mkdir()
        np.save(path / "x.npy", x)
        np.save(path / "y.npy", y)
        extra = ""
    elif writer == "np.savez":
        path = tmp_path / "d.npz"
        np.savez(path, x=x, y=y)
        extra = ""
    elif writer == "np.savez_compressed":
        path = tmp_path / "d.npz"
        np.savez_compressed(path, x=x, y=y)
        extra = ""
    elif writer == "safetensors":
        path = tmp_path / "d.safetensors"
        save_file({"x": x, "y": y}, str(path))
        extra = ""
    else:
        path = tmp_path / "d.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["f0", "f1", "f2", "label"])
            for row, label in zip(x, y):
                w.writerow([*(float(v) for v in row), int(label)])
        extra = 'x = "*"\ny = "label"\nobjective = "classification"'
    got = dump(tmp_path, path, extra + "\n" + same_file_as_test(path))
    for split in ("train", "test"):
        # Bit-identical: float32 values widened to float64, labels as uint32.
        np.testing.assert_array_equal(got[f"t.{split}.x"], x.astype(np.float64))
        np.testing.assert_array_equal(got[f"t.{split}.y"], y.astype(np.uint32))
        assert got[f"t.{split}.y"].dtype == np.uint32


@pytest.mark.parametrize(
    "dtype", [np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
)
def test_every_dtype_reads_exactly(tmp_path, dtype):
    x, y = data()
    x = np.abs(x).astype(dtype) if np.issubdtype(dtype, np.unsignedinteger) else x.astype(dtype)
    np.savez(tmp_path / "d.npz", x=x, y=y.astype(np.uint8))
    got = dump(tmp_path, tmp_path / "d.npz", same_file_as_test(tmp_path / "d.npz"))
    np.testing.assert_array_equal(got["t.train.x"], x.astype(np.float64))
    np.testing.assert_array_equal(got["t.train.y"], y)


def test_standardisation_matches_numpy_on_the_training_split(tmp_path):
    x, y = data(n=40)
    x[:, 2] = 5.0  # a constant feature: std 1, so it becomes 0
    np.savez(tmp_path / "train.npz", x=x, y=y)
    xt, yt = data(n=12)
    np.savez(tmp_path / "test.npz", x=xt, y=yt)
    got = dump(tmp_path, tmp_path / "train.npz", f'test = "{tmp_path / "test.npz"}"\nstandardize = true')
    x64 = x.astype(np.float64)
    mean, std = x64.mean(axis=0), x64.std(axis=0)
    std[std < 1e-12] = 1.0
    np.testing.assert_allclose(got["t.test.x"], (xt - mean) / std, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got["t.train.x"], (x64 - mean) / std, rtol=1e-12, atol=1e-12)


def test_regression_targets_and_held_out_rows(tmp_path):
    x, _ = data(n=50)
    y = (x @ np.array([1.0, -2.0, 0.5]))[:, None].astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    got = dump(tmp_path, tmp_path / "d.npz", "test_fraction = 0.2", outputs=1)
    assert got["t.train.x"].shape == (40, 3) and got["t.test.x"].shape == (10, 3)
    rows = np.concatenate([got["t.train.x"], got["t.test.x"]])
    # Every row exactly once, with its own target.
    order = np.lexsort(rows.T[::-1])
    np.testing.assert_array_equal(rows[order], x.astype(np.float64)[np.lexsort(x.astype(np.float64).T[::-1])])
    targets = np.concatenate([got["t.train.y"], got["t.test.y"]])
    np.testing.assert_allclose(targets, (rows @ np.array([1.0, -2.0, 0.5]))[:, None], rtol=1e-5)


def last_test_metrics(run_dir, strategy):
    best = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("strategy") == strategy and r.get("split") == "test" and "metric" in r:
            if r["task"] not in best or r["step"] >= best[r["task"]][0]:
                best[r["task"]] = (r["step"], r["metric"])
    return {t: m for t, (_, m) in best.items()}


def test_digits_trains_exports_and_onnx_reproduces_accuracy(tmp_path):
    pytest.importorskip("sklearn")
    ort = pytest.importorskip("onnxruntime")
    import onnx

    tasks = tmp_path / "tasks"
    (tasks / "tensors").mkdir(parents=True)
    run(sys.executable, ROOT / "tasks" / "tensors" / "make_digits.py", tasks / "tensors" / "digits")
    text = (ROOT / "tasks" / "digits.toml").read_text().replace("steps = 3000", "steps = 600")
    (tasks / "digits.toml").write_text(text)
    run(GTK, "train", "--task-set", tasks / "digits.toml", "--strategy", "all", "--name", "d", "--quiet", cwd=tmp_path)
    run_dir = tmp_path / "runs" / "d"
    run(GTK, "export", run_dir, "--out", tmp_path / "exp", cwd=tmp_path)
    gated = last_test_metrics(run_dir, "gated")
    assert len(gated) == 5 and min(gated.values()) > 0.9, gated
    for name, acc in gated.items():
        model = onnx.load(str(tmp_path / "exp" / f"{name}.onnx"))
        meta = {p.key: p.value for p in model.metadata_props}
        task = next(t for t in tomllib.loads(meta["gatekit.task_set"])["task"] if t["name"] == name)
        # What the caller does: standardise raw inputs with the stored statistics.
        mean, std = np.array(task["mean"]), np.array(task["std"])
        raw = np.load(task["test"])
        x = ((raw["x"] - mean) / std).astype(np.float32)
        sess = ort.InferenceSession(str(tmp_path / "exp" / f"{name}.onnx"))
        (out,) = sess.run(["output"], {"input": x})
        onnx_acc = float((out.argmax(axis=1) == raw["y"]).mean())
        assert abs(onnx_acc - acc) < 1e-9, (name, onnx_acc, acc)
        # Raw (unstandardised) inputs are wrong inputs: the transform matters.
        (bad,) = sess.run(["output"], {"input": raw["x"].astype(np.float32)})
        assert not np.allclose(bad, out)


def test_diabetes_csv_regression_onnx_reproduces_mse(tmp_path):
    """A CSV regression with held-out rows: the run's stored config.toml rebuilds the same test
    rows and standardisation (dumped by dump_task), and onnxruntime reproduces the run's test
    MSE of every task on them."""
    pytest.importorskip("sklearn")
    ort = pytest.importorskip("onnxruntime")

    tasks = tmp_path / "tasks"
    (tasks / "tensors").mkdir(parents=True)
    run(sys.executable, ROOT / "tasks" / "tensors" / "make_diabetes.py", tasks / "tensors" / "diabetes")
    text = (ROOT / "tasks" / "diabetes.toml").read_text().replace("steps = 2000", "steps = 400")
    (tasks / "diabetes.toml").write_text(text)
    run(GTK, "train", "--task-set", tasks / "diabetes.toml", "--strategy", "gated", "--name", "r", "--quiet", cwd=tmp_path)
    run_dir = tmp_path / "runs" / "r"
    run(GTK, "export", run_dir, "--out", tmp_path / "exp", cwd=tmp_path)
    run(DUMP, run_dir / "config.toml", tmp_path / "dump.safetensors")
    got = load_file(str(tmp_path / "dump.safetensors"))
    gated = last_test_metrics(run_dir, "gated")
    assert set(gated) == {"sex1", "sex2"}
    for name, mse in gated.items():
        x, y = got[f"{name}.test.x"], got[f"{name}.test.y"]
        assert x.shape[1] == 9 and abs(x.shape[0] - 0.25 * (x.shape[0] + got[f"{name}.train.x"].shape[0])) <= 1
        # Standardised with the training rows' statistics: those have mean 0, std 1.
        np.testing.assert_allclose(got[f"{name}.train.x"].mean(axis=0), 0, atol=1e-9)
        (out,) = ort.InferenceSession(str(tmp_path / "exp" / f"{name}.onnx")).run(
            ["output"], {"input": x.astype(np.float32)}
        )
        onnx_mse = float(((out.astype(np.float64) - y) ** 2).mean())
        assert abs(onnx_mse - mse) < 1e-5 * max(1.0, mse), (name, onnx_mse, mse)
        assert 0.1 < mse < 1.5, mse
