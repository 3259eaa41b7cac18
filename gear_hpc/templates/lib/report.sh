# lib/report.sh: the outcome, for the mail. Uses home, set by the template,
# which defines report STATUS EXIT_CODE SAVED: the field gear-mailprog reads.

# gear-mailprog runs on the controller as SlurmUser and cannot read this
# directory: tell it the outcome through the job's Extra field. Bounded, and
# never fatal: the notification must not hold up or fail the execution.
set_job_extra() { # Extra=VALUE: sets the job's Extra field, with the size saved added
  # size: what the saved working directory holds on disk that nothing outside
  # it holds (blocks, each hard link once; a continuation's links to its
  # parent's unchanged files are the parent's), as `gear show` counts.
  local size
  size=$(timeout 20 find "$home" -printf '%y %i %n %b\n' 2>/dev/null | awk '
           $1 == "d" {s += $4; next}
           !($2 in links) {links[$2] = $3; blocks[$2] = $4}
           {seen[$2]++}
           END {for (i in links) if (seen[i] >= links[i]) s += blocks[i]; printf "%.0f\n", s * 512}'
         exit "${PIPESTATUS[0]}") || size=""
  timeout 10 scontrol update "JobId=${SLURM_JOB_ID:-0}" \
    "$1${size:+;size=$size}" >/dev/null 2>&1 || true
}
