#!/usr/bin/env bash
# What CI runs for the book (after `cargo test`, see .ci/run):
#  1. the reference pages match the binary (regenerated into a temp dir and diffed);
#  2. the example the book includes builds and runs (examples/custom_task.rs);
#  3. the tested snippets (```bash,tested / ```python,tested blocks) run, with `gtk` on PATH;
#     blocks marked `mnist` only when $GATEKIT_DATA is set;
#  4. the results fragments (book/src/results/*.md) match the sweep summaries they are made
#     from (bench/paper/results/*.json), and the paper chapter types no results table by hand;
#     the paper's claims (bench/paper/claims.toml) each have a line and a quote found on that
#     line of the paper, no row or sentence outside the claims tables is called a claim, the
#     paper-recipe presets (tasks/paper-recipe/) match their task sets, and the t quantiles and
#     decision rules of book/tools/claims.py pass their self-test;
#  5. `mdbook build book` (mdBook installed with cargo if missing) and an internal link check.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
MDBOOK_VERSION=0.4.52
began=$SECONDS

echo "== book: building gtk and the examples"
cargo build --quiet --bin gtk --examples
bin="${CARGO_TARGET_DIR:-$root/target}/debug"

echo "== book: generated reference pages"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
GTK="$bin/gtk" bash book/generate.sh "$tmp" >/dev/null
for page in cli.md task-kinds.md; do
  if ! diff -u "book/src/reference/$page" "$tmp/$page"; then
    echo "book/src/reference/$page is out of date: run book/generate.sh and commit the result" >&2
    exit 1
  fi
done

echo "== book: examples/custom_task.rs"
"$bin/examples/custom_task" 50 >/dev/null

echo "== book: tested snippets"
PATH="$bin:$PATH" python3 book/tools/run_snippets.py book/src "$root"

echo "== book: results fragments"
python3 book/tools/claims.py
python3 book/tools/fragments.py check

echo "== book: mdbook build and link check"
if ! command -v mdbook >/dev/null || ! mdbook --version | grep -q "v$MDBOOK_VERSION"; then
  cargo install --locked mdbook --version "$MDBOOK_VERSION"
fi
mdbook build book 2>&1 | tee "$tmp/mdbook.log"
if grep -E "\[(WARN|ERROR)\]" "$tmp/mdbook.log"; then
  echo "mdbook reported warnings or errors (above)" >&2
  exit 1
fi
python3 book/tools/check_links.py book/src
echo "== book: all checks passed in $((SECONDS - began))s"
