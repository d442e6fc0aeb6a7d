#!/usr/bin/env bash
# Peak resident memory of colored-MNIST training (the MNIST issue's memory claims):
#   1. tasks/colors.toml, all three strategies, 500 steps: peak RSS (target: < 300 MB);
#   2. 1 vs 10 coloured tasks (gated): the dataset is shared, so 10 tasks should cost < +10 %.
# Usage: GATEKIT_DATA=../shared/data bench/memory.sh [path/to/gtk]
# Measures with GNU time (`apt-get install time`), the kernel's own accounting of the process.
set -euo pipefail
cd "$(dirname "$0")/.."
gtk=${1:-target/release/gtk}
[ -x "$gtk" ] || cargo build --release
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
: "${GATEKIT_DATA:?set GATEKIT_DATA to the folder holding mnist/}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

peak_mb() { # command... -> peak RSS in MB
  /usr/bin/time -v "$@" > "$work/out.txt" 2> "$work/time.txt" || { cat "$work/out.txt" "$work/time.txt" >&2; exit 1; }
  awk '/Maximum resident set size/ {printf "%.1f", $6 / 1024}' "$work/time.txt"
}

colours=("0.0, 0.0, 0.0" "1.0, 0.0, 0.0" "0.0, 1.0, 0.0" "0.0, 0.0, 1.0" "1.0, 1.0, 0.0"
         "0.0, 1.0, 1.0" "1.0, 0.0, 1.0" "0.5, 0.5, 0.5" "1.0, 0.5, 0.0" "0.5, 0.0, 1.0")
write_set() { # n -> task set with n coloured tasks
  {
    printf '[run]\nmodel = "%s/models/lenet5.toml"\nsteps = 300\noptimizer = "momentum"\nlr = 0.01\neval_every = 300\n' "$PWD"
    printf '[defaults]\nkind = "mnist"\n'
    for ((i = 0; i < $1; i++)); do printf '[[task]]\nname = "c%d"\nbackground = [%s]\n' "$i" "${colours[$i]}"; done
  } > "$work/set-$1.toml"
}

echo "gtk: $gtk"
echo "load average (1 min): $(cut -d' ' -f1 /proc/loadavg)"
colors=$(peak_mb "$gtk" train --task-set tasks/colors.toml --strategy all --runs-dir "$work/runs" --name colors --quiet)
echo "colors.toml, --strategy all, 500 steps: peak RSS ${colors} MB"
write_set 1
write_set 10
one=$(peak_mb "$gtk" train --task-set "$work/set-1.toml" --runs-dir "$work/runs" --name one --quiet)
ten=$(peak_mb "$gtk" train --task-set "$work/set-10.toml" --runs-dir "$work/runs" --name ten --quiet)
echo "gated, 1 coloured task: peak RSS ${one} MB"
echo "gated, 10 coloured tasks: peak RSS ${ten} MB ($(awk -v a="$one" -v b="$ten" 'BEGIN {printf "%+.1f %%", 100 * (b - a) / a}'))"
