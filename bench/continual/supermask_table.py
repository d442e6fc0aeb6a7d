#!/usr/bin/env python3
"""The table of bench/continual/supermask.sh: one row per (tasks, objective, variant), from the
infer-*.json reports, the train-*.json matrices and masks.tsv of a results folder.

    python3 bench/continual/supermask_table.py bench/results/supermask-<date>
"""
import glob
import json
import os
import re
import statistics
import sys

# LeNet 300-100 with 500 outputs: every weight and bias is gated (784·300+300 + 300·100+100 +
# 100·500+500).
GATED_PARAMS = 316_100
STEPS_PER_TASK = 1000


def mean(values):
    return statistics.mean(values) if values else float("nan")


def main(folder):
    rows = {}
    for path in sorted(glob.glob(os.path.join(folder, "infer-*.json"))):
        m = re.match(r"infer-(\d+)-seed(\d+)-(\w+)-([\w-]+)\.json", os.path.basename(path))
        if not m:
            continue
        n, seed, objective, variant = int(m[1]), int(m[2]), m[3], m[4]
        with open(path) as f:
            r = json.load(f)
        rows.setdefault((n, objective, variant), []).append((seed, r))
    masks = {}
    masks_tsv = os.path.join(folder, "masks.tsv")
    if os.path.exists(masks_tsv):
        with open(masks_tsv) as f:
            next(f)
            for line in f:
                n, seed, size = line.split()
                masks[(int(n), int(seed))] = int(size)
    print("# Supermasks that infer the task (SupSup's GNu setting, permuted MNIST)\n")
    print("LeNet 300-100 with 500 outputs (490 unused), W never trained (signed constant), one")
    print("binary straight-through mask per task, RMSProp 1e-4, batches of 128. One inference")
    print("per test batch of 128; a wrongly inferred batch scores 0. Accuracies are means over")
    print("tasks of the final model; seeds listed. Written by bench/continual/supermask_table.py.\n")
    print("| tasks | steps per task | seeds | objective | variant | gradients per batch "
          "| test images per task | inference accuracy | accuracy, task inferred "
          "| accuracy, task given | bits per weight per task |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (n, objective, variant), runs in sorted(rows.items()):
        seeds = sorted(s for s, _ in runs)
        reports = [r for _, r in runs]
        sizes = [masks[(n, s)] for s in seeds if (n, s) in masks]
        bits = "%.3f" % (8 * mean(sizes) / (n * GATED_PARAMS)) if sizes else "—"
        images = reports[0]["tasks"][0]["examples"]
        print(
            f"| {n} | {STEPS_PER_TASK} | {','.join(map(str, seeds))} | {objective} | {variant} "
            f"| {reports[0]['rounds']} | {images} "
            f"| {100 * mean([r['inference_accuracy'] for r in reports]):.2f} % "
            f"| {100 * mean([r['accuracy_inferred'] for r in reports]):.2f} % "
            f"| {100 * mean([r['accuracy_given'] for r in reports]):.2f} % | {bits} |"
        )
    print("\nSupSup (ANCHORS.md): 94.91 % with the task inferred after 250 permutations.")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
