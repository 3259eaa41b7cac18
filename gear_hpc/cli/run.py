"""`gear run`: create a script execution and submit it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .group import execution_options, follow_option, json_option, load_context, open_ledger

if TYPE_CHECKING:
    from ..data.staging import Progress
    from ..executions.lifecycle import RunRequest
    from ..site.model import Site
    from ..storage.disk import UserStorage


@click.command(context_settings={"ignore_unknown_options": False})
@execution_options(
    container="Container to run in (created on first use). Default: the code directory's name.",
    code="Directory (or file) to upload into /hyperai/home; honours .gearignore. Default: the current "
         "directory, refused if it holds more than the site allows (gear asks for --code then).",
    param="A parameter for gear_params.json (repeatable). V is read as JSON if it can be. K=V1,V2,… "
          "runs one execution per value (a grid over every such K, as one Slurm job array).")
@click.option("--file", "project_file", type=click.Path(path_type=Path, readable=False), default=None,
              help="The project file. Default: gear.yaml, else openbayes.yaml, in the code directory.")
@click.option("--parallel", type=click.IntRange(min=1), default=None, metavar="P",
              help="A grid runs at most P executions at once (default: as many as Slurm runs).")
@follow_option
@json_option
@click.argument("command", nargs=-1)
def run(container: str | None, compute_type: str | None, image: str | None, bindings: tuple[str, ...], code: Path | None,
        params: tuple[str, ...], message: str | None, project_file: Path | None, parallel: int | None, follow: bool,
        as_json: bool, command: tuple[str, ...]) -> None:
    """Run COMMAND in a new execution.

    The code is copied into the working directory, which is the current
    directory of COMMAND (/hyperai/home, also /output). COMMAND runs as given,
    without a shell: use `bash -c '…'` for pipes. The new execution's id is
    the last line printed.

    A project file in the code directory (gear.yaml, or OpenBayes's
    openbayes.yaml as it is) gives what the options leave out: compute type,
    image, data, command and parameters (docs/project-file.md).

    \b
    Examples:
      gear run -r cpu-small -- python3 train.py
      gear run -c mnist -r gpu-1 --param lr=0.01 -m "first try" -- python3 train.py
      gear run -f -- bash -c 'nproc; ls /hyperai/input'
      gear run -d mnist:input0 -d prep/2:input1 -- python3 train.py
      gear run -r gpu-1 -- train.ipynb      # runs the notebook's code cells (gear convert)
      gear run                              # as gear.yaml (or openbayes.yaml) in . says
      gear run --param lr=0.1,0.01 --param bs=32,64 --parallel 2 -- python3 train.py   # 4 executions
    """
    from ..executions import lifecycle as executions
    from ..tuning.spec import parse_param_values

    site, storage = load_context()
    # K=V1,V2 is an axis of a grid (docs/tuning.md); K=V one value, as before.
    axes = [parse_param_values(p) for p in params]
    grid = [(key, values) for key, values in axes if len(values) > 1]
    parsed = dict(executions.parse_param(p) for p, (_, values) in zip(params, axes, strict=True) if len(values) == 1)
    # Without --code the current directory is uploaded, but only up to the
    # site's limit: `gear run` from $HOME must not upload all of it unasked.
    code_unnamed = code is None
    code = Path(".") if code is None else code
    if os.environ.get("GEAR_WORKSPACE"):
        # Inside a Jupyter workspace: the same container and, unless -d is given, its bindings.
        container = container or os.environ.get("GEAR_CONTAINER")
        if not bindings:
            bindings = tuple(json.loads(os.environ.get("GEAR_BINDINGS") or "[]"))
    # The project file fills in what the options leave out (project/apply.py: the options win).
    from ..project.apply import merge, project_for

    given = merge(project_for(code, project_file), storage, container=container, compute_type=compute_type,
                  image=image, bindings=bindings, params=parsed, command=command)
    container, compute_type, image, parsed = given.container, given.compute_type, given.image, given.params
    bindings, generated = tuple(given.bindings), dict(given.generated_files)
    if given.project is not None and given.project.tuning is not None:
        from .output import warn

        warn(f"{given.project.path.name}: its hyper_tuning is not run by gear run (gear tune runs it); "
             "this is one execution with the parameters as given")
    argv = given.command
    if not argv:
        from ..base.errors import UsageError

        raise UsageError("no COMMAND given: put it after --, for example: gear run -- python train.py "
                         "(or write it in the project file gear.yaml: command: python train.py)")
    if argv[0].endswith(".ipynb"):
        from ..executions import notebook

        # A notebook runs as its converted script (gear convert), added beside it in the upload.
        argv, converted = notebook.prepare_run(argv, code)
        generated.update(converted)
        click.echo(f"gear: {next(iter(converted))} runs the code cells of the notebook", err=True)
    request = executions.RunRequest(command=argv, code=code, container=container,
                                     compute_type=compute_type, image=image, params=parsed, message=message,
                                     bindings=list(bindings), generated_files=generated,
                                     code_unnamed=code_unnamed)
    if grid:
        from ..base.errors import UsageError
        from ..tuning.spec import grid_from_params
        from .tune import start_sweep

        if follow:
            raise UsageError("-f follows one execution; a grid (--param K=V1,V2) starts several: "
                             "see them with gear status or gear tune show")
        start_sweep(site, storage, request, grid_from_params(grid, parallel), as_json)
        return
    _submit_and_report(site, storage, request, follow, as_json)


def _submit_and_report(site: Site, storage: UserStorage, request: RunRequest, follow: bool, as_json: bool) -> None:
    """Submit, say so on stderr, optionally follow, and print the id (or JSON) last."""
    from ..executions import lifecycle as executions
    from .output import print_json, warn

    bar = _SnapshotProgress()
    try:
        execution = executions.submit(site, storage, request, notice=warn, on_progress=bar)
    finally:
        bar.done()
    click.echo(f"gear: submitted {execution.id} as Slurm job {execution.slurm_job_id} "
               f"({execution.compute_type}, {execution.image})", err=True)
    if follow:
        from .follow import follow as follow_execution

        with open_ledger(storage) as ledger:
            execution = follow_execution(ledger, execution.container, execution.number)
        exit_code = "" if execution.exit_code is None else f", exit code {execution.exit_code}"
        click.echo(f"gear: {execution.id} {execution.status}{exit_code}"
                   + (f": {execution.note}" if execution.note else ""), err=True)
    if as_json:
        print_json(execution.to_json())
    else:
        click.echo(execution.id)
    if follow and execution.status != "completed":
        raise click.exceptions.Exit(1)


class _SnapshotProgress:
    """The code snapshot's progress on stderr, drawn as `gear data upload` draws
    its own, once the copy has taken a second (small code goes by unremarked)."""

    def __init__(self) -> None:
        from .data import _Bar

        self.bar = _Bar()

    def __call__(self, progress: Progress) -> None:
        if progress.seconds >= 1:
            self.bar(progress)

    def done(self) -> None:
        self.bar.done()


@click.command(name="continue")
@click.argument("execution_id", metavar="CONTAINER/N")
@execution_options(
    resource="Compute type. Default: the parent's.",
    env="Image. Default: the parent's.",
    data="Bind data (repeatable); replaces the parent's binding at the same slot.",
    code="New code to upload. Default: the parent's code. Files that already exist in the parent's "
         "working directory are kept and the upload ignored (those that differ are listed before submitting).",
    param="Override or add a parameter (repeatable).")
@click.option("--home-as", metavar="inputK", help="Bind the parent's working directory read-only at inputK "
                                                "instead of starting from it.")
@click.option("--no-home", is_flag=True, help="Start with an empty working directory.")
@follow_option
@json_option
@click.argument("command", nargs=-1)
def continue_(execution_id: str, compute_type: str | None, image: str | None, bindings: tuple[str, ...],
              code: Path | None, params: tuple[str, ...], message: str | None, home_as: str | None,
              no_home: bool, follow: bool, as_json: bool, command: tuple[str, ...]) -> None:
    """Continue CONTAINER/N in a new execution of the same container.

    The new execution binds the same data at the same places, runs the same
    code and command (each overridden by what you give), and starts with
    CONTAINER/N's saved working directory in /hyperai/home. That directory is
    never changed: on shared storage it is the read-only lower layer of an
    overlay, so continuing costs no copy.

    A Jupyter workspace continues as a workspace; given a COMMAND, that
    command runs as a script execution from the workspace's working directory.

    \b
    Examples:
      gear continue mnist-train/3
      gear continue mnist-train/3 -r gpu-2 --param epochs=20 -- python3 train.py --resume
      gear continue mnist-train/3 --home-as input1 -- python3 evaluate.py
      gear continue workspace/1 -r gpu-1 -e python -f -- python3 nb.py
    """
    from ..base.errors import UsageError
    from ..base.names import parse_execution_id
    from ..executions import lifecycle as executions, reconcile

    if home_as and no_home:
        raise UsageError("--home-as and --no-home cannot be used together")
    if execution_id.count("/") == 2:
        from ..base.errors import UsageError

        owner = execution_id.split("/")[0]
        raise UsageError(f"gear continue is for your own executions; to start from {execution_id}'s working "
                         f"directory (shared by {owner}), run: gear run -d {execution_id}:/hyperai/home -- COMMAND")
    container, number = parse_execution_id(execution_id)
    site, storage = load_context()
    parsed = dict(executions.parse_param(p) for p in params)
    with open_ledger(storage) as ledger:
        reconcile.refresh(ledger)
        request = executions.continue_request(
            ledger, container, number, command=list(command) or None, code=code, compute_type=compute_type,
            image=image, params=parsed, message=message, bindings=list(bindings),
            home=home_as or ("none" if no_home else "layer"))
    if request.mode == "jupyter":
        # A workspace continued without a command is a workspace again: same
        # JupyterLab start, same report (with one, continue_request made it a script).
        from .jupyter import start_and_report

        start_and_report(site, storage, as_json, None, container=request.container,
                         compute_type=request.compute_type, image=request.image, bindings=request.bindings,
                         code=code, message=message, idle_timeout=None, port=None,
                         parent=request.parent, home_layer=request.home_layer)
        return
    _submit_and_report(site, storage, request, follow, as_json)
