"""Paths inside a tree that a program wrote: `--from SUBPATH` of `gear download` and `gear data from-output`.

A working directory is written by the user's program, which can leave any
symbolic link in it (`ln -s / rootlink`). Checking only the last component
of `rootlink/etc/apt` would let the kernel follow `rootlink` out of the tree,
so every component is looked at with lstat, one by one, and a symbolic link
anywhere is refused, as are absolute paths and `..`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from ..base.errors import UsageError


def inside(base: Path, relative: str | None, where: str) -> tuple[Path, os.stat_result]:
    """`base/relative` and its lstat, every component a real file or directory inside `base`.

    `where` names the tree in messages (for example "the working directory
    of mnist/3"). Refused with one line naming the path: an absolute path,
    `..`, a component that is missing, not a directory (before the last) or
    a symbolic link. `base` itself must be a directory, not a link.
    """
    shown = relative or "/"
    pure = PurePosixPath(relative or ".")
    if pure.is_absolute() or ".." in pure.parts:
        raise UsageError(f"--from {shown!r} must be a path inside {where}, without '..'")
    current = Path(base)
    info = os.lstat(current)
    if not stat.S_ISDIR(info.st_mode):
        raise UsageError(f"{where} ({base}) is not a directory")
    walked: list[str] = []
    for part in pure.parts:
        walked.append(part)
        current = current / part
        try:
            info = os.lstat(current)
        except (FileNotFoundError, NotADirectoryError):
            raise UsageError(f"--from {shown!r}: {'/'.join(walked)} does not exist in {where}") from None
        if stat.S_ISLNK(info.st_mode):
            raise UsageError(f"--from {shown!r}: {'/'.join(walked)} is a symbolic link in {where}; gear never "
                             "follows a link, which could lead out of it (name the files it points to instead)")
        if len(walked) < len(pure.parts) and not stat.S_ISDIR(info.st_mode):
            raise UsageError(f"--from {shown!r}: {'/'.join(walked)} is not a directory in {where}")
    return current, info


def operand(path: Path | str) -> str:
    """A path as a command's operand that can never be read as an option (`-rf` becomes `/abs/-rf`)."""
    return os.path.abspath(path)
