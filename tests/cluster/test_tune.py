"""Tuning on the real cluster: an openbayes.yaml project (Grid, Random) runs end to end as one job
array of ordinary executions, a stdlib-only program logs metrics three ways, `gear tune show` ranks
the trials, the PNG is a real plot, and `gear tune stop` stops and saves every trial."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import STORAGE_ROOT, User

# A stdlib-only program: its values as arguments, metrics through gear_metrics, openbayestool and a
# JSON line written by hand. acc peaks at lr=0.01 with Adam; the best trial is known in advance.
TRAIN = """\
import argparse, json, os
from gear_metrics import log_metric
import openbayestool

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--opt", required=True)
parser.add_argument("--sleep", type=float, default=0)
args = parser.parse_args()
params = json.load(open("gear_params.json"))
assert params["lr"] == args.lr and params.get("opt", args.opt) == args.opt, (params, args)
acc = 0
for step in range(3):
    acc = 1 - abs(args.lr - 0.01) * 5 - (0.1 if args.opt == "SGD" else 0) - 0.01 * (2 - step)
    log_metric("acc", acc, step=step)
openbayestool.log_metric("loss", round(1 - acc, 6))
with open("/hyperai/home/.gear/metrics.jsonl", "a") as handle:
    handle.write(json.dumps({"steps_done": 3}) + "\\n")
print("trained", os.environ["GEAR_EXECUTION"], args.lr, args.opt, flush=True)
import time; time.sleep(args.sleep)
"""

GRID = """\
resource: cpu-small
env: python
command: "python3 train.py"
hyper_tuning:
  max_job_count: 0
  parallel_count: 2
  hyperparameter_metric: acc
  side_metrics: ["loss"]
  goal: MAXIMIZE
  algorithm: Grid
  parameter_specs:
  - {name: lr, type: DISCRETE, discrete_values: [0.1, 0.01, 0.001]}
  - {name: opt, type: CATEGORICAL, categorical_values: ["SGD", "Adam"]}
"""

RANDOM = """\
resource: cpu-small
env: python
command: "python3 train.py"
hyper_tuning:
  max_job_count: 5
  parallel_count: 3
  hyperparameter_metric: loss
  goal: MINIMIZE
  algorithm: Random
  parameter_specs:
  - {name: lr, type: DOUBLE, min_value: 0.0001, max_value: 0.1, scale_type: LOG}
  - {name: opt, type: CATEGORICAL, categorical_values: ["SGD", "Adam"]}
"""


@pytest.fixture(scope="module")
def user() -> User:
    return User("tun_alice")


def _wait_closed(user: User, ids: list[str], timeout: float = 240) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        records = {i: user.gear_json("show", i) for i in ids}
        if all(r["status"] not in ("submitting", "queued", "syncing", "running", "saving") for r in records.values()):
            return records
        if time.monotonic() > deadline:
            raise AssertionError({i: r["status"] for i, r in records.items()})
        time.sleep(2)


def test_a_grid_from_openbayes_yaml_runs_as_one_array_and_is_ranked_and_plotted(user, container):
    code = user.make_dir({"train.py": TRAIN, "openbayes.yaml": GRID})
    result = user.gear("tune", "-c", container, cwd=str(code), check=True)
    ids = result.stdout.split()
    assert ids == [f"{container}/{n}" for n in range(1, 7)]
    assert "as Slurm job array" in result.stderr and "2 at once" in result.stderr
    records = _wait_closed(user, ids)
    assert {r["status"] for r in records.values()} == {"completed"}, records
    # One array: every trial's job is JOB_N of the same JOB, N its execution's number (below MaxArraySize).
    jobs = [records[i]["slurm_job_id"] for i in ids]
    array = jobs[0].split("_")[0]
    assert jobs == [f"{array}_{n}" for n in range(1, 7)]
    container_dir = STORAGE_ROOT / "users" / user.name / "containers" / container
    assert "#SBATCH --array=1-6%2" in (container_dir / "1" / "sweep" / "job.sh").read_text()
    assert array in user.run("squeue", "--me", "--states=all", "-h", "-o", "%i", check=True).stdout
    # Each trial: its own values in gear_params.json and as arguments, its own log and metrics.
    expected = [(lr, opt) for lr in (0.1, 0.01, 0.001) for opt in ("SGD", "Adam")]
    for n, (lr, opt) in enumerate(expected, 1):
        record = records[f"{container}/{n}"]
        assert record["params"] == {"lr": lr, "opt": opt}
        assert record["command"][-2:] == [f"--lr={lr}", f"--opt={opt}"]
        assert f"trained {container}/{n} {lr} {opt}" in user.gear("logs", f"{container}/{n}", check=True).stdout
        assert set(record["metrics"]) == {"acc", "loss", "steps_done"}
    points = user.gear_json("metrics", f"{container}/4")
    assert [(p["name"], p["step"]) for p in points] == [("acc", 0), ("acc", 1), ("acc", 2), ("loss", None),
                                                        ("steps_done", None)]
    assert "metrics:" in user.gear("show", f"{container}/4", check=True).stdout
    # Ranked by acc, best first: lr=0.01 with Adam is trial 4.
    shown = user.gear_json("tune", "show", container)
    assert shown["metric"] == "acc" and shown["goal"] == "MAXIMIZE" and len(shown["trials"]) == 6
    order = [t["execution"] for t in shown["trials"]]
    assert order[0] == f"{container}/4" and order[-1] == f"{container}/1"
    scores = [t["metric"] for t in shown["trials"]]
    assert scores == sorted(scores, reverse=True)
    assert shown["trials"][0]["params"] == {"lr": 0.01, "opt": "Adam"} and "loss" in shown["trials"][0]["side_metrics"]
    table = user.gear("tune", "show", container, check=True).stdout.splitlines()
    assert table[1].split()[:4] == ["RANK", "EXECUTION", "STATUS", "ACC"]
    assert table[2].split()[:2] == ["1", f"{container}/4"]
    # The plot: a PNG that is a real picture, and the same panels as text.
    out = user.make_dir({})
    png = out / "grid.png"
    drawn = user.gear("tune", "plot", container, "-o", str(png), "--width", "70", check=True)
    assert "acc against lr" in drawn.stdout and "acc against opt" in drawn.stdout and "over time" in drawn.stdout
    import matplotlib.image

    pixels = matplotlib.image.imread(png)
    height, width = pixels.shape[:2]
    assert width >= 800 and height >= 300
    rgb = pixels[..., :3]
    assert (rgb < 0.9).any(axis=-1).mean() > 0.01          # drawn on: not a blank page
    assert len({tuple(p) for p in rgb.reshape(-1, 3)[::97].round(2)}) > 10   # axes, points and lines in colours
    # A trial is an ordinary execution: it can be continued (its code is the sweep's, linked).
    cont = user.gear("continue", f"{container}/2", "--", "bash", "-c", "ls train.py .gear/metrics.jsonl", check=True)
    new = cont.stdout.split()[-1]
    assert _wait_closed(user, [new])[new]["status"] == "completed"
    # … downloaded (metrics and all) and deleted with its container like any other.
    target = out / "down"
    user.gear("download", f"{container}/4", "-t", str(target), check=True)
    assert (target / ".gear" / "metrics.jsonl").is_file() and (target / "gear_params.json").is_file()
    user.gear("delete", container, "--yes", check=True)
    assert not container_dir.exists() and container not in user.gear("ls", check=True).stdout


def test_a_random_tuning_draws_its_seeded_trials(user, container):
    from gear_hpc.tuning.spec import ParameterSpec, TuningSpec, trials

    code = user.make_dir({"train.py": TRAIN, "gear.yaml": RANDOM})
    ids = user.gear("tune", "-c", container, "--seed", "11", cwd=str(code), check=True).stdout.split()
    assert len(ids) == 5
    expected = trials(TuningSpec((ParameterSpec("lr", "DOUBLE", (), 0.0001, 0.1, "LOG"),
                                  ParameterSpec("opt", "CATEGORICAL", ("SGD", "Adam"))), "Random", 5, seed=11))
    records = _wait_closed(user, ids)
    assert [records[i]["params"] for i in ids] == expected
    assert {r["status"] for r in records.values()} == {"completed"}
    shown = user.gear_json("tune", "show", ids[2])
    assert shown["metric"] == "loss" and shown["goal"] == "MINIMIZE"
    losses = [t["metric"] for t in shown["trials"]]
    assert losses == sorted(losses)
    tuning = json.loads((STORAGE_ROOT / "users" / user.name / "containers" / container / "1" / "sweep"
                         / "tuning.json").read_text())
    assert tuning["seed"] == 11 and tuning["algorithm"] == "Random" and tuning["trials"] == expected


def test_tune_stop_stops_and_saves_every_trial(user, container):
    code = user.make_dir({"train.py": TRAIN})
    ids = user.gear("run", "-c", container, "-r", "cpu-small", "--param", "lr=0.1,0.01,0.001,0.0001",
                    "--parallel", "2", "--", "python3", "train.py", "--opt=Adam", "--sleep=300",
                    cwd=str(code), check=True).stdout.split()
    assert len(ids) == 4
    deadline = time.monotonic() + 120
    while user.gear_json("metrics", ids[0]) == [] or user.gear_json("metrics", ids[1]) == []:
        assert time.monotonic() < deadline, "the first two trials never logged"
        time.sleep(1)
    assert user.gear_json("show", ids[3])["status"] == "queued"
    stopped = user.gear_json("tune", "stop", container)
    assert sorted(stopped["stopped"]) == sorted(ids) and stopped["still_open"] == []
    records = {i: user.gear_json("show", i) for i in ids}
    assert {r["status"] for r in records.values()} == {"terminated"}
    for running in ids[:2]:   # stopped as gear stop stops one: TERM, then saved
        assert records[running]["stopped_by"] == "gear stop", records[running]
        assert user.gear_json("metrics", running)[0]["name"] == "acc"
    for pending in ids[2:]:
        assert "before it started" in (records[pending]["note"] or "")


def test_bad_tunings_submit_nothing(user, container):
    code = user.make_dir({"train.py": TRAIN, "gear.yaml": "resource: cpu-small\ncommand: python3 train.py\n"})
    result = user.gear("tune", "-c", container, cwd=str(code))
    assert result.returncode == 2 and "no hyper_tuning section" in result.stderr and result.stderr.count("\n") == 1
    result = user.gear("run", "-c", container, "-r", "no-such-type", "--param", "lr=1,2", "--", "true", cwd=str(code))
    assert result.returncode != 0 and "unknown compute type" in result.stderr and result.stderr.count("\n") == 1
    result = user.gear("run", "-c", container, "--param", "lr=1,2", "-f", "--", "true", cwd=str(code))
    assert result.returncode == 2 and "a grid" in result.stderr
    code = user.make_dir({"train.py": TRAIN, "gear.yaml": BAYES})
    result = user.gear("tune", "-c", container, "--driver-type", "gpu-1", cwd=str(code))
    assert result.returncode == 2 and "without GPUs" in result.stderr and result.stderr.count("\n") == 1
    assert not (STORAGE_ROOT / "users" / user.name / "containers" / container).exists()
    assert container not in user.gear("ls", check=True).stdout


BAYES = """\
resource: cpu-small
env: python
command: "python3 train.py"
parameters: {sleep: 4}
hyper_tuning:
  max_job_count: 4
  parallel_count: 2
  hyperparameter_metric: acc
  goal: MAXIMIZE
  algorithm: Bayesian
  parameter_specs:
  - {name: lr, type: DOUBLE, min_value: 0.0001, max_value: 0.1, scale_type: LOG}
  - {name: opt, type: CATEGORICAL, categorical_values: ["SGD", "Adam"]}
"""


def _tuning(user: User, container: str) -> tuple[dict, Path]:
    directory = next((STORAGE_ROOT / "users" / user.name / "containers" / container).glob("tuning-*"))
    return json.loads((directory / "tuning.json").read_text()), Path(directory)


def test_a_bayesian_tuning_survives_its_driver_being_killed(user, container):
    code = user.make_dir({"train.py": TRAIN, "gear.yaml": BAYES})
    started = user.gear("tune", "-c", container, "--seed", "5", cwd=str(code), check=True)
    assert started.stdout.strip().startswith(f"{container}/tuning-") and "driver is Slurm job" in started.stderr
    asked, directory = _tuning(user, container)
    driver = asked["driver_job"]
    deadline = time.monotonic() + 120
    while not _tuning(user, container)[0]["numbers"]:
        assert time.monotonic() < deadline, (directory / "driver.log").read_text()
        time.sleep(1)
    user.run("scancel", driver, check=True)      # the driver dies; its trials run on
    time.sleep(3)
    before = _tuning(user, container)[0]["numbers"]
    assert 1 <= len(before) <= 2
    resumed = user.gear("tune", "resume", container, check=True)
    assert "driver resumed as Slurm job" in resumed.stdout
    deadline = time.monotonic() + 300
    while True:
        shown = user.gear_json("tune", "show", container)
        if len(shown["trials"]) == 4 and all(t["status"] == "completed" for t in shown["trials"]):
            break
        assert time.monotonic() < deadline, ((directory / "driver.log").read_text(), shown)
        time.sleep(3)
    # Every trial once: four executions, trial 0 … 3 each named once, the ones before the kill among them.
    numbers = _tuning(user, container)[0]["numbers"]
    assert len(numbers) == 4 and set(before) <= set(numbers)
    messages = sorted(user.gear_json("show", f"{container}/{n}")["message"] for n in numbers)
    assert messages == [f"(trial {i} of {directory.name})" for i in range(4)]
    assert shown["algorithm"] == "Bayesian" and shown["metric"] == "acc"
    scores = [t["metric"] for t in shown["trials"]]
    assert scores == sorted(scores, reverse=True) and all(s is not None for s in scores)
    # The resumed driver finished the study: it says so, and resume now has nothing to do … once it has ended.
    deadline = time.monotonic() + 60
    while "done;" not in (directory / "driver.log").read_text():
        assert time.monotonic() < deadline, (directory / "driver.log").read_text()
        time.sleep(1)
    assert "found" in (directory / "driver.log").read_text()
