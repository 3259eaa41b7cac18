"""Bring executions up to date: one Slurm query, plus the records the jobs write.

Jobs never write the ledger; each writes status.json (temporary file, then
rename) as it moves through its phases. `refresh` asks Slurm once about all
of the user's jobs, reads those records, and folds both into the ledger by
the rules of `fold`. This module is on the path of `gear status` and
`gear ls`: it imports nothing it does not need.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .errors import NotFound, SlurmError
from .ledger import CLOSED_STATUSES, Execution, Ledger, utc_now
from .storage import tree_size

if TYPE_CHECKING:
    from .slurm import SlurmJob

# Slurm's job phases (as slurm.SlurmJob.phase gives them).
PENDING, RUNNING, ENDED = "pending", "running", "ended"

# A job that Slurm says has ended gets this long to show its final record
# (a shared file system may show the file a little later than Slurm knows).
FINAL_RECORD_GRACE = timedelta(seconds=30)
# A row still "submitting" after this long belongs to a command that died.
SUBMITTING_EXPIRY = timedelta(minutes=5)


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

def read_status_record(workdir: str) -> dict[str, Any] | None:
    path = Path(workdir).parent / "status.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@dataclass
class RefreshReport:
    slurm_error: str | None = None
    newly_closed: list[Execution] = field(default_factory=list)
    # execution id -> the copy in progress (syncing, saving, periodic save)
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)


def _progress(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """Amount done and speed of the copy a status record reports, if any."""
    if not record or record.get("phase") == "final" or not isinstance(record.get("progress"), dict):
        return None
    done = dict(record["progress"])
    seconds = max(float(done.get("seconds") or 0), 1.0)
    done["phase"] = record.get("phase")
    done["mb_per_s"] = round((done.get("bytes") or 0) / seconds / 1e6, 1)
    done["files_per_s"] = round((done.get("files") or 0) / seconds, 1)
    return done


def refresh(ledger: Ledger, query: Callable[[], dict[str, SlurmJob]] | None = None) -> RefreshReport:
    """Bring every open execution of the user up to date.

    Costs one Slurm query, whatever the number of executions, and none when
    nothing is open. Slurm is asked first and status records are read after,
    so a job missing from Slurm's answer has already written its last record.
    """
    report = RefreshReport()
    open_executions = ledger.open_executions()
    if not open_executions:
        return report
    if query is None:
        from .slurm import query_jobs as query  # imported only when something is open
    try:
        jobs: dict[str, SlurmJob] | None = query()
    except SlurmError as exc:
        jobs = None
        report.slurm_error = str(exc)
    now = datetime.now(timezone.utc)
    for execution in open_executions:
        record = read_status_record(execution.workdir)
        progress = _progress(record)
        if progress:
            report.progress[execution.id] = progress
        changes = fold(execution, record, jobs, now)
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
            changes["size_bytes"] = tree_size(Path(execution.workdir))
        ledger.update_execution(execution.container, execution.number, **changes)
        updated = ledger.get_execution(execution.container, execution.number)
        if updated is not None and not updated.is_open:
            report.newly_closed.append(updated)
    return report


def _parse_time(text: str | None) -> datetime | None:
    if not text or text in ("N/A", "Unknown", "None"):
        return None
    try:
        if text.endswith("Z"):
            return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").astimezone(timezone.utc)  # Slurm prints local time
    except ValueError:
        return None


def fold(execution: Execution, record: dict[str, Any] | None, jobs: dict[str, SlurmJob] | None,
         now: datetime) -> dict[str, Any] | None:
    """The ledger changes for one open execution, from its record and Slurm's view.

    `jobs` is None when Slurm could not be asked: then only the status record
    counts, and nothing is declared lost.
    """
    changes: dict[str, Any] = {}
    if record and record.get("started_at"):
        changes["started_at"] = record["started_at"]

    if execution.status == "submitting":
        return _fold_submitting(execution, record, jobs, now)

    job = jobs.get(execution.slurm_job_id or "") if jobs is not None else None
    # A final record while Slurm still runs or queues the job belongs to an
    # earlier run of a requeued job (or the job is just exiting): wait.
    final_is_current = job is None or job.phase == ENDED
    if record and record.get("phase") == "final" and final_is_current:
        changes.update(status=record.get("status", "failed"), exit_code=record.get("exit_code"),
                       ended_at=record.get("at") or utc_now())
        if not record.get("saved"):
            changes["note"] = record.get("note") or "the working directory was not saved completely"
        if changes["status"] == "terminated" and job is not None and job.state in ("TIMEOUT", "DEADLINE"):
            # Slurm checks for the warning signal about once a minute: a job can
            # reach its limit (TERM) before the warning (USR1) arrives.
            changes["status"] = "timeout"
        return _only_changes(execution, changes)

    phase = record.get("phase") if record else None
    if jobs is None:
        if phase in ("syncing", "running", "saving"):
            changes["status"] = phase
        return _only_changes(execution, changes)

    if job is None:
        last = f" (its last status record said {phase!r})" if phase else " (it left no status record)"
        changes.update(
            status="lost", ended_at=utc_now(),
            note=f"Slurm no longer knows job {execution.slurm_job_id} and it wrote no final status record{last}; "
                 "the working directory holds whatever the program wrote before it stopped")
        return _only_changes(execution, changes)

    if job.phase == PENDING:
        changes["status"] = "queued"
    elif job.phase == RUNNING:
        changes["status"] = phase if phase in ("syncing", "running", "saving") else execution.status
        if changes["status"] in ("queued", "submitting"):
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
            changes["status"] = phase if phase in ("syncing", "running", "saving") else execution.status
            return _only_changes(execution, changes)
        changes.update(
            status=status, ended_at=utc_now(),
            note=f"the job ended (Slurm state {job.state}) without a final status record"
                 + (f" during phase {phase!r}" if phase else "")
                 + "; the save may be incomplete")
    return _only_changes(execution, changes)


def _fold_submitting(execution: Execution, record: dict[str, Any] | None,
                     jobs: dict[str, SlurmJob] | None, now: datetime) -> dict[str, Any] | None:
    """A row whose command died between taking a number and recording the job."""
    if jobs is None:
        return None
    for job in jobs.values():
        if job.comment.endswith(f":{execution.token}"):
            return {"status": "queued", "slurm_job_id": job.job_id, "submitted_at": utc_now()}
    if record is not None and record.get("slurm_job_id"):
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
