"""`gear run` of a small code directory without click: the lean submission (executions/quick_submit.py).

Importing click, the site model and the submit machinery cost `gear run`
several times what sbatch itself costs (docs/benchmarks.md, the cost of one
submission). As cli/fastpath.py does for `gear ls`/`gear status`, `main`
takes only exactly-known argument forms, and returns None, having printed
and created nothing, for anything else, so the click path runs as if this
module did not exist and behaviour cannot differ:

    gear run [-c NAME] [-r TYPE] [-e IMAGE] [-m MESSAGE] [--code DIR] [--] COMMAND [ARGS]...

each option at most once, in its short, long or `--long=VALUE` form, with a
value that is not empty and does not start with `-`; COMMAND and its
arguments after `--`, or, without `--`, none of them starting with `-`
(click would read those as options). Without --code the code is the
current directory, as for the click path. Declined as well: a project file
(gear.yaml, openbayes.yaml) in the code directory, a notebook as COMMAND, a run inside a
Jupyter workspace (GEAR_WORKSPACE), a container name gear would have to
derive with a substitution, and whatever quick_submit.submit declines.
What it prints is what the click path prints: the submission on stderr,
the execution's id on stdout, a failure as one `gear: error:` line.
"""

from __future__ import annotations

import os

_WITH_VALUE = {"-c": "container", "--container": "container", "-r": "compute_type", "--resource": "compute_type",
               "-e": "image", "--env": "image", "-m": "message", "--message": "message", "--code": "code"}
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")
PROJECT_FILES = ("gear.yaml", "openbayes.yaml")   # project/file.py NAMES


def parse(args: list[str]) -> tuple[dict[str, str], list[str]] | None:
    """(options, command) for an exactly-known form, else None."""
    given: dict[str, str] = {}
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            command = args[i + 1:]
            break
        if not word.startswith("-"):
            command = args[i:]
            if any(arg.startswith("-") for arg in command):
                return None
            break
        option, eq, value = word.partition("=") if word.startswith("--") else (word[:2], "", word[2:])
        if option not in _WITH_VALUE:
            return None
        if not eq and not value:
            i += 1
            if i >= len(args):
                return None
            value = args[i]
        key = _WITH_VALUE[option]
        if key in given or not value or value.startswith("-"):
            return None
        given[key] = value
        i += 1
    else:
        return None
    return (given, command) if command else None


def default_container(code: str) -> str | None:
    """lifecycle.default_container_name, where it substitutes nothing (else None: the full path derives it)."""
    name = os.path.basename(os.path.realpath(code)).lower()
    if not all(char in _NAME_CHARS for char in name):
        return None
    return name.strip("-._")[:64] or None


def main(args: list[str]) -> int | None:
    """`gear run ARGS`: its exit code, or None to leave it to click."""
    parsed = parse(args)
    if parsed is None or os.environ.get("GEAR_WORKSPACE"):
        return None
    given, command = parsed
    code = given.get("code", ".")
    if command[0].endswith(".ipynb") or not os.path.isdir(code):
        return None
    if any(os.path.lexists(os.path.join(code, name)) for name in PROJECT_FILES):
        return None
    container = given.get("container") or default_container(code)
    if container is None:
        return None
    from .output import echo

    try:
        return _submit(given, command, code, container)
    except KeyboardInterrupt:
        echo("gear: interrupted", err=True)
        return 130
    except Exception as exc:   # after the execution was made: reported as the click path reports it
        if os.environ.get("GEAR_TRACEBACK"):
            raise
        from ..base.errors import one_line

        message, exit_code = one_line(exc)
        echo(f"gear: error: {message}", err=True)
        return exit_code


def _submit(given: dict[str, str], command: list[str], code: str, container: str) -> int | None:
    from ..executions import quick_submit
    from ..executions.request import RunRequest
    from .output import echo

    request = RunRequest(command=command, code=code, container=container,  # type: ignore[arg-type]  # a str path
                         compute_type=given.get("compute_type"), image=given.get("image"), message=given.get("message"),
                         code_unnamed="code" not in given)
    try:
        submitted = quick_submit.submit(request)
    except quick_submit.Decline:
        return None
    echo(f"gear: submitted {submitted.id} as Slurm job {submitted.slurm_job_id} "
         f"({submitted.compute_type}, {submitted.image})", err=True)
    echo(submitted.id)
    return 0
