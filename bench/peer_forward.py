#!/usr/bin/env python3
"""The PyTorch peer's evaluation forward alone: images/s of its gated LeNet-5 (W2's model, 4
tasks) under torch.no_grad(), on batches of 2000 3x32x32 images (the batch its evaluate()
uses), after one warm-up pass; the best of --reps passes (the figure most favourable to the
peer). Prints one JSON line. Run by bench/compare.py --whole-run.

    python bench/peer_forward.py --threads 1 --peer ../shared/bench/peer
"""
import argparse
import json
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--peer", required=True, help="folder holding gated_peer.py")
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, args.peer)
    import torch
    import gated_peer
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = gated_peer.LeNet5(4)
    x = torch.rand(args.images, 3, 32, 32)
    best = None
    with torch.no_grad():
        for rep in range(args.reps + 1):
            t0 = time.perf_counter()
            for i in range(0, args.images, args.batch):
                net(x[i:i + args.batch], 1).argmax(1)
            took = time.perf_counter() - t0
            if rep > 0:  # the first pass warms up
                best = took if best is None else min(best, took)
    print(json.dumps({"threads": torch.get_num_threads(), "images": args.images,
                      "batch": args.batch, "seconds": round(best, 4),
                      "images_per_second": round(args.images / best, 1),
                      "load_avg_1m": round(os.getloadavg()[0], 2), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
