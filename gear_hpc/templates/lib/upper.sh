# lib/upper.sh: a continuation's save, the overlay's upper layer applied to
# a tree of hard links to its parent. Uses exec_dir (for a scratch list).

# apply_upper UPPER TREE: make TREE (hard links to the lower layer) what the
# overlay showed. fuse-overlayfs marks a deleted name with a whiteout (a
# character device 0/0, or a file .wh.NAME where mknod is not allowed) and a
# directory that hides the lower one with a .wh..wh..opq file. Nothing is
# written in place: rsync writes each changed file to a temporary name and
# renames it, which breaks the link to the lower layer's file.
apply_upper() {
  local upper=$1 tree=$2 path rel name target devices="$exec_dir/whiteouts"
  # Opaque directories first: what they hide goes before any whiteout below them.
  while IFS= read -r -d '' path; do
    rel=${path#"$upper"/}
    rel=${rel%/*}
    inside "$tree" "$rel" && { unlink_below "$tree" "$rel" || return 1; }
  done < <(find "$upper" -mindepth 2 -name .wh..wh..opq -type f -print0)
  : > "$devices" || return 1
  while IFS= read -r -d '' path; do
    rel=${path#"$upper"/}
    name=${rel##*/}
    [ -c "$path" ] && printf '/%s\0' "$rel" >> "$devices"
    case "$rel" in */*) target=${rel%/*}/ ;; *) target="" ;; esac
    if [ -c "$path" ]; then target+=$name; else target+=${name#.wh.}; fi
    case "${target##*/}" in ""|.|..|.wh..opq|.wh..wh..opq) continue ;; esac
    inside "$tree" "$target" && { unlink_below "$tree" "$target" || return 1; }
  done < <(find "$upper" -mindepth 1 \( -type c -o \( -type f -name '.wh.*' \) \) -print0)
  # A name whose type changed (a directory became a file or a link, or the
  # reverse) is removed here first: rsync would make what it deletes writable
  # before deleting it, and a hard link's mode is the parent's too.
  while IFS= read -r -d '' path; do
    rel=${path#"$upper"/}
    [ -e "$tree/$rel" ] || [ -L "$tree/$rel" ] || continue
    if [ -d "$path" ] && [ ! -L "$path" ]; then
      { [ -L "$tree/$rel" ] || [ ! -d "$tree/$rel" ]; } || continue
    else
      [ -d "$tree/$rel" ] && [ ! -L "$tree/$rel" ] || continue
    fi
    inside "$tree" "$rel" && { unlink_below "$tree" "$rel" || return 1; }
  done < <(find "$upper" -mindepth 1 ! -name '.wh.*' ! -type c -print0)
  # -I: a changed file is copied even when its size and time look the same.
  # The whiteouts themselves are left out, by name (their names escaped for
  # rsync's patterns), so rsync has no device to complain about.
  # -X: fuse-overlayfs keeps the mode the program saw in an attribute of the
  # upper file (its real mode is not that one); gear's seal reads it.
  sed -z 's/[][*?\\]/\\&/g' "$devices" \
    | rsync -a -I -X --filter='-x user.fuseoverlayfs.*' --force --no-devices --exclude='.wh.*' \
        --from0 --exclude-from=- "$upper/" "$tree/"
  local rc=${PIPESTATUS[1]}
  rm -f "$devices"
  return "$rc"
}

unlink_below() { # TREE REL: remove TREE/REL (its directory may be read-only; rsync sets its mode after)
  local parent=$1
  case "$2" in */*) parent+=/${2%/*} ;; esac
  [ -e "$1/$2" ] || [ -L "$1/$2" ] || return 0
  # shellcheck disable=SC2115  # TREE is the absolute path of a tree being saved, never empty
  chmod u+w -- "$parent" && rm -rf -- "$1/$2"
}

inside() { # TREE REL: REL names something below TREE through directories only
  local tree=$1 rel=$2 part path=$1
  while [ "${rel%%/*}" != "$rel" ]; do
    part=${rel%%/*} rel=${rel#*/}
    path+=/$part
    [ -L "$path" ] && return 1
    [ -d "$path" ] || return 1
  done
  return 0
}
