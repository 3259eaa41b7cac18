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
in_ns() {  # run a command as root inside the cluster (on its login node, if it has several), clean environment
  local how; how=$(entry) || die "the devcluster is not up (run: devcluster.sh up)" 3
  # shellcheck disable=SC2086  # "PID FLAGS..." split on purpose
  nsenter -t $how -- /usr/bin/env -i PATH="$INNER_PATH" LANG=C.UTF-8 HOME=/root "$@" 9>&-
}

mntns_of() { local l; l=$(readlink "/proc/$1/ns/mnt") && l=${l#mnt:[} && printf '%s\n' "${l%]}"; }

ns_pids() {  # live processes in the mount namespaces given (inode numbers), plus all their descendants
  # Apptainer runs containers in nested mount namespaces: follow the process tree too.
  # Zombies are skipped: they are dead already and are reaped by whoever inherits them.
  ps -e -o pid=,ppid=,stat=,mntns= | awk -v ns="$*" '
    BEGIN { n = split(ns, list, " "); for (i = 1; i <= n; i++) want[list[i]] = 1 }
    $3 !~ /^Z/ { pid[NR] = $1; ppid[NR] = $2; if ($4 in want) s[$1] = 1 }
    END {
      do { grew = 0
           for (i in pid) if ((ppid[i] in s) && !(pid[i] in s)) { s[pid[i]] = 1; grew = 1 }
      } while (grew)
      for (p in s) print p
    }' | sort -n
}

cluster_nss() {  # the cluster's mount namespaces: the holder's, then each node's (NSFILE)
  local pid
  if [[ -r $NSFILE ]]; then sort -u "$NSFILE" | grep -vx "$(mntns_of self)"
  elif pid=$(holder_pid); then mntns_of "$pid"; fi
  return 0
}

stop_cluster() {  # kill every process of the namespaces, then forget the holders and the network
  local pid="" i
  local -a pids nss
  pid=$(holder_pid) || true
  mapfile -t nss < <(cluster_nss)
  if ((${#nss[@]})); then
    # TERM first (slurmd and slurmstepd clean up; jobs see their trap), the holders last.
    local keep=${pid:-0} f
    for f in "$NODES_DIR"/*.pid; do [[ -r $f ]] && keep+="|$(<"$f")"; done
    keep="^($keep)$"
    mapfile -t pids < <(ns_pids "${nss[@]}" | grep -Evx "$keep")
    ((${#pids[@]})) && { kill -TERM "${pids[@]}" 2>/dev/null || true; }
    for ((i = 0; i < 25; i++)); do
      mapfile -t pids < <(ns_pids "${nss[@]}" | grep -Evx "$keep")
      ((${#pids[@]})) || break
      sleep 0.2
    done
    # Whatever ignored TERM for 5 s (slurmstepd does), and the holders: KILL.
    mapfile -t pids < <(ns_pids "${nss[@]}")
    ((${#pids[@]})) && { kill -KILL "${pids[@]}" 2>/dev/null || true; }
    for ((i = 0; i < 50; i++)); do
      mapfile -t pids < <(ns_pids "${nss[@]}")
      ((${#pids[@]})) || break
      sleep 0.1
    done
    ((${#pids[@]} == 0)) || die "processes of the cluster namespace survived SIGKILL: ${pids[*]}"
  fi
  rm -f "$PIDFILE" "$NSFILE"
  stop_nodes
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
      mkdir -p "$STATE/scratch"         # the compute nodes' node-local scratch directories (parts/nodes.sh)
      for d in /home /tmp "$IMAGES" "$LOGS" "$STATE/scratch"; do bind_same "$d"; done
      # The storage root and the images where site-config expects them, wherever they are here.
      mkdir -p "$ROOT$STORAGE_INSIDE" "$ROOT$IMAGES_INSIDE" "$ROOT$SCRATCH_INSIDE"
      mount --rbind "$STORAGE" "$ROOT$STORAGE_INSIDE"
      # Shared: the nodes' mount namespaces are copies (parts/nodes.sh), and a mount below the
      # storage root on one node (a test's full disk) is seen on all of them, as with NFS.
      mount --make-shared "$ROOT$STORAGE_INSIDE"
      if [[ $STORAGE != "$STORAGE_INSIDE" ]]; then   # also at its path here, so a path means the same on both sides
        mkdir -p "$ROOT$STORAGE"
        mount --bind "$ROOT$STORAGE_INSIDE" "$ROOT$STORAGE"
      fi
      [[ $IMAGES == "$IMAGES_INSIDE" ]] || mount --rbind "$IMAGES" "$ROOT$IMAGES_INSIDE"
      # Users' squashfuse needs a usable /dev/fuse; a private 0666 node over the
      # host's 0600 one changes nothing outside this namespace.
      if [[ -e /dev/fuse ]]; then
        mknod -m 0666 "$ROOT/run/gear-fuse" c 10 229
        mount --bind "$ROOT/run/gear-fuse" "$ROOT/dev/fuse"
      fi
      install -d -m 1777 "$ROOT/run/lock"
      # Placeholder GPUs: Slurm 24.11 wants GRES files to be character devices.
      mkdir -p "$ROOT/run/gear-gpu"
      for ((i = 0; i < (NODES > 2 ? 2 * NODES : 4); i++)); do mknod -m 0666 "$ROOT/run/gear-gpu/nvidia$i" c 195 "$i"; done
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
