#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, without systemd: for the SLURM launcher test and for trying a
# sweep before sending it to a real cluster.
#
#   scripts/slurm_local.sh up       install the Debian packages if missing, start munged, mariadbd, slurmdbd,
#                                   slurmctld and slurmd; returns when the node is idle and sacct answers
#   scripts/slurm_local.sh down     cancel the jobs, stop the daemons by their pids (state and logs are kept)
#   scripts/slurm_local.sh status   each daemon, the node (sinfo) and the last jobs (sacct); 0 when all are up
#
# Needs root and a Debian package source. Exit codes: 0 done, 1 a daemon failed (see the logs it names),
# 2 usage, 3 this machine cannot run the cluster (not root, no apt, no package source).
# Config, state and logs live under $BROADCAM_SLURM_DIR (default /var/lib/broadcam-slurm); the client
# commands (sbatch, sacct, ...) find the config through the link /etc/slurm/slurm.conf.
set -euo pipefail

ROOT=${BROADCAM_SLURM_DIR:-/var/lib/broadcam-slurm}
DB_PORT=${BROADCAM_SLURM_DB_PORT:-16820}   # mariadbd on 127.0.0.1 only; not 3306, so a system MariaDB can coexist
CLUSTER=broadcam
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)
ETC=$ROOT/etc RUN=$ROOT/run LOG=$ROOT/log STATE=$ROOT/state
SLURM_CONF_FILE=$ETC/slurm.conf
SYSTEM_CONF=/etc/slurm/slurm.conf
MUNGE_PID=/run/munge/munged.pid           # munged's defaults: the socket slurm's auth/munge plugin expects
export SLURM_CONF=$SLURM_CONF_FILE        # slurmdbd reads slurmdbd.conf from the same folder

say() { echo "slurm_local: $*"; }
fail() { echo "slurm_local: $*" >&2; exit 1; }
cannot() { echo "slurm_local: cannot run a local SLURM cluster here: $*" >&2; exit 3; }

pid_alive() {  # pid_alive <pidfile>: the pid in the file is a live process of the daemon the file is named
    # after (not another process that got a stale file's pid after a reboot or a killed container)
    local pid name
    [[ -s $1 ]] || return 1
    pid=$(cat "$1") name=$(basename "$1" .pid)
    kill -0 "$pid" 2>/dev/null && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]
}

wait_for() {  # wait_for <seconds> <what> <command...>: poll every 0.2 s until the command succeeds
    local limit=$1 what=$2 deadline=$((SECONDS + $1)); shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "$what did not come up within ${limit} s (logs: $LOG, /var/log/munge)"
        sleep 0.2
    done
}

install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return
    command -v apt-get >/dev/null || cannot "packages ${missing[*]} are missing and there is no apt-get"
    say "installing ${missing[*]} (apt-get)"
    # Package scripts must not start daemons of their own (an init-script mariadb on :3306, a second munged).
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; added_policy=1; fi
    local ok=1
    apt-get update -qq >"$LOG/apt.log" 2>&1 \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >>"$LOG/apt.log" 2>&1 || ok=0
    ((added_policy)) && rm -f "$policy"
    ((ok)) || cannot "apt-get could not install ${missing[*]} (no package source?); see $LOG/apt.log"
}

write_configs() {
    # The node as slurmd sees this machine (CPUs, topology, RealMemory in MB); jobs share it per CPU.
    local node cpus mem host
    node=$(slurmd -C | head -n 1)
    host=$(sed -E 's/^NodeName=([^ ]+).*/\1/' <<<"$node")
    cpus=$(sed -E 's/.* CPUs=([0-9]+).*/\1/' <<<"$node")
    mem=$(sed -E 's/.* RealMemory=([0-9]+).*/\1/' <<<"$node")
    cat >"$SLURM_CONF_FILE" <<EOF
# Written by scripts/slurm_local.sh up; rewritten at every start.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
MailProg=/bin/true
# No cgroups on a container/VM without systemd: track processes by their parent pid, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# A job that asks for no memory gets its CPUs' share, not the whole node, so jobs run side by side.
DefMemPerCPU=$((mem / cpus))
# A request the partition can never satisfy fails at submission instead of pending forever.
EnforcePartLimits=ALL
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
# submitit follows its jobs with sacct: accounting through slurmdbd.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobCompType=jobcomp/none
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$ETC/slurmdbd.conf" <<EOF
# Written by scripts/slurm_local.sh up; rewritten at every start.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$(cat "$ETC/db.pass")
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$ETC/slurmdbd.conf"  # slurmdbd refuses a config others can read (it holds the password)
    # The clients read /etc/slurm/slurm.conf; link it to ours unless another cluster's config is there.
    if [[ -e $SYSTEM_CONF && ! -L $SYSTEM_CONF ]]; then
        fail "$SYSTEM_CONF exists and is not ours; move it away or export SLURM_CONF=$SLURM_CONF_FILE"
    fi
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -sfn "$SLURM_CONF_FILE" "$SYSTEM_CONF"
}

start_munge() {
    pid_alive "$MUNGE_PID" && return
    if [[ ! -s /etc/munge/munge.key ]]; then mungekey --create --keyfile=/etc/munge/munge.key; fi
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 755 /run/munge
    runuser -u munge -- /usr/sbin/munged   # daemonises; writes $MUNGE_PID
    wait_for 10 munged sh -c 'munge -n | unmunge'
}

start_mariadb() {
    pid_alive "$RUN/mysql/mariadbd.pid" && return
    mkdir -p "$ROOT/mysql" "$RUN/mysql"
    chown mysql:mysql "$ROOT/mysql" "$RUN/mysql"
    local fresh=0
    if [[ ! -d $ROOT/mysql/mysql ]]; then
        fresh=1
        mariadb-install-db --no-defaults --user=mysql --datadir="$ROOT/mysql" --skip-test-db \
            --auth-root-authentication-method=socket >"$LOG/mariadb-install.log" 2>&1 \
            || fail "mariadb-install-db failed; see $LOG/mariadb-install.log"
    fi
    # --no-defaults: /etc/mysql's socket, port and datadir belong to a system MariaDB, not to this one.
    setsid mariadbd --no-defaults --user=mysql --datadir="$ROOT/mysql" --socket="$RUN/mysql/mysqld.sock" \
        --pid-file="$RUN/mysql/mariadbd.pid" --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
        --log-error="$LOG/mariadbd.log" </dev/null >/dev/null 2>&1 &
    wait_for 30 mariadbd mariadb-admin --no-defaults --socket="$RUN/mysql/mysqld.sock" ping
    if ((fresh)) || [[ ! -s $ETC/db.pass ]]; then
        (umask 077; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$ETC/db.pass")
        mariadb --no-defaults --socket="$RUN/mysql/mysqld.sock" -u root -e "
            CREATE DATABASE IF NOT EXISTS slurm_acct_db;
            CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1';
            ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$(cat "$ETC/db.pass")';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
    fi
}

start_slurm() {
    if ! pid_alive "$RUN/slurmdbd.pid"; then slurmdbd; fi
    wait_for 60 slurmdbd sacctmgr -n list cluster
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
    if ! pid_alive "$RUN/slurmctld.pid"; then slurmctld; fi
    wait_for 30 slurmctld sh -c 'scontrol ping | grep -q UP'
    if ! pid_alive "$RUN/slurmd.pid"; then slurmd; fi
    wait_for 30 "the node" sh -c "sinfo -h -N -o %t | grep -Eq '^(idle|mix|alloc|drain|drng)'"
    if sinfo -h -N -o %t | grep -q '^dr'; then  # drained by an earlier run that died: give it back
        scontrol update nodename="$(sinfo -h -N -o %N | head -n 1)" state=resume
        wait_for 10 "the node" sh -c "sinfo -h -N -o %t | grep -Eq '^(idle|mix|alloc)'"
    fi
    wait_for 20 "accounting (sacct)" sacct -n -X -S now
}

stop_pidfile() {  # stop_pidfile <name> <pidfile>: TERM, then KILL after 15 s
    local pid
    pid_alive "$2" || return 0
    pid=$(cat "$2")
    kill "$pid"
    for _ in $(seq 75); do kill -0 "$pid" 2>/dev/null || { say "stopped $1 ($pid)"; return 0; }; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    say "killed $1 ($pid)"
}

up() {
    [[ $(id -u) == 0 ]] || cannot "not root (the daemons run as root, munged as user munge)"
    mkdir -p "$ETC" "$RUN" "$LOG" "$STATE/ctld" "$STATE/slurmd"
    install_packages
    local t0=$SECONDS
    start_munge
    start_mariadb
    write_configs
    start_slurm
    say "up in $((SECONDS - t0)) s: $(sinfo -h -N -o '%N %t cpus=%c mem=%mMB'); config $SLURM_CONF_FILE, logs $LOG"
}

down() {
    [[ $(id -u) == 0 ]] || cannot "not root"
    if pid_alive "$RUN/slurmctld.pid"; then
        scancel --full --quiet $(squeue -h -o %A) 2>/dev/null || true
    fi
    stop_pidfile slurmd "$RUN/slurmd.pid"
    stop_pidfile slurmctld "$RUN/slurmctld.pid"
    stop_pidfile slurmdbd "$RUN/slurmdbd.pid"
    stop_pidfile mariadbd "$RUN/mysql/mariadbd.pid"
    stop_pidfile munged "$MUNGE_PID"
    if [[ -L $SYSTEM_CONF && $(readlink "$SYSTEM_CONF") == "$SLURM_CONF_FILE" ]]; then rm -f "$SYSTEM_CONF"; fi
    say "down (state and logs kept under $ROOT)"
}

status() {
    local all=0 name file
    for name in munged mariadbd slurmdbd slurmctld slurmd; do
        case $name in munged) file=$MUNGE_PID ;; mariadbd) file=$RUN/mysql/mariadbd.pid ;; *) file=$RUN/$name.pid ;; esac
        if pid_alive "$file"; then echo "$name: running (pid $(cat "$file"))"; else echo "$name: stopped"; all=1; fi
    done
    if ((all == 0)); then
        sinfo -N -o '%N %t cpus=%c mem=%mMB'
        sacct -X -S now-1hours -o JobID,JobName%20,State,Elapsed | tail -n 10
    fi
    echo "config $SLURM_CONF_FILE, logs $LOG"
    return $all
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
