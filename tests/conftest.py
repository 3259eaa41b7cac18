"""Shared fixtures: every test gets its own site configuration and storage root.

No test touches /etc/gear, /srv/gear or a real user's files unless it is a
cluster test (marker `cluster`), which runs `gear` inside the local cluster.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import write_executable

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def gear_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A private site config (with a placeholder image) and storage root."""
    site = tmp_path / "site"
    shutil.copytree(REPO / "site-config", site)
    image = tmp_path / "python.sif"
    image.write_text("placeholder image for tests that never start a job\n")
    images = (site / "images.yaml").read_text().replace("/var/lib/gear-devcluster/images/python.sif", str(image))
    (site / "images.yaml").write_text(images)
    storage = tmp_path / "storage"
    (storage / "users").mkdir(parents=True)
    monkeypatch.setenv("GEAR_SITE_CONFIG", str(site))
    monkeypatch.setenv("GEAR_STORAGE_ROOT", str(storage))
    monkeypatch.delenv("GEAR_SLURM_BIN", raising=False)
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("print('hello')\n")
    return {"site": site, "storage": storage, "code": code, "tmp": tmp_path}


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Slurm commands for fault injection and call counting (never the happy path of a job).

    Returns a function that installs a named command with a bash body; every
    call is appended to calls.log.
    """
    bin_dir = tmp_path / "slurm-bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    monkeypatch.setenv("GEAR_SLURM_BIN", str(bin_dir))

    def install(name: str, body: str) -> Path:
        return write_executable(bin_dir / name, f"#!/bin/bash\necho \"{name} $*\" >> {log}\n{body}\n")

    install.calls = lambda: [line for line in log.read_text().split("\n") if line] if log.exists() else []  # type: ignore[attr-defined]
    install.bin_dir = bin_dir  # type: ignore[attr-defined]
    return install
