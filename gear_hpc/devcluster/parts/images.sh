# shellcheck shell=bash
# parts/images.sh: the images (python, jupyter), each rebuilt when its recipe changes.

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
