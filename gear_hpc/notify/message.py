"""gear-mailprog, what we say: the outcome of a proven gear job (or sweep), as an email and an SMS.

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
from .slurm_mail import Call, GearJob, GearSweep, one_line

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


# Slurm's summary of a job array's tasks, at the end of its subject: the state they all ended in, or
# "Mixed"; then the range of their exit codes, or the highest signal (Slurm 24.11, agent.c).
_ARRAY_SUMMARY = re.compile(r", (?P<state>[A-Za-z_]{1,20}), (?:ExitCode \[(?P<low>[0-9]{1,3})-(?P<high>[0-9]{1,3})\]"
                            r"|MaxSignal \[(?P<signal>[0-9]{1,3})\])\Z")
# The states Slurm summarises an array's tasks as, in gear's words; any other is "ended".
_ARRAY_STATES = {"COMPLETED": "completed", "FAILED": "failed", "Mixed": "mixed", "CANCELLED": "terminated",
                 "TIMEOUT": "timeout", "DEADLINE": "timeout", "PREEMPTED": "terminated", "NODE_FAIL": "node failure",
                 "OUT_OF_MEMORY": "out of memory", "BOOT_FAIL": "failed"}


@dataclass
class SweepOutcome:
    status: str                 # started, one of _ARRAY_STATES' words, or ended
    exit_codes: str | None      # "0", or "0-1": the range of the trials' exit codes
    signal: str | None          # the highest signal that ended a trial


def sweep_outcome(call: Call) -> SweepOutcome:
    """What Slurm's subject says of the array as a whole; nothing of it unchecked."""
    if call.mail_type == "Began":
        return SweepOutcome("started", None, None)
    if call.mail_type not in ("Ended", "Failed"):
        return SweepOutcome(one_line(call.mail_type.lower(), 60) or "unknown", None, None)
    summary = _ARRAY_SUMMARY.search(call.subject)
    if summary is None:
        return SweepOutcome("ended", None, None)
    low, high = summary.group("low"), summary.group("high")
    codes = None if low is None else low if low == high else f"{low}-{high}"
    return SweepOutcome(_ARRAY_STATES.get(summary.group("state"), "ended"), codes, summary.group("signal"))


def sweep_subject(sweep: GearSweep, result: SweepOutcome) -> str:
    if result.status == "started":
        return f"gear: sweep {sweep.id} started ({sweep.count} trials)"
    text = f"gear: sweep {sweep.id} {result.status}"
    if result.exit_codes is not None:
        text += f", exit {result.exit_codes}"
    if result.signal is not None:
        text += f", signal {result.signal}"
    return text


_SWEEP_HEADS = {
    "started": "has started: its first trial is running.",
    "completed": "has ended: every trial completed.",
    "failed": "has ended: every trial failed.",
    "mixed": "has ended: its trials did not all end alike (some failed or were stopped).",
    "terminated": "has ended: its trials were stopped.",
}


def sweep_body(call: Call, sweep: GearSweep, result: SweepOutcome, storage_root: Path) -> str:
    ended = result.status != "started"
    head = _SWEEP_HEADS.get(result.status, f"has ended: {result.status}." if ended else f"Slurm says {result.status}.")
    rows: list[tuple[str, str]] = [("container", sweep.container), ("sweep", f"{sweep.id} ({sweep.count} trials)"),
                                   ("status", result.status)]
    if result.exit_codes is not None:
        rows.append(("exit codes", result.exit_codes))
    if result.signal is not None:
        rows.append(("signal", result.signal))
    slurm = f"{call.job_id} (a job array)"
    if call.env.get("SLURM_JOB_PARTITION"):
        slurm += f", partition {one_line(call.env['SLURM_JOB_PARTITION'], 40)}"
    rows.append(("Slurm job", slurm))
    # Computed from what was proven: the first trial's directory holds what the sweep's trials share.
    rows.append(("directory", str(Path(storage_root) / USERS / sweep.owner.name / CONTAINERS / sweep.container
                                  / str(sweep.first) / "sweep")))
    lines = [f"Sweep {sweep.id} {head}", ""]
    lines += [f"  {label:<12}  {value}" for label, value in rows]
    if ended:
        lines += ["", "Slurm sends this once, for all the trials: `gear status` says how each ended."]
    commands = [("Its trials, best first:", f"gear tune show {sweep.container}/{sweep.first}"),
                ("Every trial's status:", "gear status")]
    lines.append("")
    lines += [f"{label:<24} {command}" for label, command in commands]
    lines += ["", "-- ", f"Slurm's message: {one_line(call.subject)}"]
    return "\n".join(lines) + "\n"


def sweep_sms(sweep: GearSweep, result: SweepOutcome) -> str:
    return sweep_subject(sweep, result)[:160]


def build_email(sender: str, recipients: list[str], subject: str, body: str,
                execution: str | None = None, sweep: str | None = None) -> EmailMessage:
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
    if sweep:
        msg["X-Gear-Sweep"] = one_line(sweep)
    msg.set_content(body)
    return msg
