"""Sizes below a container, as `gear delete` and `gear du` count them (never following a symlink)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..base.errors import GearError
from ..ledger.db import Ledger
from ..storage.disk import DIR_FLAGS as _DIR_FLAGS, list_fd as _list_fd


def measure_unmeasured(ledger: Ledger) -> int:
    """Record the disk figure of closed executions that have none (closed before gear kept one).

    Returns how many were measured. Oldest first, so that each sees its
    earlier executions as they are (storage.execution_usage).
    """
    from ..storage.disk import execution_usage  # only `gear du` measures executions

    measured = 0
    for execution in ledger.executions():
        if execution.is_open or execution.disk_bytes is not None:
            continue
        exec_dir = Path(execution.workdir).parent
        if not exec_dir.is_dir():
            continue
        ledger.update_execution(execution.container, execution.number,
                                disk_bytes=execution_usage(exec_dir).disk)
        measured += 1
    return measured


class TreeUsage:
    """Sizes below a container, never following a symlink; hard links counted once.

    Apparent bytes (st_size) and what the disk holds (st_blocks × 512, the
    directories' own blocks too, as `du -s` and `df` count). A file counts
    as freed only if all its links are inside the container (a continued
    execution hard-links its parent's unchanged files; a link from outside
    keeps the file alive).
    """

    def __init__(self, device: int, root: str):
        self.device = device
        self.root = root
        # (dev, ino) -> [size, nlink, links seen, blocks × 512]
        self.inodes: dict[tuple[int, int], list[int]] = {}
        self.directories = 0   # bytes the directories themselves take
        self.unreadable: list[str] = []

    @property
    def disk(self) -> int:
        return self.directories + sum(seen[3] for seen in self.inodes.values())

    def add_directory(self, parent: int, name: str) -> None:
        """Count the blocks of the directory `name` itself (not what is below it)."""
        try:
            self.directories += os.stat(name, dir_fd=parent, follow_symlinks=False).st_blocks * 512
        except OSError:
            pass

    def add(self, parent: int, name: str) -> tuple[int, int]:
        """(apparent bytes, disk bytes not counted by an earlier add) of `name` (in the open
        directory `parent`) and all below it."""
        apparent = disk = 0
        stack: list[tuple[int, list[str], str]] = []   # (open directory, entries left, its path)

        def visit(parent_fd: int, entry: str, path: str) -> None:
            nonlocal apparent, disk
            try:
                info = os.stat(entry, dir_fd=parent_fd, follow_symlinks=False)
            except OSError:
                return
            if not stat.S_ISDIR(info.st_mode):
                apparent += info.st_size
                key = (info.st_dev, info.st_ino)
                if key not in self.inodes:
                    disk += info.st_blocks * 512
                seen = self.inodes.setdefault(key, [info.st_size, info.st_nlink, 0, info.st_blocks * 512])
                seen[2] += 1
                return
            disk += info.st_blocks * 512
            self.directories += info.st_blocks * 512
            if info.st_dev != self.device:
                raise GearError(f"{path} is a mount point (another file system inside {self.root}); "
                                "unmount it first. Nothing was deleted")
            try:
                fd = os.open(entry, _DIR_FLAGS, dir_fd=parent_fd)
            except OSError:
                self.unreadable.append(path)   # no read permission: its size is unknown, as for `gear du`
                return
            try:
                children = _list_fd(fd)
            except OSError:
                os.close(fd)
                self.unreadable.append(path)
                return
            stack.append((fd, children, path))

        visit(parent, name, os.path.join(self.root, name))
        try:
            while stack:
                fd, children, path = stack[-1]
                if children:
                    child = children.pop()
                    visit(fd, child, os.path.join(path, child))
                    continue
                stack.pop()
                os.close(fd)
        finally:
            for fd, _, _ in stack:
                os.close(fd)
        return apparent, disk

    def frees(self) -> tuple[int, int]:
        """(apparent bytes freed, apparent bytes of files that stay through an outside link)."""
        freed = shared = 0
        for size, nlink, seen, _ in self.inodes.values():
            if seen >= nlink:
                freed += size
            else:
                shared += size
        return freed, shared

    def frees_disk(self) -> tuple[int, int]:
        """The same on disk: (blocks freed, directories included; blocks that stay)."""
        freed, shared = self.directories, 0
        for _, nlink, seen, blocks in self.inodes.values():
            if seen >= nlink:
                freed += blocks
            else:
                shared += blocks
        return freed, shared
