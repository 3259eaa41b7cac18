"""`gear tune`: hyperparameter tuning as one Slurm job array; `gear tune show/plot/stop` (docs/tuning.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .group import execution_options, json_option, load_context, open_ledger
from .output import echo, print_json, table

if TYPE_CHECKING:
    from ..executions.lifecycle import RunRequest
    from ..site.model import Site
    from ..storage.disk import UserStorage
    from ..tuning.spec import TuningSpec


@click.group(invoke_without_command=True)
@execution_options(
    container="Container of the trials. Default: the project file's, else the code directory's name.",
    code="Directory to upload into each trial's /hyperai/home (default: the current directory).",
    param="A fixed parameter for every trial (repeatable), beside the tuned ones.")
@click.option("--file", "project_file", type=click.Path(path_type=Path, readable=False), default=None,
              help="The project file. Default: gear.yaml, else openbayes.yaml, in the code directory.")
@click.option("--seed", type=int, default=None, help="Seed of a Random or Bayesian tuning (the same seed draws the "
                                                     "same trials).")
@click.option("--driver-type", metavar="TYPE", default=None,
              help="Compute type of a Bayesian tuning's driver job. Default: the site's smallest without GPUs.")
@json_option
@click.pass_context
def tune(ctx: click.Context, container: str | None, compute_type: str | None, image: str | None,
         bindings: tuple[str, ...], code: Path | None, params: tuple[str, ...], message: str | None,
         project_file: Path | None, seed: int | None, driver_type: str | None, as_json: bool) -> None:
    """Start the tuning described by the project file's hyper_tuning section.

    Grid and Random tunings submit all their trials as ONE Slurm job array
    (parallel_count at once). A Bayesian tuning starts a small driver job
    that asks Optuna for each trial and submits it (gear tune resume
    restarts a driver that was stopped). Each trial is an ordinary execution C/N that
    gets its values in gear_params.json and as --name=value arguments, and
    logs metrics with `from gear_metrics import log_metric` (or
    openbayestool.log_metric). The ids of the trials are printed.

    \b
    Examples:
      gear tune                              # as openbayes.yaml / gear.yaml in . says
      gear tune -c mnist --file tuning.yaml -r cpu-small
      gear tune show mnist
      gear tune plot mnist -o mnist.png
      gear tune stop mnist
      gear tune resume mnist
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..base.errors import UsageError
    from ..executions import lifecycle
    from ..project.apply import merge, project_for
    from ..tuning.spec import from_project

    site, storage = load_context()
    code_unnamed = code is None
    code = Path(".") if code is None else code
    project = project_for(code, project_file)
    if project is None:
        raise UsageError("no project file: write gear.yaml (or openbayes.yaml) with a hyper_tuning section in "
                         f"{code}, or name it with --file (docs/tuning.md)")
    if project.tuning is None:
        raise UsageError(f"{project.path}: no hyper_tuning section, so nothing to tune (docs/tuning.md)")
    parsed = dict(lifecycle.parse_param(p) for p in params)
    given = merge(project, storage, container=container, compute_type=compute_type, image=image,
                  bindings=bindings, params=parsed, command=())
    if not given.command:
        raise UsageError(f"{project.path}: no command to tune; add one (command: python3 train.py)")
    request = lifecycle.RunRequest(command=given.command, code=code, container=given.container,
                                   compute_type=given.compute_type, image=given.image, params=given.params,
                                   message=message, bindings=list(given.bindings),
                                   generated_files=dict(given.generated_files), code_unnamed=code_unnamed)
    start_sweep(site, storage, request, from_project(project.tuning, seed), as_json, driver_type)


def start_sweep(site: Site, storage: UserStorage, request: RunRequest, spec: TuningSpec, as_json: bool,
                driver: str | None = None) -> None:
    """Expand the spec into trials, submit them as one job array, and say so (ids on stdout, one a line)."""
    from ..executions import sweep
    from ..tuning.spec import trials

    if spec.algorithm == "Bayesian":
        from ..executions import tuner

        asked = tuner.start(site, storage, request, spec, driver)
        echo(f"gear: started the Bayesian tuning {asked['container']}/{asked['name']}: its driver is Slurm job "
             f"{asked['driver_job']} on {asked['driver_type']}; it submits {spec.max_job_count} trial(s), "
             f"{spec.parallel_count or 1} at once (see gear tune show {asked['container']})", err=True)
        if as_json:
            print_json(asked)
        else:
            echo(f"{asked['container']}/{asked['name']}")
        return
    points = trials(spec)
    if spec.algorithm == "Random" and spec.seed is None:
        # Recorded, so the same trials can be drawn again (--seed).
        import secrets
        from dataclasses import replace

        spec = replace(spec, seed=secrets.randbelow(2**31))
        points = trials(spec)
    result = sweep.submit(site, storage, sweep.SweepRequest(request, points, spec.parallel_count, spec.to_json()))
    at_once = f", {spec.parallel_count} at once" if spec.parallel_count else ""
    echo(f"gear: submitted {result.count} trial(s) {result.container}/{result.first}-{result.last} as Slurm job "
         f"array {result.slurm_job_id} ({spec.algorithm}{at_once})", err=True)
    if as_json:
        print_json(result.to_json())
    else:
        echo("\n".join(result.ids))


@tune.command()
@click.argument("target", metavar="CONTAINER[/N]")
@click.option("--metric", help="Rank by this metric. Default: the tuning's hyperparameter_metric.")
@click.option("--goal", type=click.Choice(["MAXIMIZE", "MINIMIZE"], case_sensitive=False), default=None,
              help="Default: the tuning's goal, else MAXIMIZE.")
@json_option
def show(target: str, metric: str | None, goal: str | None, as_json: bool) -> None:
    """Rank the trials of a tuning by its goal metric, with their parameters and side metrics.

    CONTAINER names its latest tuning (or sweep); CONTAINER/N the one N belongs to.

    \b
    Examples:
      gear tune show mnist
      gear tune show mnist/12 --metric loss --goal minimize --json
    """
    tuning, ranked, metric, goal = _ranked(target, metric, goal)
    if as_json:
        print_json({"container": tuning.container, "tuning": tuning.label, "first": tuning.first, "count": tuning.count,
                    "algorithm": tuning.asked.get("algorithm"), "metric": metric, "goal": goal,
                    "trials": [t.to_json(i + 1 if t.score is not None else None) for i, t in enumerate(ranked)]})
        return
    names = tuning.parameter_names
    sides = list(ranked[0].side) if ranked else []
    echo(f"{tuning.label}: {len(ranked)} trial(s) "
         f"({tuning.asked.get('algorithm') or 'Grid'}), ranked by {metric or '(no metric logged yet)'} ({goal.lower()})")
    table(["RANK", "EXECUTION", "STATUS", (metric or "METRIC").upper(), *[s.upper() for s in sides], *names],
          [[i + 1 if t.score is not None else "-", t.execution.id, t.execution.status, _number(t.score),
            *[_number(t.side[s]) for s in sides], *[_value(t.values.get(n)) for n in names]]
           for i, t in enumerate(ranked)])


@tune.command()
@click.argument("target", metavar="CONTAINER[/N]")
@click.option("-o", "--output", type=click.Path(path_type=Path, readable=False), default=None,
              help="The PNG to write. Default: CONTAINER-FIRST-tuning.png in the current directory.")
@click.option("--metric", help="Plot this metric. Default: the tuning's hyperparameter_metric.")
@click.option("--terminal/--no-terminal", default=True, help="Also draw the plots in the terminal (default).")
@click.option("--width", type=click.IntRange(30, 400), default=None, help="Terminal plot width in characters.")
def plot(target: str, output: Path | None, metric: str | None, terminal: bool, width: int | None) -> None:
    """Plot the goal metric against each parameter and over time: a PNG, and in the terminal.

    \b
    Examples:
      gear tune plot mnist
      gear tune plot mnist -o /tmp/mnist.png --no-terminal
    """
    from ..base.errors import GearError
    from ..tuning import plot as plotting

    tuning, ranked, metric, goal = _ranked(target, metric, None)
    if metric is None or not any(t.score is not None for t in ranked):
        raise GearError(f"no trial of {tuning.label} has logged "
                        f"{metric or 'a metric'} yet; nothing to plot")
    path = output or Path(f"{tuning.label.replace('/', '-')}-tuning.png")
    if terminal:
        echo(plotting.terminal(tuning, ranked, metric, goal, width))
    plotting.png(path, tuning, ranked, metric, goal)
    echo(f"gear: wrote {path}", err=True)


@tune.command()
@click.argument("target", metavar="CONTAINER[/N]")
@json_option
def stop(target: str, as_json: bool) -> None:
    """Stop every open trial of a tuning: each running one is stopped and saved, the pending ones never start.

    \b
    Example:
      gear tune stop mnist
    """
    from ..executions import sweep
    from ..tuning.results import find

    _, storage = load_context()
    tuning = find(storage, target)
    if tuning.directory is not None:
        from ..executions import tuner

        tuner.stop_driver(tuning.directory)   # first, so that it submits no more trials
    with open_ledger(storage) as ledger:
        result = sweep.stop(ledger, tuning.container, tuning.numbers)
    if as_json:
        print_json({"stopped": result.stopped, "still_open": result.still_open, "slurm_job_arrays": result.arrays})
    elif not result.stopped:
        echo(f"{tuning.label}: no trial is open; nothing to stop")
    else:
        echo(f"stopped {len(result.stopped)} trial(s) (Slurm job array {', '.join(result.arrays)})"
             + (f"; still stopping: {', '.join(result.still_open)}" if result.still_open else ""))


def _ranked(target: str, metric: str | None, goal: str | None) -> tuple[Any, list[Any], str | None, str]:
    from ..executions import reconcile
    from ..tuning.results import find, trials

    _, storage = load_context()
    tuning = find(storage, target)
    with open_ledger(storage) as ledger:
        reconcile.refresh(ledger)
        ranked, metric, goal = trials(ledger, tuning, metric, goal)
    return tuning, ranked, metric, goal


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _value(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


@tune.command()
@click.argument("target", metavar="CONTAINER")
def resume(target: str) -> None:
    """Start the driver of a Bayesian tuning again (after it was stopped, killed or timed out).

    The new driver picks up the study where the last one left it: trials it
    had submitted are waited for and told, none is asked or run twice.

    \b
    Example:
      gear tune resume mnist
    """
    from ..base.errors import UsageError
    from ..executions import tuner
    from ..tuning.results import find

    site, storage = load_context()
    tuning = find(storage, target)
    if tuning.directory is None:
        raise UsageError(f"{tuning.label} is a Grid or Random sweep: all its trials were submitted at once; "
                         "there is no driver to resume")
    job = tuner.resume(site, tuning.directory)
    if job is None:
        echo(f"{tuning.label}: its driver is still running; nothing to resume")
    else:
        echo(f"{tuning.label}: driver resumed as Slurm job {job}")


@tune.command(hidden=True)
@click.argument("directory", type=click.Path(path_type=Path, readable=False))
def drive(directory: Path) -> None:
    """Run a Bayesian tuning's driver here (what its driver job runs)."""
    from ..executions import tuner

    site, storage = load_context()
    tuner.drive_here(site, storage, directory)
