"""squeue, asked once for all of the user's jobs: its command line, its output read, and a start that does not wait.

A leaf (os, select, base/facts.py, and base/runner.py's spawn): the fast
path of `gear status` (cli/fastpath.py) starts squeue here, reads the
ledger while squeue talks to the controller, and then collects the answer,
without `subprocess` (12 ms to import inside the cluster, twice squeue's own
time). slurm/jobs.py reads the same output into
SlurmJob records for everything else. Fields are separated by characters a
field cannot hold (ood_core #135: a multi-line comment broke line-based
parsing).
"""

from __future__ import annotations

import os

from ..base.facts import JOB_ENDED, JOB_PENDING, JOB_RUNNING

UNIT, RECORD = "\x1f", "\x1e"
FIELDS = ("job_id", "state", "reason", "comment", "end_time", "nodes")
SQUEUE_FORMAT = UNIT.join(["%i", "%T", "%r", "%k", "%e", "%N"]) + RECORD
QUERY_TIMEOUT = 30.0

# A job's phase, as gear needs to know it.
PENDING, RUNNING, ENDED = JOB_PENDING, JOB_RUNNING, JOB_ENDED
# Slurm's long and short state codes; any other state has ended.
STATES = {
    "PENDING": PENDING, "PD": PENDING, "CONFIGURING": PENDING, "CF": PENDING,
    "REQUEUED": PENDING, "RQ": PENDING, "REQUEUE_HOLD": PENDING, "REQUEUE_FED": PENDING,
    "RESV_DEL_HOLD": PENDING, "SUSPENDED": RUNNING, "S": RUNNING,
    "RUNNING": RUNNING, "R": RUNNING, "COMPLETING": RUNNING, "CG": RUNNING,
    "SIGNALING": RUNNING, "SO": RUNNING, "STAGE_OUT": RUNNING, "RESIZING": RUNNING,
    "STOPPED": RUNNING, "ST": RUNNING,
}


def phase(state: str) -> str:
    """pending, running or ended, for one of Slurm's job states."""
    return STATES.get(state, ENDED)


def slurm_command(name: str) -> str:
    """A Slurm command by name, or in GEAR_SLURM_BIN (a site's directory, or a fault-injection test's)."""
    directory = os.environ.get("GEAR_SLURM_BIN")
    return os.path.join(directory, name) if directory else name


def submit_env() -> dict[str, str] | None:
    """sbatch's environment, for both submit paths (slurm/jobs.py, executions/quick_submit.py).

    sbatch passes our environment to the job. Submitted from inside a container
    (`gear run` in a Jupyter workspace), the container's Apptainer variables
    would reach the job's own `apptainer exec` and break it ("mount source
    /output doesn't exist"): leave them out. None: the environment as it is.
    """
    if "APPTAINER_CONTAINER" not in os.environ and "SINGULARITY_CONTAINER" not in os.environ:
        return None
    return {key: value for key, value in os.environ.items()
            if not key.startswith(("APPTAINER", "SINGULARITY")) and key != "LD_LIBRARY_PATH"}


def squeue_argv() -> list[str]:
    """All of the user's jobs that Slurm still knows (`--states=all`: those that ended less than MinJobAge ago)."""
    return [slurm_command("squeue"), "--me", "--states=all", "--noheader", f"--format={SQUEUE_FORMAT}"]


def parse(stdout: str) -> dict[str, tuple[str, ...]]:
    """squeue's answer as job id -> its fields (FIELDS, the first being the line's own id).

    A line of collapsed pending array tasks (`123_[2-999%1]`) stands for each
    of its tasks; each gets the line's fields under its own id.
    """
    jobs: dict[str, tuple[str, ...]] = {}
    for record in stdout.split(RECORD):
        record = record.strip("\n")
        if not record:
            continue
        parts = tuple(record.split(UNIT))
        if len(parts) != len(FIELDS):
            continue
        for job_id in expand_job_id(parts[0]):
            jobs[job_id] = parts if job_id == parts[0] else (job_id, *parts[1:])
    return jobs


def expand_job_id(text: str) -> list[str]:
    """squeue's name of one line: a job (`123`), an array task (`123_5`), or the
    pending tasks of an array collapsed into one line (`123_[5-999%10]`,
    `123_[1,3,7-9]`), as the task ids it stands for."""
    base, sep, tasks = text.partition("_")
    if not sep or not tasks.startswith("["):
        return [text]
    body = tasks.strip("[]").split("%")[0]   # %N: the array's limit of tasks at once
    ids: list[str] = []
    for part in body.split(","):
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit() and ":" not in high):
            return [text]
        step = 1
        if dash and ":" in high:
            high, _, step_text = high.partition(":")
            if not high.isdigit() or not (step_text or "1").isdigit():
                return [text]
            step = int(step_text or 1)
            if step < 1:
                return [text]
        ids += [f"{base}_{task}" for task in range(int(low), int(high if dash else low) + 1, step)]
    return ids


class Started:
    """A command started with its output going to pipes; `finish` collects it.

    Started before other work and finished after it, so the two overlap.
    """

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        from ..base.runner import spawn  # as runner.run starts a command: PATH, signals, no inherited descriptors

        self.argv = argv
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        try:
            self.pid = spawn(argv, env, [(os.POSIX_SPAWN_DUP2, out_write, 1), (os.POSIX_SPAWN_DUP2, err_write, 2)])
        except BaseException:
            for fd in (out_read, out_write, err_read, err_write):
                os.close(fd)
            raise
        os.close(out_write)
        os.close(err_write)
        self._fds = {out_read: bytearray(), err_read: bytearray()}
        self._stdout_fd, self._stderr_fd = out_read, err_read
        self.finished = False

    def finish(self, timeout: float = QUERY_TIMEOUT) -> tuple[int | None, str, str]:
        """(exit code, stdout, stderr); exit code None if it did not end within `timeout` (it is killed)."""
        import select
        import time

        deadline = time.monotonic() + timeout
        poller = select.poll()
        for fd in self._fds:
            poller.register(fd, select.POLLIN)
        open_fds = set(self._fds)
        try:
            while open_fds:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._kill()
                    return None, self._text(self._stdout_fd), self._text(self._stderr_fd)
                for fd, _ in poller.poll(left * 1000):
                    chunk = os.read(fd, 65536)
                    if chunk:
                        self._fds[fd] += chunk
                    else:
                        poller.unregister(fd)
                        open_fds.discard(fd)
            _, status = os.waitpid(self.pid, 0)
        finally:
            self.finished = True
            for fd in self._fds:
                os.close(fd)
        code = os.waitstatus_to_exitcode(status)
        return code, self._text(self._stdout_fd), self._text(self._stderr_fd)

    def abandon(self) -> None:
        """Its answer is not needed after all: end it now (unless `finish` collected it)."""
        if not self.finished:
            self.finished = True
            self._kill()
            for fd in self._fds:
                os.close(fd)

    def _kill(self) -> None:
        try:
            os.kill(self.pid, 9)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)

    def _text(self, fd: int) -> str:
        return bytes(self._fds[fd]).decode(errors="replace")


def start_query() -> Started:
    """squeue for all of the user's jobs, started now; `finish()` then `parse()` its stdout."""
    return Started(squeue_argv())
