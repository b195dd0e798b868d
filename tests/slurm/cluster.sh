#!/usr/bin/env bash
# A single-node Slurm cluster on this machine for the sweep test
# (`slurm_array_sweep_matches_local_run`): munged, slurmctld and slurmd on
# localhost with a configuration of their own under $ONBOARD_SLURM_DIR
# (default /tmp/onboard-slurm), never /etc/slurm.
#
#   tests/slurm/cluster.sh start    # idempotent; prints the SLURM_CONF to use
#   tests/slurm/cluster.sh stop
#
# Needs Debian's slurm-wlm and munge (tests/prepare.sh installs them) and root
# (slurmd starts jobs as their user).
set -euo pipefail
dir="${ONBOARD_SLURM_DIR:-/tmp/onboard-slurm}"
conf="$dir/slurm.conf"
cpus="$(nproc)"
mem_mb="$(awk '/MemTotal/ {print int($2 / 1024 / 2)}' /proc/meminfo)"

for p in /usr/sbin/munged /usr/sbin/slurmctld /usr/sbin/slurmd; do
    if [ ! -x "$p" ]; then
        echo "$p is missing: apt-get install -y slurm-wlm munge (tests/prepare.sh, run by the README's test command, does)" >&2
        exit 1
    fi
done

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
    mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
    if ! pgrep -x munged >/dev/null; then
        mkdir -p /run/munge /var/log/munge /var/lib/munge
        chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
        if command -v runuser >/dev/null && id munge >/dev/null 2>&1; then
            runuser -u munge -- /usr/sbin/munged
        else
            /usr/sbin/munged --force
        fi
    fi
    cat > "$conf.new" <<CONF
ClusterName=onboard
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SchedulerType=sched/backfill
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
NodeName=onboard1 NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    mv "$conf.new" "$conf"
    export SLURM_CONF="$conf"
    alive "$dir/slurmctld.pid" || /usr/sbin/slurmctld -f "$conf"
    alive "$dir/slurmd.pid" || /usr/sbin/slurmd -f "$conf" -N onboard1
    # The node comes up within seconds; wait until it takes jobs.
    for _ in $(seq 1 60); do
        state="$(sinfo -h -N -o '%t' 2>/dev/null | head -1)"
        case "$state" in
            idle*|mix*|alloc*) echo "$conf"; return 0 ;;
        esac
        sleep 1
    done
    echo "the Slurm node did not come up (state: ${state:-none}); see $dir/slurmctld.log and $dir/slurmd.log" >&2
    return 1
}

stop() {
    for p in slurmd slurmctld; do
        if alive "$dir/$p.pid"; then kill "$(cat "$dir/$p.pid")"; fi
    done
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
