#!/usr/bin/env bash
# Issue 27 item 4, "explain the collapse": the chapter's sequential permuted-MNIST runs (soft
# sigmoid masks; W trained, frozen after the first task, or never trained), gated strategy only,
# then gtk adapt's pick (the same `pick` function) on each run's test batches of 32 with the
# task id withheld: one-shot and halving, on the trained (soft) gates and on the binarized gates
# 1[M > 0], on the first $INFER_LIMIT (default 640: 20 batches, as the chapter's 20 trials)
# test images of each task, with every mask's density and output gain (mean logit norm and max-softmax on its
# own and on the other tasks' data, 256 test images each).
# Writes $OUT (default bench/results/supermask-<UTC date>/collapse/): SET-seedK-GATES-VARIANT.json
# and the table README.md (bench/continual/collapse_table.py).
#
#   GATEKIT_DATA=../shared/data bench/continual/collapse.sh [SEEDS...]   # default: 0 1 2
# $GTK names a prebuilt binary; $RUNS a folder of runs trained before (RUNS/SET-SEED).
set -euo pipefail
cd "$(dirname "$0")/../.."
seeds=("$@")
[ ${#seeds[@]} -eq 0 ] && seeds=(0 1 2)
out=${OUT:-bench/results/supermask-$(date -u +%Y-%m-%d)/collapse}
mkdir -p "$out"
if [ -z "${GTK:-}" ]; then
  cargo build --release -q
fi
gtk=${GTK:-target/release/gtk}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for set in continual-permuted-mlp continual-permuted-mlp-freeze-after-first continual-permuted-mlp-supermask; do
  for seed in "${seeds[@]}"; do
    run=$work/$set-$seed
    if [ -n "${RUNS:-}" ] && [ -d "$RUNS/$set-$seed" ]; then
      run=$RUNS/$set-$seed
    else
      "$gtk" train --task-set "tasks/$set.toml" --strategy gated --seed "$seed" \
        --runs-dir "$work" --name "$set-$seed" --quiet >/dev/null
    fi
    for gates in soft binary; do
      flag=()
      [ "$gates" = binary ] && flag=(--infer-binary)
      for variant in one-shot halving; do
        "$gtk" eval "$run" --infer-task entropy --infer-variant "$variant" "${flag[@]}" \
          --infer-batch 32 --infer-limit "${INFER_LIMIT:-640}" --profile-masks 256 --json >"$work/r.json"
        mv "$work/r.json" "$out/$set-seed$seed-$gates-$variant.json"
      done
    done
  done
done
python3 bench/continual/collapse_table.py "$out" >"$out/README.md.tmp"
mv "$out/README.md.tmp" "$out/README.md"
cat "$out/README.md"
