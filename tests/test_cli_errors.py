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
    fake_slurm("sbatch", "echo 'sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)' >&2; exit 1")
    result = gear("run", "--code", str(gear_env["code"]), "--", "python3", "train.py")
    assert result.returncode == 1 and "Unable to contact slurm controller" in result.stderr
    _nothing_created(gear_env)


def test_sbatch_printing_garbage_is_not_a_job(gear_env, fake_slurm):
    fake_slurm("sbatch", "echo 'Submitted batch job'")
    result = gear("run", "--code", str(gear_env["code"]), "--", "python3", "train.py")
    assert result.returncode == 1 and "instead of a job id" in result.stderr
    _nothing_created(gear_env)


def test_sbatch_timeout_with_no_job_leaves_nothing(gear_env, fake_slurm, monkeypatch):
    monkeypatch.setattr("gear_hpc.slurm.SUBMIT_TIMEOUT", 1.0)
    fake_slurm("sbatch", "sleep 5")
    fake_slurm("squeue", "exit 0")
    from gear_hpc import executions, site
    from gear_hpc.errors import SlurmError
    from gear_hpc.storage import UserStorage

    loaded = site.load()
    with pytest.raises(SlurmError, match="did not answer"):
        executions.submit(loaded, UserStorage(loaded.storage_root),
                          executions.RunRequest(command=["x"], code=gear_env["code"]))
    _nothing_created(gear_env)


def test_sbatch_timeout_after_slurm_took_the_job_keeps_it(gear_env, fake_slurm, monkeypatch):
    """sbatch timed out, but the controller had the job: the ledger must record it."""
    monkeypatch.setattr("gear_hpc.slurm.SUBMIT_TIMEOUT", 1.0)
    script_copy = gear_env["tmp"] / "submitted.sh"
    fake_slurm("sbatch", f"cp \"${{@: -1}}\" {script_copy}; sleep 5")
    fake_slurm("squeue", f"c=$(sed -n 's/^#SBATCH --comment=//p' {script_copy}); "
                         "printf '55\\x1fPENDING\\x1fPriority\\x1f%s\\x1fN/A\\x1f\\x1e\\n' \"$c\"")
    from gear_hpc import executions, site
    from gear_hpc.storage import UserStorage

    loaded = site.load()
    execution = executions.submit(loaded, UserStorage(loaded.storage_root),
                                  executions.RunRequest(command=["x"], code=gear_env["code"]))
    assert execution.slurm_job_id == "55" and execution.status == "queued"


def test_status_costs_one_slurm_query_for_many_open_executions(gear_env, fake_slurm):
    fake_slurm("sbatch", "echo $((RANDOM + 100))")
    for _ in range(5):
        assert gear("run", "-c", "many", "--code", str(gear_env["code"]), "--", "true").returncode == 0
    fake_slurm("squeue", "exit 0")
    before = len(fake_slurm.calls())
    result = gear("status", "--json")
    calls = fake_slurm.calls()[before:]
    assert [c.split()[0] for c in calls] == ["squeue"]
    # Slurm answered and knows none of them, and none wrote a record: lost, never completed.
    assert {e["status"] for e in json.loads(result.stdout)} == {"lost"}
    before = len(fake_slurm.calls())
    gear("status")
    assert fake_slurm.calls()[before:] == []  # nothing open: no Slurm call at all


def test_unreachable_slurm_is_a_warning_and_nothing_is_lost(gear_env, fake_slurm):
    fake_slurm("sbatch", "echo 77")
    assert gear("run", "-c", "x", "--code", str(gear_env["code"]), "--", "true").returncode == 0
    fake_slurm("squeue", "echo 'squeue: error: Unable to contact slurm controller' >&2; exit 1")
    result = gear("status", "--json")
    assert result.returncode == 0
    assert "Unable to contact slurm controller" in result.stderr
    assert json.loads(result.stdout)[0]["status"] == "queued"


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
