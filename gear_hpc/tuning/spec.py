"""What a tuning asks for, and the trials it expands to (Grid and Random; Bayesian asks Optuna as it goes).

A spec comes from a project file's `hyper_tuning` section (read and checked
by project/tuning.py, OpenBayes's field names) or from `gear run --param
lr=0.1,0.01 --param bs=32,64` (the same grid without a file). A Grid is the
product of the parameters' values (an INTEGER range counts as its values);
Random draws `max_job_count` trials with a seed (LOG scale: uniform in the
logarithm), so the same seed gives the same trials.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import dataclass, field
from typing import Any

from ..base.errors import UsageError
from ..base.names import check_text

ALGORITHMS = ("Grid", "Random", "Bayesian")
TYPES = ("DOUBLE", "INTEGER", "DISCRETE", "CATEGORICAL")
GOALS = ("MAXIMIZE", "MINIMIZE")
SCALES = ("LINEAR", "LOG")
# One sweep is one Slurm job array: more trials than this is a typing error more
# often than a plan (and the site's MaxArraySize bounds it anyway).
MAX_TRIALS = 10_000


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter: a list of values (DISCRETE, CATEGORICAL) or a range (DOUBLE, INTEGER)."""

    name: str
    type: str
    values: tuple[Any, ...] = ()
    min_value: float | None = None
    max_value: float | None = None
    scale: str = "LINEAR"

    def grid_values(self) -> list[Any]:
        if self.type in ("DISCRETE", "CATEGORICAL"):
            return list(self.values)
        if self.type == "INTEGER":
            assert self.min_value is not None and self.max_value is not None
            return list(range(int(self.min_value), int(self.max_value) + 1))
        raise UsageError(f"parameter {self.name!r}: a Grid cannot enumerate a DOUBLE range; "
                         "give its values (type DISCRETE) or use algorithm Random or Bayesian")

    def sample(self, rng: random.Random) -> Any:
        if self.type in ("DISCRETE", "CATEGORICAL"):
            return rng.choice(self.values)
        assert self.min_value is not None and self.max_value is not None
        low, high = self.min_value, self.max_value
        if self.type == "INTEGER":
            if self.scale == "LOG":
                return int(round(math.exp(rng.uniform(math.log(low), math.log(high)))))
            return rng.randint(int(low), int(high))
        value = math.exp(rng.uniform(math.log(low), math.log(high))) if self.scale == "LOG" else rng.uniform(low, high)
        return float(f"{value:.6g}")   # 0.00123457, not 0.0012345678901234: readable as an argument


@dataclass(frozen=True)
class TuningSpec:
    parameters: tuple[ParameterSpec, ...]
    algorithm: str = "Grid"
    max_job_count: int | None = None        # None: the whole grid
    parallel_count: int | None = None       # None: as many at once as Slurm runs
    metric: str | None = None               # hyperparameter_metric
    side_metrics: tuple[str, ...] = ()
    goal: str = "MAXIMIZE"
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm, "max_job_count": self.max_job_count, "parallel_count": self.parallel_count,
            "hyperparameter_metric": self.metric, "side_metrics": list(self.side_metrics), "goal": self.goal,
            "seed": self.seed, "parameter_specs": [_spec_json(p) for p in self.parameters],
        }


def _spec_json(spec: ParameterSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"name": spec.name, "type": spec.type}
    if spec.type == "DISCRETE":
        out["discrete_values"] = list(spec.values)
    elif spec.type == "CATEGORICAL":
        out["categorical_values"] = list(spec.values)
    else:
        out.update(min_value=spec.min_value, max_value=spec.max_value, scale_type=spec.scale)
    return out


def trials(spec: TuningSpec) -> list[dict[str, Any]]:
    """The parameter values of every trial of a Grid or Random tuning, in order."""
    if spec.algorithm == "Grid":
        names = [p.name for p in spec.parameters]
        grid = itertools.product(*(p.grid_values() for p in spec.parameters))
        count = spec.max_job_count if spec.max_job_count is not None else MAX_TRIALS + 1
        points = [dict(zip(names, values, strict=True)) for values in itertools.islice(grid, count)]
        if len(points) > MAX_TRIALS:
            raise UsageError(f"the grid has more than {MAX_TRIALS:,} points; set max_job_count or fewer values")
        return points
    if spec.algorithm == "Random":
        if spec.max_job_count is None:
            raise UsageError("a Random tuning needs max_job_count (how many trials to draw)")
        rng = random.Random(spec.seed)
        return [{p.name: p.sample(rng) for p in spec.parameters} for _ in range(spec.max_job_count)]
    raise UsageError(f"a {spec.algorithm} tuning is not expanded in advance: its driver asks for each trial")


def grid_size(spec: TuningSpec) -> int:
    size = 1
    for parameter in spec.parameters:
        size *= len(parameter.grid_values())
    return size


def trial_command(command: list[str], values: dict[str, Any]) -> list[str]:
    """The command of one trial: its values as --name=value arguments (inside `bash -c` when it is one),
    as a project file's parameters are passed (project/file.py)."""
    from ..project.file import command_with_parameters

    return command_with_parameters(tuple(command), values)


# --- from the command line: gear run --param lr=0.1,0.01 --param bs=32,64 ---

def parse_param_values(text: str) -> tuple[str, list[Any]]:
    """KEY=V1,V2,…: the values of a grid axis (each read as JSON when it can be, else text).

    A value that is one JSON list, object or quoted string is one value, commas and all.
    """
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"invalid --param {text!r}: expected KEY=VALUE or KEY=V1,V2,…")
    check_text(key, f"parameter name {key!r}")
    try:
        whole = json.loads(value)
        if isinstance(whole, (list, dict)) or (isinstance(whole, str) and value.startswith('"')):
            return key, [value if isinstance(whole, str) else whole]
    except ValueError:
        pass
    parts = value.split(",")
    if len(parts) > 1 and any(not part for part in parts):
        raise UsageError(f"invalid --param {text!r}: an empty value between commas")
    return key, [_scalar(part) for part in parts]


def _scalar(text: str) -> Any:
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    return text if isinstance(parsed, str) else parsed


def grid_from_params(axes: list[tuple[str, list[Any]]], parallel_count: int | None = None) -> TuningSpec:
    names = [name for name, _ in axes]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise UsageError(f"--param {duplicated[0]} is given twice; give its values once, separated by commas")
    for name in names:
        check_parameter_name(name, f"--param {name}")
    parameters = tuple(ParameterSpec(name, "DISCRETE", tuple(values)) for name, values in axes)
    return TuningSpec(parameters, "Grid", parallel_count=parallel_count)


def check_parameter_name(name: str, where: str) -> str:
    # It becomes --name=value on the program's command line and a key of gear_params.json.
    if not name or not all(ch.isalnum() or ch in "_-." for ch in name) or name.startswith("-"):
        raise UsageError(f"{where}: parameter name {name!r} must be letters, digits, '_', '-' or '.'")
    return name


# --- from a project file's hyper_tuning section (checked and typed by project/tuning.py) ---

def from_project(tuning: Any, seed: int | None = None) -> TuningSpec:
    """The project file's `Tuning` as a spec to expand (its max_job_count 0 means the whole grid)."""
    parameters = tuple(ParameterSpec(p.name, p.type, tuple(p.values), p.min_value, p.max_value, p.scale_type)
                       for p in tuning.parameter_specs)
    return TuningSpec(parameters, tuning.algorithm, tuning.max_job_count or None, tuning.parallel_count,
                      tuning.metric, tuple(tuning.side_metrics), tuning.goal, seed)
