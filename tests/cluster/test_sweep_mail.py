"""A sweep's mail on the real cluster: slurmctld mails a sweep's job array as a whole, gear-mailprog
turns that one mail into gear's, to the owner's address; a neighbour's array that claims the sweep gets
Slurm's plain message."""

from __future__ import annotations

import time
import uuid

import pytest
from test_mail import MAIL_DIR, MAILPROG_LOG, SMS_DOMAIN, _mail

from conftest import STORAGE_ROOT, User
from gear_hpc.devcluster.mailcatcher import read_messages

# Trial --n=1 completes; any other exits 3 when the command has the argument `fail`.
PROGRAM = "import sys\nprint('trial', sys.argv[1:])\nsys.exit(3 if 'fail' in sys.argv and '--n=1' not in sys.argv else 0)\n"


@pytest.fixture(scope="module")
def swm_alice() -> User:
    return User("swm_alice")


@pytest.fixture(scope="module")
def swm_mallory() -> User:
    return User("swm_mallory")


def _sweep(user: User, *extra: str) -> str:
    """A 2-trial sweep of `user` (gear run --param), run to its end; its container."""
    container = f"swm-{uuid.uuid4().hex[:8]}"
    code = user.make_dir({"main.py": PROGRAM})
    result = user.gear("run", "-c", container, "--code", str(code), "--param", "n=1,2", "--", "python3", "main.py",
                       *extra, cwd=str(code))
    assert result.returncode == 0 and result.stdout.split() == [f"{container}/1", f"{container}/2"], result.stderr
    for n in (1, 2):
        record = user.wait_for(f"{container}/{n}", {"completed", "failed", "terminated"})
        assert record["status"] in {"completed", "failed"}, record
    return container


def _of_sweep(sweep_id: str):
    return lambda m: dict(m["headers"]).get("X-Gear-Sweep") == sweep_id


def _of_trials(container: str):
    return lambda m: dict(m["headers"]).get("X-Gear-Execution", "").startswith(f"{container}/")


@pytest.fixture(scope="module")
def alices_sweep(swm_alice: User) -> str:
    """swm_alice's completed 2-trial sweep, with the site's default settings (email on end and fail)."""
    swm_alice.gear("notify", "--no-sms", "--email", "default", "--on", "end,fail", check=True)
    return _sweep(swm_alice)


def test_a_completed_sweep_sends_its_owner_one_mail(swm_alice, alices_sweep):
    sweep_id = f"{alices_sweep}/1-2"
    [mail] = _mail(_of_sweep(sweep_id))
    time.sleep(3)   # a second mail about the same array would follow within this
    assert len([m for m in read_messages(MAIL_DIR) if _of_sweep(sweep_id)(m)]) == 1
    assert not [m for m in read_messages(MAIL_DIR) if _of_trials(alices_sweep)(m)]   # nothing per trial
    assert mail["envelope_to"] == ["swm_alice@example.org"] and mail["from"] == "gear@example.org"
    assert mail["subject"] == f"gear: sweep {sweep_id} completed, exit 0"
    body = mail["body"]
    for text in (f"Sweep {sweep_id} has ended: every trial completed.", f"sweep         {sweep_id} (2 trials)",
                 f"gear tune show {alices_sweep}/1", "gear status",
                 f"directory     {STORAGE_ROOT}/users/swm_alice/containers/{alices_sweep}/1/sweep",
                 "Slurm's message: Slurm Array Summary Job_id="):
        assert text in body, text


def test_a_sweep_with_a_failed_trial_says_so_and_when_it_began(swm_alice):
    swm_alice.gear("notify", "--no-sms", "--email", "default", "--on", "begin,end,fail", check=True)
    try:
        container = _sweep(swm_alice, "fail")
    finally:
        swm_alice.gear("notify", "--on", "end,fail", check=True)
    sweep_id = f"{container}/1-2"
    mails = _mail(_of_sweep(sweep_id), count=2)
    assert sorted(m["subject"] for m in mails) == [f"gear: sweep {sweep_id} mixed, exit 0-3",
                                                    f"gear: sweep {sweep_id} started (2 trials)"]
    assert all(m["envelope_to"] == ["swm_alice@example.org"] for m in mails)
    [ended] = [m for m in mails if "mixed" in m["subject"]]
    assert "its trials did not all end alike" in ended["body"] and "exit codes    0-3" in ended["body"]


def test_a_neighbours_array_claiming_the_sweep_gets_slurms_message(swm_mallory, swm_alice, alices_sweep):
    """swm_mallory's own job array names swm_alice's sweep and its real token (as if it had leaked)."""
    proof = STORAGE_ROOT / "users" / "swm_alice" / "notify" / "sweeps" / alices_sweep / "1-2"
    token = proof.read_text().strip()
    workdir = swm_mallory.make_dir({})
    result = swm_mallory.run(
        "sbatch", "--parsable", "-p", "cpu", "-t", "1", "--array=1-2", "--mail-type=END,FAIL",
        "--mail-user=swm_alice", f"--output={workdir}/out-%A_%a.log", "-J", f"gear-{alices_sweep}-1-2",
        "--comment", f"gear:{alices_sweep}/1-2:{token}", "--wrap", "exit 3", cwd=str(workdir))
    assert result.returncode == 0, result.stderr
    job = result.stdout.strip().split(";")[0]

    [mail] = _mail(lambda m: f"Job_id={job}_* " in m["subject"])
    # Slurm's own plain message, as Slurm would send it: nothing of gear's.
    assert mail["subject"].startswith(f"Slurm Array Summary Job_id={job}_* ({job}) ") and mail["body"].strip() == ""
    assert mail["envelope_to"] == ["swm_alice@example.org"]
    headers = dict(mail["headers"])
    assert "X-Gear-Sweep" not in headers and "X-Gear-Execution" not in headers
    time.sleep(2)
    assert len([m for m in read_messages(MAIL_DIR) if _of_sweep(f"{alices_sweep}/1-2")(m)]) == 1   # still the one
    assert not [m for m in read_messages(MAIL_DIR) if any(SMS_DOMAIN in a for a in m["envelope_to"])
                and alices_sweep in m["body"]]
    logged = [line for line in MAILPROG_LOG.read_text().splitlines() if f" job={job}" in line]
    assert any(f"not gear's mail: swm_mallory has no sweep {alices_sweep}/1-2" in line for line in logged), logged
