"""A closed execution's working directory never changes again: sealing.

When gear first sees an execution closed, it takes every write bit from its
saved working directory, as a dataset version has none: an editor's save,
`>>`, `rm` or `mv` by the owner's ordinary tools is refused by the kernel.
Continuations share the parent's files (hard links, and the parent as the
overlay's lower layer), so a mode change would show in both: sealing is the
only one, and it is made once, by the owner, before any continuation exists.

A continuation must still be able to overwrite, delete and chmod what it
inherited, inside its job. An overlay shows the lower layer's modes, which
are now read-only; so each sealed file and directory keeps its mode as it
was in extended attributes that fuse-overlayfs reads with
`-o xattr_permissions=2`, and the overlay presents that mode instead.
fuse-overlayfs >= 1.14 reads `user.containers.override_stat`
(`uid:gid:mode:type`) and carries it up with a file the program changes, so
the save can give each file the mode the program saw (`_wanted_mode`). One
attribute, short: it fits in an ext4 inode, so a sealed file takes no more
blocks than before (a second one, for older releases, took a 4 KiB block per
file as `du` counts). An older fuse-overlayfs ignores it; the job sees that
(the top directory is not writable through the overlay) and copies instead.

Sealing also makes everything in the directory readable by all, which
shares nothing by itself: the container's directory is the gate that decides
who may reach it (storage/sharing.py), so sharing and taking it back are one
chmod of that directory, not a walk of every execution.

Where the file system keeps no user attributes (some NFS servers), sealing
still takes the write bits; a continuation then starts from a copy.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

# Read by fuse-overlayfs >= 1.14 (and probed on the layer's top directory).
MODE_ATTR = "user.containers.override_stat"
_NO_ATTR = (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP)


def is_sealed(home: Path) -> bool:
    """The directory was sealed with its modes kept (a continuation can overlay it)."""
    try:
        return os.getxattr(home, MODE_ATTR, follow_symlinks=False) != b""
    except OSError:
        return False


def finished(home: Path) -> bool:
    """A seal ran to its end here: the top, which seal() does last, has no write bit and is readable by
    all. (A seal cut short, or made by an older gear without read bits, is not finished.)"""
    try:
        info = home.lstat()
    except OSError:
        return False
    mode = stat.S_IMODE(info.st_mode)
    return stat.S_ISDIR(info.st_mode) and not mode & 0o222 and mode & 0o555 == 0o555


def seal(home: Path) -> bool:
    """Take every write bit below (and of) `home`, keeping the modes as they were.

    Idempotent and safe to interrupt: a second call finishes the work. Never
    follows a symlink. Returns whether the modes could be kept in attributes.
    """
    if not home.is_dir() or home.is_symlink():
        return False
    kept = True
    for directory, subdirs, files in os.walk(home, topdown=False):
        for name in files + subdirs:
            kept = _seal_one(os.path.join(directory, name)) and kept
    # The top last: its attribute says the whole tree is sealed (is_sealed).
    return _seal_one(str(home)) and kept


def _seal_one(path: str) -> bool:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return True
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        return True   # links, devices and FIFOs carry no user attributes and need no write bit taken
    if stat.S_ISREG(info.st_mode) and info.st_nlink > 1 and not info.st_mode & 0o222 and info.st_mode & 0o004:
        return True   # a hard link to a file of the parent, sealed with it
    # User attributes are read and written under the file's own permission
    # bits, even for its owner: a file the program left without them gets
    # them for a moment.
    needed = 0o700 if stat.S_ISDIR(info.st_mode) else 0o600
    current = stat.S_IMODE(info.st_mode)
    if current & needed != needed:
        current |= needed
        os.chmod(path, current)   # a regular file or directory (lstat above): no link to follow
    mode = _wanted_mode(path, info)
    kind = "dir" if stat.S_ISDIR(info.st_mode) else "file"
    kept = True
    try:
        # fuse-overlayfs writes its record as uid:gid:100644; one form for all.
        value = f"{info.st_uid}:{info.st_gid}:{mode:04o}:{kind}".encode()
        if _get(path, MODE_ATTR) != value:
            os.setxattr(path, MODE_ATTR, value, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in _NO_ATTR:
            raise
        kept = False
    sealed = _readable(mode & ~0o222, stat.S_ISDIR(info.st_mode))
    if current != sealed:
        os.chmod(path, sealed)
    return kept


def _readable(mode: int, is_dir: bool) -> int:
    """Readable by all (and searchable, where the owner may search or run it): a closed
    execution is shared or not by its container's directory alone (storage/sharing.py),
    so nothing below it needs to hide from a reader the gate lets in. The mode the
    program gave stays in the attribute, for a continuation to see."""
    if is_dir:
        return mode | 0o555
    return mode | 0o444 | (0o111 if mode & stat.S_IXUSR else 0)


def _wanted_mode(path: str, info: os.stat_result) -> int:
    """The mode the file had for the program: fuse-overlayfs's record of it (copied
    with the file from the upper layer into the save, or kept at an earlier
    seal), else the file's own."""
    value = _get(path, MODE_ATTR)
    if value is not None:
        parts = value.split(b":")
        if len(parts) >= 3:
            try:
                return int(parts[2], 8) & 0o7777
            except ValueError:
                pass
    return stat.S_IMODE(info.st_mode)


def _get(path: str, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in _NO_ATTR:
            return None
        raise
