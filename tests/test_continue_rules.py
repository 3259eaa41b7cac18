"""continue of a workspace with a command, collisions of real uploads only, who
stopped an execution, and the limit on code uploaded without --code."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gear_hpc.base.errors import GearError, SiteConfigError, UsageError
from gear_hpc.data import staging
from gear_hpc.executions import lifecycle as executions, stop as stopping
from gear_hpc.executions.reconcile import fold, stop_note
from gear_hpc.ledger.db import Execution, Ledger
from gear_hpc.site import loading as site_module

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


def _ledger_with(tmp_path: Path, mode: str, command: list[str], status: str = "terminated") -> Ledger:
    root = tmp_path / "containers" / "ws"

    def make_dir(number: int) -> Path:
        (root / str(number) / "home").mkdir(parents=True)
        (root / str(number) / "code").mkdir()
        return root / str(number) / "home"

    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.allocate_execution("ws", make_dir, mode=mode, status=status, compute_type="cpu-small",
                              image="jupyter", command=command, params={}, bindings=[], token="t",
                              slurm_job_id="7")
    return ledger


# --- 1. a workspace continued with a command is a script ---

def test_a_workspace_continued_with_a_command_is_a_script_without_one_a_workspace(tmp_path):
    with _ledger_with(tmp_path, "jupyter", ["jupyter", "lab"]) as ledger:
        script = executions.continue_request(ledger, "ws", 1, command=["python3", "nb.py"], image="python")
        again = executions.continue_request(ledger, "ws", 1)
    assert (script.mode, script.command, script.image, script.home_layer) == (
        "script", ["python3", "nb.py"], "python", True)
    assert script.workspace is None
    assert (again.mode, again.command) == ("jupyter", ["jupyter", "lab"])
    (tmp_path / "s").mkdir()
    with _ledger_with(tmp_path / "s", "script", ["python3", "a.py"]) as ledger:
        assert executions.continue_request(ledger, "ws", 1, command=["python3", "b.py"]).mode == "script"


# --- 2. collisions: only uploaded files, only those that differ ---

def test_collisions_list_only_uploaded_files_that_differ(tmp_path):
    code, work = tmp_path / "code", tmp_path / "work"
    (code / "sub").mkdir(parents=True)
    (work / "sub").mkdir(parents=True)
    for name, uploaded, there in [("same.py", "x = 1\n", "x = 1\n"), ("changed.py", "x = 1\n", "x = 2\n"),
                                  ("sub/longer.txt", "a", "ab"), ("sub/same.txt", "s", "s")]:
        (code / name).write_text(uploaded)
        (work / name).write_text(there)
    (code / "new.py").write_text("only uploaded\n")
    (code / "adir").write_text("a file where the working directory has a directory\n")
    (work / "adir").mkdir()
    os.symlink("same.py", code / "link")
    os.symlink("same.py", work / "link")
    os.symlink("same.py", code / "link2")
    os.symlink("changed.py", work / "link2")
    # The parent's working directory is sealed: read-only files are read all the same.
    for path in work.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o444)
    assert staging.collisions(code, work) == ["adir", "changed.py", "link2", "sub/longer.txt"]


def test_continue_without_code_notices_nothing_with_code_notices_what_differs(tmp_path):
    with _ledger_with(tmp_path, "script", ["python3", "main.py"], status="completed") as ledger:
        reused = executions.continue_request(ledger, "ws", 1)
        given = executions.continue_request(ledger, "ws", 1, code=tmp_path)
    assert reused.code_uploaded is False and given.code_uploaded is True
    assert executions.RunRequest(command=["x"], code=tmp_path).code_uploaded is True


# --- 3. who stopped it ---

def _final(**fields):
    return {"phase": "final", "status": "terminated", "exit_code": 143, "saved": True,
            "at": "2026-11-29T11:59:00Z", "started_at": "2026-11-29T11:58:00Z", **fields}


def _running() -> Execution:
    return Execution(container="c", number=1, mode="script", status="running", compute_type="cpu-small",
                     image="python", command=["x"], params={}, bindings=[], workdir="/w/home", token="tok",
                     slurm_job_id="7", created_at="2026-11-29T11:00:00Z")


def test_the_final_record_of_a_stop_becomes_the_note():
    changes = fold(_running(), _final(signal="TERM", stopped_by="gear stop"), {}, NOW)
    assert changes["note"] == "terminated by gear stop (SIGTERM); exit 143 is 128+15"
    changes = fold(_running(), _final(signal="TERM", stopped_by="scancel or Slurm", exit_code=135), {}, NOW)
    assert changes["note"] == "terminated by scancel or Slurm (SIGTERM)"
    unsaved = _final(signal="KILL", stopped_by="gear stop", exit_code=137, saved=False, note="the save failed")
    assert fold(_running(), unsaved, {}, NOW)["note"] == (
        "terminated by gear stop (SIGKILL); exit 137 is 128+9; the save failed")
    assert "note" not in fold(_running(), _final(), {}, NOW)   # no stop fields: nothing said


def test_a_stop_at_the_time_limit_says_so():
    assert stop_note(_final(status="timeout", signal="TERM", stopped_by="time limit"), "timeout") == (
        "stopped at its time limit (SIGTERM); exit 143 is 128+15")
    # TERM at the limit before the warning: the job thought it Slurm, fold knows better.
    assert stop_note(_final(signal="TERM", stopped_by="scancel or Slurm"), "timeout").startswith(
        "stopped at its time limit")


def test_gear_stop_leaves_its_marker_before_it_cancels(tmp_path, monkeypatch):
    home = tmp_path / "c" / "1" / "home"
    home.mkdir(parents=True)
    running = Execution(container="c", number=1, mode="script", status="running", compute_type="cpu-small",
                        image="python", command=["x"], params={}, bindings=[], workdir=str(home), token="t",
                        slurm_job_id="7")
    seen = []
    monkeypatch.setattr(stopping, "refresh", lambda ledger: None)
    monkeypatch.setattr(stopping, "get", lambda ledger, c, n: running)
    monkeypatch.setattr(stopping.slurm, "cancel", lambda job: seen.append((home.parent / "stop_request").exists()))
    stopping.stop(None, "c", 1, now=True)  # type: ignore[arg-type]
    assert seen == [True]

    def refuse(job):
        raise GearError("scancel failed")

    (home.parent / "stop_request").unlink()
    monkeypatch.setattr(stopping.slurm, "cancel", refuse)
    with pytest.raises(GearError):
        stopping.stop(None, "c", 1, now=True)  # type: ignore[arg-type]
    assert not (home.parent / "stop_request").exists()   # no stop asked: a later scancel is not gear stop


# --- 4. code uploaded without --code ---

def test_counting_the_code_stops_at_the_limit(tmp_path):
    code = tmp_path / "big"
    code.mkdir()
    for i in range(60):
        (code / f"f{i:02}").write_text("x" * 100)
    (code / ".gearignore").write_text("ignored/\n")
    (code / "ignored").mkdir()
    (code / "ignored" / "huge").write_bytes(b"\0" * 100000)
    assert staging.count_code(code, 1000, 10**9) == staging.CodeCount(61, 6009, False)  # .gearignore counts
    counted = staging.count_code(code, 10, 10**9)
    assert (counted.files, counted.over) == (11, True)     # not a file further
    assert staging.count_code(code, 1000, 250).over


def test_the_snapshot_reports_progress_when_asked(tmp_path):
    code = tmp_path / "src"
    code.mkdir()
    for i in range(5):
        (code / f"f{i}").write_text("data")
    heard = []
    staging.snapshot_code(code, tmp_path / "copy", heard.append)
    assert heard and heard[-1].files_done == 5
    assert sorted(os.listdir(tmp_path / "copy")) == [f"f{i}" for i in range(5)]


def test_gear_run_without_code_refuses_a_big_directory_and_leaves_nothing(gear_env, tmp_path):
    big = tmp_path / "home"
    big.mkdir()
    for i in range(30):
        (big / f"f{i}").write_text("x")
    (gear_env["site"] / "site.yaml").write_text((gear_env["site"] / "site.yaml").read_text()
                                                + "code_limit:\n  files: 20\n  bytes: 1M\n")
    import subprocess
    import sys

    refused = subprocess.run([sys.executable, "-m", "gear_hpc.cli", "run", "--", "true"], capture_output=True,
                             text=True, cwd=big, env={**os.environ, "USER": "alice"})
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines() == [
        f"gear: error: the current directory {big} has more than 20 files, this site's limit for code uploaded "
        "without --code; name the code with --code DIR, or put data in a dataset: gear data upload"]
    assert not list((gear_env["storage"] / "users").rglob("containers"))


def test_the_code_limit_is_validated_with_file_key_and_what_is_allowed(gear_env):
    site_yaml = gear_env["site"] / "site.yaml"
    text = site_yaml.read_text()
    site_yaml.write_text(text + "code_limit:\n  bytes: 2G\n  files: 500\n")
    limit = site_module.load(gear_env["site"]).code_limit
    assert (limit.bytes, limit.files) == (2 << 30, 500)
    for bad, key in [("  bytes: 1.5G\n", "code_limit.bytes"), ("  files: 0\n", "code_limit.files"),
                     ("  size: 1G\n", "code_limit.size")]:
        site_yaml.write_text(text + "code_limit:\n" + bad)
        with pytest.raises(SiteConfigError) as error:
            site_module.load(gear_env["site"])
        assert str(error.value).startswith(f"{site_yaml}: {key}: ")
    site_yaml.write_text(text + "code_limit:\n  bytes: lots\n")
    with pytest.raises(SiteConfigError, match="such as 500M or 1G"):
        site_module.load(gear_env["site"])
    site_yaml.write_text(text)
    default = site_module.load(gear_env["site"]).code_limit
    assert (default.bytes, default.files) == (1 << 30, 10000)


def test_check_code_size_names_the_bytes_when_the_files_are_few(gear_env, tmp_path):
    big = tmp_path / "few-big"
    big.mkdir()
    (big / "a.bin").write_bytes(b"\0" * 3000)
    (big / "b.bin").write_bytes(b"\0" * 3000)
    site = site_module.load(gear_env["site"])
    small = site_module.Site(**{**vars(site), "code_limit": site_module.CodeLimit(bytes=4000, files=100)})
    with pytest.raises(UsageError, match=r"has more than 3\.9 KiB \(in 2 files\)"):
        executions.check_code_size(small, big)
    executions.check_code_size(site, big)   # under the default limit: nothing said
