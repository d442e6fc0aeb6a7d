#!/usr/bin/env python3
"""Two gtk binaries on one task set, alternating A B A B …: the training loop's steps/s and the
cost of a commit, from each run's timing.json. For "did this change slow training down?":
build the old binary in a worktree of the old commit, then

    GATEKIT_DATA=../shared/data python3 bench/ab_binaries.py \\
        --a /tmp/old/target/release/gtk --b target/release/gtk \\
        --task-set tasks/bench-w2.toml --strategy gated --reps 5 --threads 1

It prints one line per run and the medians, with the ratio B/A of the medians.
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def run(binary, task_set, strategy, threads, work, data):
    name = f"r{time.time_ns()}"
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    cmd = [binary, "train", "--task-set", task_set, "--strategy", strategy, "--name", name,
           "--runs-dir", str(work), "--quiet"]
    if data:
        cmd += ["--data-dir", data]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    timing = json.loads((work / name / "timing.json").read_text())
    commits = timing.get("commits", 0)
    return {
        "steps_per_second": timing["steps_per_second"],
        "wall_seconds": wall,
        "commits": commits,
        "seconds_per_commit": timing.get("commit_seconds", 0.0) / commits if commits else None,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="baseline gtk binary")
    ap.add_argument("--b", required=True, help="gtk binary under test")
    ap.add_argument("--task-set", required=True)
    ap.add_argument("--strategy", default="gated")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    data = os.environ.get("GATEKIT_DATA")
    work = Path(tempfile.mkdtemp(prefix="gatekit-ab-"))
    rows = {"a": [], "b": []}
    for rep in range(args.reps):
        for side in ["a", "b"]:
            r = run(getattr(args, side), args.task_set, args.strategy, args.threads, work, data)
            rows[side].append(r)
            spc = r["seconds_per_commit"]
            print(f"rep {rep} {side}: {r['steps_per_second']:8.1f} steps/s  wall {r['wall_seconds']:6.2f} s"
                  + (f"  {r['commits']} commit(s), {1000 * spc:.1f} ms each" if spc else ""),
                  flush=True)
    med = {s: statistics.median(r["steps_per_second"] for r in rows[s]) for s in rows}
    print(f"median steps/s: A {med['a']:.1f}, B {med['b']:.1f}, B/A {med['b'] / med['a']:.3f}")
    costs = [r["seconds_per_commit"] for r in rows["b"] if r["seconds_per_commit"]]
    if costs:
        print(f"B: median {1000 * statistics.median(costs):.1f} ms per commit")
    subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    main()
