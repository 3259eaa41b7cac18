"""A Bayesian tuning: a small driver job asks Optuna for trials, submits each as an ordinary execution
(lifecycle.submit, gear's own submission), reads their metrics, and stops at max_job_count.

`gear tune` (on the login node) makes the tuning's directory beside the
container's executions, `C/tuning-<UTC time>-<hex>/`:

    code/            the code, snapshot once; every trial uploads it
    tuning.json      what was asked, how each trial is submitted, the driver's job, the trials' numbers
    study.journal    Optuna's study (tuning/bayes.py)
    driver.sh        the driver's batch script, driver.log its output

and submits the driver as a plain Slurm job on a CPU compute type: it runs
`python3 -m gear_hpc.cli tune drive DIR` with the same gear, site
configuration and storage (so gear must be installed where the compute nodes
see it, at the same path). The driver holds no state of its own: killing it
loses nothing, and `gear tune resume C` starts a new one that picks the study
up where it stopped (tuning/bayes.py says how no trial is lost or run twice).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from ..base.errors import GearError, UsageError
from ..base.names import check_name
from ..ledger.db import Ledger, utc_now
from ..site.model import ComputeType, Site
from ..slurm import jobs as slurm
from ..storage.disk import UserStorage, remove_tree
from ..tuning.spec import TuningSpec
from . import lifecycle

PREFIX = "tuning-"
TUNING_FILE = "tuning.json"
JOURNAL = "study.journal"
POLL_SECONDS = 5.0


def driver_type(site: Site, name: str | None) -> ComputeType:
    """The compute type the driver runs on: the one named, else the site's smallest without GPUs."""
    if name is not None:
        chosen = site.compute_type(name)
    else:
        cpu = sorted((t for t in site.compute_types.values() if t.gpus == 0), key=lambda t: (t.cpus, t.name))
        if not cpu:
            raise UsageError("this site has no compute type without GPUs for the tuning's driver; name one with "
                             "--driver-type")
        chosen = cpu[0]
    if chosen.gpus:
        raise UsageError(f"--driver-type {chosen.name}: the driver only waits and asks; give it a type without GPUs")
    return chosen


def start(site: Site, storage: UserStorage, request: lifecycle.RunRequest, spec: TuningSpec,
          driver: str | None = None) -> dict[str, Any]:
    """Make the tuning's directory and submit its driver; returns tuning.json as written."""
    import importlib.util

    from ..data import bindings as binding_specs, staging

    if importlib.util.find_spec("optuna") is None:   # the driver needs it: say so before anything is made
        raise GearError("Bayesian tuning needs Optuna, which is not installed with this gear (pip install optuna)")
    if not request.command:
        raise UsageError("no command to tune")
    container = check_name(request.container if request.container is not None
                           else lifecycle.default_container_name(Path(request.code)), "container name")
    compute_type = site.compute_type(request.compute_type or site.default_compute_type)
    image = site.image(request.image or site.default_image)
    if not os.path.exists(image.path):
        raise GearError(f"image {image.name!r}: {image.path} does not exist on this node; tell your admin")
    binding_specs.parse_all(request.bindings)   # refused now, not by the driver later
    driver_on = driver_type(site, driver)
    if not Path(request.code).exists():
        raise UsageError(f"code path {request.code} does not exist")
    if request.code_unnamed:
        lifecycle.check_code_size(site, Path(request.code))
    storage.ensure()
    name = f"{PREFIX}{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(3)}"
    container_dir = storage.container_dir(container)
    made_container = not container_dir.is_dir()
    directory = container_dir / name
    directory.mkdir(mode=0o700, parents=True)
    try:
        staging.snapshot_code(Path(request.code), directory / "code")
        for relative, text in request.generated_files.items():
            (directory / "code" / relative).write_text(text)
        asked: dict[str, Any] = {
            **spec.to_json(), "container": container, "name": name, "created_at": utc_now(), "numbers": [],
            "request": {"command": request.command, "params": request.params, "compute_type": compute_type.name,
                        "image": image.name, "bindings": request.bindings, "message": request.message},
            "driver_type": driver_on.name}
        _write_json(directory / TUNING_FILE, asked)
        asked["driver_job"] = submit_driver(site, directory, container, name, driver_on)
        _write_json(directory / TUNING_FILE, asked)
    except BaseException:
        remove_tree(directory)
        if made_container:
            try:
                container_dir.rmdir()
            except OSError:
                pass
        raise
    return asked


def submit_driver(site: Site, directory: Path, container: str, name: str, compute_type: ComputeType) -> str:
    from ..slurm.render import sbatch_value, shell_quote

    options: list[tuple[str, Any]] = [
        ("job-name", f"gear-tuner-{container}"), ("partition", compute_type.partition), ("nodes", 1), ("ntasks", 1),
        ("cpus-per-task", 1), ("mem", compute_type.memory), ("time", compute_type.time_limit),
        ("chdir", directory), ("output", directory / "driver.log"), ("open-mode", "append"),
        ("comment", f"gear-tuner:{container}:{name}")]
    for key in ("qos", "account", "constraint"):
        if getattr(compute_type, key):
            options.append((key, getattr(compute_type, key)))
    package_parent = Path(__file__).resolve().parents[2]   # the directory holding gear_hpc/
    environment = {"PYTHONPATH": str(package_parent), "GEAR_SITE_CONFIG": str(site.config_dir.resolve())}
    if os.environ.get("GEAR_STORAGE_ROOT"):
        environment["GEAR_STORAGE_ROOT"] = str(site.storage_root)
    lines = ["#!/bin/bash", f"# gear-hpc: the driver of the Bayesian tuning {container}/{name}; generated by gear."]
    lines += [f"#SBATCH --{key}={sbatch_value(value)}" for key, value in options]
    lines += [f"export {key}={shell_quote(value)}" for key, value in environment.items()]
    lines += [f"exec {shell_quote(sys.executable)} -m gear_hpc.cli tune drive {shell_quote(str(directory))}", ""]
    script = directory / "driver.sh"
    script.write_text("\n".join(lines))
    return slurm.submit(script)


def resume(site: Site, directory: Path) -> str | None:
    """Submit a new driver unless one runs; its job id (None: one is already running)."""
    asked = json.loads((directory / TUNING_FILE).read_text())
    job = asked.get("driver_job")
    if job:
        known = slurm.query_jobs().get(job)
        if known is not None and known.phase != slurm.ENDED:
            return None
    asked["driver_job"] = submit_driver(site, directory, asked["container"], asked["name"],
                                        driver_type(site, asked.get("driver_type")))
    _write_json(directory / TUNING_FILE, asked)
    return str(asked["driver_job"])


def stop_driver(directory: Path) -> bool:
    asked = json.loads((directory / TUNING_FILE).read_text())
    return bool(asked.get("driver_job")) and slurm.cancel(str(asked["driver_job"]))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    # Written aside, then renamed: gear tune show never reads half a file.
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)


def spec_of(asked: dict[str, Any]) -> TuningSpec:
    from ..tuning.spec import ParameterSpec

    parameters = tuple(ParameterSpec(p["name"], p["type"], tuple(p.get("discrete_values") or p.get("categorical_values")
                                                                 or ()), p.get("min_value"), p.get("max_value"),
                                     p.get("scale_type") or "LINEAR") for p in asked["parameter_specs"])
    return TuningSpec(parameters, "Bayesian", asked["max_job_count"], asked.get("parallel_count"),
                      asked["hyperparameter_metric"], tuple(asked.get("side_metrics") or ()), asked["goal"],
                      asked.get("seed"))


class GearRunner:
    """tuning/bayes.Runner for a tuning's directory: trials are executions of its container."""

    def __init__(self, site: Site, storage: UserStorage, directory: Path):
        self.site, self.storage, self.directory = site, storage, directory
        self.asked = json.loads((directory / TUNING_FILE).read_text())
        self.container = self.asked["container"]
        self.metric = self.asked["hyperparameter_metric"]

    def _message(self, number: int) -> str:
        tag = f"(trial {number} of {self.asked['name']})"
        given = self.asked["request"].get("message")
        return f"{given} {tag}" if given else tag

    def refresh(self) -> None:
        from .reconcile import refresh

        with Ledger(self.storage.ledger_path) as ledger:
            refresh(ledger)

    def submit(self, number: int, params: dict[str, Any]) -> str:
        from ..tuning.spec import trial_command

        given = self.asked["request"]
        request = lifecycle.RunRequest(
            command=trial_command(given["command"], params), code=self.directory / "code", container=self.container,
            compute_type=given["compute_type"], image=given["image"], params={**given["params"], **params},
            message=self._message(number), bindings=list(given["bindings"]))
        execution = lifecycle.submit(self.site, self.storage, request)
        self.asked = json.loads((self.directory / TUNING_FILE).read_text())
        self.asked["numbers"] = sorted({*self.asked.get("numbers", []), execution.number})
        _write_json(self.directory / TUNING_FILE, self.asked)
        return execution.id

    def find(self, number: int) -> str | None:
        with Ledger(self.storage.ledger_path) as ledger:
            for execution in ledger.executions(self.container):
                if execution.message == self._message(number):
                    if execution.number not in self.asked.get("numbers", []):
                        self.asked["numbers"] = sorted({*self.asked.get("numbers", []), execution.number})
                        _write_json(self.directory / TUNING_FILE, self.asked)
                    return execution.id
        return None

    def outcome(self, execution_id: str) -> tuple[bool, float | None]:
        from ..base.names import parse_execution_id
        from ..tuning.metrics import read

        container, number = parse_execution_id(execution_id)
        with Ledger(self.storage.ledger_path) as ledger:
            execution = ledger.get_execution(container, number)
        if execution is None:
            return True, None   # deleted: nothing to learn from it
        if execution.is_open:
            return False, None
        if execution.status != "completed":
            return True, None
        return True, read(execution.workdir).last().get(self.metric)


def drive_here(site: Site, storage: UserStorage, directory: Path, say: Any = None) -> None:
    """What the driver job runs: the study, to its end."""
    from ..tuning.bayes import drive, open_study

    say = say or (lambda text: print(text, flush=True))
    asked = json.loads((directory / TUNING_FILE).read_text())
    spec = spec_of(asked)
    study = open_study(directory / JOURNAL, spec)
    say(f"gear tune drive: {asked['container']}/{asked['name']}, {spec.max_job_count} trial(s), "
        f"{spec.parallel_count or 1} at once, {spec.metric} ({spec.goal.lower()})")
    report = drive(study, spec, GearRunner(site, storage, directory), poll=POLL_SECONDS, say=say)
    say(f"gear tune drive: done; this run asked {report.asked}, told {report.told}, "
        f"found {report.resumed} running from before")
