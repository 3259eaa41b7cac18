"""A continuation's overlay never outlives its job, and a parent it cannot
read is refused without a byte or mode of the parent changed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import User, tree_state
from gear_hpc.devcluster import SCRIPT

LOCK = "mkdir locked && echo a > locked/f && chmod 000 locked && echo kept > top.txt"


@pytest.fixture(scope="module")
def owner() -> User:
    # A user of its own: the rsync shim below fakes a failure of this user's jobs only.
    return User("overlay1")


def _as_root(*argv: str) -> str:
    """Run inside the cluster's namespace as root (its mounts and processes)."""
    return subprocess.run(["bash", str(SCRIPT), "exec", "--user", "root", "--", *argv],
                          capture_output=True, text=True, timeout=60).stdout


def _overlay_left(execution_dir: Path) -> list[str]:
    """The fuse mounts and fuse-overlayfs daemons still about for this execution."""
    mounts = [line for line in _as_root("cat", "/proc/self/mountinfo").splitlines()
              if "fuse" in line and str(execution_dir) in line]
    daemons = [line for line in _as_root("pgrep", "-a", "fuse-overlayfs").splitlines() if str(execution_dir) in line]
    return mounts + daemons



def _last_id(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def _locked_parent(owner: User, container: str) -> tuple[str, Path]:
    code = owner.make_dir({"x": ""})
    parent = _last_id(owner.gear("run", "-c", container, "--code", str(code), "-f", "--", "bash", "-c", LOCK))
    record = owner.gear_json("show", parent)
    assert record["status"] == "completed", record
    home = Path(record["workdir"])
    # Sealing gave it read bits back (a closed execution is readable behind its container's gate):
    # its owner takes them again by hand, which nothing stops.
    assert (home / "locked").lstat().st_mode & 0o777 == 0o555
    owner.run("chmod", "000", str(home / "locked"), check=True)
    return parent, home


def test_a_parent_with_an_unreadable_directory_is_refused_with_a_note(owner, container):
    parent, parent_home = _locked_parent(owner, container)
    before = tree_state(parent_home)
    result = owner.gear("continue", parent, "-f", "--", "true")
    assert result.returncode != 0 and "cannot be read or entered" in result.stderr, result.stderr
    child = result.stdout.strip().splitlines()[-1]
    record = owner.gear_json("show", child)
    assert record["status"] == "failed", record
    assert f"cannot continue {parent}: its directory locked (d---------) cannot be read" in record["note"]
    assert tree_state(parent_home) == before
    assert _overlay_left(parent_home.parent.parent / child.split("/")[1]) == []
    result = owner.gear("delete", container, "--yes")
    assert result.returncode == 0, result.stderr
    assert not (owner.storage / "containers" / container).exists()


def test_an_overlay_is_released_when_the_job_fails_after_mounting_it(owner, container):
    """Fault injection: the copy-in of the code (after the overlay is mounted) fails."""
    code = owner.make_dir({"x": ""})
    parent = _last_id(owner.gear("run", "-c", container, "--code", str(code), "-f", "--", "bash", "-c",
                                 "echo kept > top.txt"))
    parent_home = Path(owner.gear_json("show", parent)["workdir"])
    before = tree_state(parent_home)
    shims = owner.make_dir({"rsync": '#!/bin/sh\ncase "$*" in *"/code/ "*) [ -n "$SLURM_JOB_ID" ] && exit 11 ;; esac\n'
                                     'exec /usr/bin/rsync "$@"\n'})
    os.chmod(shims / "rsync", 0o755)
    result = owner.run("bash", "-c", f'PATH={shims}:"$PATH" exec gear continue {parent} -f -- true')
    assert result.returncode != 0, result.stderr
    child = result.stdout.strip().splitlines()[-1]
    record = owner.gear_json("show", child)
    assert record["status"] == "failed" and "could not copy the code" in record["note"], record
    assert _overlay_left(parent_home.parent.parent / child.split("/")[1]) == []
    assert tree_state(parent_home) == before
    result = owner.gear("delete", container, "--yes")
    assert result.returncode == 0, result.stderr
