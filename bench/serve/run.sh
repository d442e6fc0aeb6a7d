#!/usr/bin/env bash
# gtk serve vs onnxruntime (issue 29, item 5): throughput and latency, resident memory, and a
# random-task vs one-task mix, on this machine, server and load generator pinned to one core
# each (taskset), in a few minutes.
#
#   1. trains colors LeNet-5 (4 tasks, 200 steps) and the sinusoid MLP (10 tasks, 300 steps)
#      with the release build, exports both with --binarize;
#   2. per model and batch (1, 32): `gtk serve` on core 0 vs onnxruntime (one Python
#      InferenceSession per task, 1 thread, behind the standard library's HTTP server,
#      bench/serve/ort_server.py) on core 0, driven over HTTP by bench/serve/load.rs (a std-only
#      Rust closed-loop client, 4 keep-alive connections, .npy bodies) on core 1; same route
#      and body for both;
#   3. the mix: LeNet-5 batch 1, gtk serve over 1000 synthetic tasks with --cache-mb 16 (about
#      64 tasks' effective weights) requests to random tasks vs one task; onnxruntime over its
#      4 sessions, random vs one;
#   4. memory: RSS of gtk serve with 4 (real), 100 and 1000 (synthetic masks) tasks, idle and
#      after 3 s of random-task requests, against one process holding 1 … 1000 onnxruntime
#      sessions (stopping past ORT_LIMIT_MB, default 4096), and the bound size(W) + T·params/8.
# Writes bench/results/serve/{load.csv, memory.csv, memory.svg, table.md, env.txt} and the
# plot's copy book/src/images/serve_memory.svg; the table goes into book/src/serving.md by hand.
# Usage: GATEKIT_DATA=../shared/data bench/serve/run.sh   (SECONDS_PER_RUN=5 by default;
# GTK=path/to/gtk skips the release build, e.g. target/debug/gtk, whose dependencies are built
# with opt-level 3 and gatekit with 2 in this repository's dev profile)
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${GATEKIT_DATA:?set GATEKIT_DATA to the folder holding mnist/}"
export GATEKIT_DATA RAYON_NUM_THREADS=1 OMP_NUM_THREADS=1
secs=${SECONDS_PER_RUN:-5}
conns=4
out=bench/results/serve
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

gtk=${GTK:-target/release/gtk}
if [ -z "${GTK:-}" ]; then flock /tmp/gatekit-cargo.lock cargo build --release --bin gtk; fi
rustc -O --edition 2024 bench/serve/load.rs -o "$work/load"
py=bench/serve/bench.py
mkdir -p "$out"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# 1. Two runs, exported binarized.
cat > "$work/colors.toml" <<EOF
[run]
model = "$PWD/models/lenet5.toml"
steps = 200
batch_size = 32
optimizer = "momentum"
lr = 0.01
eval_every = 200
[defaults]
kind = "mnist"
test_limit = 1000
[[task]]
name = "black"
background = [0.0, 0.0, 0.0]
[[task]]
name = "red"
background = [1.0, 0.0, 0.0]
[[task]]
name = "green"
background = [0.0, 1.0, 0.0]
[[task]]
name = "blue"
background = [0.0, 0.0, 1.0]
EOF
"$gtk" train --task-set "$work/colors.toml" --runs-dir "$work/runs" --name colors --quiet
"$gtk" train --steps 300 --runs-dir "$work/runs" --name sinusoid --quiet
"$gtk" export "$work/runs/colors" --binarize --out "$work/lenet5" --quiet > /dev/null
"$gtk" export "$work/runs/sinusoid" --binarize --out "$work/mlp" --quiet > /dev/null
python3 "$py" synth "$work/lenet5" "$work/lenet5-100" 100
python3 "$py" synth "$work/lenet5" "$work/lenet5-1000" 1000
for b in 1 32; do
  python3 "$py" npy 3,32,32 "$b" "$work/lenet5-b$b.npy"
  python3 "$py" npy 8 "$b" "$work/mlp-b$b.npy"
done

# Starts a server on core 0 (log in $work/$1.log); sets $addr and $pid.
start() { # name command...
  local name=$1; shift
  taskset -c 0 "$@" > "$work/$name.log" 2>&1 &
  pid=$!; pids+=("$pid")
  for _ in $(seq 600); do
    addr=$(grep -o 'http://[0-9.:]*' "$work/$name.log" | head -1 || true)
    [ -n "$addr" ] && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$work/$name.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "$name did not start" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; }
rss() { awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$1/status"; }
drive() { # model batch mix server tasks -> a row of load.csv
  local r
  r=$(taskset -c 1 "$work/load" "$addr" "$work/$1-b$2.npy" "$5" --mix "$3" --connections $conns --seconds "$secs" --warmup 1)
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(",".join(sys.argv[2:6] + [str(r[k]) for k in ("requests","errors","rps","mean_ms","p50_ms","p90_ms","p99_ms")] + [sys.argv[6]]))' \
    "$r" "$1" "$2" "$3" "$4" "$conns" >> "$out/load.csv"
  echo "$1 b$2 $3 $4: $r"
}

# 2. Throughput and latency; 3. the mix.
echo "model,batch,mix,server,requests,errors,rps,mean_ms,p50_ms,p90_ms,p99_ms,connections" > "$out/load.csv"
lenet_tasks=black,red,green,blue
mlp_tasks=$(seq -s, -f 't%g' 0 9)
for model in lenet5 mlp; do
  tasks=$lenet_tasks; [ $model = mlp ] && tasks=$mlp_tasks
  start gtk "$gtk" serve "$work/$model" --addr 127.0.0.1:0
  for b in 1 32; do drive $model $b one "gtk serve" "$tasks"; done
  [ $model = lenet5 ] && drive lenet5 1 random "gtk serve" "$tasks"
  stop
  # Without the batching wait (a lone request waits up to --max-wait-ms, 2 by default, for
  # others to share its forward pass).
  start gtk "$gtk" serve "$work/$model" --addr 127.0.0.1:0 --max-wait-ms 0
  drive $model 1 one "gtk serve --max-wait-ms 0" "$tasks"
  stop
  start ort python3 bench/serve/ort_server.py "$work/$model" "$tasks"
  for b in 1 32; do drive $model $b one onnxruntime "$tasks"; done
  [ $model = lenet5 ] && drive lenet5 1 random onnxruntime "$tasks"
  stop
done
synth=$(seq -s, -f 's%04g' 0 999)
start gtk "$gtk" serve "$work/lenet5-1000" --addr 127.0.0.1:0 --cache-mb 16
drive lenet5 1 one "gtk serve 1000 tasks --cache-mb 16" "$synth"
drive lenet5 1 random "gtk serve 1000 tasks --cache-mb 16" "$synth"
stop

# 4. Memory.
echo "tasks,server,state,rss_bytes" > "$out/memory.csv"
for n in 4 100 1000; do
  dir=$work/lenet5; [ $n -gt 4 ] && dir=$work/lenet5-$n
  tasks=$lenet_tasks; [ $n -gt 4 ] && tasks=$(seq -s, -f 's%04g' 0 $((n - 1)))
  start gtk "$gtk" serve "$dir" --addr 127.0.0.1:0
  params=$(python3 -c 'import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1] + "/v1/tasks"))["model"]["parameters"])' "$addr")
  echo "$n,gtk serve,idle,$(rss "$pid")" >> "$out/memory.csv"
  taskset -c 1 "$work/load" "$addr" "$work/lenet5-b1.npy" "$tasks" --mix random --connections $conns --seconds 3 --warmup 0 > /dev/null
  echo "$n,gtk serve,after 3 s random mix (--cache-mb 64),$(rss "$pid")" >> "$out/memory.csv"
  echo "$n,bound,idle,$((4 * params + n * ((params + 7) / 8)))" >> "$out/memory.csv"
  stop
done
python3 "$py" ort-memory "$work/lenet5/black.onnx" 1 4 10 100 1000 >> "$out/memory.csv"
python3 "$py" plot "$out/memory.csv" "$out/memory.svg"
cp "$out/memory.svg" book/src/images/serve_memory.svg   # the book's copy (book/src/serving.md)

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit: $(git rev-parse --short HEAD); gtk: $gtk"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(getconf _NPROCESSORS_ONLN) cores; server pinned to core 0, client to core 1"
  echo "load average before: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared with other sessions' builds and tests)"
  echo "onnxruntime $(python3 -c 'import onnxruntime; print(onnxruntime.__version__)'), numpy $(python3 -c 'import numpy; print(numpy.__version__)')"
  echo "LeNet-5 parameters: $params; runs: colors 4 tasks 200 steps, sinusoid 10 tasks 300 steps"
  echo "load: $conns keep-alive connections, ${secs} s after 1 s warm-up, .npy bodies"
} > "$out/env.txt"
python3 "$py" table "$out" > "$out/table.md"
cat "$out/env.txt" "$out/table.md"
