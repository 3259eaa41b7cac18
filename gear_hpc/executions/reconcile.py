"""Bring executions up to date: one Slurm query, plus the records the jobs write.

Jobs never write the ledger; each writes status.json (temporary file, then
rename) as it moves through its phases. `refresh` asks Slurm once about all
of the user's jobs, reads those records, and folds both into the ledger by
the rules of `fold`. This module is on the path of `gear status` and
`gear ls`: it imports nothing it does not need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.errors import GearError, NotFound, SlurmError, is_disk_full
from ..base.facts import (
    CLOSED_STATUSES,
    JOB_ENDED,
    JOB_PENDING,
    JOB_PHASES,
    JOB_RUNNING,
    OPEN_STATUSES,
    QUEUED,
    SUBMITTING,
)
from ..ledger.db import Execution, Ledger, utc_now
from ..storage.disk import execution_usage, tree_size
from . import open_fold
from .open_fold import read_status_record as read_status_record  # also read by inspect, control, sharing

if TYPE_CHECKING:
    from ..slurm.jobs import SlurmJob

# Slurm's job phases (as slurm.SlurmJob.phase gives them).
PENDING, RUNNING, ENDED = JOB_PENDING, JOB_RUNNING, JOB_ENDED

# A job that Slurm says has ended gets this long to show its final record
# (a shared file system may show the file a little later than Slurm knows).
FINAL_RECORD_GRACE = timedelta(seconds=30)
# A row still "submitting" after this long belongs to a command that died.
SUBMITTING_EXPIRY = timedelta(minutes=5)

# "lost" needs confirmed evidence: squeue does not list the job AND scontrol
# says it knows no such job (Slurm keeps ended jobs for MinJobAge, 300 s by
# default), at two looks at least this far apart. The first look only notes
# the time in the execution's note (MISSING_NOTE); a squeue that misses a
# job once (a slow or restarting controller) decides nothing.
LOST_CONFIRM_AFTER = timedelta(seconds=30)
MISSING_NOTE = ("missing since {since}: squeue no longer lists job {job} and scontrol does not know it; "
                "gear calls it lost if Slurm still does not know it {seconds} s later")
_MISSING_PREFIX = open_fold.MISSING_PREFIX
# scontrol takes one job id; at most this many calls in one refresh (any others
# wait for the next one). squeue leaves out a job of ours only in a fault.
MAX_SCONTROL_CALLS = 5
# A final record that arrives after its execution was called lost corrects it,
# if it arrives within this long (the executions `gear status` shows: a day).
LOST_CORRECTION_WINDOW = timedelta(hours=24)


def get(ledger: Ledger, container: str, number: int) -> Execution:
    execution = ledger.get_execution(container, number)
    if execution is None:
        raise NotFound(f"no execution {container}/{number}")
    return execution


def discard(ledger: Ledger, exec_dir: Path, container: str, number: int) -> None:
    """Undo a submission that did not reach Slurm: no row, no directory."""
    import shutil

    shutil.rmtree(exec_dir, ignore_errors=True)
    ledger.delete_execution(container, number)
    container_dir = exec_dir.parent
    try:
        container_dir.rmdir()  # only if now empty
    except OSError:
        pass


# --- status: one Slurm query for all open executions, plus status records ---

@dataclass
class RefreshReport:
    slurm_error: str | None = None
    newly_closed: list[Execution] = field(default_factory=list)
    # execution id -> the status it has but that a full disk kept out of the
    # ledger (only with refresh(..., full_disk_ok=True): `gear delete` is the way out)
    unrecorded: dict[str, str] = field(default_factory=dict)
    # execution id -> the copy in progress (syncing, saving, periodic save)
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)


def refresh(ledger: Ledger, query: Callable[[], dict[str, SlurmJob]] | None = None,
            lookup: Callable[[str], SlurmJob | None] | None = None, full_disk_ok: bool = False) -> RefreshReport:
    """Bring every open execution of the user up to date, and correct recent "lost" ones.

    Costs one squeue, whatever the number of executions, and none when
    nothing is open; scontrol only for a job squeue did not list (`lookup`).
    Slurm is asked first and status records are read after, so a job missing
    from Slurm's answer has already written its last record. When Slurm does
    not answer, nothing changes: report.slurm_error says why.
    """
    report = RefreshReport()
    now = datetime.now(UTC)
    # Open executions, and those called lost within the window: a final record
    # that arrives late corrects them (a file read each, no Slurm call).
    rows = ledger.executions(statuses=OPEN_STATUSES, ended_since=_stamp(now - LOST_CORRECTION_WINDOW))
    open_executions = [e for e in rows if e.is_open]
    lost = [e for e in rows if e.status == "lost"]
    if not open_executions and not lost:
        return report
    jobs: dict[str, SlurmJob] = {}
    unknown: set[str] = set()
    if open_executions:
        if query is None:
            from ..slurm.jobs import query_jobs  # imported only when something is open

            query = query_jobs
        try:
            jobs = dict(query())
        except SlurmError as exc:
            # No answer is no evidence: no verdict, and no other change either.
            report.slurm_error = str(exc)
            return report
        unknown = _ask_scontrol(open_executions, jobs, lookup)
    now = datetime.now(UTC)
    for execution in open_executions + lost:
        record = read_status_record(execution.workdir)
        if execution.is_open:
            progress = open_fold.progress(record)
            if progress:
                report.progress[execution.id] = progress
            changes = fold(execution, record, jobs, now, unknown)
        else:
            changes = fold_lost(execution, record)
        if changes is None:
            continue
        if changes.get("_discard"):
            discard(ledger, Path(execution.workdir).parent, execution.container, execution.number)
            continue
        if changes.get("status") in CLOSED_STATUSES:
            # Sealed before the ledger says closed: an interrupted seal is finished
            # by the next refresh, which still sees the execution open.
            from .sealing import seal

            try:
                seal(Path(execution.workdir))
            except OSError:
                pass   # sealed again (and any error told) when it is continued or shared
            changes.update(size_bytes=tree_size(Path(execution.workdir)),
                           disk_bytes=execution_usage(Path(execution.workdir).parent).disk)
        try:
            ledger.update_execution(execution.container, execution.number, **changes)
        except Exception as exc:
            if not (full_disk_ok and is_disk_full(exc) and "status" in changes):
                raise
            report.unrecorded[execution.id] = changes["status"]
            continue
        updated = ledger.get_execution(execution.container, execution.number)
        if updated is not None and not updated.is_open:
            report.newly_closed.append(updated)
    if report.newly_closed:
        # Readable behind the container's gate, and listed for those it lets in (containers/sharing.py).
        from ..containers.sharing import after_closing

        after_closing(ledger, report.newly_closed)
    return report


def _ask_scontrol(open_executions: list[Execution], jobs: dict[str, SlurmJob],
                  lookup: Callable[[str], SlurmJob | None] | None) -> set[str]:
    """Ask scontrol about the jobs squeue did not list: add those it knows to `jobs`,
    return the ids it says it does not know (the evidence `fold` needs for "lost")."""
    missing = list(dict.fromkeys(e.slurm_job_id for e in open_executions
                                 if e.status != "submitting" and e.slurm_job_id and e.slurm_job_id not in jobs))
    for job_id in missing:
        # A task of a job array that squeue does not list by itself has its array's own record: squeue
        # lists an array whose pending tasks were cancelled as the bare ARRAY id (Slurm 24.11, seen here).
        array, is_task, _ = job_id.partition("_")
        if is_task and array in jobs:
            jobs[job_id] = replace(jobs[array], job_id=job_id)
    missing = [job_id for job_id in missing if job_id not in jobs]
    if not missing:
        return set()
    if lookup is None:
        from ..slurm.jobs import show_job

        lookup = show_job
    unknown = set()
    calls = 0
    array_unknown: dict[str, bool] = {}
    for job_id in missing:
        array, is_task, _ = job_id.partition("_")
        try:
            if is_task and array not in array_unknown:
                # One question for a whole array: if Slurm no longer knows it, it knows none of its tasks.
                if calls >= MAX_SCONTROL_CALLS:
                    break
                calls += 1
                array_unknown[array] = lookup(array) is None
            if is_task and array_unknown[array]:
                unknown.add(job_id)
                continue
            if calls >= MAX_SCONTROL_CALLS:
                break
            calls += 1
            job = lookup(job_id)
        except GearError:
            break  # scontrol did not answer: no verdict on these this time
        if job is None:
            unknown.add(job_id)
        else:
            jobs[job_id] = job
    return unknown


def _stamp(moment: datetime) -> str:
    """The ledger's form of a time (ledger.utc_now)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def missing_since(execution: Execution) -> datetime | None:
    """When a look first found the execution's job unknown to Slurm (its note says), if it did."""
    note = execution.note or ""
    if not execution.is_open or not note.startswith(_MISSING_PREFIX):
        return None
    return _parse_time(note[len(_MISSING_PREFIX):].split(": ", 1)[0])


def _parse_time(text: str | None) -> datetime | None:
    if not text or text in ("N/A", "Unknown", "None"):
        return None
    try:
        if text.endswith("Z"):
            return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").astimezone(UTC)  # Slurm prints local time
    except ValueError:
        return None


def fold(execution: Execution, record: dict[str, Any] | None, jobs: dict[str, SlurmJob] | None,
         now: datetime, unknown: set[str] | frozenset[str] = frozenset()) -> dict[str, Any] | None:
    """The ledger changes for one open execution, from its record and Slurm's view.

    `jobs`: what squeue listed, plus what scontrol knew of the jobs squeue
    left out; `unknown`: the job ids scontrol said it does not know. `jobs`
    is None when Slurm did not answer: then nothing changes at all.
    """
    if jobs is None:
        return None   # no answer is no evidence (a requeued job's old final record, a job called lost)
    changes: dict[str, Any] = {}
    if record and record.get("started_at"):
        changes["started_at"] = record["started_at"]

    if execution.status == "submitting":
        return _fold_submitting(execution, record, jobs, now)

    job = jobs.get(execution.slurm_job_id or "")
    since = missing_since(execution)
    if since is not None:
        changes["note"] = None   # the first look's mark: gone unless still missing (below)
    # A final record while Slurm still runs or queues the job belongs to an
    # earlier run of a requeued job, which runs again (or the job is just
    # exiting): wait. Unless it says completed and saved: that holds (`completed_for_good`).
    final_is_current = job is None or job.phase == ENDED or completed_for_good(record)
    if record and record.get("phase") == "final" and final_is_current:
        changes.update(status=record.get("status", "failed"), exit_code=record.get("exit_code"),
                       ended_at=record.get("at") or utc_now())
        if (job is not None and job.phase == PENDING) or record.get("not_rerun"):
            changes["note"] = (f"Slurm requeued job {execution.slurm_job_id} after its program had completed and its "
                               "working directory was saved; that result stands and is not run again")
        if not record.get("saved"):
            changes["note"] = record.get("note") or "the working directory was not saved completely"
        if changes["status"] == "terminated" and job is not None and job.state in ("TIMEOUT", "DEADLINE"):
            # Slurm checks for the warning signal about once a minute: a job can
            # reach its limit (TERM) before the warning (USR1) arrives.
            changes["status"] = "timeout"
        stopped = stop_note(record, changes["status"])
        if stopped:
            changes["note"] = stopped + (f"; {changes['note']}" if changes.get("note") else "")
        return _only_changes(execution, changes)

    phase = record.get("phase") if record else None
    if job is None:
        if execution.slurm_job_id not in unknown:
            # squeue left it out, but scontrol was not asked (or did not answer): no evidence.
            changes.pop("note", None)
            return _only_changes(execution, changes)
        if since is None or now - since < LOST_CONFIRM_AFTER:
            # The first look that finds it unknown (or one too soon after it): note when, decide later.
            changes["note"] = execution.note if since is not None else MISSING_NOTE.format(
                since=_stamp(now), job=execution.slurm_job_id, seconds=int(LOST_CONFIRM_AFTER.total_seconds()))
            return _only_changes(execution, changes)
        last = f" (its last status record said {phase!r})" if phase else " (it left no status record)"
        changes.update(
            status="lost", ended_at=_stamp(now),
            note=f"Slurm no longer knows job {execution.slurm_job_id} (squeue does not list it and scontrol does "
                 f"not know it, since {_stamp(since)}) and it wrote no final status record{last}; the working "
                 "directory holds whatever the program wrote before it stopped; a final record that arrives "
                 "later corrects this")
        return _only_changes(execution, changes)

    if job.phase == PENDING:
        changes["status"] = "queued"
        if phase:   # a job that wrote a record has run: Slurm requeued it
            changes["note"] = requeue_note(execution.slurm_job_id or "", job, record or {})
    elif job.phase == RUNNING:
        changes["status"] = phase if phase in JOB_PHASES else execution.status
        if changes["status"] in (QUEUED, SUBMITTING):
            changes["status"] = "syncing"
    else:
        status = {"CANCELLED": "terminated", "TIMEOUT": "timeout", "DEADLINE": "timeout"}.get(job.state, "failed")
        if not job.nodes and record is None:
            # It never started (no node, no record): no record will come, so no
            # grace to wait out. `gear stop` of a queued execution returns at once.
            changes.update(status=status, ended_at=utc_now(),
                           note=f"the job ended (Slurm state {job.state}) before it started; nothing ran")
            return _only_changes(execution, changes)
        ended = _parse_time(job.end_time)
        if ended is not None and now - ended < FINAL_RECORD_GRACE:
            changes["status"] = phase if phase in JOB_PHASES else execution.status
            return _only_changes(execution, changes)
        changes.update(
            status=status, ended_at=utc_now(),
            note=f"the job ended (Slurm state {job.state}) without a final status record"
                 + (f" during phase {phase!r}" if phase else "")
                 + "; the save may be incomplete")
    return _only_changes(execution, changes)


def completed_for_good(record: dict[str, Any] | None) -> bool:
    """The job's final record says its program completed and its working directory was saved.

    Such a record holds whatever Slurm says of the job: one Slurm keeps
    COMPLETING has ended, and a run Slurm starts again (it requeues every job
    of a node it marks down, finished or not) finds the record and ends
    without running anything (templates/lib/record.sh, `completed_before`).
    Any other final record may be an earlier run's of a job that runs again.
    """
    return (record is not None and record.get("phase") == "final" and record.get("status") == "completed"
            and record.get("exit_code") == 0 and record.get("saved") is True)


def requeue_note(job_id: str, job: SlurmJob, record: dict[str, Any]) -> str:
    """Why a job that has run is queued again, and what its next run starts from."""
    said = f"said {record.get('phase')!r}"
    if record.get("phase") == "final":
        said = f"said it ended {record.get('status')}" + ("" if record.get("saved") else ", not saved completely")
    when = f" ({record['at']})" if record.get("at") else ""
    waits = f", waiting: {job.reason}" if job.reason and job.reason != "None" else ""
    return (f"Slurm requeued job {job_id} ({job.state}{waits}); its earlier run's last status record{when} {said}; "
            "the next run starts from what that run saved (kept in runs/)")


_SIGNALS = {"TERM": 15, "KILL": 9}


def stop_note(record: dict[str, Any], status: str) -> str | None:
    """Who stopped an execution and how, from its final record's `stopped_by` and
    `signal`: "terminated by gear stop (SIGTERM); exit 143 is 128+15"."""
    by, signal = record.get("stopped_by"), record.get("signal")
    if not isinstance(by, str) or not isinstance(signal, str):
        return None
    if status == "timeout":
        by = "time limit"   # TERM at the limit before the warning came (fold)
    text = (f"stopped at its time limit (SIG{signal})" if by == "time limit"
            else f"terminated by {by} (SIG{signal})")
    code = record.get("exit_code")
    if signal in _SIGNALS and code == 128 + _SIGNALS[signal]:
        text += f"; exit {code} is 128+{_SIGNALS[signal]}"
    return text


def record_is_of_job(record: dict[str, Any], execution: Execution) -> bool:
    """The status record was written by the execution's own job. A task of a job array
    (executions/sweep.py) writes its own job id (SLURM_JOB_ID), while its row names it
    as squeue does (ARRAYJOB_TASK): that pair is not compared."""
    if "_" in (execution.slurm_job_id or ""):
        return True
    return str(record.get("slurm_job_id") or "") == (execution.slurm_job_id or "")


def fold_lost(execution: Execution, record: dict[str, Any] | None) -> dict[str, Any] | None:
    """A "lost" execution whose final record arrived after all: what really happened.

    Its directory may already be sealed (it was closed); it stays so.
    """
    if not record or record.get("phase") != "final":
        return None
    if record.get("slurm_job_id") and execution.slurm_job_id and not record_is_of_job(record, execution):
        return None   # not this job's record
    status = record.get("status", "failed")
    exit_code = record.get("exit_code")
    saved = ("the working directory was saved" if record.get("saved")
             else record.get("note") or "the working directory was not saved completely")
    changes: dict[str, Any] = {
        "status": status, "exit_code": exit_code, "ended_at": record.get("at") or execution.ended_at,
        "note": f"was marked lost at {execution.ended_at}; its final record arrived later: {status}"
                + ("" if exit_code is None else f", exit code {exit_code}") + f"; {saved}",
    }
    if record.get("started_at"):
        changes["started_at"] = record["started_at"]
    return _only_changes(execution, changes)


def _fold_submitting(execution: Execution, record: dict[str, Any] | None,
                     jobs: dict[str, SlurmJob] | None, now: datetime) -> dict[str, Any] | None:
    """A row whose command died between taking a number and recording the job."""
    if jobs is None:
        return None
    sweep_token, is_task, task = execution.token.partition(".")
    for job in jobs.values():
        if is_task and job.comment.endswith(f":{sweep_token}"):
            # A task of a sweep's job array (executions/sweep.py): the array's comment, the row's task.
            return {"status": "queued", "slurm_job_id": f"{job.job_id.partition('_')[0]}_{task}",
                    "submitted_at": utc_now()}
        if job.comment.endswith(f":{execution.token}"):
            return {"status": "queued", "slurm_job_id": job.job_id, "submitted_at": utc_now()}
    # (A task's record names its own job id, not the array's ARRAY_TASK: only squeue adopts it.)
    if not is_task and record is not None and record.get("slurm_job_id"):
        return {"status": "queued", "slurm_job_id": record["slurm_job_id"], "submitted_at": utc_now()}
    created = _parse_time(execution.created_at)
    if created is not None and now - created > SUBMITTING_EXPIRY:
        return {"_discard": True}
    return None


def _only_changes(execution: Execution, changes: dict[str, Any]) -> dict[str, Any] | None:
    real = {k: v for k, v in changes.items() if getattr(execution, k, object()) != v}
    return real or None


def log_path(execution: Execution) -> Path:
    return Path(execution.workdir).parent / "output.log"
