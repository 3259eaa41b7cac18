"""The rendered batch script: golden files, bash -n and shellcheck of every
variant, quoting, refusals; and its functions (templates/lib/*.sh), sourced
as they are."""

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from gear_hpc.base.errors import GearError
from gear_hpc.executions.lifecycle import job_script
from gear_hpc.site import loading as site
from gear_hpc.slurm.render import sbatch_value, shell_quote

GOLDEN = Path(__file__).parent / "golden"
LIB = Path(__file__).resolve().parent.parent / "gear_hpc" / "templates" / "lib"
def _source(name: str) -> str:
    """A line of bash that sources lib/NAME, as a host test runs the job's functions."""
    return f"source {shlex.quote(str(LIB / name))}\n"


NASTY = ["python3", "train.py", "$(touch pwned)", "`id`", "a;b", "it's", '"q"', "%j", "a b", "*", "~", "-x"]


def _script(command=("python3", "train.py")):
    loaded = site.load()
    exec_dir = Path("/srv/gear/users/alice/containers/mnist/3")
    return job_script(loaded, exec_dir, "mnist", 3, "0123456789abcdef", loaded.compute_type("gpu-1"),
                      loaded.image("python"), list(command), "alice", python_lib=exec_dir / "lib")


def _continuation_script(layer_modes_kept=True) -> str:
    from types import SimpleNamespace

    loaded = site.load()
    parent = SimpleNamespace(id="mnist/2", workdir="/srv/gear/users/alice/containers/mnist/2/home")
    return job_script(loaded, Path("/srv/gear/users/alice/containers/mnist/3"), "mnist", 3, "0123456789abcdef",
                      loaded.compute_type("cpu-small"), loaded.image("python"), ["true"], "alice",
                      home_layer=parent, layer_modes_kept=layer_modes_kept)


def _scratch_script() -> str:
    import yaml

    path = Path(os.environ["GEAR_SITE_CONFIG"]) / "site.yaml"
    data = yaml.safe_load(path.read_text())
    data["workdir"] = {"mode": "scratch", "scratch_dir": "/local/scratch", "save_interval": 600}
    path.write_text(yaml.safe_dump(data))
    return _script()


def _workspace_script() -> str:
    from gear_hpc.executions import workspaces
    from gear_hpc.executions.workspace_job import Workspace
    from gear_hpc.slurm.apptainer import Mount

    loaded = site.load()
    workspace = Workspace(token_file="/srv/gear/users/alice/workspaces/token-x", preferred_ports=(8888,),
                          port_low=20000, port_high=20010, start_timeout=30, idle_timeout=600,
                          base_url="/", environment=(("GEAR_WORKSPACE", "1"),),
                          mounts=(Mount("/etc/slurm", "/etc/slurm"),))
    return job_script(loaded, Path("/srv/gear/users/alice/containers/ws/1"), "ws", 1, "0123456789abcdef",
                      loaded.compute_type("cpu-small"), loaded.image("python"), workspaces.jupyter_command(600),
                      "alice", workspace=workspace)


def _sbatch_output_script(log_copies: tuple[bool, bool]) -> str:
    """`gear sbatch -o FILE` (both streams copied to gear's log) or `-e FILE` (stderr only)."""
    loaded = site.load()
    return job_script(loaded, Path("/srv/gear/users/alice/containers/sbatch/3"), "sbatch", 3, "0123456789abcdef",
                      loaded.compute_type("cpu-small"), loaded.image("python"), ["/bin/sh", "-c", "echo x"], "alice",
                      log_copies=log_copies)


# Every variant of the batch script, each with its golden file: a script on
# shared storage, a continuation over an overlay, one that copies its parent
# (modes not kept), a script on node-local scratch, a Jupyter workspace, and
# `gear sbatch` with -o or with -e only.
VARIANTS = {
    "sbatch-output.sh": lambda: _sbatch_output_script((True, True)),
    "sbatch-error.sh": lambda: _sbatch_output_script((False, True)),
    "job.sh": _script,
    "continuation.sh": _continuation_script,
    "continuation-copy.sh": lambda: _continuation_script(layer_modes_kept=False),
    "scratch.sh": _scratch_script,
    "jupyter.sh": _workspace_script,
}


@pytest.mark.parametrize("name", VARIANTS)
def test_script_matches_golden_file(gear_env, name):
    text = VARIANTS[name]().replace(str(gear_env["tmp"]), "<tmp>")
    golden = GOLDEN / name
    if os.environ.get("GEAR_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert golden.exists() and text == golden.read_text(), (
        f"the rendered batch script ({name}) changed; if that is intended, accept it with "
        "GEAR_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_render.py, review `git diff tests/golden` "
        "and commit the golden files with the change")


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_is_valid_bash(gear_env, tmp_path, name):
    path = tmp_path / name
    path.write_text(VARIANTS[name]())
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, f"bash -n {name}:\n{result.stderr}"


# Left out, for every variant: SC2317 (a function "unreachable": it runs from a
# trap or an exit hook, which shellcheck cannot see) and SC2015 (`a && b || c`,
# written where c must run when either a or b fails).
SHELLCHECK_EXCLUDE = "SC2317,SC2015"


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_passes_shellcheck(gear_env, tmp_path, name):
    assert shutil.which("shellcheck"), (
        "shellcheck is missing: scripts/setup-host installs it (Debian package shellcheck)")
    path = tmp_path / name
    path.write_text(VARIANTS[name]())
    result = subprocess.run(["shellcheck", "--shell=bash", f"--exclude={SHELLCHECK_EXCLUDE}", "--format=gcc",
                             str(path)], capture_output=True, text=True)
    assert result.returncode == 0, (
        f"shellcheck {name} (line numbers are the rendered script's; render it with GEAR_UPDATE_GOLDEN=1 "
        f"and see tests/golden/{name}):\n{result.stdout}{result.stderr}")


def test_lib_files_are_plain_bash():
    """Jinja includes them, so a Jinja delimiter there (`${#x}` opens a comment) would change what
    the job runs; and tests source them as they are."""
    files = sorted(LIB.glob("*.sh"))
    assert files
    for path in files:
        text = path.read_text()
        for mark in ("{{", "{%", "{#"):
            assert mark not in text, f"{path.name} holds {mark!r}: lib files must be plain bash (write ${{x}} as \"$x\")"
        subprocess.run(["bash", "-n", str(path)], check=True)


def test_script_is_valid_bash(gear_env, tmp_path):
    path = tmp_path / "job.sh"
    path.write_text(_script(NASTY))
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_gpu_and_resources_reach_sbatch_lines(gear_env):
    lines = [line for line in _script().splitlines() if line.startswith("#SBATCH")]
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


def test_workspace_script_keeps_the_token_off_command_lines(gear_env):
    text = _workspace_script()
    assert "APPTAINERENV_JUPYTER_TOKEN=$(cat /srv/gear/users/alice/workspaces/token-x)" in text
    assert "--ServerApp.shutdown_no_activity_timeout=600" in text and "dst=/etc/slurm" in text
    assert "for p in 8888;" in text and "JUPYTER_PORT=$port" in text


def test_rsync_progress_becomes_status_records(gear_env, tmp_path):
    """The script's progress() turns rsync --info=progress2 output into records with bytes and files."""
    harness = tmp_path / "progress.sh"
    harness.write_text(_source("copy.sh") + "record() { echo \"$1|$5\"; }\n"
                       "printf '      1,024  10%%  1.00MB/s  0:00:01 (xfr#1, to-chk=9/10)\\r"
                       "     10,240 100%%  2.00MB/s  0:00:02 (xfr#10, to-chk=0/10)\\n' | progress syncing 0\n")
    out = subprocess.run(["bash", str(harness)], capture_output=True, text=True, check=True).stdout
    first = out.splitlines()[0]
    assert first.startswith("syncing|")
    import json

    progress = json.loads("{" + first.split("|", 1)[1] + "}")["progress"]
    assert progress["bytes"] == 1024 and progress["percent"] == 10
    assert progress["files"] == 1 and progress["files_total"] == 10


def test_status_shows_amount_and_speed_of_a_copy(gear_env):
    from gear_hpc.executions.open_fold import progress as _progress

    record = {"phase": "saving", "progress": {"bytes": 50_000_000, "percent": 50, "files": 200,
                                              "files_total": 400, "seconds": 10}}
    assert _progress(record) == {"bytes": 50_000_000, "percent": 50, "files": 200, "files_total": 400,
                                 "seconds": 10, "phase": "saving", "mb_per_s": 5.0, "files_per_s": 20.0}
    assert _progress({"phase": "final", "progress": {"bytes": 1}}) is None


def test_notes_in_status_records_are_valid_json(gear_env, tmp_path):
    """A note names paths (scratch, exec dir), which may hold quotes or backslashes."""
    import json

    harness = tmp_path / "note.sh"
    harness.write_text(_source("record.sh") + 'printf "{\\"note\\": %s}" "$(json_string "$1")"\n')
    for text in ['kept in /scratch/a "b"/c', "back\\slash", "tab\there", "new\nline", "$(id) `id`"]:
        out = subprocess.run(["bash", str(harness), text], capture_output=True, text=True, check=True).stdout
        assert json.loads(out) == {"note": text}


def test_applying_an_upper_layer_never_reaches_through_a_symlink(gear_env, tmp_path):
    """apply_upper on a tree of hard links: whiteouts and opaque directories remove what they hide,
    changed files replace their links, and a symlink in the tree is never followed."""
    harness = tmp_path / "apply.sh"
    harness.write_text("exec_dir=$3\n" + _source("upper.sh") + 'apply_upper "$1" "$2"\n')
    lower, upper, tree, outside = (tmp_path / name for name in ("lower", "upper", "tree", "outside"))
    for directory in (lower / "d", lower / "opaque", upper / "d", upper / "opaque", upper / "link", outside):
        directory.mkdir(parents=True)
    (lower / "keep").write_text("keep")
    (lower / "changed").write_text("old")
    (lower / "d" / "gone").write_text("gone")
    (lower / "opaque" / "hidden").write_text("hidden")
    (outside / "victim").write_text("precious")
    (lower / "link").symlink_to(outside)
    # What fuse-overlayfs leaves: a changed file, a .wh. whiteout, an opaque
    # directory, and a whiteout "below" the symlink (never to be honoured there).
    (upper / "changed").write_text("new")
    (upper / "d" / ".wh.gone").write_text("")
    (upper / "opaque" / ".wh..wh..opq").write_text("")
    (upper / "opaque" / "fresh").write_text("fresh")
    (upper / "link" / ".wh.victim").write_text("")
    subprocess.run(["cp", "-al", f"{lower}/.", f"{tree}/"], check=True)
    result = subprocess.run(["bash", str(harness), str(upper), str(tree), str(tmp_path)],
                            capture_output=True, text=True)
    assert (outside / "victim").read_text() == "precious"  # not through the symlink
    assert result.returncode != 0 or not (tree / "link").is_symlink()  # rsync may replace the link by upper's dir
    assert (tree / "changed").read_text() == "new" and (lower / "changed").read_text() == "old"
    assert (tree / "keep").stat().st_ino == (lower / "keep").stat().st_ino
    assert not (tree / "d" / "gone").exists() and (lower / "d" / "gone").exists()
    assert sorted(os.listdir(tree / "opaque")) == ["fresh"] and (lower / "opaque" / "hidden").exists()
    assert not any(name.startswith(".wh.") for _, _, files in os.walk(tree) for name in files)
