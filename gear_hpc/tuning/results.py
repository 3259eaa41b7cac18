"""A tuning's trials, ranked by its goal metric (`gear tune show`, `gear tune plot`).

A tuning is found by what its sweep wrote, `C/<first>/sweep/tuning.json`
(executions/sweep.py): what was asked (metric, goal, parameters) and which
executions are its trials. Each trial's metrics are read from its working
directory (metrics.py); its status from the ledger, refreshed by the caller.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.errors import NotFound, UsageError
from .metrics import Metrics, read

if TYPE_CHECKING:
    from ..ledger.db import Execution, Ledger
    from ..storage.disk import UserStorage

SWEEP_DIR = "sweep"          # as executions/sweep.py names them
TUNING_FILE = "tuning.json"
BAYES_PREFIX = "tuning-"     # a Bayesian tuning's directory (executions/tuner.py)


@dataclass
class Tuning:
    container: str
    first: int
    count: int
    asked: dict[str, Any]    # tuning.json as the sweep (or a Bayesian driver) wrote it
    directory: Path | None = None   # a Bayesian tuning's own directory (executions/tuner.py)

    @property
    def numbers(self) -> list[int]:
        if self.directory is not None:
            return [int(n) for n in self.asked.get("numbers") or []]
        return list(range(self.first, self.first + self.count))

    @property
    def label(self) -> str:
        if self.directory is not None:
            return f"{self.container}/{self.directory.name}"
        return f"{self.container}/{self.first}-{self.first + self.count - 1}"

    @property
    def parameter_names(self) -> list[str]:
        names = [p["name"] for p in self.asked.get("parameter_specs") or []]
        for trial in self.asked.get("trials") or []:
            names += [n for n in trial if n not in names]
        return names

    @property
    def log_scale(self) -> set[str]:
        return {p["name"] for p in self.asked.get("parameter_specs") or [] if p.get("scale_type") == "LOG"}


@dataclass
class Trial:
    execution: Execution
    values: dict[str, Any]
    metrics: Metrics
    score: float | None = None
    side: dict[str, float | None] = field(default_factory=dict)

    def to_json(self, rank: int | None) -> dict[str, Any]:
        return {"rank": rank, "execution": self.execution.id, "status": self.execution.status,
                "params": self.values, "metric": self.score, "side_metrics": self.side,
                "metrics": self.metrics.last()}


def find(storage: UserStorage, target: str) -> Tuning:
    """The tuning named by C (its latest) or C/N (the one whose trials include C/N)."""
    from ..base.names import check_name, parse_execution_id

    container, _, number_text = target.partition("/")
    number = parse_execution_id(target)[1] if number_text else None
    container_dir = storage.container_dir(check_name(container, "container name"))
    found: list[Tuning] = []
    for path in container_dir.glob(f"*/{SWEEP_DIR}/{TUNING_FILE}"):
        try:
            asked = json.loads(path.read_text())
            found.append(Tuning(container, int(asked["first"]), int(asked["count"]), asked))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    for path in container_dir.glob(f"{BAYES_PREFIX}*/{TUNING_FILE}"):   # Bayesian: executions/tuner.py
        try:
            asked = json.loads(path.read_text())
            numbers = [int(n) for n in asked.get("numbers") or []]
        except (OSError, ValueError, TypeError):
            continue
        found.append(Tuning(container, min(numbers, default=0), len(numbers), asked, path.parent))
    found.sort(key=lambda t: str(t.asked.get("created_at") or ""))
    if number is not None:
        found = [t for t in found if number in t.numbers]
    if not found:
        what = f"{container}/{number}" if number is not None else f"container {container!r}"
        raise NotFound(f"no tuning or sweep in {what}; start one with `gear tune` or `gear run --param k=v1,v2`")
    return found[-1]


def trials(ledger: Ledger, tuning: Tuning, metric: str | None = None, goal: str | None = None,
           side_metrics: list[str] | None = None) -> tuple[list[Trial], str | None, str]:
    """Every trial, best first by `metric` (default: the tuning's, else the first any trial logged) and
    `goal`; trials without a value come last. Returns the trials, the metric and the goal."""
    wanted = set(tuning.numbers)
    executions = {e.number: e for e in ledger.executions(tuning.container) if e.number in wanted}
    names = tuning.parameter_names
    found = [Trial(e, {n: e.params.get(n) for n in names if n in e.params}, read(e.workdir))
             for n, e in sorted(executions.items())]
    metric = metric or tuning.asked.get("hyperparameter_metric")
    if metric is None:
        metric = next((t.metrics.points[0].name for t in found if t.metrics.points), None)
    goal = (goal or tuning.asked.get("goal") or "MAXIMIZE").upper()
    if goal not in ("MAXIMIZE", "MINIMIZE"):
        raise UsageError(f"goal {goal!r}: expected MAXIMIZE or MINIMIZE")
    sides = side_metrics if side_metrics is not None else list(tuning.asked.get("side_metrics") or [])
    for trial in found:
        last = trial.metrics.last()
        trial.score = last.get(metric) if metric else None
        trial.side = {name: last.get(name) for name in sides}
    sign = -1.0 if goal == "MAXIMIZE" else 1.0
    found.sort(key=lambda t: (t.score is None, sign * t.score if t.score is not None else 0.0, t.execution.number))
    return found, metric, goal
