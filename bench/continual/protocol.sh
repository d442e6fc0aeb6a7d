#!/usr/bin/env bash
# Reruns van de Ven & Tolias's continual-learning protocols ("Three scenarios for continual
# learning", arXiv:1904.07734v1) with gatekit, one process per (benchmark, method, seed), and
# regenerates the book's comparison table (book/src/results/continual-protocol.md) from the
# published targets in bench/continual/target_results.csv.
#
#   GATEKIT_DATA=../shared/data bench/continual/protocol.sh [SEEDS...]   # default: 0 1 2 3 4
#
# $BENCHES (space-separated) picks the protocols: split-task (tasks/split-mnist.toml),
# permuted-task (tasks/permuted-mnist-vdv.toml), permuted-domain
# (tasks/permuted-mnist-vdv-domain.toml); default: split-task. $METHODS picks the methods
# (default: every one the scenario allows). $OUT names the results folder (default
# bench/results/continual-protocol-<UTC date>); $STEPS_SCALE < 1 shortens every phase (the
# CI's cut-down run; its table is not a result). $GTK names a prebuilt binary.
#
# Each run's continual.json is copied to $OUT/<bench>-<method>-seed<k>.json and its wall time
# (with the load average at its start: the machine may be shared) appended to $OUT/times.tsv;
# a gated method's run is also exported with --binarize and the export's per-task table kept
# as $OUT/<bench>-<method>-seed<k>.export.txt (the binarized column of the book's table).
# Hyperparameters are the published ones, set in the task files and below; the authors
# grid-searched them on the test sets.
#
# Split MNIST's digit pairs follow the reference code (main.py and data.py at commit 86802a8,
# the paper's v1): seed 0 keeps 0/1, 2/3, …, 8/9; seed s ≥ 1 relabels the digits by
# numpy's `np.random.seed(s); np.random.permutation(10)` and task k takes the two digits
# relabelled 2k and 2k + 1. Their published means are over seeds 1–20, so the split rows use
# seeds 1 and up; each seed's task file (tasks/split-mnist.toml with its pairs) is written
# next to the run.
set -euo pipefail
cd "$(dirname "$0")/../.."
seeds=("$@")
[ ${#seeds[@]} -eq 0 ] && seeds=(0 1 2 3 4)
out=${OUT:-bench/results/continual-protocol-$(date -u +%Y%m%d)}
mkdir -p "$out"
if [ -z "${GTK:-}" ]; then
  cargo build --release -q
fi
gtk=${GTK:-target/release/gtk}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
read -r -a benches <<<"${BENCHES:-split-task}"
[ -f "$out/times.tsv" ] || printf 'bench\tmethod\tseed\twall_s\tload\n' >"$out/times.tsv"

# The task file of a protocol, and the methods its scenario allows (gated and XdG need the
# task id: Task-IL only).
file_of() {
  case $1 in
    split-task) echo tasks/split-mnist.toml ;;
    permuted-task) echo tasks/permuted-mnist-vdv.toml ;;
    permuted-domain) echo tasks/permuted-mnist-vdv-domain.toml ;;
    *) echo "unknown protocol $1 (split-task, permuted-task, permuted-domain)" >&2; exit 2 ;;
  esac
}
methods_of() {
  case $1 in
    *-task) echo "finetune joint gated gated-freeze-after-first xdg ewc online-ewc si separate" ;;
    *-domain) echo "finetune joint ewc online-ewc si" ;;
  esac
}
# A method is a strategy, or gated-freeze-after-first: the gated model with W trained in the
# first phase only (Piggyback), one mask per later task; gated-freeze-after-first-he is the
# same with He's initial weights instead of the task file's (gatekit's own default; the
# reference code's PyTorch default is for the published methods, not for the gated model).
strategy_of() {
  case $1 in
    gated-freeze-after-first*) echo gated ;;
    *) echo "$1" ;;
  esac
}
# Settings a method adds to its protocol's task file: online EWC's own λ where the reference
# code's param_values.py (commit 9945f84) gives it one apart from EWC's.
settings_of() {
  case $1:$2 in
    *:gated-freeze-after-first) echo "--set w_policy=freeze-after-first" ;;
    *:gated-freeze-after-first-he) echo "--set w_policy=freeze-after-first --set w_init=he" ;;
    split-*:online-ewc) echo "--set ewc_lambda=100000000" ;;
    permuted-domain:online-ewc) echo "--set ewc_lambda=1000" ;;
  esac
}

# The task file a (benchmark, seed) trains: split MNIST's with the reference code's digit
# pairs for that seed (see the top of this file; written once per seed, shared by the
# methods), any other protocol's as it is.
task_file_for() {
  local bench=$1 file=$2 seed=$3
  case $bench in
    split-*)
      local to="$work/split-mnist-seed$seed.toml"
      [ -f "$to" ] || python3 - "$file" "$seed" "$to" <<'PY'
import re, sys
from pathlib import Path
import numpy as np
src, seed, to = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
if seed == 0:
    pairs = [[2 * k, 2 * k + 1] for k in range(5)]
else:
    np.random.seed(seed)
    relabel = np.random.permutation(10)
    pairs = [sorted(int(d) for d in np.where(relabel // 2 == k)[0]) for k in range(5)]
text = src.read_text()
text = re.sub(r'^model = "(.*)"', lambda m: f'model = "{(src.parent / m.group(1)).resolve()}"',
              text, flags=re.M)
head = text[: text.index("[[task]]")]
tasks = "".join(f'[[task]]\nname = "d{a}{b}"\nclasses = [{a}, {b}]\n\n' for a, b in pairs)
to.write_text(head + tasks)
PY
      echo "$to" ;;
    *) echo "$file" ;;
  esac
}

for bench in "${benches[@]}"; do
  file=$(file_of "$bench")
  read -r -a methods <<<"${METHODS:-$(methods_of "$bench")}"
  extra=()
  if [ -n "${STEPS_SCALE:-}" ]; then
    phase=$(sed -n 's/^phase_steps = //p' "$file")
    short=$(python3 -c "print(max(1, int($phase * $STEPS_SCALE)))")
    extra+=(--set "phase_steps=$short" --set "eval_every=$short" --set "ewc_samples=20"
      --set "defaults.train_limit=512" --set "defaults.test_limit=256")
  fi
  for method in "${methods[@]}"; do
    for seed in "${seeds[@]}"; do
      name="$bench-$method-$seed"
      load=$(cut -d' ' -f1 /proc/loadavg)
      start=$(date +%s.%N)
      read -r -a own <<<"$(settings_of "$bench" "$method")"
      seed_file=$(task_file_for "$bench" "$file" "$seed")
      "$gtk" train --task-set "$seed_file" --strategy "$(strategy_of "$method")" --seed "$seed" \
        "${extra[@]}" "${own[@]}" \
        --runs-dir "$work" --name "$name" --quiet >"$work/$name.log"
      end=$(date +%s.%N)
      printf '%s\t%s\t%s\t%.1f\t%s\n' "$bench" "$method" "$seed" \
        "$(awk "BEGIN { print $end - $start }")" "$load" | tee -a "$out/times.tsv"
      cp "$work/$name/continual.json" "$out/$bench-$method-seed$seed.json"
      # A gated model's masks are what ships: export it binarized (1 bit per weight per task)
      # and keep the per-task table (soft, binarized, rescaled test accuracy) it prints.
      case $method in
        gated*)
          "$gtk" export "$work/$name" --binarize --out "$work/$name-export" -q \
            >"$out/$bench-$method-seed$seed.export.txt"
          rm -rf "${work:?}/$name-export" ;;
      esac
      rm -rf "${work:?}/$name"
    done
  done
done
if [ -n "${STEPS_SCALE:-}" ]; then
  # A cut-down run is a check of the path, not a result: its table stays in its folder.
  python3 bench/continual/protocol_table.py "$out" | tee "$out/table.md"
else
  python3 book/tools/fragments.py write >/dev/null
  cat book/src/results/continual-protocol.md
fi
