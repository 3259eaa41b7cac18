"""Metrics from inside a gear execution: `from gear_metrics import log_metric`.

Standard library only. gear puts this directory on the PYTHONPATH of every
execution (bound read-only at /opt/gear/python), so any image with Python
has it. Each call appends one JSON line to /hyperai/home/.gear/metrics.jsonl
(GEAR_METRICS_FILE names another file), which `gear metrics C/N`, `gear show`
and `gear tune show` read. Writing those lines by hand works the same.
"""

from __future__ import annotations

import json
import math
import os
import time

DEFAULT_FILE = "/hyperai/home/.gear/metrics.jsonl"


def metrics_file() -> str:
    path = os.environ.get("GEAR_METRICS_FILE")
    if path:
        return path
    # Outside an execution (trying a script on a laptop): beside the current directory.
    return DEFAULT_FILE if os.path.isdir("/hyperai/home") else os.path.join(".gear", "metrics.jsonl")


def log_metric(name: str, value: float, step: int | None = None) -> None:
    """Record `value` of metric `name` (at `step`, if given) with the time."""
    if not isinstance(name, str) or not name:
        raise ValueError("a metric needs a name")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"metric {name!r}: {value!r} is not a finite number")
    record: dict[str, object] = {"name": name, "value": number, "time": round(time.time(), 3)}
    if step is not None:
        record["step"] = int(step)
    path = metrics_file()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    # One write of one line with O_APPEND: lines of concurrent writers never interleave.
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def log_metrics(values: dict[str, float], step: int | None = None) -> None:
    """Several metrics at once."""
    for name, value in values.items():
        log_metric(name, value, step)
