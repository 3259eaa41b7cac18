# shellcheck shell=bash
# parts/commands.sh: the subcommands (up, down, exec, mail; status is in
# health.sh) and main.

usage() {
  cat <<EOF
usage: devcluster.sh up [--nodes N] [--slurm 24.11|26.05]
                                              build (if needed) and start the cluster; re-sync gear
                                              --nodes N: a login node, a controller and N compute
                                              nodes (0: one node is all three); --slurm: trixie's
                                              or sid's Slurm; default: as the cluster was
                                              (first time: --nodes 2 --slurm 24.11)
       devcluster.sh down                     stop everything the cluster runs
       devcluster.sh status                   exit 0 if up, 3 if down, 1 if up but unhealthy
       devcluster.sh exec [--user NAME] [--cwd DIR] [--node NODE] [--] [COMMAND...]
                                              run COMMAND in the cluster as NAME (default root;
                                              created on first use); no COMMAND: a bash shell;
                                              on the login node, or on NODE
       devcluster.sh group NAME [USER...]     a Unix group (same gid on the host and inside) with these
                                              members added (users created on first use), as a site's
                                              project groups; idempotent
       devcluster.sh mail [--last N] [--json] [--clear]
                                              the mail the cluster sent (caught on 127.0.0.1:$SMTP_PORT)
environment: GEAR_DEVCLUSTER_DIR (state, default /var/lib/gear-devcluster)
             GEAR_DEVCLUSTER_STORAGE (the storage root here, /srv/gear inside; default /srv/gear)
             GEAR_REPO (gear-hpc checkout, default: two levels above this script)
             GEAR_DEVCLUSTER_MIRROR (Debian mirror, default http://deb.debian.org/debian)
EOF
}

cmd_up() {
  need_root up
  local t0=$SECONDS node pid wanted="" release=""
  while (($#)); do
    case $1 in
      --nodes) [[ $# -ge 2 && $2 =~ ^[0-9]+$ && $2 -le 16 ]] || die "--nodes needs a number from 0 to 16" 2
               wanted=$((10#$2)); shift 2 ;;
      --slurm) [[ $# -ge 2 ]] && slurm_suite "$2" >/dev/null || die "--slurm needs a release: 24.11 or 26.05" 2
               release=$2; shift 2 ;;
      *) die "up: unknown option $1 (usage: up [--nodes N] [--slurm 24.11|26.05])" 2 ;;
    esac
  done
  take_lock
  mkdir -p "$CACHE" "$IMAGES" "$LOGS"
  if [[ ( -n $wanted && $wanted != "$NODES" ) || ( -n $release && $release != "$SLURM" ) ]] && holder_pid >/dev/null; then
    say "the cluster runs with --nodes $NODES --slurm $SLURM: stopping it to start it" \
      "with --nodes ${wanted:-$NODES} --slurm ${release:-$SLURM}"
    stop_cluster
  fi
  [[ -n $wanted ]] && NODES=$wanted
  [[ -n $release ]] && SLURM=$release
  if healthy; then
    # Packages added to the lists since the cluster started are installed in
    # place (apt --no-upgrade: what the running daemons use is left alone).
    root_packages
    # In subshells: a failed image build must not stop the cluster (the old SIF stays in place).
    (ensure_python_image) || say "warning: the python image was not rebuilt; the old one stays"
    (ensure_jupyter_image) || say "warning: the jupyter image was not built; gear jupyter will not work"
    install_gear
    mailprog_dirs
    storage_layout
    update_config
    start_mailcatcher
    say "already up and healthy (holder pid $(holder_pid)): only re-synced gear and site-config"
    say "devcluster up in $((SECONDS - t0)) s"
    return 0
  fi
  if holder_pid >/dev/null || [[ -e $NSFILE ]]; then
    say "a previous cluster is not healthy: stopping it"
    stop_cluster
  fi
  ensure_host_packages
  ensure_root_and_image
  ensure_slurm_release
  (ensure_jupyter_image) || say "warning: the jupyter image was not built; gear jupyter will not work"
  install_gear      # before the config: MailProg points at gear-mailprog when it exists
  node=$(hostname -s)
  shape >"$SHAPEFILE"
  write_config "$node"
  storage_layout
  if ((NODES)); then
    start_holder
    pid=$(holder_pid)
    start_nodes
    if ! start_node_daemons; then
      stop_cluster
      die "the cluster did not come up; it was stopped again (logs: $LOGS)"
    fi
    say "started the login node, the controller (munged, slurmctld) and $NODES compute nodes (munged, slurmd)" \
      "(holder pid $pid); partitions cpu, gpu"
    start_mailcatcher
    say "devcluster up in $((SECONDS - t0)) s"
    return 0
  fi
  # The namespace shares the host's network: a Slurm already listening here
  # would answer our sinfo and make our slurmctld die ("Address already in use").
  local port
  for port in 6817 6818; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      die "port $port is in use: another Slurm runs on this machine (stop it first)"
    fi
  done
  start_holder
  pid=$(holder_pid)
  if ! start_daemons "$node"; then
    stop_cluster
    die "the cluster did not come up; it was stopped again (logs: $LOGS)"
  fi
  say "started munged, slurmctld, slurmd (holder pid $pid); node $node idle; partitions cpu, gpu"
  start_mailcatcher
  say "devcluster up in $((SECONDS - t0)) s"
}

cmd_down() {
  need_root down
  take_lock
  if ! holder_pid >/dev/null && [[ ! -e $NSFILE ]]; then
    rm -f "$PIDFILE"
    say "already down"
    return 0
  fi
  stop_cluster
  say "down: all processes of the cluster namespace stopped"
}

cmd_exec() {
  local user=root cwd="" strict=0 node=""
  while (($#)); do
    case $1 in
      --user) [[ $# -ge 2 ]] || die "--user needs a name"; user=$2; shift 2 ;;
      --user=*) user=${1#--user=}; shift ;;
      --cwd) [[ $# -ge 2 ]] || die "--cwd needs a directory"; cwd=$2; strict=1; shift 2 ;;
      --cwd=*) cwd=${1#--cwd=}; strict=1; shift ;;
      --node) [[ $# -ge 2 ]] || die "--node needs a node's name" 2; node=$2; shift 2 ;;
      --node=*) node=${1#--node=}; shift ;;
      --) shift; break ;;
      -*) die "exec: unknown option $1 (usage: exec [--user NAME] [--cwd DIR] [--node NODE] -- COMMAND...)" 2 ;;
      *) break ;;
    esac
  done
  [[ $user =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "invalid user name '$user' (allowed: [a-z_][a-z0-9_-]{0,31})" 2
  [[ $EUID -eq 0 ]] || die "exec must run as root: only root may enter the cluster's mount namespace" 2
  local how; how=$(entry) || die "the devcluster is not up (run: devcluster.sh up)" 3
  if [[ -n $node ]]; then   # another node than the login node (an admin's ssh to it)
    ((NODES)) && all_nodes | grep -qx -- "$node" || die "no node '$node' (nodes: $( ((NODES)) && all_nodes | tr '\n' ' '))" 2
    how="$(node_pid "$node") -m -u -n -r -w" || die "node $node is not up" 3
  fi
  (($#)) || set -- /bin/bash -l
  # Serialise user creation: two first uses at once must not both useradd.
  (flock -w 60 8; ensure_user "$user") 8>"$STATE/.users.lock"
  [[ -z $cwd ]] && cwd=$PWD
  local home; home=$(chroot "$ROOT" getent passwd "$user" | cut -d: -f6)
  local envs=(HOME="$home" USER="$user" LOGNAME="$user" PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8) v
  for v in $(compgen -e); do
    [[ $v == GEAR_* && $v != GEAR_DEVCLUSTER_DIR && $v != GEAR_REPO ]] && envs+=("$v=${!v}")
  done
  # The command travels as argv ("$@" of sh), never re-parsed as a shell string.
  # shellcheck disable=SC2016
  local launch='d=$1 strict=$2; shift 2
if [ -d "$d" ] && [ -r "$d" ] && [ -x "$d" ] && cd -- "$d"; then :
elif [ "$strict" = 1 ]; then echo "devcluster exec: cannot enter directory $d as $(id -un)" >&2; exit 125
else cd -- "$HOME" 2>/dev/null || cd /; fi
exec "$@"'
  # On the login node of a cluster of several nodes (its hostname and network too).
  # shellcheck disable=SC2086  # "PID FLAGS..." split on purpose
  exec nsenter -t $how -- runuser -u "$user" -- \
    /usr/bin/env -i "${envs[@]}" /bin/sh -c "$launch" devcluster-exec "$cwd" "$strict" "$@" 9>&-
}

cmd_group() {  # a project group, as an admin makes one, for sharing (docs/cli.md, Sharing)
  need_root group
  (($#)) || die "usage: group NAME [USER...]" 2
  local name=$1 user; shift
  [[ $name =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "invalid group name '$name'" 2
  for user in "$@"; do
    [[ $user =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "invalid user name '$user'" 2
  done
  holder_pid >/dev/null || die "the devcluster is not up (run: devcluster.sh up)" 3
  (
    flock -w 60 8
    getent group "$name" >/dev/null || groupadd "$name"
    local gid; gid=$(getent group "$name" | cut -d: -f3)
    local inside; inside=$(chroot "$ROOT" getent group "$name" | cut -d: -f3 || true)
    if [[ -z $inside ]]; then
      chroot "$ROOT" groupadd -g "$gid" "$name"
    elif [[ $inside != "$gid" ]]; then
      die "group $name has gid $inside in the root but $gid on the host"
    fi
    for user in "$@"; do
      ensure_user "$user"
      usermod -a -G "$name" "$user"
      chroot "$ROOT" usermod -a -G "$name" "$user"
    done
  ) 8>"$STATE/.users.lock"
}

cmd_mail() {  # show (or clear) what the mail catcher caught; works while the cluster is down too
  local action=show args=()
  while (($#)); do
    case $1 in
      --last) [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || die "--last needs a number" 2; args+=(--last "$2"); shift 2 ;;
      --json) args+=(--json); shift ;;
      --clear) action=clear; shift ;;
      *) die "mail: unknown option $1 (usage: mail [--last N] [--json] [--clear])" 2 ;;
    esac
  done
  [[ $action == clear ]] && args=()
  command -v python3 >/dev/null || die "mail needs python3 on this machine"
  python3 "$(dirname "$SELF")/mailcatcher.py" "$action" --dir "$MAILDIR" "${args[@]}"
}

main() {
  local cmd=${1:-help}; (($#)) && shift
  read_shape
  case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    exec) cmd_exec "$@" ;;
    mail) cmd_mail "$@" ;;
    group) cmd_group "$@" ;;
    __ns) ns_main "$@" ;;
    help | -h | --help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}
