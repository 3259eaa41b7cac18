# shellcheck shell=bash
# parts/root.sh: the cluster's root file system (a debootstrapped Debian 13),
# and the python image's debootstrap beside its packages.

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
