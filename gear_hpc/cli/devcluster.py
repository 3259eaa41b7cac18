"""`gear devcluster`: a real Slurm + Apptainer cluster on one machine to try gear on."""

from __future__ import annotations

import os

import click


def _script(*args: str) -> None:
    from ..base.errors import GearError
    from ..base.runner import run_attached
    from ..devcluster import SCRIPT

    if os.geteuid() != 0:
        raise GearError("gear devcluster must run as root (it installs packages and starts Slurm)")
    code = run_attached(["bash", str(SCRIPT), *args])
    if code:
        raise click.exceptions.Exit(code)


@click.group()
def devcluster() -> None:
    """A local cluster on this machine: a login node, a controller and compute nodes with Slurm and Apptainer.

    For a laptop, a newcomer or CI, as root on Debian 12 or 13.

    \b
    Examples:
      gear devcluster up
      gear devcluster exec --user alice -- gear run -r gpu-1 -- python3 -c 'print(1)'
      gear devcluster down
    """


@devcluster.command()
@click.option("--nodes", type=click.IntRange(0, 16), metavar="N",
              help="A login node, a controller and N compute nodes (0: one node is all three). "
                   "Default: the shape it had (2 the first time).")
@click.option("--slurm", type=click.Choice(["24.11", "26.05"]),
              help="Slurm's release: Debian 13's 24.11 or sid's 26.05. Default: the one it had.")
def up(nodes: int | None, slurm: str | None) -> None:
    """Install what is needed and bring the cluster up (idempotent).

    \b
    Example:
      gear devcluster up --nodes 2 --slurm 26.05
    """
    _script("up", *(["--nodes", str(nodes)] if nodes is not None else []),
            *(["--slurm", slurm] if slurm else []))


@devcluster.command()
def down() -> None:
    """Stop everything `up` started."""
    _script("down")


@devcluster.command()
def status() -> None:
    """Say what runs (exit 3 when the cluster is down)."""
    _script("status")


@devcluster.command()
@click.option("--last", type=click.IntRange(min=0), metavar="N", help="Only the last N messages.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--clear", is_flag=True, help="Delete the caught messages.")
def mail(last: int | None, as_json: bool, clear: bool) -> None:
    """Show the mail the cluster sent (its MailProg is gear-mailprog; a local
    mail catcher on 127.0.0.1:2525 keeps every message).

    \b
    Example:
      gear devcluster mail --last 2
    """
    args = ["mail"]
    if last is not None:
        args += ["--last", str(last)]
    if as_json:
        args.append("--json")
    if clear:
        args.append("--clear")
    _script(*args)


@devcluster.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.option("--user", default="root", show_default=True, help="Run as this user (created on first use).")
@click.option("--cwd", help="Working directory inside the cluster.")
@click.option("--node", help="Run on this node (login, controller, node1…) instead of the login node.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(user: str, cwd: str | None, node: str | None, command: tuple[str, ...]) -> None:
    """Run COMMAND inside the cluster as USER, as on a login node.

    \b
    Example:
      gear devcluster exec --user alice -- gear status
    """
    args = ["exec", "--user", user]
    if cwd:
        args += ["--cwd", cwd]
    if node:
        args += ["--node", node]
    _script(*args, "--", *command)


@devcluster.command()
@click.argument("name")
@click.argument("users", nargs=-1)
def group(name: str, users: tuple[str, ...]) -> None:
    """Make Unix group NAME in the cluster (and on this host, same gid) with USERS as members.

    A site's project groups, for `gear share C --group NAME`.

    \b
    Example:
      gear devcluster group vision-lab alice bob
    """
    _script("group", name, *users)
