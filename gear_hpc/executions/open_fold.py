"""Open executions that one look at Slurm and their status records leaves as they are: the fast path's half of `fold`.

`gear status` and `gear ls` bring every open execution up to date first
(reconcile.refresh). Most of the time that changes nothing: a queued job is
still pending, a running one still in the phase its record last said. The
fast path (cli/fastpath.py) prints without click and without the ledger's
dataclasses exactly then, and this module says when: `unchanged` is true
only where reconcile.fold would return no change (a test holds the two
together over every combination). Anything else — a job that ended, a final
record, a requeue, a job squeue left out — goes to the click path, which
records it.

A leaf: os, base/facts.py and base/quick_json.py, nothing that costs an
import.
"""

from __future__ import annotations

import os

from ..base.facts import JOB_PENDING, JOB_PHASES, JOB_RUNNING, QUEUED, SUBMITTING
from ..base.quick_json import loads

# Annotations only: importing typing would cost the fast path (cli/fastpath.py) 2 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

STATUS_RECORD = "status.json"   # beside the working directory, written by the job (templates/lib/record.sh)
MISSING_PREFIX = "missing since "  # reconcile.MISSING_NOTE: a look found the job unknown to Slurm


def read_status_record(workdir: str) -> dict[str, Any] | None:
    """The last status record the execution's job wrote, or None (none yet, or not readable as one)."""
    path = os.path.join(os.path.dirname(workdir), STATUS_RECORD)
    if not os.access(path, os.F_OK):
        return None   # a queued job's, usually: asked without raising, 1.5 ms for 1,000 rather than 5
    try:
        with open(path, encoding="utf-8") as handle:
            record = loads(handle.read())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def progress(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """Amount done and speed of the copy a status record reports, if any."""
    if not record or record.get("phase") == "final" or not isinstance(record.get("progress"), dict):
        return None
    done = dict(record["progress"])
    seconds = max(float(done.get("seconds") or 0), 1.0)
    done["phase"] = record.get("phase")
    # Many small files move few bytes: at 0.04 MB/s one decimal would read 0.0
    # while thousands of files a second arrive (listing.py prints KB/s then).
    done["mb_per_s"] = round((done.get("bytes") or 0) / seconds / 1e6, 3)
    done["files_per_s"] = round((done.get("files") or 0) / seconds, 1)
    return done


def unchanged(status: str, note: str | None, started_at: str | None, job_phase: str | None,
              record: dict[str, Any] | None) -> bool:
    """True if reconcile.fold certainly leaves this open execution as the ledger has it.

    `status`, `note`, `started_at`: the ledger's; `job_phase`: what squeue
    says of its job (queue.phase), None if squeue did not list it; `record`:
    its status record. False means "not certain", never "changed".
    """
    if status == SUBMITTING or job_phase is None or (note or "").startswith(MISSING_PREFIX):
        return False   # adopting a job, asking scontrol, a look's mark: the click path's work
    phase = record.get("phase") if record else None
    if record and record.get("started_at") and record["started_at"] != started_at:
        return False
    if job_phase == JOB_PENDING:
        # A record means the job has run and was requeued (a note to write), a final one perhaps an end.
        return phase is None and status == QUEUED
    if job_phase == JOB_RUNNING:
        if phase == "final":
            return False   # the job is ending (or ended for good): fold decides
        expected = phase if phase in JOB_PHASES else status
        if expected in (QUEUED, SUBMITTING):
            expected = "syncing"
        return expected == status
    return False   # the job has ended: a final record or a verdict to record


def corrects_lost(record: dict[str, Any] | None) -> bool:
    """A status record that may correct an execution called lost (reconcile.fold_lost): a final one."""
    return record is not None and record.get("phase") == "final"
