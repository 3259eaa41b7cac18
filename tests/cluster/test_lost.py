"""When an execution is called lost: only on Slurm's confirmed word, and a late final record corrects it.

The jobs are real; a fake squeue or scontrol (GEAR_SLURM_BIN, a directory of
shims) only injects the fault. A fake squeue makes `gear status` judge every
open execution of its user, so these tests run as a user of their own and
each leaves nothing open.
"""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from conftest import User
from gear_hpc.executions.reconcile import LOST_CONFIRM_AFTER

OPEN = ("submitting", "queued", "syncing", "running", "saving")
REAL = {"squeue": '#!/bin/sh\nexec /usr/bin/squeue "$@"\n', "scontrol": '#!/bin/sh\nexec /usr/bin/scontrol "$@"\n'}
EMPTY_SQUEUE = "#!/bin/sh\nexit 0\n"
UNKNOWN_TO_SCONTROL = "#!/bin/sh\necho 'slurm_load_jobs error: Invalid job id specified' >&2\nexit 1\n"
NO_CONTROLLER = ("#!/bin/sh\necho 'squeue: error: Unable to contact slurm controller (connect failure)' >&2\n"
                 "exit 1\n")


@pytest.fixture(scope="module")
def lost_user() -> User:
    return User("lostuser1")


def _shims(user: User, **commands: str):
    """GEAR_SLURM_BIN for a directory of these commands (the real ones for the rest)."""
    directory = user.make_dir({**REAL, **commands})
    for name in REAL:
        (directory / name).chmod(0o755)
    return {"GEAR_SLURM_BIN": str(directory)}


def _start(user: User, container: str, *command: str) -> tuple[str, str]:
    """A real job, this user's only open execution: its id and Slurm job id."""
    others = [r["id"] for r in user.gear_json("status") if r["status"] in OPEN]
    assert others == [], f"{user.name} has open executions, which a fake squeue would judge too"
    code = user.make_dir({"x": ""})
    result = user.gear("run", "-c", container, "--code", str(code), "--", *command, check=True)
    execution = result.stdout.strip().splitlines()[-1]
    return execution, user.gear_json("show", execution)["slurm_job_id"]


def _status(user: User, execution: str, env: dict[str, str] | None = None) -> dict:
    return json.loads(user.gear("status", execution, "--json", check=True, env=env).stdout)


def _end(user: User, execution: str, job_id: str) -> None:
    """Cancel the job and let the real Slurm close the execution (nothing left open for the next test)."""
    user.run("scancel", job_id)
    user.wait_for(execution, {"completed", "failed", "terminated", "timeout", "lost"}, timeout=120)


def test_a_job_squeue_leaves_out_but_scontrol_knows_is_not_lost(lost_user, container):
    execution, job_id = _start(lost_user, container, "sleep", "600")
    try:
        env = _shims(lost_user, squeue=EMPTY_SQUEUE)   # scontrol: the real one, which knows the job
        for _ in range(2):
            record = _status(lost_user, execution, env)
            assert record["status"] in OPEN and record["note"] is None, record  # not even "missing since"
    finally:
        _end(lost_user, execution, job_id)


def test_unknown_to_squeue_and_scontrol_at_two_looks_apart_is_lost(lost_user, container):
    execution, job_id = _start(lost_user, container, "sleep", "600")
    try:
        env = _shims(lost_user, squeue=EMPTY_SQUEUE, scontrol=UNKNOWN_TO_SCONTROL)
        first = _status(lost_user, execution, env)
        assert first["status"] in OPEN and first["note"].startswith("missing since "), first
        time.sleep(LOST_CONFIRM_AFTER.total_seconds() / 2)
        assert _status(lost_user, execution, env)["status"] in OPEN  # too soon for a verdict
        time.sleep(LOST_CONFIRM_AFTER.total_seconds() / 2 + 2)
        record = _status(lost_user, execution, env)
        assert record["status"] == "lost", record
        assert f"no longer knows job {job_id}" in record["note"]
    finally:
        lost_user.run("scancel", job_id)
        # Its final record comes later and corrects "lost" (the next test shows it): wait for it here.
        lost_user.wait_for(execution, {"completed", "failed", "terminated", "timeout"}, timeout=120)


def test_a_lost_execution_is_corrected_by_its_final_record(lost_user, container):
    seconds = int(LOST_CONFIRM_AFTER.total_seconds()) + 20
    execution, job_id = _start(lost_user, container, "sleep", str(seconds))
    env = _shims(lost_user, squeue=EMPTY_SQUEUE, scontrol=UNKNOWN_TO_SCONTROL)
    assert _status(lost_user, execution, env)["note"].startswith("missing since ")
    time.sleep(LOST_CONFIRM_AFTER.total_seconds() + 2)
    lost = _status(lost_user, execution, env)
    assert lost["status"] == "lost", lost
    # The job goes on (Slurm never forgot it) and ends on its own; its final record then corrects the verdict.
    record = lost_user.wait_for(execution, {"completed", "failed", "terminated", "timeout"}, timeout=180)
    assert record["status"] == "completed" and record["exit_code"] == 0, record
    assert record["note"].startswith(f"was marked lost at {lost['ended_at']}; its final record arrived later: "
                                     "completed, exit code 0"), record
    assert record["ended_at"] >= lost["ended_at"] and record["size_bytes"] is not None
    table = lost_user.gear("status", check=True).stdout
    assert f"{execution}: was marked lost at" in table


def test_slurm_not_answering_is_an_error_and_changes_nothing(lost_user, container):
    execution, job_id = _start(lost_user, container, "sleep", "600")
    try:
        ledger = lost_user.storage / "ledger.sqlite"
        before = hashlib.sha256(ledger.read_bytes()).hexdigest()
        env = _shims(lost_user, squeue=NO_CONTROLLER)
        for args in (["status"], ["status", "--json"], ["status", execution], ["ls"]):
            result = lost_user.gear(*args, env=env)
            assert result.returncode == 1, (args, result)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, lines
            assert lines[0].startswith("gear: error: Slurm did not answer (") and "nothing was changed" in lines[0]
            assert "Unable to contact slurm controller" in lines[0]
        assert hashlib.sha256(ledger.read_bytes()).hexdigest() == before
        assert _status(lost_user, execution)["status"] in OPEN   # the real Slurm: still there
    finally:
        _end(lost_user, execution, job_id)
