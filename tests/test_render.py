"""The rendered batch script: golden file, quoting, and refusals."""

import os
import subprocess
from pathlib import Path

import pytest

from gear_hpc import site
from gear_hpc.errors import GearError
from gear_hpc.executions import job_script
from gear_hpc.render import sbatch_value, shell_quote

GOLDEN = Path(__file__).parent / "golden" / "job.sh"
NASTY = ["python3", "train.py", "$(touch pwned)", "`id`", "a;b", "it's", '"q"', "%j", "a b", "*", "~", "-x"]


def _script(command=("python3", "train.py")):
    loaded = site.load()
    return job_script(loaded, Path("/srv/gear/users/alice/containers/mnist/3"), "mnist", 3, "0123456789abcdef",
                      loaded.compute_type("gpu-1"), loaded.image("python"), list(command), "alice")


def test_script_matches_golden_file(gear_env):
    text = _script().replace(str(gear_env["tmp"]), "<tmp>")
    if os.environ.get("GEAR_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), (
        "the rendered batch script changed; if that is intended, refresh the golden file with "
        "GEAR_UPDATE_GOLDEN=1 python3 -m pytest tests/test_render.py and review the diff")


def test_script_is_valid_bash(gear_env, tmp_path):
    path = tmp_path / "job.sh"
    path.write_text(_script(NASTY))
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_gpu_and_resources_reach_sbatch_lines(gear_env):
    lines = [l for l in _script().splitlines() if l.startswith("#SBATCH")]
    assert "#SBATCH --partition=gpu" in lines
    assert "#SBATCH --gres=gpu:devgpu:1" in lines
    assert "#SBATCH --cpus-per-task=2" in lines
    assert "#SBATCH --signal=B:USR1@120" in lines
    assert "--nv" in _script()


def test_every_value_is_quoted_and_taken_literally(gear_env, tmp_path):
    # Replace apptainer by printf to see the exact argv bash would pass.
    for word in NASTY:
        quoted = shell_quote(word)
        out = subprocess.run(["bash", "-c", f"printf '%s\\n' {quoted}"], capture_output=True, text=True,
                             cwd=tmp_path, check=True).stdout
        assert out == word + "\n"
    assert not (tmp_path / "pwned").exists()
    assert shell_quote(["a b", "$x"]) == "'a b' '$x'"


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a b", "x\x00"])
def test_sbatch_lines_never_carry_a_break(value):
    with pytest.raises(GearError):
        sbatch_value(value)


def test_nul_cannot_reach_the_script():
    with pytest.raises(GearError):
        shell_quote("a\x00b")
