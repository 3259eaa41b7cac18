# shellcheck shell=bash
# parts/health.sh: is the cluster up and well (healthy, status), its daemons' pids and logs.

healthy() { holder_pid >/dev/null && timeout 20 bash -c 'in_ns sinfo -h' >/dev/null 2>&1; }

show_daemon_logs() {
  local f
  for f in munged slurmctld slurmd; do
    printf -- '--- tail of %s\n' "$LOGS/$f.log" >&2
    tail -n 15 "$LOGS/$f.log" >&2 2>/dev/null || true
  done
}

daemon_pids() {  # daemon_pids NAME: pids of processes called NAME in the cluster namespace
  local pid p
  pid=$(holder_pid) || return 0
  for p in $(ns_pids "$(mntns_of "$pid")"); do
    [[ $(cat "/proc/$p/comm" 2>/dev/null) == "$1" ]] && echo "$p"
  done
  return 0
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
  for name in munged slurmctld slurmd; do
    found=$(daemon_pids "$name" | tr '\n' ' ')
    if [[ -n $found ]]; then say "$name: running (pid ${found% })"; else say "$name: NOT running"; rc=1; fi
  done
  found=$(catcher_pids | tr '\n' ' ')
  if [[ -n $found ]]; then say "mail catcher: running (pid ${found% }) on 127.0.0.1:$SMTP_PORT"
  else say "mail catcher: NOT running"; rc=1; fi
  if ! timeout 20 bash -c 'in_ns sinfo' 2>&1; then say "sinfo: no answer"; rc=1; fi
  ((rc == 0)) || say "unhealthy: run 'devcluster.sh up' to restart it"
  return "$rc"
}
