#!/usr/bin/env bash
# Cold build times of gatekit at given commits: for each commit, a fresh clone and a fresh
# target folder, then `cargo build --release` (the README's first command builds this) and
# `cargo test --no-run` (the suite's build), each timed with wall, user and system seconds.
# CPU seconds (user + sys) are what to compare on a shared machine: wall time depends on
# what else runs, CPU time much less so. Crate sources must already be in ~/.cargo (no
# download is timed).
#
#   bench/build_times.sh OUT.tsv COMMIT [COMMIT ...]
set -euo pipefail
out=$1
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
printf 'commit\tbuild\twall_s\tuser_s\tsys_s\tload_before\n' >"$out"
for commit in "$@"; do
  dir=$(mktemp -d)
  git clone -q "$repo" "$dir/src"
  git -C "$dir/src" checkout -q "$commit"
  for build in release test; do
    case $build in
      release) cmd=(cargo build --release -q) ;;
      test) cmd=(cargo test --no-run -q) ;;
    esac
    load=$(cut -d' ' -f1 /proc/loadavg)
    (cd "$dir/src" && CARGO_TARGET_DIR="$dir/target" /usr/bin/time -f '%e %U %S' -o "$dir/time" "${cmd[@]}" >/dev/null 2>"$dir/log") || {
      echo "build failed at $commit ($build): see $dir/log" >&2
      exit 1
    }
    read -r wall user sys <"$dir/time"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(git -C "$repo" rev-parse --short "$commit")" "$build" "$wall" "$user" "$sys" "$load" | tee -a "$out"
  done
  rm -rf "$dir"
done
