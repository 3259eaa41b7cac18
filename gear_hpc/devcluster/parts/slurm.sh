# shellcheck shell=bash
# parts/slurm.sh: the Slurm configuration, its fresh state, and the daemons' start.

write_config() {
  local node=$1 mailprog=/bin/true
  [[ -x $ROOT/usr/local/bin/gear-mailprog ]] && mailprog=/usr/local/bin/gear-mailprog
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
  if ((NODES)); then
    write_hosts
  else
    cp -L /etc/hosts "$ROOT/etc/hosts"
    # Slurm must resolve the node name.
    getent -s files hosts "$node" >/dev/null || printf '127.0.1.1\t%s\n' "$node" >>"$ROOT/etc/hosts"
  fi
  # This VM's root lacks CAP_SYS_RESOURCE: Apptainer as root fails to set its default caps.
  sed -i 's/^#\?\s*root default capabilities\s*=.*/root default capabilities = no/' \
    "$ROOT/etc/apptainer/apptainer.conf"
  grep -q '^root default capabilities = no' "$ROOT/etc/apptainer/apptainer.conf" \
    || echo 'root default capabilities = no' >>"$ROOT/etc/apptainer/apptainer.conf"

  mkdir -p "$ROOT/etc/slurm"
  slurm_conf "$node" "$mailprog" >"$ROOT/etc/slurm/slurm.conf"
  gres_conf "$node" >"$ROOT/etc/slurm/gres.conf"
  cgroup_conf >"$ROOT/etc/slurm/cgroup.conf"
  mailprog_dirs
  fresh_state
}

# Processes are tracked by cgroup where the host allows, as on real sites: then
# slurmstepd ends everything a job started, apptainer's squashfuse_ll too, even
# after a SIGKILL of the batch shell. Here that is the cgroup v1 freezer (this VM
# mounts the v1 hierarchies beside an empty cgroup2: Slurm's cgroup/v1 plugin,
# deprecated but in 24.11); elsewhere /proc (proctrack/linuxproc).
cgroup_v1_usable() {
  local plugin
  [[ -d /sys/fs/cgroup/freezer ]] || return 1
  for plugin in "$ROOT"/usr/lib/*/slurm-wlm/cgroup_v1.so; do [[ -e $plugin ]] && return 0; done
  return 1
}

cgroup_conf() {  # the text of cgroup.conf
  if cgroup_v1_usable; then echo 'CgroupPlugin=cgroup/v1'; else echo 'CgroupPlugin=disabled'; fi
}

gres_conf() {  # gres_conf NODE: the placeholder GPUs, four on the one node or two on each compute node
  local n
  echo "AutoDetect=off"
  if ((NODES == 0)); then echo "NodeName=$1 Name=gpu Type=devgpu File=/run/gear-gpu/nvidia[0-3]"; return; fi
  for n in $(compute_nodes); do echo "NodeName=$n Name=gpu Type=devgpu File=/run/gear-gpu/nvidia[$(node_gpus "$n")]"; done
}

slurm_conf() {  # slurm_conf NODE MAILPROG: the text of slurm.conf (FirstJobId is added by fresh_state)
  local node=$1 mailprog=$2 slurmd=slurmd nodes=$1 gpus=4 n
  if ((NODES)); then
    node=controller slurmd=slurmd-%n nodes=node[1-$NODES] gpus=2
    ((NODES == 1)) && nodes=node1
  fi
  cat <<EOF
# Written by devcluster.sh on every bring-up; edits are lost.
ClusterName=gear-dev
SlurmctldHost=$node
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/$slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/$slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/$slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# Processes tracked by cgroup where the host allows (cgroup_v1_usable), else by /proc; no task plugin.
ProctrackType=proctrack/$(cgroup_v1_usable && echo cgroup || echo linuxproc)
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
# No slurmdbd: accounting is fragile here and gear must not need sacct.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
KillWait=10
MinJobAge=300
# Every started or cancelled array task is a record kept MinJobAge seconds: a few
# 1,000-trial sweeps reach Slurm's default of 10,000 and sbatch waits for everyone.
MaxJobCount=100000
MailProg=$mailprog
# Users do not see each other's jobs (names, comments, Extra, mail addresses): docs/admin.md.
PrivateData=jobs
GresTypes=gpu
# Advertise more CPUs and memory than this VM has.
SlurmdParameters=config_overrides
EOF
  if ((NODES)); then
    for n in $(compute_nodes); do
      echo "NodeName=$n NodeAddr=$(node_addr "$n") CPUs=8 RealMemory=16000 Gres=gpu:devgpu:$gpus State=UNKNOWN"
    done
  else
    echo "NodeName=$node CPUs=8 RealMemory=16000 Gres=gpu:devgpu:$gpus State=UNKNOWN"
  fi
  cat <<EOF
PartitionName=cpu Nodes=$nodes Default=YES MaxTime=1-00:00:00 State=UP
PartitionName=gpu Nodes=$nodes MaxTime=1-00:00:00 State=UP
EOF
}

fresh_state() {
  # Fresh Slurm state every time ("CLUSTER ID MISMATCH" otherwise).
  rm -rf "$ROOT/var/lib/slurm/slurmctld" "$ROOT/var/lib/slurm"/slurmd*
  mkdir -p "$ROOT/var/lib/slurm/slurmctld" "$ROOT/var/lib/slurm/slurmd"
  local n
  for n in $(compute_nodes); do mkdir -p "$ROOT/var/lib/slurm/slurmd-$n"; done
  chroot "$ROOT" chown slurm:slurm /var/lib/slurm/slurmctld
  # The state is wiped, but job ids must not start at 1 again: gear's ledger (on
  # /srv/gear, which survives) would mistake a new job for an old one. Continue
  # after the highest id this state dir has seen (remembered here, read from the log).
  local last=0 seen f
  [[ -r $STATE/last-job-id ]] && last=$(<"$STATE/last-job-id")
  [[ $last =~ ^[0-9]+$ ]] || last=0
  seen=$({ grep -o 'JobId=[0-9]*' "$LOGS/slurmctld.log" 2>/dev/null || true; } | cut -d= -f2 | sort -n | tail -n1)
  ((${seen:-0} > last)) && last=$seen
  echo "$last" >"$STATE/last-job-id"
  echo "FirstJobId=$((last + 1))" >>"$ROOT/etc/slurm/slurm.conf"
  for f in slurmctld slurmd munged $(for n in $(all_nodes); do echo "munged-$n"; done) \
           $(for n in $(compute_nodes); do echo "slurmd-$n"; done); do
    [[ -f $LOGS/$f.log ]] && mv -f "$LOGS/$f.log" "$LOGS/$f.log.prev"
    : >"$LOGS/$f.log"
  done
  # The daemons write these as their own users; numeric ids: the users exist only in the root.
  chown "$(chroot "$ROOT" id -u slurm):$(chroot "$ROOT" id -g slurm)" "$LOGS/slurmctld.log"
  chown "$(chroot "$ROOT" id -u munge):$(chroot "$ROOT" id -g munge)" "$LOGS/munged.log"
  chmod 0640 "$LOGS/munged.log"
  for n in $( ((NODES)) && all_nodes); do
    chown "$(chroot "$ROOT" id -u munge):$(chroot "$ROOT" id -g munge)" "$LOGS/munged-$n.log"
    chmod 0640 "$LOGS/munged-$n.log"
  done
}

# A running cluster whose slurm.conf is out of date (an older devcluster.sh wrote
# it) takes the new one with `scontrol reconfigure`: no restart, no lost jobs.
update_config() {
  local node current wanted mailprog=/bin/true
  [[ -x $ROOT/usr/local/bin/gear-mailprog ]] && mailprog=/usr/local/bin/gear-mailprog
  node=$(awk -F= '/^SlurmctldHost=/ {print $2}' "$ROOT/etc/slurm/slurm.conf")
  current=$(grep -v '^FirstJobId=' "$ROOT/etc/slurm/slurm.conf")
  wanted=$(slurm_conf "$node" "$mailprog")
  [[ $current == "$wanted" ]] && return 0
  # cgroup.conf first: slurmd reads it when the reconfigure restarts it (ProctrackType may have changed).
  cgroup_conf >"$ROOT/etc/slurm/cgroup.conf"
  { printf '%s\n' "$wanted"; grep '^FirstJobId=' "$ROOT/etc/slurm/slurm.conf"; } >"$ROOT/etc/slurm/slurm.conf.new"
  mv "$ROOT/etc/slurm/slurm.conf.new" "$ROOT/etc/slurm/slurm.conf"
  gres_conf "$node" >"$ROOT/etc/slurm/gres.conf"
  if in_ns scontrol reconfigure; then say "slurm.conf changed: reconfigured"
  else say "warning: slurm.conf changed but scontrol reconfigure failed: run 'devcluster.sh down' then 'up'"; fi
}

start_daemons() {  # fails (after showing the logs) rather than dying: `up` then stops the rest
  local node=$1 state="" deadline=$((SECONDS + 60)) d
  in_ns install -d -o munge -g munge -m 0755 /run/munge
  [[ -s $ROOT/etc/munge/munge.key ]] || in_ns runuser -u munge -- mungekey --create
  in_ns runuser -u munge -- /usr/sbin/munged --log-file="$LOGS/munged.log" </dev/null >/dev/null 2>&1 \
    || { show_daemon_logs; say "error: munged failed to start" >&2; return 1; }
  for d in slurmctld slurmd; do
    in_ns "/usr/sbin/$d" </dev/null >/dev/null 2>&1 || { show_daemon_logs; say "error: $d failed to start" >&2; return 1; }
  done
  while ((SECONDS < deadline)); do
    # sinfo retries for a long time when slurmctld is gone: bound each call, and
    # stop waiting as soon as a daemon has died (e.g. a fatal config error).
    # shellcheck disable=SC2016
    state=$(timeout 5 bash -c 'in_ns sinfo -h -N -n "$1" -o %T' _ "$node" 2>/dev/null | head -n1 || true)
    [[ $state == idle* ]] && return 0
    for d in munged slurmctld slurmd; do
      if [[ -z $(daemon_pids "$d") ]]; then
        show_daemon_logs; say "error: $d died while the node came up (see its log above)" >&2; return 1
      fi
    done
    sleep 0.5
  done
  show_daemon_logs
  say "error: node $node did not become idle in 60 s (state: '${state:-no answer}'); logs in $LOGS" >&2
  return 1
}

# A cluster of several nodes: munged on every node (one key), slurmctld on the
# controller, slurmd -N NAME on each compute node; fails like start_daemons.
start_node_daemons() {
  local n state="" deadline=$((SECONDS + 90)) d idle
  [[ -s $ROOT/etc/munge/munge.key ]] || in_ns runuser -u munge -- mungekey --create
  for n in $(all_nodes); do
    in_node "$n" chown munge:munge /run/munge
    # --seed-file: each node's own (the default one in /var/lib/munge is shared by all here).
    in_node "$n" runuser -u munge -- /usr/sbin/munged --log-file="$LOGS/munged-$n.log" --seed-file=/run/munge/seed \
      </dev/null >/dev/null 2>&1 || { show_daemon_logs; say "error: munged failed to start on $n" >&2; return 1; }
  done
  in_node controller /usr/sbin/slurmctld </dev/null >/dev/null 2>&1 \
    || { show_daemon_logs; say "error: slurmctld failed to start" >&2; return 1; }
  for n in $(compute_nodes); do
    in_node "$n" /usr/sbin/slurmd -N "$n" </dev/null >/dev/null 2>&1 \
      || { show_daemon_logs; say "error: slurmd failed to start on $n" >&2; return 1; }
  done
  while ((SECONDS < deadline)); do
    # shellcheck disable=SC2016
    state=$(timeout 5 bash -c 'in_ns sinfo -h -N -o "%N %T"' 2>/dev/null | sort -u || true)
    idle=$(awk '$2 ~ /^idle/' <<<"$state" | wc -l)
    ((idle == NODES)) && return 0
    for n in $(all_nodes); do
      for d in $(node_daemons "$n"); do
        if [[ -z $(daemon_pids "$d" "$n") ]]; then
          show_daemon_logs; say "error: $d died on $n while the cluster came up (see its log above)" >&2; return 1
        fi
      done
    done
    sleep 0.5
  done
  show_daemon_logs
  say "error: the compute nodes did not all become idle in 90 s (sinfo: ${state:-no answer}); logs in $LOGS" >&2
  return 1
}
