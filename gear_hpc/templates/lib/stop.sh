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
      wait "$nap" && kill -KILL "$payload" 2>/dev/null ) &
    kill_timer=$!
  fi
}
