"""`gear sbatch`: a batch script, as sbatch takes it, run as a gear execution (docs/cli.md, gear sbatch).

The user's script is not what Slurm runs: gear's job script is, sized by the
compute type, and it runs the user's script inside the image with the
layout, through the script's own interpreter (its `#!` line). So:

- the script's `#SBATCH` lines and sbatch's options are read here (sbatch's
  own rules: directives before the first command, the command line winning)
  and handed to the real sbatch as `--name=value` arguments, which override
  the job script's own `#SBATCH` lines;
- `#GEAR` lines choose the compute type, image, container, data, code,
  parameters and message, as gear run's options do;
- a few options are gear's to honour (`--parsable`, `--wait`, `--wrap`,
  `--quiet`, `--chdir`, `--clusters`), a few cannot be (`--comment` and
  `--signal`, which tie the job to its execution and warn it before its
  time limit; `--container`), and the rest pass through unchanged.

Everything is checked before anything is created (build raises UsageError).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..base.errors import UsageError
from ..base.names import check_text
from ..slurm import sbatch_options
from .lifecycle import RunRequest

if TYPE_CHECKING:
    from ..storage.disk import UserStorage

DEFAULT_CONTAINER = "sbatch"
# Options that ask sbatch something rather than submit: the real sbatch answers them.
PASSTHROUGH = frozenset({"--version", "--usage", "--test-only"})
REFUSED = {
    "--comment": "gear's comment ties the job to its execution",
    "--signal": "gear's job is warned before its time limit (USR1) to save the working directory",
    "--container": "the image is gear's: choose it with #GEAR -e IMAGE",
    "--container-id": "the image is gear's: choose it with #GEAR -e IMAGE",
    "--batch": "gear's job runs on one node of the compute type",
}
# Options gear honours itself; never handed to sbatch as they are.
OWN = frozenset({"--parsable", "--wait", "--wrap", "--quiet", "--chdir", "--clusters", "--cluster", "--array"})


@dataclass
class GearLines:
    """What #GEAR lines say (gear run's options)."""

    container: str | None = None
    compute_type: str | None = None
    image: str | None = None
    bindings: list[str] = field(default_factory=list)
    code: str | None = None
    params: list[str] = field(default_factory=list)
    message: str | None = None


@dataclass
class Script:
    name: str                                   # its file name (in the working directory, and for errors)
    text: str
    interpreter: list[str]                      # from its #! line
    directives: list[tuple[str, str | None]]    # #SBATCH options, in order
    gear: GearLines


@dataclass
class Plan:
    """A checked `gear sbatch` command line: what to submit and how to answer as sbatch would."""

    request: RunRequest
    parsable: bool = False
    quiet: bool = False
    wait: bool = False
    clusters: str | None = None                 # -M NAME, honoured as the local cluster
    array: str | None = None                    # --array as given, and the task ids it names
    tasks: list[int] = field(default_factory=list)
    options: list[tuple[str, str | None]] = field(default_factory=list)   # every option, merged
    temporary_code: Path | None = None          # the empty code directory build() made (cleanup removes it)


_GEAR_WITH_VALUE = {"-r": "compute_type", "--resource": "compute_type", "-e": "image", "--env": "image",
                    "-c": "container", "--container": "container", "-d": "bindings", "--data": "bindings",
                    "--code": "code", "--param": "params", "-m": "message", "--message": "message"}


def read_script(name: str, text: str) -> Script:
    """The interpreter, #SBATCH and #GEAR lines of a batch script (sbatch reads directives up to the first
    line that is neither blank nor a comment). UsageError names the script and line."""
    if "\r\n" in text:
        raise UsageError(f"{name}: the script has DOS line breaks (\\r\\n), which bash would take as part of "
                         "each line (sbatch refuses them too); convert it with dos2unix")
    lines = text.splitlines()
    if not lines or not lines[0].startswith("#!") or not lines[0][2:].strip():
        raise UsageError(f"{name}: this does not look like a batch script: the first line must start with #! "
                         "followed by the path to an interpreter (as sbatch requires)")
    try:
        interpreter = shlex.split(lines[0][2:])
    except ValueError as exc:
        raise UsageError(f"{name}:1: cannot read the #! line: {exc}") from None
    directives: list[tuple[str, str | None]] = []
    gear = GearLines()
    for number, line in enumerate(lines[1:], start=2):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break
        for tag in ("#SBATCH", "#GEAR"):
            if stripped.startswith(tag) and stripped[len(tag):len(tag) + 1] in (" ", "\t"):
                try:
                    words = shlex.split(stripped[len(tag):], comments=True)
                except ValueError as exc:
                    raise UsageError(f"{name}:{number}: cannot read the {tag} line: {exc}") from None
                if tag == "#SBATCH":
                    options, rest = sbatch_options.parse(words, stop_at_script=True)
                    if rest:
                        raise UsageError(f"{name}:{number}: #SBATCH {rest[0]!r} is not an option")
                    directives += options
                else:
                    _gear_line(name, number, words, gear)
    return Script(name, text, interpreter, directives, gear)


def _gear_line(name: str, number: int, words: list[str], gear: GearLines) -> None:
    i = 0
    while i < len(words):
        word = words[i]
        option, eq, value = word.partition("=") if word.startswith("--") else (word[:2], "", word[2:])
        if option not in _GEAR_WITH_VALUE:
            raise UsageError(f"{name}:{number}: #GEAR {word}: unknown option; #GEAR takes -r TYPE, -e IMAGE, "
                             "-c CONTAINER, -d BINDING, --code DIR, --param K=V, -m MESSAGE")
        if not eq and not value:
            i += 1
            if i >= len(words):
                raise UsageError(f"{name}:{number}: #GEAR {option} needs a value")
            value = words[i]
        i += 1
        attribute = _GEAR_WITH_VALUE[option]
        current = getattr(gear, attribute)
        if isinstance(current, list):
            current.append(value)
        else:
            setattr(gear, attribute, value)


def build(argv: list[str], cwd: Path, stdin_text: str | None = None) -> Plan:
    """The plan for `gear sbatch ARGV` run in `cwd`. `stdin_text` is read when no script is named (as sbatch
    reads its script from standard input). Raises UsageError; creates nothing."""
    options, rest = sbatch_options.parse(argv, stop_at_script=True)
    if rest[:1] == [":"]:
        raise UsageError("sbatch: heterogeneous jobs (`:` between option groups) are not available with gear")
    wrap = _last(options, "--wrap")
    if wrap is not None:
        if rest:
            raise UsageError(f"sbatch: --wrap and a script ({rest[0]}) cannot be given together")
        script = Script("wrap", "", ["/bin/sh", "-c", wrap], [], GearLines())
        command = ["/bin/sh", "-c", wrap]
    else:
        if rest:
            name, args = rest[0], rest[1:]
            path = cwd / name
            try:
                text = path.read_bytes().decode()   # bytes as they are: no newline translation
            except FileNotFoundError:
                raise UsageError(f"sbatch: unable to open file {name}") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageError(f"sbatch: cannot read {name}: {getattr(exc, 'strerror', None) or exc}") from None
        elif stdin_text is not None:
            name, args, text = "script.sh", [], stdin_text
        else:
            raise UsageError("sbatch: no batch script given (name one, give --wrap, or pipe one on stdin)")
        script = read_script(Path(name).name, text)
        command = [*script.interpreter, script.name, *args]
    for arg in command:
        check_text(arg, "the script's command line")
    # The command line wins over the script's #SBATCH lines, option by option.
    given = {name for name, _ in options}
    merged = [(n, v) for n, v in script.directives if n not in given] + options
    plan = Plan(RunRequest(command=command, code=cwd), options=merged)
    passed: list[str] = []
    chdir = Path(_last(merged, "--chdir") or cwd)
    chdir = chdir if chdir.is_absolute() else cwd / chdir
    for name, value in merged:
        if value is not None:
            check_text(value, f"sbatch {name}")
        if name in REFUSED:
            raise UsageError(f"sbatch {name}: not available with gear ({REFUSED[name]})")
        if name in ("--help",) or name in PASSTHROUGH:
            raise UsageError(f"sbatch {name}: ask the real sbatch")  # the CLI hands these over before build()
        if not name.startswith("--"):
            raise UsageError(f"sbatch: unknown option {name}")
        if name in OWN:
            continue
        if name in ("--output", "--error", "--input") and value and not value.startswith("/") and value != "none":
            value = str(chdir / value)   # as sbatch resolves it: against --chdir, else here
        passed.append(name if value is None else f"{name}={value}")
    if _last(merged, "--output") is not None and _last(merged, "--open-mode") is None:
        passed.append("--open-mode=truncate")   # sbatch's default for a file the user names (gear's log appends)
    plan.parsable = any(n == "--parsable" for n, _ in merged)
    plan.quiet = any(n == "--quiet" for n, _ in merged)
    plan.wait = any(n == "--wait" for n, _ in merged)
    plan.clusters = _last(merged, "--clusters") or _last(merged, "--cluster")
    plan.array = _last(merged, "--array")
    if plan.array is not None:
        plan.tasks = array_tasks(plan.array)
    plan.temporary_code = _apply_gear_lines(plan.request, script, cwd, passed)
    return plan


def _apply_gear_lines(request: RunRequest, script: Script, cwd: Path, passed: list[str]) -> Path | None:
    """The request as #GEAR lines make it; the script is added to the code as its own file.
    Returns the empty code directory it made, if it made one."""
    import tempfile

    from .lifecycle import parse_param

    gear = script.gear
    request.container = gear.container or DEFAULT_CONTAINER
    request.compute_type, request.image, request.message = gear.compute_type, gear.image, gear.message
    request.bindings = list(gear.bindings)
    request.params = dict(parse_param(p) for p in gear.params)
    request.sbatch_options = passed
    if script.text:
        request.generated_files = {script.name: script.text}
    if gear.code is not None:
        code = Path(gear.code)
        request.code = code if code.is_absolute() else cwd / code
        if not request.code.is_dir():
            raise UsageError(f"{script.name}: #GEAR --code {gear.code}: not a directory")
        return None
    # Only the script is uploaded (the job does not see the directory it was submitted from):
    # an empty code directory, made here and removed by cleanup().
    request.code = Path(tempfile.mkdtemp(prefix="gear-sbatch-"))
    return request.code


def cleanup(plan: Plan) -> None:
    """Remove the empty code directory build() made, if it made one."""
    if plan.temporary_code is not None:
        try:
            plan.temporary_code.rmdir()
        except OSError:
            pass


_GPU_OPTIONS = ("--gpus", "--gpus-per-node", "--gpus-per-task", "--gpus-per-socket", "--cpus-per-gpu",
                "--mem-per-gpu")


def asks_for_gpus(plan: Plan) -> str | None:
    """The option by which the job asks Slurm for GPUs (`--gres=gpu:1`, `-G 1` …), if it does."""
    for name, value in plan.options:
        if name in _GPU_OPTIONS or (name == "--gres" and value and "gpu" in value):
            return f"{name}={value}" if value is not None else name
    return None


def _last(options: list[tuple[str, str | None]], name: str) -> str | None:
    found = [value for option, value in options if option == name]
    return found[-1] if found else None


def sbatch_answer(job_id: str, plan: Plan) -> str | None:
    """What sbatch prints for a submitted job (None: nothing, with --quiet)."""
    if plan.parsable:
        return job_id + (f";{plan.clusters}" if plan.clusters else "")
    if plan.quiet:
        return None
    return f"Submitted batch job {job_id}" + (f" on cluster {plan.clusters}" if plan.clusters else "")


def wait_for_end(storage: UserStorage, container: str, numbers: list[int]) -> int:
    """Wait until every one of the executions has ended (as sbatch --wait waits for its job or array); the
    highest exit code, as sbatch --wait gives it (1 for one that ended without an exit code)."""
    import time

    from ..ledger.db import Ledger
    from .reconcile import refresh

    delay = 1.0
    wanted = set(numbers)
    while True:
        with Ledger(storage.ledger_path) as ledger:
            refresh(ledger)
            executions = [e for e in ledger.executions(container) if e.number in wanted]
        if executions and not any(e.is_open for e in executions):
            return max(e.exit_code if e.exit_code is not None else (0 if e.status == "completed" else 1)
                       for e in executions)
        time.sleep(delay)
        delay = min(delay * 1.5, 10.0)   # sbatch --wait too asks less often as the job goes on


MAX_ARRAY_TASKS = 10_000   # each task is an execution with its own directory


def array_tasks(spec: str) -> list[int]:
    """The task ids of sbatch's --array value (`0-15`, `1,3,5-9:2`, `0-99%10`), checked as Slurm reads it."""
    body, percent, limit = spec.partition("%")
    if percent and (not limit.isdigit() or not limit.isascii() or int(limit) < 1):
        raise UsageError(f"sbatch --array={spec}: the limit after % must be a number of tasks at once")
    tasks: list[int] = []
    for part in body.split(","):
        span, colon, step_text = part.partition(":")
        low, dash, high = span.partition("-")
        numbers = [low, high] if dash else [low]
        if not all(n.isdigit() and n.isascii() for n in numbers) or (colon and not (step_text.isdigit()
                                                                                   and int(step_text) > 0)):
            raise UsageError(f"sbatch --array={spec}: expected task ids such as 0-15, 1,3,5-9:2 or 0-99%10")
        first, last = int(low), int(high if dash else low)
        if last < first:
            raise UsageError(f"sbatch --array={spec}: {span} counts down")
        tasks += range(first, last + 1, int(step_text) if colon else 1)
        if len(tasks) > MAX_ARRAY_TASKS:
            raise UsageError(f"sbatch --array={spec}: more than {MAX_ARRAY_TASKS:,} tasks (each is an execution)")
    if len(set(tasks)) != len(tasks):
        raise UsageError(f"sbatch --array={spec}: a task id is given twice")
    return sorted(tasks)
