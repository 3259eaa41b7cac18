"""Notifications end to end: the real slurmctld calls gear-mailprog (its MailProg),
which sends to the cluster's real SMTP server (the aiosmtpd mail catcher)."""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from gear_hpc.base.sizes import human_size
from gear_hpc.devcluster import SCRIPT
from gear_hpc.devcluster.mailcatcher import read_messages
from gear_hpc.storage.disk import usage

STATE = Path(os.environ.get("GEAR_DEVCLUSTER_DIR") or "/var/lib/gear-devcluster")
MAIL_DIR = STATE / "logs" / "mail"
MAILPROG_LOG = STATE / "root" / "var" / "log" / "gear" / "mail.log"   # mail.log_file of site-config
SMS_DOMAIN = "sms.example.org"                                        # mail.sms_email of site-config
SMS_COUNTS = STATE / "root" / "var" / "spool" / "gear-mailprog" / "sms"  # mail.state_dir of site-config


def _mail(predicate, count: int = 1, timeout: float = 60) -> list[dict]:
    """Caught messages matching `predicate`, once at least `count` arrived (or the time is up)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in read_messages(MAIL_DIR) if predicate(m)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _of(execution_id: str):
    return lambda m: dict(m["headers"]).get("X-Gear-Execution") == execution_id or \
        m["body"].startswith(f"gear: {execution_id} ")


def _log_lines(job_id: str) -> list[str]:
    text = MAILPROG_LOG.read_text() if MAILPROG_LOG.exists() else ""
    return [line for line in text.splitlines() if f" job={job_id}" in line]


@pytest.fixture
def keep_settings():
    """Put back the users' notification settings as they were: tests change them."""
    saved = {}

    def remember(user) -> None:
        path = user.storage / "notify" / "settings.json"
        saved[path] = (path.read_bytes(), path.stat()) if path.exists() else None
    yield remember
    for path, before in saved.items():
        if before is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(before[0])
            os.chown(path, before[1].st_uid, before[1].st_gid)


def _run(user, container: str, program: str) -> dict:
    code = user.make_dir({"main.py": program})
    result = user.gear("run", "-c", container, "--code", str(code), "-f", "--", "python3", "main.py", cwd=str(code))
    assert result.stdout.strip().splitlines()[-1] == f"{container}/1", result.stderr
    return user.gear_json("show", f"{container}/1")


def test_completed_execution_emails_its_owner(alice, container, keep_settings):
    keep_settings(alice)
    alice.gear("notify", "--no-sms", "--email", "default", "--on", "begin,end,fail", check=True)
    record = _run(alice, container, "open('result.bin', 'wb').write(b'x' * 5000)\nprint('done')\n")
    assert record["status"] == "completed"
    execution = f"{container}/1"

    mails = _mail(_of(execution), count=2)
    subjects = sorted(m["subject"] for m in mails)
    assert subjects == [f"gear: {execution} completed, exit 0", f"gear: {execution} started"], subjects
    for mail in mails:
        assert mail["envelope_to"] == ["alice@example.org"] and mail["from"] == "gear@example.org"
    [ended] = [m for m in mails if "completed" in m["subject"]]
    body = ended["body"]
    assert f"Execution {execution} has ended: completed." in body
    assert f"container     {container}" in body and "exit code     0" in body
    assert re.search(r"run time      \d\d:\d\d:\d\d", body)
    # The size the job reported through Slurm is what its saved working directory holds on disk.
    assert f"size saved    {human_size(usage(Path(record['workdir'])).disk)}" in body
    assert f"Slurm job     {record['slurm_job_id']}, partition cpu, state COMPLETED" in body
    assert f"gear logs {execution}" in body and f"gear continue {execution}" in body
    assert "Slurm Job_id=" in body  # Slurm's own terse line, for reference
    # Opted out of SMS: no text for this execution.
    assert not [m for m in read_messages(MAIL_DIR) if any(SMS_DOMAIN in a for a in m["envelope_to"])
                and execution in m["body"]]
    assert any("email (completed) to alice@example.org sent" in line for line in _log_lines(record["slurm_job_id"]))


def test_failed_execution_texts_a_user_who_opted_in(bob, container, keep_settings):
    keep_settings(bob)
    # A fresh day for bob's texts: the suite's runs of the same day would otherwise reach the site's daily limit
    # (mail.sms_daily_limit) and this text would, rightly, not go out.
    for count in SMS_COUNTS.glob("bob.*"):
        count.unlink()
    number = "+1555" + str(uuid.uuid4().int)[:7]
    bob.gear("notify", "--sms", number, "--on", "end,fail", "--email", "default", check=True)
    record = _run(bob, container, "import sys\nprint('about to fail')\nsys.exit(3)\n")
    assert record["status"] == "failed" and record["exit_code"] == 3
    execution = f"{container}/1"

    [email] = _mail(lambda m: dict(m["headers"]).get("X-Gear-Execution") == execution)
    assert email["subject"] == f"gear: {execution} failed, exit 3"
    assert email["envelope_to"] == ["bob@example.org"]
    assert "exit code     3" in email["body"] and "state FAILED" in email["body"]
    [sms] = _mail(lambda m: m["envelope_to"] == [f"{number}@{SMS_DOMAIN}"])
    assert sms["body"].startswith(f"gear: {execution} failed, exit 3, run ")
    assert len(sms["body"].strip()) <= 160
    assert any(f"sms to {number} sent" in line for line in _log_lines(record["slurm_job_id"]))


def _sbatch(user, *args: str) -> str:
    workdir = user.make_dir({})
    result = user.run("sbatch", "--parsable", f"--output={workdir}/out-%j.log", *args, cwd=str(workdir),
                      check=True)
    return result.stdout.strip().split(";")[0]


def test_a_job_gear_did_not_submit_gets_slurms_message_unchanged(alice):
    name = f"plain-{uuid.uuid4().hex[:8]}"
    job = _sbatch(alice, f"--job-name={name}", "--mail-type=END", "--mail-user=alice@example.org", "--wrap", "true")
    [mail] = _mail(lambda m: f"Job_id={job} " in m["subject"])
    assert re.fullmatch(rf"Slurm Job_id={job} Name={name} Ended, Run time \d\d:\d\d:\d\d, COMPLETED, ExitCode 0",
                        mail["subject"]), mail["subject"]
    assert mail["body"].strip() == "" and mail["envelope_to"] == ["alice@example.org"]
    assert "X-Gear-Execution" not in dict(mail["headers"])


def test_a_newline_in_a_job_name_never_reaches_a_header(alice):
    name = f"x{uuid.uuid4().hex[:6]}\nBcc: evil@example.org"
    workdir = alice.make_dir({})
    result = alice.run("sbatch", "--parsable", f"--output={workdir}/out-%j.log", f"--job-name={name}",
                       "--mail-type=END", "--mail-user=alice@example.org", "--wrap", "true", cwd=str(workdir))
    if result.returncode != 0:
        pytest.skip(f"this Slurm refuses a newline in a job name: {result.stderr.strip()}")
    job = result.stdout.strip().split(";")[0]
    [mail] = _mail(lambda m: f"Job_id={job} " in m["subject"])
    assert mail["envelope_to"] == ["alice@example.org"]
    headers = dict(mail["headers"])
    assert "Bcc" not in headers and "\n" not in mail["subject"]
    assert not [m for m in read_messages(MAIL_DIR) if "evil@example.org" in m["envelope_to"]]


def _catcher_pid() -> int:
    status = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True).stdout
    found = re.search(r"mail catcher: running \(pid (\d+)", status)
    assert found, status
    return int(found.group(1))


def test_smtp_down_loses_no_execution_data_nor_the_mail(alice, container):
    """The mail server is gone: the execution completes and saves as ever, the
    mailprog logs the failure, keeps the mail and slurmctld carries on; once
    `up` brings the catcher back, the kept mail arrives."""
    os.kill(_catcher_pid(), 15)
    try:
        time.sleep(1)
        record = _run(alice, container, "open('kept.txt', 'w').write('kept\\n')\n")
        assert record["status"] == "completed" and record["exit_code"] == 0
        assert (Path(record["workdir"]) / "kept.txt").read_text() == "kept\n"
        deadline = time.monotonic() + 60
        while not any("NOT sent" in line for line in _log_lines(record["slurm_job_id"])) \
                and time.monotonic() < deadline:
            time.sleep(0.5)
        assert any("email (completed) to alice@example.org NOT sent" in line
                   for line in _log_lines(record["slurm_job_id"])), MAILPROG_LOG.read_text()[-2000:]
        # slurmctld is unaffected: the next job runs.
        assert alice.gear("status", check=True).returncode == 0
    finally:
        subprocess.run(["bash", str(SCRIPT), "up"], capture_output=True, text=True, check=True, timeout=600)
    assert _catcher_pid()
    execution = f"{container}/1"
    [mail] = _mail(lambda m: dict(m["headers"]).get("X-Gear-Execution") == execution, timeout=90)
    assert mail["subject"] == f"gear: {execution} completed, exit 0"
    retried = [line for line in MAILPROG_LOG.read_text().splitlines() if f"(job {record['slurm_job_id']} " in line]
    assert any("sent on try" in line for line in retried), retried


def test_devcluster_mail_shows_what_was_caught():
    result = subprocess.run(["bash", str(SCRIPT), "mail", "--last", "1"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Subject: " in result.stdout and "message(s) in" in result.stdout
