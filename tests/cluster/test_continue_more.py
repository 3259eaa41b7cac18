"""gear continue of a workspace with a command, continue's notices of ignored
uploads, and who stopped an execution: on the real local cluster."""

from __future__ import annotations

import json
import uuid

import pytest

from conftest import User


@pytest.fixture(scope="module")
def contuser() -> User:
    return User("contuser1")


@pytest.fixture
def name() -> str:
    return f"cm-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def stop_leftovers(contuser, name):
    """A failed test must not leave a workspace or a sleeper holding the node's CPUs."""
    yield
    for record in json.loads(contuser.gear("history", name, "--json").stdout or "[]"):
        if record["status"] in ("queued", "syncing", "running", "saving"):
            contuser.gear("stop", "--now", record["id"])


def _submitted(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_a_workspace_continued_with_a_command_runs_it_as_a_script(contuser, name):
    workspace = _submitted(contuser.gear("jupyter", "-c", name, "-r", "cpu-small", timeout=400))
    # A file the workspace's working directory holds (nothing was uploaded), as a notebook would leave it.
    workdir = contuser.gear_json("show", workspace)["workdir"]
    contuser.run("bash", "-c", f"echo 'written in the workspace' > {workdir}/notes.txt", check=True)
    contuser.gear("stop", workspace, check=True)
    assert contuser.gear_json("show", workspace)["mode"] == "jupyter"

    result = contuser.gear("continue", workspace, "-e", "python", "-f", "--",
                           "python3", "-c", "print('seen:', open('notes.txt').read().strip())", timeout=300)
    script = _submitted(result)
    record = contuser.gear_json("show", script)
    assert (record["mode"], record["status"], record["parent"], record["image"]) == (
        "script", "completed", workspace, "python"), result.stderr
    assert "seen: written in the workspace" in contuser.gear("logs", script, check=True).stdout
    assert "JupyterLab" not in result.stderr

    # Without a command it is a workspace again.
    again = _submitted(contuser.gear("continue", workspace, timeout=400))
    assert contuser.gear_json("show", again)["mode"] == "jupyter"
    contuser.gear("stop", again, check=True)


def test_continue_warns_only_of_uploaded_files_that_differ(contuser, name):
    code = contuser.make_dir({"main.py": "print('hi')\n", "other.py": "v = 1\n"})
    first = _submitted(contuser.gear("run", "-c", name, "--code", str(code), "-f", "--",
                                     "bash", "-c", "echo 'v = 2' > other.py", timeout=300))

    # Nothing uploaded (the parent's code is reused): nothing to warn of.
    reused = contuser.gear("continue", first, "-f", "--", "true", timeout=300)
    _submitted(reused)
    assert "uploaded file" not in reused.stderr

    # Uploaded: main.py is the same bytes (no conflict), other.py differs.
    given = contuser.gear("continue", first, "--code", str(code), "-f", "--", "cat", "other.py", timeout=300)
    second = _submitted(given)
    warnings = [line for line in given.stderr.splitlines() if "uploaded file" in line]
    assert warnings == [f"gear: warning: 1 uploaded file(s) already exist in {first}'s working directory; "
                        "its version is kept and the upload ignored: other.py"]
    assert contuser.gear("logs", second, check=True).stdout.strip() == "v = 2"


def _sleeper(contuser: User, name: str) -> str:
    code = contuser.make_dir({"main.py": "pass\n"})
    execution = _submitted(contuser.gear("run", "-c", name, "--code", str(code), "--", "sleep", "300"))
    assert contuser.wait_for(execution, {"running"})["status"] == "running"
    return execution


def test_a_stopped_execution_says_who_stopped_it_and_why_its_exit_code(contuser, name):
    by_gear = _sleeper(contuser, name)
    stopped = contuser.gear("stop", by_gear, check=True).stdout
    record = contuser.gear_json("show", by_gear)
    # The program's exit code is whatever it made of the TERM (143 = 128+15 when it died of it;
    # seen otherwise now and then): it is explained only when it is the signal's.
    explained = "terminated by gear stop (SIGTERM)" + ("; exit 143 is 128+15" if record["exit_code"] == 143 else "")
    assert stopped.strip() == f"{by_gear} terminated: {explained}; the working directory was saved"
    assert (record["stopped_by"], record["signal"], record["note"]) == ("gear stop", "TERM", explained)
    assert f"{by_gear}: {explained}" in contuser.gear("status", by_gear, check=True).stdout
    assert "stopped_by:    gear stop" in contuser.gear("show", by_gear, check=True).stdout

    by_scancel = _sleeper(contuser, name)
    contuser.run("scancel", contuser.gear_json("show", by_scancel)["slurm_job_id"], check=True)
    record = contuser.wait_for(by_scancel, {"terminated", "failed", "lost"}, timeout=120)
    assert record["note"] == "terminated by scancel or Slurm (SIGTERM)" + (
        "; exit 143 is 128+15" if record["exit_code"] == 143 else "")
    shown = contuser.gear_json("show", by_scancel)
    assert (shown["stopped_by"], shown["signal"]) == ("scancel or Slurm", "TERM")

    # An execution nobody stopped has neither.
    done = _submitted(contuser.gear("run", "-c", name, "--code", contuser.make_dir({"a": "b"}).as_posix(),
                                    "-f", "--", "true", timeout=300))
    shown = contuser.gear_json("show", done)
    assert (shown["stopped_by"], shown["signal"], shown["note"]) == (None, None, None)
