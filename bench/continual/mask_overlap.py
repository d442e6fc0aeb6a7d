#!/usr/bin/env python3
"""How distinct a run's task masks are: per run folder, from its last checkpoint, the mean share
of entries on which two tasks' binarized masks 1[M > 0] disagree (0.5 for independent half-dense
masks, 0 for identical ones), the mean density, and the share of undecided sigmoid gates
(0.1 < σ(M) < 0.9). Reads safetensors with numpy only (f32 or f64 masks).

    python3 bench/continual/mask_overlap.py RUN...
"""
import glob
import itertools
import json
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F64": np.float64}


def masks(run):
    path = sorted(glob.glob(f"{run}/checkpoint-*.safetensors"))[-1]
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    per_task = {}
    for key, meta in sorted(header.items()):
        if key == "__metadata__" or "optim" in key or ".mask." not in key:
            continue
        task = key.rsplit(".", 1)[1]
        start, end = meta["data_offsets"]
        values = np.frombuffer(raw[8 + n + start : 8 + n + end], dtype=DTYPES[meta["dtype"]])
        per_task.setdefault(task, []).append(values.astype(np.float64))
    return {t: np.concatenate(v) for t, v in per_task.items()}


def main(runs):
    print("| run | tasks | density | undecided σ(M) | disagreement between two tasks' masks |")
    print("|---|---|---|---|---|")
    for run in runs:
        m = masks(run)
        bits = {t: v > 0 for t, v in m.items()}
        pairs = list(itertools.combinations(sorted(bits), 2))[:45]
        disagree = np.mean([np.mean(bits[a] != bits[b]) for a, b in pairs])
        density = np.mean([b.mean() for b in bits.values()])
        sig = {t: 1 / (1 + np.exp(-v)) for t, v in m.items()}
        undecided = np.mean([((s > 0.1) & (s < 0.9)).mean() for s in sig.values()])
        name = run.rstrip("/").rsplit("/", 1)[-1]
        print(f"| {name} | {len(m)} | {density:.3f} | {undecided:.3f} | {disagree:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
