# lib/copy.sh: rsync copies that report their progress as status records.

# rsync's --info=progress2 lines ("1,234  45%  1.2MB/s  0:00:01 (xfr#3, to-chk=7/10)")
# become status records, at most one a second, so `gear status` shows speed.
progress() { # PHASE STARTED_EPOCH
  local phase=$1 started=$2 last=0 line now files total
  # rsync prints a line per file: read the clock without a new process
  # (printf %()T) and skip every line until a second has passed.
  while IFS= read -r -d $'\r' line || [ -n "$line" ]; do
    printf -v now '%(%s)T' -1
    if [ "$now" -gt "$last" ] && [[ ${line##*$'\n'} =~ ^[[:space:]]*([0-9,]+)[[:space:]]+([0-9]+)% ]]; then
      last=$now
      local bytes=${BASH_REMATCH[1]//,/} percent=${BASH_REMATCH[2]}
      files=null total=null
      if [[ $line =~ (to|ir)-chk=([0-9]+)/([0-9]+) ]]; then
        total=${BASH_REMATCH[3]}
        files=$((total - BASH_REMATCH[2]))
      fi
      record "$phase" "$phase" null false "\"progress\": {\"bytes\": $bytes, \"percent\": $percent, \"files\": $files, \"files_total\": $total, \"seconds\": $((now - started))}"
    fi
    line=""
  done
}

# copy SRC/ DST/ PHASE [RSYNC_OPTIONS…]: returns rsync's exit code. Any
# non-zero code (20 signal, 23 partial, 24 vanished, 11 disk full…) is a
# failed copy, never reported as saved.
copy() {
  local src=$1 dst=$2 phase=$3
  shift 3
  rsync -a --safe-links --info=progress2 "$@" "$src" "$dst" \
    | progress "$phase" "$(date +%s)"
  return "${PIPESTATUS[0]}"
}
