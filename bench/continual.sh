#!/usr/bin/env bash
# The "Continual learning" chapter's experiments: every continual task set over seeds 0–2
# (all strategies), then gtk adapt's pick on each permuted run (task identity inferred from an
# unlabelled batch). Writes bench/results/continual/<set>-seed<k>.json (the run's
# continual.json), pick-<set>-seed<k>.json (adapt.json), times.tsv, and the book's fragment book/src/results/continual.md (mean ± 95 %
# interval over seeds).
#
#   GATEKIT_DATA=../shared/data bench/continual.sh [SEEDS...]   # default: 0 1 2
# $SETS (space-separated task-set names) limits the sets; $GTK names a prebuilt binary.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=("$@")
[ ${#seeds[@]} -eq 0 ] && seeds=(0 1 2)
out=bench/results/continual
mkdir -p "$out"
if [ -z "${GTK:-}" ]; then
  cargo build --release -q
fi
gtk=${GTK:-target/release/gtk}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
read -r -a sets <<<"${SETS:-continual-permuted-mlp continual-permuted-mlp-freeze-after-first continual-permuted-mlp-supermask continual-split continual-rotated}"
[ -f "$out/times.tsv" ] || printf 'set\tseed\twall_s\tload\n' >"$out/times.tsv"
for set in "${sets[@]}"; do
  for seed in "${seeds[@]}"; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    start=$(date +%s.%N)
    "$gtk" train --task-set "tasks/$set.toml" --strategy all --seed "$seed" \
      --runs-dir "$work" --name "$set-$seed" --quiet >"$work/$set-$seed.log"
    end=$(date +%s.%N)
    printf '%s\t%s\t%.1f\t%s\n' "$set" "$seed" "$(echo "$end - $start" | bc)" "$load" | tee -a "$out/times.tsv"
    cp "$work/$set-$seed/continual.json" "$out/$set-seed$seed.json"
    case $set in
      continual-permuted-mlp*)
        "$gtk" adapt "$work/$set-$seed" --task-set tasks/adapt-permuted-mlp-identify.toml \
          --out "$work/adapt-$set-$seed" --quiet >/dev/null
        cp "$work/adapt-$set-$seed/adapt.json" "$out/pick-$set-seed$seed.json"
        ;;
    esac
  done
done
python3 book/tools/fragments.py write
cat book/src/results/continual.md
