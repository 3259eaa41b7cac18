# shellcheck shell=bash
# parts/users.sh: the storage root and the users (same uid and gid inside).

# The storage root shared with the host, laid out as docs/admin.md asks of a site:
# users/ is root's (no user can create another's directory: no squatting), and each
# user's directory is made by ensure_user.
storage_layout() {
  install -d -o root -g root -m 0755 "$STORAGE" "$STORAGE/users"
  chown root:root "$STORAGE/users"
  chmod 0755 "$STORAGE/users"
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
  local dir=$STORAGE/users/$name
  if [[ -L $dir || ( -e $dir && $(stat -c %u "$dir") != "$uid" ) ]]; then
    die "$dir exists but is not $name's directory; remove it (it may have been planted by another user)"
  fi
  if [[ ! -d $dir ]]; then
    install -d -o "$uid" -g "$slurm_gid" -m 2711 "$dir"
  elif [[ $(stat -c %g:%a "$dir") != "$slurm_gid:2711" ]]; then
    chgrp "$slurm_gid" "$dir" && chmod 2711 "$dir"
  fi
}
