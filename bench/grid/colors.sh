#!/usr/bin/env bash
# Issue 30's must-show: a grid sweep on colored MNIST (tasks/colors.toml, gated strategy,
# 500 steps as the task set has them) over mask learning rate × mask initialisation (2 × 2)
# and 3 seeds, with MNIST's 55,000/5,000 validation split (val_fraction = 0.0833333), so the
# configuration is selected on validation accuracy and only its test accuracy is reported.
# Writes summary.json/summary.md (from `gtk train --seeds … --set …`), the report's figures
# (one per swept key, from `gtk report SWEEP`) and report.md, and the wall time and load.
#
# Usage: bench/grid/colors.sh [SEEDS] [OUT]   (default 0..3, bench/results/grid-colors-<date>)
# Needs MNIST under $GATEKIT_DATA (or ../shared/data) and a release build (target/release/gtk).
# Runs the members one at a time at low priority ($JOBS, default 1; $NICE, default 10).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
seeds="${1:-0..3}"
out="${2:-$root/bench/results/grid-colors-$(date +%Y%m%d)}"
gtk="${GTK:-$root/target/release/gtk}"
data="${GATEKIT_DATA:-$root/../shared/data}"
[ -x "$gtk" ] || (cd "$root" && cargo build --release --quiet --bin gtk)
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The task set with its model path made absolute and the validation split in its [run] table
# (so the members are named by the two swept keys only).
sed -e "s#^model = .*#model = \"$root/models/lenet5.toml\"#" \
  -e 's#^seed = 0$#seed = 0\nval_fraction = 0.0833333#' \
  "$root/tasks/colors.toml" >"$work/colors.toml"
grep -q '^val_fraction = 0.0833333$' "$work/colors.toml"
load=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date +%s.%N)
nice -n "${NICE:-10}" "$gtk" train --task-set "$work/colors.toml" --strategy gated \
  --seeds "$seeds" --set mask_lr=0.01,0.1 --set 'mask_init=[0.0,1.0],[2.0,1.0]' \
  --jobs "${JOBS:-1}" --data-dir "$data" --runs-dir "$work/runs" --name grid-colors --quiet \
  >"$work/train.log"
end=$(date +%s.%N)
"$gtk" report "$work/runs/grid-colors" --out "$work/report" --quiet >/dev/null
cp "$work/runs/grid-colors/summary.json" "$work/runs/grid-colors/summary.md" "$out/"
cp "$work/report"/*.png "$work/report"/*.svg "$work/report/report.md" "$out/"
{
  echo "members: 4 configurations x seeds $seeds, one at a time (--jobs ${JOBS:-1}, nice ${NICE:-10})"
  printf 'wall: %.0f s\n' "$(echo "$end - $start" | bc)"
  echo "load average before (1, 5, 15 min): $load"
  echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
} | tee "$out/timing.txt"
echo "wrote $out"
