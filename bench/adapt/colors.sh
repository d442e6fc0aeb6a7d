#!/usr/bin/env bash
# Issue 8, must-shows 1 (colors rate) and 2 (transfer to unseen colours), on a colors run.
# Usage: bench/adapt/colors.sh [WORK_DIR]   (default: runs/adapt-bench, git-ignored; needs $GATEKIT_DATA)
# Trains tasks/colors.toml with all strategies (unless WORK_DIR/runs/colors exists), then:
#   - identification: tasks/adapt-colors-identify.toml, pick one-shot and halving
#   - transfer: tasks/adapt-colors.toml with K = 10, 100, 1000 and --compare
# and prints the tables (bench/adapt/summarize.py).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="${1:-$root/runs/adapt-bench}"
gtk="${GTK:-$root/target/release/gtk}"
mkdir -p "$work" && cd "$work"
[ -d runs/colors ] || "$gtk" train --task-set "$root/tasks/colors.toml" --strategy all --name colors --quiet
for v in one-shot halving; do
  [ -d "runs/colors-identify-$v" ] ||
    "$gtk" adapt runs/colors --task-set "$root/tasks/adapt-colors-identify.toml" \
      --pick-variant "$v" --out "runs/colors-identify-$v" --quiet
done
for k in 10 100 1000; do
  [ -d "runs/colors-new-k$k" ] ||
    "$gtk" adapt runs/colors --task-set "$root/tasks/adapt-colors.toml" --shots "$k" \
      --compare --out "runs/colors-new-k$k" --quiet
done
python3 "$root/bench/adapt/summarize.py" runs/colors-identify-* runs/colors-new-k*
