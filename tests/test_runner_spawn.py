"""base/runner.run spawns without subprocess: it must give what subprocess.run gave, case by case."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gear_hpc.base import runner
from gear_hpc.base.errors import GearError
from gear_hpc.base.runner import CommandFailed

PY = sys.executable

CASES = [
    ["sh", "-c", "echo out; echo err >&2"],
    ["sh", "-c", "printf 'a\\r\\nb\\rc\\n'; printf 'x\\r\\n' >&2; exit 3"],
    ["sh", "-c", "exit 0"],
    ["sh", "-c", "kill -TERM $$"],                                     # killed by a signal: -15
    [PY, "-c", "import sys; sys.stdout.write('é' * 100000); sys.stderr.write('ü' * 100000)"],   # both pipes full
    [PY, "-c", "import signal; print(signal.getsignal(signal.SIGPIPE), signal.getsignal(signal.SIGXFSZ))"],
    [PY, "-c", "import os; print(sorted(int(fd) for fd in os.listdir('/proc/self/fd')))"],   # nothing inherited
    ["sh", "-c", "cat"],                                               # stdin is the caller's
]


def _subprocess(argv: list[str], **kwargs: object) -> tuple[int, str, str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, **kwargs)  # type: ignore[call-overload]
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("argv", CASES, ids=range(len(CASES)))
def test_same_as_subprocess(argv: list[str]) -> None:
    result = runner.run(argv, check=False, timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == _subprocess(argv)


def test_input_and_env() -> None:
    env = {**os.environ, "GEAR_RUNNER_TEST": "yes"}
    argv = ["sh", "-c", "cat; echo \"$GEAR_RUNNER_TEST\""]
    text = "line one\r\n" + "x" * 200000 + "\n"
    result = runner.run(argv, input=text, env=env)
    assert (result.returncode, result.stdout, result.stderr) == _subprocess(argv, input=text, env=env)


def test_path_of_the_given_environment(tmp_path) -> None:
    """A name is looked up in the PATH of the environment given, as subprocess does."""
    tool = tmp_path / "gear-runner-tool"
    tool.write_text("#!/bin/sh\necho found\n")
    tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path / 'missing'}:{tmp_path}"}
    assert runner.run(["gear-runner-tool"], env=env).stdout == "found\n"
    with pytest.raises(GearError, match="command not found: gear-runner-tool"):
        runner.run(["gear-runner-tool"])


def test_failures_say_what_failed(tmp_path) -> None:
    with pytest.raises(CommandFailed) as failed:
        runner.run(["sh", "-c", "echo partial; echo why >&2; exit 4"])
    assert (failed.value.returncode, failed.value.stdout, failed.value.stderr) == (4, "partial\n", "why\n")
    assert str(failed.value) == "sh exited with code 4: why"
    with pytest.raises(GearError, match="command not found: /nonexistent/tool"):
        runner.run(["/nonexistent/tool"])
    not_executable = tmp_path / "plain"
    not_executable.write_text("")
    with pytest.raises(PermissionError):
        runner.run([str(not_executable)])
    with pytest.raises(PermissionError):   # as subprocess: a file found but not executable
        subprocess.run([str(not_executable)])


def test_timeout_kills_and_keeps_the_output_so_far() -> None:
    with pytest.raises(CommandFailed) as failed:
        runner.run(["sh", "-c", "echo started; echo warn >&2; exec sleep 30"], timeout=0.5)
    assert failed.value.timed_out and failed.value.returncode is None
    assert (failed.value.stdout, failed.value.stderr) == ("started\n", "warn\n")
    assert str(failed.value) == "sh timed out: warn"


def test_timeout_of_a_child_that_closed_its_output() -> None:
    with pytest.raises(CommandFailed) as failed:
        runner.run(["sh", "-c", "exec >&- 2>&-; sleep 30"], timeout=0.5)
    assert failed.value.timed_out


def test_cwd_still_works(tmp_path) -> None:
    assert runner.run(["pwd"], cwd=str(tmp_path)).stdout == f"{tmp_path}\n"


@pytest.mark.parametrize("environment", [{"PATH": "/usr/bin:/bin"}, {"PATH": ""}, {}, {"PATH": "/a::/b:"}],
                         ids=["set", "empty", "unset", "empty-entries"])
def test_the_path_searched_is_the_one_os_get_exec_path_gives(environment):
    from gear_hpc.base.runner import exec_path

    assert exec_path(environment) == os.get_exec_path(environment)
