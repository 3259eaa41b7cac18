"""What deleting a container would remove (`gear delete C`, before the user confirms): changes nothing.

The plan refreshes the statuses, refuses what must not be deleted, and
measures every execution and what the delete frees. delete.py carries it
out; the names and markers an interrupted delete leaves are defined here,
because the plan reports them as leftovers.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..base.errors import GearError, NotFound
from ..base.names import check_name
from ..ledger.db import Execution, Ledger
from ..slurm import jobs as slurm
from ..storage.disk import DIR_FLAGS as _DIR_FLAGS, UserStorage, list_fd as _list_fd
from .usage import TreeUsage

MARKER = ".gear-deleting"
TRASH_PREFIX = ".trash-"    # never a container name: names start with [a-z0-9]


@dataclass
class ExecutionUsage:
    id: str
    number: int
    status: str
    ended_at: str | None
    size_bytes: int | None   # None: its directory is missing
    disk_bytes: int | None = None   # blocks it holds that no earlier execution holds (as `du -s` of the container)


@dataclass
class Leftover:
    """Files an interrupted delete left behind (no ledger row names them)."""

    name: str                # entry in containers/
    container: str           # the container it belonged to
    size_bytes: int
    disk_bytes: int = 0


@dataclass
class DeletePlan:
    container: str
    path: str
    in_ledger: bool                       # False: only leftovers of an interrupted delete of it
    executions: list[ExecutionUsage]
    size_bytes: int                       # apparent size of every file, as `gear du` counts
    frees_bytes: int                      # each file once, without files also linked from outside
    shared_bytes: int                     # files with a hard link outside the container: they stay
    # The same three as the disk holds them (blocks, as `du -s` and `df`; what the text shows).
    disk_bytes: int = 0
    frees_disk_bytes: int = 0
    shared_disk_bytes: int = 0
    leftovers: list[Leftover] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)   # directories whose files are not counted
    identity: tuple[str, int, int] = ("missing", 0, 0)   # what containers/C was when planned
    # Statuses a full disk kept out of the ledger (refresh's report.unrecorded): id -> status.
    unrecorded: dict[str, str] = field(default_factory=dict)

    @property
    def total_frees_bytes(self) -> int:
        return self.frees_bytes + sum(item.size_bytes for item in self.leftovers)

    @property
    def total_frees_disk_bytes(self) -> int:
        return self.frees_disk_bytes + sum(item.disk_bytes for item in self.leftovers)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("identity")
        data["total_frees_bytes"] = self.total_frees_bytes
        data["total_frees_disk_bytes"] = self.total_frees_disk_bytes
        return data


def plan_delete(ledger: Ledger, storage: UserStorage, name: str,
                query: Callable[[], dict[str, slurm.SlurmJob]] = slurm.query_jobs) -> DeletePlan:
    """What `gear delete NAME` would remove; raises if it must be refused.

    Refused: an unknown container, one with an execution still submitting,
    queued, syncing, running or saving, one whose working directories an
    open execution of another container reads, and a container directory
    that is a symlink, not a directory, or holds a mount point.
    """
    from ..executions import reconcile

    check_name(name, "container name")
    # On a full disk the new statuses may not fit in the ledger; delete (the way
    # out) judges by them all the same, and removes the rows with the files.
    report = reconcile.refresh(ledger, query, full_disk_ok=True)
    in_ledger = name in ledger.container_names()
    rows = ledger.executions(container=name) if in_ledger else []
    rows = with_statuses(rows, report.unrecorded)
    refuse_if_in_use(ledger, name, rows, report.slurm_error)

    with open_containers_dir(storage) as cfd:
        leftovers = find_leftovers(cfd, set(ledger.container_names()))
        if not in_ledger and not any(item.container == name for item in leftovers):
            raise NotFound(f"no container {name!r} (see `gear ls`); nothing was deleted")
        identity = entry_identity(cfd, name) if in_ledger else ("missing", 0, 0)
        path = storage.container_dir(name)
        if identity[0] == "link":
            raise GearError(f"{path} is a symbolic link, not gear's directory of {name}; gear never follows "
                            "a link out of a container, so nothing was deleted (remove or move the link back "
                            "yourself first)")
        if identity[0] == "other":
            raise GearError(f"{path} is not a directory; nothing was deleted")
        usage = TreeUsage(os.fstat(cfd).st_dev, str(path))
        sizes: dict[str, tuple[int, int]] = {}
        if identity[0] == "dir":
            usage.add_directory(cfd, name)
            fd = os.open(name, _DIR_FLAGS, dir_fd=cfd)
            try:
                # In number order, so a block shared by hard link counts in the earliest execution.
                for entry in sorted(_list_fd(fd), key=lambda e: (not e.isdigit(), int(e) if e.isdigit() else 0, e)):
                    sizes[entry] = usage.add(fd, entry)
            finally:
                os.close(fd)
    frees, shared = usage.frees()
    frees_disk, shared_disk = usage.frees_disk()
    return DeletePlan(
        container=name, path=str(path), in_ledger=in_ledger,
        executions=[ExecutionUsage(e.id, e.number, e.status, e.ended_at, *sizes.get(str(e.number), (None, None)))
                    for e in rows],
        size_bytes=sum(apparent for apparent, _ in sizes.values()), frees_bytes=frees, shared_bytes=shared,
        disk_bytes=usage.disk, frees_disk_bytes=frees_disk, shared_disk_bytes=shared_disk,
        leftovers=leftovers, unreadable=usage.unreadable, identity=identity,
        unrecorded={k: v for k, v in report.unrecorded.items() if k.startswith(f"{name}/")})


def with_statuses(rows: list[Execution], statuses: dict[str, str]) -> list[Execution]:
    """The rows, with the statuses a full disk kept out of the ledger."""
    return [replace(e, status=statuses[e.id]) if e.id in statuses else e for e in rows]


def refuse_if_in_use(ledger: Ledger, name: str, rows: list[Execution], slurm_error: str | None = None) -> None:
    """Refuse while an execution of `name` is open, or an open one elsewhere reads its working directories."""
    busy = [e for e in rows if e.is_open]
    if busy:
        hint = (f" (Slurm could not be asked, so these statuses may be out of date: {slurm_error})"
                if slurm_error else "")
        raise GearError(f"{name} has executions that are not finished: "
                        + ", ".join(f"{e.id} ({e.status})" for e in busy)
                        + f"{hint}; stop them (gear stop {busy[0].id}) or wait until they end. Nothing was deleted")
    readers = []
    for execution in ledger.open_executions():
        for binding in execution.bindings:
            # A pipeline input or a copy into /hyperai/home reads C/N's saved working directory.
            if binding.get("kind") == "execution" and str(binding.get("source", "")).startswith(f"{name}/"):
                readers.append(f"{execution.id} ({execution.status}) binds {binding['source']}")
    if readers:
        raise GearError(f"the working directories of {name} are read by executions that are not finished: "
                        + ", ".join(readers) + ". Nothing was deleted")


def find_leftovers(cfd: int, names: set[str]) -> list[Leftover]:
    found = []
    for entry in _list_fd(cfd):
        if entry.startswith(TRASH_PREFIX):
            owner = entry[len(TRASH_PREFIX):].rpartition("-")[0] or entry
        elif is_orphan(cfd, entry, names):
            owner = entry
        else:
            continue
        usage = TreeUsage(os.fstat(cfd).st_dev, "containers")
        try:
            size = usage.add(cfd, entry)[0]
        except GearError:
            size = 0
        found.append(Leftover(entry, owner, size, usage.frees_disk()[0]))
    return found


def is_orphan(cfd: int, entry: str, names: set[str]) -> bool:
    """A container directory with a delete marker and no ledger row: a delete committed, then crashed."""
    if entry in names or entry.startswith("."):
        return False
    try:
        if not stat.S_ISDIR(os.stat(entry, dir_fd=cfd, follow_symlinks=False).st_mode):
            return False
        fd = os.open(entry, _DIR_FLAGS, dir_fd=cfd)
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.stat(MARKER, dir_fd=fd, follow_symlinks=False).st_mode)
    except OSError:
        return False
    finally:
        os.close(fd)


@contextmanager
def open_containers_dir(storage: UserStorage) -> Iterator[int]:
    """An open descriptor of the user's containers/ directory (refused if it is a link)."""
    storage.ensure()
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    root = os.open(storage.root, flags)
    try:
        try:
            fd = os.open("containers", flags, dir_fd=root)
        except OSError as exc:
            raise GearError(f"{storage.root / 'containers'} is not a directory of yours "
                            f"({exc.strerror}); gear will not delete through it") from None
    finally:
        os.close(root)
    try:
        yield fd
    finally:
        os.close(fd)


def entry_identity(cfd: int, name: str) -> tuple[str, int, int]:
    try:
        info = os.stat(name, dir_fd=cfd, follow_symlinks=False)
    except FileNotFoundError:
        return ("missing", 0, 0)
    kind = "dir" if stat.S_ISDIR(info.st_mode) else "link" if stat.S_ISLNK(info.st_mode) else "other"
    return (kind, info.st_dev, info.st_ino)
