"""Containers: what deleting one would remove, and the delete itself.

`gear delete C` is irrecoverable, so it is planned first (`plan_delete`:
statuses refreshed, refusals, every execution with its size, the bytes it
frees) and carried out only after the user confirmed (`delete`).

The delete touches two stores that cannot change together, the ledger and
the files, so its order decides what a crash leaves behind. The rule kept at
every point: **no ledger row ever names files that are gone**; at worst there
are files that no row names, marked as garbage, and the next `gear delete`
removes them.

    containers/C/.gear-deleting       1. marker: "C is being deleted" (under the ledger's write lock)
    ledger: rows of C deleted         2. COMMIT: the point of no return
    containers/.trash-C-<token>/      3. rename (atomic, same directory)
    (nothing)                         4. removed, never following a symlink

On a full disk step 2 cannot write SQLite's journal, so the order turns
around: the rollback of 1-2 leaves C whole, then (under the write lock again)

    containers/.trash-* of earlier deletes removed     (garbage: no row names it)
    containers/.trash-C-<token>/      3'. rename, then removed: the room for step 4'
    ledger: rows of C deleted         4'. COMMIT

and a crash between 3' and 4' is the one point where rows name files that
are gone: `gear show` says the working directory is missing, and `gear
delete C` again deletes the rows.

A crash before 2 leaves C whole (SQLite rolls the transaction back; a stale
marker means nothing while C has rows). A crash between 2 and 3 leaves
`containers/C` with its marker and no rows; one after 3 leaves a trash
directory. Both are removed by the next `gear delete` (any container), and
`gear delete C` again finishes the job. Steps 2 and 3 run with Ctrl-C and
termination signals held, so only SIGKILL or a power cut can fall between
them.

Removal opens every directory relative to its parent with O_NOFOLLOW, so a
symlink — present from the start or swapped in while gear works — is
removed as a link and never followed, and it does not cross into another
file system (a mount point is refused before anything changes).
"""

from __future__ import annotations

import errno
import os
import secrets
import signal
import sqlite3
import stat
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..notify import settings as notify
from ..slurm import jobs as slurm
from ..base.errors import GearError, NotFound
from ..ledger.db import Execution, Ledger
from ..base.names import check_name
from ..storage.disk import DIR_FLAGS as _DIR_FLAGS, UserStorage, list_fd as _list_fd, remove_entry as _remove_entry

MARKER = ".gear-deleting"
TRASH_PREFIX = ".trash-"    # never a container name: names start with [a-z0-9]
# Signals that must not split "commit" from "move aside"; they are delivered right after.
HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT}
# Every directory is opened relative to its parent, and never through a symlink.


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


@dataclass
class DeleteResult:
    plan: DeletePlan
    removed: list[str]                    # paths removed (the container, and leftovers of earlier deletes)
    freed_bytes: int                      # measured while removing: files whose last link went
    link_not_followed: bool = False       # containers/C had become a symlink: only the link went
    freed_disk_bytes: int = 0             # the blocks of those files and of the directories, as `df` sees

    def to_json(self) -> dict[str, Any]:
        data = self.plan.to_json()
        data.update(deleted=True, freed_bytes=self.freed_bytes, freed_disk_bytes=self.freed_disk_bytes,
                    removed=self.removed, link_not_followed=self.link_not_followed)
        return data


# --- the plan: refresh, refuse, measure (changes nothing) ---

def plan_delete(ledger: Ledger, storage: UserStorage, name: str,
                query: Callable[[], dict[str, slurm.SlurmJob]] = slurm.query_jobs) -> DeletePlan:
    """What `gear delete NAME` would remove; raises if it must be refused.

    Refused: an unknown container, one with an execution still submitting,
    queued, syncing, running or saving, one whose working directories an
    open execution of another container reads, and a container directory
    that is a symlink, not a directory, or holds a mount point.
    """
    from ..executions import lifecycle as executions

    check_name(name, "container name")
    report = executions.refresh(ledger, query)
    in_ledger = name in ledger.container_names()
    rows = ledger.executions(container=name) if in_ledger else []
    _refuse_if_in_use(ledger, name, rows, report.slurm_error)

    with _containers_dir(storage) as cfd:
        leftovers = _find_leftovers(cfd, set(ledger.container_names()))
        if not in_ledger and not any(item.container == name for item in leftovers):
            raise NotFound(f"no container {name!r} (see `gear ls`); nothing was deleted")
        identity = _identity(cfd, name) if in_ledger else ("missing", 0, 0)
        path = storage.container_dir(name)
        if identity[0] == "link":
            raise GearError(f"{path} is a symbolic link, not gear's directory of {name}; gear never follows "
                            "a link out of a container, so nothing was deleted (remove or move the link back "
                            "yourself first)")
        if identity[0] == "other":
            raise GearError(f"{path} is not a directory; nothing was deleted")
        usage = _Usage(os.fstat(cfd).st_dev, str(path))
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
        leftovers=leftovers, unreadable=usage.unreadable, identity=identity)


def measure_unmeasured(ledger: Ledger) -> int:
    """Record the disk figure of closed executions that have none (closed before gear kept one).

    Returns how many were measured. Oldest first, so that each sees its
    earlier executions as they are (storage.execution_usage).
    """
    from ..storage.disk import execution_usage

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


def _refuse_if_in_use(ledger: Ledger, name: str, rows: list[Execution], slurm_error: str | None = None) -> None:
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


class _Usage:
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


# --- the delete ---

def delete(ledger: Ledger, storage: UserStorage, plan: DeletePlan) -> DeleteResult:
    """Delete the container `plan` describes; the plan is checked again under the ledger's lock.

    Raises (and changes nothing) if the container changed since it was
    planned. A failure after the commit point says what was left and where.
    """
    name = plan.container
    trash = f"{TRASH_PREFIX}{name}-{secrets.token_hex(4)}"
    conn = ledger.conn
    with _containers_dir(storage) as cfd:
        marker = committed = False
        moved: str | None = None
        conn.execute("BEGIN IMMEDIATE")   # the write lock: no `gear run` can add to C meanwhile
        try:
            _recheck(ledger, cfd, plan)
            # Garbage of earlier interrupted deletes: moving it aside is safe at any point.
            swept = _sweep_orphans(cfd, set(ledger.container_names()))
            if plan.in_ledger:
                if plan.identity[0] == "dir":
                    _write_marker(cfd, name)
                    marker = True
                conn.execute("DELETE FROM executions WHERE container = ?", (name,))
                conn.execute("DELETE FROM containers WHERE name = ?", (name,))
            with _signals_held():
                _commit(conn)
                committed = True
                if plan.in_ledger:
                    moved = _move_aside(cfd, name, trash)
        except BaseException as exc:
            if not committed:
                if conn.in_transaction:
                    _rollback(conn)
                if marker:
                    _remove_marker(cfd, name)
                if plan.in_ledger and _disk_full(exc):
                    # The ledger cannot write its journal, so the rows cannot go
                    # first: the files go first, to make the room (see the table).
                    return _delete_files_first(ledger, storage, cfd, plan, trash)
                if isinstance(exc, (OSError, sqlite3.Error)):
                    raise GearError(f"could not delete {name} ({exc}); nothing was deleted") from None
                raise
            if isinstance(exc, OSError):
                raise GearError(f"{name} was deleted from your ledger, but {plan.path} could not be moved "
                                f"aside ({exc.strerror or exc}); the next `gear delete` removes it") from None
            raise
        link = moved is not None and _identity(cfd, moved)[0] == "link"
        doomed = sorted(set(([moved] if moved else []) + swept
                            + [entry for entry in _list_fd(cfd) if entry.startswith(TRASH_PREFIX)]))
        removed, failures, freed, freed_disk = [], [], 0, 0
        for entry in doomed:
            try:
                freed_disk += _frees_disk(cfd, entry)
                freed += _remove_entry(cfd, entry)
                removed.append(str(storage.root / "containers" / entry))
            except (OSError, GearError) as exc:
                failures.append(f"{entry}: {exc}")
    try:
        notify.forget_container(storage, name)   # the mail proofs of its executions (notify.py)
    except (OSError, GearError):
        pass   # harmless: a proof names an execution that no longer exists
    if failures:
        where = os.path.dirname(plan.path)
        raise GearError(f"{name} was deleted from your ledger, but some files could not be removed "
                        f"({'; '.join(failures)}); they are in {where} and the next `gear delete` tries again")
    return DeleteResult(plan, removed, freed, link_not_followed=link, freed_disk_bytes=freed_disk)


def _disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)


def _rollback(conn: Any) -> None:
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass   # SQLite rolled back on its own (a full disk); nothing was committed either way


def _delete_files_first(ledger: Ledger, storage: UserStorage, cfd: int, plan: DeletePlan, trash: str) -> DeleteResult:
    """The delete on a full disk: garbage, then the container's files, then its rows.

    Deleting rows needs room for SQLite's rollback journal, which a full disk
    does not have. Garbage of earlier deletes goes first (no row names it);
    then, under the write lock, `containers/C` is moved aside and removed,
    and only then are the rows deleted. A crash between the two leaves rows
    that name files that are gone: `gear delete C` again removes them.
    """
    name = plan.container
    conn = ledger.conn
    removed, freed, freed_disk = [], 0, 0
    for entry in _list_fd(cfd):
        if entry.startswith(TRASH_PREFIX):
            freed_disk += _frees_disk(cfd, entry)
            freed += _remove_entry(cfd, entry)
            removed.append(str(storage.root / "containers" / entry))
    moved = None
    conn.execute("BEGIN IMMEDIATE")
    try:
        _recheck(ledger, cfd, plan)
        moved = _move_aside(cfd, name, trash) if plan.identity[0] == "dir" else None
        if moved is not None:
            freed_disk += _frees_disk(cfd, moved)
            freed += _remove_entry(cfd, moved)
            removed.append(plan.path)
        conn.execute("DELETE FROM executions WHERE container = ?", (name,))
        conn.execute("DELETE FROM containers WHERE name = ?", (name,))
        _commit(conn)
    except BaseException as exc:
        if conn.in_transaction:
            _rollback(conn)
        if moved is None or not isinstance(exc, (OSError, sqlite3.Error)):
            raise
        raise GearError(f"your gear storage is full: the files of {name} were removed, but its ledger rows could "
                        f"not be (still no space: {exc}); free space (`gear data rm NAME@V`) and run "
                        f"`gear delete {name}` again") from None
    return DeleteResult(plan, removed, freed, freed_disk_bytes=freed_disk)


def _frees_disk(cfd: int, entry: str) -> int:
    """The blocks removing `entry` gives back, measured right before it goes (never raises)."""
    usage = _Usage(os.fstat(cfd).st_dev, "containers")
    try:
        usage.add(cfd, entry)
    except (OSError, GearError):
        return 0   # a mount point: the removal refuses it, and reports why
    return usage.frees_disk()[0]


def _recheck(ledger: Ledger, cfd: int, plan: DeletePlan) -> None:
    """Under the write lock: is the container still what the user confirmed?"""
    name = plan.container
    in_ledger = name in ledger.container_names()
    rows: list[Execution] = ledger.executions(container=name) if in_ledger else []
    _refuse_if_in_use(ledger, name, rows)
    if in_ledger != plan.in_ledger or sorted(e.number for e in rows) != sorted(e.number for e in plan.executions):
        raise GearError(f"{name} changed since it was listed; nothing was deleted. Run `gear delete {name}` again")
    if not plan.in_ledger:
        return
    now = _identity(cfd, name)
    if now[0] == "link":
        raise GearError(f"{plan.path} was replaced by a symbolic link while gear was asking; gear never follows "
                        "a link out of a container, so nothing was deleted")
    if now != plan.identity:
        raise GearError(f"{plan.path} was replaced or removed since it was listed; nothing was deleted. "
                        f"Run `gear delete {name}` again")


def _commit(conn: Any) -> None:
    conn.execute("COMMIT")


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold Ctrl-C and termination signals; they arrive as soon as the block ends."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _move_aside(cfd: int, name: str, trash: str) -> str | None:
    """Rename containers/NAME (a directory, or a link: the link itself) to a trash name."""
    try:
        os.rename(name, trash, src_dir_fd=cfd, dst_dir_fd=cfd)
    except FileNotFoundError:
        return None   # gone already (a concurrent `gear delete` swept it)
    return trash


# --- leftovers of interrupted deletes ---

def _find_leftovers(cfd: int, names: set[str]) -> list[Leftover]:
    found = []
    for entry in _list_fd(cfd):
        if entry.startswith(TRASH_PREFIX):
            owner = entry[len(TRASH_PREFIX):].rpartition("-")[0] or entry
        elif _is_orphan(cfd, entry, names):
            owner = entry
        else:
            continue
        usage = _Usage(os.fstat(cfd).st_dev, "containers")
        try:
            size = usage.add(cfd, entry)[0]
        except GearError:
            size = 0
        found.append(Leftover(entry, owner, size, usage.frees_disk()[0]))
    return found


def _is_orphan(cfd: int, entry: str, names: set[str]) -> bool:
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


def _sweep_orphans(cfd: int, names: set[str]) -> list[str]:
    """Move marked orphans aside (call under the write lock, so no `gear run` is half-way)."""
    moved = []
    for entry in _list_fd(cfd):
        if _is_orphan(cfd, entry, names):
            target = _move_aside(cfd, entry, f"{TRASH_PREFIX}{entry}-{secrets.token_hex(4)}")
            if target:
                moved.append(target)
    return moved


def _write_marker(cfd: int, name: str) -> None:
    """An empty file: its presence is the message (and it adds nothing to what is freed)."""
    fd = os.open(name, _DIR_FLAGS, dir_fd=cfd)
    try:
        os.close(os.open(MARKER, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=fd))
    finally:
        os.close(fd)


def _remove_marker(cfd: int, name: str) -> None:
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=cfd)
    except OSError:
        return
    try:
        os.unlink(MARKER, dir_fd=fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- file system helpers: everything relative to an open directory, nothing followed ---

@contextmanager
def _containers_dir(storage: UserStorage) -> Iterator[int]:
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


def _identity(cfd: int, name: str) -> tuple[str, int, int]:
    try:
        info = os.stat(name, dir_fd=cfd, follow_symlinks=False)
    except FileNotFoundError:
        return ("missing", 0, 0)
    kind = "dir" if stat.S_ISDIR(info.st_mode) else "link" if stat.S_ISLNK(info.st_mode) else "other"
    return (kind, info.st_dev, info.st_ino)
