#!/usr/bin/env bash
# Runs van de Ven & Tolias's own code (github.com/GMvandeVen/continual-learning at commit
# 86802a8, the code of "Three scenarios for continual learning", arXiv:1904.07734v1) on
# permuted MNIST, Task-IL, on this machine: the cross-check of a published row that gatekit's
# protocol run does not reproduce (book: "Continual learning", "The published protocols").
#
#   VDV_REPO=/path/to/continual-learning bench/continual/reference/vdv_reference.sh SEED [FLAGS...]
#
# VDV_REPO is a checkout of that repository at 86802a8 (`git clone` it and `git checkout
# 86802a8`; nothing of it is copied here). FLAGS go to its main.py after the protocol's own
# (--experiment permMNIST --scenario task --tasks 10 --iters 5000 --lr 0.0001 --fc-units 1000,
# the paper's permuted-MNIST settings), e.g. `--xdg 0.6` or `--ewc --lambda 100`. PyTorch is
# the peer's venv ($PEER_VENV, default ~/.cache/gatekit/peer-venv); torchvision, matplotlib
# and visdom are replaced by the stand-ins in shim/, tqdm is pip-installed next to them. One
# thread, CPU. Prints the reference's per-task test accuracies and their average; 45 minutes
# per run on the 2-core AMD EPYC (Zen 5) under load 3–4.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
seed=${1:?usage: VDV_REPO=DIR $0 SEED [FLAGS...]}
shift
repo=${VDV_REPO:?set VDV_REPO to a checkout of GMvandeVen/continual-learning at 86802a8}
python=${PEER_VENV:-$HOME/.cache/gatekit/peer-venv}/bin/python
if [ "$(git -C "$repo" rev-parse --short=7 HEAD)" != "86802a8" ]; then
  echo "$repo is not at commit 86802a8 (the paper's v1 code); check it out first" >&2
  exit 2
fi
data=${GATEKIT_DATA:-$root/../shared/data}/mnist
[ -f "$data/train-images-idx3-ubyte.gz" ] || { echo "no MNIST in $data (set GATEKIT_DATA)" >&2; exit 2; }
deps=${XDG_CACHE_HOME:-$HOME/.cache}/gatekit/vdv-deps
[ -d "$deps/tqdm" ] || "$python" -m pip install -q --target "$deps" tqdm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
MNIST_DIR="$data" PYTHONPATH="$here/shim:$deps" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
  "$python" "$repo/main.py" --experiment permMNIST --scenario task --tasks 10 --iters 5000 \
  --lr 0.0001 --fc-units 1000 --seed "$seed" --no-gpus "$@" 2>/dev/null |
  sed -n '/Precision on test-set/,/average precision/p'
