"""The one way gear runs an external command: an argument list, never a shell.

`run` spawns with os.posix_spawn and reads both pipes itself instead of
importing subprocess: subprocess (with the re, enum, locale, signal and
threading modules it pulls in) cost every submission ~12 ms inside the
cluster, three times the bare sbatch it runs (docs/benchmarks.md, the cost of
one submission). It gives what `subprocess.run(argv, capture_output=True,
text=True, timeout=…)` gives: the output decoded as subprocess decodes it
(universal newlines), the child's signals as subprocess leaves them, no
inherited descriptors, and the output so far when the timeout kills it.
"""

from __future__ import annotations

import os
import sys

from .errors import GearError

# Annotations only: typing and collections.abc cost the submission too.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

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


class Result:
    """What a finished command gave (argv, exit code, its output as text)."""

    __slots__ = ("argv", "returncode", "stdout", "stderr")

    def __init__(self, argv: list[str], returncode: int, stdout: str, stderr: str):
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self) -> str:
        return f"Result(argv={self.argv!r}, returncode={self.returncode!r}, stdout={self.stdout!r}, stderr={self.stderr!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Result):
            return NotImplemented
        return (self.argv, self.returncode, self.stdout, self.stderr) == (
            other.argv, other.returncode, other.stdout, other.stderr)


def run(argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT, check: bool = True,
        input: str | None = None, cwd: str | None = None, env: dict[str, str] | None = None) -> Result:
    """Run `argv`, capture its output as text, and raise `CommandFailed` on failure."""
    try:
        if cwd is None:
            returncode, out, err = _spawn_and_read(list(argv), timeout, input, env)
        else:   # posix_spawn cannot change directory: subprocess does (no caller needs it today)
            returncode, out, err = _subprocess_run(list(argv), timeout, input, cwd, env)
    except _Timeout as exc:
        raise CommandFailed(argv, None, exc.stdout.decode(), exc.stderr.decode(), timed_out=True) from None
    except FileNotFoundError:
        raise GearError(f"command not found: {argv[0]}") from None
    result = Result(list(argv), returncode, out, err)
    if check and returncode != 0:
        raise CommandFailed(argv, returncode, out, err)
    return result


class _Timeout(Exception):
    def __init__(self, stdout: bytes, stderr: bytes):
        self.stdout, self.stderr = stdout, stderr


def _text(data: bytes) -> str:
    """Bytes as subprocess's text mode gives them: its encoding, and universal newlines."""
    if sys.flags.utf8_mode:
        encoding = "utf-8"
    else:
        import _locale  # built in; locale.getencoding is this function

        encoding = _locale.getencoding()
    return data.decode(encoding).replace("\r\n", "\n").replace("\r", "\n")


def _encoded(text: str) -> bytes:
    if sys.flags.utf8_mode:
        return text.encode("utf-8")
    import _locale

    return text.encode(_locale.getencoding())


def spawn(argv: list[str], env: dict[str, str] | None, file_actions: list[tuple[int, ...]]) -> int:
    """Start argv as subprocess would: PATH looked up in `env`'s PATH, the first error other than
    'not found' reported, SIGPIPE and SIGXFSZ back to their defaults (Python ignores them)."""
    import _signal  # type: ignore[import-not-found]  # built in; `signal` would import enum

    environment = os.environ if env is None else env
    defaults = [getattr(_signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(_signal, name)]
    closefrom = getattr(os, "POSIX_SPAWN_CLOSEFROM", None)
    if closefrom is not None:
        actions = [*file_actions, (closefrom, 3)]
    else:   # before Python 3.13: close what the child would inherit, one by one
        actions = [*file_actions, *((os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds())]
    program = argv[0]
    if os.path.dirname(program):
        candidates = [program]
    else:
        candidates = [os.path.join(directory, program) for directory in exec_path(environment)]
    first_error: OSError | None = None
    last_error: OSError = FileNotFoundError(2, "No such file or directory", program)
    for candidate in candidates:
        if len(candidates) > 1 and not os.path.exists(candidate):
            continue   # what the spawn would say (not found), without a clone and exec that fail (~0.5 ms each)
        try:
            return os.posix_spawn(candidate, argv, environment, file_actions=actions, setsigdef=defaults)
        except (FileNotFoundError, NotADirectoryError) as exc:
            last_error = exc
        except OSError as exc:
            last_error = exc
            first_error = first_error or exc
    raise first_error or last_error


def exec_path(environment: Mapping[str, str]) -> list[str]:
    """os.get_exec_path(environment), without the `warnings` module it imports (0.4 ms before a command
    starts, on the fast path of `gear status`)."""
    path = environment.get("PATH")
    return (os.defpath if path is None else path).split(os.pathsep)


def _inheritable_fds() -> list[int]:
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if fd > 2 and os.get_inheritable(fd):
                found.append(fd)
        except OSError:
            pass   # the directory's own descriptor, closed by now
    return found


def _spawn_and_read(argv: list[str], timeout: float, input: str | None,
                    env: dict[str, str] | None) -> tuple[int, str, str]:
    import select
    import time

    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    in_read = in_write = -1
    ours = [out_read, out_write, err_read, err_write]
    try:
        actions: list[tuple[int, ...]] = [(os.POSIX_SPAWN_DUP2, out_write, 1), (os.POSIX_SPAWN_DUP2, err_write, 2)]
        if input is not None:
            in_read, in_write = os.pipe()
            ours += [in_read, in_write]
            actions.insert(0, (os.POSIX_SPAWN_DUP2, in_read, 0))
        pid = spawn(argv, env, actions)
    except BaseException:
        for fd in ours:
            os.close(fd)
        raise
    os.close(out_write)
    os.close(err_write)
    if in_read != -1:
        os.close(in_read)
    chunks: dict[int, list[bytes]] = {out_read: [], err_read: []}
    pending = _encoded(input) if input is not None else b""
    poller = select.poll()
    for fd in chunks:
        poller.register(fd, select.POLLIN)
    if in_write != -1:
        if pending:
            os.set_blocking(in_write, False)
            poller.register(in_write, select.POLLOUT)
        else:
            os.close(in_write)
            in_write = -1
    deadline = time.monotonic() + timeout
    open_fds = len(chunks) + (in_write != -1)
    try:
        while open_fds:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise _Timeout(b"".join(chunks[out_read]), b"".join(chunks[err_read]))
            for fd, _event in poller.poll(left * 1000):
                if fd == in_write:
                    try:
                        pending = pending[os.write(fd, pending[:65536]):]
                    except BrokenPipeError:
                        pending = b""
                    if not pending:
                        poller.unregister(fd)
                        os.close(fd)
                        in_write = -1
                        open_fds -= 1
                    continue
                data = os.read(fd, 65536)
                if data:
                    chunks[fd].append(data)
                else:
                    poller.unregister(fd)
                    open_fds -= 1
        status = _wait(pid, deadline)   # both pipes closed: it has ended, or will within the time left
        if status is None:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise _Timeout(b"".join(chunks[out_read]), b"".join(chunks[err_read]))
    except BaseException as exc:
        if not isinstance(exc, _Timeout):
            try:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            except OSError:
                pass
        raise
    finally:
        for fd in (out_read, err_read, in_write):
            if fd != -1:
                os.close(fd)
    return os.waitstatus_to_exitcode(status), _text(b"".join(chunks[out_read])), _text(b"".join(chunks[err_read]))


def _wait(pid: int, deadline: float) -> int | None:
    """The child's wait status, or None if it is still running at the deadline."""
    import time

    delay = 0.0005
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _subprocess_run(argv: list[str], timeout: float, input: str | None, cwd: str,
                    env: dict[str, str] | None) -> tuple[int, str, str]:
    import subprocess

    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input, cwd=cwd, env=env)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, bytes) else (exc.stdout or "").encode()
        err = exc.stderr if isinstance(exc.stderr, bytes) else (exc.stderr or "").encode()
        raise _Timeout(out, err) from None
    return proc.returncode, proc.stdout, proc.stderr


def run_attached(argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Run `argv` with the terminal's stdin/stdout/stderr; return its exit code."""
    import subprocess

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
    import subprocess
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
