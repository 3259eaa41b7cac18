"""`gear metrics C/N`: the metrics an execution's program logged (docs/tuning.md)."""

from __future__ import annotations

import click

from .group import json_option, load_context, open_ledger
from .output import echo, print_json, table, warn


@click.command()
@click.argument("execution_id", metavar="CONTAINER/N")
@click.option("--last", is_flag=True, help="Only the last value of each metric.")
@json_option
def metrics(execution_id: str, last: bool, as_json: bool) -> None:
    """Print the metrics CONTAINER/N logged, in the order it logged them.

    A program logs them with `from gear_metrics import log_metric;
    log_metric("acc", 0.91, step=3)`, with openbayestool.log_metric, or by
    appending JSON lines to /hyperai/home/.gear/metrics.jsonl.

    \b
    Examples:
      gear metrics mnist/3
      gear metrics mnist/3 --last --json
    """
    from datetime import UTC, datetime

    from ..base.names import parse_execution_id
    from ..executions import reconcile
    from ..tuning.metrics import read

    target = parse_execution_id(execution_id)
    _, storage = load_context()
    with open_ledger(storage) as ledger:
        execution = reconcile.get(ledger, *target)
    found = read(execution.workdir)
    if found.skipped:
        warn(f"{found.skipped} line(s) of {execution.id}'s metrics file were not metrics and were skipped")
    if as_json:
        print_json(found.last() if last else [p.to_json() for p in found.points])
        return
    if not found.points:
        echo(f"{execution.id} has logged no metrics" + (" yet" if execution.is_open else ""), err=True)
        return
    if last:
        table(["METRIC", "LAST"], [[name, f"{value:.6g}"] for name, value in found.last().items()])
        return

    def when(seconds: float | None) -> str:
        return "" if seconds is None else datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    table(["METRIC", "STEP", "VALUE", "TIME"],
          [[p.name, "" if p.step is None else p.step, f"{p.value:.6g}", when(p.time)] for p in found.points])
