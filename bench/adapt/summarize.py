#!/usr/bin/env python3
"""Tables from adapted runs' adapt.json files (gtk adapt): identification rates, per-task
test metrics of every method and baseline, and means with 95 % confidence intervals.

Usage: bench/adapt/summarize.py RUN_DIR... [--ci]
  --ci   one line per model: mean over tasks ± 1.96·sd/√n (for many tasks, e.g. sinusoids)
An identification task is named after the stored task it repeats: `q3` repeats `p3`, and
`red2` repeats `red`; its rate is the share of pick's trials that chose that task.
"""
import json
import math
import sys
from pathlib import Path


def expected(name, stored):
    if name.endswith("2") and name[:-1] in stored:
        return name[:-1]
    if name.startswith("q") and "p" + name[1:] in stored:
        return "p" + name[1:]
    return None


def main(args):
    ci = "--ci" in args
    for run in [a for a in args if not a.startswith("--")]:
        s = json.loads((Path(run) / "adapt.json").read_text())
        c = s["config"]
        print(f"\n## {run}: method {c['method']}, K = {c['shots']}, {c['steps']} steps, "
              f"batch {s['batch_size']}, test {s['metric_name']}")
        rates = []
        for t in s["tasks"]:
            p = t.get("pick")
            if not p or p["trials"] < 2:
                continue
            stored = [n for n, _ in p["votes"]]
            want = expected(t["task"], stored)
            if want is None:
                continue
            hits = dict(p["votes"])[want]
            rates.append(hits / p["trials"])
            print(f"  identify {t['task']} as {want}: {hits}/{p['trials']} "
                  f"({p['variant']}, {p['signal']})")
        if rates:
            print(f"  identification rate, mean over tasks: {100 * sum(rates) / len(rates):.1f} %"
                  f" (min {100 * min(rates):.0f} %)")
        models = [r["model"] for r in s["tasks"][0]["rows"]]
        if ci:
            for m in models:
                v = [r["metric"] for t in s["tasks"] for r in t["rows"] if r["model"] == m]
                n = len(v)
                mean = sum(v) / n
                sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1)) if n > 1 else 0.0
                print(f"  {m:>22}: {mean:.4f} ± {1.96 * sd / math.sqrt(n):.4f}  (n = {n} tasks)")
            continue
        if all(len(t["rows"]) == 1 and t["rows"][0]["model"] == "pick" for t in s["tasks"]):
            continue
        print("  | task | " + " | ".join(models) + " |")
        print("  |---|" + "---|" * len(models))
        for t in s["tasks"]:
            cells = []
            for r in t["rows"]:
                cell = f"{r['metric']:.4f}"
                if r.get("binarized") is not None:
                    cell += f" ({r['binarized']:.4f})"
                cells.append(cell)
            print(f"  | {t['task']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
