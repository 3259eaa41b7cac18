# shellcheck shell=bash
# parts/packages.sh: the packages of the host and of the cluster root.

# Packages of the cluster root.  Changing these lists re-runs apt (not debootstrap).
PKGS_TRIXIE=(slurmctld slurmd slurm-client munge python3 python3-click python3-jinja2
             python3-yaml rsync squashfs-tools
             fuse-overlayfs     # continuing an execution: its parent's working directory as a read-only lower layer
             python3-aiosmtpd   # the mail catcher (gear_hpc/devcluster/mailcatcher.py)
             python3-nbformat python3-nbconvert python3-ipython   # gear convert, gear run -- x.ipynb
             python3-matplotlib python3-optuna   # gear tune plot's PNG; a Bayesian tuning's driver
             gocryptfs)   # only so Apptainer stops printing "INFO: gocryptfs not found" in every job
PKGS_SID=(apptainer squashfuse fuse2fs fuse3)   # Apptainer exists only in sid
ROOT_RECIPE="v1 trixie:${PKGS_TRIXIE[*]} sid:${PKGS_SID[*]} sqlite-utils"
ROOT_MARKER=$ROOT/.gear-devcluster-complete      # written last: the root is complete
BOOTSTRAP_MARKER=$ROOT/.gear-devcluster-debootstrapped

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

# Slurm's release, chosen per bring-up (`up --slurm`): trixie's 24.11 or sid's 26.05, installed
# in place in the same root (apt keeps the .debs: switching back and forth takes seconds).
SLURM_PKGS=(slurmctld slurmd slurm-client slurm-wlm-basic-plugins)
SLURM_SID_LIBS=(libhwloc15 libhwloc-plugins)   # sid's Slurm 26.05.5 upgrades (or removes) them
slurm_suite() {
  case $1 in
    24.11) echo trixie ;;
    26.05) echo sid ;;
    *) return 1 ;;
  esac
}

ensure_slurm_release() {
  local suite have t=$SECONDS pkgs=() p
  suite=$(slurm_suite "$SLURM") || die "unknown Slurm release $SLURM (known: 24.11, 26.05)" 2
  have=$(chroot "$ROOT" dpkg-query -W -f='${Version}' slurmctld 2>/dev/null || true)
  [[ $have == "$SLURM".* ]] && return 0
  say "root: Slurm ${have:-none} -> $SLURM (from $suite) ..."
  for p in "${SLURM_PKGS[@]}"; do pkgs+=("$p/$suite"); done
  # Back to trixie's: the libraries sid's Slurm pulled up come down with it (apt will not choose to).
  if [[ $suite == trixie ]]; then
    for p in "${SLURM_SID_LIBS[@]}"; do pkgs+=("$p/$suite"); done
  fi
  logged "$LOGS/build.log" "apt in the root (Slurm $SLURM)" run_build_ns \
    apt-get install -y -q --allow-downgrades "${pkgs[@]}"
  have=$(chroot "$ROOT" dpkg-query -W -f='${Version}' slurmctld)
  [[ $have == "$SLURM".* ]] || die "Slurm $have in the root after apt, not $SLURM (see $LOGS/build.log)"
  say "root: Slurm $have $(took $t)"
}
