"""Bayesian tuning with Optuna: its TPE sampler asks for each trial, gear runs it, its metric is told back.

Optuna is imported here only, and only by the driver (and the benchmark).
The study lives in a journal file beside the tuning (Optuna's
JournalFileBackend: appends only, safe to reopen), so a driver that is killed
and started again finds every trial it asked for:

- a trial is asked (Optuna records it RUNNING, with its values) BEFORE it is
  submitted, and the execution's id is recorded on the trial right after;
- on restart, a RUNNING trial without an execution is looked for among the
  executions (`runner.find`, by the message the submission gave it) and
  submitted only if none exists: no trial is lost and none is run twice;
- a trial's execution that ends is told: its metric's last value, or FAIL
  when it did not complete or logged no value.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .spec import TuningSpec

EXECUTION_ATTR = "gear_execution"


class Runner(Protocol):
    def refresh(self) -> None:
        """Once per round, before outcomes are asked (gear: one Slurm query for all trials)."""

    def submit(self, number: int, params: dict[str, Any]) -> str:
        """Start trial `number` with `params`; its execution's id."""

    def find(self, number: int) -> str | None:
        """The execution of trial `number` if one was submitted (a driver may die right after submitting)."""

    def outcome(self, execution_id: str) -> tuple[bool, float | None]:
        """(ended, value): whether the execution has ended, and the metric it reached if it completed."""


@dataclass
class DriveReport:
    asked: int = 0          # trials asked (and submitted) by this run of the driver
    told: int = 0           # trials told by this run
    resumed: int = 0        # RUNNING trials this run found from an earlier one


def distributions(spec: TuningSpec) -> dict[str, Any]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    found: dict[str, Any] = {}
    for p in spec.parameters:
        if p.type in ("DISCRETE", "CATEGORICAL"):
            found[p.name] = CategoricalDistribution(list(p.values))
        elif p.type == "INTEGER":
            assert p.min_value is not None and p.max_value is not None
            found[p.name] = IntDistribution(int(p.min_value), int(p.max_value), log=p.scale == "LOG")
        else:
            assert p.min_value is not None and p.max_value is not None
            found[p.name] = FloatDistribution(p.min_value, p.max_value, log=p.scale == "LOG")
    return found


def open_study(journal: Path | None, spec: TuningSpec) -> Any:
    """The study of a tuning (created on first open); in memory when `journal` is None (the benchmark)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = None
    if journal is not None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        # The open(O_EXCL) lock, not a symlink: works on NFS, where a tuning's directory may live.
        storage = JournalStorage(JournalFileBackend(str(journal), lock_obj=JournalFileOpenLock(str(journal))))
    # TPE, Optuna's default; a third of the trials (at most 10) drawn at random first.
    startup = min(10, max(2, (spec.max_job_count or 30) // 3))
    sampler = optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=startup)
    direction = optuna.study.StudyDirection.MAXIMIZE if spec.goal == "MAXIMIZE" else optuna.study.StudyDirection.MINIMIZE
    return optuna.create_study(storage=storage, study_name="gear", direction=direction, sampler=sampler,
                               load_if_exists=True)


def drive(study: Any, spec: TuningSpec, runner: Runner, poll: float = 5.0,
          sleep: Callable[[float], None] = time.sleep, say: Callable[[str], None] = lambda text: None) -> DriveReport:
    """Run the study to max_job_count trials, parallel_count at once; returns when every trial is told."""
    from optuna.trial import TrialState

    report = DriveReport()
    total = spec.max_job_count or 1
    at_once = spec.parallel_count or 1
    shapes = distributions(spec)
    known: dict[int, str] = {}
    first_look = True
    while True:
        runner.refresh()
        trials = study.get_trials(deepcopy=False)
        running = [t for t in trials if t.state == TrialState.RUNNING]
        for trial in running:
            execution = trial.user_attrs.get(EXECUTION_ATTR) or known.get(trial.number)
            if execution is None:
                # Asked by a driver that died before it recorded the execution: submitted or not?
                execution = runner.find(trial.number)
                if execution is None:
                    execution = runner.submit(trial.number, dict(trial.params))
                    say(f"trial {trial.number}: submitted {execution} (asked before the driver restarted)")
                _remember(study, trial, execution, known)
            if first_look:
                report.resumed += 1
            ended, value = runner.outcome(execution)
            if ended:
                if value is None:
                    study.tell(trial.number, state=TrialState.FAIL)
                else:
                    study.tell(trial.number, value)
                report.told += 1
                say(f"trial {trial.number}: {execution} ended, {spec.metric} = {value}")
        first_look = False
        trials = study.get_trials(deepcopy=False)
        open_now = sum(t.state == TrialState.RUNNING for t in trials)
        count = len(trials)
        while open_now < at_once and count < total:
            trial = study.ask(shapes)
            execution = runner.submit(trial.number, dict(trial.params))
            _remember(study, trial, execution, known)
            say(f"trial {trial.number}: submitted {execution} with {trial.params}")
            report.asked += 1
            open_now += 1
            count += 1
        if open_now == 0 and count >= total:
            return report
        sleep(poll)


def _remember(study: Any, trial: Any, execution: str, known: dict[int, str]) -> None:
    import optuna

    known[trial.number] = execution
    # A frozen trial (from get_trials) is written through a Trial of the same id.
    target = trial if isinstance(trial, optuna.trial.Trial) else optuna.trial.Trial(study, trial._trial_id)
    target.set_user_attr(EXECUTION_ATTR, execution)
