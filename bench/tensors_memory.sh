#!/usr/bin/env bash
# Memory of a `tensors` task over a 1 GB .npy (the bring-your-own-data issue's claim): the
# inputs are memory-mapped, so peak RSS stays far below the file's size, and training starts
# without reading the file into memory.
#   - train: x.npy float32 [1_000_000, 256] = 1.02 GB, y.npy float32 [1_000_000, 1];
#     test: a separate 10 000-row folder; model 256-64-1; 2000 steps of batch 64, gated.
#   - once without and once with `standardize` (a full pass over the file for the statistics).
# Reports peak RSS (GNU time) and `first_step_seconds` from the run's timing.json (process
# start to the first training step: parsing, mapping, the NaN/inf pass, statistics).
# Usage: bench/tensors_memory.sh [path/to/gtk]   (needs numpy and GNU time)
set -euo pipefail
cd "$(dirname "$0")/.."
gtk=${1:-${CARGO_TARGET_DIR:-target}/debug/gtk}
[ -x "$gtk" ] || cargo build --bin gtk
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
work=$(mktemp -d "${BENCH_TMP:-/var/tmp}/gatekit-tensors-XXXXXX")
trap 'rm -rf "$work"' EXIT

python3 - "$work" <<'PY'
import sys, pathlib
import numpy as np
work = pathlib.Path(sys.argv[1])
rng = np.random.default_rng(0)
w = rng.normal(size=256).astype(np.float32)
for name, rows in (("train", 1_000_000), ("test", 10_000)):
    d = work / name
    d.mkdir()
    x = np.lib.format.open_memmap(d / "x.npy", mode="w+", dtype=np.float32, shape=(rows, 256))
    y = np.lib.format.open_memmap(d / "y.npy", mode="w+", dtype=np.float32, shape=(rows, 1))
    for s in range(0, rows, 50_000):
        e = min(rows, s + 50_000)
        block = rng.normal(size=(e - s, 256)).astype(np.float32)
        x[s:e] = block
        y[s:e, 0] = np.tanh(block @ w / 16)
    x.flush(); y.flush()
    del x, y
PY
size=$(stat -c %s "$work/train/x.npy")

write_set() { # standardize -> task set
  cat > "$work/set-$1.toml" <<TOML
[run]
steps = 2000
batch_size = 64
optimizer = "adam"
lr = 0.001
eval_every = 2000
eval_at_start = false
[model]
name = "m"
input = [256]
[[model.layer]]
type = "linear"
out = 64
[[model.layer]]
type = "relu"
[[model.layer]]
type = "linear"
out = 1
[[task]]
name = "big"
kind = "tensors"
train = "train"
test = "test"
standardize = $1
TOML
}

echo "gtk: $gtk"
echo "x.npy: $size bytes; load average (1 min): $(cut -d' ' -f1 /proc/loadavg)"
for std in false true; do
  write_set "$std"
  /usr/bin/time -v "$gtk" train --task-set "$work/set-$std.toml" --runs-dir "$work/runs" --name "s-$std" --quiet \
    > "$work/out.txt" 2> "$work/time.txt" || { cat "$work/out.txt" "$work/time.txt" >&2; exit 1; }
  peak=$(awk '/Maximum resident set size/ {printf "%.1f", $6 / 1024}' "$work/time.txt")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time.txt")
  first=$(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['first_step_seconds'], 3))" "$work/runs/s-$std/timing.json")
  echo "standardize = $std: peak RSS $peak MB for a $((size / 1000000)) MB file; first step $first s after start; 2000 steps in $wall (wall)"
done
