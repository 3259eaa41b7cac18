"""Bad input and Slurm faults through the real `gear` command.

Each case: a clear message on stderr, a non-zero exit, and nothing created:
no ledger row, no execution directory, no job.
"""

import json
import sqlite3

import pytest

from helpers import gear


def _nothing_created(gear_env) -> None:
    user_dirs = list((gear_env["storage"] / "users").iterdir())
    for user_dir in user_dirs:
        containers = user_dir / "containers"
        assert not containers.exists() or list(containers.iterdir()) == [], list(containers.rglob("*"))
        ledger = user_dir / "ledger.sqlite"
        if ledger.exists():
            with sqlite3.connect(ledger) as conn:
                assert conn.execute("SELECT COUNT(*) FROM executions").fetchone()[0] == 0


@pytest.fixture
def sbatch_must_not_run(fake_slurm):
    fake_slurm("sbatch", "exit 99")
    return fake_slurm


@pytest.mark.parametrize("name", ["..", "../x", "/abs", "", "a" * 65, "Upper", "naïve", "a b"])
def test_bad_container_names(gear_env, sbatch_must_not_run, name):
    result = gear("run", "-c", name, "--code", str(gear_env["code"]), "--", "python3", "train.py")
    assert result.returncode == 2, result.stderr
    assert "container name" in result.stderr
    assert sbatch_must_not_run.calls() == []
    _nothing_created(gear_env)


@pytest.mark.parametrize("args,words", [
    (["-r", "h100-8"], ["unknown compute type 'h100-8'", "cpu-small", "gpu-1", "gpu-2"]),
    (["-e", "tensorflow"], ["unknown image 'tensorflow'", "python"]),
    (["--code", "/nonexistent/code"], ["/nonexistent/code", "does not exist"]),
    (["--param", "novalue"], ["KEY=VALUE"]),
])
def test_bad_options(gear_env, sbatch_must_not_run, args, words):
    result = gear("run", "--code", str(gear_env["code"]), *args, "--", "python3", "train.py")
    assert result.returncode != 0
    for word in words:
        assert word in result.stderr
    assert sbatch_must_not_run.calls() == []
    _nothing_created(gear_env)


def test_no_command(gear_env, sbatch_must_not_run):
    result = gear("run", "--code", str(gear_env["code"]))
    assert result.returncode == 2
    assert "COMMAND" in result.stderr
    _nothing_created(gear_env)


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x1bb"])
@pytest.mark.parametrize("where", ["command", "message"])
def test_control_characters_never_reach_a_script(gear_env, sbatch_must_not_run, bad, where):
    args = ["-m", bad, "--", "echo", "x"] if where == "message" else ["--", "echo", bad]
    result = gear("run", "--code", str(gear_env["code"]), *args)
    assert result.returncode == 2, result.stderr
    assert "control character" in result.stderr
    _nothing_created(gear_env)


def test_sbatch_failing_leaves_nothing(gear_env, fake_slurm):
    fake_slurm("sbatch", "echo 'sbatch: error: Batch job submission failed: Invalid partition name specified' >&2; exit 1")
    result = gear("run", "--code", str(gear_env["code"]), "--", "python3", "train.py")
    assert result.returncode == 1
    assert "Invalid partition name specified" in result.stderr
    assert len(fake_slurm.calls()) == 1
    _nothing_created(gear_env)


def test_controller_down_leaves_nothing(gear_env, fake_slurm):
    fake_slurm("sbatch", "echo 'sbatch: error: Batch job submission failed: "
                         "Unable to contact slurm controller (connect failure)' >&2; exit 1")
    result = gear("run", "--code", str(gear_env["code"]), "--", "python3", "train.py")
    assert result.returncode == 1 and "Unable to contact slurm controller" in result.stderr
    _nothing_created(gear_env)


def test_sbatch_printing_garbage_is_not_a_job(gear_env, fake_slurm):
    fake_slurm("sbatch", "echo 'Submitted batch job'")
    result = gear("run", "--code", str(gear_env["code"]), "--", "python3", "train.py")
    assert result.returncode == 1 and "instead of a job id" in result.stderr
    _nothing_created(gear_env)


def test_sbatch_timeout_with_no_job_leaves_nothing(gear_env, fake_slurm, monkeypatch):
    monkeypatch.setattr("gear_hpc.slurm.jobs.SUBMIT_TIMEOUT", 1.0)
    fake_slurm("sbatch", "sleep 5")
    fake_slurm("squeue", "exit 0")
    from gear_hpc.base.errors import SlurmError
    from gear_hpc.executions import lifecycle as executions
    from gear_hpc.site import loading as site
    from gear_hpc.storage.disk import UserStorage

    loaded = site.load()
    with pytest.raises(SlurmError, match="did not answer"):
        executions.submit(loaded, UserStorage(loaded.storage_root),
                          executions.RunRequest(command=["x"], code=gear_env["code"]))
    _nothing_created(gear_env)


def test_sbatch_timeout_after_slurm_took_the_job_keeps_it(gear_env, fake_slurm, monkeypatch):
    """sbatch timed out, but the controller had the job: the ledger must record it."""
    monkeypatch.setattr("gear_hpc.slurm.jobs.SUBMIT_TIMEOUT", 1.0)
    script_copy = gear_env["tmp"] / "submitted.sh"
    fake_slurm("sbatch", f"cp \"${{@: -1}}\" {script_copy}; sleep 5")
    fake_slurm("squeue", f"c=$(sed -n 's/^#SBATCH --comment=//p' {script_copy}); "
                         "printf '55\\x1fPENDING\\x1fPriority\\x1f%s\\x1fN/A\\x1f\\x1e\\n' \"$c\"")
    from gear_hpc.executions import lifecycle as executions
    from gear_hpc.site import loading as site
    from gear_hpc.storage.disk import UserStorage

    loaded = site.load()
    execution = executions.submit(loaded, UserStorage(loaded.storage_root),
                                  executions.RunRequest(command=["x"], code=gear_env["code"]))
    assert execution.slurm_job_id == "55" and execution.status == "queued"


# sbatch answers 101, 102, ... (a counter beside the fake commands).
SEQUENTIAL_SBATCH = ('n=$(cat "$(dirname "$0")/n" 2>/dev/null || echo 100); n=$((n + 1)); '
                     'echo $n > "$(dirname "$0")/n"; echo $n')


def _pending(*job_ids: int) -> str:
    """A fake squeue's body listing these jobs as pending."""
    return "".join(f"printf '{j}\\x1fPENDING\\x1fPriority\\x1fx\\x1fN/A\\x1f\\x1e\\n'; " for j in job_ids) + "true"


def _ledger_rows(gear_env) -> list[tuple]:
    ledger = next((gear_env["storage"] / "users").iterdir()) / "ledger.sqlite"
    with sqlite3.connect(ledger) as conn:
        return conn.execute("SELECT * FROM executions ORDER BY container, number").fetchall()


def test_status_costs_one_slurm_query_for_many_open_executions(gear_env, fake_slurm):
    fake_slurm("sbatch", SEQUENTIAL_SBATCH)
    for _ in range(5):
        assert gear("run", "-c", "many", "--code", str(gear_env["code"]), "--", "true").returncode == 0
    fake_slurm("squeue", _pending(101, 102, 103, 104, 105))
    fake_slurm("scontrol", "exit 99")
    before = len(fake_slurm.calls())
    result = gear("status", "--json")
    assert [c.split()[0] for c in fake_slurm.calls()[before:]] == ["squeue"]
    assert {e["status"] for e in json.loads(result.stdout)} == {"queued"}


def test_only_two_looks_apart_at_a_job_slurm_does_not_know_make_it_lost(gear_env, fake_slurm):
    """squeue leaves jobs out: scontrol is asked about those alone, and one look decides nothing."""
    fake_slurm("sbatch", SEQUENTIAL_SBATCH)
    for _ in range(3):
        assert gear("run", "-c", "gone", "--code", str(gear_env["code"]), "--", "true").returncode == 0
    fake_slurm("squeue", _pending(101))
    fake_slurm("scontrol", "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1")
    before = len(fake_slurm.calls())
    first = {e["id"]: e for e in json.loads(gear("status", "--json").stdout)}
    calls = fake_slurm.calls()[before:]
    assert [c.split()[0] for c in calls] == ["squeue", "scontrol", "scontrol"]
    assert calls[1:] == ["scontrol --oneliner show job 102", "scontrol --oneliner show job 103"]
    assert {e["status"] for e in first.values()} == {"queued"}
    assert first["gone/1"]["note"] is None and first["gone/2"]["note"].startswith("missing since ")
    # A later look, past the wait (the first look's time moved back an hour), still finds them unknown.
    ledger = next((gear_env["storage"] / "users").iterdir()) / "ledger.sqlite"
    with sqlite3.connect(ledger) as conn:
        for (note,) in conn.execute("SELECT note FROM executions WHERE number > 1").fetchall():
            stamp = note.split(": ", 1)[0].removeprefix("missing since ")
            conn.execute("UPDATE executions SET note = replace(note, ?, '2000-01-01T00:00:00Z')", (stamp,))
    second = {e["id"]: e for e in json.loads(gear("status", "--json").stdout)}
    assert [second[f"gone/{n}"]["status"] for n in (1, 2, 3)] == ["queued", "lost", "lost"]
    assert "no longer knows job 102" in second["gone/2"]["note"]


def test_unreachable_slurm_is_an_error_and_nothing_changes(gear_env, fake_slurm):
    fake_slurm("sbatch", "echo 77")
    assert gear("run", "-c", "x", "--code", str(gear_env["code"]), "--", "true").returncode == 0
    # Its final record is there, but without Slurm's word nothing is decided.
    workdir = next((gear_env["storage"] / "users").iterdir()) / "containers" / "x" / "1"
    (workdir / "status.json").write_text('{"phase": "final", "status": "completed", "exit_code": 0, '
                                         '"saved": true, "at": "2026-01-01T00:00:00Z"}')
    fake_slurm("squeue", "echo 'squeue: error: Unable to contact slurm controller (connect failure)' >&2; exit 1")
    before = _ledger_rows(gear_env)
    for args in (["status", "--json"], ["status"], ["status", "x/1"], ["ls"]):
        result = gear(*args)
        assert result.returncode == 1, args
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("gear: error: Slurm did not answer (")
        assert "Unable to contact slurm controller" in lines[0] and "nothing was changed" in lines[0]
    assert json.loads(gear("status", "--json").stdout)[0]["status"] == "queued"  # the ledger, as it was
    assert _ledger_rows(gear_env) == before


def test_show_and_history_of_missing_things(gear_env):
    result = gear("show", "nope/1")
    assert result.returncode == 1 and "no execution nope/1" in result.stderr
    result = gear("history", "nope")
    assert result.returncode == 1 and "no container 'nope'" in result.stderr
    result = gear("show", "../x/1")
    assert result.returncode == 2


def test_download_refuses_paths_outside_the_working_directory(gear_env, fake_slurm, tmp_path):
    fake_slurm("sbatch", "echo 12")
    fake_slurm("squeue", "printf '12\\x1fRUNNING\\x1fNone\\x1fx\\x1fN/A\\x1fvm\\x1e\\n'")
    assert gear("run", "-c", "d", "--code", str(gear_env["code"]), "--", "true").returncode == 0
    home = next((gear_env["storage"] / "users").iterdir()) / "containers" / "d" / "1" / "home"
    home.mkdir()
    for bad in ["../code", "/etc", "a/../../x"]:
        result = gear("download", "d/1", "-t", str(tmp_path / "out"), "--from", bad)
        assert result.returncode == 2 and "inside the working directory" in result.stderr
    assert not (tmp_path / "out").exists()
