#!/usr/bin/env bash
# A real SLURM cluster of emulated nodes on this machine, for the tests and for trying the sbatch templates.
#
#   slurm/local-cluster.sh start    install (if missing), configure, start munge, slurmctld and one slurmd a node
#   slurm/local-cluster.sh stop     stop exactly the daemons this script started (by their pid files)
#   slurm/local-cluster.sh status   say which of them run
#
# Needs root on Debian or Ubuntu (apt-get). Both commands are idempotent: `start` leaves running daemons alone
# and `stop` never touches a daemon it did not start (a munged that was already running stays running).
#
# Why the configuration looks as it does (SLURM 22.05, Debian 12):
#   * munge authentication: 22.05 has no auth/slurm; munged must run as the munge user.
#   * ProctrackType=proctrack/linuxproc and no TaskPlugin: containers rarely give us a writable cgroup tree.
#   * EnforcePartLimits=ALL: an impossible request is refused at submission instead of pending forever.
#   * Two nodes (HPCSYNTH_SLURM_NODES, default 2), emu0 and emu1: one slurmd each on this host, told apart by
#     NodeName and Port (the controller keys nodes by NodeName; %n gives each slurmd its own spool, pid and log
#     file; Debian's 22.05 runs them side by side). A job over both gets its node layout from srun's PMI-2, so
#     MPICH splits the ranks into two shared-memory nodes: the node-local reduction and the Allreduce across
#     nodes both run, as on a real cluster (over loopback instead of a network).
#   * CPUs per node: at least 4 (SlurmdParameters=config_overrides), even on a 2-core machine, so that the
#     tests' 3-site jobs run on one node; hpcsynth's ranks sleep while they wait in barriers, so oversubscribing
#     is harmless. Memory: 90% of the machine's, split between the nodes.
#   * KillOnBadExit=1: when one task of a step dies, srun ends the others (a rank blocked in a collective with
#     a dead peer would otherwise keep the job running until its time limit).
#   * MinJobAge=3600: finished jobs stay visible to `scontrol show job` for an hour; there is no accounting
#     database, so this is how `hpcsynth status` and slurm/bin/sacct see the end state of a job.
#   * JobRequeue=1 so that a preempted or self-requeueing job goes back into the queue, and
#     AuthInfo=cred_expire=10 so that it may start again after 10 s rather than SLURM's default 120 s.
# A cluster of this script's that runs with another layout (an older one-node configuration) is restarted
# with this one when its queue is empty. Nothing here is needed on a real cluster; only the sbatch templates are.
set -euo pipefail

STATE=${HPCSYNTH_SLURM_STATE:-/var/tmp/hpcsynth-slurm}
CONF=/etc/slurm/slurm.conf
MARKER="# written by hpcsynth slurm/local-cluster.sh"
MUNGE_PID=/run/munge/munged.pid
NODES=${HPCSYNTH_SLURM_NODES:-2}
FIRST_PORT=6830  # the slurmd of node emu<i> listens on FIRST_PORT + i

die() { echo "local-cluster: $*" >&2; exit 1; }
alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
[[ $NODES =~ ^[1-9][0-9]*$ ]] || die "HPCSYNTH_SLURM_NODES must be a positive integer, got '$NODES'"

install_packages() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null && return
    command -v apt-get >/dev/null || die "slurmctld/slurmd/munge are missing and there is no apt-get to install them"
    echo "local-cluster: installing slurmctld slurmd slurm-client munge" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
}

render_config() {  # render_config FILE: write the configuration this script runs to FILE
    if [[ -f $CONF ]] && ! grep -qF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script: this machine already has a SLURM configuration"
    fi
    local host cpus mem i
    host=$(hostname -s)
    cpus=$(nproc)
    (( cpus < 4 )) && cpus=4
    mem=$(awk -v n="$NODES" '/MemTotal/ {printf "%d", $2 / 1024 * 0.9 / n}' /proc/meminfo)
    mkdir -p /etc/slurm "$STATE/ctld" "$STATE/log"
    for (( i = 0; i < NODES; i++ )); do mkdir -p "$STATE/d/emu$i"; done
    cat > "$1" <<CONFIG
$MARKER
ClusterName=hpcsynth-local
SlurmctldHost=$host
AuthType=auth/munge
AuthInfo=cred_expire=10
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
ReturnToService=2
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd-%n.pid
SlurmdSpoolDir=$STATE/d/%n
StateSaveLocation=$STATE/ctld
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd-%n.log
SlurmUser=root
SlurmdUser=root
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
EnforcePartLimits=ALL
JobRequeue=1
KillOnBadExit=1
MinJobAge=3600
MailProg=/bin/true
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SchedulerParameters=sched_interval=1
CONFIG
    for (( i = 0; i < NODES; i++ )); do
        echo "NodeName=emu$i NodeHostname=$host NodeAddr=$host Port=$(( FIRST_PORT + i )) CPUs=$cpus" \
             "RealMemory=$mem State=UNKNOWN"
    done >> "$1"
    echo "PartitionName=debug Nodes=emu[0-$(( NODES - 1 ))] Default=YES MaxTime=INFINITE State=UP" >> "$1"
}

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return  # a working munged is already there (ours or the system's): use it, never restart it
    fi
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 0755 /run/munge
    [[ -s /etc/munge/munge.key ]] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=128 count=1 2>/dev/null;
                                       chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key; }
    runuser -u munge -- munged --pid-file="$MUNGE_PID" --force
    local i
    for i in $(seq 1 50); do [[ -s $MUNGE_PID ]] && break; sleep 0.1; done
    cp "$MUNGE_PID" "$STATE/munged.pid"  # the record that this script started it
}

slurmd_pidfiles() {  # every slurmd pid file this script may have written (slurmd.pid: the one-node layout)
    local f
    for f in "$STATE"/slurmd.pid "$STATE"/slurmd-*.pid; do [[ -e $f ]] && echo "$f"; done
    return 0
}

all_slurmd_alive() {
    local i
    for (( i = 0; i < NODES; i++ )); do alive "$STATE/slurmd-emu$i.pid" || return 1; done
}

wait_for_nodes() {
    local i up
    for i in $(seq 1 60); do
        up=$(sinfo -h -N -o '%t' 2>/dev/null | grep -cE '^(idle|mix|alloc)' || true)
        (( up >= NODES )) && return
        sleep 0.5
    done
    die "not all $NODES nodes became idle within 30 s; see $STATE/log/slurmctld.log and $STATE/log/slurmd-*.log"
}

start() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts system daemons)"
    install_packages
    mkdir -p "$STATE"
    render_config "$CONF.new"
    if alive "$STATE/slurmctld.pid" && all_slurmd_alive && cmp -s "$CONF.new" "$CONF"; then
        rm -f "$CONF.new"
        wait_for_nodes
        echo "local-cluster: running"
        return
    fi
    if alive "$STATE/slurmctld.pid" && ! cmp -s "$CONF.new" "$CONF"; then
        [[ -z $(squeue -h 2>/dev/null) ]] \
            || die "the running cluster has another configuration and jobs in its queue: stop it when they are done"
        stop_daemons
    fi
    mv "$CONF.new" "$CONF"
    start_munge
    alive "$STATE/slurmctld.pid" || slurmctld
    local i
    for (( i = 0; i < NODES; i++ )); do alive "$STATE/slurmd-emu$i.pid" || slurmd -N "emu$i"; done
    wait_for_nodes
    echo "local-cluster: running ($NODES nodes emu0..emu$(( NODES - 1 )) on $(hostname -s), config $CONF," \
         "logs $STATE/log)"
}

stop_one() {  # stop_one NAME PIDFILE: SIGTERM, then wait up to 10 s
    local pidfile=$2 pid i
    alive "$pidfile" || { rm -f "$pidfile"; return; }
    pid=$(cat "$pidfile")
    kill "$pid"
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && die "$1 (pid $pid) did not stop"
    rm -f "$pidfile"
}

stop_daemons() {  # every slurmd, then slurmctld; munge stays
    local f
    for f in $(slurmd_pidfiles); do stop_one slurmd "$f"; done
    stop_one slurmctld "$STATE/slurmctld.pid"
}

stop() {
    stop_daemons
    stop_one munged "$STATE/munged.pid"
    echo "local-cluster: stopped"
}

status() {
    local name i names=(munged slurmctld)
    for (( i = 0; i < NODES; i++ )); do names+=("slurmd-emu$i"); done
    for name in "${names[@]}"; do
        if alive "$STATE/$name.pid"; then echo "$name: running (pid $(cat "$STATE/$name.pid"))"
        else echo "$name: not started by this script"; fi
    done
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) die "usage: $0 start|stop|status" ;;
esac
