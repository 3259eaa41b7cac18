"""Helpers shared by the tests."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def write_executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def gear(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `gear` entry point in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "gear_hpc.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=str(REPO))
