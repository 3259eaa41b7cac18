"""gear-mailprog, what we say: the outcome of a proven gear job, as an email and an SMS.

Nothing from the job reaches the text unchecked: the outcome's values are
matched against closed sets or digit patterns, and the directory is
computed from what was proven, never taken from the job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import formatdate, make_msgid
from pathlib import Path

from ..base.facts import CONTAINERS, REPORTED_BY_JOB, USERS
from ..base.sizes import human_size
from .slurm_mail import Call, GearJob, one_line

# No folding below RFC 5322's 998: Python's folder moves a 70-odd character
# subject to a continuation line, which some readers show with a leading space.
_POLICY = default_policy.clone(max_line_length=998)
_EXIT_CODE = re.compile(r"[0-9]{1,3}\Z")   # ASCII digits only: str.isdigit() takes '²', int() does not
SIZE = re.compile(r"[0-9]{1,19}\Z")
# Slurm's final states, in gear's words, for a job that did not report its own.
_SLURM_STATES = {"COMPLETED": "completed", "CANCELLED": "terminated", "TIMEOUT": "timeout",
                 "DEADLINE": "timeout", "PREEMPTED": "terminated"}


@dataclass
class Outcome:
    status: str                 # completed, failed, terminated, timeout, running, node failure, or Slurm's word
    exit_code: str | None
    size: int | None
    reported: bool              # the batch script reported it (else: Slurm's view only)
    saved: bool | None


def outcome(call: Call, job: GearJob) -> Outcome:
    extra = job.extra
    if call.mail_type == "Began":
        return Outcome("running", None, None, False, None)
    status = extra.get("status", "")
    if status in REPORTED_BY_JOB:  # what a job's final record says: never lost
        code = extra.get("exit", "")
        size = extra.get("size", "")
        return Outcome(status, code if _EXIT_CODE.match(code) else None, int(size) if SIZE.match(size) else None,
                       True, extra.get("saved") in ("1", "true"))
    state = call.env.get("SLURM_JOB_STATE", "")
    if call.mail_type in ("Ended", "Failed"):
        status = _SLURM_STATES.get(state, "failed")
    else:
        status = one_line(call.mail_type.lower(), 60) or "unknown"
    code = call.env.get("SLURM_JOB_EXIT_CODE_MAX", "")
    if state == "NODE_FAIL" and call.mail_type in ("Ended", "Failed"):
        # The node died under the job: Slurm mails this also for a job it requeues, and its
        # exit code is the dead batch shell's, not the program's. No verdict here: `gear
        # status` says whether the execution was requeued, and what its record kept.
        return Outcome("node failure", None, None, False, None)
    if status == "terminated":
        code = ""  # Slurm mails at the cancel, before the program's exit code exists: its 0 means nothing
    return Outcome(status, code if _EXIT_CODE.match(code) else None, None, False, None)


def email_subject(job: GearJob, result: Outcome) -> str:
    if result.status == "running":
        return f"gear: {job.id} started"
    exit_part = f", exit {result.exit_code}" if result.exit_code is not None else ""
    return f"gear: {job.id} {result.status}{exit_part}"


def email_body(call: Call, job: GearJob, result: Outcome, storage_root: Path) -> str:
    env = call.env
    rows: list[tuple[str, str]] = [("container", job.container), ("execution", job.id)]
    if result.status == "running":
        rows.append(("status", "running"))
        if env.get("SLURM_JOB_QUEUED_TIME"):
            rows.append(("queued for", one_line(env["SLURM_JOB_QUEUED_TIME"], 40)))
    else:
        rows.append(("status", result.status))
        rows.append(("exit code", result.exit_code if result.exit_code is not None else "unknown"))
        if env.get("SLURM_JOB_RUN_TIME"):
            rows.append(("run time", one_line(env["SLURM_JOB_RUN_TIME"], 40)))
        if result.size is not None:
            rows.append(("size saved", human_size(result.size) + ("" if result.saved else " (save incomplete)")))
    slurm = f"{call.job_id}"
    if env.get("SLURM_JOB_PARTITION"):
        slurm += f", partition {one_line(env['SLURM_JOB_PARTITION'], 40)}"
    if env.get("SLURM_JOB_STATE"):
        slurm += f", state {one_line(env['SLURM_JOB_STATE'], 40)}"
    rows.append(("Slurm job", slurm))
    # Computed from what was proven, never the job's own work dir (which its owner sets freely).
    rows.append(("directory", str(Path(storage_root) / USERS / job.owner.name / CONTAINERS / job.container
                                  / str(job.number) / "home")))

    if result.status == "running":
        head = f"Execution {job.id} has started."
        commands = [("Follow its log:", f"gear logs {job.id} -f"), ("Stop it:", f"gear stop {job.id}")]
    else:
        head = (f"Execution {job.id} has ended: {result.status}." if call.mail_type in ("Ended", "Failed")
                else f"Execution {job.id}: Slurm says {one_line(call.mail_type, 60)}.")
        commands = [("See its log:", f"gear logs {job.id}"), ("See its record:", f"gear show {job.id}"),
                    ("Continue from it:", f"gear continue {job.id}"),
                    ("Download its results:", f"gear download {job.id}")]
    lines = [head, ""]
    lines += [f"  {label:<12}  {value}" for label, value in rows]
    if not result.reported and call.mail_type in ("Ended", "Failed"):
        if result.status == "terminated":
            lines += ["", "It was stopped. It saves its working directory as it exits, which may be after",
                      f"this message: `gear show {job.id}` says whether the save completed."]
        elif result.status == "node failure":
            lines += ["", "The node it ran on failed. Slurm requeues a job that allows it (it then runs again,",
                      "resuming from what was saved, or closes from its record if it had completed):",
                      f"`gear status {job.id}` says which, and `gear show {job.id}` what was kept."]
        else:
            lines += ["", "The job ended without reporting what it saved: "
                      f"`gear show {job.id}` says what was kept."]
    lines.append("")
    lines += [f"{label:<22} {command}" for label, command in commands]
    lines += ["", "-- ", f"Slurm's message: {one_line(call.subject)}"]
    return "\n".join(lines) + "\n"


def sms_text(job: GearJob, result: Outcome, env: Mapping[str, str]) -> str:
    text = email_subject(job, result)
    if env.get("SLURM_JOB_RUN_TIME"):
        text += f", run {one_line(env['SLURM_JOB_RUN_TIME'], 20)}"
    return text[:160]


def build_email(sender: str, recipients: list[str], subject: str, body: str,
                execution: str | None = None) -> EmailMessage:
    """Every header value goes through one_line: no newline can ever reach a header."""
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = one_line(subject)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a robot
    if execution:
        msg["X-Gear-Execution"] = one_line(execution)
    msg.set_content(body)
    return msg
