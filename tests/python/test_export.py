"""gatekit's exports in the Python stack: onnx.checker, onnxruntime and numpy.

The Rust test `tests/export.rs` exports every model in models/ (soft and binarized) into
target/tmp/export-fixtures/ together with gatekit's own outputs on real test inputs and the
binarized effective weights; this test checks those files with the tools users deploy with.
Run it after `cargo test` (CI does: see .ci/run).
"""
import json
import os
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from safetensors.numpy import load_file

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = pathlib.Path(os.environ.get("GATEKIT_EXPORT_FIXTURES", ROOT / "target" / "tmp" / "export-fixtures"))
ATOL, RTOL = 1e-5, 1e-3
TASKS = ["a", "b"]


def models():
    found = sorted(p.name[: -len("-reference.safetensors")] for p in FIXTURES.glob("*-reference.safetensors"))
    assert found, f"no fixtures in {FIXTURES}: run `cargo test --test export` first"
    return found


@pytest.mark.parametrize("model", models())
@pytest.mark.parametrize("variant", ["soft", "binary"])
def test_checker_and_onnxruntime_match_gatekit(model, variant):
    ref = load_file(str(FIXTURES / f"{model}-reference.safetensors"))
    folder = FIXTURES / f"{model}-{variant}"
    files = sorted(folder.glob("*.onnx"))
    assert [f.name for f in files] == ["a.onnx", "all_tasks.onnx", "b.onnx"]
    for f in files:
        m = onnx.load(str(f))
        onnx.checker.check_model(m, full_check=True)
        assert m.ir_version == 8
        assert [(o.domain, o.version) for o in m.opset_import] == [("", 17)]
    all_tasks = ort.InferenceSession(str(folder / "all_tasks.onnx"))
    for t, task in enumerate(TASKS):
        x = ref[f"{variant}.input.{task}"]
        expected = ref[f"{variant}.output.{task}"]
        sess = ort.InferenceSession(str(folder / f"{task}.onnx"))
        (out,) = sess.run(["output"], {"input": x})
        np.testing.assert_allclose(out.reshape(-1), expected, atol=ATOL, rtol=RTOL)
        (out_all,) = all_tasks.run(["output"], {"input": x, "task": np.array(t, dtype=np.int64)})
        np.testing.assert_allclose(out_all.reshape(-1), expected, atol=ATOL, rtol=RTOL)
        # A dynamic batch axis: one example works too.
        (one,) = sess.run(["output"], {"input": x[:1]})
        np.testing.assert_allclose(one.reshape(-1), out[:1].reshape(-1), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("model", models())
def test_numpy_rebuilds_binarized_weights_exactly(model):
    ref = load_file(str(FIXTURES / f"{model}-reference.safetensors"))
    folder = FIXTURES / f"{model}-binary"
    weights = load_file(str(folder / "weights.safetensors"))
    masks = load_file(str(folder / "masks.safetensors"))
    from safetensors import safe_open

    with safe_open(str(folder / "masks.safetensors"), framework="numpy") as f:
        info = json.loads(f.metadata()["gatekit"])
    assert info["tasks"] == TASKS
    for task in TASKS:
        for name, shape in info["shapes"].items():
            packed = masks[f"{name}.mask.{task}"]
            n = int(np.prod(shape))
            assert packed.dtype == np.uint8 and packed.shape == ((n + 7) // 8,)
            bits = np.unpackbits(packed)[:n].reshape(shape).astype(np.float32)
            rebuilt = weights[name] * bits
            np.testing.assert_array_equal(rebuilt, ref[f"effective.{task}.{name}"])


@pytest.mark.parametrize("model", models())
@pytest.mark.parametrize("variant", ["soft", "binary"])
def test_all_tasks_invalid_task_index_gives_nan(model, variant):
    """The `task` input contract in onnxruntime: shape [] (a [1] tensor selects the same task:
    the graph reshapes it to a scalar), and an index outside 0..T gives an all-NaN output,
    never another task's output (Gather would wrap -1 around) and never an opaque Gather
    error."""
    ref = load_file(str(FIXTURES / f"{model}-reference.safetensors"))
    folder = FIXTURES / f"{model}-{variant}"
    sess = ort.InferenceSession(str(folder / "all_tasks.onnx"))
    x = ref[f"{variant}.input.a"]
    for bad in [-1, -len(TASKS), len(TASKS), 1000]:
        (out,) = sess.run(["output"], {"input": x, "task": np.array(bad, dtype=np.int64)})
        assert out.shape[0] == x.shape[0]
        assert np.isnan(out).all(), f"task {bad}: {out.reshape(-1)[:4]}"
    for t in range(len(TASKS)):
        (out,) = sess.run(["output"], {"input": x, "task": np.array(t, dtype=np.int64)})
        assert not np.isnan(out).any()
        (as_1,) = sess.run(["output"], {"input": x, "task": np.array([t], dtype=np.int64)})
        np.testing.assert_array_equal(as_1, out)
