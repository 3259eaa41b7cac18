#!/usr/bin/env bash
# devcluster.sh — a real single-machine Slurm + Apptainer cluster for trying gear-hpc.
#
# The whole cluster (Slurm 24.11 and munge from Debian 13, Apptainer from sid,
# Python 3) lives in a debootstrapped Debian 13 root directory.  The daemons run
# in a private mount namespace whose root is that directory, so every job (of
# root or of an ordinary user) inherits it and finds Apptainer.  One "holder"
# process keeps the namespace alive; everything else enters it with nsenter.
#
# Usage: see usage() below, or `bash devcluster.sh help`.
# Facts behind the quirks handled here: /work/shared/notes/test-cluster.md.
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
GEAR_REPO=${GEAR_REPO:-$(realpath -m "$(dirname "$SELF")/../..")}
MIRROR=${GEAR_DEVCLUSTER_MIRROR:-http://deb.debian.org/debian}
SUITE=trixie
HOLDER_NAME=gear-devcluster-holder
MAILDIR=$LOGS/mail               # every message the mail catcher received, one file each
SMTP_PORT=2525                   # the catcher's port: mail.smtp_port in site-config/site.yaml
INNER_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# Packages of the cluster root.  Changing these lists re-runs apt (not debootstrap).
PKGS_TRIXIE=(slurmctld slurmd slurm-client munge python3 python3-click python3-jinja2
             python3-yaml rsync squashfs-tools
             fuse-overlayfs     # continuing an execution: its parent's working directory as a read-only lower layer
             python3-aiosmtpd   # the mail catcher (gear_hpc/devcluster/mailcatcher.py)
             python3-nbformat python3-nbconvert python3-ipython   # gear convert, gear run -- x.ipynb
             gocryptfs)   # only so Apptainer stops printing "INFO: gocryptfs not found" in every job
PKGS_SID=(apptainer squashfuse fuse2fs fuse3)   # Apptainer exists only in sid
ROOT_RECIPE="v1 trixie:${PKGS_TRIXIE[*]} sid:${PKGS_SID[*]} sqlite-utils"
ROOT_MARKER=$ROOT/.gear-devcluster-complete      # written last: the root is complete
BOOTSTRAP_MARKER=$ROOT/.gear-devcluster-debootstrapped

say() { printf 'devcluster: %s\n' "$*"; }
took() { printf '(%d s)' $((SECONDS - $1)); }   # took START_SECONDS
die() { printf 'devcluster: error: %s\n' "$1" >&2; exit "${2:-1}"; }   # die MESSAGE [EXIT_CODE]

usage() {
  cat <<EOF
usage: devcluster.sh up                       build (if needed) and start the cluster; re-sync gear
       devcluster.sh down                     stop everything the cluster runs
       devcluster.sh status                   exit 0 if up, 3 if down, 1 if up but unhealthy
       devcluster.sh exec [--user NAME] [--cwd DIR] [--] [COMMAND...]
                                              run COMMAND in the cluster as NAME (default root;
                                              created on first use); no COMMAND: a bash shell
       devcluster.sh mail [--last N] [--json] [--clear]
                                              the mail the cluster sent (caught on 127.0.0.1:$SMTP_PORT)
environment: GEAR_DEVCLUSTER_DIR (state, default /var/lib/gear-devcluster)
             GEAR_REPO (gear-hpc checkout, default: two levels above this script)
             GEAR_DEVCLUSTER_MIRROR (Debian mirror, default http://deb.debian.org/debian)
EOF
}

need_root() { [[ $EUID -eq 0 ]] || die "'$1' must run as root (it manages namespaces, mounts and users)"; }

# Serialise up/down.  fd 9 must never leak into the holder or the daemons,
# or the lock would be held as long as the cluster runs: see in_ns/start_holder.
take_lock() {
  mkdir -p "$STATE"
  exec 9>"$LOCKFILE"
  flock -w 900 9 || die "another 'devcluster up/down' holds $LOCKFILE"
}

# ---------------------------------------------------------------- holder / namespace state

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

healthy() { holder_pid >/dev/null && timeout 20 bash -c 'in_ns sinfo -h' >/dev/null 2>&1; }

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

logged() {  # logged LOGFILE WHAT CMD...: keep the console short, show the log's tail on failure
  local log=$1 what=$2; shift 2
  if ! "$@" >>"$log" 2>&1; then
    tail -n 25 "$log" >&2
    die "$what failed (full log: $log)"
  fi
}

# ---------------------------------------------------------------- build steps

ensure_host_packages() {
  local missing=() p
  for p in debootstrap rsync util-linux mount procps passwd debian-archive-keyring; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  say "installing host packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$LOGS/host-apt.log" 2>&1; then
    logged "$LOGS/host-apt.log" "apt-get update (host)" apt-get update -q
    logged "$LOGS/host-apt.log" "apt-get install (host)" apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

configure_root_apt() {
  rm -f "$ROOT/etc/apt/sources.list"
  cat >"$ROOT/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: trixie sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # sid's Release file has been seen expired on the mirror: don't let that stop us.
  cat >"$ROOT/etc/apt/apt.conf.d/90gear-devcluster" <<'EOF'
Acquire::Check-Valid-Until "false";
Acquire::Languages "none";
APT::Default-Release "trixie";
APT::Install-Recommends "false";
Binary::apt::APT::Keep-Downloaded-Packages "true";
EOF
  # Packages must not start their daemons in the root: we start them ourselves.
  printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
  chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
}

root_debootstrap() {
  local t
  mkdir -p "$CACHE/debootstrap" "$CACHE/apt"
  [[ -f $BOOTSTRAP_MARKER ]] && return
  [[ -n $ROOT && $ROOT != / ]] && rm -rf --one-file-system "$ROOT"   # a partial one: start over
  say "root: debootstrap $SUITE minbase into $ROOT ... (log: $LOGS/build.log)"
  t=$SECONDS
  # On disk, not /tmp: debootstrap fails on a nodev tmpfs (Debian 13's /tmp).
  logged "$LOGS/build.log" "debootstrap of the root" debootstrap --variant=minbase \
    --cache-dir="$CACHE/debootstrap" "$SUITE" "$ROOT" "$MIRROR"
  touch "$BOOTSTRAP_MARKER"
  say "root: debootstrap done $(took $t)"
}

root_packages() {
  local t
  if [[ -f $ROOT_MARKER && $(<"$ROOT_MARKER") == "$ROOT_RECIPE" ]]; then
    say "root: reusing $ROOT"
    return
  fi
  say "root: installing Slurm, munge, Python (trixie) and Apptainer (sid) ..."
  t=$SECONDS
  configure_root_apt
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
  local sid_pkgs=() p
  for p in "${PKGS_SID[@]}"; do sid_pkgs+=("$p/sid"); done
  # shellcheck disable=SC2016  # expanded by the root's bash, not here
  logged "$LOGS/build.log" "apt in the root" run_build_ns bash -euo pipefail -c '
    apt-get update -q
    apt-get install -y -q --no-upgrade "$@"
    # sqlite-utils: from trixie if trixie has it, else from PyPI into /usr/local.
    for p in python3-sqlite-utils sqlite-utils; do
      if apt-cache madison "$p" | grep -q " trixie/"; then apt-get install -y -q "$p"; exit 0; fi
    done
    apt-get install -y -q python3-pip
    pip3 install --no-cache-dir --break-system-packages --prefix /usr/local sqlite-utils
  ' apt-script "${PKGS_TRIXIE[@]}" "${sid_pkgs[@]}"
  # chroot: slurmctld etc. are alternatives symlinks into the root's /etc/alternatives.
  chroot "$ROOT" sh -c 'command -v apptainer && command -v slurmctld && command -v munged' >/dev/null \
    || die "packages missing in the root after apt (see $LOGS/build.log)"
  printf '%s' "$ROOT_RECIPE" >"$ROOT_MARKER"
  say "root: packages installed $(took $t)"
}

# Every image answers to `python`, `python3`, `pip` and `pip3`, and carries
# labels saying what it holds (gear_hpc/image_manifest.py, read by `gear images
# NAME`).  A SIF is rebuilt when its recipe (the string below, kept beside it as
# NAME.sif.recipe) changes: bump the version when the build steps change.
PYTHON_IMAGE_APT=(python3 python3-pip python-is-python3)
PYTHON_IMAGE_RECIPE="v3 apt:${PYTHON_IMAGE_APT[*]} pip.conf labels"

image_current() {  # image_current NAME RECIPE: NAME.sif exists and was built from RECIPE
  local sif=$IMAGES/$1.sif
  [[ -s $sif && -f $sif.recipe && $(<"$sif.recipe") == "$2" ]]
}

image_finish() {  # image_finish DIR DEBIAN_PACKAGE...: pip.conf and the labels, before apptainer build
  local dir=$1; shift
  # A && chain, not set -e: this runs under `logged`, where set -e is off.
  # pip.conf: PEP 668 makes Debian's pip refuse `pip install --user X`
  # ("externally managed"); in a read-only image nothing of the system's can be
  # broken, and a job's own packages go to its $HOME (docs/devcluster.md).
  # The CA bundle: a job's pip trusts what this machine trusts (a site's
  # TLS-inspecting proxy has its CA only here).
  printf '[global]\nbreak-system-packages = true\n' >"$dir/etc/pip.conf" &&
    { [[ ! -d $dir/etc/ssl/certs || ! -s /etc/ssl/certs/ca-certificates.crt ]] ||
        cp -L /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"; } &&
    mkdir -p "$dir/.singularity.d" &&
    cp "$GEAR_REPO/gear_hpc/image_manifest.py" "$dir/tmp/gear-image-manifest.py" &&
    chroot "$dir" /usr/bin/env -i PATH=/usr/bin:/bin LANG=C.UTF-8 \
      /usr/bin/python3 -I -B /tmp/gear-image-manifest.py --format json "$@" >"$dir/.singularity.d/labels.json" &&
    rm -f "$dir/tmp/gear-image-manifest.py" &&
    cat "$dir/.singularity.d/labels.json"
}

image_install() {  # image_install NAME DIR RECIPE LOG: build NAME.sif from DIR, renamed into place
  # Running jobs hold the old SIF open: a rename leaves them their inode.
  logged "$4" "apptainer build ($1)" \
    run_build_ns apptainer build --force "$IMAGES/$1.sif.new" "$2"
  mv "$IMAGES/$1.sif.new" "$IMAGES/$1.sif"
  printf '%s' "$3" >"$IMAGES/$1.sif.recipe"
}

# The python image's file system: a second minbase debootstrap, with python3 and pip.
# Explicit `|| return`: on the healthy path this runs under `logged` (set -e off).
image_debootstrap() {
  local dir=$BUILD/python-root
  rm -rf --one-file-system "$dir"; mkdir -p "$BUILD"
  local include; include=$(IFS=,; printf '%s' "${PYTHON_IMAGE_APT[*]}")
  debootstrap --variant=minbase --include="$include" --cache-dir="$CACHE/debootstrap" \
    "$SUITE" "$dir" "$MIRROR" || return 1
  # Nothing of apt's state or the docs is useful in a read-only image.
  rm -rf "$dir"/var/cache/apt/* "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc/* \
         "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/usr/share/locale/*
  image_finish "$dir" "${PYTHON_IMAGE_APT[@]}" || return 1
}

build_python_image() {  # build_python_image START_SECONDS: the SIF from the debootstrapped directory
  mkdir -p "$IMAGES"
  image_install python "$BUILD/python-root" "$PYTHON_IMAGE_RECIPE" "$LOGS/image.log"
  rm -rf --one-file-system "$BUILD/python-root"
  say "image python: built $IMAGES/python.sif $(took $1)"
}

# Root, then image.  The image's debootstrap runs while apt works in the root: they
# use separate caches, and only the root's debootstrap must come first (it fills the cache).
IMAGE_BG=""
kill_image_bg() { [[ -n $IMAGE_BG ]] && kill -- "-$IMAGE_BG" 2>/dev/null; return 0; }

ensure_root_and_image() {
  local t=$SECONDS
  root_debootstrap
  if ! image_current python "$PYTHON_IMAGE_RECIPE"; then
    say "image python: debootstrap in the background ... (log: $LOGS/image.log)"
    : >"$LOGS/image.log"
    set -m   # its own process group, so a failure here can stop all of it
    image_debootstrap >>"$LOGS/image.log" 2>&1 </dev/null 9>&- &
    IMAGE_BG=$!
    set +m
    trap kill_image_bg EXIT
  fi
  root_packages
  [[ -n $IMAGE_BG ]] || { say "image python: reusing $IMAGES/python.sif"; return; }
  if ! wait "$IMAGE_BG"; then
    IMAGE_BG=""; tail -n 25 "$LOGS/image.log" >&2; die "debootstrap of the image failed (full log: $LOGS/image.log)"
  fi
  IMAGE_BG=""; trap - EXIT
  build_python_image "$t"
}

# `up` on a healthy cluster: rebuild a python image whose recipe changed (an
# old python.sif without `python`, kept by a machine from earlier runs).
ensure_python_image() {
  local t=$SECONDS
  image_current python "$PYTHON_IMAGE_RECIPE" && return 0
  say "image python: its recipe changed, rebuilding ... (log: $LOGS/image.log)"
  : >"$LOGS/image.log"
  logged "$LOGS/image.log" "debootstrap of the python image" image_debootstrap </dev/null 9>&-
  build_python_image "$t"
}

# The JupyterLab image (`gear jupyter`, the OnDemand app): a minbase debootstrap
# with Debian's Python and rsync, JupyterLab and gear's Python dependencies from
# PyPI (Debian's jupyterlab pulls in ~700 node packages).  Built when missing or
# when its recipe changed.
JUPYTER_IMAGE_APT=(python3 python3-pip python-is-python3 ca-certificates rsync procps)
JUPYTER_IMAGE_PIP=(jupyterlab ipykernel click jinja2 pyyaml sqlite-utils nbformat nbconvert)
JUPYTER_IMAGE_RECIPE="v3 apt:${JUPYTER_IMAGE_APT[*]} pip:${JUPYTER_IMAGE_PIP[*]} pip.conf labels"
ensure_jupyter_image() {
  local t=$SECONDS dir=$BUILD/jupyter-root log=$LOGS/image-jupyter.log
  if image_current jupyter "$JUPYTER_IMAGE_RECIPE"; then say "image jupyter: reusing $IMAGES/jupyter.sif"; return; fi
  say "image jupyter: debootstrap + JupyterLab from PyPI ... (log: $log)"
  : >"$log"
  rm -rf --one-file-system "$dir"; mkdir -p "$BUILD"
  logged "$log" "debootstrap of the jupyter image" debootstrap --variant=minbase \
    --cache-dir="$CACHE/debootstrap" "$SUITE" "$dir" "$MIRROR"
  cp -L /etc/resolv.conf "$dir/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"; chmod 0755 "$dir/usr/sbin/policy-rc.d"
  # pip trusts what the host trusts (a site's TLS-inspecting proxy has its CA only there).
  cp -L /etc/ssl/certs/ca-certificates.crt "$dir/tmp/host-ca.crt" 2>/dev/null || true
  # shellcheck disable=SC2016  # expanded by the inner bash
  logged "$log" "packages of the jupyter image" unshare --mount --propagation private -- bash -euo pipefail -c '
    dir=$1 n=$2; shift 2
    mount -t proc proc "$dir/proc"
    inside() { chroot "$dir" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin LANG=C.UTF-8 \
             HOME=/root DEBIAN_FRONTEND=noninteractive "$@"; }
    inside apt-get update -q
    inside apt-get install -y -q --no-install-recommends "${@:1:n}"
    cert=(); [[ -s $dir/tmp/host-ca.crt ]] && cert=(--cert /tmp/host-ca.crt)
    inside pip3 install --no-cache-dir --break-system-packages --root-user-action=ignore "${cert[@]}" "${@:n+1}"
    umount "$dir/proc"
  ' build "$dir" "${#JUPYTER_IMAGE_APT[@]}" "${JUPYTER_IMAGE_APT[@]}" "${JUPYTER_IMAGE_PIP[@]}"
  rm -f "$dir/usr/sbin/policy-rc.d" "$dir/tmp/host-ca.crt"
  # Mount points for what a site binds in so that `gear` works inside (site.yaml jupyter.binds).
  mkdir -p "$dir/run/munge" "$dir/etc/slurm" "$dir/etc/gear" "$dir/opt/gear-hpc" "$dir/srv/gear"
  rm -rf "$dir"/var/cache/apt/* "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc/* "$dir"/usr/share/man/*
  logged "$log" "labels of the jupyter image" image_finish "$dir" "${JUPYTER_IMAGE_APT[@]}"
  image_install jupyter "$dir" "$JUPYTER_IMAGE_RECIPE" "$log"
  rm -rf --one-file-system "$dir"
  say "image jupyter: built $IMAGES/jupyter.sif $(took $t)"
}

install_gear() {
  [[ -d $GEAR_REPO/gear_hpc ]] || die "no gear_hpc/ in GEAR_REPO=$GEAR_REPO"
  mkdir -p "$ROOT/opt/gear-hpc/lib/gear_hpc" "$ROOT/usr/local/bin"
  # go+r: the files are read by ordinary users inside, whatever the checkout's umask was.
  rsync -a --delete --delete-excluded --exclude=__pycache__ --exclude='*.pyc' \
    --chmod=Dgo+rx,Fgo+r "$GEAR_REPO/gear_hpc/" "$ROOT/opt/gear-hpc/lib/gear_hpc/"
  # Bytecode, as pip would install it: users cannot write __pycache__ here, and
  # without it every `gear` command would compile gear from source first.
  chroot "$ROOT" python3 -m compileall -q /opt/gear-hpc/lib/gear_hpc >/dev/null
  local name mod
  for name in gear gear-mailprog; do
    mod=gear_hpc.cli; [[ $name == gear-mailprog ]] && mod=gear_hpc.notify.mailprog
    printf '#!/usr/bin/python3\nimport sys\nsys.path.insert(0, "/opt/gear-hpc/lib")\nfrom %s import main\nsys.exit(main())\n' \
      "$mod" >"$ROOT/usr/local/bin/$name.new"
    chmod 0755 "$ROOT/usr/local/bin/$name.new"
    mv "$ROOT/usr/local/bin/$name.new" "$ROOT/usr/local/bin/$name"
  done
  say "gear: synced $GEAR_REPO/gear_hpc -> /opt/gear-hpc/lib/gear_hpc"
  if [[ -d $GEAR_REPO/site-config ]]; then
    mkdir -p "$ROOT/etc/gear"
    rsync -a --delete --chmod=Dgo+rx,Fgo+r "$GEAR_REPO/site-config/" "$ROOT/etc/gear/"
    say "site-config: synced $GEAR_REPO/site-config -> /etc/gear"
  else
    say "site-config: none in $GEAR_REPO, /etc/gear left as is"
  fi
}

# ---------------------------------------------------------------- configuration and start

write_config() {
  local node=$1 mailprog=/bin/true
  [[ -x $ROOT/usr/local/bin/gear-mailprog ]] && mailprog=/usr/local/bin/gear-mailprog
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
  cp -L /etc/hosts "$ROOT/etc/hosts"
  # Slurm must resolve the node name.
  getent -s files hosts "$node" >/dev/null || printf '127.0.1.1\t%s\n' "$node" >>"$ROOT/etc/hosts"
  # This VM's root lacks CAP_SYS_RESOURCE: Apptainer as root fails to set its default caps.
  sed -i 's/^#\?\s*root default capabilities\s*=.*/root default capabilities = no/' \
    "$ROOT/etc/apptainer/apptainer.conf"
  grep -q '^root default capabilities = no' "$ROOT/etc/apptainer/apptainer.conf" \
    || echo 'root default capabilities = no' >>"$ROOT/etc/apptainer/apptainer.conf"

  mkdir -p "$ROOT/etc/slurm"
  slurm_conf "$node" "$mailprog" >"$ROOT/etc/slurm/slurm.conf"
  cat >"$ROOT/etc/slurm/gres.conf" <<EOF
AutoDetect=off
NodeName=$node Name=gpu Type=devgpu File=/run/gear-gpu/nvidia[0-3]
EOF
  echo 'CgroupPlugin=disabled' >"$ROOT/etc/slurm/cgroup.conf"
  mailprog_dirs
  fresh_state
}

# gear-mailprog's own places, SlurmUser's alone (docs/admin.md): the log names
# users' addresses and numbers; the state directory keeps the SMS counts.
mailprog_dirs() {
  install -d -m 0700 "$ROOT/var/log/gear" "$ROOT/var/spool/gear-mailprog"
  chroot "$ROOT" chown slurm:slurm /var/log/gear /var/spool/gear-mailprog
  chmod 0700 "$ROOT/var/log/gear"
  if [[ -e $ROOT/var/log/gear/mail.log ]]; then chmod 0600 "$ROOT/var/log/gear/mail.log"; fi
}

slurm_conf() {  # slurm_conf NODE MAILPROG: the text of slurm.conf (FirstJobId is added by fresh_state)
  local node=$1 mailprog=$2
  cat <<EOF
# Written by devcluster.sh on every bring-up; edits are lost.
ClusterName=gear-dev
SlurmctldHost=$node
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroup file system here: track processes by /proc, no task plugin.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
# No slurmdbd: accounting is fragile here and gear must not need sacct.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
KillWait=10
MinJobAge=300
MailProg=$mailprog
# Users do not see each other's jobs (names, comments, Extra, mail addresses): docs/admin.md.
PrivateData=jobs
GresTypes=gpu
# Advertise more CPUs and memory than this VM has.
SlurmdParameters=config_overrides
NodeName=$node CPUs=8 RealMemory=16000 Gres=gpu:devgpu:4 State=UNKNOWN
PartitionName=cpu Nodes=$node Default=YES MaxTime=1-00:00:00 State=UP
PartitionName=gpu Nodes=$node MaxTime=1-00:00:00 State=UP
EOF
}

fresh_state() {
  # Fresh Slurm state every time ("CLUSTER ID MISMATCH" otherwise).
  rm -rf "$ROOT/var/lib/slurm/slurmctld" "$ROOT/var/lib/slurm/slurmd"
  mkdir -p "$ROOT/var/lib/slurm/slurmctld" "$ROOT/var/lib/slurm/slurmd"
  chroot "$ROOT" chown slurm:slurm /var/lib/slurm/slurmctld
  # The state is wiped, but job ids must not start at 1 again: gear's ledger (on
  # /srv/gear, which survives) would mistake a new job for an old one. Continue
  # after the highest id this state dir has seen (remembered here, read from the log).
  local last=0 seen f
  [[ -r $STATE/last-job-id ]] && last=$(<"$STATE/last-job-id")
  [[ $last =~ ^[0-9]+$ ]] || last=0
  seen=$({ grep -o 'JobId=[0-9]*' "$LOGS/slurmctld.log" 2>/dev/null || true; } | cut -d= -f2 | sort -n | tail -n1)
  ((${seen:-0} > last)) && last=$seen
  echo "$last" >"$STATE/last-job-id"
  echo "FirstJobId=$((last + 1))" >>"$ROOT/etc/slurm/slurm.conf"
  for f in slurmctld slurmd munged; do
    [[ -f $LOGS/$f.log ]] && mv -f "$LOGS/$f.log" "$LOGS/$f.log.prev"
    : >"$LOGS/$f.log"
  done
  # The daemons write these as their own users; numeric ids: the users exist only in the root.
  chown "$(chroot "$ROOT" id -u slurm):$(chroot "$ROOT" id -g slurm)" "$LOGS/slurmctld.log"
  chown "$(chroot "$ROOT" id -u munge):$(chroot "$ROOT" id -g munge)" "$LOGS/munged.log"
  chmod 0640 "$LOGS/munged.log"
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

show_daemon_logs() {
  local f
  for f in munged slurmctld slurmd; do
    printf -- '--- tail of %s\n' "$LOGS/$f.log" >&2
    tail -n 15 "$LOGS/$f.log" >&2 2>/dev/null || true
  done
}

daemon_pids() {  # daemon_pids NAME: pids of processes called NAME in the cluster namespace
  local pid p
  pid=$(holder_pid) || return 0
  for p in $(ns_pids "$(mntns_of "$pid")"); do
    [[ $(cat "/proc/$p/comm" 2>/dev/null) == "$1" ]] && echo "$p"
  done
  return 0
}

start_daemons() {  # fails (after showing the logs) rather than dying: `up` then stops the rest
  local node=$1 state="" deadline=$((SECONDS + 60)) d
  in_ns install -d -o munge -g munge -m 0755 /run/munge
  [[ -s $ROOT/etc/munge/munge.key ]] || in_ns runuser -u munge -- mungekey --create
  in_ns runuser -u munge -- /usr/sbin/munged --log-file="$LOGS/munged.log" </dev/null >/dev/null 2>&1 \
    || { show_daemon_logs; say "error: munged failed to start" >&2; return 1; }
  for d in slurmctld slurmd; do
    in_ns "/usr/sbin/$d" </dev/null >/dev/null 2>&1 || { show_daemon_logs; say "error: $d failed to start" >&2; return 1; }
  done
  while ((SECONDS < deadline)); do
    # sinfo retries for a long time when slurmctld is gone: bound each call, and
    # stop waiting as soon as a daemon has died (e.g. a fatal config error).
    # shellcheck disable=SC2016
    state=$(timeout 5 bash -c 'in_ns sinfo -h -N -n "$1" -o %T' _ "$node" 2>/dev/null | head -n1 || true)
    [[ $state == idle* ]] && return 0
    for d in munged slurmctld slurmd; do
      if [[ -z $(daemon_pids "$d") ]]; then
        show_daemon_logs; say "error: $d died while the node came up (see its log above)" >&2; return 1
      fi
    done
    sleep 0.5
  done
  show_daemon_logs
  say "error: node $node did not become idle in 60 s (state: '${state:-no answer}'); logs in $LOGS" >&2
  return 1
}

# The mail catcher: a real SMTP server (aiosmtpd) on 127.0.0.1:$SMTP_PORT, inside
# the namespace (so `down` stops it with the rest), that keeps each message
# slurmctld's MailProg (gear-mailprog) sent as a file in $MAILDIR.
catcher_pids() {
  local pid p
  pid=$(holder_pid) || return 0
  for p in $(ns_pids "$(mntns_of "$pid")"); do   # the python3 itself, not runuser above it
    [[ $(cat "/proc/$p/comm" 2>/dev/null) == python3* ]] || continue
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q 'mailcatcher\.py serve' && echo "$p"
  done
  return 0
}

start_mailcatcher() {
  local i nobody
  [[ -n $(catcher_pids) ]] && return 0
  nobody=$(chroot "$ROOT" id -u nobody)
  install -d -o "$nobody" -g "$(chroot "$ROOT" id -g nobody)" -m 0755 "$MAILDIR"
  # Detached like the daemons: no fd of ours (a caller's pipe, the lock) stays open in it.
  setsid bash -c 'in_ns setsid runuser -u nobody -- python3 /opt/gear-hpc/lib/gear_hpc/devcluster/mailcatcher.py \
    serve --dir "$1" --port "$2"' _ "$MAILDIR" "$SMTP_PORT" </dev/null >>"$LOGS/mailcatcher.log" 2>&1 9>&- &
  for ((i = 0; i < 100; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$SMTP_PORT") 2>/dev/null; then
      [[ -n $(catcher_pids) ]] || die "127.0.0.1:$SMTP_PORT is taken by another program; the mail catcher needs it"
      say "mail catcher: listening on 127.0.0.1:$SMTP_PORT, mail kept in $MAILDIR"
      return 0
    fi
    sleep 0.1
  done
  tail -n 15 "$LOGS/mailcatcher.log" >&2
  die "the mail catcher did not start on 127.0.0.1:$SMTP_PORT (log: $LOGS/mailcatcher.log)"
}

# ---------------------------------------------------------------- subcommands

cmd_up() {
  need_root up
  local t0=$SECONDS node pid
  take_lock
  mkdir -p "$CACHE" "$IMAGES" "$LOGS"
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
  (ensure_jupyter_image) || say "warning: the jupyter image was not built; gear jupyter will not work"
  install_gear      # before the config: MailProg points at gear-mailprog when it exists
  node=$(hostname -s)
  write_config "$node"
  storage_layout
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

# The storage root shared with the host, laid out as docs/admin.md asks of a site:
# users/ is root's (no user can create another's directory: no squatting), and each
# user's directory is made by ensure_user.
storage_layout() {
  install -d -o root -g root -m 0755 /srv/gear /srv/gear/users
  chown root:root /srv/gear/users
  chmod 0755 /srv/gear/users
}

# A running cluster whose slurm.conf is out of date (an older devcluster.sh wrote
# it) takes the new one with `scontrol reconfigure`: no restart, no lost jobs.
update_config() {
  local node current wanted mailprog=/bin/true
  [[ -x $ROOT/usr/local/bin/gear-mailprog ]] && mailprog=/usr/local/bin/gear-mailprog
  node=$(awk -F= '/^SlurmctldHost=/ {print $2}' "$ROOT/etc/slurm/slurm.conf")
  current=$(grep -v '^FirstJobId=' "$ROOT/etc/slurm/slurm.conf")
  wanted=$(slurm_conf "$node" "$mailprog")
  [[ $current == "$wanted" ]] && return 0
  { printf '%s\n' "$wanted"; grep '^FirstJobId=' "$ROOT/etc/slurm/slurm.conf"; } >"$ROOT/etc/slurm/slurm.conf.new"
  mv "$ROOT/etc/slurm/slurm.conf.new" "$ROOT/etc/slurm/slurm.conf"
  if in_ns scontrol reconfigure; then say "slurm.conf changed: reconfigured"
  else say "warning: slurm.conf changed but scontrol reconfigure failed: run 'devcluster.sh down' then 'up'"; fi
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

cmd_status() {
  local pid name found rc=0
  if ! pid=$(holder_pid); then
    if [[ $EUID -eq 0 && -r $NSFILE ]] && [[ -n $(ns_pids "$(<"$NSFILE")") ]]; then
      say "down, but the holder died and processes of its namespace remain: run 'devcluster.sh down'"
    else
      say "down"
    fi
    return 3
  fi
  say "up: holder pid $pid, state $STATE"
  if [[ $EUID -ne 0 ]]; then say "(run as root for daemon and sinfo details)"; return 0; fi
  for name in munged slurmctld slurmd; do
    found=$(daemon_pids "$name" | tr '\n' ' ')
    if [[ -n $found ]]; then say "$name: running (pid ${found% })"; else say "$name: NOT running"; rc=1; fi
  done
  found=$(catcher_pids | tr '\n' ' ')
  if [[ -n $found ]]; then say "mail catcher: running (pid ${found% }) on 127.0.0.1:$SMTP_PORT"
  else say "mail catcher: NOT running"; rc=1; fi
  if ! timeout 20 bash -c 'in_ns sinfo' 2>&1; then say "sinfo: no answer"; rc=1; fi
  ((rc == 0)) || say "unhealthy: run 'devcluster.sh up' to restart it"
  return "$rc"
}

ensure_user() {  # same user, uid and gid on the host and in the root; storage dir
  local name=$1 uid gid group
  if ! getent passwd "$name" >/dev/null; then
    useradd -m -d "/home/$name" -s /bin/bash -U "$name"
    say "created user $name on the host" >&2
  fi
  uid=$(id -u "$name"); gid=$(id -g "$name"); group=$(id -gn "$name")
  local inside; inside=$(chroot "$ROOT" getent passwd "$name" || true)
  if [[ -z $inside ]]; then
    chroot "$ROOT" getent group "$gid" >/dev/null || chroot "$ROOT" groupadd -g "$gid" "$group"
    chroot "$ROOT" useradd -M -N -u "$uid" -g "$gid" -d "$(getent passwd "$name" | cut -d: -f6)" \
      -s /bin/bash "$name"
  elif [[ $(cut -d: -f3,4 <<<"$inside") != "$uid:$gid" ]]; then
    die "user $name has uid:gid $(cut -d: -f3,4 <<<"$inside") in the root but $uid:$gid on the host"
  fi
  # The user's storage, as an admin makes it (docs/admin.md): theirs, setgid with
  # SlurmUser's group so that gear-mailprog can reach notify/ and nothing else.
  # A directory of an older layout (0700, the user's group) is brought up to date.
  local slurm_gid; slurm_gid=$(chroot "$ROOT" getent group slurm | cut -d: -f3)
  local dir=/srv/gear/users/$name
  if [[ -L $dir || ( -e $dir && $(stat -c %u "$dir") != "$uid" ) ]]; then
    die "$dir exists but is not $name's directory; remove it (it may have been planted by another user)"
  fi
  if [[ ! -d $dir ]]; then
    install -d -o "$uid" -g "$slurm_gid" -m 2710 "$dir"
  elif [[ $(stat -c %g:%a "$dir") != "$slurm_gid:2710" ]]; then
    chgrp "$slurm_gid" "$dir" && chmod 2710 "$dir"
  fi
}

cmd_exec() {
  local user=root cwd="" strict=0
  while (($#)); do
    case $1 in
      --user) [[ $# -ge 2 ]] || die "--user needs a name"; user=$2; shift 2 ;;
      --user=*) user=${1#--user=}; shift ;;
      --cwd) [[ $# -ge 2 ]] || die "--cwd needs a directory"; cwd=$2; strict=1; shift 2 ;;
      --cwd=*) cwd=${1#--cwd=}; strict=1; shift ;;
      --) shift; break ;;
      -*) die "exec: unknown option $1 (usage: exec [--user NAME] [--cwd DIR] -- COMMAND...)" 2 ;;
      *) break ;;
    esac
  done
  [[ $user =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "invalid user name '$user' (allowed: [a-z_][a-z0-9_-]{0,31})" 2
  [[ $EUID -eq 0 ]] || die "exec must run as root: only root may enter the cluster's mount namespace" 2
  local pid; pid=$(holder_pid) || die "the devcluster is not up (run: devcluster.sh up)" 3
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
  exec nsenter -t "$pid" -m -r -w -- runuser -u "$user" -- \
    /usr/bin/env -i "${envs[@]}" /bin/sh -c "$launch" devcluster-exec "$cwd" "$strict" "$@" 9>&-
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
  case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    exec) cmd_exec "$@" ;;
    mail) cmd_mail "$@" ;;
    __ns) ns_main "$@" ;;
    help | -h | --help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

export -f in_ns holder_pid die
export PIDFILE HOLDER_NAME INNER_PATH
main "$@"
