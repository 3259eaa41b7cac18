"""gear sbatch's reading of a batch script and of sbatch's command line (executions/batch.py), without Slurm."""

from __future__ import annotations

import pytest

from gear_hpc.base.errors import UsageError
from gear_hpc.executions import batch
from gear_hpc.slurm.sbatch_options import parse

SCRIPT = """#!/usr/bin/env python3 -u
#SBATCH -t 10 --mem=1G
#SBATCH --job-name="two words"  # comment
#GEAR -r gpu-1 -c mnist
#GEAR -d mnist:input0 --param lr=0.1 --param=bs=32
#GEAR -m "a message"

print("hi")
#SBATCH --time=99
"""


def test_directives_until_the_first_command():
    script = batch.read_script("train.py", SCRIPT)
    assert script.interpreter == ["/usr/bin/env", "python3", "-u"]
    assert script.directives == [("--time", "10"), ("--mem", "1G"), ("--job-name", "two words")]
    g = script.gear
    assert (g.compute_type, g.container, g.bindings, g.params, g.message) == \
        ("gpu-1", "mnist", ["mnist:input0"], ["lr=0.1", "bs=32"], "a message")


def test_command_line_wins_and_own_options_stay_gears(tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    plan = batch.build(["--parsable", "-t", "5", "-o", "logs/%j.out", "-W", "train.py", "--epochs", "3"], tmp_path)
    try:
        assert plan.request.command == ["/usr/bin/env", "python3", "-u", "train.py", "--epochs", "3"]
        assert plan.request.sbatch_options == ["--mem=1G", "--job-name=two words", "--time=5",
                                               f"--output={tmp_path}/logs/%j.out", "--open-mode=truncate"]
        assert (plan.parsable, plan.wait, plan.quiet) == (True, True, False)
        assert plan.request.generated_files == {"train.py": SCRIPT}
        assert plan.request.container == "mnist" and plan.request.params == {"lr": 0.1, "bs": 32}
        assert plan.temporary_code is not None and plan.temporary_code.is_dir()
    finally:
        batch.cleanup(plan)
    assert not plan.temporary_code.exists()


def test_wrap_and_answers(tmp_path):
    plan = batch.build(["--wrap", "echo $HOME; true", "-Q"], tmp_path)
    batch.cleanup(plan)
    assert plan.request.command == ["/bin/sh", "-c", "echo $HOME; true"]
    assert plan.request.container == batch.DEFAULT_CONTAINER
    assert batch.sbatch_answer("12", plan) is None
    plan.quiet, plan.clusters = False, "gear-dev"
    assert batch.sbatch_answer("12", plan) == "Submitted batch job 12 on cluster gear-dev"
    plan.parsable = True
    assert batch.sbatch_answer("12", plan) == "12;gear-dev"


def test_the_script_ends_the_options():
    assert parse(["-N1", "run.sh", "-N", "2", "--x"], stop_at_script=True) == \
        ([("--nodes", "1")], ["run.sh", "-N", "2", "--x"])
    assert parse(["-vW", "--nice", "run.sh"], stop_at_script=True) == \
        ([("--verbose", None), ("--wait", None), ("--nice", None)], ["run.sh"])


@pytest.mark.parametrize("argv,text,words", [
    (["s.sh"], "#!/bin/sh\n#GEAR -x y\n", "s.sh:2: #GEAR -x: unknown option"),
    (["s.sh"], "#!/bin/sh\n#GEAR -r\n", "s.sh:2: #GEAR -r needs a value"),
    (["s.sh"], "#!/bin/sh\n#SBATCH 'x\n", "s.sh:2: cannot read the #SBATCH line"),
    (["s.sh"], "#!/bin/sh\n#SBATCH oops\n", "s.sh:2: #SBATCH 'oops' is not an option"),
    (["s.sh"], "no shebang\n", "s.sh: this does not look like a batch script"),
    (["s.sh"], "#!/bin/sh\r\ntrue\r\n", "s.sh: the script has DOS line breaks"),
    (["--comment=x", "s.sh"], "#!/bin/sh\n", "sbatch --comment: not available"),
    (["--container=/x", "s.sh"], "#!/bin/sh\n", "sbatch --container: not available"),
    (["-J", "a\nb", "s.sh"], "#!/bin/sh\n", "sbatch --job-name contains a control character"),
    (["--wrap", "true", "s.sh"], "#!/bin/sh\n", "--wrap and a script (s.sh) cannot be given together"),
    ([":", "s.sh"], "#!/bin/sh\n", "heterogeneous jobs"),
    (["nothere.sh"], "#!/bin/sh\n", "unable to open file nothere.sh"),
    ([], None, "no batch script given"),
])
def test_refused_before_anything_is_made(tmp_path, argv, text, words):
    if text is not None:
        (tmp_path / "s.sh").write_text(text)
    with pytest.raises(UsageError, match=words.replace("(", r"\(").replace(")", r"\)")):
        batch.build(argv, tmp_path)


@pytest.mark.parametrize("spec,tasks", [
    ("0-3", [0, 1, 2, 3]), ("1,3,5-9:2%2", [1, 3, 5, 7, 9]), ("7", [7]), ("0-99%10", list(range(100))),
])
def test_array_task_ids(spec, tasks):
    assert batch.array_tasks(spec) == tasks


@pytest.mark.parametrize("spec", ["", "5-1", "a", "1-3:0", "0-3%", "0-3%x", "1,1", "0-20000", "-1"])
def test_bad_array_specs(spec):
    with pytest.raises(UsageError, match="sbatch --array="):
        batch.array_tasks(spec)


def test_an_array_task_scontrol_no_longer_has_is_unknown(fake_slurm):
    # `scancel 123_1` of a pending task: scontrol then says "Job 123_1 not found" (stdout, exit 1), which is
    # as much evidence as "Invalid job id": the task must not stay queued for ever.
    from gear_hpc.base.errors import SlurmError
    from gear_hpc.slurm.jobs import show_job

    fake_slurm("scontrol", 'echo "Job ${4} not found"; exit 1')
    assert show_job("123_1") is None
    fake_slurm("scontrol", 'echo "slurm_load_jobs error: Socket timed out" >&2; exit 1')
    with pytest.raises(SlurmError):
        show_job("123_1")
