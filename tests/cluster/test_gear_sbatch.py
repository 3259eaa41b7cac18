"""`gear sbatch` on the real cluster (user sbuser1): a drop-in for sbatch whose jobs are gear executions."""

from __future__ import annotations

import re
import uuid

import pytest

from conftest import User

TRAIN = """#!/bin/bash
#SBATCH --time=7
#SBATCH --job-name=from-script
#SBATCH --mem=200M   # a comment after the directive
#GEAR -r cpu-small
#GEAR -c {container}
#GEAR -d {dataset}:input0
#GEAR --param lr=0.1
#GEAR -m "via sbatch"

set -u   # directives stop at the first command: the next line is only a comment
#GEAR -r no-such-type
echo "args: $*"
echo "pwd: $(pwd)"
ls /hyperai/input/input0
cat gear_params.json
exit {code}
"""


@pytest.fixture(scope="module")
def user() -> User:
    return User("sbuser1")


@pytest.fixture(scope="module")
def dataset(user: User) -> str:
    name = f"sb{uuid.uuid4().hex[:8]}"
    user.gear("data", "create", name, check=True)
    user.gear("data", "upload", name, str(user.make_dir({"mnist.csv": "1\n"})), check=True)
    return name


def _job(user: User, job_id: str) -> str:
    return user.run("scontrol", "show", "job", job_id, check=True).stdout


def _containers(user: User) -> set[tuple[str, int]]:
    return {(c["name"], c["executions"]) for c in user.gear_json("ls")}


def _open_jobs(user: User) -> list[str]:
    return user.run("squeue", "--me", "-h", "-o", "%i", check=True).stdout.split()


def test_sbatch_and_gear_lines(user, dataset, container):
    code = user.make_dir({"train.sh": TRAIN.format(container=container, dataset=dataset, code=0)})
    result = user.gear("sbatch", "-J", "from-command-line", "train.sh", "a b", "c", cwd=str(code))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    found = re.fullmatch(r"Submitted batch job (\d+)\n", result.stdout)
    assert found, result.stdout
    job_id = found.group(1)
    job = _job(user, job_id)
    assert "JobName=from-command-line" in job            # the command line wins over #SBATCH
    assert "TimeLimit=00:07:00" in job                   # #SBATCH wins over the compute type
    assert "MinMemoryNode=200M" in job
    record = user.wait_for(f"{container}/1", {"completed", "failed"})
    assert record["status"] == "completed", record
    shown = user.gear_json("show", f"{container}/1")
    assert shown["slurm_job_id"] == job_id and shown["compute_type"] == "cpu-small"
    assert shown["command"] == ["/bin/bash", "train.sh", "a b", "c"] and shown["message"] == "via sbatch"
    assert [b["source"] for b in shown["bindings"]] == [f"{dataset}@1"]
    log = user.gear("logs", f"{container}/1", check=True).stdout
    assert "args: a b c" in log and "pwd: /hyperai/home" in log and "mnist.csv" in log and '"lr": 0.1' in log


def test_parsable_wait_and_exit_code(user, dataset, container):
    code = user.make_dir({"fail.sh": TRAIN.format(container=container, dataset=dataset, code=3)})
    result = user.gear("sbatch", "--parsable", "--wait", "fail.sh", cwd=str(code))
    assert result.returncode == 3, result.stderr
    assert re.fullmatch(r"\d+\n", result.stdout), result.stdout
    shown = user.gear_json("show", f"{container}/1")
    assert (shown["status"], shown["exit_code"], shown["slurm_job_id"]) == ("failed", 3, result.stdout.strip())
    # Slurm sees the program's exit code too.
    assert "ExitCode=3:0" in _job(user, shown["slurm_job_id"])


def test_wrap_and_dependency(user, container):
    first = user.gear("sbatch", "--parsable", "--hold", "--wrap", "echo first", cwd="/tmp")
    assert first.returncode == 0, first.stderr
    first_id = first.stdout.strip()
    second = user.gear("sbatch", "--parsable", f"--dependency=afterok:{first_id}", "--wrap", "echo second",
                       cwd="/tmp")
    assert second.returncode == 0, second.stderr
    second_id = second.stdout.strip()
    assert f"Dependency=afterok:{first_id}" in _job(user, second_id)
    user.run("scontrol", "release", first_id, check=True)
    executions = {e["slurm_job_id"]: e for e in user.gear_json("history", "sbatch")}
    assert executions[first_id]["command"] == ["/bin/sh", "-c", "echo first"]
    second_execution = executions[second_id]["id"]
    assert user.wait_for(second_execution, {"completed", "failed"})["status"] == "completed"
    assert "second" in user.gear("logs", second_execution, check=True).stdout


def test_script_from_stdin_and_passthrough(user):
    result = user.run("bash", "-c", "printf '#!/bin/sh\\n#GEAR -c sbstdin\\necho from-stdin\\n' | gear sbatch",
                      cwd="/tmp")
    assert result.returncode == 0 and result.stdout.startswith("Submitted batch job "), result.stderr
    assert user.gear("sbatch", "--version", check=True).stdout.startswith("slurm")


@pytest.mark.parametrize("files,argv,words", [
    ({"s.sh": "#!/bin/bash\n#GEAR --frobnicate\ntrue\n"}, ["s.sh"], "s.sh:2: #GEAR --frobnicate: unknown option"),
    ({"s.sh": "#!/bin/bash\n#GEAR -r h100-8\ntrue\n"}, ["s.sh"], "unknown compute type 'h100-8'"),
    ({"s.sh": "#!/bin/bash\n#GEAR -d nodata:input0\ntrue\n"}, ["s.sh"], "you have no dataset 'nodata'"),
    ({"s.sh": "echo no interpreter\n"}, ["s.sh"], "s.sh: this does not look like a batch script"),
    ({"s.sh": "#!/bin/bash\n#SBATCH --comment=mine\ntrue\n"}, ["s.sh"], "sbatch --comment: not available"),
    ({"s.sh": "#!/bin/bash\ntrue\n"}, ["--signal=USR1@60", "s.sh"], "sbatch --signal: not available"),
    ({"s.sh": "#!/bin/bash\ntrue\n"}, ["-p", "no-such-partition", "s.sh"], "invalid partition"),
    ({}, ["missing.sh"], "unable to open file missing.sh"),
    ({"s.sh": "#!/bin/bash\ntrue\n"}, ["-n1", ":", "-n2", "s.sh"], "heterogeneous jobs"),
    ({"s.sh": "#!/bin/bash\n#SBATCH --gres=gpu:1\ntrue\n"}, ["s.sh"], "compute type 'cpu-small' has none"),
])
def test_bad_input_submits_nothing(user, files, argv, words):
    code = user.make_dir(files)
    before_jobs, before = _open_jobs(user), _containers(user)
    result = user.gear("sbatch", *argv, cwd=str(code))
    assert result.returncode != 0 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert set(_open_jobs(user)) <= set(before_jobs) and _containers(user) == before


def test_gpus_with_a_gpu_compute_type(user, container):
    code = user.make_dir({"g.sh": f"#!/bin/sh\n#SBATCH --gres=gpu:1\n#GEAR -r gpu-1\n#GEAR -c {container}\n"
                                  "echo visible=$CUDA_VISIBLE_DEVICES\n"})
    result = user.gear("sbatch", "--wait", "g.sh", cwd=str(code))
    assert result.returncode == 0, result.stderr
    assert "visible=0" in user.gear("logs", f"{container}/1", check=True).stdout


SUBMITTER = r'''
import subprocess, sys
ids = []
for i in range(2):
    out = subprocess.run(["sbatch", "--parsable", "job.sh", str(i)], capture_output=True, text=True, check=True)
    ids.append(out.stdout.strip())
print(" ".join(ids))
'''


def test_a_program_calling_sbatch_by_name_gets_executions(user, container):
    shim_dir = user.gear("sbatch", "--path", check=True).stdout.strip()
    assert user.run("test", "-x", f"{shim_dir}/sbatch").returncode == 0
    code = user.make_dir({"submit.py": SUBMITTER, "job.sh": f"#!/bin/sh\n#GEAR -c {container}\necho task $1\nsleep 30\n"})
    env_path = f"{shim_dir}:/usr/local/bin:/usr/bin:/bin"
    result = user.run("env", f"PATH={env_path}", "python3", "submit.py", cwd=str(code))
    assert result.returncode == 0, result.stderr
    ids = result.stdout.split()
    assert len(ids) == 2 and all(i.isdigit() for i in ids)
    history = user.gear_json("history", container)
    assert sorted(e["slurm_job_id"] for e in history) == sorted(ids)
    # Slurm's own commands keep working on those ids.
    assert set(ids) <= set(_open_jobs(user))
    user.run("scancel", ids[1], check=True)
    ended = user.wait_for(f"{container}/2", {"terminated", "failed", "completed"}, timeout=60)
    assert ended["status"] == "terminated"
    user.run("scancel", ids[0], check=True)

    # A gear command run with the directory first on PATH submits its own job script through
    # the real sbatch: one execution, no loop.
    run = user.run("env", f"PATH={env_path}", "gear", "run", "-c", container, "-f", "--", "echo", "plain",
                   cwd=str(code))
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == f"{container}/3"
    assert len(user.gear_json("history", container)) == 3


def test_the_shim_never_finds_itself(user):
    shim_dir = user.gear("sbatch", "--path", check=True).stdout.strip()
    # GEAR_SLURM_BIN naming gear's sbatch is refused; with only gear's sbatch (and gear) on PATH the call
    # must not run itself for ever.
    result = user.run("env", f"PATH={shim_dir}:/usr/local/bin", "GEAR_SLURM_BIN=" + shim_dir, "sbatch",
                      "--wrap", "true", cwd="/tmp", timeout=60)
    assert result.returncode != 0 and "holds gear's own sbatch" in result.stderr
    lonely = user.make_dir({})
    (lonely / "gear").symlink_to("/usr/local/bin/gear")
    result = user.run("env", f"PATH={shim_dir}:{lonely}", "/usr/bin/python3", "-c",
                      "import subprocess; subprocess.run(['sbatch', '--wrap', 'true'])", cwd="/tmp", timeout=60)
    # It ends, one line, rather than running itself again (rsync or sbatch is missing there, not gear).
    assert re.fullmatch(r"gear: error: command not found: (rsync|sbatch)\n", result.stderr), result.stderr


def test_array_each_task_an_execution(user, container):
    script = (f"#!/bin/bash\n#SBATCH --array=0-1\n#GEAR -c {container}\n"
              "echo task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_JOB_ID; exit $SLURM_ARRAY_TASK_ID\n")
    code = user.make_dir({"arr.sh": script})
    # The command line's --array wins over the script's: ids 1, 3, 5, two at a time.
    result = user.gear("sbatch", "--array=1-5:2%2", "--wait", "arr.sh", cwd=str(code))
    assert result.returncode == 5, result.stderr                 # the highest exit code, as sbatch --wait
    found = re.fullmatch(r"Submitted batch job (\d+)\n", result.stdout)
    assert found, result.stdout
    array_id = found.group(1)
    history = sorted(user.gear_json("history", container), key=lambda e: e["number"])
    assert [(e["slurm_job_id"], e["exit_code"]) for e in history] == [
        (f"{array_id}_1", 1), (f"{array_id}_3", 3), (f"{array_id}_5", 5)]
    assert "task 3 of " + array_id in user.gear("logs", f"{container}/2", check=True).stdout


def test_array_tasks_are_slurm_jobs(user, container):
    code = user.make_dir({"arr.sh": f"#!/bin/sh\n#GEAR -c {container}\nsleep 120\n"})
    result = user.gear("sbatch", "--parsable", "-a", "0-1", "arr.sh", cwd=str(code))
    assert result.returncode == 0, result.stderr
    array_id = result.stdout.strip()
    assert array_id.isdigit()
    assert {f"{array_id}_0", f"{array_id}_1"} <= set(user.run("squeue", "--me", "-r", "-h", "-o", "%i").stdout.split())
    for n in (1, 2):
        assert user.wait_for(f"{container}/{n}", {"running"}, timeout=90)["status"] == "running"
    user.run("scancel", f"{array_id}_1", check=True)             # one task, by Slurm's own id
    assert user.wait_for(f"{container}/2", {"terminated", "failed"}, timeout=60)["status"] == "terminated"
    assert user.gear_json("status", f"{container}/1")["status"] == "running"
    user.run("scancel", array_id, check=True)                    # the rest, as one job
    assert user.wait_for(f"{container}/1", {"terminated", "failed"}, timeout=60)["status"] == "terminated"


def test_a_pending_task_cancelled_alone_does_not_stay_queued(user, container):
    code = user.make_dir({"arr.sh": f"#!/bin/sh\n#GEAR -c {container}\ntrue\n"})
    array_id = user.gear("sbatch", "--parsable", "--hold", "-a", "0-1", "arr.sh", cwd=str(code), check=True).stdout.strip()
    user.run("scancel", f"{array_id}_1", check=True)   # Slurm drops a pending task at once: "Job N_1 not found"
    assert user.wait_for(f"{container}/2", {"lost"}, timeout=90)["status"] == "lost"
    assert user.gear_json("status", f"{container}/1")["status"] == "queued"
    user.run("scancel", array_id, check=True)


@pytest.mark.parametrize("spec", ["5-1", "1-x", "0-3%0", "1,1"])
def test_bad_array_submits_nothing(user, container, spec):
    code = user.make_dir({"arr.sh": f"#!/bin/sh\n#GEAR -c {container}\ntrue\n"})
    result = user.gear("sbatch", f"--array={spec}", "arr.sh", cwd=str(code))
    assert result.returncode == 2 and f"sbatch --array={spec}" in result.stderr
    assert not (user.storage / "containers" / container).exists()


def _history_number(user: User, job: str) -> int:
    return next(e for e in user.gear_json("history", "sbatch") if e["slurm_job_id"] == job)["number"]


BOTH_STREAMS = "echo to-stdout; echo to-stderr >&2"


def test_dash_o_writes_where_sbatch_would_and_gear_logs_keeps_a_copy(user):
    directory = user.make_dir({})
    out = user.run("gear", "sbatch", "--parsable", "--wait", "-o", "out-%j.txt", "--wrap", BOTH_STREAMS,
                   cwd=str(directory))
    assert out.returncode == 0, out.stderr
    job = out.stdout.strip().split(";")[0]
    # Both streams in the user's file, as sbatch -o puts them (their order between streams is not fixed).
    assert sorted((directory / f"out-{job}.txt").read_text().splitlines()) == ["to-stderr", "to-stdout"]
    logs = user.gear("logs", f"sbatch/{_history_number(user, job)}", check=True)
    assert sorted(logs.stdout.splitlines()) == ["to-stderr", "to-stdout"]


def test_dash_e_alone_takes_stderr_and_gear_logs_has_both(user):
    directory = user.make_dir({})
    out = user.run("gear", "sbatch", "--parsable", "--wait", "-e", "err-%j.txt", "--wrap", BOTH_STREAMS,
                   cwd=str(directory))
    assert out.returncode == 0, out.stderr
    job = out.stdout.strip().split(";")[0]
    assert (directory / f"err-{job}.txt").read_text() == "to-stderr\n"
    logs = user.gear("logs", f"sbatch/{_history_number(user, job)}", check=True)
    assert sorted(logs.stdout.splitlines()) == ["to-stderr", "to-stdout"]   # stdout once, not twice


def test_gear_logs_of_a_job_that_never_ran_says_it_left_no_output(user):
    out = user.run("gear", "sbatch", "--parsable", "--hold", "--wrap", "true", cwd=str(user.make_dir({})))
    assert out.returncode == 0, out.stderr
    job = out.stdout.strip().split(";")[0]
    number = _history_number(user, job)
    user.run("scancel", job, check=True)
    assert user.wait_for(f"sbatch/{number}", {"terminated"}, timeout=60)["status"] == "terminated"
    logs = user.gear("logs", f"sbatch/{number}")
    assert logs.returncode == 0 and logs.stdout == ""
    assert "left no output in gear's log (status: terminated)" in logs.stderr


def test_an_array_with_dash_o_gives_each_task_its_file_and_its_log(user):
    directory = user.make_dir({})
    out = user.run("gear", "sbatch", "--parsable", "--wait", "--array=1-2", "-o", "out-%A_%a.txt", "--wrap",
                   "echo task-$SLURM_ARRAY_TASK_ID", cwd=str(directory))
    assert out.returncode == 0, out.stderr
    array = out.stdout.strip().split(";")[0]
    for task in (1, 2):
        assert (directory / f"out-{array}_{task}.txt").read_text() == f"task-{task}\n"
    tasks = [e for e in user.gear_json("history", "sbatch") if (e["slurm_job_id"] or "").startswith(f"{array}_")]
    assert len(tasks) == 2
    shown = sorted(user.gear("logs", f"sbatch/{e['number']}", check=True).stdout for e in tasks)
    assert shown == ["task-1\n", "task-2\n"]
