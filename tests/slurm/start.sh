#!/usr/bin/env bash
# Starts a one-node Slurm cluster on this machine for gatekit's cluster tests (issue 30), from
# Debian's packages (`apt-get install slurm-wlm munge`): munged, slurmctld and slurmd, all
# configured under one state folder, so nothing in /etc is touched and several test runs never
# share a daemon. The node gets this machine's cores and memory.
#
# Usage: tests/slurm/start.sh DIR     (prints `export SLURM_CONF=DIR/slurm.conf`; source it or
#                                      set it before calling sbatch/squeue/scontrol)
#        tests/slurm/stop.sh DIR
# The daemons run as the calling user (root in CI containers). DIR must be new or a folder this
# script made earlier (it holds `.gatekit-slurm`); nothing else is written outside it.
set -euo pipefail
dir="${1:?usage: tests/slurm/start.sh DIR}"
for tool in munged slurmctld slurmd sbatch; do
  command -v "$tool" >/dev/null || { echo "start.sh: $tool not found; install Debian's slurm-wlm and munge" >&2; exit 2; }
done
if [ -e "$dir" ] && [ ! -e "$dir/.gatekit-slurm" ] && [ -n "$(ls -A "$dir")" ]; then
  echo "start.sh: $dir exists and was not made by this script; give a new folder" >&2; exit 2
fi
mkdir -p "$dir"/{state,spool,log,munge}
dir="$(cd "$dir" && pwd)"
touch "$dir/.gatekit-slurm"
chmod 755 "$dir/munge"
[ -f "$dir/munge/munge.key" ] || { head -c 1024 /dev/urandom > "$dir/munge/munge.key"; chmod 400 "$dir/munge/munge.key"; }
user="$(id -un)"
host="$(hostname -s)"
cpus="$(nproc)"
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
socket="$dir/munge/munge.socket"
munged --force --key-file "$dir/munge/munge.key" --socket "$socket" \
  --pid-file "$dir/munge/munged.pid" --log-file "$dir/log/munged.log" --seed-file "$dir/munge/seed"
cat > "$dir/slurm.conf" <<CONF
ClusterName=gatekit-test
SlurmctldHost=$host
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket=$socket,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=$((6817 + RANDOM % 1000 * 2))
SlurmdPort=$((6818 + RANDOM % 1000 * 2))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# Schedule every second (not every 30-60 s), so a requeued or freed element starts at once.
SchedulerParameters=sched_interval=1,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=5
MinJobAge=3600
DefMemPerCPU=$((mem_mb / cpus))
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
export SLURM_CONF="$dir/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qx idle; then
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.5
done
echo "start.sh: the node did not come up idle within 30 s; logs in $dir/log" >&2
sinfo >&2 || true
exit 1
