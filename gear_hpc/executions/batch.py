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

import os

from ..base.errors import UsageError
from ..base.names import check_text
from ..slurm import sbatch_options
from .request import RunRequest

# Annotations only. No dataclasses, pathlib or shlex (re) at import either: `gear sbatch --wrap` builds its
# plan on the lean submission path (executions/quick_submit.py), where each costs more than sbatch itself.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

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


class GearLines:
    """What #GEAR lines say (gear run's options)."""

    def __init__(self) -> None:
        self.container: str | None = None
        self.compute_type: str | None = None
        self.image: str | None = None
        self.bindings: list[str] = []
        self.code: str | None = None
        self.params: list[str] = []
        self.message: str | None = None


class Script:
    def __init__(self, name: str, text: str, interpreter: list[str], directives: list[tuple[str, str | None]],
                 gear: GearLines) -> None:
        self.name = name                  # its file name (in the working directory, and for errors)
        self.text = text
        self.interpreter = interpreter    # from its #! line
        self.directives = directives      # #SBATCH options, in order
        self.gear = gear


class Plan:
    """A checked `gear sbatch` command line: what to submit and how to answer as sbatch would."""

    def __init__(self, request: RunRequest, options: list[tuple[str, str | None]]) -> None:
        self.request = request
        self.parsable = False
        self.quiet = False
        self.wait = False
        self.clusters: str | None = None          # -M NAME, honoured as the local cluster
        self.array: str | None = None             # --array as given, and the task ids it names
        self.tasks: list[int] = []
        self.options = options                    # every option, merged
        self.temporary_code: Path | None = None   # the empty code directory build() made (cleanup removes it)
        self.wants_empty_code = False             # the script alone is uploaded: make_empty_code() makes the dir
        self.gear_lines = GearLines()             # what the script's #GEAR lines said


# Words of a #! or #SBATCH line without quotes, escapes or comments: str.split gives what shlex.split gives.
_PLAIN = frozenset(" \t" + "".join(chr(c) for c in range(0x21, 0x7f)) ) - frozenset("'\"\\#")


def _split(text: str, comments: bool = False) -> list[str]:
    if all(char in _PLAIN for char in text):
        return text.split()
    import shlex

    return shlex.split(text, comments=comments)


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
        interpreter = _split(lines[0][2:])
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
                    words = _split(stripped[len(tag):], comments=True)
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


def build(argv: list[str], cwd: Path | str, stdin_text: str | None = None, empty_code: bool = True) -> Plan:
    """The plan for `gear sbatch ARGV` run in `cwd`. `stdin_text` is read when no script is named (as sbatch
    reads its script from standard input). Raises UsageError; creates nothing but, unless `empty_code` is
    False (then make_empty_code() does it when needed), the empty code directory the script is uploaded from."""
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
            try:
                with open(os.path.join(cwd, name), "rb") as handle:
                    text = handle.read().decode()   # bytes as they are: no newline translation
            except FileNotFoundError:
                raise UsageError(f"sbatch: unable to open file {name}") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageError(f"sbatch: cannot read {name}: {getattr(exc, 'strerror', None) or exc}") from None
        elif stdin_text is not None:
            name, args, text = "script.sh", [], stdin_text
        else:
            raise UsageError("sbatch: no batch script given (name one, give --wrap, or pipe one on stdin)")
        script = read_script(os.path.basename(name), text)
        command = [*script.interpreter, script.name, *args]
    for arg in command:
        check_text(arg, "the script's command line")
    # The command line wins over the script's #SBATCH lines, option by option.
    given = {name for name, _ in options}
    merged = [(n, v) for n, v in script.directives if n not in given] + options
    plan = Plan(RunRequest(command=command, code=cwd), options=merged)   # type: ignore[arg-type]  # until the code is known
    passed: list[str] = []
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
            value = _resolved(value, _last(merged, "--chdir"), cwd)   # as sbatch resolves it: against --chdir, else here
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
    plan.gear_lines = script.gear
    plan.wants_empty_code = _apply_gear_lines(plan.request, script, cwd, passed)
    if plan.wants_empty_code and empty_code:
        make_empty_code(plan)
    return plan


def _resolved(value: str, chdir: str | None, cwd: Path | str) -> str:
    from pathlib import Path

    directory = Path(chdir or cwd)
    directory = directory if directory.is_absolute() else Path(cwd) / directory
    return str(directory / value)


def _apply_gear_lines(request: RunRequest, script: Script, cwd: Path | str, passed: list[str]) -> bool:
    """The request as #GEAR lines make it; the script is added to the code as its own file.
    True: only the script is uploaded, from an empty code directory (make_empty_code)."""
    gear = script.gear
    request.container = gear.container or DEFAULT_CONTAINER
    request.compute_type, request.image, request.message = gear.compute_type, gear.image, gear.message
    request.bindings = list(gear.bindings)
    if gear.params:
        from .lifecycle import parse_param

        request.params = dict(parse_param(p) for p in gear.params)
    else:
        request.params = {}
    request.sbatch_options = passed
    if script.text:
        request.generated_files = {script.name: script.text}
    if gear.code is not None:
        from pathlib import Path

        code = Path(gear.code)
        request.code = code if code.is_absolute() else Path(cwd) / code
        if not request.code.is_dir():
            raise UsageError(f"{script.name}: #GEAR --code {gear.code}: not a directory")
        return False
    return True


def make_empty_code(plan: Plan) -> None:
    """Only the script is uploaded (the job does not see the directory it was submitted from): an empty
    code directory, made here and removed by cleanup()."""
    import tempfile
    from pathlib import Path

    if plan.wants_empty_code and plan.temporary_code is None:
        plan.temporary_code = plan.request.code = Path(tempfile.mkdtemp(prefix="gear-sbatch-"))


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
