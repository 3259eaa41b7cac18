"""`gear stop`: terminate an execution."""

from __future__ import annotations

import click

from .group import json_option, load_context, open_ledger
from .output import print_json


@click.command()
@click.argument("execution_id", metavar="CONTAINER/N")
@click.option("--now", is_flag=True, help="Cancel at once without waiting for the save (data may be missing).")
@json_option
def stop(execution_id: str, now: bool, as_json: bool) -> None:
    """Stop an execution; its working directory is kept.

    Without --now, waits until the job has written its final record and says
    whether the working directory was saved.

    \b
    Examples:
      gear stop mnist-train/3
      gear stop mnist-train/3 --now
    """
    from ..base.names import parse_execution_id
    from ..executions import reconcile, stop as stopping

    target = parse_execution_id(execution_id)
    _, storage = load_context()
    with open_ledger(storage) as ledger:
        result = stopping.stop(ledger, *target, now=now)
    execution = result.execution
    if as_json:
        print_json(execution.to_json())
    elif result.already_closed:
        click.echo(f"{execution.id} has already ended ({execution.status}); nothing to stop")
    elif not result.signalled:
        click.echo(f"{execution.id} is already stopping (Slurm job {execution.slurm_job_id} is completing); "
                   "see `gear status` in a moment")
    elif now:
        click.echo(f"{execution.id}: cancelled Slurm job {execution.slurm_job_id} at once; "
                   "files the program had not written yet may be missing")
    elif execution.is_open:
        click.echo(f"{execution.id}: stop requested; the job is still {execution.status} "
                   "(see `gear status` in a moment)")
    else:
        # The note says who stopped it (and what was not saved); the final record whether it was saved.
        record = reconcile.read_status_record(execution.workdir) or {}
        saved = "the working directory was saved" if record.get("saved") else ""
        click.echo(f"{execution.id} {execution.status}: "
                   + "; ".join(part for part in (execution.note, saved) if part))
