"""`gtk serve` against onnxruntime: the server (W once, 1-bit masks) answers what each task's
exported ONNX file answers in onnxruntime, within 1e-5.

Uses the binarized exports that `tests/export.rs` leaves in target/tmp/export-fixtures/ and
the `gtk` binary of the same build (target/debug/gtk, or $GTK).
"""
import json
import os
import pathlib
import subprocess
import urllib.request

import numpy as np
import onnxruntime as ort
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = pathlib.Path(os.environ.get("GATEKIT_EXPORT_FIXTURES", ROOT / "target" / "tmp" / "export-fixtures"))
GTK = os.environ.get("GTK", str(ROOT / "target" / "debug" / "gtk"))


def folders():
    found = [FIXTURES / f"{m}-binary" for m in ["mlp", "lenet5", "lenet5-bn"]]
    found = [f for f in found if f.is_dir()]
    assert found, f"no binarized exports in {FIXTURES}: run `cargo test --test export` first"
    return found


@pytest.mark.parametrize("folder", folders(), ids=lambda f: f.name)
def test_server_matches_onnxruntime(folder):
    proc = subprocess.Popen(
        [GTK, "serve", str(folder), "--addr", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        while line and "http://" not in line:  # notes come before the address
            line = proc.stderr.readline()
        addr = line.strip().rsplit("http://", 1)[1]
        with urllib.request.urlopen(f"http://{addr}/v1/tasks") as r:
            info = json.load(r)
        shape = info["model"]["input_shape"]
        x = np.random.default_rng(0).uniform(-1, 1, size=[6] + shape).astype(np.float32)
        for task in info["tasks"]:
            name = task["name"]
            (want,) = ort.InferenceSession(str(folder / f"{name}.onnx")).run(["output"], {"input": x})
            req = urllib.request.Request(
                f"http://{addr}/v1/tasks/{name}/predict",
                data=json.dumps({"inputs": x.tolist()}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req) as r:
                got = json.load(r)
            y = np.array(got["outputs"], dtype=np.float32)
            assert y.shape == want.shape
            assert np.abs(y - want).max() <= 1e-5, (name, np.abs(y - want).max())
            if task["output"] == "classification":
                assert got["argmax"] == want.argmax(axis=1).tolist()
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_soft_export_is_refused():
    """A soft export's ONNX files hold W ⊙ σ(M); the 1-bit server refuses it with one clear
    line instead of answering the binarized model in its place."""
    folder = FIXTURES / "mlp-soft"
    if not folder.is_dir():
        pytest.skip(f"no soft export in {FIXTURES}: run `cargo test --test export` first")
    proc = subprocess.run([GTK, "serve", str(folder), "--addr", "127.0.0.1:0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "trained gate `sigmoid`" in lines[0] and "--binarize" in lines[0], lines[0]
