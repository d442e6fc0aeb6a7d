#!/usr/bin/env python3
"""Which of gatekit's departures from SupSup's permuted-MNIST recipe costs per-task accuracy?

One permuted-MNIST task learned as SupSup does (Wortsman et al. 2020, RAIVNLab/supsup:
`experiments/GNu/MNISTPerm/LeNet-250-tasks/supsup_h.py`, `models/small.py`,
`models/module_util.py`): a never-trained signed-constant W (±√(2/fan_in), no biases), one
binary mask by a straight-through estimator, RMSProp lr 1e-4, 1000 batches of 128, written
in PyTorch independently of gatekit. Each setting is `INPUTS,STE,SCORES,OUTPUTS`:

  INPUTS   raw (pixels in [0, 1], gatekit's default) | norm (SupSup: Normalize(0.1307, 0.3081))
  STE      identity (SupSup: the score gradient is the mask gradient)
           | sigmoid (gatekit's gate = "ste": the mask gradient times σ'(score))
  SCORES   kaiming (SupSup: U(±1/√fan_in)) | normal (gatekit's files: N(0, 0.03²))
  OUTPUTS  100 (SupSup's LeNet configs) | 500 (gatekit's files)

    ~/.cache/gatekit/peer-venv/bin/python bench/continual/supsup_probe.py \\
        [--hidden 300x100] [--seeds 0,1] [--mnist DIR] SETTING...

prints the test accuracy of each setting per seed (one thread). The PyTorch is the peer's
(../shared/bench/peer/README.md); the MNIST folder defaults to $GATEKIT_DATA/mnist.
"""
import argparse
import gzip
import math
import os

import numpy as np
import torch
import torch.nn.functional as F


def idx(path):
    b = gzip.open(path, "rb").read()
    n = b[3]
    dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(n)]
    return np.frombuffer(b, np.uint8, offset=4 + 4 * n).reshape(dims)


def load(folder):
    x = lambda f: torch.tensor(idx(os.path.join(folder, f)).reshape(-1, 784),
                               dtype=torch.float32) / 255
    y = lambda f: torch.tensor(idx(os.path.join(folder, f)).astype(np.int64))
    return (x("train-images-idx3-ubyte.gz"), y("train-labels-idx1-ubyte.gz"),
            x("t10k-images-idx3-ubyte.gz"), y("t10k-labels-idx1-ubyte.gz"))


def run(data, hidden, setting, seed, steps=1000, batch=128):
    inputs, ste, scores, outputs = setting.split(",")
    xtr, ytr, xte, yte = data
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(784, generator=g)
    f = (lambda x: (x - 0.1307) / 0.3081) if inputs == "norm" else (lambda x: x)
    xtr, xte = f(xtr)[:, perm], f(xte)[:, perm]
    dims = [784] + hidden + [int(outputs)]
    ws, ss = [], []
    for i, o in zip(dims[:-1], dims[1:]):
        ws.append((torch.randint(0, 2, (o, i), generator=g).float() * 2 - 1) * math.sqrt(2 / i))
        if scores == "kaiming":
            s = (torch.rand(o, i, generator=g) * 2 - 1) / math.sqrt(i)
        else:
            s = torch.randn(o, i, generator=g) * 0.03
        ss.append(s.requires_grad_())
    opt = torch.optim.RMSprop(ss, lr=1e-4)

    def gate(s):
        hard = (s >= 0).float()
        soft = s if ste == "identity" else torch.sigmoid(s)
        return hard + (soft - soft.detach())

    def forward(x):
        for k, (w, s) in enumerate(zip(ws, ss)):
            x = x @ (w * gate(s)).t()
            if k < len(ws) - 1:
                x = F.relu(x)
        return x

    for _ in range(steps):
        i = torch.randint(0, len(xtr), (batch,), generator=g)
        loss = F.cross_entropy(forward(xtr[i]), ytr[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return (forward(xte).argmax(1) == yte).float().mean().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("settings", nargs="+")
    ap.add_argument("--hidden", default="300x100")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--mnist", default=os.path.join(
        os.environ.get("GATEKIT_DATA", "../shared/data"), "mnist"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    data = load(a.mnist)
    hidden = [int(h) for h in a.hidden.split("x")]
    for setting in a.settings:
        accs = [run(data, hidden, setting, int(s)) for s in a.seeds.split(",")]
        print(f"{a.hidden} {setting} " + " ".join(f"{100 * v:.2f}" for v in accs), flush=True)


if __name__ == "__main__":
    main()
