# shellcheck shell=bash
# parts/namespace.sh: the holder process and its private mount namespace:
# finding it, entering it (in_ns), starting it, stopping everything in it,
# and what runs inside a fresh one (`devcluster.sh __ns KIND`).

holder_pid() {  # prints the holder's pid if it is alive, else fails
  local pid
  [[ -r $PIDFILE ]] || return 1
  pid=$(<"$PIDFILE")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  # Guard against a recycled pid (e.g. after a reboot): check its argv[0].
  [[ $(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n1) == "$HOLDER_NAME" ]] || return 1
  printf '%s\n' "$pid"
}

# nsenter -w (no argument) = the holder's cwd, which is the new "/".  `--wd=/` or no
# -w would open the directory in the *caller's* namespace: a cwd outside the root.
in_ns() {  # run a command as root inside the cluster namespace, clean environment
  local pid; pid=$(holder_pid) || die "the devcluster is not up (run: devcluster.sh up)" 3
  nsenter -t "$pid" -m -r -w -- /usr/bin/env -i PATH="$INNER_PATH" LANG=C.UTF-8 HOME=/root "$@" 9>&-
}

mntns_of() { local l; l=$(readlink "/proc/$1/ns/mnt") && l=${l#mnt:[} && printf '%s\n' "${l%]}"; }

ns_pids() {  # live processes in mount namespace $1 (inode number), plus all their descendants
  # Apptainer runs containers in nested mount namespaces: follow the process tree too.
  # Zombies are skipped: they are dead already and are reaped by whoever inherits them.
  ps -e -o pid=,ppid=,stat=,mntns= | awk -v ns="$1" '
    $3 !~ /^Z/ { pid[NR] = $1; ppid[NR] = $2; if ($4 == ns) s[$1] = 1 }
    END {
      do { grew = 0
           for (i in pid) if ((ppid[i] in s) && !(pid[i] in s)) { s[pid[i]] = 1; grew = 1 }
      } while (grew)
      for (p in s) print p
    }' | sort -n
}

stop_cluster() {  # kill every process of the namespace, then forget the holder
  local ns="" pid="" i
  local -a pids
  pid=$(holder_pid) && ns=$(mntns_of "$pid")
  [[ -z $ns && -r $NSFILE ]] && ns=$(<"$NSFILE")
  if [[ -n $ns && $ns != "$(mntns_of self)" ]]; then
    # TERM first (slurmd and slurmstepd clean up; jobs see their trap), the holder last.
    mapfile -t pids < <(ns_pids "$ns" | grep -vx "${pid:-0}")
    ((${#pids[@]})) && { kill -TERM "${pids[@]}" 2>/dev/null || true; }
    for ((i = 0; i < 25; i++)); do
      mapfile -t pids < <(ns_pids "$ns" | grep -vx "${pid:-0}")
      ((${#pids[@]})) || break
      sleep 0.2
    done
    # Whatever ignored TERM for 5 s (slurmstepd does), and the holder: KILL.
    mapfile -t pids < <(ns_pids "$ns")
    ((${#pids[@]})) && { kill -KILL "${pids[@]}" 2>/dev/null || true; }
    for ((i = 0; i < 50; i++)); do
      mapfile -t pids < <(ns_pids "$ns")
      ((${#pids[@]})) || break
      sleep 0.1
    done
    ((${#pids[@]} == 0)) || die "processes of the cluster namespace survived SIGKILL: ${pids[*]}"
  fi
  rm -f "$PIDFILE" "$NSFILE"
}

# ---------------------------------------------------------------- inside a fresh namespace

# Runs as `unshare --mount --propagation private -- bash devcluster.sh __ns KIND ...`.
# Builds the cluster's view of the world in the private mount namespace, then
# pivot_root into $ROOT: Apptainer refuses a plain chroot ("weak chrooted environment").
ns_main() {
  local kind=$1; shift
  bind_same() { mkdir -p "$ROOT$1"; mount --rbind "$1" "$ROOT$1"; }
  mount --bind "$ROOT" "$ROOT"            # pivot_root needs the new root to be a mount point
  mount -t proc proc "$ROOT/proc"
  mount --rbind /sys "$ROOT/sys"
  mount --rbind /dev "$ROOT/dev"
  mount -t tmpfs -o mode=0755 tmpfs "$ROOT/run"
  case $kind in
    build)
      mkdir -p "$CACHE/apt" "$BUILD" "$IMAGES"
      mount --bind "$CACHE/apt" "$ROOT/var/cache/apt/archives"   # keep .debs across rebuilds
      bind_same "$BUILD"; bind_same "$IMAGES"
      ;;
    cluster)
      local d i
      for d in /home /srv/gear /tmp "$IMAGES" "$LOGS"; do bind_same "$d"; done
      # Users' squashfuse needs a usable /dev/fuse; a private 0666 node over the
      # host's 0600 one changes nothing outside this namespace.
      if [[ -e /dev/fuse ]]; then
        mknod -m 0666 "$ROOT/run/gear-fuse" c 10 229
        mount --bind "$ROOT/run/gear-fuse" "$ROOT/dev/fuse"
      fi
      install -d -m 1777 "$ROOT/run/lock"
      # Placeholder GPUs: Slurm 24.11 wants GRES files to be character devices.
      mkdir -p "$ROOT/run/gear-gpu"
      for i in 0 1 2 3; do mknod -m 0666 "$ROOT/run/gear-gpu/nvidia$i" c 195 "$i"; done
      ;;
  esac
  cd "$ROOT"
  pivot_root . .
  umount -l .                              # detach the host's root from our view
  cd /
  case $kind in
    build) exec /usr/bin/env -i PATH="$INNER_PATH" LANG=C.UTF-8 HOME=/root \
                DEBIAN_FRONTEND=noninteractive "$@" ;;
    cluster)
      echo $$ >&3; exec 3>&-               # tell `up` we are ready (fd 3 = holder.pid.new)
      exec -a "$HOLDER_NAME" sleep infinity ;;
  esac
}

run_build_ns() {  # run a command in a throw-away build namespace rooted at $ROOT
  unshare --mount --propagation private -- bash "$SELF" __ns build "$@" 9>&-
}

start_holder() {
  rm -f "$PIDFILE" "$PIDFILE.new" "$NSFILE"
  : >"$PIDFILE.new"
  # setsid: the holder must not die with the caller's terminal or process group.
  # Its fds: nothing the caller waits on (a Python wrapper's pipes would never close).
  setsid unshare --mount --propagation private -- bash "$SELF" __ns cluster \
    </dev/null >>"$LOGS/holder.log" 2>&1 3>"$PIDFILE.new" 9>&- &
  local bg=$! i
  disown "$bg"   # no "Killed" job notice from bash when `down` ends it
  for ((i = 0; i < 100; i++)); do
    [[ -s $PIDFILE.new ]] && break
    if ! kill -0 "$bg" 2>/dev/null && [[ ! -s $PIDFILE.new ]]; then
      tail -n 20 "$LOGS/holder.log" >&2; die "the namespace holder failed to start (log: $LOGS/holder.log)"
    fi
    sleep 0.1
  done
  [[ -s $PIDFILE.new ]] || die "the namespace holder did not get ready in 10 s (log: $LOGS/holder.log)"
  mv "$PIDFILE.new" "$PIDFILE"
  local pid; pid=$(holder_pid) || die "holder started but is not alive (log: $LOGS/holder.log)"
  mntns_of "$pid" >"$NSFILE"
}
