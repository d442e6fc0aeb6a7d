#!/usr/bin/env python3
"""Writes the small example data of tasks/tensors-example.toml (numpy only, no downloads).

Three "sites" share one noisy regression y = sin(x @ a + b) with a per-site mask on a, like
the paper's masked tasks: each site has 160 training and 40 test rows of 8 features, saved
with np.savez as tasks/tensors/example/site{0,1,2}.npz holding `x` (float32 [n, 8]) and `y`
(float32 [n, 1]). The test rows are held out by the task set's `test_fraction`.

Usage: python3 tasks/tensors/make_example.py [OUT_DIR]
"""
import pathlib
import sys

import numpy as np

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent / "example")
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
a, b = rng.normal(size=8), rng.normal()
for site in range(3):
    mask = rng.random(8) < 0.5
    x = rng.uniform(-1, 1, size=(200, 8)).astype(np.float32)
    y = np.sin(x @ (a * mask) + b) + 0.05 * rng.normal(size=200)
    np.savez(out / f"site{site}.npz", x=x, y=y.astype(np.float32)[:, None])
    print(f"wrote {out / f'site{site}.npz'}: x {x.shape}, y {(200, 1)}")
