# lib/record.sh: the status records gear folds into the ledger.
# Uses status_file, started_at and last_save, set by the template.

now() { date -u +%Y-%m-%dT%H:%M:%SZ; }

# Write to a temporary name, then rename: a reader never sees half a record.
record() { # PHASE STATUS EXIT_CODE SAVED [EXTRA_JSON_FIELDS]
  local tmp="$status_file.$BASHPID.tmp"
  printf '{"phase": "%s", "status": "%s", "exit_code": %s, "saved": %s, "at": "%s", "started_at": "%s", "last_save": "%s", "slurm_job_id": "%s", "node": "%s"%s}\n' \
    "$1" "$2" "$3" "$4" "$(now)" "$started_at" "$last_save" "${SLURM_JOB_ID:-}" "$(hostname -s)" "${5:+, $5}" > "$tmp" \
    && mv -f "$tmp" "$status_file"
}

json_string() { # TEXT: as a JSON string (notes name paths, which may hold quotes)
  local text=${1//\\/\\\\}
  text=${text//\"/\\\"}
  text=${text//$'\t'/\\t}
  text=${text//$'\n'/\\n}
  printf '"%s"' "$text"
}

# Slurm requeues every job of a node it marks down, also one whose program had
# already completed and whose working directory was saved (seen: slurmd killed,
# node DOWN, three such jobs requeued and run again). That run's result stands.
# Its final record, as record writes it (these fields first, in this order) and
# of this job, says so; the record gains "not_rerun": the run that found it.
completed_before() {
  local line
  line=$(head -c 8192 "$status_file" 2>/dev/null) || return 1
  [[ $line == '{"phase": "final", "status": "completed", "exit_code": 0, "saved": true, '* ]] \
    && [[ $line == *"\"slurm_job_id\": \"${SLURM_JOB_ID:-}\""* ]] || return 1
  [[ $line == *'"not_rerun": '* ]] && return 0
  printf '%s, "not_rerun": %s}\n' "${line%\}}" "$((${SLURM_RESTART_COUNT:-0} + 1))" > "$status_file.$BASHPID.tmp" \
    && mv -f "$status_file.$BASHPID.tmp" "$status_file"
  return 0
}
