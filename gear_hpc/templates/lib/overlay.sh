# lib/overlay.sh: the fuse-overlayfs mount of a continuation, and its end.
# Uses work (the mount point) and overlay_daemon (its daemon's pid, or empty).

mounted() { # MOUNTPOINT: whether it is one (as /proc/self/mountinfo escapes it)
  local want=${1//\\/\\134} point _
  want=${want// /\\040}
  want=${want//$'\t'/\\011}
  want=${want//$'\n'/\\012}
  while read -r _ _ _ _ point _; do
    [ "$point" = "$want" ] && return 0
  done < /proc/self/mountinfo
  return 1
}

overlay_daemon_of() { # MOUNTPOINT: the pid of this user's fuse-overlayfs that serves it
  local dir comm args
  for dir in /proc/[0-9]*; do
    [ -O "$dir" ] && read -r comm 2>/dev/null < "$dir/comm" && [ "$comm" = fuse-overlayfs ] || continue
    mapfile -d '' args 2>/dev/null < "$dir/cmdline" || continue
    # An exiting process has an empty cmdline: args[-1] of nothing is an error in bash.
    [ -n "${args[*]:-}" ] && [ "${args[-1]}" = "$1" ] && { echo "${dir#/proc/}"; return 0; }
  done
  return 1
}

# Whatever ends the job (a failed copy-in, a failed save, a signal), its
# overlay must not outlive it: a mount left behind holds the execution's
# directory (gear delete refuses a mount point) and its daemon runs on.
overlay_lazy=false
release_overlay() { # idempotent
  local i
  if mounted "$work"; then unmount "$work"; fi
  if [ -n "$overlay_daemon" ]; then
    # Cleanly unmounted, it serves nothing more but takes a second or two to
    # exit on its own (measured: 1-2 s with 20,000 files below): end it now.
    # After a lazy unmount it may still serve what the program left behind:
    # give that a few seconds first.
    if [ "$overlay_lazy" = true ]; then
      for ((i = 0; i < 50; i++)); do
        kill -0 "$overlay_daemon" 2>/dev/null || break
        sleep 0.1
      done
    fi
    kill -TERM "$overlay_daemon" 2>/dev/null
    overlay_daemon=""
  fi
}

unmount() { # MOUNTPOINT: the upper layer is final only once the overlay is gone
  fusermount3 -u "$1" 2>/dev/null || fusermount -u "$1" 2>/dev/null && return 0
  # Still busy (a process the program left behind): detach it anyway.
  echo "gear: $1 is busy; unmounting it lazily" >&2
  overlay_lazy=true
  fusermount3 -u -z "$1" 2>/dev/null || fusermount -u -z "$1" 2>/dev/null
}

wait_for() { # PID: its exit code, even when a trapped signal interrupts the wait
  local rc
  while :; do
    wait "$1"
    rc=$?
    [ "$rc" -le 128 ] && return "$rc"
    kill -0 "$1" 2>/dev/null || return "$rc"
  done
}
