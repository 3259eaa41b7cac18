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
