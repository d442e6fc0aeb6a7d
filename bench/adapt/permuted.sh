#!/usr/bin/env bash
# Issue 8, must-shows 1 and 4 on tasks/permuted.toml (LeNet-5, ten permutations).
# Usage: bench/adapt/permuted.sh [WORK_DIR]   (default: runs/adapt-bench, git-ignored; needs $GATEKIT_DATA)
# Trains tasks/permuted.toml with all strategies (unless WORK_DIR/runs/permuted exists), then:
#   - identification: tasks/adapt-permuted-identify.toml, pick one-shot and halving
#   - a new permutation learned by mask on the whole training split, against a LeNet-5 trained
#     from scratch with the same 1000 steps: tasks/adapt-permuted-new.toml
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="${1:-$root/runs/adapt-bench}"
gtk="${GTK:-$root/target/release/gtk}"
mkdir -p "$work" && cd "$work"
[ -d runs/permuted ] || "$gtk" train --task-set "$root/tasks/permuted.toml" --strategy all --name permuted --quiet
for v in one-shot halving; do
  [ -d "runs/permuted-identify-$v" ] ||
    "$gtk" adapt runs/permuted --task-set "$root/tasks/adapt-permuted-identify.toml" \
      --pick-variant "$v" --out "runs/permuted-identify-$v" --quiet > /dev/null
done
[ -d runs/permuted-new ] ||
  "$gtk" adapt runs/permuted --task-set "$root/tasks/adapt-permuted-new.toml" --out runs/permuted-new --quiet
python3 "$root/bench/adapt/summarize.py" runs/permuted-identify-* runs/permuted-new
