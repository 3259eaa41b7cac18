"""The local single-machine cluster (docs/devcluster.md), driven by devcluster.sh and its parts/."""

from __future__ import annotations

from pathlib import Path

SCRIPT = Path(__file__).with_name("devcluster.sh")
