"""Hostile or broken input on the host (no cluster): one line, nothing half-written, no escapes.

Each case runs the real `gear` (or the library function under it) and checks
the one `gear: error: …` line, the exit code, and that nothing was left.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gear_hpc.base import errors
from gear_hpc.base.errors import GearError, UsageError
from gear_hpc.containers import delete as containers, plan as plans
from gear_hpc.data import bindings, datasets, paths, staging
from gear_hpc.ledger.db import Ledger
from gear_hpc.storage.disk import UserStorage
from helpers import REPO


def gear(*args: str, cwd: Path = REPO, prefix: str = "") -> subprocess.CompletedProcess[str]:
    """The real `gear`; `prefix`: shell commands first (ulimit)."""
    argv = [sys.executable, "-m", "gear_hpc.cli", *args]
    if prefix:
        argv = ["bash", "-c", f'{prefix}; exec "$@"', "bash", *argv]
    return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=str(cwd),
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("gear: error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def storage(gear_env) -> UserStorage:
    storage = UserStorage(gear_env["storage"])
    storage.ensure()
    return storage


def add_execution(storage: UserStorage, name: str, files: dict[str, str], links: dict[str, str] | None = None) -> None:
    """A closed execution name/1 whose working directory holds `files` and symlinks `links`."""
    with Ledger(storage.ledger_path) as ledger:
        def make_dir(number: int) -> Path:
            home = storage.execution_dir(name, number) / "home"
            home.mkdir(parents=True)
            for relative, text in files.items():
                (home / relative).parent.mkdir(parents=True, exist_ok=True)
                (home / relative).write_text(text)
            for relative, target in (links or {}).items():
                (home / relative).symlink_to(target)
            return home

        number = ledger.allocate_execution(name, make_dir, mode="script", status="submitting",
                                           compute_type="cpu-small", image="python", command=["true"], params={},
                                           bindings=[], token="tok")
        ledger.update_execution(name, number, status="completed", exit_code=0, ended_at="2026-01-01T00:00:00Z")


# --- 1. one line, never a traceback; a held ledger is reported within seconds ---

def test_a_locked_ledger_is_named_within_seconds(storage):
    """ls (the fast path), history and data ls (the click path) against a ledger another command holds:
    each waits out the busy timeout, then names the ledger in one line. Run at once, so the suite waits
    for one timeout, not three."""
    from concurrent.futures import ThreadPoolExecutor

    add_execution(storage, "c", {"a.txt": "a"})
    holder = sqlite3.connect(storage.ledger_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")

    def timed(args: list[str]) -> tuple[float, object]:
        started = time.monotonic()
        result = gear(*args)
        return time.monotonic() - started, result

    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            results = list(pool.map(timed, [["ls"], ["history", "c"], ["data", "ls"]]))
    finally:
        holder.close()
    for elapsed, result in results:
        line = one_line_error(result)
        assert f"the ledger {storage.ledger_path} is locked" in line and "try again" in line
        assert elapsed < 15, elapsed


def test_a_damaged_ledger_is_one_line(storage):
    storage.ledger_path.write_bytes(b"this is not an SQLite database, just some bytes" * 200)
    line = one_line_error(gear("history", "c"))
    assert "is damaged" in line and f"mv {storage.ledger_path}" in line


def test_an_empty_ledger_is_refused_not_made_new(storage):
    storage.ledger_path.write_bytes(b"")
    line = one_line_error(gear("ls"))
    assert "is empty (0 bytes)" in line and f"rm {storage.ledger_path}" in line
    assert storage.ledger_path.stat().st_size == 0   # not silently re-initialised


@pytest.mark.parametrize("exc,words", [
    (PermissionError(13, "Permission denied", "/srv/x"), ["permission denied: /srv/x"]),
    (OSError(28, "No space left on device", "/elsewhere/f"), ["no space left", "/elsewhere/f"]),
    (sqlite3.OperationalError("database or disk is full"), ["storage is full", "gear delete CONTAINER"]),
    (sqlite3.OperationalError("database is locked"), ["is locked", "try again"]),
    (UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed"), ["not valid UTF-8"]),
    (RuntimeError("line one\nline two"), ["unexpected RuntimeError", "line one line two"]),
])
def test_every_exception_becomes_one_line(exc, words):
    message, code = errors.one_line(exc)
    assert code != 0 and "\n" not in message
    for word in words:
        assert word in message


def test_a_message_that_is_not_utf8_creates_nothing(storage, gear_env):
    result = gear("run", "-c", "utf", "-m", "bad\udcff", "--code", str(gear_env["code"]), "--", "true")
    assert result.returncode == 2 and "not valid UTF-8" in one_line_error(result)
    assert list((storage.root / "containers").iterdir()) == []


# --- 2. nothing half-written, and the real error is the one reported ---

def test_a_failed_transaction_reports_its_own_error(storage):
    with Ledger(storage.ledger_path) as ledger:
        with pytest.raises(ValueError, match="the real error"):
            with ledger.transaction():
                ledger.conn.execute("ROLLBACK")   # as SQLite does by itself on a full disk or an I/O error
                raise ValueError("the real error")


def test_a_run_under_a_file_size_limit_leaves_nothing(storage, gear_env, fake_slurm):
    fake_slurm("sbatch", "exit 99")
    add_execution(storage, "other", {"a.txt": "a"})
    with sqlite3.connect(storage.ledger_path) as conn:   # a ledger well past the limit
        conn.execute("CREATE TABLE padding (x)")
        conn.execute("INSERT INTO padding VALUES (zeroblob(65536))")
    result = gear("run", "-c", "ul", "--code", str(gear_env["code"]), "--", "true", prefix="ulimit -f 10")
    line = one_line_error(result)
    assert "no transaction is active" not in line
    assert sorted(p.name for p in (storage.root / "containers").iterdir()) == ["other"]
    assert fake_slurm.calls() == []


def test_a_failed_from_output_leaves_no_new_dataset(storage, monkeypatch):
    add_execution(storage, "c", {"out/a.txt": "a"})

    def failing_clone(source: Path, target: Path) -> None:
        target.mkdir()
        (target / "half").write_text("x")
        raise GearError("copy failed: disk full")

    monkeypatch.setattr(staging, "clone_tree", failing_clone)
    with Ledger(storage.ledger_path) as ledger:
        execution = ledger.get_execution("c", 1)
        with pytest.raises(GearError, match="disk full"):
            datasets.from_output(ledger, storage, execution, "fresh", "out")
        assert not ledger.dataset_exists("fresh")
    assert not storage.dataset_dir("fresh").exists()


def test_a_failed_download_leaves_no_partial_tree(tmp_path, monkeypatch):
    tmp_path = tmp_path / "here"
    source = tmp_path / "home"
    (source / "d").mkdir(parents=True)
    (source / "d" / "f").write_text("f")
    real_rsync = staging.rsync

    def failing_rsync(src: str, dst: str, *options: str) -> None:
        real_rsync(src, dst, *options)
        raise GearError("copy failed: interrupted")

    monkeypatch.setattr(staging, "rsync", failing_rsync)
    with pytest.raises(GearError, match="interrupted"):
        staging.download(source, tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_delete_works_on_a_full_disk(storage):
    add_execution(storage, "big", {"a.bin": "x" * 1000})
    add_execution(storage, "keep", {"a.txt": "a"})

    class FullConnection:
        """The ledger's connection on a full disk: deleting rows fails until room is freed."""

        def __init__(self, conn: sqlite3.Connection):
            self.conn = conn

        def __getattr__(self, name: str):
            return getattr(self.conn, name)

        def execute(self, sql: str, *args):
            if sql.startswith("DELETE") and storage.container_dir("big").exists():
                raise sqlite3.OperationalError("database or disk is full")
            return self.conn.execute(sql, *args)

    with Ledger(storage.ledger_path) as ledger:
        plan = plans.plan_delete(ledger, storage, "big", query=lambda: {})
        ledger.conn = FullConnection(ledger.conn)   # type: ignore[assignment]
        result = containers.delete(ledger, storage, plan)
        ledger.conn = ledger.conn.conn
        assert ledger.container_names() == ["keep"]
    assert result.freed_bytes >= 1000
    assert sorted(p.name for p in (storage.root / "containers").iterdir()) == ["keep"]


# --- 3. --from never leaves the working directory ---

@pytest.mark.parametrize("subpath", ["rootlink/etc", "rootlink", "dirlink/x", "../x", "/etc"])
def test_paths_inside_refuses_every_way_out(tmp_path, subpath):
    base = tmp_path / "home"
    (base / "real").mkdir(parents=True)
    (base / "rootlink").symlink_to("/")
    (base / "dirlink").symlink_to("real")
    with pytest.raises(UsageError) as caught:
        paths.inside(base, subpath, "the working directory of c/1")
    assert subpath in str(caught.value)


def test_download_and_from_output_refuse_a_link_component(storage, tmp_path):
    add_execution(storage, "c", {"ok.py": "print(1)\n"}, links={"rootlink": "/"})
    result = gear("download", "c/1", "--from", "rootlink/etc", "-t", "out", cwd=tmp_path)
    assert result.returncode == 2 and "rootlink is a symbolic link" in one_line_error(result)
    assert not (tmp_path / "out").exists()
    result = gear("data", "from-output", "c/1", "--from", "rootlink/etc", "--dataset", "stolen")
    assert result.returncode == 2 and "rootlink is a symbolic link" in one_line_error(result)
    with Ledger(storage.ledger_path) as ledger:
        assert not ledger.dataset_exists("stolen")


# --- 4. user paths are never options ---

def test_a_target_that_looks_like_an_option_is_a_directory(storage, tmp_path):
    add_execution(storage, "c", {"ok.py": "print(1)\n"})
    result = gear("download", "c/1", "--from", "ok.py", "-t", "-rf", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "-rf" / "ok.py").read_text() == "print(1)\n"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".gear-download")]


def test_a_download_into_an_existing_directory_merges(storage, tmp_path):
    add_execution(storage, "c", {"ok.py": "new\n", "sub/b.txt": "b"})
    (tmp_path / "out" / "sub").mkdir(parents=True)
    (tmp_path / "out" / "ok.py").write_text("old\n")
    (tmp_path / "out" / "mine.txt").write_text("mine")
    result = gear("download", "c/1", "-t", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "ok.py").read_text() == "new\n"
    assert (tmp_path / "out" / "sub" / "b.txt").read_text() == "b"
    assert (tmp_path / "out" / "mine.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".gear-download")] == []


# --- 5. small ones ---

def test_a_binding_of_another_users_execution_is_parsed_as_theirs():
    spec = bindings.parse("alice/demo/1:input0")
    assert (spec.owner, spec.container, spec.number) == ("alice", "demo", 1)
    for text in ("alice/demo/0:input0", "alice/demo/x:input0", "Alice/demo/1:input0", "alice/../1:input0",
                 "alice/demo/1/2:input0"):
        with pytest.raises(UsageError, match="invalid binding"):
            bindings.parse(text)


@pytest.mark.parametrize("option", [["--wait", "-5"], ["--idle-timeout", "-1"], ["--port", "0"]])
def test_jupyter_refuses_negative_values(option):
    result = gear("jupyter", *option)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Invalid value" in result.stderr
