"""Who besides its owner may read a container or a dataset: the modes that say it.

The kernel, not gear, keeps private things private (docs/security.md,
"Sharing"). Every path another user takes into an owner's storage passes
through directories whose modes decide:

    users/<owner>/                  2711 (the admin's): anyone may pass, nobody may list
        ledger.sqlite, notify/      0600 / 0750 SlurmUser's group: never anyone else's
        shared/                     0711: the indexes readers read instead of the ledger
            public.json             0644  the owner's public containers and datasets
            group-<G>.json          0640, group G: those shared with group G
        containers/                 0711: pass, not list
            <C>/                    THE GATE: 0700 private, 0710 + group G, 0711 public
                closed.json         0644: C's closed executions, what `gear history owner/C` reads
                <N>/                0700 while open; 0755 once closed (published)
        datasets/                   0711
            <D>/                    THE GATE, as a container's
                versions.json       0644: D's versions
                versions/           0711
                    <V>/            0555, files a+r: a version never changes
                incoming/           0700: uploads under way

Everything behind a gate that a reader may see is made readable by
everyone (a closed execution at its close, a version when it is made), so
sharing, and taking it back, is one chmod of the gate: the kernel checks
the gate on every path lookup, whatever the tool (`gear`, `ls`, `cat`,
`sqlite3`). What is open (an execution still running) stays 0700 behind
any gate, and appears in no index.
"""

from __future__ import annotations

import grp
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from ..base.errors import GearError, UsageError
from .shared_index import (
    CLOSED_INDEX as CLOSED_INDEX,
    INDEX_FORMAT as INDEX_FORMAT,
    PUBLIC_INDEX as PUBLIC_INDEX,
    SHARED as SHARED,
    VERSIONS_INDEX as VERSIONS_INDEX,
    BrokenIndex,
    group_index as group_index,
    is_group_name,
    read_index as _read_index,
)

PRIVATE, GROUP, PUBLIC = "private", "group", "public"
VISIBILITIES = (PRIVATE, GROUP, PUBLIC)
GATE_MODES = {PRIVATE: 0o700, GROUP: 0o710, PUBLIC: 0o711}

PASS_ONLY = 0o711                # a directory others may pass through, not list

# What a closed execution's directory shows readers besides its working directory.
PUBLISHED_FILES = ("output.log", "gear_params.json")
PUBLISHED_TREES = ("code",)      # `home` is made readable by sealing (executions/sealing.py)

def member_group(name: str) -> int:
    """The gid of group `name`, which the calling user must belong to (as `chgrp` asks)."""
    if not is_group_name(name):
        raise UsageError(f"{name!r} is not a group name")
    try:
        gid = grp.getgrnam(name).gr_gid
    except KeyError:
        raise UsageError(f"there is no group {name!r} on this system (see `id` for yours)") from None
    if gid not in os.getgroups() and gid != os.getgid():
        raise UsageError(f"you are not a member of group {name!r}; share with one of yours (see `id`)")
    return gid


def require_passable(user_root: Path) -> None:
    """Others can reach nothing of a user whose directory they may not pass (the admin's 2710)."""
    mode = user_root.stat().st_mode
    if not mode & stat.S_IXOTH:
        raise GearError(f"{user_root} is mode {stat.S_IMODE(mode):04o}, so no other user can reach anything in it; "
                        "ask your admin to make it 2711 to allow sharing (docs/admin.md, 'Storage')")


def make_passable(directory: Path) -> None:
    """containers/, datasets/ and shared/: others may pass through, not list (0711)."""
    directory.mkdir(mode=PASS_ONLY, exist_ok=True)
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise GearError(f"{directory} is not a directory owned by you; refusing to use it")
    if stat.S_IMODE(info.st_mode) & 0o777 != PASS_ONLY:
        os.chmod(directory, PASS_ONLY | (info.st_mode & stat.S_ISGID))


def set_gate(directory: Path, visibility: str, gid: int | None = None) -> None:
    """Make `directory` the gate `visibility` asks for. Taking access away is the chmod alone,
    done first; a group share changes the group before it opens the group's bits."""
    mode = GATE_MODES[visibility]
    if visibility == GROUP:
        assert gid is not None
        os.chmod(directory, GATE_MODES[PRIVATE])   # never open to the old group while the group changes
        os.chown(directory, -1, gid, follow_symlinks=False)
    os.chmod(directory, mode)


def open_closed_execution(exec_dir: Path) -> None:
    """Let anyone who passes the container's gate read a closed execution: its log,
    parameters and code (its sealed working directory already is), then its directory."""
    for name in PUBLISHED_FILES:
        _add_read_bits(exec_dir / name)
    for name in PUBLISHED_TREES:
        tree = exec_dir / name
        if tree.is_dir() and not tree.is_symlink():
            for directory, subdirs, files in os.walk(tree):
                for entry in subdirs + files:
                    _add_read_bits(Path(directory) / entry)
            _add_read_bits(tree)
    # Last: until now the directory was closed to all, so no reader saw it half done.
    _add_read_bits(exec_dir)


def execution_opened(exec_dir: Path) -> bool:
    """open_closed_execution ran to its end here: the directory, which it opens last, is readable by all."""
    try:
        info = exec_dir.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_mode & 0o555 == 0o555


def make_tree_readable(top: Path) -> None:
    """A dataset version: every directory a+rx, every file a+r (its write bits stay off)."""
    for directory, subdirs, files in os.walk(top):
        for entry in subdirs + files:
            _add_read_bits(Path(directory) / entry)
    _add_read_bits(top)


def _add_read_bits(path: Path) -> None:
    """r for all (and x where the owner has it, directories always); never follows a link."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        wanted = info.st_mode | 0o555
    elif stat.S_ISREG(info.st_mode):
        wanted = info.st_mode | 0o444 | (0o111 if info.st_mode & stat.S_IXUSR else 0)
    else:
        return   # links, FIFOs, sockets: nothing to read through them
    if stat.S_IMODE(wanted) != stat.S_IMODE(info.st_mode):
        os.chmod(path, stat.S_IMODE(wanted))


# ---- indexes: small JSON files, each replaced whole by a rename (a reader sees the old one or the new one)

def write_index(path: Path, data: Any, mode: int = 0o644, gid: int | None = None) -> None:
    """Write `data` as JSON to `path` atomically, with `mode` (and group `gid`) set before it appears."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            if gid is not None:
                os.fchown(handle.fileno(), -1, gid)
            os.fchmod(handle.fileno(), mode)
            json.dump(data, handle, separators=(",", ":"))
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def remove_index(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def read_index(path: str) -> Any:
    """shared_index.read_index, a broken index told as one GearError line."""
    try:
        return _read_index(path)
    except BrokenIndex as exc:
        raise GearError(str(exc)) from None
