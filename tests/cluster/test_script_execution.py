"""Script executions on the real local cluster (Slurm + Apptainer), as user alice."""

from __future__ import annotations

import json
import stat
import subprocess
import time
from pathlib import Path

CHECK_LAYOUT = r'''
import errno, json, os, pathlib
home = pathlib.Path("/hyperai/home")
report = {"cwd": os.getcwd(), "same": os.path.samefile("/output", "/hyperai/home")}
pathlib.Path("/output/through-output.txt").write_text("written via /output\n")
report["seen_via_home"] = (home / "through-output.txt").read_text()
report["code_here"] = pathlib.Path("check_layout.py").is_file()
report["inputs"] = {}
for k in range(5):
    slot = pathlib.Path(f"/hyperai/input/input{k}")
    try:
        (slot / "x").write_text("x")
        report["inputs"][slot.name] = "writable"
    except OSError as exc:
        report["inputs"][slot.name] = errno.errorcode[exc.errno] if slot.is_dir() else "missing"
report["params"] = json.loads((home / "gear_params.json").read_text())
report["env"] = {k: os.environ.get(k) for k in ("GEAR_CONTAINER", "GEAR_EXECUTION", "SLURM_JOB_ID",
                                                "SLURM_JOB_PARTITION", "CUDA_VISIBLE_DEVICES", "HOME")}
(home / "report.json").write_text(json.dumps(report))
print("layout ok")
'''


def test_gpu_execution_end_to_end(alice, container):
    code = alice.make_dir({"check_layout.py": CHECK_LAYOUT, "notes.txt": "kept\n"})
    result = alice.gear("run", "-c", container, "-r", "gpu-1", "--code", str(code), "--param", "lr=0.5",
                        "--param", "name=$(id)", "-m", "first try", "-f", "--", "python3", "check_layout.py",
                        cwd=str(code))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"{container}/1"
    assert "layout ok" in result.stdout

    record = alice.gear_json("show", f"{container}/1")
    assert record["status"] == "completed" and record["exit_code"] == 0
    assert record["compute_type"] == "gpu-1" and record["image"] == "python" and record["mode"] == "script"
    assert record["command"] == ["python3", "check_layout.py"]
    assert record["slurm_job_id"].isdigit() and record["parent"] is None and record["bindings"] == []
    assert record["submitted_at"] and record["started_at"] and record["ended_at"] and record["size_bytes"] > 0
    for key in ("id", "container", "number", "mode", "status", "exit_code", "compute_type", "image",
                "command", "bindings", "parent", "slurm_job_id", "submitted_at", "started_at",
                "ended_at", "workdir", "size_bytes"):
        assert key in record

    workdir = Path(record["workdir"])
    assert workdir == alice.storage / "containers" / container / "1" / "home"
    report = json.loads((workdir / "report.json").read_text())
    assert report["cwd"] == "/hyperai/home" and report["same"] is True
    assert report["seen_via_home"] == "written via /output\n" and report["code_here"]
    assert report["inputs"] == {f"input{k}": "EROFS" for k in range(5)}
    assert report["params"] == {"lr": 0.5, "name": "$(id)"}
    assert report["env"]["GEAR_CONTAINER"] == container
    assert report["env"]["GEAR_EXECUTION"] == f"{container}/1"
    assert report["env"]["SLURM_JOB_ID"] == record["slurm_job_id"]
    assert report["env"]["SLURM_JOB_PARTITION"] == "gpu"
    assert len(report["env"]["CUDA_VISIBLE_DEVICES"].split(",")) == 1  # only the GPU Slurm allotted
    assert (workdir / "notes.txt").read_text() == "kept\n"

    history = alice.gear_json("history", container)
    assert [e["id"] for e in history] == [f"{container}/1"]
    assert any(c["name"] == container for c in alice.gear_json("ls"))
    assert "layout ok" in alice.gear("logs", f"{container}/1", check=True).stdout

    target = alice.make_dir({}) / "out"
    alice.gear("download", f"{container}/1", "-t", str(target), check=True)
    assert json.loads((target / "report.json").read_text()) == report
    alice.gear("download", f"{container}/1", "-t", str(target / "one"), "--from", "notes.txt", check=True)
    assert (target / "one" / "notes.txt").read_text() == "kept\n"

    # The ledger and the container are the user's alone: others may only pass through the user
    # directory (to notify/ for gear-mailprog, to what is shared for the rest), as the admin made it
    # (docs/admin.md); the container's directory, private by default, is the gate (storage/sharing.py).
    assert stat.S_IMODE(alice.storage.stat().st_mode) == 0o2711
    assert stat.S_IMODE((alice.storage / "ledger.sqlite").stat().st_mode) == 0o600
    assert stat.S_IMODE(workdir.parent.parent.stat().st_mode) & 0o777 == 0o700
    assert stat.S_IMODE(workdir.parent.stat().st_mode) & 0o777 == 0o755   # closed: open behind the gate
    # The saved working directory is sealed: not even its owner's ordinary tools change it.
    assert not any(stat.S_IMODE(p.lstat().st_mode) & 0o222 for p in [workdir, *workdir.rglob("*")] if not p.is_symlink())


def test_two_gpu_type_sees_two_gpus_and_cpu_type_none(alice, container):
    code = alice.make_dir({"check_layout.py": CHECK_LAYOUT})
    for compute_type in ("gpu-2", "cpu-small"):
        alice.gear("run", "-c", container, "-r", compute_type, "--code", str(code), "-f", "--",
                   "python3", "check_layout.py", check=True)
    home = alice.storage / "containers" / container
    two = json.loads((home / "1" / "home" / "report.json").read_text())["env"]
    cpu = json.loads((home / "2" / "home" / "report.json").read_text())["env"]
    assert len(two["CUDA_VISIBLE_DEVICES"].split(",")) == 2 and two["SLURM_JOB_PARTITION"] == "gpu"
    assert cpu["CUDA_VISIBLE_DEVICES"] is None and cpu["SLURM_JOB_PARTITION"] == "cpu"


def test_failing_command_is_failed_with_its_exit_code(alice, container):
    code = alice.make_dir({"fail.py": "import sys; print('about to fail'); sys.exit(3)\n"})
    result = alice.gear("run", "-c", container, "--code", str(code), "-f", "--", "python3", "fail.py")
    assert result.returncode == 1
    record = alice.gear_json("show", f"{container}/1")
    assert record["status"] == "failed" and record["exit_code"] == 3


def test_command_arguments_are_never_run_by_a_shell(alice, container):
    code = alice.make_dir({"x": ""})
    words = ["$(touch /output/pwned)", "`touch /output/pwned2`", ";", "touch", "/output/pwned3", "it's", '"q"', "%j"]
    alice.gear("run", "-c", container, "--code", str(code), "-f", "--", "echo", *words, check=True)
    log = alice.gear("logs", f"{container}/1", check=True).stdout
    assert " ".join(words) in log
    home = alice.storage / "containers" / container / "1" / "home"
    assert not any(home.glob("pwned*"))


def test_code_upload_honours_gearignore_and_drops_links_out_of_the_tree(alice, container):
    code = alice.make_dir({"main.py": "print(1)\n", "data/big.bin": "x" * 1000, "keep/a.txt": "a\n",
                           ".gearignore": "data/\n*.tmp\n", "junk.tmp": "j"})
    (code / "passwd").symlink_to("/etc/passwd")
    (code / "inside").symlink_to("keep/a.txt")
    alice.gear("run", "-c", container, "--code", str(code), "-f", "--", "ls", "-la", check=True)
    home = alice.storage / "containers" / container / "1" / "home"
    assert (home / "main.py").exists() and (home / "keep" / "a.txt").exists()
    assert not (home / "data").exists() and not (home / "junk.tmp").exists()
    assert not (home / "passwd").exists() and not (home / "passwd").is_symlink()
    assert (home / "inside").is_symlink()


def test_stop_terminates_and_keeps_the_working_directory(alice, container):
    code = alice.make_dir({"slow.py": "import time, pathlib\npathlib.Path('/output/started').write_text('yes')\n"
                                      "print('sleeping', flush=True)\ntime.sleep(600)\n"})
    result = alice.gear("run", "-c", container, "--code", str(code), "--", "python3", "slow.py", check=True)
    execution = result.stdout.strip().splitlines()[-1]
    home = alice.storage / "containers" / container / "1" / "home"
    deadline = time.monotonic() + 60
    while not (home / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert alice.wait_for(execution, {"running"})["status"] == "running"
    result = alice.gear("stop", execution, check=True)
    assert "terminated" in result.stdout and "saved" in result.stdout
    record = alice.gear_json("show", execution)
    assert record["status"] == "terminated" and record["ended_at"]
    assert (home / "started").read_text() == "yes"
    again = alice.gear("stop", execution, check=True)
    assert "already ended" in again.stdout


def test_two_runs_at_once_get_two_numbers(alice, container):
    code = alice.make_dir({"x": ""})
    command = ["bash", str(Path(__file__).parents[2] / "gear_hpc" / "devcluster" / "devcluster.sh"),
               "exec", "--user", "alice", "--", "gear", "run", "-c", container, "--code", str(code), "--", "true"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    ids = sorted(out.strip().splitlines()[-1] for out, _ in outputs)
    assert ids == [f"{container}/1", f"{container}/2"]
    assert len(alice.gear_json("history", container)) == 2


def test_other_users_cannot_read_a_private_container(alice, bob, container):
    code = alice.make_dir({"x": ""})
    alice.gear("run", "-c", container, "--code", str(code), "-f", "--", "true", check=True)
    denied = bob.run("ls", str(alice.storage))
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    denied = bob.run("cat", str(alice.storage / "ledger.sqlite"))
    assert denied.returncode != 0
