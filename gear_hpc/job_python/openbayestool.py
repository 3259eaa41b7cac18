"""OpenBayes's `openbayestool`, as far as a program run on gear uses it.

`openbayestool.log_metric("acc", 0.91)` records the metric as gear_metrics
does, so a program written for OpenBayes runs unchanged.
"""

from __future__ import annotations

import json
import os

# Beside it on the execution's PYTHONPATH (not a package: imported by its own name).
from gear_metrics import log_metric as _log_metric, metrics_file  # type: ignore[import-not-found,unused-ignore]


def log_metric(name: str, value: float) -> None:
    _log_metric(name, value)


def log_param(name: str, value: object) -> None:
    """Kept beside the metrics (gear_params.json already holds the parameters gear passed)."""
    path = os.path.join(os.path.dirname(metrics_file()) or ".", "params.jsonl")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps({"name": str(name), "value": value}, default=str) + "\n")


def clear_metric() -> None:
    """Forget the metrics logged so far."""
    try:
        os.unlink(metrics_file())
    except FileNotFoundError:
        pass
