"""Feeding an exported image model from Python, as book/src/exporting.md describes it.

The Rust test `tests/data_dump.rs` (with MNIST) trains small coloured and grayscale MNIST runs,
exports them and dumps their test inputs with `gtk data dump` into
target/tmp/dump-fixtures/, with the accuracy `gtk eval --onnx` measures. This test rebuilds the
inputs from the IDX files with numpy alone, following the task set stored in each ONNX file,
and checks them against the dump (bit for bit) and onnxruntime's accuracy against gatekit's.
Run it after `cargo test` with GATEKIT_DATA set (CI does: see .ci/run).
"""
import gzip
import json
import os
import pathlib
import tomllib

import numpy as np
import onnxruntime as ort
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = pathlib.Path(os.environ.get("GATEKIT_DUMP_FIXTURES", ROOT / "target" / "tmp" / "dump-fixtures"))
DATA = os.environ.get("GATEKIT_DATA") or str(ROOT.parent / "shared" / "data")


def read_idx(path):
    """An IDX file (plain or .gz) as a uint8 array of the shape its header gives."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def idx_file(folder, name):
    for candidate in [name, name + ".gz", name.replace("-idx", ".idx"), name.replace("-idx", ".idx") + ".gz"]:
        if (folder / candidate).is_file():
            return folder / candidate
    raise FileNotFoundError(folder / name)


def mnist_inputs(task, images):
    """What the model sees for an `mnist` task: images uint8 [n, 28, 28] -> float32 [n, C, H, W]."""
    channels, pad = task.get("channels", 3), task.get("pad", 2)
    x = images.astype(np.float32) / np.float32(255)          # grayscale in [0, 1]
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))            # padding is x = 0, before colouring
    x = np.repeat(x[:, None], channels, axis=1)                # [n, C, H, W]
    if task.get("fill"):                                       # a constant colour, no digit
        c = np.array(task["fill"][:channels], dtype=np.float32)[None, :, None, None]
        return np.broadcast_to(c, x.shape).copy()
    if task.get("inverted", False):                            # c-coloured digit on white
        c = np.array(task.get("digit", [0.0] * 3)[:channels], dtype=np.float32)[None, :, None, None]
        return x * c + (np.float32(1) - x)
    c = np.array(task.get("background", [0.0] * 3)[:channels], dtype=np.float32)[None, :, None, None]
    return x + (np.float32(1) - x) * c                         # digit on a c-coloured background


def tasks():
    if not (pathlib.Path(DATA) / "mnist").is_dir():
        return []  # no MNIST here: the Rust test skipped too (CI always has it)
    path = FIXTURES / "expected.json"
    assert path.is_file(), f"no {path}: run `cargo test --test data_dump` with GATEKIT_DATA set first"
    return sorted(json.loads(path.read_text()).items())


@pytest.mark.parametrize("name,expected", tasks())
def test_numpy_preprocessing_and_onnxruntime_reproduce_gatekit(name, expected):
    session = ort.InferenceSession(str(FIXTURES / expected["onnx"]))
    meta = session.get_modelmeta().custom_metadata_map
    task_set = tomllib.loads(meta["gatekit.task_set"])
    task = next(t for t in task_set["task"] if t["name"] == name)
    folder = pathlib.Path(DATA) / task.get("dataset", "mnist")
    images = read_idx(idx_file(folder, "t10k-images-idx3-ubyte"))
    labels = read_idx(idx_file(folder, "t10k-labels-idx1-ubyte"))
    limit = task.get("test_limit", 0) or len(labels)
    x = mnist_inputs(task, images[:limit])
    dumped = np.load(FIXTURES / f"{name}.npy")
    assert x.dtype == dumped.dtype == np.float32 and x.shape == dumped.shape
    np.testing.assert_array_equal(x, dumped)
    np.testing.assert_array_equal(labels[:limit], np.load(FIXTURES / f"{name}.labels.npy"))
    (logits,) = session.run(["output"], {"input": x})
    accuracy = float(np.mean(logits.argmax(1) == labels[:limit]))
    assert len(x) == expected["examples"]
    assert accuracy == pytest.approx(expected["accuracy"], abs=1e-12)
