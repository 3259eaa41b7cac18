# shellcheck shell=bash
# parts/nodes.sh: the nodes of a cluster of several nodes (`up --nodes N`): a login
# node, a controller and N compute nodes on one machine.
#
# A node is a network namespace (its own address on a private bridge) and a node
# holder process inside it with its own hostname (a UTS namespace) and its own
# mount namespace, a copy of the cluster's: the same root file system and storage
# (as NFS would share them), but its own /run/munge and, on compute nodes, its own
# node-local scratch at /local/scratch.  The bridge lives in a namespace of its own
# too, so nothing of the cluster touches the host's network.  With NODES=0 there
# are no node holders and the one cluster namespace is all three kinds of node.

NODES_DIR=$STATE/nodes            # NAME.pid: the node holders' pids
NODE_HOLDER_NAME=gear-devcluster-node
SUBNET=10.77.0                    # /24 on the bridge; only inside namespaces this script creates
SCRATCH_INSIDE=/local/scratch     # each compute node's own (site workdir.scratch_dir)
# Network namespaces are machine-wide names: one prefix per state directory keeps two clusters apart.
NETNS=gdc$(printf '%s' "$STATE" | cksum | cut -d' ' -f1)

compute_nodes() { local k; for ((k = 1; k <= NODES; k++)); do echo "node$k"; done; }
all_nodes() { echo login; echo controller; compute_nodes; }
node_addr() {
  case $1 in
    login) echo "$SUBNET.2" ;;
    controller) echo "$SUBNET.3" ;;
    node*) echo "$SUBNET.$((10 + ${1#node}))" ;;
  esac
}
node_gpus() { local k=${1#node}; echo "$((2 * k - 2))-$((2 * k - 1))"; }   # two placeholder GPUs a node

node_pid() {  # node_pid NAME: the node holder's pid if it is alive, else fails
  local pid
  [[ -r $NODES_DIR/$1.pid ]] || return 1
  pid=$(<"$NODES_DIR/$1.pid")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  [[ $(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n1) == "$NODE_HOLDER_NAME" ]] || return 1
  printf '%s\n' "$pid"
}

# Where root's commands (sinfo, scontrol) and users' (exec) run: the login node of a
# cluster of several nodes, else the one cluster namespace.  Prints "PID NSENTER-FLAGS...".
entry() {
  local pid
  if [[ -e $NODES_DIR/login.pid ]]; then
    pid=$(node_pid login) || return 1
    echo "$pid -m -u -n -r -w"
  else
    pid=$(holder_pid) || return 1
    echo "$pid -m -r -w"
  fi
}

in_node() {  # in_node NAME COMMAND...: run as root on that node, clean environment
  local pid; pid=$(node_pid "$1") || die "node $1 is not up (run: devcluster.sh up)" 3
  shift
  nsenter -t "$pid" -m -u -n -r -w -- /usr/bin/env -i PATH="$INNER_PATH" LANG=C.UTF-8 HOME=/root "$@" 9>&-
}

# Where the controller's programs run (the mail catcher beside slurmctld's MailProg).
in_controller() { if ((NODES)); then in_node controller "$@"; else in_ns "$@"; fi; }

port_open() {  # port_open PORT: something listens on 127.0.0.1:PORT where the controller runs
  # shellcheck disable=SC2016
  if ((NODES)); then
    nsenter --net="/run/netns/$NETNS-controller" -- bash -c '(exec 3<>"/dev/tcp/127.0.0.1/$1")' _ "$1" 2>/dev/null
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

# The bridge in a namespace of its own, and a veth pair from it to each node's namespace.
create_network() {
  local fabric=$NETNS-fabric n
  delete_network
  ip netns add "$fabric"
  ip -n "$fabric" link set lo up
  ip -n "$fabric" link add br0 type bridge
  ip -n "$fabric" link set br0 up
  for n in $(all_nodes); do
    ip netns add "$NETNS-$n"
    ip -n "$NETNS-$n" link set lo up
    ip -n "$fabric" link add "v-$n" type veth peer name eth0 netns "$NETNS-$n"
    ip -n "$fabric" link set "v-$n" master br0 up
    ip -n "$NETNS-$n" addr add "$(node_addr "$n")/24" dev eth0
    ip -n "$NETNS-$n" link set eth0 up
  done
}

delete_network() {  # every network namespace of this cluster (their veths and the bridge go with them)
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    [[ $ns == "$NETNS"-* ]] && ip netns del "$ns"
  done
  return 0
}

write_hosts() {  # the root's /etc/hosts: every node by name, as a site's DNS would have them
  local n
  {
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'
    for n in $(all_nodes); do printf '%s\t%s\n' "$(node_addr "$n")" "$n"; done
  } >"$ROOT/etc/hosts"
}

start_node() {  # start_node NAME: its holder, in its network namespace, with its hostname and mounts
  local name=$1 scratch="" i holder
  holder=$(holder_pid) || die "the cluster namespace is not up"
  if [[ $name == node* ]]; then
    scratch=$STATE/scratch/$name   # the cluster namespace sees $STATE/scratch (ns_main)
    rm -rf --one-file-system "$scratch"
    install -d -m 1777 "$scratch"
  fi
  rm -f "$NODES_DIR/$name.pid" "$NODES_DIR/$name.pid.new"
  : >"$NODES_DIR/$name.pid.new"
  # The node's mount namespace is a copy of the cluster's, made after pivot_root: the
  # same root and storage (whose mount stays shared with the other nodes': --propagation
  # unchanged); /run/munge and the scratch directory are its own.
  # shellcheck disable=SC2016  # expanded by the node's bash
  setsid nsenter -t "$holder" -m -r -w --net="/run/netns/$NETNS-$name" -- \
    unshare --uts --mount --propagation unchanged -- /bin/bash -c '
      echo "$1" >/proc/sys/kernel/hostname
      mkdir -p /run/munge && mount -t tmpfs -o mode=0755 tmpfs /run/munge || exit 1
      if [ -n "$2" ]; then mount --bind "$2" "$3" || exit 1; fi
      echo $$ >&3; exec 3>&-
      exec -a "$4" sleep infinity' node "$name" "$scratch" "$SCRATCH_INSIDE" "$NODE_HOLDER_NAME" \
    </dev/null >>"$LOGS/holder.log" 2>&1 3>"$NODES_DIR/$name.pid.new" 9>&- &
  disown $!
  for ((i = 0; i < 100; i++)); do
    [[ -s $NODES_DIR/$name.pid.new ]] && break
    sleep 0.1
  done
  [[ -s $NODES_DIR/$name.pid.new ]] || { tail -n 20 "$LOGS/holder.log" >&2; die "node $name did not start (log: $LOGS/holder.log)"; }
  mv "$NODES_DIR/$name.pid.new" "$NODES_DIR/$name.pid"
  for ((i = 0; i < 20; i++)); do node_pid "$name" >/dev/null && break; sleep 0.05; done
  node_pid "$name" >/dev/null || die "node $name started but is not alive (log: $LOGS/holder.log)"
  mntns_of "$(node_pid "$name")" >>"$NSFILE"   # `down` stops its processes with the rest
}

start_nodes() {
  local n
  mkdir -p "$NODES_DIR"
  rm -f "$NODES_DIR"/*.pid
  create_network
  for n in $(all_nodes); do start_node "$n"; done
}

stop_nodes() {  # after stop_cluster killed their processes: forget them, remove the network
  rm -rf "$NODES_DIR"
  delete_network
}

# --nodes and --slurm of `up`; without them the running (or last) cluster's shape.
read_shape() {
  local word
  if [[ ! -r $SHAPEFILE ]]; then
    # A cluster started before shapes were kept is a cluster of one node: it stays one.
    if holder_pid >/dev/null; then NODES=0; fi
    return 0
  fi
  for word in $(<"$SHAPEFILE"); do
    case $word in
      nodes=*) NODES=${word#nodes=} ;;
      slurm=*) SLURM=${word#slurm=} ;;
    esac
  done
  [[ $NODES =~ ^[0-9]+$ ]] || NODES=0
  slurm_suite "$SLURM" >/dev/null || SLURM=$DEFAULT_SLURM
}
shape() { printf 'nodes=%s slurm=%s\n' "$NODES" "$SLURM"; }
