"""Tuning without a cluster: trials from a spec, --param grids, job array ids, metrics lines, the
array's script, and a sweep that Slurm refuses (fault injection: nothing is left)."""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gear_hpc.base.errors import SlurmError, UsageError
from gear_hpc.executions import reconcile
from gear_hpc.ledger.db import Execution
from gear_hpc.slurm.jobs import SlurmJob, expand_job_id
from gear_hpc.tuning import metrics
from gear_hpc.tuning.spec import (
    ParameterSpec,
    TuningSpec,
    grid_from_params,
    parse_param_values,
    trial_command,
    trials,
)
from helpers import REPO, gear


def test_grid_is_the_product_in_order_and_max_job_count_caps_it():
    spec = TuningSpec((ParameterSpec("lr", "DISCRETE", (0.1, 0.01)), ParameterSpec("opt", "CATEGORICAL", ("SGD", "Adam")),
                       ParameterSpec("layers", "INTEGER", (), 1, 2)))
    points = trials(spec)
    assert len(points) == 8
    assert points[0] == {"lr": 0.1, "opt": "SGD", "layers": 1} and points[-1] == {"lr": 0.01, "opt": "Adam", "layers": 2}
    assert trials(TuningSpec(spec.parameters, max_job_count=3)) == points[:3]


def test_grid_refuses_a_double_range():
    with pytest.raises(UsageError, match="cannot enumerate a DOUBLE"):
        trials(TuningSpec((ParameterSpec("lr", "DOUBLE", (), 0.001, 0.1, "LOG"),)))


def test_random_is_reproducible_with_its_seed_and_stays_in_range():
    spec = TuningSpec((ParameterSpec("lr", "DOUBLE", (), 1e-4, 1e-1, "LOG"), ParameterSpec("units", "INTEGER", (), 8, 64),
                       ParameterSpec("opt", "CATEGORICAL", ("SGD", "Adam"))), "Random", max_job_count=200, seed=7)
    first, again = trials(spec), trials(spec)
    assert first == again and len(first) == 200
    assert all(1e-4 <= t["lr"] <= 1e-1 and 8 <= t["units"] <= 64 and t["opt"] in ("SGD", "Adam") for t in first)
    # LOG: about as many draws below 0.00316 (the middle of the logarithm) as above it.
    assert 60 < sum(t["lr"] < 10 ** -2.5 for t in first) < 140
    assert trials(TuningSpec(spec.parameters, "Random", max_job_count=5, seed=8)) != first[:5]


def test_random_needs_a_count_and_bayesian_is_not_expanded():
    with pytest.raises(UsageError, match="max_job_count"):
        trials(TuningSpec((ParameterSpec("a", "DISCRETE", (1,)),), "Random"))
    with pytest.raises(UsageError, match="driver"):
        trials(TuningSpec((ParameterSpec("a", "DISCRETE", (1,)),), "Bayesian", max_job_count=3))


@pytest.mark.parametrize("text, key, values", [
    ("lr=0.1,0.01", "lr", [0.1, 0.01]),
    ("opt=SGD,Adam", "opt", ["SGD", "Adam"]),
    ("lr=0.1", "lr", [0.1]),
    ('tag="a,b"', "tag", ['"a,b"']),
    ("sizes=[1,2]", "sizes", [[1, 2]]),
    ("name=hello world", "name", ["hello world"]),
])
def test_param_values(text, key, values):
    assert parse_param_values(text) == (key, values)


@pytest.mark.parametrize("text, words", [("lr=0.1,,0.2", "empty value"), ("=1,2", "expected KEY=VALUE"),
                                         ("lr", "expected KEY=VALUE")])
def test_bad_param_values(text, words):
    with pytest.raises(UsageError, match=words):
        parse_param_values(text)


def test_grid_from_params_refuses_a_name_twice_and_a_name_no_program_can_take():
    with pytest.raises(UsageError, match="given twice"):
        grid_from_params([("lr", [1, 2]), ("lr", [3, 4])])
    with pytest.raises(UsageError, match="must be letters"):
        grid_from_params([("l r", [1, 2])])


def test_trial_command_passes_values_as_arguments_also_inside_bash_c():
    assert trial_command(["python3", "t.py"], {"lr": 0.1, "opt": "Adam"}) == ["python3", "t.py", "--lr=0.1", "--opt=Adam"]
    assert trial_command(["bash", "-c", "python3 t.py"], {"opt": "a b"}) == ["bash", "-c", "python3 t.py '--opt=a b'"]


@pytest.mark.parametrize("text, ids", [
    ("123", ["123"]),
    ("123_5", ["123_5"]),
    ("123_[5-8]", ["123_5", "123_6", "123_7", "123_8"]),
    ("123_[5-7%2]", ["123_5", "123_6", "123_7"]),
    ("123_[1,3,7-8]", ["123_1", "123_3", "123_7", "123_8"]),
    ("123_[0-999]", [f"123_{i}" for i in range(1000)]),
])
def test_squeue_names_of_array_tasks(text, ids):
    assert expand_job_id(text) == ids


def _execution(token: str, status: str = "submitting", job: str | None = None) -> Execution:
    return Execution(container="c", number=3, mode="script", status=status, compute_type="cpu", image="python",
                     command=["x"], params={}, bindings=[], workdir="/nonexistent/c/3/home", token=token,
                     slurm_job_id=job, created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))


def test_a_sweep_row_left_submitting_is_adopted_by_its_array_task():
    jobs = {f"77_{i}": SlurmJob(f"77_{i}", "PENDING", "None", "gear:c/1-4:abcd", "N/A") for i in range(4)}
    changes = reconcile.fold(_execution("abcd.2"), None, jobs, datetime.now(UTC))
    assert changes is not None and changes["slurm_job_id"] == "77_2" and changes["status"] == "queued"
    # A record names the task's own job id, not squeue's: it adopts nothing.
    assert reconcile.fold(_execution("abcd.2"), {"slurm_job_id": "80", "phase": "running"}, {}, datetime.now(UTC)) is None


def test_a_pending_array_task_is_queued_and_a_running_one_in_its_phase():
    jobs = {"77_2": SlurmJob("77_2", "PENDING", "JobArrayTaskLimit", "gear:c/1-4:abcd", "N/A")}
    assert reconcile.fold(_execution("abcd.2", "queued", "77_2"), None, jobs, datetime.now(UTC)) is None
    jobs = {"77_2": SlurmJob("77_2", "RUNNING", "None", "gear:c/1-4:abcd", "N/A", "node1")}
    changes = reconcile.fold(_execution("abcd.2", "queued", "77_2"), {"phase": "running"}, jobs, datetime.now(UTC))
    assert changes == {"status": "running"}


def test_metrics_lines_of_both_forms_and_what_is_skipped(tmp_path):
    home = tmp_path / "home"
    (home / ".gear").mkdir(parents=True)
    (home / ".gear" / "metrics.jsonl").write_text(
        '{"name": "acc", "value": 0.5, "step": 0, "time": 1.5}\n'
        '{"acc": 0.7, "loss": 0.2, "step": 1}\n'
        'not json\n{"name": "acc", "value": "high"}\n[1, 2]\n\n'
        '{"name": "acc", "value": NaN}\n{"acc": true}\n')
    found = metrics.read(home)
    assert [(p.name, p.value, p.step) for p in found.points] == [("acc", 0.5, 0), ("acc", 0.7, 1), ("loss", 0.2, 1)]
    assert found.skipped == 5 and found.last() == {"acc": 0.7, "loss": 0.2}


def test_metrics_are_never_read_through_a_link_or_from_a_fifo(tmp_path):
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"name": "stolen", "value": 1}\n')
    home = tmp_path / "home"
    (home / ".gear").mkdir(parents=True)
    (home / ".gear" / "metrics.jsonl").symlink_to(secret)
    assert metrics.read(home).points == []
    (home / ".gear" / "metrics.jsonl").unlink()
    (home / ".gear").rmdir()
    (home / ".gear").symlink_to(tmp_path)
    assert metrics.read(home).points == []
    (home / ".gear").unlink()
    (home / ".gear").mkdir()
    os.mkfifo(home / ".gear" / "metrics.jsonl")
    assert metrics.read(home).points == []     # and it did not block
    assert metrics.read(tmp_path / "missing").points == []


def test_gear_metrics_and_openbayestool_as_a_program_uses_them(tmp_path):
    program = ("import gear_metrics, openbayestool\n"
               "gear_metrics.log_metric('acc', 0.25, step=1)\n"
               "openbayestool.log_metric('acc', 0.5)\n"
               "gear_metrics.log_metrics({'loss': 3, 'acc': 0.75}, step=2)\n")
    target = tmp_path / "home" / ".gear" / "metrics.jsonl"
    subprocess.run([sys.executable, "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); exec(sys.argv[2])",
                    str(REPO / "gear_hpc" / "job_python"), program],
                   check=True, env={"GEAR_METRICS_FILE": str(target), "PATH": os.environ["PATH"]})
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(r["name"], r["value"], r.get("step")) for r in lines] == [("acc", 0.25, 1), ("acc", 0.5, None),
                                                                      ("loss", 3.0, 2), ("acc", 0.75, 2)]
    assert metrics.read(tmp_path / "home").last() == {"acc": 0.75, "loss": 3.0}


def test_the_array_script_keeps_the_task_options_and_adds_the_arrays_own():
    from gear_hpc.executions.sweep import array_script

    task = ("#!/bin/bash\n#SBATCH --job-name=gear-c-5\n#SBATCH --partition=cpu\n#SBATCH --time=01:00:00\n"
            "#SBATCH --chdir=/s/c/5\n#SBATCH --output=/s/c/5/output.log\n#SBATCH --comment=gear:c/5:t.0\n"
            "#SBATCH --signal=B:USR1@60\necho hi\n")
    text = array_script(task, "c", 5, 4, "tok", Path("/s/c/5/sweep"), 2)
    lines = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    assert lines == ["#SBATCH --partition=cpu", "#SBATCH --time=01:00:00", "#SBATCH --signal=B:USR1@60",
                     "#SBATCH --job-name=gear-c-5-8", "#SBATCH --chdir=/s/c/5/sweep",
                     "#SBATCH --output=/s/c/5/sweep/tasks/%a/output.log", "#SBATCH --comment=gear:c/5-8:tok",
                     "#SBATCH --array=0-3%2"]
    assert 'script=/s/c/5/sweep/tasks/"$task"/job.sh' in text and text.endswith('exec /bin/bash "$script"\n')
    assert "trials" not in text   # every trial's job.sh was written at submission
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)
    subprocess.run(["bash", "-n"], input=array_script(task, "c", 5, 4, "tok", Path("/s/c/5/sweep"), 2, task_script=True),
                   text=True, check=True)


def _start_task(array_script: Path, task: int) -> subprocess.CompletedProcess:
    """Run task `task` of a sweep's array script up to the point where it would exec its job script."""
    text = array_script.read_text()
    assert text.endswith('exec /bin/bash "$script"\n')
    text = text.removesuffix('exec /bin/bash "$script"\n') + "exit 0\n"
    return subprocess.run(["bash", "-c", text], env={**os.environ, "SLURM_ARRAY_TASK_ID": str(task)},
                          capture_output=True, text=True)


def _nothing_created(gear_env) -> None:
    for user_dir in (gear_env["storage"] / "users").iterdir():
        containers = user_dir / "containers"
        assert not containers.exists() or list(containers.iterdir()) == [], list(containers.rglob("*"))
        ledger = user_dir / "ledger.sqlite"
        if ledger.exists():
            with sqlite3.connect(ledger) as conn:
                assert conn.execute("SELECT COUNT(*) FROM executions").fetchone()[0] == 0
                assert conn.execute("SELECT COUNT(*) FROM containers").fetchone()[0] == 0


def test_a_sweep_slurm_refuses_leaves_no_row_and_no_directory(gear_env, fake_slurm):
    fake_slurm("sbatch", "echo 'sbatch: error: Batch job submission failed: Invalid job array specification' >&2; exit 1")
    result = gear("run", "-c", "sw", "--code", str(gear_env["code"]), "--param", "lr=0.1,0.01", "--param", "bs=1,2,3",
                  "--", "python3", "train.py")
    assert result.returncode == 1 and "Invalid job array specification" in result.stderr
    assert len(fake_slurm.calls()) == 1 and result.stderr.count("\n") == 1
    _nothing_created(gear_env)


def test_a_sweep_that_fails_while_its_directories_are_made_leaves_nothing(gear_env, fake_slurm, monkeypatch):
    """A crash part-way through the transaction (the 3rd directory cannot be made): no rows, no directories."""
    fake_slurm("sbatch", "exit 99")
    from gear_hpc.executions import lifecycle, sweep
    from gear_hpc.site import loading as site
    from gear_hpc.storage.disk import UserStorage

    made = []
    real_mkdir = Path.mkdir

    def failing_mkdir(self, *args, **kwargs):
        if self.name.isdigit() and self.parent.name == "sw":
            made.append(self)
            if len(made) == 3:
                raise OSError(28, "No space left on device")
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", failing_mkdir)
    loaded = site.load()
    request = sweep.SweepRequest(lifecycle.RunRequest(command=["x"], code=gear_env["code"], container="sw"),
                                 [{"a": i} for i in range(5)])
    with pytest.raises(OSError, match="No space"):
        sweep.submit(loaded, UserStorage(loaded.storage_root), request)
    assert fake_slurm.calls() == []
    _nothing_created(gear_env)


def test_a_sweep_whose_sbatch_timed_out_with_no_array_leaves_nothing(gear_env, fake_slurm, monkeypatch):
    monkeypatch.setattr("gear_hpc.slurm.jobs.SUBMIT_TIMEOUT", 1.0)
    fake_slurm("sbatch", "sleep 5")
    fake_slurm("squeue", "exit 0")
    from gear_hpc.executions import lifecycle, sweep
    from gear_hpc.site import loading as site
    from gear_hpc.storage.disk import UserStorage

    loaded = site.load()
    request = sweep.SweepRequest(lifecycle.RunRequest(command=["x"], code=gear_env["code"], container="sw"),
                                 [{"a": i} for i in range(3)])
    with pytest.raises(SlurmError, match="did not answer"):
        sweep.submit(loaded, UserStorage(loaded.storage_root), request)
    _nothing_created(gear_env)


def test_status_of_a_sweep_is_one_squeue_with_pending_tasks_collapsed(gear_env, fake_slurm):
    fake_slurm("sbatch", "echo 4242")
    result = gear("run", "-c", "sw", "--code", str(gear_env["code"]), "--param", "n=1,2,3,4,5,6", "--parallel", "2",
                  "--", "python3", "train.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"sw/{n}" for n in range(1, 7)]
    script = next((gear_env["storage"] / "users").iterdir()) / "containers" / "sw" / "1" / "sweep" / "job.sh"
    assert "#SBATCH --array=0-5%2" in script.read_text()
    # squeue: two tasks running, the rest pending as one collapsed line.
    fake_slurm("squeue", "printf '4242_0\\x1fRUNNING\\x1fNone\\x1fgear:sw/1-6:x\\x1fN/A\\x1fn1\\x1e\\n"
                         "4242_1\\x1fRUNNING\\x1fNone\\x1fgear:sw/1-6:x\\x1fN/A\\x1fn1\\x1e\\n"
                         "4242_[2-5%%2]\\x1fPENDING\\x1fJobArrayTaskLimit\\x1fgear:sw/1-6:x\\x1fN/A\\x1f\\x1e\\n'")
    fake_slurm("scontrol", "exit 99")
    before = len(fake_slurm.calls())
    listed = json.loads(gear("status", "--json").stdout)
    assert [c.split()[0] for c in fake_slurm.calls()[before:]] == ["squeue"]
    assert {e["id"] if "id" in e else f"{e['container']}/{e['number']}": (e["status"], e["slurm_job_id"])
            for e in listed} == {f"sw/{n}": ("syncing" if n <= 2 else "queued", f"4242_{n - 1}") for n in range(1, 7)}
    # Every trial: its own directory, parameters and arguments; its job script once its task starts; the code
    # once, linked.
    sw = script.parent.parent.parent
    for n in range(1, 7):
        assert not (sw / str(n) / "job.sh").exists() and not (sw / str(n) / "gear_params.json").exists()
        assert _start_task(script, n - 1).returncode == 0
        assert json.loads((sw / str(n) / "gear_params.json").read_text()) == {"n": n}
        assert f"--n={n}" in (sw / str(n) / "job.sh").read_text()
        assert (sw / "1" / "sweep" / "tasks" / str(n - 1)).resolve() == (sw / str(n)).resolve()
        assert (sw / str(n) / "code" / "train.py").is_file()
    assert (sw / "2" / "code").is_symlink() and not (sw / "1" / "code").is_symlink()


def test_tune_show_without_a_sweep_and_with_a_bad_target(gear_env):
    result = gear("tune", "show", "nothing")
    assert result.returncode == 1 and "no tuning or sweep" in result.stderr and result.stderr.count("\n") == 1
    result = gear("tune", "show", "../x")
    assert result.returncode == 2 and "invalid" in result.stderr and result.stderr.count("\n") == 1
    result = gear("metrics", "nothing/1")
    assert result.returncode == 1 and "no execution nothing/1" in result.stderr


@pytest.mark.parametrize("command", [["python3", "train.py"], ["bash", "-c", "python3 train.py"]])
def test_a_trials_script_rendered_once_is_the_script_rendered_for_it(gear_env, command):
    """TaskScripts (one render, stand-ins replaced) gives each trial the script job_script gives it,
    word for word (the arguments' line breaks aside)."""
    from gear_hpc.executions import lifecycle
    from gear_hpc.executions.sweep import TaskScripts
    from gear_hpc.site import loading as site
    from gear_hpc.storage.disk import UserStorage
    from gear_hpc.tuning.spec import trial_command

    loaded = site.load()
    storage = UserStorage(loaded.storage_root)
    compute_type, image = loaded.compute_type(loaded.default_compute_type), loaded.image(loaded.default_image)
    lib = storage.execution_dir("sw", 7) / "lib"
    empty = storage.execution_dir("sw", 7) / "empty"
    scripts = TaskScripts(loaded, storage, "sw", "0123abcd", compute_type, image, command, [], lib, empty)
    for number, task, values in ((7, 0, {"lr": 0.1, "opt": "a b'c"}), (12, 5, {"lr": 1e-05, "opt": "$(x)"})):
        argv = trial_command(command, values)
        exec_dir = storage.execution_dir("sw", number)
        fast = scripts.script(exec_dir, number, f"0123abcd.{task}", argv)
        direct = lifecycle.job_script(loaded, exec_dir, "sw", number, f"0123abcd.{task}", compute_type, image, argv,
                                      storage.user, [], python_lib=lib)
        if scripts.uses_template(argv):   # every trial mounts the first trial's empty directory
            direct = direct.replace(str(exec_dir / "empty"), str(empty))
            assert f"/{number}/empty" not in fast or number == 7
        assert " ".join(fast.replace("\\\n", " ").split()) == " ".join(direct.replace("\\\n", " ").split())
        subprocess.run(["bash", "-n"], input=fast, text=True, check=True)


def test_each_task_writes_the_script_its_trial_would_have_been_given(gear_env, fake_slurm):
    """A task writes its job.sh from task.sh and its line of `trials`: the text TaskScripts.script gives,
    byte for byte, for values a shell or bash's ${x//a/b} would read as more than text; mode 0600; a
    requeued task keeps the script its first start wrote; a task with no line stops with a message."""
    from gear_hpc.executions import lifecycle, sweep
    from gear_hpc.site import loading as site
    from gear_hpc.storage.disk import UserStorage

    fake_slurm("sbatch", "echo 6161")
    loaded = site.load()
    storage = UserStorage(loaded.storage_root)
    values = ["a b'c", "$(touch pwned)", "x & y", "\\&", "*", '"q"', "987650001", "--gear-trial-arguments-987650003"]
    base = lifecycle.RunRequest(command=["python3", "train.py"], code=gear_env["code"], container="odd")
    done = sweep.submit(loaded, storage, sweep.SweepRequest(base, [{"v": v} for v in values]))
    first_dir = storage.execution_dir("odd", done.first)
    array = first_dir / "sweep" / "job.sh"
    tasks = [int(line.split()[0]) for line in (first_dir / "sweep" / "trials").read_text().splitlines()]
    compute_type, image = loaded.compute_type(loaded.default_compute_type), loaded.image(loaded.default_image)
    scripts = sweep.TaskScripts(loaded, storage, "odd", "tok", compute_type, image, base.command, [],
                                first_dir / "lib", first_dir / "empty")
    scripts.template = (first_dir / "sweep" / "task.sh").read_text()   # the sweep's own (its token, its paths)
    for offset, (task, value) in enumerate(zip(tasks, values, strict=True)):
        number = done.first + offset
        exec_dir = storage.execution_dir("odd", number)
        started = _start_task(array, task)
        assert started.returncode == 0, started.stderr
        # From the template, script() takes only the task id of the token.
        expected = scripts.script(exec_dir, number, f"any.{task}", ["python3", "train.py", f"--v={value}"])
        assert f"/odd/{number}/" in expected and shlex.quote(f"--v={value}") in expected
        assert (exec_dir / "job.sh").read_text() == expected
        assert (exec_dir / "job.sh").stat().st_mode & 0o777 == 0o600
    assert not (gear_env["code"] / "pwned").exists() and not list(first_dir.parent.rglob("pwned"))
    # Requeued: the script of the first start is run again, not rewritten.
    kept = storage.execution_dir("odd", done.first) / "job.sh"
    kept.write_text(kept.read_text() + "# first start\n")
    assert _start_task(array, tasks[0]).returncode == 0 and kept.read_text().endswith("# first start\n")
    stray = _start_task(array, 999)
    assert stray.returncode == 1 and stray.stderr == "gear: task 999 has no line in the sweep's list of trials\n"


def test_a_trial_that_never_started_continues_from_the_sweeps_code(gear_env, fake_slurm):
    """Its task would have linked its code; cancelled while pending, it has none, and gear continue finds
    the sweep's."""
    from gear_hpc.executions import lifecycle, sweep
    from gear_hpc.ledger.db import Ledger
    from gear_hpc.site import loading as site
    from gear_hpc.storage.disk import UserStorage

    fake_slurm("sbatch", "echo 7171")
    loaded = site.load()
    storage = UserStorage(loaded.storage_root)
    lifecycle.submit(loaded, storage, lifecycle.RunRequest(command=["true"], code=gear_env["code"], container="cc"))
    base = lifecycle.RunRequest(command=["python3", "train.py"], code=gear_env["code"], container="cc")
    done = sweep.submit(loaded, storage, sweep.SweepRequest(base, [{"n": i} for i in range(3)]))
    assert done.first == 2
    with Ledger(storage.ledger_path) as ledger:
        ledger.conn.execute("UPDATE executions SET status = 'terminated' WHERE container = 'cc'")
        request = lifecycle.continue_request(ledger, "cc", 4, home="none")
        assert request.code == storage.execution_dir("cc", 2) / "code" and (request.code / "train.py").is_file()
        assert request.params == {"n": 2} and request.command == ["python3", "train.py", "--n=2"]
        # An ordinary execution's code is its own, whatever else is in the container.
        assert lifecycle.continue_request(ledger, "cc", 1, home="none").code == storage.execution_dir("cc", 1) / "code"


def test_tasks_squeue_leaves_out_take_their_arrays_record_or_one_scontrol_for_the_array():
    from gear_hpc.executions.reconcile import _ask_scontrol

    open_tasks = [_execution(f"t.{i}", "queued", f"90_{i}") for i in range(1000)]
    # squeue shows an array whose pending tasks were cancelled as the bare array id.
    jobs = {"90": SlurmJob("90", "CANCELLED", "JobHeldUser", "gear:c/1-1000:t", "N/A"),
            "90_0": SlurmJob("90_0", "COMPLETED", "None", "gear:c/1-1000:t", "N/A", "n1")}
    asked: list[str] = []
    assert _ask_scontrol(open_tasks, jobs, lambda job: asked.append(job)) == set() and asked == []
    assert jobs["90_7"].state == "CANCELLED" and jobs["90_0"].state == "COMPLETED"
    # Gone from squeue and from scontrol: one question settles all 1,000 tasks.
    gone = [_execution(f"t.{i}", "queued", f"91_{i}") for i in range(1000)]
    unknown = _ask_scontrol(gone, {}, lambda job: asked.append(job))
    assert asked == ["91"] and len(unknown) == 1000


def test_the_plots_are_real_pictures_and_text(tmp_path):
    """tuning/plot.py on made-up trials: a PNG of the right size with drawing on it, and plotext's panels."""
    import matplotlib.image

    from gear_hpc.tuning import plot
    from gear_hpc.tuning.metrics import Metrics, Point
    from gear_hpc.tuning.results import Trial, Tuning

    tuning = Tuning("c", 1, 6, {"parameter_specs": [{"name": "lr", "type": "DOUBLE", "scale_type": "LOG"},
                                                    {"name": "opt", "type": "CATEGORICAL"}]})
    found = []
    for n, (lr, opt) in enumerate([(0.1, "SGD"), (0.01, "SGD"), (0.001, "Adam"), (0.1, "Adam"), (0.0001, "Adam"),
                                   (0.03, "SGD")], 1):
        points = [Point("acc", 0.5 + 0.05 * step - abs(lr - 0.01), step) for step in range(4)]
        execution = _execution(f"t.{n}", "completed", f"9_{n}")
        execution.number = n
        found.append(Trial(execution, {"lr": lr, "opt": opt}, Metrics(points), points[-1].value))
    found.sort(key=lambda t: -(t.score or 0))
    path = plot.png(tmp_path / "p.png", tuning, found, "acc", "MAXIMIZE")
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[1] >= 800 and pixels.shape[0] >= 300
    assert (pixels[..., :3] < 0.9).any(axis=-1).mean() > 0.01
    text = plot.terminal(tuning, found, "acc", "MAXIMIZE", width=60)
    assert "acc against lr" in text and "acc against opt" in text and "over time" in text
    assert "\x1b[" not in text     # no colour codes: it reads the same in a file


def test_task_ids_are_the_execution_numbers_when_slurm_allows_them(gear_env, fake_slurm):
    fake_slurm("sbatch", "echo 4343")
    fake_slurm("scontrol", "echo 'MaxArraySize            = 1001'")
    assert gear("run", "-c", "sw", "--code", str(gear_env["code"]), "--param", "n=1,2", "--", "true").returncode == 0
    result = gear("run", "-c", "sw", "--code", str(gear_env["code"]), "--param", "n=1,2,3", "--parallel", "2",
                  "--", "python3", "train.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["sw/3", "sw/4", "sw/5"]
    sw = next((gear_env["storage"] / "users").iterdir()) / "containers" / "sw"
    script = (sw / "3" / "sweep" / "job.sh").read_text()
    assert "#SBATCH --array=3-5%2" in script and f"#SBATCH --output={sw}/%a/output.log" in script
    assert f'script={sw}/"$task"/job.sh' in script and not list((sw / "3" / "sweep" / "tasks").iterdir())
    with sqlite3.connect(sw.parent.parent / "ledger.sqlite") as conn:
        rows = conn.execute("SELECT number, slurm_job_id, token FROM executions WHERE number >= 3 ORDER BY number")
        assert [(n, job, token.rpartition(".")[2]) for n, job, token in rows] == [
            (3, "4343_3", "3"), (4, "4343_4", "4"), (5, "4343_5", "5")]
    # Above MaxArraySize: task ids 0 … N-1 and links, as without scontrol.
    fake_slurm("scontrol", "echo 'MaxArraySize            = 5'")
    result = gear("run", "-c", "sw", "--code", str(gear_env["code"]), "--param", "n=1,2", "--", "true")
    assert result.returncode == 0 and "#SBATCH --array=0-1\n" in (sw / "6" / "sweep" / "job.sh").read_text()
    assert (sw / "6" / "sweep" / "tasks" / "1").resolve() == (sw / "7").resolve()


def test_a_large_sweep_makes_every_trial_and_a_failure_in_one_leaves_nothing(gear_env, fake_slurm, monkeypatch):
    """100 trials: a directory and a line of `trials` each (a `bash -c` command: every trial's files at once, by
    threads); a failure in the directories or the sweep's files undoes the whole sweep."""
    from gear_hpc.executions import lifecycle, sweep
    from gear_hpc.site import loading as site
    from gear_hpc.storage.disk import UserStorage

    fake_slurm("sbatch", "echo 5151")
    loaded = site.load()
    storage = UserStorage(loaded.storage_root)
    request = sweep.SweepRequest(lifecycle.RunRequest(command=["python3", "train.py"], code=gear_env["code"],
                                                      container="big"), [{"n": i} for i in range(100)], 4)
    done = sweep.submit(loaded, storage, request)
    assert (done.first, done.count, done.slurm_job_id) == (1, 100, "5151")
    assert sorted(p.name for p in storage.execution_dir("big", 1).iterdir()) == ["code", "empty", "lib", "sweep"]
    for n in range(2, 101):   # a directory each; its task makes the rest when it starts
        assert list(storage.execution_dir("big", n).iterdir()) == []
    sweep_dir = storage.execution_dir("big", 1) / "sweep"
    assert (sweep_dir / "trials").read_text().splitlines() == [
        f'{n - 1}\t{n}\t{{\\n  "n": {n - 1}\\n}}\\n\t--n={n - 1}' for n in range(1, 101)]

    inline = sweep.SweepRequest(lifecycle.RunRequest(command=["bash", "-c", "python3 train.py"], code=gear_env["code"],
                                                     container="inline"), [{"n": i} for i in range(100)])
    sweep.submit(loaded, storage, inline)
    for n in range(1, 101):
        directory = storage.execution_dir("inline", n)
        assert json.loads((directory / "gear_params.json").read_text()) == {"n": n - 1}
        assert f"--n={n - 1}" in (directory / "job.sh").read_text() and (directory / "code" / "train.py").is_file()
    assert not (storage.execution_dir("inline", 1) / "sweep" / "trials").exists()
    assert [c.split()[0] for c in fake_slurm.calls()].count("sbatch") == 2

    real_mkdir = os.mkdir

    def failing_mkdir(path, *args, **kwargs):
        if str(path).endswith("/big/150"):
            raise OSError(28, "No space left on device")
        real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", failing_mkdir)
    with pytest.raises(OSError, match="No space"):
        sweep.submit(loaded, storage, sweep.SweepRequest(request.base, [{"n": i} for i in range(100)]))
    monkeypatch.setattr(os, "mkdir", real_mkdir)
    assert sorted(int(p.name) for p in storage.container_dir("big").iterdir()) == list(range(1, 101))

    real_write = sweep._write

    def failing_write(path, text):
        if path.endswith("/101/sweep/trials"):
            raise OSError(28, "No space left on device")
        real_write(path, text)

    monkeypatch.setattr(sweep, "_write", failing_write)
    with pytest.raises(OSError, match="No space"):
        sweep.submit(loaded, storage, sweep.SweepRequest(request.base, [{"n": i} for i in range(100)]))
    assert sorted(int(p.name) for p in storage.container_dir("big").iterdir()) == list(range(1, 101))
    with sqlite3.connect(storage.ledger_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM executions WHERE container = 'big'").fetchone()[0] == 100
    assert [c.split()[0] for c in fake_slurm.calls()].count("sbatch") == 2
