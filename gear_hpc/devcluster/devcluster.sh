#!/usr/bin/env bash
# devcluster.sh — a real single-machine Slurm + Apptainer cluster for trying gear-hpc.
#
# The whole cluster (Slurm 24.11 and munge from Debian 13, Apptainer from sid,
# Python 3) lives in a debootstrapped Debian 13 root directory.  The daemons run
# in a private mount namespace whose root is that directory, so every job (of
# root or of an ordinary user) inherits it and finds Apptainer.  One "holder"
# process keeps the namespace alive; everything else enters it with nsenter.
# By default the cluster has a login node, a controller and two compute nodes,
# each a network namespace with a node holder of its own (parts/nodes.sh);
# `up --nodes 0` makes the one namespace all three.  Slurm is 24.11 or, with
# `up --slurm 26.05`, sid's.
#
# Usage: see usage() in parts/commands.sh, or `bash devcluster.sh help`.
# What it does, and how it differs from a real cluster: docs/devcluster.md.
#
# Each phase is a file of functions in parts/ beside this script (read one to
# change one): namespace, packages, root, images, gear, slurm, mail, users,
# health, commands. They are sourced from this script's own directory, so the
# copies of it that run inside namespaces (bash "$SELF" __ns ...) find them.
set -euo pipefail
# The cluster's files are system files that daemons (munge, slurm) and users
# read: whatever umask the caller has (gear itself runs with 077), use 022.
umask 022

SELF=$(realpath "${BASH_SOURCE[0]}")
STATE=$(realpath -m "${GEAR_DEVCLUSTER_DIR:-/var/lib/gear-devcluster}")
ROOT=$STATE/root
CACHE=$STATE/cache
IMAGES=$STATE/images
LOGS=$STATE/logs
BUILD=$STATE/build
PIDFILE=$STATE/holder.pid
NSFILE=$STATE/holder.ns          # mount-namespace id, so `down` still works if the holder died
LOCKFILE=$STATE/.lock
# The storage root on this machine, bound at /srv/gear inside (site-config's storage_root):
# a second cluster on the same machine keeps its ledgers apart with GEAR_DEVCLUSTER_STORAGE.
STORAGE=$(realpath -m "${GEAR_DEVCLUSTER_STORAGE:-/srv/gear}")
STORAGE_INSIDE=/srv/gear
IMAGES_INSIDE=/var/lib/gear-devcluster/images   # where site-config/images.yaml finds the SIFs
SHAPEFILE=$STATE/shape           # the running cluster's shape: "nodes=N slurm=V" (parts/nodes.sh)
DEFAULT_NODES=2
NODES=$DEFAULT_NODES             # compute nodes beside a login node and a controller; 0: one node is all three
DEFAULT_SLURM=24.11
SLURM=$DEFAULT_SLURM             # Slurm's release in the root (parts/packages.sh): 24.11 or 26.05
GEAR_REPO=${GEAR_REPO:-$(realpath -m "$(dirname "$SELF")/../..")}
MIRROR=${GEAR_DEVCLUSTER_MIRROR:-http://deb.debian.org/debian}
SUITE=trixie
HOLDER_NAME=gear-devcluster-holder
MAILDIR=$LOGS/mail               # every message the mail catcher received, one file each
SMTP_PORT=2525                   # the catcher's port: mail.smtp_port in site-config/site.yaml
INNER_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

PARTS=$(dirname "$SELF")/parts
# shellcheck source=parts/common.sh
source "$PARTS/common.sh"
# shellcheck source=parts/namespace.sh
source "$PARTS/namespace.sh"
# shellcheck source=parts/packages.sh
source "$PARTS/packages.sh"
# shellcheck source=parts/root.sh
source "$PARTS/root.sh"
# shellcheck source=parts/images.sh
source "$PARTS/images.sh"
# shellcheck source=parts/gear.sh
source "$PARTS/gear.sh"
# shellcheck source=parts/nodes.sh
source "$PARTS/nodes.sh"
# shellcheck source=parts/slurm.sh
source "$PARTS/slurm.sh"
# shellcheck source=parts/mail.sh
source "$PARTS/mail.sh"
# shellcheck source=parts/users.sh
source "$PARTS/users.sh"
# shellcheck source=parts/health.sh
source "$PARTS/health.sh"
# shellcheck source=parts/commands.sh
source "$PARTS/commands.sh"

export -f in_ns in_node in_controller holder_pid node_pid entry die
export PIDFILE HOLDER_NAME NODE_HOLDER_NAME NODES_DIR NODES INNER_PATH
main "$@"
