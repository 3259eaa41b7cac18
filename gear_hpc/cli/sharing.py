"""`gear share` and `gear data share`: who besides you may read a container or a dataset."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from .group import json_option, load_context, open_ledger
from .output import print_json

F = TypeVar("F", bound=Callable[..., object])


def visibility_options(func: F) -> F:
    func = click.option("--private", "visibility", flag_value="private",
                        help="Only you (the default for everything you make).")(func)
    func = click.option("--group", "group", metavar="GROUP",
                        help="Members of this Unix group of yours (see `id`) may read it.")(func)
    func = click.option("--public", "visibility", flag_value="public",
                        help="Every user of the cluster may read it.")(func)
    return func


def apply_share(kind: str, name: str, visibility: str | None, group: str | None, as_json: bool) -> None:
    from ..base.errors import UsageError
    from ..base.names import check_name
    from ..containers import sharing

    if group is not None and visibility is not None:
        raise UsageError(f"choose one of --public, --group GROUP and --private (got --{visibility} and --group)")
    if group is None and visibility is None:
        raise UsageError("say who may read it: --public, --group GROUP or --private")
    chosen = "group" if group is not None else visibility
    assert chosen is not None
    check_name(name, f"{kind} name")
    _, storage = load_context()
    with open_ledger(storage) as ledger:
        sharing.share(ledger, kind, name, chosen, group)
    if as_json:
        print_json({"name": name, "kind": kind, "visibility": chosen, "group": group})
        return
    what = {"public": "every user of the cluster", "private": "only you"}.get(chosen, f"members of group {group}")
    more = " (its closed executions: records, logs and working directories)" if kind == "container" and \
        chosen != "private" else ""
    click.echo(f"gear: {kind} {name} is {chosen}{f' to {group}' if group else ''}: {what} may read it{more}", err=True)


@click.command()
@click.argument("container")
@visibility_options
@json_option
def share(container: str, visibility: str | None, group: str | None, as_json: bool) -> None:
    """Choose who may read CONTAINER: --public, --group GROUP or --private.

    Others see a shared container's closed executions only (record, log and
    working directory, read-only), never one still queued or running, and
    never your ledger. Going private takes access away at once, except from
    an execution of theirs already running with it bound (docs/cli.md).

    \b
    Examples:
      gear share mnist-train --public
      gear share mnist-train --group vision-lab
      gear share mnist-train --private
    """
    apply_share("container", container, visibility, group, as_json)
