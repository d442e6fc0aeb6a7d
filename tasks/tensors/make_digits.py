#!/usr/bin/env python3
"""A real multi-task dataset from scikit-learn's bundled digits (no downloads).

scikit-learn ships the UCI optical-digits test set inside its wheel (sklearn/datasets/data/
digits.csv.gz: 1797 8x8 images, pixel values 0-16, digits 0-9); `load_digits()` reads it from
there. This script turns it into five binary tasks, "split digits": task k tells digit 2k
(label 0) from digit 2k+1 (label 1). Each task's examples are split 75/25 with a fixed seed,
stratified by digit, and saved with np.savez as OUT/pair{2k}{2k+1}-{train,test}.npz holding
`x` (float32 [n, 64], raw pixel values) and `y` (int64 [n], 0 or 1).

Usage: python3 tasks/tensors/make_digits.py [OUT_DIR]   (needs `pip install scikit-learn`)
"""
import pathlib
import sys

import numpy as np
from sklearn.datasets import load_digits

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent / "digits")
out.mkdir(parents=True, exist_ok=True)
digits = load_digits()
x_all, y_all = digits.data.astype(np.float32), digits.target
rng = np.random.default_rng(0)
for k in range(5):
    lo, hi = 2 * k, 2 * k + 1
    train, test = [], []
    for d in (lo, hi):
        idx = np.flatnonzero(y_all == d)
        rng.shuffle(idx)
        cut = int(round(0.75 * len(idx)))
        train.extend(idx[:cut])
        test.extend(idx[cut:])
    for split, idx in (("train", np.sort(train)), ("test", np.sort(test))):
        y = (y_all[idx] == hi).astype(np.int64)
        path = out / f"pair{lo}{hi}-{split}.npz"
        np.savez(path, x=x_all[idx], y=y)
        print(f"wrote {path}: {len(idx)} examples")
