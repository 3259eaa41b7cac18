import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from gear_hpc.ledger.db import Ledger
from gear_hpc.ledger.migrations import MIGRATIONS


def _allocate(path: Path, root: Path, container: str = "c") -> int:
    def make_dir(number: int) -> Path:
        (root / str(number)).mkdir(parents=True)
        return root / str(number) / "home"

    with Ledger(path) as ledger:
        return ledger.allocate_execution(container, make_dir, mode="script", status="submitting",
                                         compute_type="cpu-small", image="python", command=["x"],
                                         params={}, bindings=[], token="t")


def test_schema_from_an_empty_database(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as ledger:
        version = ledger.conn.execute("PRAGMA user_version").fetchone()[0]
        mode = ledger.conn.execute("PRAGMA journal_mode").fetchone()[0]
        tables = {r[0] for r in ledger.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        columns = {r[1] for r in ledger.conn.execute("PRAGMA table_info(executions)")}
    assert version == len(MIGRATIONS)
    assert mode == "delete"  # rollback journal: WAL does not work on NFS/Lustre
    assert {"containers", "executions"} <= tables
    assert {"container", "number", "status", "slurm_job_id", "workdir", "parent", "bindings"} <= columns


def test_numbers_increase_and_skip_directories_left_by_a_crash(tmp_path):
    root = tmp_path / "c"
    assert _allocate(tmp_path / "l.sqlite", root) == 1
    (root / "2").mkdir()
    assert _allocate(tmp_path / "l.sqlite", root) == 3


def test_a_failure_inside_a_transaction_leaves_nothing(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as ledger:
        with pytest.raises(RuntimeError):
            with ledger.transaction():
                ledger.ensure_container("c")
                raise RuntimeError("crash")
        assert ledger.container_names() == []


def _worker(args):
    path, root, count = args
    return [_allocate(Path(path), Path(root)) for _ in range(count)]


def test_two_commands_at_once_get_distinct_numbers(tmp_path):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.map(_worker, [(str(tmp_path / "l.sqlite"), str(tmp_path / "c"), 10)] * 4)
    numbers = sorted(n for chunk in results for n in chunk)
    assert numbers == list(range(1, 41))
    with sqlite3.connect(tmp_path / "l.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM executions").fetchone()[0] == 40


def test_a_crash_during_migration_leaves_the_old_schema(tmp_path, monkeypatch):
    import gear_hpc.ledger.db as ledger_module

    with Ledger(tmp_path / "l.sqlite"):
        pass

    def broken(db):
        return ["CREATE TABLE half_done (x)", "THIS IS NOT SQL"]

    monkeypatch.setattr(ledger_module, "MIGRATIONS", [*MIGRATIONS, broken])
    with pytest.raises(sqlite3.OperationalError):
        Ledger(tmp_path / "l.sqlite")
    with sqlite3.connect(tmp_path / "l.sqlite") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "half_done" not in tables


def test_open_or_recent_executions_are_found_through_indexes(tmp_path):
    # `gear status`: the ledger may hold 10,000 executions, of which it shows a few.
    from gear_hpc.base.facts import OPEN_STATUSES
    from gear_hpc.ledger import rows as ledger_rows

    rows = [("queued", None), ("saving", "2026-05-02T00:00:00Z"), ("completed", "2026-05-02T00:00:00Z"),
            ("failed", "2026-04-01T00:00:00Z"), ("lost", None), ("running", "2026-04-01T00:00:00Z")]
    with Ledger(tmp_path / "l.sqlite") as ledger:
        for i, (status, ended_at) in enumerate(rows):
            container = "ba"[i % 2]
            number = _allocate(tmp_path / "l.sqlite", tmp_path / container, container)
            ledger.update_execution(container, number, status=status, ended_at=ended_at)
        sql, params = ledger_rows.executions_query(statuses=OPEN_STATUSES, ended_since="2026-05-01T00:00:00Z")
        plan = [row[-1] for row in ledger.conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
        found = [(e.container, e.number, e.status) for e in ledger.executions(statuses=OPEN_STATUSES,
                                                                             ended_since="2026-05-01T00:00:00Z")]
        plain = ledger.conn.execute(sql.replace("+container", "container"), params).fetchall()
    assert any("idx_executions_status" in step for step in plan), plan
    assert any("idx_executions_ended_at" in step for step in plan), plan
    assert not any(step.startswith("SCAN") for step in plan), plan
    # Every open one (the saving one, which also ended recently, once), the recent closed one, in order.
    assert found == [("a", 1, "saving"), ("a", 3, "running"), ("b", 1, "queued"), ("b", 2, "completed")]
    assert found == [(row["container"], row["number"], row["status"]) for row in plain]
