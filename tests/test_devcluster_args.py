"""`gear devcluster up --nodes N --slurm R`: what is refused is refused in one line, before anything
is touched (a state directory of its own here: nothing is built or started)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gear_hpc.devcluster import SCRIPT
from helpers import gear


@pytest.mark.skipif(os.geteuid() != 0, reason="devcluster.sh up checks for root first")
@pytest.mark.parametrize("args,words", [
    (["--nodes", "x"], "--nodes needs a number from 0 to 16"),
    (["--nodes", "17"], "--nodes needs a number from 0 to 16"),
    (["--nodes"], "--nodes needs a number from 0 to 16"),
    (["--slurm", "25.05"], "--slurm needs a release: 24.11 or 26.05"),
    (["--slurm", "-x"], "--slurm needs a release: 24.11 or 26.05"),
    (["--nodse", "2"], "up: unknown option --nodse"),
])
def test_bad_shapes_are_refused_before_anything_happens(tmp_path: Path, args, words):
    state = tmp_path / "state"
    result = subprocess.run(["bash", str(SCRIPT), "up", *args], capture_output=True, text=True,
                            env={**os.environ, "GEAR_DEVCLUSTER_DIR": str(state),
                                 "GEAR_DEVCLUSTER_STORAGE": str(tmp_path / "dc-storage")})
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(f"devcluster: error: {words}"), \
        result.stderr
    assert not state.exists() and not (tmp_path / "dc-storage").exists()


@pytest.mark.parametrize("args", [["--nodes", "-1"], ["--nodes", "99"], ["--slurm", "23.11"]])
def test_the_cli_refuses_them_too(args):
    result = gear("devcluster", "up", *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Invalid value" in result.stderr
