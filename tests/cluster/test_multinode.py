"""A cluster of several nodes (`gear devcluster up --nodes 2`): gear runs on the login node, the
jobs on the compute nodes, slurmctld and its MailProg on the controller, all sharing the storage
root as NFS would; each compute node has its own node-local scratch (docs/devcluster.md).

Skipped on a cluster of one node, where the login node is the compute node."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import User, custom_site, network_of
from gear_hpc.devcluster import SCRIPT
from gear_hpc.devcluster.mailcatcher import read_messages

STATE = Path(os.environ.get("GEAR_DEVCLUSTER_DIR") or "/var/lib/gear-devcluster")
# Half a compute node and more (each advertises 8 CPUs): two of these never share a node.
WIDE = "\nmn-wide:\n  partition: cpu\n  cpus: 5\n  memory: 1G\n  time_limit: \"00:10:00\"\n"


def _as_root(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), "exec", "--", *argv], capture_output=True, text=True, timeout=60)


def _compute_nodes() -> list[str]:
    return sorted(set(_as_root("sinfo", "-h", "-N", "-o", "%N").stdout.split()))


@pytest.fixture(scope="module", autouse=True)
def several_nodes() -> None:
    if _as_root("hostname").stdout.strip() != "login" or len(_compute_nodes()) < 2:
        pytest.skip("the local cluster has one node: bring it up with `gear devcluster up --nodes 2`")


@pytest.fixture(scope="module")
def ann() -> User:
    return User("mn_ann")


def _code(user: User) -> str:
    """A code directory of the user's own: without --code, gear uploads the current directory,
    which is whatever directory the test suite runs from (a checkout with its .venv: too big)."""
    return str(user.make_dir({"noop.txt": ""}))


def _job(output: str) -> str:
    found = re.search(r"as Slurm job (\d+)", output)
    assert found, output
    return found.group(1)


def _execution(output: str) -> str:
    found = re.search(r"gear: submitted (\S+/\d+) as Slurm job", output)
    assert found, output
    return found.group(1)


def _node_of(user: User, job: str, timeout: float = 60) -> str:
    """The compute node a job runs (or ran) on, once Slurm has placed it."""
    deadline = time.monotonic() + timeout
    while True:
        shown = user.run("scontrol", "--oneliner", "show", "job", job).stdout
        found = re.search(r"\sBatchHost=(\S+)", shown)
        if found and found.group(1) != "(null)":
            return found.group(1)
        assert time.monotonic() < deadline, shown
        time.sleep(0.5)


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_gear_runs_on_the_login_node_and_jobs_on_the_compute_nodes(ann, container):
    assert ann.run("hostname", check=True).stdout.strip() == "login"
    run = ann.gear("run", "-c", container, "--code", _code(ann), "-f", "--", "python3", "-c",
                   "import socket; print(socket.gethostname())")
    assert run.returncode == 0, run.stderr
    # The final record was written on a compute node; the login node reads it from the shared storage.
    record = ann.gear_json("show", f"{container}/1")
    assert record["status"] == "completed" and record["exit_code"] == 0
    node = _node_of(ann, record["slurm_job_id"])
    assert node in _compute_nodes()
    assert run.stdout.split()[0] == node   # the program's output, followed from the login node
    assert ann.gear_json("status", f"{container}/1")["status"] == "completed"


def test_executions_spread_over_both_nodes_at_once(ann, container):
    site = custom_site(ann, types_yaml=WIDE)
    env = {"GEAR_SITE_CONFIG": str(site)}
    jobs = []
    for k in (1, 2):
        result = ann.gear("run", "-c", f"{container}-{k}", "-r", "mn-wide", "--code", _code(ann), "--", "sleep", "20",
                          env=env)
        assert result.returncode == 0, result.stderr
        jobs.append(_job(result.stderr + result.stdout))
    try:
        # Both run at the same time, each on a node of its own.
        _wait(lambda: ann.run("squeue", "-h", "-o", "%T", "-j", ",".join(jobs)).stdout.split() == ["RUNNING"] * 2,
              60, "both executions running")
        nodes = {_node_of(ann, job) for job in jobs}
        assert nodes == set(_compute_nodes()[:2])
        for k in (1, 2):
            assert ann.gear_json("status", f"{container}-{k}/1")["status"] == "running"
    finally:
        ann.run("scancel", *jobs)


def test_scratch_staging_uses_the_nodes_own_disk(ann, container):
    site = custom_site(ann, site_yaml="\nworkdir:\n  mode: scratch\n  scratch_dir: /local/scratch\n"
                                      "  save_interval: 600\n")
    code = ann.make_dir({"work.py": "import socket, time\nopen('where.txt', 'w').write(socket.gethostname())\n"
                                    "time.sleep(15)\nopen('late.txt', 'w').write('late\\n')\n"})
    result = ann.gear("run", "-c", container, "--code", str(code), "--", "python3", "work.py",
                      env={"GEAR_SITE_CONFIG": str(site)})
    assert result.returncode == 0, result.stderr
    job = _job(result.stderr + result.stdout)
    node = _node_of(ann, job)
    other = next(n for n in _compute_nodes() if n != node)
    pattern = f"gear-{ann.name}-{container}-1-*"
    # The working directory lives on that node's own disk, and only there, while the program runs.
    _wait(lambda: any((d / "where.txt").exists() for d in (STATE / "scratch" / node).glob(pattern)), 60,
          "the working directory on the node's scratch")
    assert not list((STATE / "scratch" / other).glob(pattern))
    assert ann.run("ls", "/local/scratch").stdout.strip() == ""   # the login node has its own (empty) one
    home = ann.storage / "containers" / container / "1" / "home"
    assert not (home / "where.txt").exists()   # not saved yet (save_interval 600)
    _wait(lambda: ann.gear_json("status", f"{container}/1")["status"] in ("completed", "failed"), 90, "the end")
    record = ann.gear_json("show", f"{container}/1")
    assert record["status"] == "completed", record
    assert (home / "where.txt").read_text() == node and (home / "late.txt").read_text() == "late\n"
    assert not list((STATE / "scratch" / node).glob(pattern))   # scratch cleaned


def test_a_continuation_runs_on_the_other_node_with_its_parents_files(ann, container):
    site = custom_site(ann, types_yaml=WIDE)
    env = {"GEAR_SITE_CONFIG": str(site)}
    first = ann.gear("run", "-c", container, "-r", "mn-wide", "--code", _code(ann), "-f", "--", "python3", "-c",
                     "import socket; open('first.txt', 'w').write(socket.gethostname())", env=env)
    assert first.returncode == 0, first.stderr
    home1 = ann.storage / "containers" / container / "1" / "home"
    node1 = (home1 / "first.txt").read_text()
    assert node1 in _compute_nodes()
    # A job of the user's own fills the parent's node: the continuation can only run on the other one.
    blocker = ann.run("sbatch", "--parsable", "-w", node1, "-c", "8", "--mem=1000", "-o", "/dev/null",
                      "--wrap", "sleep 300", check=True).stdout.strip().split(";")[0]
    try:
        _wait(lambda: ann.run("squeue", "-h", "-o", "%T", "-j", blocker).stdout.strip() == "RUNNING", 180, "blocker")
        second = ann.gear("continue", f"{container}/1", "-r", "mn-wide", "-f", "--", "python3", "-c",
                          "import socket; open('second.txt', 'w').write(socket.gethostname() + ' ' + "
                          "open('first.txt').read())", env=env)
        assert second.returncode == 0, second.stderr
    finally:
        ann.run("scancel", blocker)
    home2 = ann.storage / "containers" / container / "2" / "home"
    node2, seen = (home2 / "second.txt").read_text().split()
    assert node2 != node1 and node2 in _compute_nodes() and seen == node1
    assert ann.gear_json("show", f"{container}/2")["parent"] == f"{container}/1"


def test_notifications_come_from_the_controller(ann, container):
    """MailProg runs where slurmctld runs: the mail catcher listens on the controller's 127.0.0.1 only,
    so a caught message was sent from the controller."""
    assert ann.run("bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/2525").returncode != 0   # not on the login node
    controller = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert re.search(r"-controller\b", controller)
    result = ann.gear("run", "-c", container, "--code", _code(ann), "-f", "--", "true")
    assert result.returncode == 0, result.stderr
    execution = f"{container}/1"
    deadline = time.monotonic() + 60
    while True:
        caught = [m for m in read_messages(STATE / "logs" / "mail")
                  if dict(m["headers"]).get("X-Gear-Execution") == execution]
        if caught or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert caught and caught[0]["subject"] == f"gear: {execution} completed, exit 0"
    assert caught[0]["envelope_to"] == [f"{ann.name}@example.org"]


def test_a_jupyter_workspace_on_node2_is_reached_from_the_login_node(ann, container):
    """The URL gear prints names the node and port; from the login node it answers (its `ssh -L`
    line forwards the same host and port from a laptop)."""
    import json
    import urllib.request

    blocker = ann.run("sbatch", "--parsable", "-w", "node1", "-c", "8", "--mem=1000", "-o", "/dev/null",
                      "--wrap", "sleep 600", check=True).stdout.strip().split(";")[0]
    execution = ""
    try:
        _wait(lambda: ann.run("squeue", "-h", "-o", "%T", "-j", blocker).stdout.strip() == "RUNNING", 180, "blocker")
        started = ann.gear("jupyter", "-c", container, "-r", "cpu-small", timeout=400)
        assert started.returncode == 0, started.stderr
        lines = started.stdout.strip().splitlines()
        execution = lines[-1]
        url = next(line for line in lines if line.startswith("URL: ")).removeprefix("URL: ")
        found = re.match(r"http://(node2):(\d+)/lab\?token=([\w-]+)$", url)
        assert found, url
        port, token = found.group(2), found.group(3)
        assert f"ssh -N -L {port}:node2:{port} {ann.name}@" in started.stdout
        with network_of("login"):
            request = urllib.request.Request(f"http://node2:{port}/api/status")
            request.add_header("Authorization", f"token {token}")
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200 and "started" in json.loads(response.read())
    finally:
        if execution:
            ann.gear("stop", "--now", execution)
        ann.run("scancel", blocker)
