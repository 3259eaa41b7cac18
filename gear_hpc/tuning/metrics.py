"""The metrics an execution's program logged: JSON lines in its working directory.

The program writes `/hyperai/home/.gear/metrics.jsonl` (METRICS_FILE, relative
to the working directory), through `gear_metrics.log_metric`,
`openbayestool.log_metric`, or by hand. A line is either one metric,
`{"name": "acc", "value": 0.91, "step": 3}`, or several at once,
`{"acc": 0.91, "loss": 0.2, "step": 3}` (every number but `step` and `time`
is a metric). Lines that are not JSON, or hold no number, are skipped and
counted. The file is the program's: it is read without following a
symbolic link and only if it is a regular file, at most MAX_BYTES of it.
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METRICS_FILE = ".gear/metrics.jsonl"
MAX_BYTES = 64 * 1024 * 1024
_NOT_METRICS = ("step", "time", "name", "value", "epoch")


@dataclass(frozen=True)
class Point:
    name: str
    value: float
    step: int | None = None
    time: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "step": self.step, "time": self.time}


@dataclass
class Metrics:
    points: list[Point]
    skipped: int = 0        # lines that were not a metric

    def last(self) -> dict[str, float]:
        """The last value of each metric, in the order each first appeared."""
        values: dict[str, float] = {}
        for point in self.points:
            values[point.name] = point.value
        return values

    def series(self, name: str) -> list[Point]:
        return [p for p in self.points if p.name == name]


def read(workdir: str | Path) -> Metrics:
    """The metrics of the execution whose working directory is `workdir` (none if it logged none)."""
    text = _read_file(Path(workdir))
    points: list[Point] = []
    skipped = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        found = parse_line(line)
        if found:
            points.extend(found)
        else:
            skipped += 1
    return Metrics(points, skipped)


def parse_line(line: str) -> list[Point]:
    try:
        record = json.loads(line)
    except ValueError:
        return []
    if not isinstance(record, dict):
        return []
    raw_step = record.get("step", record.get("epoch"))
    step = raw_step if isinstance(raw_step, int) and not isinstance(raw_step, bool) else None
    raw_time = record.get("time")
    moment = float(raw_time) if isinstance(raw_time, (int, float)) and _is_number(raw_time) else None
    if isinstance(record.get("name"), str) and "value" in record:
        return [Point(record["name"], float(record["value"]), step, moment)] if _is_number(record["value"]) else []
    return [Point(str(key), float(value), step, moment) for key, value in record.items()
            if key not in _NOT_METRICS and _is_number(value)]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read_file(workdir: Path) -> str:
    """The file's text, opened step by step without following a link; '' if there is none."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        top = os.open(workdir, flags | os.O_DIRECTORY)
    except OSError:
        return ""
    fds = [top]
    try:
        parts = METRICS_FILE.split("/")
        for part in parts[:-1]:
            fds.append(os.open(part, flags | os.O_DIRECTORY, dir_fd=fds[-1]))
        fd = os.open(parts[-1], flags, dir_fd=fds[-1])
        fds.append(fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        chunks = []
        left = MAX_BYTES
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks).decode("utf-8", errors="replace")
    except OSError:
        return ""
    finally:
        for fd in reversed(fds):
            os.close(fd)
