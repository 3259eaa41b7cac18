"""`gear sbatch`: sbatch's command line, the job a gear execution (executions/batch.py).

Run without click (cli/__init__.py hands `gear sbatch …` to `main` first):
workflow tools call sbatch thousands of times, and importing click costs
more than sbatch itself (docs/benchmarks.md, the submission's cost). The
click command, for `gear sbatch --help` and `gear --help`, is made only when
asked for (module __getattr__).
"""

from __future__ import annotations

import os
import sys

# Annotations only: importing typing (or pathlib) would cost the submission.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from ..executions.batch import Plan

SHIM_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "shims")
SHIM_MARK = b"gear-sbatch-shim"

HELP = """Submit a batch script as sbatch does; the job is also a gear execution.

    Takes sbatch's options and #SBATCH lines (the command line wins), and
    #GEAR lines for gear's own: -r TYPE, -e IMAGE, -c CONTAINER (default
    sbatch), -d BINDING, --code DIR, --param K=V, -m MESSAGE. The script runs
    inside the image with the layout, through its #! interpreter, from
    /hyperai/home, which holds the script (and --code DIR). Prints what sbatch
    prints: `Submitted batch job N`, or `N` with --parsable; --wait exits
    with the job's exit code; --array makes each task an execution.
    `--version`, `--usage` and `--test-only` go to the real sbatch, and so
    does a script gear wrote itself.

    With `gear sbatch --path` first on PATH, programs that run `sbatch` by
    name submit through gear.

    \b
    Examples:
      gear sbatch train.sh --epochs 3
      gear sbatch --parsable -t 10 --wrap 'python3 -c "print(1)"'
      export PATH="$(gear sbatch --path):$PATH"
    """


def main(args: list[str]) -> int | None:
    """`gear sbatch ARGS`; its exit code, or None to leave it to click (--help)."""
    if args[:1] in (["--help"], ["-h"]):
        return None
    from .output import echo

    if args == ["--path"]:
        echo(SHIM_DIR)
        return 0
    try:
        return _sbatch(args)
    except KeyboardInterrupt:
        echo("gear: interrupted", err=True)
        return 130
    except Exception as exc:
        if os.environ.get("GEAR_TRACEBACK"):
            raise
        from ..base.errors import one_line

        message, code = one_line(exc)
        echo(f"gear: error: {message}", err=True)
        return code


def _sbatch(args: list[str]) -> int:
    _leave_shims_off_path()
    from ..executions import batch
    from ..slurm.sbatch_options import parse

    options, rest = parse(args, stop_at_script=True)
    names = {name for name, _ in options}
    if names & batch.PASSTHROUGH or (rest and _written_by_gear(rest[0])):
        _exec_real_sbatch(args)
    stdin_text = None
    if not rest and "--wrap" not in names and not sys.stdin.isatty():
        stdin_text = sys.stdin.buffer.read().decode()   # as sent: no newline translation
    plan = batch.build(args, os.getcwd(), stdin_text, empty_code=False)
    answered = _submit_lean(plan)
    if answered is not None:
        return answered
    batch.make_empty_code(plan)
    try:
        return _submit(plan)
    finally:
        batch.cleanup(plan)


def _submit_lean(plan: Plan) -> int | None:
    """The lean submission (executions/quick_submit.py) of a plain plan; None: the full path submits it."""
    from ..base.errors import SlurmError
    from ..executions import batch, quick_submit

    if plan.clusters is not None or plan.array is not None or plan.wait or batch.asks_for_gpus(plan) is not None:
        return None
    try:
        submitted = quick_submit.submit(plan.request, empty_code=plan.wants_empty_code)
    except quick_submit.Decline:
        return None
    except SlurmError as exc:
        raise SlurmError("; ".join(line.strip() for line in str(exc).splitlines() if line.strip())) from None
    answer = batch.sbatch_answer(submitted.slurm_job_id, plan)
    if answer is not None:
        from .output import echo

        echo(answer)
    return 0


def _submit(plan: Plan) -> int:
    from ..base.errors import SlurmError, UsageError
    from ..executions import batch, lifecycle
    from ..site import loading
    from ..storage.disk import UserStorage
    from .output import echo

    if plan.clusters is not None:
        from ..ood.submit import local_cluster

        ours = local_cluster()
        if ours is None or plan.clusters.strip().lower() != ours.lower():
            raise UsageError(f"sbatch --clusters {plan.clusters}: gear submits to its own Slurm cluster "
                             f"({ours or 'its name unknown'})")
    site = loading.load()
    storage = UserStorage(site.storage_root)
    gpus = batch.asks_for_gpus(plan)
    if gpus is not None:
        # Slurm would reserve the GPUs, but the image runs with --nv only on a GPU compute type:
        # the program would not see them. Said before anything is made, never dropped silently.
        chosen = site.compute_type(plan.request.compute_type or site.default_compute_type)
        if chosen.gpus == 0:
            raise UsageError(f"sbatch {gpus} asks for GPUs, but compute type {chosen.name!r} has none, so the "
                             "program would not see them; choose a GPU type with #GEAR -r TYPE (gear types)")
    try:
        if plan.array is None:
            execution = lifecycle.submit(site, storage, plan.request)
            assert execution.slurm_job_id is not None
            job_id, container, numbers = execution.slurm_job_id, execution.container, [execution.number]
        else:
            # One Slurm job array, each task an execution (executions/sweep.py, as gear tune submits).
            from ..executions import sweep

            array = sweep.submit(site, storage, sweep.SweepRequest(
                base=plan.request, trials=[{} for _ in plan.tasks], array=plan.array, indices=plan.tasks))
            job_id, container, numbers = array.slurm_job_id, array.container, list(range(array.first, array.last + 1))
    except SlurmError as exc:
        # sbatch's refusal of the user's options, in one line (it writes two: the reason, then "failed").
        raise SlurmError("; ".join(line.strip() for line in str(exc).splitlines() if line.strip())) from None
    answer = batch.sbatch_answer(job_id, plan)
    if answer is not None:
        echo(answer)
    if plan.wait:
        sys.stdout.flush()
        return batch.wait_for_end(storage, container, numbers)
    return 0


def _written_by_gear(script: str) -> bool:
    """gear's own job scripts (gear run and the others submit through `sbatch` by name): submitted as they are."""
    try:
        with open(script, "rb") as handle:
            head = handle.read(200)
    except OSError:
        return False
    second = head.split(b"\n")[1:2]
    return bool(second) and second[0].startswith((b"# gear-hpc execution ", b"# gear-hpc sweep "))


def _is_shim(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return SHIM_MARK in handle.read(256)
    except OSError:
        return False


def _leave_shims_off_path() -> None:
    """PATH without gear's sbatch: every sbatch this process runs (by name) is then the real one."""
    entries = os.environ.get("PATH", "").split(os.pathsep)
    kept = [entry for entry in entries if not _is_shim(os.path.join(entry or ".", "sbatch"))]
    if len(kept) != len(entries):
        os.environ["PATH"] = os.pathsep.join(kept)
    slurm_bin = os.environ.get("GEAR_SLURM_BIN")
    if slurm_bin and _is_shim(os.path.join(slurm_bin, "sbatch")):
        from ..base.errors import GearError

        raise GearError(f"GEAR_SLURM_BIN={slurm_bin} holds gear's own sbatch; it must name Slurm's directory")


def _exec_real_sbatch(args: list[str]) -> NoReturn:
    from ..base.errors import GearError
    from ..slurm.jobs import _bin

    sys.stdout.flush()
    sbatch = _bin("sbatch")
    try:
        os.execvp(sbatch, [sbatch, *args])
    except OSError as exc:
        raise GearError(f"cannot run the real sbatch ({sbatch}): {exc.strerror}") from None


def _click_command() -> Any:
    import click

    @click.command(help=HELP, context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
    @click.option("--path", "show_path", is_flag=True,
                  help="Print the directory holding gear's `sbatch`, to put first on PATH.")
    @click.argument("argv", nargs=-1, type=click.UNPROCESSED)
    def sbatch(show_path: bool, argv: tuple[str, ...]) -> None:
        code = main(["--path"] if show_path else list(argv))
        if code:
            raise click.exceptions.Exit(code)

    return sbatch


def __getattr__(name: str) -> Any:
    if name == "sbatch":   # the click command (cli/__init__.py COMMANDS), made when first asked for
        command = _click_command()
        globals()["sbatch"] = command
        return command
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
