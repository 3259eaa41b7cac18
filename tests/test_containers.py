"""`gear delete` on a local file system (no cluster): plan, refusals, symlinks, crash points."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gear_hpc.base.errors import GearError, NotFound
from gear_hpc.cli import containers as cli_containers, main
from gear_hpc.containers import delete as containers, plan as plans
from gear_hpc.ledger.db import Ledger, utc_now
from gear_hpc.storage import disk as storage_module
from gear_hpc.storage.disk import UserStorage, make_read_only
from helpers import REPO


def gear(*args: str) -> subprocess.CompletedProcess[str]:
    """The real `gear` in a subprocess whose standard input is not a terminal."""
    return subprocess.run([sys.executable, "-m", "gear_hpc.cli", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, cwd=str(REPO))


@pytest.fixture
def storage(gear_env) -> UserStorage:
    storage = UserStorage(gear_env["storage"])
    storage.ensure()
    return storage


def _add(storage: UserStorage, name: str, files: dict[str, str], status: str = "completed",
         bindings: list | None = None) -> int:
    """One execution of `name` with these files in its working directory, recorded as `status`."""
    with Ledger(storage.ledger_path) as ledger:
        def make_dir(number: int) -> Path:
            storage.container_dir(name).mkdir(mode=0o700, parents=True, exist_ok=True)
            exec_dir = storage.execution_dir(name, number)
            exec_dir.mkdir(mode=0o700)
            (exec_dir / "output.log").write_text("log\n")
            home = exec_dir / "home"
            home.mkdir()
            for relative, text in files.items():
                (home / relative).parent.mkdir(parents=True, exist_ok=True)
                (home / relative).write_text(text)
            return home

        number = ledger.allocate_execution(name, make_dir, mode="script", status="submitting",
                                           compute_type="cpu-small", image="python", command=["true"], params={},
                                           bindings=bindings or [], token=f"tok{name}")
        closed = status not in ("submitting", "queued", "syncing", "running", "saving")
        ledger.update_execution(name, number, status=status, slurm_job_id=str(700 + number),
                                ended_at=utc_now() if closed else None)
    return number


def _fingerprint(path: Path) -> dict[str, str]:
    found = {}
    for directory, subdirs, files in os.walk(path):
        for entry in subdirs + files:
            full = Path(directory, entry)
            key = str(full.relative_to(path))
            found[key] = f"-> {os.readlink(full)}" if full.is_symlink() else ("dir" if full.is_dir()
                                                                               else full.read_text())
    return found


def _rows(storage: UserStorage, name: str) -> list[int]:
    with sqlite3.connect(storage.ledger_path) as conn:
        return [r[0] for r in conn.execute("SELECT number FROM executions WHERE container = ?", (name,))]


def _containers_entries(storage: UserStorage) -> list[str]:
    return sorted(os.listdir(storage.root / "containers"))


def _assert_consistent(storage: UserStorage, before: dict[str, dict[str, str]]) -> None:
    """Every ledger row names an execution directory that is whole, exactly as it was."""
    with Ledger(storage.ledger_path) as ledger:
        for execution in ledger.executions():
            exec_dir = Path(execution.workdir).parent
            assert exec_dir.is_dir() and not exec_dir.is_symlink(), execution.id
            if execution.id in before:
                assert _fingerprint(exec_dir) == before[execution.id], execution.id


def _plan(storage: UserStorage, name: str) -> containers.DeletePlan:
    with Ledger(storage.ledger_path) as ledger:
        return plans.plan_delete(ledger, storage, name)


def _delete(storage: UserStorage, name: str) -> containers.DeleteResult:
    with Ledger(storage.ledger_path) as ledger:
        plan = plans.plan_delete(ledger, storage, name)
        return containers.delete(ledger, storage, plan)


@pytest.fixture
def two(storage) -> dict[str, dict[str, str]]:
    """Container `c` with two closed executions (one read-only tree, one hard link between them)."""
    _add(storage, "c", {"model.bin": "m" * 1000, "sub/deep/a.txt": "a"})
    _add(storage, "c", {"log.txt": "x" * 300}, status="failed")
    os.link(storage.execution_dir("c", 1) / "home" / "model.bin", storage.execution_dir("c", 2) / "home" / "same.bin")
    make_read_only(storage.execution_dir("c", 1))
    _add(storage, "keep", {"k.txt": "keep me"})
    return {f"{c}/{n}": _fingerprint(storage.execution_dir(c, n)) for c, n in (("c", 1), ("c", 2), ("keep", 1))}


# --- the plan ---

def test_plan_lists_executions_sizes_and_what_it_frees(storage, two, tmp_path):
    outside = tmp_path / "outside-link"
    os.link(storage.execution_dir("c", 2) / "home" / "log.txt", outside)  # a link from outside keeps the file
    plan = _plan(storage, "c")
    assert [(e.id, e.status) for e in plan.executions] == [("c/1", "completed"), ("c/2", "failed")]
    log = len("log\n")
    assert plan.executions[0].size_bytes == 1000 + 1 + log
    assert plan.executions[1].size_bytes == 300 + 1000 + log        # apparent: the hard link counts here
    assert plan.size_bytes == 1000 + 1 + 300 + 1000 + 2 * log         # as `gear du` counts
    assert plan.shared_bytes == 300
    assert plan.frees_bytes == 1000 + 1 + 2 * log                     # model.bin once, log.txt stays
    assert plan.leftovers == [] and plan.in_ledger
    assert _rows(storage, "c") == [1, 2]                              # planning changes nothing


def test_delete_removes_rows_and_files_even_read_only_ones(storage, two):
    locked = storage.execution_dir("c", 2) / "home" / "locked"
    locked.mkdir()
    (locked / "f").write_text("f")
    locked.chmod(0o000)
    result = _delete(storage, "c")
    assert result.freed_bytes == result.plan.frees_bytes                # (the cluster test reads as non-root)
    assert _rows(storage, "c") == []
    with Ledger(storage.ledger_path) as ledger:
        assert "c" not in ledger.container_names()
    assert _containers_entries(storage) == ["keep"]                   # no trash, no marker left
    assert result.removed and not result.link_not_followed
    _assert_consistent(storage, two)


# --- bad input: a clear message, a non-zero exit, nothing changed ---

def test_a_container_that_does_not_exist(storage, two):
    with pytest.raises(NotFound, match="no container 'nope'"):
        _plan(storage, "nope")
    result = gear("delete", "nope", "--yes")
    assert result.returncode == 1 and "no container 'nope'" in result.stderr
    assert gear("delete", "../c", "--yes").returncode == 2
    _assert_consistent(storage, two)
    assert _rows(storage, "c") == [1, 2]


def test_refused_while_an_execution_is_queued_or_running(storage, two, fake_slurm):
    number = _add(storage, "c", {"x": "x"}, status="running")
    before = {**two, f"c/{number}": _fingerprint(storage.execution_dir("c", number))}
    # Slurm still runs it: one squeue, and the refusal names it.
    fake_slurm("squeue", f"printf '%s\\x1f%s\\x1f%s\\x1f%s\\x1f%s\\x1f%s\\x1e' {700 + number} RUNNING None "
                         f"gear:c/{number}:tokc N/A vm")
    result = gear("delete", "c", "--yes")
    assert result.returncode == 1
    assert f"c/{number} (running)" in result.stderr and f"gear stop c/{number}" in result.stderr
    assert "Nothing was deleted" in result.stderr
    assert [call.split()[0] for call in fake_slurm.calls()] == ["squeue"]
    assert _rows(storage, "c") == [1, 2, number]
    _assert_consistent(storage, before)


def test_refused_while_another_containers_open_execution_reads_it(storage, two, fake_slurm):
    binding = {"source": "c/1", "target": "/hyperai/input/input0", "read_only": True, "kind": "execution",
               "path": str(storage.execution_dir("c", 1) / "home")}
    number = _add(storage, "reader", {}, status="queued", bindings=[binding])
    fake_slurm("squeue", f"printf '%s\\x1f%s\\x1f%s\\x1f%s\\x1f%s\\x1f%s\\x1e' {700 + number} PENDING None "
                         f"gear:reader/{number}:tokreader N/A ''")
    with pytest.raises(GearError, match=r"reader/1 \(queued\) binds c/1"):
        _plan(storage, "c")
    _assert_consistent(storage, two)


def test_without_a_terminal_and_without_yes_it_asks_for_yes(storage, two):
    result = gear("delete", "c")
    assert result.returncode == 2
    assert "pass --yes" in result.stderr and "Nothing was deleted" in result.stderr
    assert "c/1" in result.stdout and "frees" in result.stdout             # it listed what would go
    assert _rows(storage, "c") == [1, 2]
    _assert_consistent(storage, two)


def test_typing_a_wrong_name_deletes_nothing_and_the_right_one_deletes(storage, two, monkeypatch, capsys):
    monkeypatch.setattr(cli_containers, "_stdin_is_terminal", lambda: True)
    monkeypatch.setattr("sys.stdin", io.StringIO("k\n"))
    assert main(["delete", "c"]) == 1
    captured = capsys.readouterr()
    assert "you typed 'k', not 'c'; nothing was deleted" in captured.err
    assert "Type c to delete it" in captured.err
    assert _rows(storage, "c") == [1, 2]
    _assert_consistent(storage, two)

    monkeypatch.setattr("sys.stdin", io.StringIO("c\n"))
    assert main(["delete", "c"]) == 0
    assert "deleted c: 2 execution(s), freed" in capsys.readouterr().out
    assert _rows(storage, "c") == [] and _containers_entries(storage) == ["keep"]


def test_json_output(storage, two, capsys):
    assert main(["delete", "c", "--yes", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["deleted"] is True and data["container"] == "c"
    assert [e["id"] for e in data["executions"]] == ["c/1", "c/2"]
    assert data["freed_bytes"] == data["frees_bytes"] > 0 and data["unreadable"] == []


def test_changed_since_it_was_listed(storage, two):
    with Ledger(storage.ledger_path) as ledger:
        plan = plans.plan_delete(ledger, storage, "c")
        number = _add(storage, "c", {"new": "n"})            # e.g. a `gear run` while the user was typing
        with pytest.raises(GearError, match="changed since it was listed"):
            containers.delete(ledger, storage, plan)
    assert _rows(storage, "c") == [1, 2, number]
    _assert_consistent(storage, {**two, f"c/{number}": _fingerprint(storage.execution_dir("c", number))})


# --- symlinks: never followed ---

def _swap_for_link(storage: UserStorage, tmp_path: Path) -> Path:
    """Replace containers/c by a symlink to another directory (with the real files moved there)."""
    elsewhere = tmp_path / "elsewhere"
    os.rename(storage.container_dir("c"), elsewhere)
    storage.container_dir("c").symlink_to(elsewhere)
    return elsewhere


def test_a_container_directory_that_is_a_symlink_is_refused(storage, two, tmp_path):
    elsewhere = _swap_for_link(storage, tmp_path)
    before = _fingerprint(elsewhere)
    result = gear("delete", "c", "--yes")
    assert result.returncode == 1 and "symbolic link" in result.stderr and "nothing was deleted" in result.stderr
    assert _fingerprint(elsewhere) == before and _rows(storage, "c") == [1, 2]


def test_a_symlink_swapped_in_while_the_user_was_asked_is_refused(storage, two, tmp_path):
    with Ledger(storage.ledger_path) as ledger:
        plan = plans.plan_delete(ledger, storage, "c")
        elsewhere = _swap_for_link(storage, tmp_path)
        before = _fingerprint(elsewhere)
        with pytest.raises(GearError, match="replaced by a symbolic link.*nothing was deleted"):
            containers.delete(ledger, storage, plan)
    assert _fingerprint(elsewhere) == before and _rows(storage, "c") == [1, 2]
    assert not (elsewhere / containers.MARKER).exists()
    assert sorted(_containers_entries(storage)) == ["c", "keep"]


def test_a_symlink_swapped_in_after_the_commit_is_removed_as_a_link(storage, two, tmp_path, monkeypatch):
    real_commit = containers._commit
    moved = {}

    def commit_then_swap(conn):
        real_commit(conn)
        moved["to"] = _swap_for_link(storage, tmp_path)

    monkeypatch.setattr(containers, "_commit", commit_then_swap)
    result = _delete(storage, "c")
    assert result.link_not_followed
    elsewhere = moved["to"]
    assert (elsewhere / "1" / "home" / "model.bin").read_text() == "m" * 1000   # the target is untouched
    assert (elsewhere / "2" / "home" / "log.txt").exists()
    assert _containers_entries(storage) == ["keep"] and _rows(storage, "c") == []


def test_symlinks_inside_the_tree_are_removed_never_followed(storage, two, tmp_path, monkeypatch):
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "data.txt").write_text("precious")
    home = storage.execution_dir("c", 2) / "home"
    (home / "to-outside").symlink_to(outside)
    (home / "to-file").symlink_to(outside / "data.txt")
    (home / "swapme").mkdir()
    (home / "swapme" / "inner.txt").write_text("i")
    # And a directory swapped for a link while the delete walks the tree.
    real_enter = storage_module._enter

    def enter(parent, name, *rest):
        if name == "swapme":
            os.rename("swapme", tmp_path / "sub-moved", src_dir_fd=parent)   # the tree is in the trash by now
            os.symlink(outside, "swapme", dir_fd=parent)
        return real_enter(parent, name, *rest)

    monkeypatch.setattr(storage_module, "_enter", enter)
    _delete(storage, "c")
    assert (outside / "data.txt").read_text() == "precious" and sorted(os.listdir(outside)) == ["data.txt"]
    assert (tmp_path / "sub-moved" / "inner.txt").read_text() == "i"
    assert _containers_entries(storage) == ["keep"]


# --- crash points: a real SIGKILL between every two steps ---

class _Kill:
    """Monkeypatch targets in the child: SIGKILL itself before or after a step."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.monkeypatch = monkeypatch

    def around(self, name: str, when: str, nth: int = 1) -> None:
        # The removal steps (_rmdir, _enter…) live in storage.py, the rest in containers.py.
        module = containers if hasattr(containers, name) else storage_module
        real = getattr(module, name)
        calls = {"n": 0}

        def step(*args, **kwargs):
            calls["n"] += 1
            if when == "before" and calls["n"] == nth:
                os.kill(os.getpid(), signal.SIGKILL)
            result = real(*args, **kwargs)
            if when == "after" and calls["n"] == nth:
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        self.monkeypatch.setattr(module, name, step)


# (step, before/after it, which call, what is left: rows of c, and where its files are)
CRASH_POINTS = [
    ("_write_marker", "before", 1, [1, 2], "c"),
    ("_write_marker", "after", 1, [1, 2], "c"),      # a stale marker: harmless while c has rows
    ("_commit", "before", 1, [1, 2], "c"),           # rows deleted in the open transaction: rolled back
    ("_commit", "after", 1, [], "c"),                # committed, not yet moved: marked garbage
    ("_move_aside", "after", 1, [], ".trash-c-"),    # moved aside, nothing removed yet
    ("_rmdir", "after", 3, [], ".trash-c-"),         # half-way through the removal
]


@pytest.mark.parametrize("step,when,nth,rows,files", CRASH_POINTS,
                         ids=[f"{p[1]}-{p[0]}-{p[2]}" for p in CRASH_POINTS])
def test_a_delete_killed_at_any_point_leaves_a_consistent_ledger(storage, two, monkeypatch, step, when, nth,
                                                                   rows, files):
    pid = os.fork()
    if pid == 0:   # the child: delete c and die at the chosen point
        try:
            _Kill(monkeypatch).around(step, when, nth)
            _delete(storage, "c")
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL

    # No ledger row names files that are gone; every row's files are whole.
    _assert_consistent(storage, two)
    assert _rows(storage, "keep") == [1]
    assert _rows(storage, "c") == rows
    assert [e for e in _containers_entries(storage) if e.startswith(files)], _containers_entries(storage)
    if not rows:   # garbage that no row names is shown as such, and `gear ls` no longer lists c
        assert [item.container for item in _plan(storage, "keep").leftovers] == ["c"]
    # Running the delete again finishes it (or does it), and leaves no garbage.
    result = gear("delete", "c", "--yes")
    assert result.returncode == 0, result.stderr
    assert _rows(storage, "c") == [] and _containers_entries(storage) == ["keep"]
    _assert_consistent(storage, two)


def test_leftovers_are_removed_by_the_next_delete_of_another_container(storage, two, monkeypatch):
    def failing(cfd, name, trash):
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as patched:
        patched.setattr(containers, "_move_aside", failing)
        with pytest.raises(GearError, match="was deleted from your ledger, but .* could not be moved aside"):
            _delete(storage, "c")
    assert _rows(storage, "c") == [] and storage.container_dir("c").is_dir()   # garbage, no row names it
    plan = _plan(storage, "keep")
    assert [(item.name, item.container) for item in plan.leftovers] == [("c", "c")]
    assert plan.leftovers[0].size_bytes > 0 and plan.total_frees_bytes > plan.frees_bytes
    _delete(storage, "keep")
    assert _containers_entries(storage) == []


def test_a_failed_commit_changes_nothing(storage, two, monkeypatch):
    def failing(conn):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(containers, "_commit", failing)
    with pytest.raises(GearError, match=r"could not delete c \(disk I/O error\); nothing was deleted"):
        _delete(storage, "c")
    assert _rows(storage, "c") == [1, 2]
    assert not (storage.container_dir("c") / containers.MARKER).exists()
    _assert_consistent(storage, two)


def test_ctrl_c_cannot_split_the_commit_from_the_move(storage, two, monkeypatch):
    real_commit = containers._commit

    def interrupted(conn):
        os.kill(os.getpid(), signal.SIGINT)   # held: delivered once the directory is aside
        real_commit(conn)

    with monkeypatch.context() as patched:
        patched.setattr(containers, "_commit", interrupted)
        with pytest.raises(KeyboardInterrupt):
            _delete(storage, "c")
    assert _rows(storage, "c") == []
    assert not storage.container_dir("c").exists()                      # moved aside before Ctrl-C landed
    assert [e for e in _containers_entries(storage) if e.startswith(".trash-c-")]
    _assert_consistent(storage, two)
    result = gear("delete", "c", "--yes")                                # finishes the removal
    assert result.returncode == 0, result.stderr
    assert "interrupted delete" in result.stdout
    assert _containers_entries(storage) == ["keep"]


def test_a_removal_failure_after_the_commit_says_where_the_files_are(storage, two, monkeypatch):
    def failing(parent, name):
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as patched:
        patched.setattr(storage_module, "_rmdir", failing)
        with pytest.raises(GearError, match=r"deleted from your ledger, but some files could not be removed .*"
                                            r"the next `gear delete` tries again"):
            _delete(storage, "c")
    assert _rows(storage, "c") == []
    _delete(storage, "keep")
    assert _containers_entries(storage) == []


def test_a_dataset_version_made_from_an_output_survives(storage, two):
    from gear_hpc.data import datasets

    with Ledger(storage.ledger_path) as ledger:
        execution = ledger.get_execution("c", 2)
        name, version = datasets.from_output(ledger, storage, execution, "kept", None)
    _delete(storage, "c")
    assert (storage.version_dir(name, version) / "log.txt").read_text() == "x" * 300
