"""Helpers of bench/serve/run.sh (numpy, onnx, onnxruntime; no plotting library: the SVG is
written by hand).

  bench.py synth BASE OUT T        an export folder with T synthetic tasks on BASE's W
  bench.py npy SHAPE BATCH OUT     a float32 .npy request body, uniform in [0, 1)
  bench.py ort-memory ONNX N...    RSS of one process holding N onnxruntime sessions of ONNX
  bench.py plot CSV SVG            the memory curve (gtk serve vs onnxruntime sessions)
  bench.py table DIR               the book's Markdown table from DIR/*.csv
"""
import csv
import json
import math
import os
import pathlib
import shutil
import sys

import numpy as np


def rss_bytes(pid="self"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def synth(base, out, count):
    """T tasks whose masks are random bits at the density of BASE's first task, per parameter
    (what a real task costs: the server holds packed bits whatever they are). The task set in
    the ONNX metadata is BASE's with the first task's entry repeated under the new names; the
    only ONNX file is BASE's first task's graph, kept for that metadata (gtk serve reads the
    task set from it)."""
    import onnx
    from safetensors import safe_open
    from safetensors.numpy import save_file

    base, out = pathlib.Path(base), pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=False)
    shutil.copy(base / "weights.safetensors", out / "weights.safetensors")
    with safe_open(str(base / "masks.safetensors"), "np") as f:
        meta = json.loads(f.metadata()["gatekit"])
        first = meta["tasks"][0]
        masks = {p: f.get_tensor(f"{p}.mask.{first}") for p in meta["shapes"]}
    names = [f"s{i:04d}" for i in range(count)]
    rng = np.random.default_rng(0)
    tensors = {}
    for p, shape in meta["shapes"].items():
        n = int(np.prod(shape))
        density = np.unpackbits(masks[p])[:n].mean()
        for t in names:
            tensors[f"{p}.mask.{t}"] = np.packbits(rng.random(n) < density)
    meta["tasks"] = names
    save_file(tensors, str(out / "masks.safetensors"), metadata={"gatekit": json.dumps(meta)})
    model = onnx.load(str(base / f"{first}.onnx"))
    props = {p.key: p for p in model.metadata_props}
    text = props["gatekit.task_set"].value
    start = text.index("[[task]]")
    end = text.find("[[task]]", start + 1)
    block = text[start : end if end > 0 else len(text)]
    entry = [l for l in block.splitlines() if not l.startswith("name =")]
    tasks = "".join("\n".join([entry[0], f'name = "{t}"'] + entry[1:]) + "\n" for t in names)
    props["gatekit.task_set"].value = text[:start] + tasks
    props["gatekit.task"].value = names[0]
    onnx.save(model, str(out / f"{names[0]}.onnx"))


def npy(shape, batch, out):
    shape = [int(s) for s in shape.split(",")]
    x = np.random.default_rng(1).random([int(batch)] + shape, dtype=np.float32)
    np.save(out, x)


def ort_memory(onnx_path, counts, limit_mb):
    """One process, sessions added until each count in turn; stops once RSS passes limit_mb."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    x = None
    sessions = []
    for n in sorted(counts):
        while len(sessions) < n:
            s = ort.InferenceSession(onnx_path, sess_options=opts, providers=["CPUExecutionProvider"])
            if x is None:
                shape = [1] + [d if isinstance(d, int) else 1 for d in s.get_inputs()[0].shape[1:]]
                x = np.zeros(shape, dtype=np.float32)
            s.run(["output"], {"input": x})  # a session answers once, as a server's would
            sessions.append(s)
        rss = rss_bytes()
        print(f"{n},onnxruntime,idle,{rss}", flush=True)  # a row of memory.csv
        if rss > limit_mb * 2**20:
            break


def plot(csv_path, svg_path):
    rows = list(csv.DictReader(open(csv_path)))
    series = {}
    for r in rows:
        if r["state"] != "idle" and r["server"] != "onnxruntime":
            continue
        series.setdefault(r["server"], []).append((int(r["tasks"]), int(r["rss_bytes"]) / 2**20))
    xs = [x for s in series.values() for x, _ in s]
    ys = [y for s in series.values() for _, y in s]
    w, h, left, bottom, top, right = 640, 400, 70, 50, 30, 150
    lx = lambda v: math.log10(v)
    x0, x1 = lx(min(xs)), lx(max(xs))
    y0, y1 = math.log10(min(ys) / 1.5), math.log10(max(ys) * 1.5)
    px = lambda v: left + (lx(v) - x0) / (x1 - x0) * (w - left - right)
    py = lambda v: h - bottom - (math.log10(v) - y0) / (y1 - y0) * (h - top - bottom)
    colors = {"gtk serve": "#1f77b4", "onnxruntime": "#d62728", "bound": "#7f7f7f"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{left}" y="18" font-size="14">Resident memory vs tasks loaded (LeNet-5, log-log)</text>']
    for e in range(math.ceil(y0), math.floor(y1) + 1):
        for m in (1, 2, 5):
            v = m * 10**e
            if 10**y0 <= v <= 10**y1:
                out.append(f'<line x1="{left}" x2="{w - right}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="#ddd"/>')
                out.append(f'<text x="{left - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    for v in sorted(set(xs)):
        out.append(f'<text x="{px(v):.1f}" y="{h - bottom + 18}" text-anchor="middle">{v}</text>')
    out.append(f'<text x="{(left + w - right) / 2}" y="{h - 10}" text-anchor="middle">tasks loaded</text>')
    out.append(f'<text x="16" y="{(top + h - bottom) / 2}" transform="rotate(-90 16 {(top + h - bottom) / 2})" text-anchor="middle">RSS, MiB</text>')
    for i, (name, pts) in enumerate(sorted(series.items())):
        pts.sort()
        c = colors.get(name, "#2ca02c")
        dash = ' stroke-dasharray="5,4"' if name == "bound" else ""
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="2"{dash} points="' + " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts) + '"/>')
        for x, y in pts:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{c}"/>')
        out.append(f'<line x1="{w - right + 10}" x2="{w - right + 30}" y1="{top + 20 * i}" y2="{top + 20 * i}" stroke="{c}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{w - right + 35}" y="{top + 20 * i + 4}">{name}</text>')
    out.append("</svg>")
    pathlib.Path(svg_path).write_text("\n".join(out) + "\n")


def table(folder):
    folder = pathlib.Path(folder)
    load = list(csv.DictReader(open(folder / "load.csv")))
    print("| model | batch | mix | server | req/s | examples/s | p50 ms | p99 ms | errors |")
    print("| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in load:
        print(f"| {r['model']} | {r['batch']} | {r['mix']} | {r['server']} | {float(r['rps']):.0f} | "
              f"{float(r['rps']) * int(r['batch']):.0f} | {float(r['p50_ms']):.2f} | {float(r['p99_ms']):.2f} | {r['errors']} |")
    print()
    mem = list(csv.DictReader(open(folder / "memory.csv")))
    print("| tasks | server | state | RSS MiB |")
    print("| ---: | --- | --- | ---: |")
    for r in mem:
        print(f"| {r['tasks']} | {r['server']} | {r['state']} | {int(r['rss_bytes']) / 2**20:.1f} |")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "synth":
        synth(args[0], args[1], int(args[2]))
    elif cmd == "npy":
        npy(args[0], args[1], args[2])
    elif cmd == "ort-memory":
        ort_memory(args[0], [int(a) for a in args[1:]], float(os.environ.get("ORT_LIMIT_MB", "4096")))
    elif cmd == "plot":
        plot(args[0], args[1])
    elif cmd == "table":
        table(args[0])
    else:
        sys.exit(f"unknown command {cmd}")
