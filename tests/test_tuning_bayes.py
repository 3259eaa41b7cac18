"""The Bayesian driver without a cluster: Optuna asks, a fake runner "runs" each trial at once, and a
driver killed at the worst moments loses no trial and runs none twice when started again."""

from __future__ import annotations

from typing import Any

import pytest

from gear_hpc.tuning.bayes import EXECUTION_ATTR, drive, open_study
from gear_hpc.tuning.spec import ParameterSpec, TuningSpec

TOY_TUNING = TuningSpec((ParameterSpec("x", "DOUBLE", (), -5.0, 5.0), ParameterSpec("k", "INTEGER", (), 1, 4),
                   ParameterSpec("opt", "CATEGORICAL", ("a", "b"))), "Bayesian", max_job_count=12, parallel_count=3,
                  metric="score", goal="MINIMIZE", seed=3)


class Killed(Exception):
    pass


class FakeRunner:
    """Trials end one round after they are submitted; `kill_at` raises (the driver dies) at that submit,
    before (`after_submit=False`) or after the execution exists."""

    def __init__(self, executions: dict[str, dict[str, Any]], kill_at: int | None = None, after_submit: bool = True):
        self.executions = executions
        self.kill_at, self.after_submit = kill_at, after_submit
        self.rounds = 0

    def refresh(self) -> None:
        self.rounds += 1

    def submit(self, number: int, params: dict[str, Any]) -> str:
        if self.kill_at == number and not self.after_submit:
            raise Killed
        execution = f"c/{len(self.executions) + 1}"
        self.executions[execution] = {"trial": number, "params": params, "round": self.rounds}
        if self.kill_at == number:
            raise Killed
        return execution

    def find(self, number: int) -> str | None:
        return next((e for e, v in self.executions.items() if v["trial"] == number), None)

    def outcome(self, execution_id: str) -> tuple[bool, float | None]:
        e = self.executions[execution_id]
        if self.rounds <= e["round"]:
            return False, None
        p = e["params"]
        return True, (p["x"] - 1.5) ** 2 + p["k"] + (0.5 if p["opt"] == "b" else 0)


def _check_complete(study: Any, executions: dict[str, dict[str, Any]]) -> None:
    from optuna.trial import TrialState

    trials = study.get_trials()
    assert len(trials) == 12 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(v["trial"] for v in executions.values()) == list(range(12))   # each trial ran exactly once
    assert {t.user_attrs[EXECUTION_ATTR] for t in trials} == set(executions)


def test_the_driver_runs_the_study_to_max_job_count_parallel_count_at_once(tmp_path):
    executions: dict[str, dict[str, Any]] = {}
    study = open_study(tmp_path / "study.journal", TOY_TUNING)
    report = drive(study, TOY_TUNING, FakeRunner(executions), poll=0, sleep=lambda s: None)
    assert report.asked == 12 and report.told == 12
    _check_complete(study, executions)
    rounds = [v["round"] for v in executions.values()]
    assert max(rounds.count(r) for r in set(rounds)) <= 3    # never more than parallel_count submitted at once
    assert study.best_value < 2.5


@pytest.mark.parametrize("after_submit", [False, True], ids=["killed-before-submit", "killed-after-submit"])
def test_a_killed_driver_resumes_and_loses_no_trial(tmp_path, after_submit):
    executions: dict[str, dict[str, Any]] = {}
    journal = tmp_path / "study.journal"
    with pytest.raises(Killed):
        drive(open_study(journal, TOY_TUNING), TOY_TUNING, FakeRunner(executions, kill_at=5, after_submit=after_submit),
              poll=0, sleep=lambda s: None)
    assert len(executions) == (6 if after_submit else 5)
    study = open_study(journal, TOY_TUNING)     # a new driver: the study from its journal
    report = drive(study, TOY_TUNING, FakeRunner(executions), poll=0, sleep=lambda s: None)
    assert report.resumed >= 1
    _check_complete(study, executions)
