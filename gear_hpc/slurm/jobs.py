"""The only module that runs Slurm's commands (sbatch, squeue, scontrol, scancel).

pyslurm has no release matching Debian's Slurm, so gear talks to Slurm
through its commands, with fields separated by characters a field cannot
hold (ood_core #135: a multi-line comment broke line-based parsing).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..base.errors import GearError, SlurmError
from ..base.runner import CommandFailed, run
from . import queue

# A job, or one task of a job array as squeue names it (ARRAYJOB_TASK).
JOB_ID = re.compile(r"[0-9]+(_[0-9]+)?")
SUBMIT_TIMEOUT = 60.0
QUERY_TIMEOUT = queue.QUERY_TIMEOUT
expand_job_id = queue.expand_job_id
PENDING, RUNNING, ENDED = queue.PENDING, queue.RUNNING, queue.ENDED


@dataclass(frozen=True)
class SlurmJob:
    job_id: str
    state: str        # Slurm's long state name, e.g. COMPLETED
    reason: str
    comment: str
    end_time: str
    nodes: str = ""   # where it ran; empty if it never started

    @property
    def phase(self) -> str:
        """pending, running or ended."""
        return queue.phase(self.state)


_bin = queue.slurm_command


def submit(script: Path, options: Sequence[str] = ()) -> str:
    """Submit a batch script file and return its job id (digits only).

    `options` are sbatch options that override the script's #SBATCH lines
    (`gear sbatch` passes the user's, each one `--name=value` argument).
    """
    try:
        result = run([_bin("sbatch"), "--parsable", *options, str(script)], timeout=SUBMIT_TIMEOUT,
                     env=queue.submit_env())
    except CommandFailed as exc:
        if exc.timed_out:
            raise SubmitTimeout(f"sbatch did not answer within {SUBMIT_TIMEOUT:.0f} s") from None
        reason = (exc.stderr or exc.stdout).strip() or f"exit code {exc.returncode}"
        raise SlurmError(f"sbatch refused the job: {reason}") from None
    # --parsable prints "ID" or "ID;CLUSTER".
    job_id = result.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise SlurmError(f"sbatch printed {result.stdout.strip()!r} instead of a job id: {result.stderr.strip()}")
    return job_id


class SubmitTimeout(SlurmError):
    """sbatch did not answer: the job may or may not exist."""


def query_jobs() -> dict[str, SlurmJob]:
    """All of the user's jobs that Slurm still knows, in ONE squeue call.

    `--states=all` includes jobs that ended less than MinJobAge ago. Works
    without accounting (sacct may be disabled on the cluster).
    """
    try:
        result = run(queue.squeue_argv(), timeout=QUERY_TIMEOUT)
    except CommandFailed as exc:
        raise SlurmError(f"cannot ask Slurm about jobs: {(exc.stderr or exc.stdout).strip() or 'timed out'}") from None
    return jobs_from(queue.parse(result.stdout))


def jobs_from(parsed: dict[str, tuple[str, ...]]) -> dict[str, SlurmJob]:
    """squeue's answer (queue.parse) as records."""
    return {job_id: SlurmJob(*fields) for job_id, fields in parsed.items()}


# "Invalid job id specified": scontrol's words for a job the controller does not
# know (never submitted, or ended more than MinJobAge ago).
_UNKNOWN_JOB = "Invalid job id"
_SHOW_FIELDS = ("JobState", "Reason", "Comment", "EndTime", "NodeList")


def show_job(job_id: str) -> SlurmJob | None:
    """What the controller knows of one job (`scontrol show job ID`), or None if it knows no such job.

    Asked only about jobs that squeue did not list, before gear calls one
    lost: squeue's answer alone is not proof that Slurm forgot a job.
    Raises SlurmError when Slurm does not answer or answers something else.
    """
    if not JOB_ID.fullmatch(job_id):
        raise SlurmError(f"not a Slurm job id: {job_id!r}")
    try:
        result = run([_bin("scontrol"), "--oneliner", "show", "job", job_id], timeout=QUERY_TIMEOUT)
    except CommandFailed as exc:
        if _UNKNOWN_JOB in exc.stderr or _UNKNOWN_JOB in exc.stdout:
            return None
        if exc.stdout.strip() == f"Job {job_id} not found":
            # scontrol's words (stdout, exit 1) for a task of a known array that it no longer has: one
            # cancelled while pending (`scancel 123_5`) is dropped at once (seen with Slurm 24.11).
            return None
        raise SlurmError(f"cannot ask Slurm about job {job_id}: "
                         f"{(exc.stderr or exc.stdout).strip() or 'timed out'}") from None
    array_job, _, task = job_id.partition("_")
    for line in result.stdout.splitlines():
        if task:
            # An array task: JobId is the task's own id; ArrayTaskId may still be a pending range.
            found = re.search(r"(?:^|\s)ArrayJobId=(\S+)\s+ArrayTaskId=(\S+)", line)
            if not found or found.group(1) != array_job or job_id not in expand_job_id(
                    f"{array_job}_{found.group(2) if found.group(2).isdigit() else '[' + found.group(2) + ']'}"):
                continue
        elif not re.match(rf"JobId={job_id}(\s|$)", line):
            continue
        # Key=value pairs; only values without spaces are read (a comment may
        # hold spaces, and only a "submitting" row, never asked here, reads it).
        values = {key: match.group(1) if (match := re.search(rf"(?:^|\s){key}=(\S*)", line)) else ""
                  for key in _SHOW_FIELDS}
        if not values["JobState"]:
            break
        return SlurmJob(job_id, values["JobState"], values["Reason"], values["Comment"], values["EndTime"],
                        "" if values["NodeList"] == "(null)" else values["NodeList"])
    raise SlurmError(f"scontrol printed no state for job {job_id}: {result.stdout.strip()[:200]!r}")


def max_array_size() -> int | None:
    """slurm.conf's MaxArraySize (a job array's task ids must be below it), or None if Slurm does not say."""
    try:
        result = run([_bin("scontrol"), "show", "config"], timeout=QUERY_TIMEOUT)
    except GearError:   # CommandFailed, or no scontrol at all
        return None
    found = re.search(r"^MaxArraySize\s*=\s*(\d+)\s*$", result.stdout, re.MULTILINE)
    return int(found.group(1)) if found else None


def cancel(job_id: str, signal: str | None = None, batch_only: bool = False) -> bool:
    """scancel; returns False if Slurm no longer knows the job (already finished).

    `job_id` may be an array task (123_5); a whole array is its job id (123).
    """
    if not JOB_ID.fullmatch(job_id):
        raise SlurmError(f"not a Slurm job id: {job_id!r}")
    argv = [_bin("scancel")]
    if signal:
        argv.append(f"--signal={signal}")
    if batch_only:
        argv.append("--batch")
    argv.append(job_id)
    try:
        result = run(argv, timeout=QUERY_TIMEOUT)
    except CommandFailed as exc:
        if "Invalid job id" in exc.stderr or "already completing or completed" in exc.stderr:
            return False
        raise SlurmError(f"scancel failed: {exc.stderr.strip() or exc.returncode}") from None
    # scancel may exit 0 and still complain on stderr.
    if "Invalid job id" in result.stderr or "already completing" in result.stderr:
        return False
    return True
