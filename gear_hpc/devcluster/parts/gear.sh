# shellcheck shell=bash
# parts/gear.sh: gear itself and the site configuration, copied into the root.

install_gear() {
  [[ -d $GEAR_REPO/gear_hpc ]] || die "no gear_hpc/ in GEAR_REPO=$GEAR_REPO"
  mkdir -p "$ROOT/opt/gear-hpc/lib/gear_hpc" "$ROOT/usr/local/bin"
  # go+r: the files are read by ordinary users inside, whatever the checkout's umask was.
  rsync -a --delete --delete-excluded --exclude=__pycache__ --exclude='*.pyc' \
    --chmod=Dgo+rx,Fgo+r "$GEAR_REPO/gear_hpc/" "$ROOT/opt/gear-hpc/lib/gear_hpc/"
  # Bytecode, as pip would install it: users cannot write __pycache__ here, and
  # without it every `gear` command would compile gear from source first.
  chroot "$ROOT" python3 -m compileall -q /opt/gear-hpc/lib/gear_hpc >/dev/null
  local name mod flags
  for name in gear gear-mailprog; do
    # gear: -S, site-packages set up only when a command needs them (gear_hpc/base/lazy_site.py).
    mod=gear_hpc.cli flags=' -S'
    [[ $name == gear-mailprog ]] && mod=gear_hpc.notify.mailprog flags=''
    printf '#!/usr/bin/python3%s\nimport sys\nsys.path.insert(0, "/opt/gear-hpc/lib")\nfrom %s import main\nsys.exit(main())\n' \
      "$flags" "$mod" >"$ROOT/usr/local/bin/$name.new"
    chmod 0755 "$ROOT/usr/local/bin/$name.new"
    mv "$ROOT/usr/local/bin/$name.new" "$ROOT/usr/local/bin/$name"
  done
  say "gear: synced $GEAR_REPO/gear_hpc -> /opt/gear-hpc/lib/gear_hpc"
  # plotext (gear tune plot's terminal panels) has no Debian package: the checkout venv's copy (pure Python).
  local plotext
  if plotext=$("$GEAR_REPO/.venv/bin/python" -c 'import os, plotext; print(os.path.dirname(plotext.__file__))' 2>/dev/null); then
    rsync -a --delete --chmod=Dgo+rx,Fgo+r "$plotext/" "$ROOT/opt/gear-hpc/lib/plotext/"
  fi
  if [[ -d $GEAR_REPO/site-config ]]; then
    mkdir -p "$ROOT/etc/gear"
    rsync -a --delete --chmod=Dgo+rx,Fgo+r "$GEAR_REPO/site-config/" "$ROOT/etc/gear/"
    # A storage root elsewhere here (GEAR_DEVCLUSTER_STORAGE): gear inside uses its path too (it is
    # bound there as well as at /srv/gear), so a path gear prints means the same file on both sides.
    if [[ $STORAGE != "$STORAGE_INSIDE" ]]; then
      sed -i "s|^storage_root: $STORAGE_INSIDE\$|storage_root: $STORAGE|" "$ROOT/etc/gear/site.yaml"
    fi
    say "site-config: synced $GEAR_REPO/site-config -> /etc/gear"
  else
    say "site-config: none in $GEAR_REPO, /etc/gear left as is"
  fi
}
