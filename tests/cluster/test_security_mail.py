"""A hostile neighbour on the real cluster: mallory attacks victim through what
runs with more privilege than she has (gear-mailprog as SlurmUser), through
Slurm's job records, and through the shared storage root.

Every check is made the way mallory would make it: her own `sbatch`,
`scontrol`, `ls`, `cat` and `mkdir`, not only what `gear` says.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import time
import uuid

import pytest
from test_mail import MAIL_DIR, MAILPROG_LOG, SMS_DOMAIN, _mail

from conftest import STORAGE_ROOT, User
from gear_hpc.devcluster.mailcatcher import read_messages

PHISHING_DIR = "/home/mallory/ACTION REQUIRED: log in at https://evil.example.com/reset"
MALLORYS_NUMBER = "+15550001111"


@pytest.fixture(scope="module")
def mallory() -> User:
    return User("mallory")


@pytest.fixture(scope="module")
def victim() -> User:
    return User("victim")


@pytest.fixture(scope="module")
def victims_execution(victim: User) -> dict:
    """A real, completed execution of victim's, with a text number registered."""
    container = f"vproj-{uuid.uuid4().hex[:8]}"
    victim.gear("notify", "--sms", "+15557654321", "--email", "default", check=True)
    code = victim.make_dir({"main.py": "print('fine')\n"})
    result = victim.gear("run", "-c", container, "--code", str(code), "-f", "--", "python3", "main.py")
    assert result.returncode == 0, result.stderr
    record = victim.gear_json("show", f"{container}/1")
    assert record["status"] == "completed"
    # The execution's real token, as if it had leaked: even that must not help mallory.
    ledger = sqlite3.connect(victim.storage / "ledger.sqlite")
    [(token,)] = ledger.execute("SELECT token FROM executions WHERE container = ? AND number = 1", (container,))
    ledger.close()
    return {**record, "container": container, "token": token}


def test_mallory_cannot_forge_gears_mail_or_text_about_victims_execution(mallory, victims_execution):
    """The audit's forged notification, replayed with the victim's real token."""
    container, token = victims_execution["container"], victims_execution["token"]
    workdir = mallory.make_dir({})
    result = mallory.run(
        "sbatch", "--parsable", "-p", "cpu", "-t", "1", "--mail-type=END", "--mail-user=victim",
        f"--output={workdir}/out-%j.log", "-J", f"gear-{container}-1", "--comment", f"gear:{container}/1:{token}",
        "--extra", f"gear;sms={MALLORYS_NUMBER};status=failed;exit=3;saved=false;size=123",
        "--chdir", PHISHING_DIR, "--wrap", "true", cwd=str(workdir))
    assert result.returncode == 0, result.stderr
    job = result.stdout.strip().split(";")[0]

    [mail] = _mail(lambda m: f"Job_id={job} " in m["subject"])
    # Slurm's own plain message, as Slurm would send it: nothing of gear's, nothing of the job's fields.
    assert mail["subject"].startswith(f"Slurm Job_id={job} ") and mail["body"].strip() == ""
    assert "X-Gear-Execution" not in dict(mail["headers"])
    assert "evil.example.com" not in mail["body"] and "failed" not in mail["subject"].lower()
    time.sleep(2)   # a text would follow the email within this
    texts = [m for m in read_messages(MAIL_DIR) if any(SMS_DOMAIN in a for a in m["envelope_to"])]
    assert not [m for m in texts if MALLORYS_NUMBER in " ".join(m["envelope_to"])]
    assert not [m for m in texts if f"Job_id={job}" in m["body"] or f"{container}/1 failed" in m["body"]]


def test_the_mail_log_is_slurmusers_alone(mallory):
    info = MAILPROG_LOG.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert stat.S_IMODE(MAILPROG_LOG.parent.stat().st_mode) == 0o700
    denied = mallory.run("cat", "/var/log/gear/mail.log")
    assert denied.returncode != 0 and "Permission denied" in denied.stderr


def test_mallory_sees_nothing_of_victims_jobs_in_slurm(mallory, victim):
    """PrivateData=jobs: no names, comments, Extra or mail addresses of other users' jobs."""
    workdir = victim.make_dir({})
    job = victim.run("sbatch", "--parsable", "-p", "cpu", "-t", "2", f"--output={workdir}/out.log",
                     "--mail-type=END", "--mail-user=victim@example.org", "--comment", "victims-secret-comment",
                     "--wrap", "sleep 60", check=True).stdout.strip().split(";")[0]
    try:
        shown = mallory.run("scontrol", "show", "job", job)
        assert "victims-secret-comment" not in shown.stdout and "victim@example.org" not in shown.stdout
        listed = mallory.run("squeue", "-h", "-a", "-o", "%i %u %k", "-u", "victim")
        assert job not in listed.stdout
        # victim still sees her own.
        assert "victims-secret-comment" in victim.run("scontrol", "show", "job", job).stdout
    finally:
        victim.run("scancel", job)


def test_no_phone_number_travels_in_a_gear_job(victim, victims_execution):
    """Even where PrivateData is not set, a job record holds no phone number."""
    script = (STORAGE_ROOT / "users" / "victim" / "containers" / victims_execution["container"] / "1" / "job.sh")
    assert "+15557654321" not in script.read_text()


def test_victims_notification_settings_are_not_readable_by_mallory(mallory, victims_execution):
    root = f"{STORAGE_ROOT}/users/victim"
    for argv in (["ls", root], ["cat", f"{root}/notify/settings.json"], ["ls", f"{root}/notify"],
                 ["cat", f"{root}/ledger.sqlite"], ["ls", f"{root}/containers"]):
        denied = mallory.run(*argv)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr, argv


def test_mallory_cannot_squat_another_users_storage(mallory):
    """users/ is root's: nobody can create (or plant a link as) someone's directory before them."""
    name = f"newcomer{uuid.uuid4().hex[:6]}"
    for argv in (["mkdir", f"{STORAGE_ROOT}/users/{name}"],
                 ["ln", "-s", "/home/mallory", f"{STORAGE_ROOT}/users/{name}"]):
        denied = mallory.run(*argv)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr, argv
    info = (STORAGE_ROOT / "users").stat()
    assert info.st_uid == 0 and stat.S_IMODE(info.st_mode) == 0o755


def _storage_root_of_the_old_layout(tmp_name: str, users_mode: int):
    """A storage root laid out the old way (users/ at 1777), somewhere every cluster user can reach."""
    root = STORAGE_ROOT / "test-roots" / tmp_name   # under the shared root: seen inside the cluster too
    (root / "users").mkdir(parents=True)
    os.chmod(root.parent, 0o755)
    os.chmod(root, 0o755)
    os.chmod(root / "users", users_mode)
    return root


def test_a_directory_planted_by_another_user_is_refused_not_used(mallory, victim):
    """With the old 1777 layout mallory could create victim's directory first: gear never uses it."""
    root = _storage_root_of_the_old_layout(f"planted-{uuid.uuid4().hex[:8]}", 0o755)
    try:
        (root / "users" / "victim").mkdir()
        os.chown(root / "users" / "victim", mallory.pw.pw_uid, mallory.pw.pw_gid)
        result = victim.gear("ls", env={"GEAR_STORAGE_ROOT": str(root)})
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert result.stderr.strip() == (f"gear: error: {root}/users/victim is not a directory owned by you; "
                                         "refusing to use it (ask your admin to remove it and create yours: "
                                         "docs/admin.md)")
        assert os.listdir(root / "users" / "victim") == []   # nothing written into mallory's directory
    finally:
        shutil.rmtree(root)


def test_a_site_set_up_the_old_way_is_told_what_to_change(victim):
    root = _storage_root_of_the_old_layout(f"old-{uuid.uuid4().hex[:8]}", 0o1777)
    try:
        result = victim.gear("ls", env={"GEAR_STORAGE_ROOT": str(root)})
        assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
        assert "is writable by every user" in result.stderr and "docs/admin.md" in result.stderr
        assert os.listdir(root / "users") == []
    finally:
        shutil.rmtree(root)
