"""`gear delete`: delete a container and all its storage, after saying what goes."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from .group import json_option, load_context, open_ledger
from .output import human_size, print_json

if TYPE_CHECKING:
    from ..containers.plan import DeletePlan


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def _plan_lines(plan: DeletePlan) -> list[str]:
    """What will go, for a person: every execution with its status and size, then the totals.

    Sizes are what the disk holds (blocks, hard links once: what `du -s` and
    `df` show); an execution's SIZE leaves out what an earlier one holds.
    """
    lines = []
    if plan.executions:
        rows = [["EXECUTION", "STATUS", "ENDED", "SIZE"]]
        rows += [[e.id, e.status, e.ended_at or "",
                  "missing" if e.disk_bytes is None else human_size(e.disk_bytes)] for e in plan.executions]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    if plan.in_ledger:
        lines.append(f"{len(plan.executions)} execution(s), {human_size(plan.disk_bytes)} on disk "
                     f"({human_size(plan.size_bytes)} of file contents) in {plan.path}; "
                     f"deleting frees {human_size(plan.frees_disk_bytes)}")
        if plan.shared_disk_bytes:
            lines.append(f"({human_size(plan.shared_disk_bytes)} of it are files also linked from outside the "
                         "container: those links keep them)")
        if plan.unreadable:
            lines.append(f"({len(plan.unreadable)} directories have no read permission, so their files are "
                         f"not counted: {', '.join(plan.unreadable[:3])}{' …' if len(plan.unreadable) > 3 else ''})")
    for item in plan.leftovers:
        lines.append(f"also removes {human_size(item.disk_bytes)} left by an interrupted delete of "
                     f"{item.container}")
    return lines


@click.command()
@click.argument("container")
@click.option("--yes", is_flag=True, help="Delete without asking for the container's name (for scripts).")
@json_option
def delete(container: str, yes: bool, as_json: bool) -> None:
    """Delete CONTAINER: every execution, its record, logs and working directory.

    This cannot be undone. gear lists what will go and how much storage it
    frees, then asks you to type the container's name (or pass --yes).
    Refused while an execution of CONTAINER is queued or running. Dataset
    versions made with `gear data from-output` are not part of the
    container and stay.

    \b
    Examples:
      gear delete mnist-train
      gear delete mnist-train --yes --json
    """
    from ..base.errors import GearError, UsageError
    from ..containers import delete as containers, plan as plans

    _, storage = load_context()
    with open_ledger(storage) as ledger:
        plan = plans.plan_delete(ledger, storage, container)
        if not as_json or not yes:
            click.echo(f"gear delete {container} removes, for good:", err=as_json)
            for line in _plan_lines(plan):
                click.echo(line, err=as_json)
        if not yes:
            if not _stdin_is_terminal():
                raise UsageError(f"gear delete asks you to type the container's name, but standard input is not "
                                 f"a terminal; pass --yes to delete {container} without asking. Nothing was deleted")
            typed = click.prompt(f"Type {container} to delete it (anything else cancels)", default="",
                                 show_default=False, err=True)
            if typed.strip() != container:
                raise GearError(f"you typed {typed.strip()!r}, not {container!r}; nothing was deleted")
        result = containers.delete(ledger, storage, plan)
    if as_json:
        print_json(result.to_json())
        return
    if result.link_not_followed:
        click.echo(f"gear: {plan.path} had been replaced by a symbolic link; the link was removed, "
                   "its target was not touched", err=True)
    what = f"{len(plan.executions)} execution(s)" if plan.in_ledger else "what an interrupted delete left"
    click.echo(f"deleted {container}: {what}, freed {human_size(result.freed_disk_bytes)}")
