#!/usr/bin/env bash
# Issue 27 item 4: supermasks that infer the task, in SupSup's GNu setting (Wortsman et al.
# 2020; ../shared/ANCHORS.md). For each task count N (default: 10 50) and seed, trains
# bench/continual/supermask-permuted-N.toml with the gated strategy only (binary straight-through masks
# on a never-trained signed-constant W, LeNet 300-100 with 500 outputs, RMSProp 1e-4, 1000
# batches of 128 per task), then withholds the task id at test time: `gtk eval --infer-task`
# with the entropy and the logsumexp (`supsup_g`) objectives, one-shot and halving, one
# inference per test batch of 128, a wrong inference scoring 0. Bits per weight per task come
# from the 1-bit masks `gtk export --binarize` writes (masks.safetensors).
# Writes to $OUT (default bench/results/supermask-<UTC date>/): train-N-seedK.json (the run's
# continual.json), config-N-seedK.toml (the run's resolved config: network, inputs, recipe),
# infer-N-seedK-OBJECTIVE-VARIANT.json, masks.tsv (bytes of masks.safetensors), times.tsv, and
# README.md's table (bench/continual/supermask_table.py).
#
#   GATEKIT_DATA=../shared/data bench/continual/supermask.sh [N...]
# $SEEDS (space-separated, default 0) picks the seeds; $GTK names a prebuilt binary; $RUNS names
# a folder of runs trained before (RUNS/smN-SEED, e.g. by `gtk train ... --name smN-SEED`),
# which are then only evaluated; $INFER_LIMIT (default 0: all) the test images per task; $NET
# another network of models/ (e.g. fc-1024-1024-500, SupSup's FC 1024-1024) in place of the
# task files' LeNet 300-100.
set -euo pipefail
cd "$(dirname "$0")/../.."
counts=("$@")
[ ${#counts[@]} -eq 0 ] && counts=(10 50)
read -r -a seeds <<<"${SEEDS:-0}"
out=${OUT:-bench/results/supermask-$(date -u +%Y-%m-%d)}
mkdir -p "$out"
if [ -z "${GTK:-}" ]; then
  cargo build --release -q
fi
gtk=${GTK:-target/release/gtk}
net=()
[ -n "${NET:-}" ] && net=(--set "model=$(pwd)/models/$NET.toml")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -f "$out/times.tsv" ] || printf 'what\ttasks\tseed\twall_s\tload\n' >"$out/times.tsv"
timed() { # WHAT N SEED COMMAND...: runs COMMAND and appends its wall time to times.tsv
  local what=$1 n=$2 seed=$3 load start end
  shift 3
  load=$(cut -d' ' -f1 /proc/loadavg)
  start=$(date +%s.%N)
  "$@"
  end=$(date +%s.%N)
  printf '%s\t%s\t%s\t%.1f\t%s\n' "$what" "$n" "$seed" "$(echo "$end - $start" | bc)" "$load" >>"$out/times.tsv"
}
for n in "${counts[@]}"; do
  for seed in "${seeds[@]}"; do
    run=$work/sm$n-$seed
    if [ -n "${RUNS:-}" ] && [ -d "$RUNS/sm$n-$seed" ]; then
      run=$RUNS/sm$n-$seed # trained before (its time is not in times.tsv)
    else
      timed train "$n" "$seed" "$gtk" train --task-set "bench/continual/supermask-permuted-$n.toml" \
        --strategy gated --seed "$seed" "${net[@]}" --runs-dir "$work" --name "sm$n-$seed" \
        --quiet >/dev/null
    fi
    cp "$run/continual.json" "$out/train-$n-seed$seed.json"
    cp "$run/config.toml" "$out/config-$n-seed$seed.toml"
    for objective in entropy logsumexp; do
      for variant in one-shot halving; do
        timed "infer-$objective-$variant" "$n" "$seed" "$gtk" eval "$run" --infer-task "$objective" \
          --infer-variant "$variant" --infer-limit "${INFER_LIMIT:-0}" --json >"$work/infer.json"
        mv "$work/infer.json" "$out/infer-$n-seed$seed-$objective-$variant.json"
      done
    done
    timed export "$n" "$seed" "$gtk" export "$run" --binarize --out "$work/export-$n-$seed" --quiet >/dev/null
    [ -f "$out/masks.tsv" ] || printf 'tasks\tseed\tmasks_bytes\n' >"$out/masks.tsv"
    printf '%s\t%s\t%s\n' "$n" "$seed" "$(stat -c %s "$work/export-$n-$seed/masks.safetensors")" >>"$out/masks.tsv"
    rm -rf "$work/sm$n-$seed" "$work/export-$n-$seed"
  done
done
python3 bench/continual/supermask_table.py "$out" >"$out/README.md.tmp"
mv "$out/README.md.tmp" "$out/README.md"
cat "$out/README.md"
