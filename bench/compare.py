#!/usr/bin/env python3
"""gatekit against the PyTorch peer on the issue-5 workloads, in one run, alternating.

    W1 sinusoid      tasks/bench-w1.toml  vs  gated_peer.py --workload sinusoid
    W2 colored MNIST tasks/bench-w2.toml  vs  gated_peer.py --workload colored-mnist

For every workload x method (gated, shared, separate) x threads (1, 2) it runs gatekit and the
peer in turn, --reps times each (default 3), and records per run: the 1-minute load average
just before it, the training loop's steps/s (each tool's own timer around its loop: task and
batch draws, on-the-fly colouring, forward, backward, update), the whole-process wall time and
peak RSS (this script's clock and the kernel's `wait4` accounting, the same for both), the
start-to-first-step time (gatekit), and the test metric. It prints medians and gatekit/peer
ratios and writes them to bench/results/ (markdown + every raw run as JSON lines).

Before each run it waits (at most --max-wait seconds) for the 1-minute load to drop below
--idle-load (default 1.0); the load it got is recorded next to every figure.

Usage (from the repository root; needs GATEKIT_DATA with mnist/ in it):
    python3 bench/compare.py [--reps 3] [--workloads w1,w2] [--threads 1,2]
    python3 bench/compare.py --whole-run [--reps 3] [--threads 1,2]
    python3 bench/compare.py --gtk /path/to/older/gtk ...   (time another build, e.g. before a refactor)

--whole-run (issue 15, "time to result"): W2 with the paper's cadence on both sides, the test
metric every 10 steps on 500 test images per task and the full test at the end (gatekit:
tasks/bench-w2.toml with eval_every = 10, eval_subset = 500; the peer: --eval-every 10
--eval-subset 500). The figure is the whole process's wall time; gatekit's timing.json adds
where its time went (loop, probes, full evaluation, forward images/s). Each thread count also
times the peer's evaluation forward alone (LeNet-5 under torch.no_grad(), batches of 2000 as
its evaluate() uses, bench/peer_forward.py) next to gatekit's evaluation forward from the same
runs, in images/s.
The peer's venv is $PEER_VENV (default ~/.cache/gatekit/peer-venv); --install-peer creates it
with `pip install torch==2.15.0 numpy` (about 3 GB, see ../shared/bench/peer/README.md).
"""

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER_DIR = ROOT.parent / "shared" / "bench" / "peer"
WORKLOADS = {
    "w1": {"set": "tasks/bench-w1.toml", "peer": "sinusoid", "metric": "mse"},
    "w2": {"set": "tasks/bench-w2.toml", "peer": "colored-mnist", "metric": "accuracy"},
}
METHODS = ["gated", "shared", "separate"]
IDX = ["train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1"]


def load1():
    return os.getloadavg()[0]


def wait_idle(limit, max_wait):
    start = time.time()
    while load1() >= limit and time.time() - start < max_wait:
        time.sleep(2)
    return load1()


def run_wait4(cmd, env):
    """Runs cmd and reaps it with os.wait4: wall seconds, peak RSS in MB, stdout, stderr, rc."""
    out_f = tempfile.TemporaryFile(mode="w+")
    err_f = tempfile.TemporaryFile(mode="w+")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=out_f, stderr=err_f, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    out_f.seek(0)
    err_f.seek(0)
    return wall, usage.ru_maxrss / 1024.0, out_f.read(), err_f.read(), proc.returncode


def peer_data(gatekit_data, cache):
    """The peer reads uncompressed IDX files named like train-images.idx3-ubyte."""
    cache.mkdir(parents=True, exist_ok=True)
    for name in IDX:
        dst = cache / (name.replace("-idx", ".idx") + "-ubyte")
        if not dst.exists():
            src = Path(gatekit_data) / "mnist" / f"{name}-ubyte.gz"
            tmp = dst.with_suffix(".part")
            with gzip.open(src, "rb") as f, open(tmp, "wb") as g:
                shutil.copyfileobj(f, g)
            tmp.rename(dst)
    return cache


def gatekit_metric(run_dir, metric):
    best_step, values = -1, []
    for line in open(run_dir / "metrics.jsonl"):
        r = json.loads(line)
        if r.get("record") == "eval" and r["split"] == "test":
            if r["step"] > best_step:
                best_step, values = r["step"], []
            if r["step"] == best_step:
                values.append(r["metric"])
    return sum(values) / len(values)


def whole_run_set(work):
    """tasks/bench-w2.toml with the whole-run cadence, its model path made absolute."""
    text = (ROOT / WORKLOADS["w2"]["set"]).read_text()
    assert "eval_every = 500\n" in text and 'model = "../models/' in text
    text = text.replace("eval_every = 500\n", "eval_every = 10\neval_subset = 500\n")
    text = text.replace('model = "../models/', f'model = "{ROOT / "models"}/')
    path = work / "bench-w2-whole-run.toml"
    path.write_text(text)
    return path


def run_gatekit(gtk, workload, method, threads, work, data, task_set=None):
    name = f"{workload}-{method}-{threads}-{time.time_ns()}"
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), GATEKIT_DATA=data)
    task_set = task_set or ROOT / WORKLOADS[workload]["set"]
    cmd = [str(gtk), "train", "--task-set", str(task_set),
           "--strategy", method, "--runs-dir", str(work), "--name", name, "--quiet"]
    wall, rss, out, err, rc = run_wait4(cmd, env)
    if rc != 0:
        sys.exit(f"gatekit failed ({rc}): {' '.join(cmd)}\n{err}")
    timing = json.load(open(work / name / "timing.json"))
    metric = gatekit_metric(work / name, WORKLOADS[workload]["metric"])
    shutil.rmtree(work / name)
    return {"steps_per_second": timing["steps_per_second"], "wall_seconds": wall,
            "peak_rss_mb": rss, "first_step_seconds": timing["first_step_seconds"],
            "metric": metric, "loop_seconds": timing["loop_seconds"],
            "probes": timing.get("probes"), "probe_seconds": timing.get("probe_seconds"),
            "full_eval_seconds": timing.get("full_eval_seconds"),
            "commit_seconds": timing.get("commit_seconds"),
            "forward_images_per_second": timing.get("forward_images_per_second")}


def run_peer(python, workload, method, threads, mnist, extra=()):
    cmd = [str(python), str(PEER_DIR / "gated_peer.py"), "--workload", WORKLOADS[workload]["peer"],
           "--method", method, "--threads", str(threads), "--data", str(mnist), *extra]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    wall, rss, out, err, rc = run_wait4(cmd, env)
    if rc != 0:
        sys.exit(f"peer failed ({rc}): {' '.join(cmd)}\n{err}")
    line = [l for l in out.splitlines() if l.startswith("{")][-1]
    r = json.loads(line)
    return {"steps_per_second": r["steps_per_second"], "wall_seconds": wall,
            "peak_rss_mb": rss, "first_step_seconds": None, "metric": r["mean"],
            "loop_seconds": r["train_seconds"], "curve_points": r.get("curve_points")}


def run_peer_forward(python, threads):
    """The peer's evaluation forward alone: images/s of LeNet-5 under torch.no_grad()."""
    cmd = [str(python), str(ROOT / "bench" / "peer_forward.py"), "--threads", str(threads),
           "--peer", str(PEER_DIR)]
    wall, rss, out, err, rc = run_wait4(cmd, dict(os.environ, OMP_NUM_THREADS=str(threads)))
    if rc != 0:
        sys.exit(f"peer forward failed ({rc}): {' '.join(cmd)}\n{err}")
    return json.loads([l for l in out.splitlines() if l.startswith("{")][-1])


def whole_run(args, gtk, python, mnist, data, work, out_dir):
    """gatekit and the peer on W2 with the same evaluation cadence, whole-process wall time."""
    task_set = whole_run_set(work)
    peer_flags = ["--eval-every", "10", "--eval-subset", "500"]
    raw_path = out_dir / f"whole-run-{args.tag}.jsonl"
    rows, forward = [], []
    with open(raw_path, "w") as raw:
        for threads in [int(t) for t in args.threads.split(",")]:
            for rep in range(args.reps):
                load = wait_idle(args.idle_load, args.max_wait)
                f = run_peer_forward(python, threads)
                f.update(tool="peer-forward", threads=threads, rep=rep, load_1m=round(load, 2))
                forward.append(f)
                raw.write(json.dumps(f) + "\n")
                for method in args.methods.split(","):
                    for tool in ["gatekit", "peer"]:
                        load = wait_idle(args.idle_load, args.max_wait)
                        if tool == "gatekit":
                            r = run_gatekit(gtk, "w2", method, threads, work, data, task_set)
                        else:
                            r = run_peer(python, "w2", method, threads, mnist, peer_flags)
                        r.update(tool=tool, workload="w2", method=method, threads=threads, rep=rep,
                                 load_1m=round(load, 2))
                        rows.append(r)
                        raw.write(json.dumps(r) + "\n")
                        raw.flush()
                        print(f"w2 {method:8} t{threads} {tool:7} rep{rep}: wall {r['wall_seconds']:6.2f} s  "
                              f"loop {r['loop_seconds']:6.2f} s  metric {r['metric']:.4f}  load {load:.2f}",
                              flush=True)
    text = whole_run_report(rows, forward, args, out_dir)
    print()
    print(text)
    print(f"written: {out_dir / f'whole-run-{args.tag}.md'} and {raw_path}")


def whole_run_report(rows, forward, args, out_dir):
    lines = [f"# Time to result: gatekit vs PyTorch peer, whole runs ({args.tag})", "",
             f"W2 (colored MNIST, LeNet-5, 500 steps), test metric every 10 steps on 500 test images "
             f"per task, full test at the end, both tools. {os.cpu_count()} cores; reps {args.reps}, "
             f"alternating; medians. Load: 1-minute load average before each run.", "",
             "| method | threads | gatekit wall s | peer wall s | peer/gatekit | gatekit loop s | "
             "gatekit probes s | gatekit full eval s | gatekit first step s | gatekit metric | "
             "peer metric | load (max) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    keys = []
    for r in rows:
        if (r["method"], r["threads"]) not in keys:
            keys.append((r["method"], r["threads"]))
    for method, threads in keys:
        g = [r for r in rows if (r["tool"], r["method"], r["threads"]) == ("gatekit", method, threads)]
        p = [r for r in rows if (r["tool"], r["method"], r["threads"]) == ("peer", method, threads)]
        gw, pw = med(g, "wall_seconds"), med(p, "wall_seconds")
        lines.append(
            f"| {method} | {threads} | {gw:.2f} | {pw:.2f} | **{pw / gw:.2f}x** | "
            f"{med(g, 'loop_seconds'):.2f} | {med(g, 'probe_seconds'):.2f} | "
            f"{med(g, 'full_eval_seconds'):.2f} | {med(g, 'first_step_seconds'):.2f} | "
            f"{med(g, 'metric'):.4f} | {med(p, 'metric'):.4f} | "
            f"{max(r['load_1m'] for r in g + p):.2f} |")
    lines += ["", "Evaluation forward throughput, LeNet-5 (images/s; gatekit: the engine's batched "
              "forward inside the runs above, every model and gate view; peer: torch.no_grad() "
              "forward of the gated LeNet-5 on batches of 2000, bench/peer_forward.py):", "",
              "| threads | gatekit images/s | peer images/s | gatekit/peer | load (max) |",
              "|---:|---:|---:|---:|---:|"]
    for threads in sorted({r["threads"] for r in rows}):
        g = [r for r in rows if r["tool"] == "gatekit" and r["threads"] == threads]
        f = [r for r in forward if r["threads"] == threads]
        gi, pi = med(g, "forward_images_per_second"), med(f, "images_per_second")
        lines.append(f"| {threads} | {gi:.0f} | {pi:.0f} | **{gi / pi:.2f}x** | "
                     f"{max(r['load_1m'] for r in g + f):.2f} |")
    text = "\n".join(lines) + "\n"
    (out_dir / f"whole-run-{args.tag}.md").write_text(text)
    return text


def ensure_peer(venv, install):
    python = venv / "bin" / "python"
    if python.exists():
        return python
    if not install:
        sys.exit(f"no peer venv at {venv}: rerun with --install-peer (pip install torch==2.15.0, ~3 GB) "
                 "or set PEER_VENV")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.15.0", "numpy"], check=True)
    return python


def med(rows, key):
    vals = [r[key] for r in rows if r[key] is not None]
    return statistics.median(vals) if vals else None


def svg_chart(summary, path):
    """Bar chart of training-loop steps/s, gatekit against the peer, one panel per workload
    (log scale: W1 and W2 differ by two orders of magnitude), the ratio above each pair."""
    import math
    workloads = sorted({s["workload"] for s in summary})
    panel_w, panel_h, top, left = 520, 300, 40, 70
    width, height = left + panel_w * len(workloads) + 20, top + panel_h + 70
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">'
           f'training-loop steps/s, gatekit (blue) vs PyTorch peer (orange), medians</text>']
    for pi, wl in enumerate(workloads):
        rows = [s for s in summary if s["workload"] == wl]
        vals = [v for s in rows for v in (s["gatekit_sps"], s["peer_sps"])]
        lo = 10 ** math.floor(math.log10(min(vals)))
        hi = 10 ** math.ceil(math.log10(max(vals)))
        x0 = left + pi * panel_w
        y = lambda v: top + panel_h - panel_h * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
        out.append(f'<text x="{x0 + panel_w / 2}" y="{top - 6}" text-anchor="middle" font-size="13">{wl}</text>')
        d = lo
        while d <= hi:
            out.append(f'<line x1="{x0}" x2="{x0 + panel_w - 20}" y1="{y(d):.1f}" y2="{y(d):.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{x0 - 4}" y="{y(d) + 4:.1f}" text-anchor="end">{d:g}</text>')
            d *= 10
        slot = (panel_w - 20) / len(rows)
        for i, s in enumerate(rows):
            bx = x0 + i * slot + slot * 0.15
            bw = slot * 0.35
            for j, (key, colour) in enumerate([("gatekit_sps", "#1f77b4"), ("peer_sps", "#ff7f0e")]):
                yy = y(s[key])
                out.append(f'<rect x="{bx + j * bw:.1f}" y="{yy:.1f}" width="{bw:.1f}" '
                           f'height="{top + panel_h - yy:.1f}" fill="{colour}"/>')
            out.append(f'<text x="{bx + bw:.1f}" y="{y(s["gatekit_sps"]) - 4:.1f}" text-anchor="middle">'
                       f'{s["ratio"]:.2f}x</text>')
            out.append(f'<text x="{bx + bw:.1f}" y="{top + panel_h + 14}" text-anchor="middle">{s["method"]}</text>')
            out.append(f'<text x="{bx + bw:.1f}" y="{top + panel_h + 28}" text-anchor="middle">'
                       f'{s["threads"]} thr</text>')
    out.append("</svg>")
    Path(path).write_text("\n".join(out) + "\n")


def summarize(rows):
    """Medians per (workload, method, threads) and the ratios."""
    keys = []
    for r in rows:
        k = (r["workload"], r["method"], r["threads"])
        if k not in keys:
            keys.append(k)
    summary = []
    for workload, method, threads in keys:
        g = [r for r in rows if (r["tool"], r["workload"], r["method"], r["threads"]) ==
             ("gatekit", workload, method, threads)]
        p = [r for r in rows if (r["tool"], r["workload"], r["method"], r["threads"]) ==
             ("peer", workload, method, threads)]
        s = {"workload": workload, "method": method, "threads": threads,
             "gatekit_sps": med(g, "steps_per_second"), "peer_sps": med(p, "steps_per_second"),
             "gatekit_wall": med(g, "wall_seconds"), "peer_wall": med(p, "wall_seconds"),
             "gatekit_rss": med(g, "peak_rss_mb"), "peer_rss": med(p, "peak_rss_mb"),
             "first_step": med(g, "first_step_seconds"),
             "gatekit_metric": med(g, "metric"), "peer_metric": med(p, "metric"),
             "max_load": max(r["load_1m"] for r in g + p)}
        s["ratio"] = s["gatekit_sps"] / s["peer_sps"]
        s["rss_ratio"] = s["gatekit_rss"] / s["peer_rss"]
        summary.append(s)
    return summary


def report(rows, tag, idle_load, reps, out_dir):
    summary = summarize(rows)
    lines = [f"# gatekit vs PyTorch peer ({tag})", "",
             f"Machine: {os.cpu_count()} cores; reps {reps}, alternating gatekit/peer; "
             f"medians. Load: 1-minute load average before each run (target < {idle_load}).", "",
             "| workload | method | threads | gatekit steps/s | peer steps/s | ratio | gatekit wall s | peer wall s "
             "| gatekit RSS MB | peer RSS MB | RSS ratio | first step s | gatekit metric | peer metric | load (max) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summary:
        first = f"{s['first_step']:.2f}" if s["first_step"] is not None else "-"
        lines.append(
            f"| {s['workload']} | {s['method']} | {s['threads']} | {s['gatekit_sps']:.1f} | {s['peer_sps']:.1f} | "
            f"**{s['ratio']:.2f}x** | {s['gatekit_wall']:.2f} | {s['peer_wall']:.2f} | "
            f"{s['gatekit_rss']:.1f} | {s['peer_rss']:.1f} | {s['rss_ratio']:.2f} | "
            f"{first} | {s['gatekit_metric']:.4f} | {s['peer_metric']:.4f} | {s['max_load']:.2f} |")
    lines += ["", "Gated vs shared time per step inside gatekit (shared steps/s / gated steps/s):", ""]
    for workload in sorted({s["workload"] for s in summary}):
        for threads in sorted({s["threads"] for s in summary}):
            by = {s["method"]: s for s in summary if s["workload"] == workload and s["threads"] == threads}
            if "gated" in by and "shared" in by:
                lines.append(f"- {workload}, {threads} thread(s): gated costs "
                             f"{by['shared']['gatekit_sps'] / by['gated']['gatekit_sps']:.2f}x the time per "
                             f"step of shared (peer: {by['shared']['peer_sps'] / by['gated']['peer_sps']:.2f}x)")
    lines += ["", f"![steps/s](compare-{tag}.svg)"]
    text = "\n".join(lines) + "\n"
    (out_dir / f"compare-{tag}.md").write_text(text)
    svg_chart(summary, out_dir / f"compare-{tag}.svg")
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workloads", default="w1,w2")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--idle-load", type=float, default=1.0)
    ap.add_argument("--max-wait", type=float, default=60.0)
    ap.add_argument("--install-peer", action="store_true")
    ap.add_argument("--gtk", metavar="BINARY",
                    help="time this gtk binary (e.g. a build of an earlier commit) instead of "
                         "building the checkout's release binary")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--tag", default=time.strftime("%Y%m%d-%H%M"))
    ap.add_argument("--whole-run", action="store_true",
                    help="W2 whole runs with the paper's evaluation cadence on both sides (issue 15)")
    ap.add_argument("--report-only", metavar="JSONL",
                    help="rebuild the markdown and SVG from a raw results file, without running")
    args = ap.parse_args()
    if args.report_only:
        rows = [json.loads(l) for l in open(args.report_only)]
        tag = Path(args.report_only).stem.removeprefix("compare-")
        reps = max(r["rep"] for r in rows) + 1
        print(report(rows, tag, args.idle_load, reps, Path(args.report_only).parent))
        return

    data = os.environ.get("GATEKIT_DATA")
    if not data or not (Path(data) / "mnist").is_dir():
        sys.exit("set GATEKIT_DATA to the folder holding mnist/ (e.g. ../shared/data)")
    venv = Path(os.environ.get("PEER_VENV", Path.home() / ".cache" / "gatekit" / "peer-venv"))
    python = ensure_peer(venv, args.install_peer)
    mnist = peer_data(data, Path.home() / ".cache" / "gatekit" / "peer-mnist")
    if args.gtk:
        source = Path(args.gtk)
    else:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "gtk"], cwd=ROOT,
                       check=True)
        target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        source = target / "release" / "gtk"
    work = Path(tempfile.mkdtemp(prefix="gatekit-bench-"))
    # A private copy: a shared CARGO_TARGET_DIR may get another checkout's build meanwhile.
    gtk = work / "gtk"
    shutil.copy2(source, gtk)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.whole_run:
        whole_run(args, gtk, python, mnist, data, work, out_dir)
        shutil.rmtree(work, ignore_errors=True)
        return
    raw_path = out_dir / f"compare-{args.tag}.jsonl"
    rows = []
    with open(raw_path, "w") as raw:
        for workload in args.workloads.split(","):
            for method in args.methods.split(","):
                for threads in [int(t) for t in args.threads.split(",")]:
                    for rep in range(args.reps):
                        for tool in ["gatekit", "peer"]:
                            load = wait_idle(args.idle_load, args.max_wait)
                            if tool == "gatekit":
                                r = run_gatekit(gtk, workload, method, threads, work, data)
                            else:
                                r = run_peer(python, workload, method, threads, mnist)
                            r.update(tool=tool, workload=workload, method=method,
                                     threads=threads, rep=rep, load_1m=round(load, 2))
                            rows.append(r)
                            raw.write(json.dumps(r) + "\n")
                            raw.flush()
                            print(f"{workload} {method:8} t{threads} {tool:7} rep{rep}: "
                                  f"{r['steps_per_second']:9.1f} steps/s  wall {r['wall_seconds']:6.2f} s  "
                                  f"rss {r['peak_rss_mb']:7.1f} MB  metric {r['metric']:.4f}  load {load:.2f}",
                                  flush=True)
    shutil.rmtree(work, ignore_errors=True)

    text = report(rows, args.tag, args.idle_load, args.reps, out_dir)
    print()
    print(text)
    print(f"written: {out_dir / f'compare-{args.tag}.md'}, .svg and {raw_path}")


if __name__ == "__main__":
    main()
