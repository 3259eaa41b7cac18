"""The lean pieces of the submission path give exactly what the standard library's versions gave."""

from __future__ import annotations

import random
import re
import shlex
from pathlib import Path

import pytest

from gear_hpc.base import names
from gear_hpc.slurm import render, skeleton

ALPHABET = "az09_@%+=:,./-'\" é\n\t$!*~µ\x00\x7f\x85\u2028"


def _words(count: int, alphabet: str = ALPHABET, longest: int = 6) -> list[str]:
    chance = random.Random(13)
    return ["".join(chance.choice(alphabet) for _ in range(chance.randint(0, longest))) for _ in range(count)]


def test_quote_is_shlex_quote() -> None:
    for word in _words(50_000):
        assert render.quote(word) == shlex.quote(word), repr(word)


def test_name_check_is_the_pattern() -> None:
    pattern = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
    for word in _words(50_000, "az09._-A/é\n ", 4):
        assert names._is_name(word) == bool(pattern.match(word)), repr(word)


# The fill that skeleton.py had with regular expressions: the reference.
_PLACE = re.compile(r"GEARPH(\d+)X")
_PIECE = re.compile(r"\x01([QSLW])([^\x02]*)\x02|GEARPH(\d+)X")


def _fill_with_re(text: str, values: list[str]) -> str:
    def expand(inner: str) -> str:
        return _PLACE.sub(lambda m: values[int(m.group(1))], inner)

    def piece(match: re.Match[str]) -> str:
        if match.group(3) is not None:
            return values[int(match.group(3))]
        kind, inner = match.group(1), match.group(2)
        if kind == "Q":
            return render.shell_quote(expand(inner))
        if kind == "S":
            return render.sbatch_value(expand(inner))
        words = [expand(word) for word in inner.split("\x03")] if inner else []
        return render.shell_words_lines(words) if kind == "L" else render.shell_quote(words)

    return _PIECE.sub(piece, text)


def test_fill_is_the_regular_expression_fill() -> None:
    values = ["v0", "it's", "a b", "--x", "/p/q", "", "7"]
    pieces = ["GEARPH0X", "GEARPH1X", "GEARPH6X", "GEARPHX", "GEARPH", "GEARPH12", "\x01Q", "\x01QGEARPH2X\x02",
              "\x01Sv\x02", "\x01LGEARPH3X\x03GEARPH1X\x02", "\x01WGEARPH4X\x03a\x02", "\x01L\x02", "\x01Xq\x02",
              "\x02", "\x03", "x", " ", "\n", "GE", "ARPH", "1X", "\x01Q-GEARPH0X-\x02"]
    chance = random.Random(7)
    for _ in range(20_000):
        text = "".join(chance.choice(pieces) for _ in range(chance.randint(0, 6)))
        try:
            expected: str | Exception = _fill_with_re(text, values)
        except Exception as exc:   # a placeholder beyond the values, a value sbatch refuses
            expected = exc
        try:
            got: str | Exception = skeleton.fill(text, values)
        except Exception as exc:
            got = exc
        if isinstance(expected, Exception):
            assert type(got) is type(expected), repr(text)
        else:
            assert got == expected, repr(text)


def test_template_files_in_the_order_of_sorted_rglob() -> None:
    templates = Path(skeleton.TEMPLATES)
    expected = [str(p.relative_to(templates)) for p in sorted(templates.rglob("*")) if p.is_file()]
    assert skeleton._template_files() == expected


def test_plain_lines_split_as_shlex_splits_them() -> None:
    from gear_hpc.executions import batch

    for word in _words(20_000, "ab -=/\t'\"#\\", 12):
        for comments in (False, True):
            try:
                expected: list[str] | None = shlex.split(word, comments=comments)
            except ValueError:
                expected = None
            try:
                got: list[str] | None = batch._split(word, comments=comments)
            except ValueError:
                got = None
            assert got == expected, repr(word)


def test_json_of_a_command_is_json_dumps() -> None:
    import json

    from gear_hpc.executions import quick_submit

    for words in ([], ["true"], _words(50), ["é", "\u2028", "\x00", '"', "\\"]):
        assert quick_submit._json_strings(words) == json.dumps(words)


def test_the_lean_path_knows_what_the_full_path_knows() -> None:
    """quick_submit repeats a few facts of the modules it must not import; they must agree."""
    from gear_hpc.cli import run_fast
    from gear_hpc.data import staging
    from gear_hpc.executions import job_lib, lifecycle, quick_submit
    from gear_hpc.notify import settings
    from gear_hpc.project import file as project_file
    from gear_hpc.slurm import apptainer, jobs

    assert quick_submit.KILL_AFTER_SECONDS == lifecycle.KILL_AFTER_SECONDS
    assert quick_submit.SUBMIT_TIMEOUT == jobs.SUBMIT_TIMEOUT
    assert (quick_submit.LIB, quick_submit.IN_CONTAINER, quick_submit.LIB_MODULES, quick_submit.PYTHONPATH) == (
        job_lib.LIB, job_lib.IN_CONTAINER, job_lib.MODULES, job_lib.PYTHONPATH)
    assert Path(quick_submit._PACKAGE, "job_python") == job_lib.SOURCE
    assert (quick_submit.HOME, quick_submit.OUTPUT, quick_submit.INPUT_SLOTS, quick_submit.INPUT_ALIASES) == (
        apptainer.HOME, apptainer.OUTPUT, apptainer.INPUT_SLOTS, apptainer.INPUT_ALIASES)
    assert (quick_submit.SMALL_FILES, quick_submit.SMALL_BYTES, quick_submit.IGNORE_FILE) == (
        staging.SMALL_FILES, staging.SMALL_BYTES, staging.IGNORE_FILE)
    assert (quick_submit.SETTINGS_FILE, quick_submit.OLD_SETTINGS_FILE) == (
        settings.SETTINGS_FILE, settings.OLD_SETTINGS_FILE)
    assert run_fast.PROJECT_FILES == project_file.NAMES


def test_mount_option_is_the_csv_line(tmp_path) -> None:
    from gear_hpc.executions import quick_submit
    from gear_hpc.slurm import apptainer

    for source in ("/srv/gear/users/a/containers/c/1/home", "/a b/c", "/é/x"):
        for read_only in (True, False):
            expected = apptainer.mount_option(apptainer.Mount(source, "/hyperai/home", read_only))
            assert quick_submit._mount_option(source, "/hyperai/home", read_only) == expected
    for odd in ("/a,b", '/a"b', "/a\nb"):
        try:
            quick_submit._mount_option(odd, "/x", True)
        except quick_submit.Decline:
            continue
        raise AssertionError(f"{odd!r} should be left to the full path")


def test_default_container_as_lifecycle_names_it(tmp_path) -> None:
    from gear_hpc.cli import run_fast
    from gear_hpc.executions import lifecycle

    for name in ("code", "My.Project-2", "x_y", "-lead.", "a b", "Ünï", "K"):
        directory = tmp_path / "names" / name
        directory.mkdir(parents=True)
        lean = run_fast.default_container(str(directory))
        if lean is not None:   # None: the full path derives it (a substitution)
            assert lean == lifecycle.default_container_name(directory), name


@pytest.mark.parametrize("args, expected", [
    (["-c", "x", "--code", "d", "--", "true"], ({"container": "x", "code": "d"}, ["true"])),
    (["--container=x", "-rcpu", "-e", "py", "-m", "hi there", "--code=d", "python3", "t.py"],
     ({"container": "x", "compute_type": "cpu", "image": "py", "message": "hi there", "code": "d"},
      ["python3", "t.py"])),
    (["--code", "d", "--", "python3", "t.py", "--lr", "1"], ({"code": "d"}, ["python3", "t.py", "--lr", "1"])),
    (["--code", "d", "python3", "t.py", "--lr", "1"], None),      # click would read --lr as an option
    (["-c", "x", "-c", "y", "--code", "d", "--", "true"], None),  # an option twice
    (["-d", "m:input0", "--code", "d", "--", "true"], None),      # data: the full path
    (["--param", "lr=1", "--code", "d", "--", "true"], None),
    (["--json", "--code", "d", "--", "true"], None),
    (["-f", "--code", "d", "--", "true"], None),
    (["--help"], None),
    (["--", "true"], ({}, ["true"])),                               # the current directory is the code
    (["--code", "d", "--"], None),                                 # no command
    (["--code", "d"], None),
    (["--code"], None),
    (["-c", "", "--code", "d", "--", "true"], None),               # an empty value
    (["-c", "-x", "--code", "d", "--", "true"], None),             # a value like an option
    (["--cod", "d", "--", "true"], None),                          # no abbreviations
])
def test_run_forms(args: list[str], expected: object) -> None:
    from gear_hpc.cli import run_fast

    assert run_fast.parse(args) == expected


def test_the_lean_modules_import_nothing_heavy() -> None:
    """What the lean submission imports at start: none of what made the full path cost several sbatch."""
    import subprocess
    import sys

    from helpers import REPO

    code = ("import sys; import gear_hpc.cli, gear_hpc.cli.run_fast, gear_hpc.cli.sbatch, gear_hpc.executions.batch, "
            "gear_hpc.executions.quick_submit, gear_hpc.slurm.skeleton, gear_hpc.base.runner, gear_hpc.base.names; "
            "print(' '.join(sorted(sys.modules)))")
    loaded = set(subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                                cwd=REPO).stdout.split())
    heavy = {"re", "pathlib", "dataclasses", "typing", "inspect", "subprocess", "json", "shlex", "tempfile", "secrets",
             "hashlib", "click", "jinja2", "yaml", "sqlite3"}
    assert not loaded & heavy, sorted(loaded & heavy)
