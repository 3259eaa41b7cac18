"""A small flat code directory is copied without rsync, exactly as rsync -a copies it (data/staging.py)."""

from __future__ import annotations

import os
import subprocess

import pytest

from gear_hpc.data import staging


def _state(root):
    out = {}
    for path in [root, *sorted(root.iterdir())]:
        info = path.lstat()
        out[path.name if path != root else "."] = (info.st_mode, info.st_mtime_ns,
                                                   path.read_bytes() if path.is_file() else b"")
    return out


def test_the_small_copy_is_rsyncs(tmp_path):
    code = tmp_path / "src"
    code.mkdir(mode=0o750)
    (code / "train.py").write_text("print(1)\n")
    (code / "run.sh").write_text("#!/bin/sh\n")
    (code / "run.sh").chmod(0o755)
    (code / "empty").write_bytes(b"")
    os.utime(code / "train.py", ns=(1_000_000_000, 1_500_000_000_123))
    os.utime(code, ns=(1_000_000_000, 1_600_000_000_000))
    by_rsync = tmp_path / "rsync"
    by_rsync.mkdir(mode=0o700)
    subprocess.run(["rsync", "-a", "--safe-links", "--", f"{code}/", f"{by_rsync}/"], check=True)
    ours = tmp_path / "ours"
    staging.snapshot_code(code, ours)
    assert _state(ours) == _state(by_rsync)


@pytest.mark.parametrize("make", [
    lambda d: (d / "sub").mkdir(),
    lambda d: (d / "link").symlink_to("/etc/passwd"),
    lambda d: (d / staging.IGNORE_FILE).write_text("*.log\n"),
    lambda d: [(d / f"f{i}").write_text("x") for i in range(staging.SMALL_FILES + 1)],
    lambda d: (d / "big").write_bytes(b"x" * (staging.SMALL_BYTES + 1)),
])
def test_anything_else_is_left_to_rsync(tmp_path, make):
    code = tmp_path / "src"
    code.mkdir()
    make(code)
    target = tmp_path / "t"
    target.mkdir()
    assert staging._copy_small(code, target) is None
    assert list(target.iterdir()) == []
