"""`gear jupyter`: start a JupyterLab workspace execution and say how to reach it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .group import execution_options, json_option, load_context, open_ledger

if TYPE_CHECKING:
    from ..executions.workspaces import Connection
    from ..ledger.db import Execution
    from ..site.model import Site
    from ..storage.disk import UserStorage


@click.command()
@execution_options(
    container="Container to run in (created on first use). Default: workspace.",
    env="Image with JupyterLab (see `gear images`). Default: the site's Jupyter image.",
    data="Bind data (repeatable), as for gear run: mnist:input0, mnist-train/3:/hyperai/home …",
    code="Directory (or file) to upload into /hyperai/home. Default: nothing.",
    message="A note to remember this workspace by.")
@click.option("--idle-timeout", type=click.IntRange(min=1), metavar="SECONDS",
              help="Shut down after this long without activity (at most the site's limit, the default).")
@click.option("--port", type=click.IntRange(1, 65535), help="Preferred port on the node; another is picked if it is taken.")
@click.option("--base-url", default="/", show_default=True, help="Jupyter's base URL (for a proxy).")
@click.option("--wait", "wait_seconds", type=click.FloatRange(min=0), metavar="SECONDS",
              help="How long to wait for the server to answer. Default: the site's start timeout + 120 s.")
@click.option("--url", "url_of", metavar="CONTAINER/N", help="Only print how to reach a running workspace.")
@click.option("--file", "project_file", type=click.Path(path_type=Path, readable=False), default=None,
              help="The project file whose resource, env and data to use. Default: gear.yaml, else "
                   "openbayes.yaml, in the code directory (or the current one).")
@json_option
def jupyter(container: str | None, compute_type: str | None, image: str | None, bindings: tuple[str, ...],
            code: Path | None, message: str | None, idle_timeout: int | None, port: int | None, base_url: str,
            wait_seconds: float | None, url_of: str | None, project_file: Path | None, as_json: bool) -> None:
    """Start JupyterLab in a new workspace execution.

    The workspace has the layout of every execution (notebooks in
    /hyperai/home = /output, inputs read-only in /hyperai/input/input0-4) and
    runs on a free port of the compute node, protected by a token. Once the
    server answers, gear prints its URL, the `ssh -L` line that reaches it
    from your laptop through the login node, and the id as the last line.
    Inside, `gear run` submits script executions with the workspace's
    bindings. A workspace idle for the site's limit shuts down and saves;
    `gear stop` stops and saves it.

    \b
    Examples:
      gear jupyter -r cpu-small
      gear jupyter -c mnist -r gpu-1 -e jupyter -d mnist:input0
      gear jupyter --url mnist/4        # print the URL of a running workspace again

    A project file (gear.yaml or openbayes.yaml, docs/project-file.md) in
    the code directory, or the current one, gives the compute type, image
    and data the options leave out; its command and tuning are for gear run.
    """
    from ..base.errors import NotFound
    from ..base.names import parse_execution_id
    from ..executions import reconcile, workspaces

    site, storage = load_context()
    if url_of:
        cont, number = parse_execution_id(url_of)
        with open_ledger(storage) as ledger:
            reconcile.refresh(ledger)
            execution = reconcile.get(ledger, cont, number)
            token = workspaces.token_of(execution)
            if execution.mode != "jupyter" or not execution.is_open or token is None:
                raise NotFound(f"{execution.id} is not a running workspace ({execution.mode}, {execution.status})")
            execution, connection, why = workspaces.wait_until_ready(ledger, execution, token, site, 0)
        _report(execution, connection, why, as_json)
        return
    # The project file's compute type, image and data, unless the options say otherwise (project/apply.py).
    from ..project.apply import merge, project_for

    given = merge(project_for(code or Path("."), project_file), storage, container=container,
                  compute_type=compute_type, image=image, bindings=bindings, params={}, command=())
    container, compute_type, image, bindings = given.container, given.compute_type, given.image, tuple(given.bindings)
    image = image or site.jupyter.default_image or site.default_image
    start_and_report(site, storage, as_json, wait_seconds, container=container, compute_type=compute_type,
                     image=image, bindings=list(bindings), code=code, message=message,
                     idle_timeout=idle_timeout, port=port, base_url=base_url)


def start_and_report(site: Site, storage: UserStorage, as_json: bool, wait_seconds: float | None,
                     **options: Any) -> None:
    """Start a workspace (options as workspaces.build_request takes them), wait, say how to reach it."""
    from ..base.errors import GearError
    from ..executions import stop as stopping, workspaces
    from .output import warn

    execution, token = workspaces.start(site, storage, notice=warn, **options)
    click.echo(f"gear: submitted workspace {execution.id} as Slurm job {execution.slurm_job_id} "
               f"({execution.compute_type}, {execution.image}); waiting for JupyterLab …", err=True)
    limit = wait_seconds if wait_seconds is not None else site.jupyter.start_timeout + 120
    with open_ledger(storage) as ledger:
        execution, connection, why = workspaces.wait_until_ready(
            ledger, execution, token, site, limit, progress=lambda m: click.echo(f"gear: {m}", err=True))
    if connection is None and execution.is_open and execution.status != "queued":
        # It runs but never answered: stop it rather than leave it holding the node.
        with open_ledger(storage) as ledger:
            execution = stopping.stop(ledger, execution.container, execution.number).execution
    if connection is None:
        if execution.status == "queued":
            warn(f"{execution.id}: {why}; `gear jupyter --url {execution.id}` prints its URL once it runs")
            _report(execution, None, why, as_json)
            return
        click.echo(f"gear: the log of {execution.id}:\n{workspaces.log_tail(execution)}", err=True)
        raise GearError(f"workspace {execution.id} did not start: {why} (status {execution.status})")
    _report(execution, connection, None, as_json)


def _report(execution: Execution, connection: Connection | None, why: str | None, as_json: bool) -> None:
    from .output import print_json

    if as_json:
        data = execution.to_json()
        data["connection"] = None if connection is None else {
            "node": connection.node, "port": connection.port, "url": connection.url, "ssh": connection.ssh,
            "local_url": connection.local_url}
        print_json(data)
        return
    if connection is not None:
        click.echo(f"gear: JupyterLab of {execution.id} answers on {connection.node}:{connection.port}", err=True)
        click.echo(f"URL: {connection.url}")
        click.echo(f"From your laptop: {connection.ssh}   then open {connection.local_url}")
    click.echo(execution.id)
