#!/usr/bin/env bash
# Issue 17: every experiment of the book's "Reproducing the paper" over 5 seeds, as sweeps
# (`gtk train --seeds 0..5 --jobs J`), plus the paper's Figure 5 (no mask regulariser vs
# exp(−|m|) vs exp(−m²) on the sinusoid set). Each sweep's summary.json is copied to
# bench/paper/results/NAME.json (checked in) and book/tools/fragments.py turns those into the
# Markdown fragments the paper chapter includes (book/src/results/NAME.md).
#
# Usage: bench/paper/run.sh [--jobs J] [--work DIR] [NAME ...]
#   NAME: linear linear-noise sinusoid sinusoid-reg-abs sinusoid-reg-sq colors red-white
#         mnist-twice mnist-rgb permuted (default: all; the MNIST ones need $GATEKIT_DATA)
#   --jobs J: seeds trained at once (default: the cores; each seed runs on one thread)
#   --work DIR: where the sweeps go (default runs/paper-bench, git-ignored); a sweep already
#         there is resumed (finished seeds kept), so the script can be stopped and rerun.
# The binary is $GTK, else target/release/gtk (built if missing). Prints each sweep's wall time
# and the total; the load average before and after goes with it.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
jobs="$(nproc)"
work="$root/runs/paper-bench"
names=()
while [ $# -gt 0 ]; do
  case "$1" in
    --jobs) jobs="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) names+=("$1"); shift ;;
  esac
done
[ ${#names[@]} -gt 0 ] || names=(linear linear-noise sinusoid sinusoid-reg-abs sinusoid-reg-sq colors red-white mnist-twice mnist-rgb permuted)
gtk="${GTK:-${CARGO_TARGET_DIR:-$root/target}/release/gtk}"
[ -x "$gtk" ] || (cd "$root" && cargo build --release --bin gtk)
mkdir -p "$work"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; --jobs $jobs"
began=$SECONDS
for name in "${names[@]}"; do
  t0=$SECONDS
  if [ -f "$work/$name/sweep.json" ]; then
    "$gtk" train --resume "$work/$name" --jobs "$jobs" --quiet > "$work/$name.log"
  else
    "$gtk" train --task-set "$root/tasks/$name.toml" --strategy all --seeds 0..5 --jobs "$jobs" \
      --runs-dir "$work" --name "$name" --quiet > "$work/$name.log"
  fi
  cp "$work/$name/summary.json" "$root/bench/paper/results/$name.json"
  echo "$name: $((SECONDS - t0)) s"
done
python3 "$root/book/tools/fragments.py" write
echo "total: $((SECONDS - began)) s; load after: $(cut -d' ' -f1-3 /proc/loadavg)"
