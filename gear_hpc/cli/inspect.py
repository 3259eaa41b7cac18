"""Commands that look at executions: status, ls, history, show, logs, download."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .group import json_option, load_context, open_ledger
from .listing import history_text, ls_text, recent_since, shared_history, shared_ls_text, status_text
from .output import echo, human_size, print_json, warn

if TYPE_CHECKING:
    from ..executions.reconcile import RefreshReport
    from ..ledger.db import Execution


def _refreshed_ledger(with_report: bool = False) -> Any:
    """The ledger, brought up to date. With `with_report`, the caller tells a Slurm error."""
    from ..executions import reconcile

    _, storage = load_context()
    ledger = open_ledger(storage)
    report = reconcile.refresh(ledger, query=_answer_already_given())
    if report.slurm_error and not with_report:
        warn(f"{report.slurm_error}; statuses are as last recorded (nothing was changed)")
    return (ledger, report) if with_report else ledger


def _answer_already_given() -> Any:
    """squeue's answer, if the fast path asked Slurm before it declined (fastpath.py): not asked twice."""
    from . import fastpath

    answer, fastpath.squeue_answer = fastpath.squeue_answer, None
    if answer is None:
        return None
    from ..slurm.jobs import jobs_from

    return lambda: jobs_from(answer)


def _fail_if_slurm_did_not_answer(report: RefreshReport) -> None:
    """`gear status`/`gear ls` print the ledger as it is, then fail: a status Slurm could not confirm is no answer."""
    if report.slurm_error:
        from ..base.errors import SlurmError

        raise SlurmError(f"Slurm did not answer ({report.slurm_error}); nothing was changed, and the statuses "
                         "shown are as last recorded")


@click.command()
@click.argument("execution_id", metavar="[CONTAINER/N]", required=False)
@json_option
def status(execution_id: str | None, as_json: bool) -> None:
    """Show the status of your open and recently ended executions, or of one.

    Asks Slurm once for all of your jobs, whatever their number.

    \b
    Examples:
      gear status
      gear status mnist-train/3 --json
    """
    from ..base.facts import OPEN_STATUSES
    from ..base.names import parse_execution_id
    from ..executions import reconcile

    target = parse_execution_id(execution_id) if execution_id else None
    ledger, report = _refreshed_ledger(with_report=True)
    with ledger:
        if target:
            items = [reconcile.get(ledger, *target)]
        else:
            items = ledger.executions(statuses=OPEN_STATUSES, ended_since=recent_since())

    def as_json_with_progress(e: Execution) -> dict[str, Any]:
        data = e.to_json()
        data["progress"] = report.progress.get(e.id) if e.is_open else None
        return data

    data = [as_json_with_progress(e) for e in items]
    if as_json and target:
        print_json(data[0])
        _fail_if_slurm_did_not_answer(report)
        return
    # The fast path (fastpath.py) prints `gear status` [--json] through the same status_text.
    echo(status_text(data, as_json))
    _fail_if_slurm_did_not_answer(report)


@click.command(name="ls")
@click.argument("owner", metavar="[USER/]", required=False)
@json_option
def ls(owner: str | None, as_json: bool) -> None:
    """List your containers, or what USER shares with you (their containers and datasets).

    \b
    Examples:
      gear ls
      gear ls alice/
    """
    if owner is not None:
        _ls_shared(owner, as_json)
        return
    ledger, report = _refreshed_ledger(with_report=True)
    with ledger:
        summaries = ledger.container_summaries()
    # The fast path (fastpath.py) prints `gear ls` [--json] through the same ls_text.
    echo(ls_text(summaries, as_json))
    _fail_if_slurm_did_not_answer(report)


def _ls_shared(owner: str, as_json: bool) -> None:
    """`gear ls alice/`: what alice shares with you, from her indexes (containers/shared_view.py)."""
    from ..base.names import check_user
    from ..containers import shared_view

    _, storage = load_context()
    name = check_user(owner[:-1] if owner.endswith("/") else owner)
    # The fast path (fastpath.py) prints `gear ls USER/` [--json] through the same shared_ls_text.
    echo(shared_ls_text(name, shared_view.listing(str(storage.storage_root), name), as_json))


@click.command()
@click.argument("container", metavar="[USER/]CONTAINER")
@json_option
def history(container: str, as_json: bool) -> None:
    """List the executions of CONTAINER, oldest first, with the one each continued.

    USER/CONTAINER lists the closed executions of a container USER shares with you.

    \b
    Examples:
      gear history mnist-train
      gear history alice/mnist-train
    """
    from ..base.errors import NotFound
    from ..base.names import parse_shared_id

    owner, container, _ = parse_shared_id(container, with_number=False)
    shared = _others(owner)
    if shared is not None:
        from ..containers import shared_view

        # The fast path (fastpath.py) prints this through the same shared_history and history_text.
        data = shared_history(owner or "", shared_view.history(shared, owner or "", container))
    else:
        with _refreshed_ledger() as ledger:
            if container not in ledger.container_names():
                raise NotFound(f"no container {container!r}")
            data = [e.to_json() for e in ledger.executions(container=container)]
    # The lineage: which execution each one continued (gear continue).
    echo(history_text(data, as_json))


def _others(owner: str | None) -> str | None:
    """The storage root when `owner` is another user (their shared things are read), else None (yours)."""
    if owner is None:
        return None
    _, storage = load_context()
    return None if owner == storage.user else str(storage.storage_root)


def _shared_execution(owner: str, container: str, number: int) -> dict[str, Any] | None:
    """Another user's shared closed execution (its record from their index), or None if `owner` is you."""
    root = _others(owner)
    if root is None:
        return None
    from ..containers import shared_view

    return shared_view.execution(root, owner, container, number)


@click.command()
@click.argument("execution_id", metavar="[USER/]CONTAINER/N")
@json_option
def show(execution_id: str, as_json: bool) -> None:
    """Show everything recorded about one execution.

    \b
    Example:
      gear show mnist-train/3
    """
    from ..base.names import parse_shared_id
    from ..executions import reconcile

    owner, container, number = parse_shared_id(execution_id, with_number=True)
    assert number is not None
    shared = _shared_execution(owner, container, number) if owner else None
    if shared is not None:
        data = shared
    else:
        with _refreshed_ledger() as ledger:
            execution = reconcile.get(ledger, container, number)
        data = execution.to_json()
        data.update(_stopped(execution))
    from ..tuning.metrics import read as read_metrics

    data["metrics"] = read_metrics(data["workdir"]).last()   # the last value of each (gear metrics: all)
    if as_json:
        print_json(data)
        return
    import shlex

    for key, value in data.items():
        if key == "command":
            value = shlex.join(value)
        elif key in ("size_bytes", "disk_bytes") and value is not None:
            value = f"{value} ({human_size(value)})"
        elif key == "metrics":
            value = "  ".join(f"{name}={number:.6g}" for name, number in value.items())
        elif key in ("params", "bindings"):
            import json

            value = json.dumps(value)
        click.echo(f"{key + ':':<14} {'' if value is None else value}")


def _stopped(execution: Execution) -> dict[str, Any]:
    """Who stopped a closed execution and the signal its program got, from its final
    record (the ledger's note says it in words); None for an execution not stopped."""
    from ..executions import reconcile

    record = reconcile.read_status_record(execution.workdir) if not execution.is_open else None
    if not record or record.get("phase") != "final" or not record.get("stopped_by") \
            or not reconcile.record_is_of_job(record, execution):
        return {"stopped_by": None, "signal": None}
    by = "time limit" if execution.status == "timeout" else record.get("stopped_by")
    return {"stopped_by": by, "signal": record.get("signal")}


@click.command()
@click.argument("execution_id", metavar="[USER/]CONTAINER/N")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the execution ends.")
def logs(execution_id: str, follow: bool) -> None:
    """Print the output (stdout and stderr) of an execution.

    \b
    Examples:
      gear logs mnist-train/3
      gear logs mnist-train/3 -f
    """
    from ..base.names import parse_shared_id
    from ..executions import reconcile

    owner, container, number = parse_shared_id(execution_id, with_number=True)
    assert number is not None
    shared = _shared_execution(owner, container, number) if owner else None
    if shared is not None:
        if follow:
            from ..base.errors import UsageError

            raise UsageError(f"{shared['id']} is closed (only closed executions are shared): its log is complete")
        _copy_out(Path(shared["workdir"]).parent / "output.log", shared["id"])
        return
    target = (container, number)
    _, storage = load_context()
    with open_ledger(storage) as ledger:
        execution = reconcile.get(ledger, *target)
        if follow:
            from .follow import follow as follow_execution

            follow_execution(ledger, *target, show_status=False)
            return
    path = reconcile.log_path(execution)
    if not path.exists():
        if execution.is_open:
            click.echo(f"gear: {execution.id} has no output yet (status: {execution.status})", err=True)
        else:   # it never started (cancelled while queued), or Slurm could not write the log
            click.echo(f"gear: {execution.id} left no output in gear's log (status: {execution.status})", err=True)
        return
    _copy_out(path, execution.id)


def _copy_out(path: Path, execution_id: str) -> None:
    import shutil
    import sys

    try:
        with path.open("rb") as handle:
            shutil.copyfileobj(handle, sys.stdout.buffer)
    except FileNotFoundError:
        click.echo(f"gear: {execution_id} has no output", err=True)


@click.command()
@click.argument("execution_id", metavar="[USER/]CONTAINER/N")
@click.option("-t", "--target", type=click.Path(path_type=Path, readable=False), default=None,
              help="Directory to copy into (a name starting with '-' is a directory too). Default: ./CONTAINER-N")
@click.option("--from", "from_path", metavar="SUBPATH", help="Only this file or directory of the working directory.")
def download(execution_id: str, target: Path | None, from_path: str | None) -> None:
    """Copy the saved working directory of an execution out.

    \b
    Examples:
      gear download mnist-train/3 -t results
      gear download mnist-train/3 --from checkpoints/best.pt
    """
    from ..base.errors import GearError
    from ..base.names import parse_shared_id
    from ..data import paths, staging
    from ..executions import reconcile

    owner, container, number = parse_shared_id(execution_id, with_number=True)
    assert number is not None
    shared = _shared_execution(owner, container, number) if owner else None
    if shared is not None:
        the_id, home = shared["id"], Path(shared["workdir"])
    else:
        with _refreshed_ledger() as ledger:
            execution = reconcile.get(ledger, container, number)
        if execution.is_open:
            warn(f"{execution.id} is still {execution.status}; copying what its working directory holds now")
        the_id, home = execution.id, Path(execution.workdir)
    if not home.is_dir():
        raise GearError(f"{the_id} has no working directory at {home}")
    source, _ = paths.inside(home, from_path, f"the working directory of {the_id}")
    destination = target or Path(f"{container}-{number}")
    staging.download(source, destination)
    click.echo(f"gear: copied {the_id}:{from_path or '/'} to {destination}", err=True)
