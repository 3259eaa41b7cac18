"""Timing a batch job from outside (and cleaning up after it), shared by the benchmarks.

The job's phases are read from its own status records: the batch script
writes each to `status.json.$BASHPID.tmp` and renames it, so the moments
those temporary names appear (inotify, stamped by a reader thread) are when
each phase began, to the millisecond, without polling the job.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import select
import shutil
import stat
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

JOB_TIMEOUT = 900.0


class Watcher:
    """inotify through ctypes: when names appear in watched directories. With
    follow=True, directories created in a watched directory are watched too."""

    IN_MOVED_TO, IN_CREATE, IN_ISDIR = 0x80, 0x100, 0x40000000

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.paths: dict[int, str] = {}
        self.follow: set[int] = set()
        self.events: list[tuple[float, str, str, int]] = []  # (time, directory, name, mask)
        self.lock = threading.Lock()
        self.stopped = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def watch(self, path: str | Path, follow: bool = False) -> None:
        wd = self.libc.inotify_add_watch(self.fd, os.fsencode(str(path)), self.IN_CREATE | self.IN_MOVED_TO)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path} failed")
        self.paths[wd] = str(path)
        if follow:
            self.follow.add(wd)

    def _loop(self) -> None:
        while not self.stopped:
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if not ready:
                continue
            now = time.time()
            data = os.read(self.fd, 1 << 16)
            offset = 0
            while offset < len(data):
                wd, mask, _cookie, length = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16:offset + 16 + length].rstrip(b"\0").decode(errors="replace")
                offset += 16 + length
                directory = self.paths.get(wd)
                if directory is None:
                    continue
                if wd in self.follow and mask & self.IN_CREATE and mask & self.IN_ISDIR:
                    try:
                        self.watch(os.path.join(directory, name))
                    except OSError:  # gone already
                        pass
                with self.lock:
                    self.events.append((now, directory, name, mask))

    def created(self, directory: str | Path) -> list[tuple[float, str]]:
        """(time, name) of every name created in `directory`, in order."""
        with self.lock:
            return [(t, n) for t, d, n, m in self.events if d == str(directory) and m & self.IN_CREATE]

    def phases(self, exec_dir: Path) -> list[float]:
        """When the batch script's main shell began each status record (syncing, running, saving,
        final). Progress records of a copy come from a pipeline's subshell (another pid), so the
        main shell's temporary files, in order, are the phases."""
        tmps = [(t, n) for t, n in self.created(exec_dir) if re.fullmatch(r"status\.json\.\d+\.tmp", n)]
        if not tmps:
            return []
        main = tmps[0][1]
        return [t for t, n in tmps if n == main]

    def close(self) -> None:
        self.stopped = True
        self.thread.join()
        os.close(self.fd)


def submitted(proc: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    """(execution id, Slurm job id) from what `gear run|continue` printed, or RuntimeError."""
    match = re.search(r"as Slurm job (\d+)", proc.stderr)
    if proc.returncode != 0 or not match:
        raise RuntimeError(f"{' '.join(map(str, proc.args))} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.strip().splitlines()[-1], match.group(1)


def job_gone(job_id: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True).stdout
    return out.strip() not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED")


def wait_for_job(job_id: str, done: Callable[[], bool], what: str, timeout: float = JOB_TIMEOUT) -> None:
    """Wait until `done()` (a cheap file check, every 50 ms) and then until Slurm lets the job go.

    squeue is asked only every 2 s while waiting, and once the job is done:
    the observer should not compete with the job it times for the CPUs.
    """
    deadline = time.monotonic() + timeout
    next_ask = time.monotonic() + 2.0
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what} (job {job_id})")
        if time.monotonic() > next_ask:
            if job_gone(job_id):
                return  # ended without what we waited for: the caller reports it
            next_ask = time.monotonic() + 2.0
        time.sleep(0.05)
    while not job_gone(job_id):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for job {job_id} of {what} to end")
        time.sleep(0.2)


def remove_tree(path: Path) -> None:
    """rm -rf of a benchmark's own tree, which gear made partly read-only."""
    if not path.exists():
        return
    os.chmod(path, stat.S_IMODE(path.lstat().st_mode) | stat.S_IRWXU)
    for directory, subdirs, _files in os.walk(path):
        for name in subdirs:
            child = os.path.join(directory, name)
            if not os.path.islink(child):
                try:
                    os.chmod(child, stat.S_IMODE(os.lstat(child).st_mode) | stat.S_IRWXU)
                except OSError:  # gone meanwhile
                    pass
    shutil.rmtree(path, ignore_errors=True)
