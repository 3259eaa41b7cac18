"""The one way gear runs an external command: an argument list, never a shell."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import GearError

DEFAULT_TIMEOUT = 60.0


class CommandFailed(GearError):
    """A command exited non-zero or timed out; carries everything to explain it."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stdout: str, stderr: str, timed_out: bool = False):
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.timed_out = timed_out
        if timed_out:
            what = "timed out"
        else:
            what = f"exited with code {returncode}"
        detail = (stderr or stdout).strip()
        super().__init__(f"{argv[0]} {what}" + (f": {detail}" if detail else ""))


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


def run(argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT, check: bool = True,
        input: str | None = None, cwd: str | None = None, env: dict[str, str] | None = None) -> Result:
    """Run `argv`, capture its output as text, and raise `CommandFailed` on failure."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              input=input, cwd=cwd, env=env)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise CommandFailed(argv, None, out, err, timed_out=True) from None
    except FileNotFoundError:
        raise GearError(f"command not found: {argv[0]}") from None
    result = Result(list(argv), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise CommandFailed(argv, proc.returncode, proc.stdout, proc.stderr)
    return result


def run_attached(argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Run `argv` with the terminal's stdin/stdout/stderr; return its exit code."""
    try:
        return subprocess.call(list(argv), env=env)
    except FileNotFoundError:
        raise GearError(f"command not found: {argv[0]}") from None


def stream(argv: Sequence[str], on_chunk: Callable[[str], None], timeout: float = DEFAULT_TIMEOUT) -> Result:
    """Run `argv`, handing each piece of stdout (split at CR or LF) to `on_chunk`.

    For commands that draw progress with carriage returns (rsync
    --info=progress2). stderr is captured for the error message.
    """
    import re
    import tempfile
    import time

    # stderr goes to a file, not a pipe: a command with many errors would fill
    # a pipe nobody reads while we read stdout, and hang.
    errors = tempfile.TemporaryFile()
    try:
        proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=errors, bufsize=0)
    except FileNotFoundError:
        errors.close()
        raise GearError(f"command not found: {argv[0]}") from None
    deadline = time.monotonic() + timeout
    pending = b""
    assert proc.stdout is not None
    try:
        while True:
            data = proc.stdout.read(4096)
            if not data:
                break
            pending += data
            *pieces, pending = re.split(rb"[\r\n]", pending)
            for piece in pieces:
                if piece.strip():
                    on_chunk(piece.decode(errors="replace"))
            if time.monotonic() > deadline:
                proc.kill()
                raise CommandFailed(argv, None, "", "", timed_out=True)
        if pending.strip():
            on_chunk(pending.decode(errors="replace"))
        returncode = proc.wait()
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        errors.close()
    if returncode != 0:
        raise CommandFailed(argv, returncode, "", stderr)
    return Result(list(argv), returncode, "", stderr)
