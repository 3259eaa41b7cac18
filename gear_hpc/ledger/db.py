"""The user's ledger of containers and executions (SQLite).

Clusters keep homes and project storage on NFS or Lustre, where WAL does not
work and locks may be local only, so the ledger uses a rollback journal, a
busy timeout, and one writer: the `gear` command on the login node. Jobs never
write here; they write status records that the command folds in.

Reads and writes go through the standard `sqlite3` module because it imports
in a few milliseconds (`gear ls` must start fast). Schema changes are
migrations applied with sqlite-utils, imported only when the schema is behind.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The read side (queries, constants) lives in ledger_rows, which the fast
# path of `gear ls`/`gear status` imports without this module's dataclass.
from ..base import errors
from ..base.errors import GearError
from ..base.facts import CLOSED_STATUSES, OPEN_STATUSES
from . import rows as ledger_rows
from .migrations import MIGRATIONS
from .rows import BUSY_TIMEOUT_MS as BUSY_TIMEOUT_MS, Execution as Execution  # importable from here


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# The one declaration of an execution's fields is rows.Execution (the fast
# path reads their names from it); here, where dataclasses may be imported,
# it becomes the dataclass.
dataclass(Execution)


_JSON_COLUMNS = ledger_rows.JSON_COLUMNS


def _row_to_execution(row: sqlite3.Row) -> Execution:
    return Execution(**ledger_rows.execution_values(row))


class DatasetLedger:
    """Datasets and their immutable, numbered versions (mixed into Ledger)."""

    conn: sqlite3.Connection

    def create_dataset(self, name: str) -> bool:
        """Record a dataset; False if it already existed."""
        cursor = self.conn.execute("INSERT OR IGNORE INTO datasets (name, created_at) VALUES (?, ?)",
                                   (name, utc_now()))
        return cursor.rowcount == 1

    def dataset_exists(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM datasets WHERE name = ?", (name,)).fetchone() is not None

    def dataset_summaries(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            """SELECT d.name, d.created_at, COUNT(v.version) AS versions, MAX(v.version) AS latest,
                      COALESCE(SUM(v.size_bytes), 0) AS size_bytes, d.visibility, d.share_group AS "group"
               FROM datasets d LEFT JOIN dataset_versions v ON v.dataset = d.name
               GROUP BY d.name ORDER BY d.name""")
        return [dict(row) for row in rows]

    def versions(self, dataset: str) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM dataset_versions WHERE dataset = ? ORDER BY version", (dataset,))
        return [dict(row) for row in rows]

    def latest_version(self, dataset: str) -> int | None:
        latest: int | None = self.conn.execute("SELECT MAX(version) FROM dataset_versions WHERE dataset = ?",
                                               (dataset,)).fetchone()[0]
        return latest

    def add_version(self, dataset: str, place: Callable[[int], None], size_bytes: int, files: int,
                    source: str) -> int:
        """Take the next version number, let `place(number)` move the files there, record it.

        A failure in `place` records nothing; the number is never reused
        because its directory is what `place` creates.
        """
        with self.transaction():  # type: ignore[attr-defined]
            number = (self.latest_version(dataset) or 0) + 1
            place(number)
            self.conn.execute(
                "INSERT INTO dataset_versions (dataset, version, created_at, size_bytes, files, source)"
                " VALUES (?, ?, ?, ?, ?, ?)", (dataset, number, utc_now(), size_bytes, files, source))
        return number

    def delete_version(self, dataset: str, version: int) -> None:
        self.conn.execute("DELETE FROM dataset_versions WHERE dataset = ? AND version = ?", (dataset, version))

    def delete_dataset(self, dataset: str) -> None:
        with self.transaction():  # type: ignore[attr-defined]
            self.conn.execute("DELETE FROM dataset_versions WHERE dataset = ?", (dataset,))
            self.conn.execute("DELETE FROM datasets WHERE name = ?", (dataset,))


class Ledger(DatasetLedger):
    """One connection to a user's ledger. Use as a context manager."""

    def __init__(self, path: Path):
        self.path = Path(path)
        errors.ledger_in_use = str(self.path)  # named by errors.describe (SQLite's errors do not say)
        if not os.path.lexists(self.path):
            _create_empty(self.path)
        # mode=rw: SQLite never creates the file here, so a ledger of 0 bytes
        # was made so by something else (truncated), never by a command starting.
        uri = "file:" + str(self.path).replace("%", "%25").replace("?", "%3f").replace("#", "%23") + "?mode=rw"
        self.conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            self.conn.row_factory = sqlite3.Row
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.conn.execute("PRAGMA foreign_keys = ON")
            if os.path.getsize(self.path) == 0:
                # SQLite would take it for a new database, and every container and
                # dataset would vanish from the listings while their files stay.
                raise GearError(f"the ledger {self.path} is empty (0 bytes): it was truncated or replaced. gear "
                                "will not start a new ledger over it; restore it from a backup, or remove it "
                                f"(rm {self.path}) to start with an empty ledger")
            self._migrate()
        except BaseException:
            self.conn.close()
            raise

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version >= len(MIGRATIONS):
            return
        import sqlite_utils  # slow to import; only needed when the schema changes

        # The rollback journal (DELETE) is SQLite's default; WAL is never enabled.
        db = sqlite_utils.Database(self.conn)
        with self.transaction():
            # Read again under the write lock: another command may have migrated.
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            for step in MIGRATIONS[version:]:
                for statement in step(db):
                    self.conn.execute(statement)
            self.conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

    def transaction(self) -> _Transaction:
        return _Transaction(self.conn)

    # --- containers ---

    def ensure_container(self, name: str) -> None:
        self.conn.execute("INSERT OR IGNORE INTO containers (name, created_at) VALUES (?, ?)", (name, utc_now()))

    def container_names(self) -> list[str]:
        return [row[0] for row in self.conn.execute("SELECT name FROM containers ORDER BY name")]

    def container_summaries(self) -> list[dict[str, Any]]:
        return ledger_rows.container_summaries(self.conn)

    # --- sharing (storage/sharing.py: the modes enforce it; these rows say it) ---

    def set_visibility(self, table: str, name: str, visibility: str, group: str | None) -> None:
        """Record who may read container or dataset `name` (`table`: "containers" or "datasets")."""
        assert table in ("containers", "datasets")
        self.conn.execute(f"UPDATE {table} SET visibility = ?, share_group = ? WHERE name = ?",
                          (visibility, group, name))

    def visibility(self, table: str, name: str) -> tuple[str, str | None] | None:
        """(visibility, group) of container or dataset `name`; None if there is none."""
        assert table in ("containers", "datasets")
        row = self.conn.execute(f"SELECT visibility, share_group FROM {table} WHERE name = ?", (name,)).fetchone()
        return (row[0], row[1]) if row else None

    def shared_container_summaries(self) -> list[dict[str, Any]]:
        """What readers see of each shared container: its closed executions only."""
        rows = self.conn.execute(
            f"""SELECT c.name, c.created_at, c.visibility, c.share_group AS "group",
                       COUNT(e.number) AS executions, MAX(e.number) AS last_number,
                       COALESCE(SUM(e.size_bytes), 0) AS size_bytes, COALESCE(SUM(e.disk_bytes), 0) AS disk_bytes
                FROM containers c LEFT JOIN executions e
                     ON e.container = c.name AND e.status IN ({", ".join("?" * len(CLOSED_STATUSES))})
                WHERE c.visibility != 'private' GROUP BY c.name ORDER BY c.name""", CLOSED_STATUSES)
        summaries = [dict(row) for row in rows]
        for summary in summaries:
            last = summary["last_number"]
            summary["last_status"] = None if last is None else self.conn.execute(
                "SELECT status FROM executions WHERE container = ? AND number = ?", (summary["name"], last)).fetchone()[0]
        return summaries

    # --- executions ---

    def allocate_execution(self, container: str, make_dir: Callable[[int], Path], **values: Any) -> int:
        """Take the next number of `container`, create its directory, record it.

        `make_dir(number)` creates the execution's directory (raising
        FileExistsError if it exists) and returns its working directory path.

        The write lock is held from choosing the number to recording it, so
        two commands at once get two numbers; a number whose directory
        already exists (left by a crash) is skipped rather than reused.
        """
        with self.transaction():
            self.ensure_container(container)
            number = (self.conn.execute("SELECT MAX(number) FROM executions WHERE container = ?",
                                        (container,)).fetchone()[0] or 0) + 1
            while True:
                try:
                    workdir = make_dir(number)
                    break
                except FileExistsError:
                    number += 1
            row = dict(values, container=container, number=number, workdir=str(workdir), created_at=utc_now())
            for key in _JSON_COLUMNS:
                if key in row:
                    row[key] = json.dumps(row[key])
            columns = ", ".join(row)
            self.conn.execute(f"INSERT INTO executions ({columns}) VALUES ({', '.join('?' * len(row))})",
                              list(row.values()))
        return number

    def update_execution(self, container: str, number: int, **values: Any) -> None:
        for key in _JSON_COLUMNS:
            if key in values:
                values[key] = json.dumps(values[key])
        assignments = ", ".join(f"{key} = ?" for key in values)
        self.conn.execute(f"UPDATE executions SET {assignments} WHERE container = ? AND number = ?",
                          [*values.values(), container, number])

    def delete_execution(self, container: str, number: int) -> None:
        with self.transaction():
            self.conn.execute("DELETE FROM executions WHERE container = ? AND number = ?", (container, number))
            remaining = self.conn.execute("SELECT COUNT(*) FROM executions WHERE container = ?",
                                          (container,)).fetchone()[0]
            if not remaining:
                self.conn.execute("DELETE FROM containers WHERE name = ?", (container,))

    def get_execution(self, container: str, number: int) -> Execution | None:
        row = self.conn.execute("SELECT * FROM executions WHERE container = ? AND number = ?",
                                (container, number)).fetchone()
        return _row_to_execution(row) if row else None

    def executions(self, container: str | None = None, statuses: tuple[str, ...] | None = None,
                   ended_since: str | None = None) -> list[Execution]:
        sql, params = ledger_rows.executions_query(container, statuses, ended_since)
        return [_row_to_execution(row) for row in self.conn.execute(sql, params)]

    def open_executions(self) -> list[Execution]:
        return self.executions(statuses=OPEN_STATUSES)


def _create_empty(path: Path) -> None:
    """A new ledger: an SQLite file written aside, then linked into place whole.

    Two first commands at once both try; the one whose link comes second
    uses the first's file.
    """
    import secrets

    temporary = path.with_name(f".{path.name}.new-{secrets.token_hex(4)}")
    try:
        conn = sqlite3.connect(temporary, isolation_level=None)
        try:
            conn.execute("PRAGMA user_version = 0")   # writes the header: a valid, empty database
        finally:
            conn.close()
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        except OSError:   # a file system without hard links
            if not os.path.lexists(path):
                os.rename(temporary, path)
    finally:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any exception (a crash leaves nothing half-written)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        else:
            self._rollback()

    def _rollback(self) -> None:
        # SQLite rolls back on its own after some errors (a full disk, an I/O
        # error): ROLLBACK then fails with "no transaction is active", and
        # that would replace the error that explains what happened.
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the error under way says more; SQLite undoes it on the next open


def iter_closed(executions: list[Execution]) -> Iterator[Execution]:
    return (e for e in executions if not e.is_open)
