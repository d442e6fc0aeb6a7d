#!/usr/bin/env bash
# Stops the one-node Slurm that tests/slurm/start.sh DIR started (only the daemons whose pid
# files are in DIR), leaving DIR's logs for reading.
set -uo pipefail
dir="${1:?usage: tests/slurm/stop.sh DIR}"
[ -e "$dir/.gatekit-slurm" ] || { echo "stop.sh: $dir was not made by tests/slurm/start.sh" >&2; exit 2; }
# Cancel the jobs of this cluster first, so no job step outlives its slurmd.
if [ -f "$dir/slurm.conf" ] && command -v scancel >/dev/null; then
  SLURM_CONF="$dir/slurm.conf" scancel --full --quiet --user "$(id -un)" 2>/dev/null || true
  for _ in $(seq 50); do
    [ -z "$(SLURM_CONF="$dir/slurm.conf" squeue -h -t running,completing 2>/dev/null)" ] && break
    sleep 0.2
  done
fi
for pid_file in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
  if [ -f "$pid_file" ]; then
    pid="$(cat "$pid_file")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
done
