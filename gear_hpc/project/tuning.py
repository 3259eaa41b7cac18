"""The `hyper_tuning` section of a project file, checked and typed (docs/project-file.md).

OpenBayes's own form is accepted as it is, including its template's empty
section (`algorithm: ""`, `max_job_count: 0`), which means "no tuning".
Both spellings of the scale are taken: LINEAR / LOG and OpenBayes's
UNIT_LINEAR_SCALE / UNIT_LOG_SCALE; the typed result always says LINEAR or LOG.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .nodes import KeyPath, Located

# A parameter becomes `--name=value` on a command line and a key of gear_params.json.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}\Z")
ALGORITHMS = ("Grid", "Random", "Bayesian")
GOALS = ("MAXIMIZE", "MINIMIZE")
TYPES = ("DISCRETE", "CATEGORICAL", "DOUBLE", "INTEGER")
_SCALES = {"LINEAR": "LINEAR", "LOG": "LOG", "UNIT_LINEAR_SCALE": "LINEAR", "UNIT_LOG_SCALE": "LOG"}
_KEYS = ("parameter_specs", "algorithm", "goal", "hyperparameter_metric", "side_metrics", "max_job_count",
         "parallel_count")
_PARAMETER_KEYS = {
    "DISCRETE": ("name", "type", "discrete_values"),
    "CATEGORICAL": ("name", "type", "categorical_values"),
    "DOUBLE": ("name", "type", "min_value", "max_value", "scale_type"),
    "INTEGER": ("name", "type", "min_value", "max_value", "scale_type"),
}


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    type: str                                         # DISCRETE, CATEGORICAL, DOUBLE or INTEGER
    values: tuple[Any, ...] = ()                      # DISCRETE (numbers) and CATEGORICAL (text)
    min_value: float | int | None = None              # DOUBLE and INTEGER
    max_value: float | int | None = None
    scale_type: str = "LINEAR"                        # LINEAR or LOG


@dataclass(frozen=True)
class Tuning:
    parameter_specs: tuple[ParameterSpec, ...]
    algorithm: str                 # Grid, Random or Bayesian
    goal: str                      # MAXIMIZE or MINIMIZE
    metric: str                    # hyperparameter_metric: the one the goal is about
    side_metrics: tuple[str, ...]
    max_job_count: int             # 0 for Grid: every point of the grid
    parallel_count: int
    raw: dict[str, Any]            # the section as validated, scale types as written
    line: int                      # where the section starts, for errors found later (file:line)


def parse(doc: Located, where: KeyPath) -> Tuning | None:
    """The section at `where` in `doc`; None when it is absent or OpenBayes's empty template."""
    section = _get(doc, where)
    if section is None:
        return None
    if not isinstance(section, dict):
        raise doc.error(where, "expected a mapping (parameter_specs, algorithm, goal, …)")
    for key in section:
        if key not in _KEYS:
            raise doc.error(where + (key,), f"unknown key; the keys of hyper_tuning are {', '.join(_KEYS)}")
    specs = section.get("parameter_specs") or []
    if not section.get("algorithm") and not specs:
        return None  # OpenBayes's template: every field present, all empty
    algorithm = _choice(doc, where + ("algorithm",), section.get("algorithm"), ALGORITHMS)
    goal = _choice(doc, where + ("goal",), section.get("goal"), GOALS)
    metric = section.get("hyperparameter_metric")
    if not isinstance(metric, str) or not metric.strip():
        raise doc.error(where + ("hyperparameter_metric",), "the name of the metric the goal is about is missing")
    side = section.get("side_metrics") or []
    if not isinstance(side, list) or not all(isinstance(m, str) and m for m in side):
        raise doc.error(where + ("side_metrics",), "expected a list of metric names")
    max_jobs = _count(doc, where + ("max_job_count",), section.get("max_job_count", 0), minimum=0)
    parallel = _count(doc, where + ("parallel_count",), section.get("parallel_count", 1), minimum=1)
    if not isinstance(specs, list) or not specs:
        raise doc.error(where + ("parameter_specs",), "expected a list of at least one parameter spec")
    parsed = tuple(_spec(doc, where + ("parameter_specs", i), spec) for i, spec in enumerate(specs))
    seen: set[str] = set()
    for i, spec in enumerate(parsed):
        if spec.name in seen:
            raise doc.error(where + ("parameter_specs", i, "name"), f"parameter {spec.name!r} is given twice")
        seen.add(spec.name)
        if algorithm == "Grid" and spec.type == "DOUBLE":
            raise doc.error(where + ("parameter_specs", i, "type"),
                            f"a Grid cannot take every value of DOUBLE {spec.name!r}; give it as DISCRETE "
                            "values, or use algorithm Random or Bayesian")
    if algorithm != "Grid" and max_jobs == 0:
        raise doc.error(where + ("max_job_count",), f"{algorithm} tuning needs max_job_count (how many trials), "
                                                    "at least 1")
    return Tuning(parsed, algorithm, goal, metric, tuple(side), max_jobs, parallel, section, doc.line(where))


def _get(doc: Located, where: KeyPath) -> Any:
    value: Any = doc.value
    for part in where:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _choice(doc: Located, where: KeyPath, value: Any, allowed: tuple[str, ...]) -> str:
    if value is None or value == "":
        raise doc.error(where, f"missing; one of {' | '.join(allowed)}")
    if not isinstance(value, str) or value not in allowed:
        raise doc.error(where, f"{value!r} is not {' | '.join(allowed)}")
    return value


def _count(doc: Located, where: KeyPath, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise doc.error(where, f"{value!r} is not a whole number ≥ {minimum}")
    return value


def _number(doc: Located, where: KeyPath, value: Any, integer: bool) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise doc.error(where, f"{value!r} is not {'a whole number' if integer else 'a number'}")
    return value


def _spec(doc: Located, where: KeyPath, spec: Any) -> ParameterSpec:
    if not isinstance(spec, dict):
        raise doc.error(where, "expected a mapping: {name: …, type: …, …}")
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise doc.error(where + ("name",), f"{name!r} is not a parameter name (a letter or '_', then letters, "
                                           "digits, '_', '-', '.')")
    kind = _choice(doc, where + ("type",), spec.get("type"), TYPES)
    for key in spec:
        if key not in _PARAMETER_KEYS[kind]:
            raise doc.error(where + (key,), f"unknown key for a {kind} parameter; its keys are "
                                            f"{', '.join(_PARAMETER_KEYS[kind])}")
    if kind in ("DISCRETE", "CATEGORICAL"):
        key = "discrete_values" if kind == "DISCRETE" else "categorical_values"
        values = spec.get(key)
        if not isinstance(values, list) or not values:
            raise doc.error(where + (key,), "expected a list of at least one value")
        for i, value in enumerate(values):
            if kind == "DISCRETE":
                _number(doc, where + (key, i), value, integer=False)
            elif not isinstance(value, str) or not value or not value.isprintable():
                raise doc.error(where + (key, i), f"{value!r} is not a category (text on one line)")
        if len(set(values)) != len(values):
            raise doc.error(where + (key,), "a value is given twice")
        return ParameterSpec(name, kind, values=tuple(values))
    integer = kind == "INTEGER"
    for key in ("min_value", "max_value"):
        if key not in spec:
            raise doc.error(where + (key,), f"missing: a {kind} parameter needs min_value and max_value")
    low = _number(doc, where + ("min_value",), spec["min_value"], integer)
    high = _number(doc, where + ("max_value",), spec["max_value"], integer)
    if low >= high:
        raise doc.error(where + ("max_value",), f"{high!r} is not above min_value {low!r}")
    scale = spec.get("scale_type", "LINEAR")
    if not isinstance(scale, str) or scale not in _SCALES:
        raise doc.error(where + ("scale_type",), f"{scale!r} is not LINEAR | LOG (or UNIT_LINEAR_SCALE | "
                                                 "UNIT_LOG_SCALE)")
    if _SCALES[scale] == "LOG" and low <= 0:
        raise doc.error(where + ("min_value",), f"a LOG scale needs min_value above 0, not {low!r}")
    return ParameterSpec(name, kind, min_value=low, max_value=high, scale_type=_SCALES[scale])
