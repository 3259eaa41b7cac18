"""Follow one execution: its status changes on stderr, its log on stdout."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ..ledger.db import Execution, Ledger

# Start quick (a job on an idle cluster starts in a second or two), then back
# off: squeue's man page warns against calling it in tight loops.
FIRST_POLL, MAX_POLL = 1.0, 5.0


def _print_new(path: Path, position: int) -> int:
    try:
        with path.open("rb") as handle:
            handle.seek(position)
            data = handle.read()
    except FileNotFoundError:
        return position
    if data:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return position + len(data)


def follow(ledger: Ledger, container: str, number: int, show_status: bool = True,
           show_log: bool = True) -> Execution:
    from ..executions import reconcile
    from .output import warn

    poll, last_status, position, warned = FIRST_POLL, None, 0, False
    log = None
    while True:
        report = reconcile.refresh(ledger)
        if report.slurm_error and not warned:
            warn(f"{report.slurm_error}; showing the job's own status records only")
            warned = True
        execution = reconcile.get(ledger, container, number)
        log = log or reconcile.log_path(execution)
        if show_status and execution.status != last_status:
            click.echo(f"gear: {execution.id} is {execution.status}", err=True)
            last_status = execution.status
        if show_log:
            position = _print_new(log, position)
        if not execution.is_open:
            if show_log:
                _print_new(log, position)
            return execution
        time.sleep(poll)
        poll = min(MAX_POLL, poll * 1.5)
