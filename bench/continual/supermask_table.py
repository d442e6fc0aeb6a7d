#!/usr/bin/env python3
"""The table of bench/continual/supermask.sh: one row per (network, inputs, tasks, objective,
variant), from the infer-*.json reports, the config-*.toml of each run and masks.tsv of one or
more results folders.

    python3 bench/continual/supermask_table.py bench/results/supermask-<date> [more folders...]

The network and the inputs (raw pixels in [0, 1], or standardised by `normalize = [mean, std]`)
come from the run's own config (config-N-seedK.toml, copied by supermask.sh). A folder written
before supermask.sh kept configs has LENET_RAW: LeNet 300-100 with 500 outputs on raw pixels,
the task files of that time (bench/continual/supermask-permuted-N.toml before `normalize`).
"""
import glob
import json
import os
import re
import statistics
import sys
import tomllib

STEPS_PER_TASK = 1000
# LeNet 300-100 with 500 outputs: every weight and bias is gated (784·300+300 + 300·100+100 +
# 100·500+500).
LENET_RAW = ("lenet-300-100-500", "[0, 1]", 316_100)


def mean(values):
    return statistics.mean(values) if values else float("nan")


def run_setting(folder, n, seed):
    """(network, inputs, gated parameters) of one run, from its recorded config."""
    path = os.path.join(folder, f"config-{n}-seed{seed}.toml")
    if not os.path.exists(path):
        return LENET_RAW
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    model = cfg["model"]
    width, gated = 1, 0
    for d in model["input"]:
        width *= d
    for layer in model["layer"]:
        if layer["type"] == "linear":
            gated += width * layer["out"] + layer["out"]
            width = layer["out"]
    norms = {tuple(t.get("normalize", [])) for t in cfg.get("task", [])}
    if len(norms) != 1:
        raise SystemExit(f"{path}: tasks differ in `normalize`: {sorted(norms)}")
    norm = norms.pop()
    inputs = "[0, 1]" if not norm else f"standardised ({norm[0]:g}, {norm[1]:g})"
    return model["name"], inputs, gated


def main(folders):
    rows = {}
    masks = {}
    for folder in folders:
        for path in sorted(glob.glob(os.path.join(folder, "infer-*.json"))):
            m = re.match(r"infer-(\d+)-seed(\d+)-(\w+)-([\w-]+)\.json", os.path.basename(path))
            if not m:
                continue
            n, seed, objective, variant = int(m[1]), int(m[2]), m[3], m[4]
            net, inputs, gated = run_setting(folder, n, seed)
            with open(path) as f:
                r = json.load(f)
            rows.setdefault((net, inputs, n, objective, variant), []).append((seed, gated, r))
        masks_tsv = os.path.join(folder, "masks.tsv")
        if os.path.exists(masks_tsv):
            with open(masks_tsv) as f:
                next(f)
                for line in f:
                    n, seed, size = line.split()
                    net, inputs, _ = run_setting(folder, int(n), int(seed))
                    masks[(net, inputs, int(n), int(seed))] = int(size)
    print("# Supermasks that infer the task (SupSup's GNu setting, permuted MNIST)\n")
    print("500 outputs (490 unused), W never trained (signed constant), one binary")
    print("straight-through mask per task, RMSProp 1e-4, batches of 128. One inference per")
    print("test batch of 128; a wrongly inferred batch scores 0. Accuracies are means over")
    print("tasks of the final model; seeds listed. Written by bench/continual/supermask_table.py.\n")
    print("| network | inputs | tasks | steps per task | seeds | objective | variant "
          "| gradients per batch | test images per task | inference accuracy "
          "| accuracy, task inferred | accuracy, task given | bits per weight per task |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (net, inputs, n, objective, variant), runs in sorted(rows.items()):
        seeds = sorted(s for s, _, _ in runs)
        gated = runs[0][1]
        reports = [r for _, _, r in runs]
        sizes = [masks[(net, inputs, n, s)] for s in seeds if (net, inputs, n, s) in masks]
        bits = "%.3f" % (8 * mean(sizes) / (n * gated)) if sizes else "—"
        images = reports[0]["tasks"][0]["examples"]
        print(
            f"| {net} | {inputs} | {n} | {STEPS_PER_TASK} | {','.join(map(str, seeds))} "
            f"| {objective} | {variant} | {reports[0]['rounds']} | {images} "
            f"| {100 * mean([r['inference_accuracy'] for r in reports]):.2f} % "
            f"| {100 * mean([r['accuracy_inferred'] for r in reports]):.2f} % "
            f"| {100 * mean([r['accuracy_given'] for r in reports]):.2f} % | {bits} |"
        )
    print("\nSupSup (ANCHORS.md): 94.91 % with the task inferred after 250 permutations.")


if __name__ == "__main__":
    main(sys.argv[1:] or ["."])
