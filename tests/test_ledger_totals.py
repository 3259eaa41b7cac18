"""Each container's totals (`gear ls`), kept by triggers, against the aggregate of its executions.

The triggers of ledger migrations 3 and 5 must give, after any sequence of writes,
exactly what the query they replaced computed from `executions` every time;
that query is kept here as the reference.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

import gear_hpc.ledger.db as ledger_module
from gear_hpc.base.facts import CLOSED_STATUSES, OPEN_STATUSES
from gear_hpc.containers import delete as containers, plan as plans
from gear_hpc.executions import reconcile
from gear_hpc.ledger import rows as ledger_rows
from gear_hpc.ledger.db import Ledger
from gear_hpc.ledger.migrations import MIGRATIONS
from gear_hpc.storage.disk import UserStorage

# The container summaries before migration 3: one pass over every execution;
# with a single max(), SQLite takes the bare column e.status from the row
# holding the maximum (https://www.sqlite.org/lang_select.html#bareagg).
AGGREGATE_SQL = """
    SELECT c.name, c.created_at, c.visibility, c.share_group AS "group", COUNT(e.number) AS executions,
           MAX(e.number) AS last_number, COALESCE(SUM(e.size_bytes), 0) AS size_bytes,
           COALESCE(SUM(e.disk_bytes), 0) AS disk_bytes, e.status AS last_status
    FROM containers c LEFT JOIN executions e ON e.container = c.name
    GROUP BY c.name ORDER BY c.name"""

NAMES = ("a", "b", "c")
SIZES = (None, 0, 1, 4096, 123_456_789_012)


def aggregate(conn: sqlite3.Connection) -> list[dict[str, object]]:
    conn.row_factory = sqlite3.Row
    return [dict(row) for row in conn.execute(AGGREGATE_SQL)]


def typed(summaries: list[dict[str, object]]) -> list[dict[str, object]]:
    """The summaries with each value's type beside it: 0 and None, 1 and 1.0 are not the same."""
    return [{key: (type(value).__name__, value) for key, value in s.items()} for s in summaries]


@pytest.fixture
def storage(gear_env) -> UserStorage:
    storage = UserStorage(gear_env["storage"])
    storage.ensure()
    return storage


def allocate(ledger: Ledger, storage: UserStorage, container: str, status: str = "submitting") -> int:
    def make_dir(number: int) -> Path:
        home = storage.execution_dir(container, number) / "home"
        home.mkdir(parents=True)  # FileExistsError: the number is skipped
        return home

    return ledger.allocate_execution(container, make_dir, mode="script", status=status, compute_type="cpu-small",
                                     image="python", command=["x"], params={}, bindings=[], token="t")


def numbers(ledger: Ledger, container: str | None = None) -> list[tuple[str, int]]:
    return [(e.container, e.number) for e in ledger.executions(container=container)]


def step(ledger: Ledger, storage: UserStorage, rnd: random.Random) -> str:
    """One random write through gear's own code; returns what it did."""
    existing = numbers(ledger)
    operation = rnd.choice(["allocate", "allocate", "allocate", "update", "update", "update", "delete", "discard",
                            "empty container", "leftover directory", "delete container"])
    if operation == "allocate":
        allocate(ledger, storage, rnd.choice(NAMES))
    elif operation == "empty container":
        ledger.ensure_container(rnd.choice(NAMES))  # zero executions until something is allocated
    elif operation == "leftover directory":
        # A directory left by a crash: the next number skips it.
        container = rnd.choice(NAMES)
        last = max((n for c, n in existing if c == container), default=0)
        storage.execution_dir(container, last + rnd.randint(1, 2)).mkdir(parents=True, exist_ok=True)
    elif not existing:
        return "nothing to change"
    elif operation == "update":
        container, number = rnd.choice(existing)
        changes = rnd.choice([
            {"status": rnd.choice(OPEN_STATUSES + CLOSED_STATUSES)},
            {"size_bytes": rnd.choice(SIZES)},
            {"disk_bytes": rnd.choice(SIZES)},
            {"status": rnd.choice(CLOSED_STATUSES), "size_bytes": rnd.choice(SIZES),
             "disk_bytes": rnd.choice(SIZES), "ended_at": "2026-01-01T00:00:00Z"},
            {"message": "a column no total reads"},
        ])
        ledger.update_execution(container, number, **changes)
    elif operation == "delete":
        ledger.delete_execution(*rnd.choice(existing))  # the container goes with its last execution
    elif operation == "discard":
        container, number = rnd.choice(existing)
        reconcile.discard(ledger, storage.execution_dir(container, number), container, number)
    elif operation == "delete container":
        container = rnd.choice(sorted({c for c, _ in existing}))
        for c, number in numbers(ledger, container):
            ledger.update_execution(c, number, status="completed")  # gear delete refuses open executions
        plan = plans.plan_delete(ledger, storage, container, query=lambda: {})
        containers.delete(ledger, storage, plan)
    return operation


@pytest.mark.parametrize("seed", range(25))
def test_the_totals_equal_the_aggregate_after_any_writes(storage, seed):
    rnd = random.Random(seed)
    with Ledger(storage.ledger_path) as ledger:
        done = []
        for _ in range(80):
            done.append(step(ledger, storage, rnd))
            assert typed(ledger.container_summaries()) == typed(aggregate(ledger.conn)), done
    assert {"allocate", "update", "delete", "discard", "empty container", "delete container"} <= set(done)


def test_a_container_without_executions_and_the_last_one_moving_back(storage):
    with Ledger(storage.ledger_path) as ledger:
        ledger.ensure_container("empty")
        for status in ("completed", "failed", "running"):
            number = allocate(ledger, storage, "c")
            ledger.update_execution("c", number, status=status, size_bytes=None if status == "failed" else 10)
        ledger.delete_execution("c", 3)  # the last one: "failed" (no size) is the last again
        summaries = {s["name"]: s for s in ledger.container_summaries()}
        assert summaries["empty"] == {"name": "empty", "created_at": summaries["empty"]["created_at"],
                                      "visibility": "private", "group": None, "executions": 0, "last_number": None,
                                      "size_bytes": 0, "disk_bytes": 0, "last_status": None}
        assert (summaries["c"]["executions"], summaries["c"]["last_number"], summaries["c"]["size_bytes"],
                summaries["c"]["last_status"]) == (2, 2, 10, "failed")
        assert typed(ledger.container_summaries()) == typed(aggregate(ledger.conn))


def test_the_migration_fills_the_totals_of_an_existing_ledger(storage, monkeypatch):
    # A ledger of schema 2 (before the totals), with executions, a container
    # without any, a size unknown and a gap in the numbers.
    monkeypatch.setattr(ledger_module, "MIGRATIONS", MIGRATIONS[:2])
    with Ledger(storage.ledger_path) as ledger:
        assert ledger.conn.execute("PRAGMA user_version").fetchone()[0] == 2
        ledger.ensure_container("empty")
        for container, status, size in [("a", "completed", 100), ("a", "failed", None), ("b", "queued", 7),
                                         ("a", "timeout", 5), ("b", "lost", None)]:
            number = allocate(ledger, storage, container)
            ledger.update_execution(container, number, status=status, size_bytes=size)
        ledger.delete_execution("a", 2)
        ledger.conn.row_factory = sqlite3.Row
        before = [dict(row) for row in ledger.conn.execute(AGGREGATE_SQL.replace(
            "COALESCE(SUM(e.disk_bytes), 0)", "0").replace(   # no such column yet: migration 5 starts it at 0
            'c.share_group AS "group"', 'NULL AS "group"'))]      # nor this one (migration 6)
    assert [(s["name"], s["executions"], s["last_number"], s["size_bytes"], s["last_status"]) for s in before] == [
        ("a", 2, 3, 105, "timeout"), ("b", 2, 2, 7, "lost"), ("empty", 0, None, 0, None)]
    monkeypatch.setattr(ledger_module, "MIGRATIONS", MIGRATIONS)
    with Ledger(storage.ledger_path) as ledger:
        assert ledger.conn.execute("PRAGMA user_version").fetchone()[0] == ledger_rows.SCHEMA_VERSION
        assert typed(ledger.container_summaries()) == typed(before)
        # And the triggers carry on from the backfilled totals.
        allocate(ledger, storage, "empty")
        ledger.update_execution("a", 3, size_bytes=None)
        ledger.update_execution("a", 1, disk_bytes=8192)
        ledger.delete_execution("b", 2)
        assert typed(ledger.container_summaries()) == typed(aggregate(ledger.conn))


def test_a_whole_container_deleted_leaves_no_totals_behind(storage):
    with Ledger(storage.ledger_path) as ledger:
        for _ in range(3):
            ledger.update_execution("gone", allocate(ledger, storage, "gone"), status="completed", size_bytes=1)
        allocate(ledger, storage, "kept")
        containers.delete(ledger, storage, plans.plan_delete(ledger, storage, "gone", query=lambda: {}))
        assert [s["name"] for s in ledger.container_summaries()] == ["kept"]
        # A container made again under the same name starts from nothing.
        allocate(ledger, storage, "gone")
        assert typed(ledger.container_summaries()) == typed(aggregate(ledger.conn))
        assert ledger.container_summaries()[0]["executions"] == 1
