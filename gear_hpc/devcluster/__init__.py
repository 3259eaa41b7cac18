"""The local single-machine cluster (SPEC §12), driven by devcluster.sh."""

from __future__ import annotations

from pathlib import Path

SCRIPT = Path(__file__).with_name("devcluster.sh")
