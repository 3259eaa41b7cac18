"""The ledger's schema, as an ordered list of migrations; its length is the schema version.

Applied by `ledger.db.Ledger` when it opens a ledger (with sqlite-utils,
imported there only when a step is due). The fast path of `gear ls`/`gear
status` compares a ledger's `user_version` with SCHEMA_VERSION, the number of
steps named in base/facts.py (MIGRATION_NAMES), and does not import this module.
"""

from __future__ import annotations

from ..base.facts import MIGRATION_NAMES, SCHEMA_VERSION as SCHEMA_VERSION

# Annotations only: importing typing would cost the fast path (cli/fastpath.py) 2 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

# Each step asks sqlite-utils for the SQL and runs it on our own connection,
# so that all pending steps apply in ONE transaction: a crash mid-migration
# leaves the previous schema, never half of the new one.

def _m001_initial(db: Any) -> Iterator[str]:
    # A generator: sqlite-utils checks foreign keys against tables the
    # previous statements created, so each runs before the next is made.
    yield db.create_table_sql("containers", {"name": str, "created_at": str, "visibility": str}, pk="name",
                              defaults={"visibility": "private"}, not_null={"created_at"})
    yield db.create_table_sql(
            "executions",
            {
                "container": str, "number": int, "mode": str, "status": str, "exit_code": int,
                "compute_type": str, "image": str, "command": str, "params": str, "bindings": str,
                "message": str, "parent": str, "slurm_job_id": str, "token": str,
                "submitted_at": str, "started_at": str, "ended_at": str, "size_bytes": int,
                "workdir": str, "note": str, "created_at": str,
            },
            pk=("container", "number"),
            foreign_keys=[("container", "containers", "name")],
            not_null={"mode", "status", "compute_type", "image", "command", "workdir", "token"},
    )
    yield "CREATE INDEX idx_executions_status ON executions (status)"
    yield "CREATE INDEX idx_executions_slurm_job_id ON executions (slurm_job_id)"


def _m002_datasets(db: Any) -> Iterator[str]:
    yield db.create_table_sql("datasets", {"name": str, "created_at": str}, pk="name", not_null={"created_at"})
    yield db.create_table_sql(
            "dataset_versions",
            {"dataset": str, "version": int, "created_at": str, "size_bytes": int, "files": int, "source": str},
            pk=("dataset", "version"),
            foreign_keys=[("dataset", "datasets", "name")],
            not_null={"created_at", "source"},
    )


def _m003_container_totals(db: Any) -> Iterator[str]:
    # What `gear ls` shows of each container, kept in its row by triggers on
    # `executions`, so that it reads one row per container instead of
    # aggregating every execution (3 ms with 10,000). tests/test_ledger_totals.py
    # keeps the aggregate query this replaced and checks both agree after
    # random writes. A container without executions: 0, 0, NULL, NULL, as
    # that query's LEFT JOIN gave.
    yield "ALTER TABLE containers ADD COLUMN execution_count INTEGER NOT NULL DEFAULT 0"
    yield "ALTER TABLE containers ADD COLUMN size_bytes INTEGER NOT NULL DEFAULT 0"
    yield "ALTER TABLE containers ADD COLUMN last_number INTEGER"
    yield "ALTER TABLE containers ADD COLUMN last_status TEXT"
    # The last execution is the highest-numbered one still there: looked up
    # through the primary key after any change that may move it.
    last_of = "(SELECT number, status FROM executions WHERE container = {0} ORDER BY number DESC LIMIT 1)"
    yield f"""UPDATE containers SET
        execution_count = (SELECT COUNT(*) FROM executions e WHERE e.container = containers.name),
        size_bytes = (SELECT COALESCE(SUM(e.size_bytes), 0) FROM executions e WHERE e.container = containers.name),
        (last_number, last_status) = {last_of.format("containers.name")}"""
    yield """CREATE TRIGGER executions_totals_insert AFTER INSERT ON executions BEGIN
        UPDATE containers SET execution_count = execution_count + 1,
                              size_bytes = size_bytes + COALESCE(NEW.size_bytes, 0)
            WHERE name = NEW.container;
        UPDATE containers SET (last_number, last_status) = (NEW.number, NEW.status)
            WHERE name = NEW.container AND (last_number IS NULL OR last_number < NEW.number);
    END"""
    yield f"""CREATE TRIGGER executions_totals_delete AFTER DELETE ON executions BEGIN
        UPDATE containers SET execution_count = execution_count - 1,
                              size_bytes = size_bytes - COALESCE(OLD.size_bytes, 0)
            WHERE name = OLD.container;
        UPDATE containers SET (last_number, last_status) = {last_of.format("OLD.container")}
            WHERE name = OLD.container AND last_number = OLD.number;
    END"""
    # Only the columns the totals read; gear never changes a row's container
    # or number, but if anything did, the row moves from OLD's totals to NEW's.
    yield f"""CREATE TRIGGER executions_totals_update AFTER UPDATE OF container, number, status, size_bytes
            ON executions BEGIN
        UPDATE containers SET execution_count = execution_count - 1,
                              size_bytes = size_bytes - COALESCE(OLD.size_bytes, 0)
            WHERE name = OLD.container;
        UPDATE containers SET execution_count = execution_count + 1,
                              size_bytes = size_bytes + COALESCE(NEW.size_bytes, 0)
            WHERE name = NEW.container;
        UPDATE containers SET (last_number, last_status) = {last_of.format("containers.name")}
            WHERE name IN (OLD.container, NEW.container);
    END"""


def _m004_ended_at_index(db: Any) -> Iterator[str]:
    # `gear status`: executions that ended in the last 24 hours, without
    # reading them all (ledger_rows.executions_query).
    yield "CREATE INDEX idx_executions_ended_at ON executions (ended_at)"


def _m005_disk_bytes(db: Any) -> Iterator[str]:
    # What the disk holds for each execution (storage.execution_usage: blocks,
    # hard links once, each block in the earliest execution holding it), and
    # its container's total for `gear ls`: the triggers of migration 3 again,
    # each keeping both sums. Executions closed before this have none (NULL,
    # counted as 0) until `gear du` measures them.
    yield "ALTER TABLE executions ADD COLUMN disk_bytes INTEGER"
    yield "ALTER TABLE containers ADD COLUMN disk_bytes INTEGER NOT NULL DEFAULT 0"
    last_of = "(SELECT number, status FROM executions WHERE container = {0} ORDER BY number DESC LIMIT 1)"
    add = """UPDATE containers SET execution_count = execution_count + 1,
                                  size_bytes = size_bytes + COALESCE({0}.size_bytes, 0),
                                  disk_bytes = disk_bytes + COALESCE({0}.disk_bytes, 0)
                WHERE name = {0}.container;"""
    remove = """UPDATE containers SET execution_count = execution_count - 1,
                                  size_bytes = size_bytes - COALESCE({0}.size_bytes, 0),
                                  disk_bytes = disk_bytes - COALESCE({0}.disk_bytes, 0)
                WHERE name = {0}.container;"""
    for name in ("insert", "delete", "update"):
        yield f"DROP TRIGGER executions_totals_{name}"
    yield f"""CREATE TRIGGER executions_totals_insert AFTER INSERT ON executions BEGIN
        {add.format("NEW")}
        UPDATE containers SET (last_number, last_status) = (NEW.number, NEW.status)
            WHERE name = NEW.container AND (last_number IS NULL OR last_number < NEW.number);
    END"""
    yield f"""CREATE TRIGGER executions_totals_delete AFTER DELETE ON executions BEGIN
        {remove.format("OLD")}
        UPDATE containers SET (last_number, last_status) = {last_of.format("OLD.container")}
            WHERE name = OLD.container AND last_number = OLD.number;
    END"""
    yield f"""CREATE TRIGGER executions_totals_update
            AFTER UPDATE OF container, number, status, size_bytes, disk_bytes ON executions BEGIN
        {remove.format("OLD")}
        {add.format("NEW")}
        UPDATE containers SET (last_number, last_status) = {last_of.format("containers.name")}
            WHERE name IN (OLD.container, NEW.container);
    END"""


def _m006_sharing(db: Any) -> Iterator[str]:
    # Who may read a container or dataset besides its owner (docs/sharing.md):
    # visibility is private, group or public; share_group names the Unix group
    # of a group share. The storage's modes are what enforce it; these columns
    # only let `gear ls` and `gear data ls` show it without a stat per entry.
    yield "ALTER TABLE containers ADD COLUMN share_group TEXT"
    yield "ALTER TABLE datasets ADD COLUMN visibility TEXT NOT NULL DEFAULT 'private'"
    yield "ALTER TABLE datasets ADD COLUMN share_group TEXT"


# The steps in base/facts.py's order (MIGRATION_NAMES, whose length is SCHEMA_VERSION, the
# schema a ledger has after every migration: PRAGMA user_version); a step without its function fails here.
MIGRATIONS: list[Callable[[Any], Iterator[str]]] = [globals()[f"_m{number:03d}_{name}"]
                                                    for number, name in enumerate(MIGRATION_NAMES, 1)]
