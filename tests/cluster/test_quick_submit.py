"""The lean submission (executions/quick_submit.py, cli/run_fast.py) against the full path, on the real cluster.

Each case runs the same command twice as user qsuser1: first with the
lean path's record removed (so the full path runs, and writes the record),
then with it (the lean path runs: the test proves it from `-X importtime`,
which must not list the submit machinery). What both print, the ledger rows
they write and the files of the two executions must be the same, up to what
differs between two executions anyway (number, token, job id, times).
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import stat
import uuid
from pathlib import Path

import pytest

from conftest import STORAGE_ROOT, User, custom_site

GEAR = "/usr/local/bin/gear"
FULL_ONLY = "gear_hpc.executions.lifecycle"   # imported by the full path, never by the lean one
HEAVY = {"re", "pathlib", "dataclasses", "typing", "inspect", "subprocess", "json", "shlex", "tempfile", "secrets",
         "hashlib", "click", "jinja2", "yaml"}


@pytest.fixture(scope="module")
def user() -> User:
    found = User("qsuser1")
    yield found
    found.run("scancel", "-u", "qsuser1")


def _forget_record(user: User) -> None:
    shutil.rmtree(Path(user.pw.pw_dir) / ".cache" / "gear-hpc" / "submit", ignore_errors=True)


def _gear(user: User, *argv: str, cwd: str | None = None, lean: bool | None = None,
          env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `gear ARGV`; `lean` says which path must have run (None: either)."""
    result = user.run("python3", "-S", "-X", "importtime", GEAR, *argv, cwd=cwd, env=env)
    imports = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    stderr = "".join(line + "\n" for line in result.stderr.splitlines() if not line.startswith("import time:"))
    if lean is not None:
        assert (not any(FULL_ONLY in line for line in imports)) is lean, (argv, stderr)
    if lean:   # and none of what made the full path cost several sbatch
        modules = {line.rsplit("|", 1)[-1].strip() for line in imports}
        assert not modules & HEAVY, (argv, sorted(modules & HEAVY))
    return result.returncode, result.stdout, stderr


def _rows(user: User, container: str) -> list[dict[str, object]]:
    ledger = STORAGE_ROOT / "users" / user.name / "ledger.sqlite"
    with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM executions WHERE container = ? ORDER BY number",
                                                  (container,))]


def _normal(text: str, container: str, number: int, token: str, job: str | None) -> str:
    text = text.replace(token, "TOKEN").replace(f"{container}/{number}", f"{container}/N")
    text = text.replace(f"gear-{container}-{number}", f"gear-{container}-N")
    text = text.replace(f"/containers/{container}/{number}/", f"/containers/{container}/N/")
    text = text.replace(f"GEAR_EXECUTION_NUMBER={number}\n", "GEAR_EXECUTION_NUMBER=N\n")
    return re.sub(rf"\b{job}\b", "J", text) if job else text


# What the job makes once it starts, not the submission: a job of the first path may start (or be cancelled
# while it starts) before the second path's files are read.
JOB_MADE = ("exec/home", "exec/status.json", "exec/output.log")


def _files(user: User, container: str, number: int, token: str) -> dict[str, tuple[int, bytes]]:
    """Mode and bytes (normalized) of everything the submission made in the execution's directory (not
    JOB_MADE), and its mail proof."""
    root = STORAGE_ROOT / "users" / user.name
    found: dict[str, tuple[int, bytes]] = {}
    for base, label in ((root / "containers" / container / str(number), "exec"),
                        (root / "notify" / "executions" / container / str(number), "proof")):
        for path in [base, *sorted(base.rglob("*"))] if base.is_dir() else [base] if base.exists() else []:
            info = path.lstat()
            data = path.read_bytes() if stat.S_ISREG(info.st_mode) else b""
            text = _normal(data.decode(), container, number, token, None).encode() if data else b""
            found[f"{label}/{path.relative_to(base)}"] = (info.st_mode, text)
    return {name: value for name, value in found.items()
            if not any(name == made or name.startswith(made + "/") for made in JOB_MADE)}


def _compare(user: User, container: str, argv: list[str], cwd: str | None = None) -> tuple[str, str]:
    """Run ARGV by both paths; assert they agree; the lean run's stdout and stderr."""
    _forget_record(user)
    full = _gear(user, *argv, cwd=cwd, lean=False)
    lean = _gear(user, *argv, cwd=cwd, lean=True)
    rows = _rows(user, container)
    user.run("scancel", *(str(row["slurm_job_id"]) for row in rows[-2:] if row["slurm_job_id"]))
    assert [row["number"] for row in rows][-2:] == [len(rows) - 1, len(rows)]
    outputs = []
    for (code, out, err), row in zip((full, lean), rows[-2:], strict=True):
        assert code == 0, err
        number, token, job = int(row["number"]), str(row["token"]), str(row["slurm_job_id"])
        assert job.isdigit() and re.fullmatch(r"[0-9a-f]{16}", token)
        outputs.append((_normal(out, container, number, token, job), _normal(err, container, number, token, job),
                        {key: (_normal(value, container, number, token, None) if isinstance(value, str) else value)
                         for key, value in row.items()
                         if key not in ("number", "token", "slurm_job_id", "created_at", "submitted_at")},
                        _files(user, container, number, token)))
    assert outputs[0][:3] == outputs[1][:3]
    assert outputs[0][3] == outputs[1][3]
    return lean[1], lean[2]


def test_gear_sbatch_wrap(user: User) -> None:
    out, err = _compare(user, "sbatch", ["sbatch", "--hold", "--wrap", "true"])
    assert re.fullmatch(r"Submitted batch job \d+\n", out) and err == ""
    out, _ = _compare(user, "sbatch", ["sbatch", "--hold", "--parsable", "-J", "named", "-t", "5", "--wrap",
                                       "echo 'it''s' \"$HOME\""])
    assert re.fullmatch(r"\d+\n", out)


def test_gear_sbatch_script(user: User) -> None:
    container = f"qs{uuid.uuid4().hex[:8]}"
    script = f"#!/bin/bash\n#SBATCH --time=5\n#SBATCH -J from-script\n#GEAR -c {container}\n#GEAR -m plain\necho $1\n"
    code = user.make_dir({"job.sh": script})
    out, err = _compare(user, container, ["sbatch", "--hold", "job.sh", "an arg"], cwd=str(code))
    assert re.fullmatch(r"Submitted batch job \d+\n", out) and err == ""


def test_gear_run_small_code(user: User) -> None:
    code = user.make_dir({"train.py": "print('hi')\n", "README": "small\n", "cfg.json": "{}\n"})
    (code / "train.py").chmod(0o750)
    container = f"qs{uuid.uuid4().hex[:8]}"
    out, err = _compare(user, container, ["run", "-c", container, "--code", str(code), "--", "true"])
    assert out == f"{container}/2\n" and re.fullmatch(rf"gear: submitted {container}/2 as Slurm job \d+ "
                                                     r"\(cpu-small, python\)\n", err)
    _compare(user, container, ["run", f"--container={container}", "-r", "gpu-1", "-e", "python", "-m", "a message",
                               "--code", str(code), "python3", "train.py"])
    # The container named after the code directory, as the full path names it.
    _compare(user, code.name, ["run", "--code", str(code), "--", "python3", "train.py", "--epochs", "3"])
    # No --code: the current directory, within the site's limit for code not named.
    _compare(user, container, ["run", "-c", container, "python3", "train.py"], cwd=str(code))
    _compare(user, code.name, ["run", "--", "python3", "train.py"], cwd=str(code))


def test_forms_the_lean_path_leaves_to_click(user: User) -> None:
    """A project file, a parameter, data, a notebook, no --code: the full path runs them, as before."""
    code = user.make_dir({"train.py": "print('hi')\n", "gear.yaml": "command: python3 train.py\n"})
    container = f"qs{uuid.uuid4().hex[:8]}"
    _gear(user, "run", "-c", container, "--code", str(code), "--", "true", lean=False)   # writes the record
    assert _gear(user, "run", "-c", container, "--code", str(code), lean=False)[0] == 0   # gear.yaml: the full path
    (code / "gear.yaml").unlink()
    for argv in (["--param", "lr=0.1"], ["-f"], ["--json"]):
        code_ok, out, err = _gear(user, "run", "-c", container, *argv, "--code", str(code), "--", "true", lean=False)
        assert code_ok == 0, err
    code_ok, out, err = _gear(user, "run", "-c", container, "--code", str(code), "python3", "x.py", "--lr", "1")
    assert code_ok == 2 and "No such option: --lr" in err   # click reads it as an option, as before


@pytest.mark.parametrize("argv, message", [
    (["run", "-c", "Bad Name", "--code", "CODE", "--", "true"], "gear: error: invalid container name 'Bad Name'"),
    (["run", "-c", "ok", "-r", "no-such-type", "--code", "CODE", "--", "true"], "gear: error: unknown compute type"),
    (["run", "-c", "ok", "-e", "no-such-image", "--code", "CODE", "--", "true"], "gear: error: unknown image"),
    (["run", "-c", "ok", "--code", "CODE", "--", "echo", "a\nb"], "gear: error: the command contains a control"),
    (["run", "-c", "ok", "--code", "/nonexistent", "--", "true"], "gear: error: code path /nonexistent does not"),
    (["sbatch", "--hold", "--wrap", "true", "--partition=no-such-partition"], "gear: error: sbatch refused the job"),
])
def test_bad_input_one_line_and_nothing_made(user: User, argv: list[str], message: str) -> None:
    code = user.make_dir({"train.py": "print('hi')\n"})
    argv = [str(code) if arg == "CODE" else arg for arg in argv]
    container = "sbatch" if argv[0] == "sbatch" else "ok"
    _gear(user, "run", "-c", f"qs{uuid.uuid4().hex[:8]}", "--code", str(code), "--", "true")   # the record is there
    before = _rows(user, container) if (STORAGE_ROOT / "users" / user.name / "ledger.sqlite").exists() else []
    answers = []
    for forget in (False, True):   # with the record (the lean path, where it takes it), then without (the full path)
        if forget:
            _forget_record(user)
        code_ok, out, err = _gear(user, *argv)
        assert code_ok != 0 and out == "" and err.startswith(message) and err.count("\n") == 1, err
        answers.append((code_ok, err))
    assert answers[0] == answers[1]
    assert _rows(user, container) == before
    directory = STORAGE_ROOT / "users" / user.name / "containers" / container
    assert not directory.exists() or sorted(int(p.name) for p in directory.iterdir()) == [r["number"] for r in before]
    proofs = STORAGE_ROOT / "users" / user.name / "notify" / "executions" / container
    assert not proofs.exists() or sorted(int(p.name) for p in proofs.iterdir()) == [r["number"] for r in before]


def test_the_current_directory_over_the_limit_is_refused_by_the_full_path(user: User) -> None:
    site = custom_site(user, site_yaml="\ncode_limit:\n  files: 2\n")
    env = {"GEAR_SITE_CONFIG": str(site)}
    code = user.make_dir({"a.py": "1\n", "b.py": "2\n"})
    container = f"qs{uuid.uuid4().hex[:8]}"
    assert _gear(user, "run", "-c", container, "--", "true", cwd=str(code), env=env)[0] == 0   # the record, for this site
    assert _gear(user, "run", "-c", container, "--", "true", cwd=str(code), env=env, lean=True)[0] == 0
    (code / "c.py").write_text("3\n")
    code_ok, out, err = _gear(user, "run", "-c", container, "--", "true", cwd=str(code), env=env, lean=False)
    assert code_ok != 0 and out == "" and err.count("\n") == 1
    assert err.startswith(f"gear: error: the current directory {code} has more than 2 files"), err
    assert [row["number"] for row in _rows(user, container)] == [1, 2]
