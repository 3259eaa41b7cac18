# shellcheck shell=bash
# parts/health.sh: is the cluster up and well (healthy, status), its daemons' pids and logs.

healthy() {
  local n
  holder_pid >/dev/null || return 1
  for n in $( ((NODES)) && all_nodes); do node_pid "$n" >/dev/null || return 1; done
  timeout 20 bash -c 'in_ns sinfo -h' >/dev/null 2>&1
}

show_daemon_logs() {
  local f logs=(munged slurmctld slurmd) n
  if ((NODES)); then
    logs=(slurmctld)
    for n in $(all_nodes); do logs+=("munged-$n"); done
    for n in $(compute_nodes); do logs+=("slurmd-$n"); done
  fi
  for f in "${logs[@]}"; do
    printf -- '--- tail of %s\n' "$LOGS/$f.log" >&2
    tail -n 15 "$LOGS/$f.log" >&2 2>/dev/null || true
  done
}

daemon_pids() {  # daemon_pids NAME [NODE]: pids of processes called NAME in the cluster (on NODE)
  local p nss
  holder_pid >/dev/null || return 0
  if [[ -n ${2:-} ]]; then p=$(node_pid "$2") || return 0; nss=$(mntns_of "$p"); else nss=$(cluster_nss); fi
  # shellcheck disable=SC2086
  for p in $(ns_pids $nss); do
    [[ $(cat "/proc/$p/comm" 2>/dev/null) == "$1" ]] || continue
    # On a node: its own processes, not those of a nested (Apptainer) namespace.
    [[ -z ${2:-} || $(mntns_of "$p") == "$nss" ]] && echo "$p"
  done
  return 0
}

node_daemons() {  # node_daemons NODE: the daemons a real site runs on that kind of node
  case $1 in
    login) echo munged ;;
    controller) echo munged slurmctld ;;
    *) echo munged slurmd ;;
  esac
}

cmd_status() {
  local pid name found rc=0
  if ! pid=$(holder_pid); then
    if [[ $EUID -eq 0 && -r $NSFILE ]] && [[ -n $(ns_pids "$(<"$NSFILE")") ]]; then
      say "down, but the holder died and processes of its namespace remain: run 'devcluster.sh down'"
    else
      say "down"
    fi
    return 3
  fi
  say "up: holder pid $pid, state $STATE"
  if [[ $EUID -ne 0 ]]; then say "(run as root for daemon and sinfo details)"; return 0; fi
  if ((NODES)); then
    node_status || rc=1
  else
    for name in munged slurmctld slurmd; do
      found=$(daemon_pids "$name" | tr '\n' ' ')
      if [[ -n $found ]]; then say "$name: running (pid ${found% })"; else say "$name: NOT running"; rc=1; fi
    done
  fi
  found=$(catcher_pids | tr '\n' ' ')
  if [[ -n $found ]]; then say "mail catcher: running (pid ${found% }) on 127.0.0.1:$SMTP_PORT"
  else say "mail catcher: NOT running"; rc=1; fi
  if ! timeout 20 bash -c 'in_ns sinfo' 2>&1; then say "sinfo: no answer"; rc=1; fi
  ((rc == 0)) || say "unhealthy: run 'devcluster.sh up' to restart it"
  return "$rc"
}

node_status() {  # one line a node: name, address, holder, daemons, Slurm's state; fails if any is missing
  local n pid d found line rc=0 states
  states=$(timeout 20 bash -c 'in_ns sinfo -h -N -o "%N %T"' 2>/dev/null | sort -u || true)
  for n in $(all_nodes); do
    line=$(printf '%-10s %-12s' "$n" "$(node_addr "$n")")
    if ! pid=$(node_pid "$n"); then say "$line node holder NOT running"; rc=1; continue; fi
    line+=" holder $pid"
    for d in $(node_daemons "$n"); do
      found=$(daemon_pids "$d" "$n" | tr '\n' ',')
      if [[ -n $found ]]; then line+=", $d ${found%,}"; else line+=", $d NOT running"; rc=1; fi
    done
    [[ $n == node* ]] && line+=", slurm: $(awk -v n="$n" '$1 == n {print $2}' <<<"$states" | head -n1)"
    say "$line"
  done
  return "$rc"
}
