"""The click-free fast path of `gear ls`/`gear status`: same bytes as the click path, or it declines."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gear_hpc.base import facts as layout
from gear_hpc.base.facts import OPEN_STATUSES
from gear_hpc.cli import fastpath
from gear_hpc.cli.group import run as run_click
from gear_hpc.ledger import rows as ledger_rows
from gear_hpc.ledger.db import Execution, Ledger
from gear_hpc.ledger.migrations import MIGRATIONS
from gear_hpc.site import loading as site, memo as site_memo
from gear_hpc.storage.disk import UserStorage
from helpers import REPO

ARGS = [["ls"], ["ls", "--json"], ["status"], ["status", "--json"]]


@pytest.fixture
def storage(gear_env, tmp_path, monkeypatch) -> UserStorage:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the site memo, private to the test
    storage = UserStorage(gear_env["storage"])
    storage.ensure()
    Ledger(storage.ledger_path).close()
    return storage


def _ago(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - seconds))


def _add(storage: UserStorage, container: str, status: str, **values) -> int:
    with Ledger(storage.ledger_path) as ledger:
        def make_dir(number: int) -> Path:
            home = storage.execution_dir(container, number) / "home"
            home.mkdir(parents=True)
            return home

        number = ledger.allocate_execution(container, make_dir, mode="script", status="submitting",
                                           compute_type="cpu-small", image="python", command=["python3", "t.py"],
                                           params={"lr": 0.1}, bindings=[{"dataset": "d", "slot": "input0"}],
                                           token="secret")
        ledger.update_execution(container, number, status=status, slurm_job_id=str(100 + number),
                                submitted_at=_ago(7200), **values)
    return number


def _fill(storage: UserStorage) -> None:
    _add(storage, "mnist", "completed", exit_code=0, ended_at=_ago(3600), size_bytes=123456)
    _add(storage, "mnist", "failed", exit_code=3, ended_at=_ago(1800), size_bytes=2048, message="trial two",
         note="the working directory was not saved completely")
    _add(storage, "old", "timeout", ended_at=_ago(3 * 86400), size_bytes=None)
    _add(storage, "résumé", "failed", ended_at=_ago(60), note="Slurm forgot it \x1b[31mred\x1b[0m — ünïcode")
    _add(storage, "stopped", "terminated", exit_code=143, ended_at=_ago(10))
    with Ledger(storage.ledger_path) as ledger:
        ledger.ensure_container("empty")  # a container without executions (a LEFT JOIN's NULLs)


def _click(args: list[str], capsys) -> str:
    assert run_click(args) == 0
    return capsys.readouterr().out


def _fast(args: list[str], capsys) -> str | None:
    code = fastpath.run(args)
    out = capsys.readouterr().out
    if code is None:
        assert out == ""
        return None
    assert code == 0
    return out


@pytest.mark.parametrize("args", ARGS, ids=" ".join)
@pytest.mark.parametrize("filled", [False, True], ids=["empty", "filled"])
def test_the_fast_path_prints_what_the_click_path_prints(storage, capsys, args, filled):
    if filled:
        _fill(storage)
    expected = _click(args, capsys)  # also what makes site.load() remember the site
    assert _fast(args, capsys) == expected
    if filled and args == ["status"]:
        assert "résumé/1: Slurm forgot it red — ünïcode" in expected  # no escape sequences in a pipe
        assert "old/1" not in expected
    if not filled:
        assert expected in ("[]\n", "no containers yet; start one with `gear run`\n",
                            "no open or recent executions (see `gear ls` and `gear history CONTAINER`)\n")


def test_main_takes_the_fast_path_and_the_same_bytes_reach_stdout(storage, capsys, monkeypatch):
    _fill(storage)
    expected = _click(["ls"], capsys)
    called = []
    monkeypatch.setattr("gear_hpc.cli.group.run", lambda argv: called.append(argv) or 0)
    from gear_hpc.cli import main

    assert main(["ls"]) == 0
    assert capsys.readouterr().out == expected
    assert called == []


@pytest.mark.parametrize("status", OPEN_STATUSES)
def test_an_open_execution_makes_it_decline(storage, capsys, status):
    _fill(storage)
    _click(["ls"], capsys)
    _add(storage, "busy", status)
    for args in ARGS:
        assert _fast(args, capsys) is None


def test_a_final_record_that_came_late_for_a_lost_execution_makes_it_decline(storage, capsys):
    """refresh() reads the status record of each execution lost in the last day: a final one corrects it."""
    from gear_hpc.cli.listing import RECENT_SECONDS
    from gear_hpc.executions.reconcile import LOST_CORRECTION_WINDOW

    assert LOST_CORRECTION_WINDOW.total_seconds() == RECENT_SECONDS  # the window the fast path checks
    _fill(storage)
    old = _add(storage, "gone", "lost", ended_at=_ago(2 * 86400))
    (storage.execution_dir("gone", old) / "status.json").write_text('{"phase": "final", "status": "completed"}')
    _click(["ls"], capsys)
    assert _fast(["ls"], capsys) is not None  # lost long ago: nothing left to correct
    recent = _add(storage, "gone", "lost", ended_at=_ago(60))
    record = storage.execution_dir("gone", recent) / "status.json"
    record.write_text('{"phase": "running"}')
    for args in ARGS:   # lost today, its last record not final: refresh() changes nothing either
        expected = _click(args, capsys)
        assert _fast(args, capsys) == expected
    record.write_text('{"phase": "final", "status": "completed", "exit_code": 0, "saved": true}')
    for args in ARGS:
        assert _fast(args, capsys) is None
    _click(["status"], capsys)   # the click path corrects it, and the fast path takes over again
    with Ledger(storage.ledger_path) as ledger:
        assert ledger.get_execution("gone", recent).status == "completed"
    assert _fast(["status"], capsys) is not None


def test_a_ledger_behind_the_schema_makes_it_decline(storage, capsys):
    _click(["ls"], capsys)
    assert _fast(["ls"], capsys) is not None
    with Ledger(storage.ledger_path) as ledger:
        ledger.conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) - 1}")
    for args in ARGS:
        assert _fast(args, capsys) is None


def test_it_declines_until_the_click_path_has_validated_the_site_files(storage, capsys, gear_env, monkeypatch):
    assert _fast(["ls"], capsys) is None  # nothing remembered yet
    _click(["ls"], capsys)
    assert _fast(["ls"], capsys) is not None
    site_yaml = gear_env["site"] / "site.yaml"
    site_yaml.write_text(site_yaml.read_text() + "\n# edited\n")
    assert _fast(["ls"], capsys) is None
    _click(["ls"], capsys)
    assert _fast(["ls"], capsys) is not None
    monkeypatch.setenv("GEAR_STORAGE_ROOT", str(gear_env["tmp"] / "elsewhere"))
    assert _fast(["ls"], capsys) is None
    monkeypatch.setenv("GEAR_STORAGE_ROOT", str(gear_env["storage"]))
    site_yaml.write_text(site_yaml.read_text() + "\nbogus_key: 1\n")
    assert _fast(["ls"], capsys) is None
    from gear_hpc.cli import main

    assert main(["ls"]) == 1  # the click path reports the broken file
    assert "bogus_key" in capsys.readouterr().err


def test_it_declines_without_the_users_directory_or_ledger(gear_env, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    site.load()  # the site is remembered, but nothing of the user exists yet
    assert site_memo.valid_storage_root() == str(gear_env["storage"])
    assert _fast(["ls"], capsys) is None
    storage = UserStorage(gear_env["storage"])
    storage.ensure()
    assert _fast(["ls"], capsys) is None  # no ledger: the click path creates it
    (storage.root / "datasets").rmdir()
    Ledger(storage.ledger_path).close()
    assert _fast(["ls"], capsys) is None  # no datasets/: the click path creates it
    storage.ensure()
    assert _fast(["ls"], capsys) is not None


def test_other_arguments_are_left_to_click(storage, capsys):
    _click(["ls"], capsys)
    for args in (["ls", "-h"], ["status", "mnist/1"], ["ls", "--json", "--json"], ["--json", "ls"], [], ["history"]):
        assert _fast(args, capsys) is None


def test_the_fast_path_writes_nothing(storage, capsys):
    _fill(storage)
    _click(["ls"], capsys)
    before = {p: p.stat().st_mtime_ns for p in storage.root.rglob("*")}
    for args in ARGS:
        assert _fast(args, capsys) is not None
    assert {p: p.stat().st_mtime_ns for p in storage.root.rglob("*")} == before


@pytest.mark.parametrize("command", ["ls", "status"])
def test_the_fast_path_imports_no_click_dataclasses_or_json(storage, capsys, command):
    _fill(storage)
    expected = _click([command], capsys)
    assert expected.count("\n") > 3  # with recent executions: their tables
    code = (f"import sys\nfrom gear_hpc.cli import main\ncode = main([{command!r}])\n"
            "heavy = sorted(m for m in ('click', 'dataclasses', 'typing', 'json', 'gear_hpc.site.loading',"
            " 'gear_hpc.ledger.db') if m in sys.modules)\nsys.stderr.write(repr(heavy))\nsys.exit(code)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO))
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
    assert result.stderr == "[]"


def test_a_closed_pipe_exits_1_quietly(storage, capsys):
    _click(["ls"], capsys)
    process = subprocess.Popen([sys.executable, "-m", "gear_hpc.cli", "ls"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=str(REPO))
    process.stdout.close()
    assert process.wait() == 1
    assert process.stderr.read() == b""
    process.stderr.close()


@pytest.mark.parametrize("args", ARGS, ids=" ".join)
def test_the_command_line_ends_at_once_after_the_fast_path_with_its_output_flushed(storage, capsys, args):
    _fill(storage)
    expected = _click(args, capsys)
    # As the `gear` script runs it: main() with the process's own arguments.
    # An atexit handler shows whether the interpreter's teardown ran.
    code = ("import atexit, sys\natexit.register(lambda: sys.stderr.write('teardown'))\n"
            "from gear_hpc.cli import main\nsys.exit(main())")
    fast = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, cwd=str(REPO))
    assert (fast.returncode, fast.stdout.decode(), fast.stderr) == (0, expected, b"")
    # Left to click: the normal exit, teardown included.
    slow = subprocess.run([sys.executable, "-c", code, *args, "--help"], capture_output=True, cwd=str(REPO))
    assert (slow.returncode, slow.stderr) == (0, b"teardown")


def test_what_the_fast_path_assumes_about_the_library(gear_env):
    assert ledger_rows.SCHEMA_VERSION == len(MIGRATIONS)
    assert ledger_rows.EXECUTION_FIELDS == tuple(f.name for f in dataclasses.fields(Execution))
    storage = UserStorage(Path("/srv/x"), user="alice")
    paths = layout.user_paths("/srv/x", "alice")
    assert paths == {"users": "/srv/x/users", "root": str(storage.root), "ledger": str(storage.ledger_path),
                     "containers": str(storage.root / "containers"), "datasets": str(storage.root / "datasets")}
    assert site.config_dir() == Path(site_memo.config_dir_name())
    assert os.environ["GEAR_SITE_CONFIG"] == site_memo.config_dir_name()


SHARED_ARGS = [["ls", "sharer/"], ["ls", "sharer/", "--json"], ["history", "sharer/mnist"],
               ["history", "sharer/mnist", "--json"]]


@pytest.mark.parametrize("args", SHARED_ARGS, ids=" ".join)
def test_another_users_shared_listing_prints_what_the_click_path_prints(storage, capsys, args):
    """`gear ls USER/` and `gear history USER/C` read USER's indexes on the fast path too.

    The owner is a second storage directory of this test's own user: the reader's path
    never asks who owns what it reads (the kernel does; tests/cluster/test_sharing.py).
    """
    from gear_hpc.containers import sharing

    owner = UserStorage(storage.storage_root, "sharer")
    owner.ensure()
    os.chmod(owner.root, 0o711)
    _fill(owner)
    with Ledger(owner.ledger_path) as ledger:
        sharing.share(ledger, "container", "mnist", "public")
    expected = _click(args, capsys)
    assert ("sharer/mnist" in expected or '"mnist"' in expected) and "old" not in expected   # only what is shared
    assert _fast(args, capsys) == expected


@pytest.mark.parametrize("args", [["ls", "sharer/"], ["history", "sharer/mnist"], ["history", "Sharer/mnist"],
                                  ["history", "sharer/../x"], ["ls", "sharer"]])
def test_the_shared_fast_path_leaves_errors_and_odd_names_to_the_click_path(storage, capsys, args):
    _click(["ls"], capsys)   # the site is remembered: only the arguments decide
    if args == ["ls", "sharer/"]:
        assert _fast(args, capsys) == "sharer shares nothing with you\n"
    else:
        assert _fast(args, capsys) is None


# ---- open executions: folded from one squeue answer when nothing changes (executions/open_fold.py)

def _squeue_lists(fake_slurm, *jobs: tuple[str, str]) -> None:
    """squeue answering with these (job id, state) in gear's format; every call is counted."""
    lines = "".join(f"{job}\\x1f{state}\\x1fNone\\x1fgear:x\\x1fUnknown\\x1f\\x1e" for job, state in jobs)
    fake_slurm("squeue", f"printf '{lines}'")


def _hint(storage: UserStorage) -> Path:
    hint = layout.open_hint_path()
    assert hint is not None
    return Path(hint)


def test_open_executions_that_stay_as_they_are_are_printed_from_one_squeue(storage, capsys, fake_slurm):
    _fill(storage)
    number = _add(storage, "busy", "queued")
    _squeue_lists(fake_slurm, (str(100 + number), "PENDING"))
    for args in ARGS:
        expected = _click(args, capsys)
        before = len(fake_slurm.calls())
        assert _fast(args, capsys) == expected, args
        assert len(fake_slurm.calls()) == before + 1   # one squeue
    assert "busy/1" in _click(["status"], capsys)


def test_a_change_makes_it_decline_and_hands_the_answer_on(storage, capsys, fake_slurm):
    _fill(storage)
    number = _add(storage, "busy", "queued")
    _squeue_lists(fake_slurm, (str(100 + number), "PENDING"))
    _click(["ls"], capsys)
    # The job started: the ledger must say so, which is the click path's to write.
    _squeue_lists(fake_slurm, (str(100 + number), "RUNNING"))
    before = len(fake_slurm.calls())
    assert _fast(["status"], capsys) is None
    assert fastpath.squeue_answer is not None and str(100 + number) in fastpath.squeue_answer
    from gear_hpc.cli import main

    assert main(["status"]) == 0
    assert "busy/1" in capsys.readouterr().out
    assert len(fake_slurm.calls()) == before + 2   # the declined look, then main's (fast, declining, click: one)
    with Ledger(storage.ledger_path) as ledger:
        assert ledger.get_execution("busy", number).status == "syncing"


def test_the_open_hint_asks_slurm_early_and_follows_the_ledger(storage, capsys, fake_slurm):
    _fill(storage)
    number = _add(storage, "busy", "queued")
    _squeue_lists(fake_slurm, (str(100 + number), "PENDING"))
    _click(["ls"], capsys)
    assert not _hint(storage).exists()
    assert _fast(["status"], capsys) is not None
    assert _hint(storage).exists()                 # open executions seen: the next look asks Slurm first
    with Ledger(storage.ledger_path) as ledger:
        ledger.update_execution("busy", number, status="completed", exit_code=0, ended_at=_ago(1))
    before = len(fake_slurm.calls())
    assert _fast(["status"], capsys) is not None   # asked on the hint, answer not needed
    assert not _hint(storage).exists()
    assert len(fake_slurm.calls()) <= before + 1
    before = len(fake_slurm.calls())
    assert _fast(["status"], capsys) is not None
    assert len(fake_slurm.calls()) == before       # nothing open, no hint: Slurm is not asked


def test_squeue_failing_leaves_the_open_executions_to_the_click_path(storage, capsys, fake_slurm):
    _fill(storage)
    number = _add(storage, "busy", "queued")
    _squeue_lists(fake_slurm, (str(100 + number), "PENDING"))
    _click(["ls"], capsys)
    assert _fast(["ls"], capsys) is not None
    fake_slurm("squeue", "echo 'slurm_load_jobs error: Unable to contact slurm controller' >&2; exit 1")
    for args in ARGS:
        before = len(fake_slurm.calls())
        assert _fast(args, capsys) is None
        assert len(fake_slurm.calls()) == before + 1   # it asked, and declined on the answer
        assert fastpath.squeue_answer is None


# ---- the rows kept between looks (ledger/snapshot.py)

def _fast_in_a_process(args: list[str]) -> tuple[str, bool]:
    """What `gear ARGS` prints through main() in a process of its own, and whether it loaded SQLite."""
    code = (f"import sys\nfrom gear_hpc.cli import main\ncode = main({args!r})\n"
            "sys.stderr.write(repr('_sqlite3' in sys.modules))\nsys.exit(code)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO))
    assert result.returncode == 0, result.stderr
    return result.stdout, result.stderr == "True"


def test_a_look_at_an_unchanged_ledger_reads_the_kept_rows_not_sqlite(storage, capsys):
    _fill(storage)
    expected = {" ".join(args): _click(args, capsys) for args in ARGS}
    assert _fast_in_a_process(["status"]) == (expected["status"], True)    # read from SQLite, and kept
    assert layout.ledger_snapshot_path() is not None and os.path.exists(layout.ledger_snapshot_path())
    assert os.stat(layout.ledger_snapshot_path()).st_mode & 0o777 == 0o600
    for args in ARGS:
        assert _fast_in_a_process(args) == (expected[" ".join(args)], False)


def test_every_committed_change_is_seen_by_the_next_look(storage, capsys):
    """A write of the same size within the same clock tick leaves the file's size and mtime as they were;
    SQLite's change counter moves all the same."""
    _fill(storage)
    _click(["status"], capsys)
    _fast(["status"], capsys)
    for message in ("trial TWO", "trial 2!!", "trial two"):   # the same length each time
        before = os.stat(storage.ledger_path)
        with Ledger(storage.ledger_path) as ledger:
            ledger.update_execution("mnist", 2, message=message)
        # As if within the same tick of the clock that stamps files: only the content tells.
        os.utime(storage.ledger_path, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert os.stat(storage.ledger_path).st_size == before.st_size
        expected = _click(["status"], capsys)
        assert f"mnist/2: {message}" in expected or message in expected
        assert _fast(["status"], capsys) == expected
    _add(storage, "later", "completed", ended_at=_ago(5))
    assert "later/1" in _fast(["status"], capsys)
    assert "later" in _fast(["ls"], capsys)


def test_a_journal_a_torn_snapshot_or_a_newer_gear_sends_it_back_to_sqlite(storage, capsys, monkeypatch):
    from gear_hpc.ledger import snapshot

    _fill(storage)
    expected = _click(["status"], capsys)
    assert _fast(["status"], capsys) == expected
    kept = Path(layout.ledger_snapshot_path())
    # A journal beside the ledger: a write under way, or one a crash left for SQLite to roll back.
    journal = Path(str(storage.ledger_path) + "-journal")
    journal.write_bytes(b"")
    assert snapshot.header_key(str(storage.ledger_path)) is None
    assert _fast(["status"], capsys) == expected
    journal.unlink()
    kept.write_bytes(kept.read_bytes()[:40])    # torn
    assert _fast(["status"], capsys) == expected
    kept.write_bytes(b"not marshal at all")
    assert _fast(["status"], capsys) == expected
    # gear upgraded with a newer schema while the ledger did not change: the click path must migrate.
    monkeypatch.setattr(layout, "SCHEMA_VERSION", layout.SCHEMA_VERSION + 1)
    assert _fast(["status"], capsys) is None


def test_the_day_shown_moves_on_over_the_kept_rows():
    """visible() gives what the query gives at a later point: open rows, and those ended since, in order."""
    from gear_hpc.ledger import snapshot

    rows = [{"status": "queued", "ended_at": None}, {"status": "completed", "ended_at": "2026-12-06T10:00:00Z"},
            {"status": "failed", "ended_at": "2026-12-06T12:00:00Z"}, {"status": "lost", "ended_at": None}]
    kept = {"since": "2026-12-06T09:00:00Z", "rows": rows}
    assert snapshot.visible(kept, OPEN_STATUSES, "2026-12-06T09:00:00Z") == rows[:3]
    assert snapshot.visible(kept, OPEN_STATUSES, "2026-12-06T11:00:00Z") == [rows[0], rows[2]]
    assert snapshot.visible(kept, OPEN_STATUSES, "2026-12-06T08:00:00Z") is None   # kept rows do not reach back


def test_main_starts_squeue_on_the_hint_before_loading_the_rest_of_gear(storage, capsys, fake_slurm):
    """cli.main asks Slurm before it loads the fast path, site handling or the ledger: squeue answers while
    they load. One squeue all the same, and the same bytes as the click path."""
    _fill(storage)
    number = _add(storage, "busy", "queued")
    _squeue_lists(fake_slurm, (str(100 + number), "PENDING"))
    expected = _click(["status"], capsys)
    assert _fast(["status"], capsys) == expected and _hint(storage).exists()
    code = ("import sys\nfrom gear_hpc.base import runner\nreal = runner.spawn\nloaded = []\n"
            "def spawn(*args, **kwargs):\n"
            "    loaded.append(sorted(m for m in ('gear_hpc.cli.fastpath', 'gear_hpc.base.lazy_site', '_sqlite3',"
            " 'gear_hpc.ledger.snapshot') if m in sys.modules))\n"
            "    return real(*args, **kwargs)\n"
            "runner.spawn = spawn\nfrom gear_hpc.cli import main\ncode = main(['status'])\n"
            "sys.stderr.write(repr(loaded))\nsys.exit(code)")
    before = len(fake_slurm.calls())
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO))
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
    assert result.stderr == "[[]]"      # one spawn, before any of those was loaded
    assert [c.split()[0] for c in fake_slurm.calls()[before:]] == ["squeue"]
