"""Bayesian against Random tuning (issue 13): 30 trials each on a toy objective, 10 seeds.

The Bayesian side is gear's own driver loop (tuning/bayes.drive: Optuna's TPE
sampler, the study in a journal file as a tuning keeps it) with a runner that
evaluates each trial at once instead of submitting a job; the Random side is
gear's own Random expansion (tuning/spec.trials) with the same seed. The
objective is the kind a tuning meets: a learning rate on a log scale with an
optimum inside its range, a whole number of layers, a choice of optimiser, and
a continuous dropout that interacts with the layers. Both minimise it. The
figure: in how many of the 10 seeds the Bayesian best is better than the
Random best (goal: most), with each seed's two bests.

Run it with `.venv/bin/python benchmarks/tune_bayes.py` (no cluster needed).
Options: `--trials N` (30), `--seeds N` (10), `--parallel P` (1: one trial at a time).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gear_hpc.tuning.bayes import drive, open_study  # noqa: E402
from gear_hpc.tuning.spec import ParameterSpec, TuningSpec, trials  # noqa: E402

PARAMETERS = (ParameterSpec("lr", "DOUBLE", (), 1e-5, 1.0, "LOG"),
              ParameterSpec("layers", "INTEGER", (), 1, 8),
              ParameterSpec("opt", "CATEGORICAL", ("SGD", "Adam", "RMSprop")),
              ParameterSpec("dropout", "DOUBLE", (), 0.0, 0.8))


def objective(p: dict[str, Any]) -> float:
    """A validation loss: best near lr=3e-3, 4 layers, Adam, dropout 0.1 per layer above 2."""
    loss = (math.log10(p["lr"]) - math.log10(3e-3)) ** 2
    loss += 0.15 * (p["layers"] - 4) ** 2
    loss += {"SGD": 0.6, "Adam": 0.0, "RMSprop": 0.25}[p["opt"]]
    loss += 4 * (p["dropout"] - 0.1 * max(p["layers"] - 2, 0)) ** 2
    return loss


class Immediate:
    """A runner whose trials end as soon as they are submitted."""

    def __init__(self) -> None:
        self.results: dict[str, float] = {}

    def refresh(self) -> None:
        pass

    def submit(self, number: int, params: dict[str, Any]) -> str:
        self.results[f"t/{number}"] = objective(params)
        return f"t/{number}"

    def find(self, number: int) -> str | None:
        return None

    def outcome(self, execution_id: str) -> tuple[bool, float | None]:
        return True, self.results[execution_id]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=1)
    args = parser.parse_args()
    wins = 0
    rows = []
    for seed in range(args.seeds):
        random_best = min(objective(t) for t in trials(TuningSpec(PARAMETERS, "Random", args.trials, seed=seed)))
        spec = TuningSpec(PARAMETERS, "Bayesian", args.trials, args.parallel, "loss", goal="MINIMIZE", seed=seed)
        with tempfile.TemporaryDirectory() as tmp:
            study = open_study(Path(tmp) / "study.journal", spec)
            drive(study, spec, Immediate(), poll=0, sleep=lambda seconds: None)
            bayes_best = float(study.best_value)
        wins += bayes_best < random_best
        rows.append((seed, bayes_best, random_best))
        print(f"seed {seed}: Bayesian best {bayes_best:8.4f}   Random best {random_best:8.4f}   "
              f"{'Bayesian' if bayes_best < random_best else 'Random'} better")
    print(f"{args.trials} trials ({args.parallel} at a time), {args.seeds} seeds: Bayesian better in {wins} of "
          f"{args.seeds} (goal: most); median best Bayesian {statistics.median(r[1] for r in rows):.4f}, "
          f"Random {statistics.median(r[2] for r in rows):.4f}")


if __name__ == "__main__":
    main()
