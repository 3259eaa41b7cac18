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

import os
import secrets
import signal
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..base.errors import GearError, is_disk_full
from ..ledger.db import Execution, Ledger
from ..notify import settings as notify
from ..storage.disk import DIR_FLAGS as _DIR_FLAGS, UserStorage, list_fd as _list_fd, remove_entry as _remove_entry
from .plan import (
    MARKER,
    TRASH_PREFIX,
    DeletePlan,
    entry_identity,
    is_orphan,
    open_containers_dir,
    refuse_if_in_use,
    with_statuses,
)
from .usage import TreeUsage

# Signals that must not split "commit" from "move aside"; they are delivered right after.
HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT}


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


def delete(ledger: Ledger, storage: UserStorage, plan: DeletePlan) -> DeleteResult:
    """Delete the container `plan` describes; the plan is checked again under the ledger's lock.

    Raises (and changes nothing) if the container changed since it was
    planned. A failure after the commit point says what was left and where.
    """
    name = plan.container
    trash = f"{TRASH_PREFIX}{name}-{secrets.token_hex(4)}"
    conn = ledger.conn
    if plan.in_ledger:
        from .sharing import before_deleting

        # Closed to other users (and out of their indexes) before anything goes:
        # nobody else reads a container that is half deleted.
        before_deleting(ledger, "container", name)
    with open_containers_dir(storage) as cfd:
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
                if plan.in_ledger and is_disk_full(exc):
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
        link = moved is not None and entry_identity(cfd, moved)[0] == "link"
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
        notify.forget_container(storage, name)   # the mail proofs of its executions (notify/settings.py)
    except (OSError, GearError):
        pass   # harmless: a proof names an execution that no longer exists
    if failures:
        where = os.path.dirname(plan.path)
        raise GearError(f"{name} was deleted from your ledger, but some files could not be removed "
                        f"({'; '.join(failures)}); they are in {where} and the next `gear delete` tries again")
    return DeleteResult(plan, removed, freed, link_not_followed=link, freed_disk_bytes=freed_disk)


def _rollback(conn: sqlite3.Connection) -> None:
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
    usage = TreeUsage(os.fstat(cfd).st_dev, "containers")
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
    refuse_if_in_use(ledger, name, with_statuses(rows, plan.unrecorded))
    if in_ledger != plan.in_ledger or sorted(e.number for e in rows) != sorted(e.number for e in plan.executions):
        raise GearError(f"{name} changed since it was listed; nothing was deleted. Run `gear delete {name}` again")
    if not plan.in_ledger:
        return
    now = entry_identity(cfd, name)
    if now[0] == "link":
        raise GearError(f"{plan.path} was replaced by a symbolic link while gear was asking; gear never follows "
                        "a link out of a container, so nothing was deleted")
    if now != plan.identity:
        raise GearError(f"{plan.path} was replaced or removed since it was listed; nothing was deleted. "
                        f"Run `gear delete {name}` again")


def _commit(conn: sqlite3.Connection) -> None:
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


def _sweep_orphans(cfd: int, names: set[str]) -> list[str]:
    """Move marked orphans aside (call under the write lock, so no `gear run` is half-way)."""
    moved = []
    for entry in _list_fd(cfd):
        if is_orphan(cfd, entry, names):
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
