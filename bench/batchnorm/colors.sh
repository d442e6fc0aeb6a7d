#!/usr/bin/env bash
# Colored MNIST (tasks/colors.toml, all three strategies) with LeNet-5 and with LeNet-5 plus
# per-task batch norm (models/lenet5-bn.toml), over several seeds: test accuracy mean and 95 %
# interval per strategy, and the training loop's speed, from `gtk train --seeds`.
#
# Usage: bench/batchnorm/colors.sh [SEEDS] [OUT]   (default 0..5, bench/results/batchnorm-<date>)
# Needs MNIST under $GATEKIT_DATA (or ../shared/data) and a release build (target/release/gtk).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
seeds="${1:-0..5}"
out="${2:-$root/bench/results/batchnorm-$(date +%Y%m%d-%H%M)}"
gtk="${GTK:-$root/target/release/gtk}"
data="${GATEKIT_DATA:-$root/../shared/data}"
[ -x "$gtk" ] || (cd "$root" && cargo build --release --quiet --bin gtk)
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for model in lenet5 lenet5-bn; do
  sed "s#^model = .*#model = \"$root/models/$model.toml\"#" "$root/tasks/colors.toml" >"$work/colors-$model.toml"
  "$gtk" train --task-set "$work/colors-$model.toml" --strategy all --seeds "$seeds" \
    --data-dir "$data" --runs-dir "$work/runs" --name "$model" --quiet
  cp "$work/runs/$model/summary.md" "$out/$model-summary.md"
  cp "$work/runs/$model/summary.json" "$out/$model-summary.json"
  # Training-loop speed of each seed's run (evaluations excluded).
  for t in "$work/runs/$model"/seed-*/timing.json; do
    python3 -c "import json,sys; t=json.load(open(sys.argv[1])); print(sys.argv[2], json.dumps({k: t[k] for k in t if 'loop' in k or 'steps' in k}))" "$t" "$model"
  done >"$out/$model-timing.txt"
done
echo "wrote $out"
