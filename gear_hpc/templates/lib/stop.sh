# lib/stop.sh: a stop (TERM) or the time-limit warning (USR1) reaches the
# program. Uses exec_dir, payload (the program's pid) and kill_after (the
# seconds it gets before KILL), set by the template.

on_signal() {
  stop_reason=$1
  # Who stopped it, for the final record (the first who did): gear stop
  # leaves a marker before it cancels the job.
  if [ -n "${stopped_by:-}" ]; then :
  elif [ "$1" = timeout ]; then stopped_by="time limit"
  elif [ -e "$exec_dir/stop_request" ]; then stopped_by="gear stop"
  else stopped_by="scancel or Slurm"; fi
  kill -TERM "$payload" 2>/dev/null
  # A program that ignores TERM is killed before Slurm's own deadline. The
  # timer is stopped (with its sleep) once the program has gone.
  if [ -z "${kill_timer:-}" ]; then
    ( trap 'kill "$nap" 2>/dev/null; exit 0' TERM
      sleep "$kill_after" & nap=$!
      wait "$nap" && kill_tree "$payload" ) &
    kill_timer=$!
  fi
}

# Apptainer's helpers (squashfuse_ll, its fuse-overlayfs) are children of its
# starter in process groups of their own: a KILL of the starter alone left them
# running, re-parented to init (seen 27 min after a time limit). The program is
# killed as a tree: what runs below it, found through /proc, goes with it.
descendants() { # PID: the pids below PID
  local dir stat pid ppid found=" $1 " grew=1
  local -A parent=()
  for dir in /proc/[0-9]*; do
    [ -O "$dir" ] && read -r stat 2>/dev/null < "$dir/stat" || continue
    stat=${stat##*) }   # the name, in parentheses, may hold spaces
    read -r _ ppid _ <<< "$stat"
    parent[${dir#/proc/}]=$ppid
  done
  while [ "$grew" = 1 ]; do
    grew=0
    for pid in "${!parent[@]}"; do
      if [[ $found == *" ${parent[$pid]} "* && $found != *" $pid "* ]]; then found+="$pid "; grew=1; fi
    done
  done
  found=${found# "$1" }
  echo "$found"
}

kill_tree() { # PID: KILL it and everything below it
  local below
  below=$(descendants "$1")
  # shellcheck disable=SC2086  # a list of pids
  kill -KILL "$1" $below 2>/dev/null
}

# However the job ends: whatever of this job still runs orphaned (re-parented to
# init, in the batch shell's session, as its user) is a helper or a process the
# program left behind; Slurm with proctrack/cgroup would end it too.
end_leftovers() {
  local dir stat session ppid sid
  read -r stat < /proc/$$/stat && stat=${stat##*) } && read -r _ _ _ session _ <<< "$stat" || return 0
  for dir in /proc/[0-9]*; do
    [ -O "$dir" ] && read -r stat 2>/dev/null < "$dir/stat" || continue
    stat=${stat##*) }
    read -r _ ppid _ sid _ <<< "$stat"
    [ "$ppid" = 1 ] && [ "$sid" = "$session" ] && kill -KILL "${dir#/proc/}" 2>/dev/null
  done
  return 0
}
