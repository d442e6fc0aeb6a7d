#!/usr/bin/env python3
"""The tables of bench/continual/collapse.sh: inference accuracy per (set, gates, variant) over
seeds, then, per set, every mask's density, output gain and the votes it received (seed 0,
one-shot, soft and binary gates).

    python3 bench/continual/collapse_table.py bench/results/supermask-<date>/collapse
"""
import glob
import json
import os
import re
import statistics
import sys

SETS = [
    ("continual-permuted-mlp", "W trained"),
    ("continual-permuted-mlp-freeze-after-first", "freeze-after-first"),
    ("continual-permuted-mlp-supermask", "W never trained (supermask)"),
]


def load(folder):
    runs = {}
    for path in glob.glob(os.path.join(folder, "*.json")):
        m = re.match(r"(.+)-seed(\d+)-(soft|binary)-(one-shot|halving)\.json", os.path.basename(path))
        if m:
            with open(path) as f:
                runs[(m[1], int(m[2]), m[3], m[4])] = json.load(f)
    return runs


def pm(values):
    if len(values) < 2:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def received(report):
    """Votes each stored mask received over all tasks' batches."""
    cols = len(report["stored"])
    return [sum(t["votes"][j] for t in report["tasks"]) for j in range(cols)]


def ranks(values):
    order = sorted(range(len(values)), key=lambda i: values[i])
    r = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2
        i = j + 1
    return r


def spearman(a, b):
    """Spearman's rank correlation (ties averaged)."""
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.mean(ra), statistics.mean(rb)
    num = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    den = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return num / den if den else float("nan")


def correlations(runs, name, gates, seeds):
    """Per seed (one-shot), Spearman's ρ between the votes a mask received and its logit norm
    on other tasks' data, and its density."""
    gain, dens = [], []
    for s in seeds:
        r = runs.get((name, s, gates, "one-shot"))
        if not r or not r["profiles"]:
            continue
        votes = received(r)
        gain.append(spearman(votes, [p["other_logit_norm"] for p in r["profiles"]]))
        dens.append(spearman(votes, [p["density"] for p in r["profiles"]]))
    return gain, dens


def main(folder):
    runs = load(folder)
    seeds = sorted({k[1] for k in runs})
    print("# Why task inference collapsed on the chapter's sequential runs\n")
    print("Entropy one-shot / halving pick on test batches of 32 (task id withheld), trained (soft)")
    print(f"and binarized gates; inference accuracy in %, mean ± sd over seeds {seeds}.\n")
    print("| run | gates | one-shot | halving | accuracy, task inferred (one-shot) | accuracy, task given |")
    print("|---|---|---|---|---|---|")
    for name, label in SETS:
        for gates in ("soft", "binary"):
            cell = {}
            for variant in ("one-shot", "halving"):
                reps = [runs[(name, s, gates, variant)] for s in seeds if (name, s, gates, variant) in runs]
                cell[variant] = reps
            if not cell["one-shot"]:
                continue
            one, half = cell["one-shot"], cell["halving"]
            print(
                f"| {label} | {gates} | {pm([100 * r['inference_accuracy'] for r in one])} "
                f"| {pm([100 * r['inference_accuracy'] for r in half]) if half else '—'} "
                f"| {pm([100 * r['accuracy_inferred'] for r in one])} "
                f"| {pm([100 * r['accuracy_given'] for r in one])} |"
            )
    print("\nSpearman's ρ over the 10 masks between the votes a mask received (one-shot) and its")
    print("output gain on other tasks' data (mean logit norm), and its density; one value per seed.\n")
    print("| run | gates | ρ(votes, logit norm on other tasks) | ρ(votes, density) |")
    print("|---|---|---|---|")
    for name, label in SETS:
        for gates in ("soft", "binary"):
            gain, dens = correlations(runs, name, gates, seeds)
            if gain:
                fmt = lambda v: ", ".join(f"{x:+.2f}" for x in v)
                print(f"| {label} | {gates} | {fmt(gain)} | {fmt(dens)} |")
    for name, label in SETS:
        for gates in ("soft", "binary"):
            r = runs.get((name, seeds[0], gates, "one-shot")) if seeds else None
            if not r or not r["profiles"]:
                continue
            votes = received(r)
            print(f"\n## {label}, {gates} gates, seed {seeds[0]}, one-shot\n")
            print("| mask | density (M > 0) | mean gate | logit norm own | logit norm other "
                  "| max-softmax own | max-softmax other | votes received |")
            print("|---|---|---|---|---|---|---|---|")
            for p, v in zip(r["profiles"], votes):
                print(
                    f"| {p['task']} | {p['density']:.3f} | {p['mean_gate']:.3f} "
                    f"| {p['own_logit_norm']:.2f} | {p['other_logit_norm']:.2f} "
                    f"| {p['own_max_softmax']:.3f} | {p['other_max_softmax']:.3f} | {v} |"
                )
            print("\nVote matrix (row: true task, column: chosen mask):\n")
            print("| task | " + " | ".join(r["stored"]) + " |")
            print("|---" * (len(r["stored"]) + 1) + "|")
            for t in r["tasks"]:
                print(f"| {t['task']} | " + " | ".join(str(v) for v in t["votes"]) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
