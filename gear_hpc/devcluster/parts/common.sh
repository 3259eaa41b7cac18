# shellcheck shell=bash
# parts/common.sh: messages, root and the lock, logged steps.

say() { printf 'devcluster: %s\n' "$*"; }
took() { printf '(%d s)' $((SECONDS - $1)); }   # took START_SECONDS
die() { printf 'devcluster: error: %s\n' "$1" >&2; exit "${2:-1}"; }   # die MESSAGE [EXIT_CODE]

need_root() { [[ $EUID -eq 0 ]] || die "'$1' must run as root (it manages namespaces, mounts and users)"; }

# Serialise up/down.  fd 9 must never leak into the holder or the daemons,
# or the lock would be held as long as the cluster runs: see in_ns/start_holder.
take_lock() {
  mkdir -p "$STATE"
  exec 9>"$LOCKFILE"
  flock -w 900 9 || die "another 'devcluster up/down' holds $LOCKFILE"
}

logged() {  # logged LOGFILE WHAT CMD...: keep the console short, show the log's tail on failure
  local log=$1 what=$2; shift 2
  if ! "$@" >>"$log" 2>&1; then
    tail -n 25 "$log" >&2
    die "$what failed (full log: $log)"
  fi
}
