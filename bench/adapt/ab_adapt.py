#!/usr/bin/env python3
"""Two gtk binaries adapting one trained run, alternating A B A B …: the whole `gtk adapt`
command's wall time and CPU time (issue 14, must-show 3: adapt on the engine, before and after,
same machine, same run). Train the run once, then

    GATEKIT_DATA=../shared/data python3 bench/adapt/ab_adapt.py \\
        --a /tmp/before/gtk --b target/release/gtk --reps 3 \\
        [--train tasks/colors.toml] [--new tasks/adapt-colors.toml] [--method mask --shots 100]

`--train` trains the run with binary B first (training is the same in both). Prints one line
per run, the medians, the ratio A/B of the medians, and each side's result table (the test
metric per task and model), and writes bench/results/adapt-ab-<tag>.md.
"""
import argparse
import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def adapt(binary, run, new, method, shots, out, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [binary, "adapt", str(run), "--task-set", str(new), "--method", method,
         "--shots", str(shots), "--out", str(out), "--quiet"],
        check=True, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="the binary before")
    ap.add_argument("--b", required=True, help="the binary after")
    ap.add_argument("--train", default="tasks/colors.toml")
    ap.add_argument("--new", default="tasks/adapt-colors.toml")
    ap.add_argument("--method", default="mask")
    ap.add_argument("--shots", type=int, default=100)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tag", default=time.strftime("%Y%m%d-%H%M"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gatekit-adapt-ab-"))
    subprocess.run([args.b, "train", "--task-set", str(ROOT / args.train), "--strategy", "all",
                    "--runs-dir", str(work), "--name", "trained", "--quiet"],
                   check=True, stdout=subprocess.DEVNULL)
    run = work / "trained"
    rows = {"A": [], "B": []}
    tables = {}
    for rep in range(args.reps):
        for side, binary in (("A", args.a), ("B", args.b)):
            load = os.getloadavg()[0]
            out = work / f"{side}-{rep}"
            wall, cpu, stdout = adapt(binary, run, ROOT / args.new, args.method, args.shots,
                                      out, args.threads)
            rows[side].append((wall, cpu, load))
            tables[side] = stdout.strip()
            print(f"{side} rep {rep}: wall {wall:.2f} s, cpu {cpu:.2f} s, load {load:.2f}",
                  flush=True)
    med = {s: (statistics.median(w for w, _, _ in r), statistics.median(c for _, c, _ in r))
           for s, r in rows.items()}
    lines = [
        f"# gtk adapt, before (A) and after (B), {args.tag}",
        "",
        f"`gtk adapt` of a `{args.train}` run (`--strategy all`, trained once by B) to "
        f"`{args.new}`, `--method {args.method} --shots {args.shots}` with the baselines, "
        f"RAYON_NUM_THREADS={args.threads}, {args.reps} runs each, alternating A B.",
        "",
        "| binary | wall (median) | CPU (median) | loads |",
        "|---|---:|---:|---|",
    ]
    for side, binary in (("A", args.a), ("B", args.b)):
        loads = ", ".join(f"{l:.2f}" for _, _, l in rows[side])
        lines.append(f"| {side} `{binary}` | {med[side][0]:.2f} s | {med[side][1]:.2f} s | {loads} |")
    lines += [
        "",
        f"A/B: wall {med['A'][0] / med['B'][0]:.2f}x, CPU {med['A'][1] / med['B'][1]:.2f}x.",
        "",
    ]
    for side in ("A", "B"):
        lines += [f"{side}'s result table (last run):", "", "```text", tables[side], "```", ""]
    text = "\n".join(lines)
    print(text)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"adapt-ab-{args.tag}.md").write_text(text)


if __name__ == "__main__":
    main()
