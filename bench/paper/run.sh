#!/usr/bin/env bash
# Issue 17: every experiment of the book's "Reproducing the paper" over 5 seeds, as sweeps
# (`gtk train --seeds 0..5 --jobs J`), plus the paper's Figure 5 (no mask regulariser vs
# exp(−|m|) vs exp(−m²) on the sinusoid set). Each sweep's summary.json is copied to
# bench/paper/results/NAME.json (checked in) and book/tools/fragments.py turns those into the
# Markdown fragments the paper chapter includes (book/src/results/NAME.md).
#
# Usage: bench/paper/run.sh [--recipe default|paper] [--jobs J] [--work DIR] [NAME ...]
#   --recipe paper: the paper's literal recipe (issue 25), task sets tasks/paper-recipe/NAME.toml
#         (made by bench/paper/paper_recipe.py), summaries to bench/paper/results/paper-recipe/;
#         default: gatekit's recipe, tasks/NAME.toml, bench/paper/results/.
#   NAME: linear linear-noise sinusoid sinusoid-reg-abs sinusoid-reg-sq colors red-white
#         mnist-twice mnist-rgb permuted (default: all; the MNIST ones need $GATEKIT_DATA)
#   --jobs J: seeds trained at once (default: the cores; each seed runs on one thread)
#   --work DIR: where the sweeps go (default runs/paper-bench, git-ignored); a sweep already
#         there is resumed (finished seeds kept), so the script can be stopped and rerun.
# The binary is $GTK, else target/release/gtk (built if missing). Prints each sweep's wall time
# and the total; the load average before and after goes with it.
# LAUNCHER=slurm (default local) submits every sweep to Slurm at once (`gtk train --launcher
# slurm`, resources from $SLURM_ARGS, e.g. SLURM_ARGS="--partition=cpu --time=2:00:00"), then
# waits for them (`gtk sweep status`), writes each summary (`gtk sweep summary`) and collects
# the results as above. --work must then be on a file system the nodes share.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
jobs="$(nproc)"
work="$root/runs/paper-bench"
names=()
recipe=default
while [ $# -gt 0 ]; do
  case "$1" in
    --jobs) jobs="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --recipe) recipe="$2"; shift 2 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) names+=("$1"); shift ;;
  esac
done
[ ${#names[@]} -gt 0 ] || names=(linear linear-noise sinusoid sinusoid-reg-abs sinusoid-reg-sq colors red-white mnist-twice mnist-rgb permuted)
case "$recipe" in
  default) tasks="$root/tasks"; results="$root/bench/paper/results" ;;
  paper) tasks="$root/tasks/paper-recipe"; results="$root/bench/paper/results/paper-recipe"
    work="$work/paper-recipe" ;;
  *) echo "--recipe must be default or paper, got $recipe" >&2; exit 2 ;;
esac
gtk="${GTK:-${CARGO_TARGET_DIR:-$root/target}/release/gtk}"
[ -x "$gtk" ] || (cd "$root" && cargo build --release --bin gtk)
# The Figure 2 and 3 statistics per seed (issue 25): examples/figure_stats.rs.
figstats="${FIGURE_STATS:-${CARGO_TARGET_DIR:-$root/target}/release/examples/figure_stats}"
[ -x "$figstats" ] || (cd "$root" && cargo build --release --example figure_stats)
mkdir -p "$work" "$results/figures"
echo "recipe $recipe; load before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; --jobs $jobs"
launcher="${LAUNCHER:-local}"
case "$launcher" in
  local) launch=(--jobs "$jobs") ;;
  # shellcheck disable=SC2206 # SLURM_ARGS is split into flags on purpose
  slurm) launch=(--launcher slurm ${SLURM_ARGS:-}) ;;
  *) echo "LAUNCHER must be local or slurm, got $launcher" >&2; exit 2 ;;
esac
began=$SECONDS
# Copies a finished sweep's summary, its seed 0 config and its figure statistics.
collect() {
  cp "$work/$1/summary.json" "$results/$1.json"
  # The settings the chapter states come from the run's own resolved config, not from prose.
  cp "$work/$1/seed-0/config.toml" "$results/$1.config.toml"
  "$figstats" "$work/$1" > "$results/figures/$1.json"
}
for name in "${names[@]}"; do
  t0=$SECONDS
  if [ -f "$work/$name/sweep.json" ]; then
    "$gtk" train --resume "$work/$name" "${launch[@]}" --quiet > "$work/$name.log"
  else
    "$gtk" train --task-set "$tasks/$name.toml" --strategy all --seeds 0..5 "${launch[@]}" \
      --runs-dir "$work" --name "$name" --quiet > "$work/$name.log"
  fi
  if [ "$launcher" = local ]; then
    collect "$name"
    echo "$name: $((SECONDS - t0)) s"
  fi
done
if [ "$launcher" = slurm ]; then
  for name in "${names[@]}"; do
    # Wait while any member is pending or running; then every member must be done.
    while "$gtk" sweep status "$work/$name" | grep -Eq '^ *[0-9]+ .* (pending|running) '; do
      sleep 60
    done
    "$gtk" sweep summary "$work/$name" >> "$work/$name.log" || {
      "$gtk" sweep status "$work/$name" >&2; exit 1; }
    collect "$name"
    echo "$name: done on Slurm after $((SECONDS - began)) s"
  done
fi
python3 "$root/book/tools/fragments.py" write
echo "total: $((SECONDS - began)) s; load after: $(cut -d' ' -f1-3 /proc/loadavg)"
