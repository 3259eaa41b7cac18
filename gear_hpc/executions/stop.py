"""`gear stop C/N`: cancel the job, and wait until its final record says what was saved."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..base.errors import GearError
from ..ledger.db import Execution, Ledger, utc_now
from ..slurm import jobs as slurm
from .reconcile import get, refresh

# In an execution's directory: gear stop asked for this stop (the job reads it).
STOP_MARKER = "stop_request"


@dataclass
class StopResult:
    execution: Execution
    already_closed: bool
    signalled: bool


def stop(ledger: Ledger, container: str, number: int, now: bool = False, wait_seconds: float = 60.0,
         poll: float = 1.0) -> StopResult:
    """Cancel the job; unless `now`, wait until its final record says what was saved."""
    refresh(ledger)
    execution = get(ledger, container, number)
    if not execution.is_open:
        return StopResult(execution, already_closed=True, signalled=False)
    if not execution.slurm_job_id:
        raise GearError(f"{execution.id} is still being submitted; try again in a moment")
    # Plain scancel: TERM reaches the batch shell, whose trap stops the program
    # and saves; Slurm sends KILL only after KillWait. The marker, written
    # first, tells the job it was gear stop, not scancel or Slurm (its final
    # record says who stopped it).
    marker = Path(execution.workdir).parent / STOP_MARKER
    try:
        marker.write_text(f"gear stop {utc_now()}\n")
    except OSError:
        pass   # the stop matters more than saying who asked for it
    try:
        signalled = slurm.cancel(execution.slurm_job_id)
    except BaseException:
        marker.unlink(missing_ok=True)   # no stop was asked of Slurm: a later scancel is not gear stop's
        raise
    if not now:
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            refresh(ledger)
            execution = get(ledger, container, number)
            if not execution.is_open:
                break
            time.sleep(poll)
    return StopResult(get(ledger, container, number), already_closed=False, signalled=signalled)
