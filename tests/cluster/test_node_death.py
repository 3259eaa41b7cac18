"""A node that dies, a controller that restarts, a job killed at its limit: on the real cluster.

The faults are real: slurmd (or slurmctld) is killed by its pid, and the node
is marked DOWN with scontrol, as an admin or Slurm itself does. Every test
puts the cluster back (slurmd and slurmctld running, the node resumed) however
it ends. Marking the node down requeues every job running on it, anyone's:
the tests wait (a while) until no other job runs before they start.

Timings on the local cluster (2 cores, measured 2026-12-07): the node test
about 45 s, 30 of them gear's grace for a final record (Slurm holds a requeued job back two minutes, Reason=BeginTime;
the test lets the jobs start at once with `scontrol update JobId=…
StartTime=now`, as an admin may: without that, add two minutes), the
controller test about 45 s (squeue itself gives up after about 18 s without
slurmctld, so each `gear status` then takes that long to say so), the
time-limit test about 50 s, the SIGKILL test about 35 s (the grace again).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import User, custom_site
from gear_hpc.devcluster import SCRIPT
from gear_hpc.devcluster.mailcatcher import read_messages

STATE = Path(os.environ.get("GEAR_DEVCLUSTER_DIR") or "/var/lib/gear-devcluster")
MAIL_DIR = STATE / "logs" / "mail"

IN_SERVICE = ("idle", "mixed", "allocated")
CLOSED = ("completed", "failed", "terminated", "timeout", "lost")
FMT = "%i\x1f%T\x1f%r\x1f%k\x1f%e\x1f%N\x1e"   # gear's squeue format (slurm/jobs.py)


def as_root(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), "exec", "--", *argv], capture_output=True, text=True, timeout=timeout)


def _wait(predicate: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def _several_nodes() -> bool:
    return (STATE / "nodes" / "login.pid").exists()


def _pidfile(name: str) -> str:
    # On a cluster of several nodes each slurmd has its own, named after its node (docs/devcluster.md).
    return f"/run/slurmd-{_node()}.pid" if name == "slurmd" and _several_nodes() else f"/run/{name}.pid"


def _daemon_pid(name: str) -> str | None:
    """The pid in the daemon's pid file, if that process is the daemon."""
    result = as_root("sh", "-c", f'p=$(cat {_pidfile(name)} 2>/dev/null) && [ "$(cat /proc/$p/comm 2>/dev/null)" = {name} ]'
                                 ' && echo "$p"')
    return result.stdout.strip() or None


def _kill(name: str) -> None:
    pid = _daemon_pid(name)
    assert pid, f"{name} is not running"
    assert as_root("kill", pid).returncode == 0
    assert _wait(lambda: _daemon_pid(name) is None, 30), f"{name} did not stop"


def _start(name: str) -> None:
    if _daemon_pid(name) is None:
        if not _several_nodes():
            as_root(f"/usr/sbin/{name}")
        elif name == "slurmd":   # on its own node, as an admin there would
            subprocess.run(["bash", str(SCRIPT), "exec", "--node", _node(), "--", "/usr/sbin/slurmd", "-N", _node()],
                           capture_output=True, text=True, timeout=60)
        else:
            subprocess.run(["bash", str(SCRIPT), "exec", "--node", "controller", "--", f"/usr/sbin/{name}"],
                           capture_output=True, text=True, timeout=60)


@contextlib.contextmanager
def _bring_up_lock() -> Iterator[None]:
    """The lock `gear devcluster up/down` take. A controller that does not answer makes `up` judge
    the cluster unhealthy and restart it (wiping its jobs): an admin restarting slurmctld holds it."""
    with open(STATE / ".lock", "w") as lock:
        deadline = time.monotonic() + 300
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, "another `gear devcluster up/down` holds the lock"
                time.sleep(1)
        yield


def _node() -> str:
    """The node that dies: the first compute node (on a cluster of several, the others are drained meanwhile)."""
    return sorted(as_root("sinfo", "-h", "-N", "-o", "%N").stdout.split() or [""])[0]


def _others() -> list[str]:
    return sorted(set(as_root("sinfo", "-h", "-N", "-o", "%N").stdout.split()) - {_node()})


def _node_state() -> str:
    out = as_root("sinfo", "-h", "-N", "-n", _node(), "-o", "%T", timeout=30).stdout
    return (out.split() or [""])[0]   # one line per partition


def _squeue_line(job: str) -> str:
    """squeue's answer for one job, as gear asks (all users' view, as root)."""
    out = as_root("squeue", "--states=all", "--noheader", f"--format={FMT}", "-j", job).stdout
    return next((line.strip("\n") for line in out.split("\x1e") if line.strip("\n").startswith(f"{job}\x1f")), "")


@pytest.fixture
def cluster_restored() -> Iterator[str]:
    """The node's name; after the test, slurmctld and slurmd run again and the node is back in service."""
    # Marking the node down requeues every running job: wait (bounded) until only ours would be.
    _wait(lambda: not as_root("squeue", "-h").stdout.strip(), 300, interval=2)
    node = _node()
    others = _others()   # drained meanwhile: every job of the test runs on the node that dies
    for other in others:
        as_root("scontrol", "update", f"nodename={other}", "state=drain", "reason=gear-node-test")
    try:
        yield node
    finally:
        for other in others:
            as_root("scontrol", "update", f"nodename={other}", "state=resume")
        _start("slurmctld")
        _wait(lambda: as_root("sinfo", "-h", timeout=30).returncode == 0, 60)
        _start("slurmd")
        # ReturnToService=2 takes a registering node back; resume it if it did not.
        if not _wait(lambda: _node_state() in IN_SERVICE, 20):
            as_root("scontrol", "update", f"nodename={node}", "state=resume")
        assert _wait(lambda: _node_state() in IN_SERVICE, 60), _node_state()


@pytest.fixture(scope="module")
def nd_user() -> User:
    return User("nd_user1")


def _status_record(user: User, execution: str) -> dict:
    container, number = execution.split("/")
    try:
        return json.loads((user.storage / "containers" / container / number / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _submit(user: User, container: str, program: str) -> tuple[str, str]:
    code = user.make_dir({"main.py": program})
    result = user.gear("run", "-c", container, "--code", str(code), "--", "python3", "main.py", check=True)
    execution = result.stdout.strip().splitlines()[-1]
    return execution, user.gear_json("show", execution)["slurm_job_id"]


def _statuses(user: User) -> dict[str, dict]:
    return {row["id"]: row for row in user.gear_json("status")}


# Each program writes run-N.txt (N: Slurm's restart count) and says so in its log. Its first run
# ends when the test says (a file `go` in its working directory), or after 600 s; a later run at once.
PROGRAM = ("import os, time\n"
           "n = os.environ.get('SLURM_RESTART_COUNT', '0')\n"
           "open(f'run-{n}.txt', 'w').write(n)\n"
           "for _ in range(3000 if n == '0' else 0):\n"
           "    if os.path.exists('go'):\n"
           "        os.remove('go')\n"
           "        break\n"
           "    time.sleep(0.2)\n"
           "print('program ran, run', n, flush=True)\n")


def _go(user: User, execution: str) -> None:
    """Let the first run of PROGRAM end now."""
    workdir = Path(user.gear_json("show", execution)["workdir"])
    (workdir / "go").write_text("")
    os.chown(workdir / "go", user.pw.pw_uid, user.pw.pw_gid)


def test_a_node_that_dies_requeues_its_jobs_and_nothing_completed_runs_again(nd_user, container, cluster_restored):
    node = cluster_restored
    nd_user.gear("notify", "--no-sms", "--email", "default", "--on", "end,fail", check=True)
    # quick: its program ends while slurmd is dead (the job stays COMPLETING);
    # late: it ends after the node is marked down (Slurm has requeued it by then);
    # slow: still running when slurmd comes back (its run is killed) and requeued;
    # fixed: like slow, but the admin made it not requeueable: Slurm ends it (NODE_FAIL).
    quick, quick_job = _submit(nd_user, f"{container}-q", PROGRAM)
    late, late_job = _submit(nd_user, f"{container}-l", PROGRAM)
    slow, slow_job = _submit(nd_user, f"{container}-s", PROGRAM)
    fixed, fixed_job = _submit(nd_user, f"{container}-f", PROGRAM)
    assert as_root("scontrol", "update", f"JobId={fixed_job}", "Requeue=0").returncode == 0
    for execution in (quick, late, slow, fixed):
        assert _wait(lambda e=execution: _status_record(nd_user, e).get("phase") == "running", 90), execution
    seen: dict[str, set[str]] = {quick: set(), late: set(), slow: set(), fixed: set()}

    def look() -> dict[str, dict]:
        rows = _statuses(nd_user)
        for execution in seen:
            seen[execution].add(rows[execution]["status"])
        return rows

    _kill("slurmd")
    _go(nd_user, quick)
    # quick's program ends; Slurm keeps the job COMPLETING (it cannot clean up on the node): the record shows.
    assert _wait(lambda: _status_record(nd_user, quick).get("phase") == "final", 60)
    line = _squeue_line(quick_job)
    assert line.split("\x1f")[1] == "COMPLETING", line
    rows = look()
    assert rows[quick]["status"] == "completed" and rows[quick]["exit_code"] == 0, rows[quick]
    print("recorded squeue (COMPLETING):", repr(line))

    assert as_root("scontrol", "update", f"nodename={node}", "state=down", "reason=gear-node-test").returncode == 0
    # Slurm requeues what ran there: queued, saying why; never completed, never a verdict.
    assert _wait(lambda: _squeue_line(slow_job).split("\x1f")[1:2] == ["PENDING"], 30)
    rows = look()
    for execution in (late, slow):
        assert rows[execution]["status"] == "queued", rows[execution]
        assert rows[execution]["note"].startswith(f"Slurm requeued job {rows[execution]['slurm_job_id']} ("), rows
        assert "its earlier run's last status record" in rows[execution]["note"]
    print("recorded squeue (requeued):", repr(_squeue_line(slow_job)))
    # late's program ends after the requeue (slurmd is dead: nothing stops it) and saves: that holds.
    _go(nd_user, late)
    assert _wait(lambda: _status_record(nd_user, late).get("phase") == "final", 60)
    rows = look()
    assert rows[late]["status"] == "completed", rows[late]
    assert "that result stands and is not run again" in rows[late]["note"]
    assert rows[slow]["status"] == "queued" and rows[quick]["status"] == "completed"
    # fixed: Slurm ended it; after the grace for a final record, failed, saying why (its program runs on, unseen).
    assert _squeue_line(fixed_job).split("\x1f")[1] == "NODE_FAIL", _squeue_line(fixed_job)
    assert _wait(lambda: look()[fixed]["status"] == "failed", 60, interval=2), look()[fixed]
    assert look()[fixed]["note"] == ("the job ended (Slurm state NODE_FAIL) without a final status record during "
                                     "phase 'running'; the save may be incomplete")

    # slurmd comes back: the node returns (ReturnToService=2), and Slurm kills slow's first run.
    _start("slurmd")
    assert _wait(lambda: _node_state() in IN_SERVICE, 60), _node_state()
    # Slurm ends the earlier runs still on the node (slow's, fixed's) once slurmd registers. Released
    # before that, a requeued job fails to launch ("Job … already running") and is held.
    assert _wait(lambda: not _processes_of(nd_user), 60), _processes_of(nd_user)
    for job in (late_job, slow_job):
        assert _wait(lambda j=job: "Reason=BeginTime" in as_root("scontrol", "show", "job", j).stdout, 60), job
        assert as_root("scontrol", "update", f"JobId={job}", "StartTime=now").returncode == 0
    assert _wait(lambda: all(look()[e]["status"] in CLOSED for e in seen), 120, interval=2), look()
    rows = look()

    # Nothing completed that did not complete, and nothing saved was lost.
    assert seen[slow] <= {"running", "queued", "syncing", "saving", "completed"}, seen[slow]
    assert seen[fixed] <= {"running", "failed"}, seen[fixed]
    assert (Path(rows[fixed]["workdir"]) / "run-0.txt").read_text() == "0"   # what it wrote is there
    assert "completed" not in seen[slow] - {rows[slow]["status"]}
    for execution in (quick, late):
        home = Path(rows[execution]["workdir"])
        assert sorted(p.name for p in home.iterdir()) == ["gear_params.json", "main.py", "run-0.txt"], execution
        assert not (home.parent / "runs").exists(), execution
        assert rows[execution]["status"] == "completed", rows[execution]
    # late was started again by Slurm and closed from its earlier run's record: the program ran once.
    log = (Path(rows[late]["workdir"]).parent / "output.log").read_text()
    assert log.count("program ran") == 1 and "after the earlier run had completed and saved; not run again" in log
    assert _status_record(nd_user, late)["not_rerun"] == 2
    # slow's first run is kept as it was, and its second started from it.
    home = Path(rows[slow]["workdir"])
    assert rows[slow]["status"] == "completed", rows[slow]
    assert sorted(p.name for p in (home.parent / "runs" / "1").iterdir()) == ["gear_params.json", "main.py", "run-0.txt"]
    assert (home / "run-0.txt").read_text() == "0" and (home / "run-1.txt").read_text() == "1"
    assert rows[slow]["note"].startswith(f"Slurm requeued job {slow_job} (")
    # One mail says each completed (Slurm mails the end of late's second run: it reports the first's result).
    for execution in (quick, late, slow):
        completed = _wait(lambda e=execution: _mails(f"gear: {e} completed, exit 0"), 60)
        assert len(completed) == 1, (execution, completed)
        # Slurm's NODE_FAIL mail (sent for a requeued job too) is no verdict: never "failed, exit 0".
        assert not _mails(f"gear: {execution} failed, exit 0")


def _mails(subject: str) -> list[dict]:
    return [m for m in read_messages(MAIL_DIR) if m["subject"] == subject]


def test_a_restarted_controller_is_an_error_never_a_verdict(nd_user, container, cluster_restored):
    execution, _job = _submit(nd_user, container, PROGRAM)
    assert _wait(lambda: _status_record(nd_user, execution).get("phase") == "running", 90)
    workdir = Path(nd_user.gear_json("show", execution)["workdir"])
    ledger = nd_user.storage / "ledger.sqlite"
    before = hashlib.sha256(ledger.read_bytes()).hexdigest()
    with _bring_up_lock():
        _kill("slurmctld")
        try:
            (workdir / "go").write_text("")
            os.chown(workdir / "go", nd_user.pw.pw_uid, nd_user.pw.pw_gid)
            for args in (["status"], ["status", execution]):
                started = time.monotonic()
                result = nd_user.gear(*args)
                print(f"gear {' '.join(args)} without slurmctld: {time.monotonic() - started:.1f} s")
                assert result.returncode == 1, (args, result)
                lines = result.stderr.strip().splitlines()
                assert len(lines) == 1 and lines[0].startswith("gear: error: Slurm did not answer ("), lines
            assert hashlib.sha256(ledger.read_bytes()).hexdigest() == before
            # The program goes on and ends while the controller is away; its job reports once it is back.
            assert _wait(lambda: _status_record(nd_user, execution).get("phase") == "final", 60)
        finally:
            _start("slurmctld")
            assert _wait(lambda: as_root("sinfo", "-h", timeout=30).returncode == 0, 60)
    record = nd_user.wait_for(execution, set(CLOSED), timeout=90)
    assert record["status"] == "completed" and record["exit_code"] == 0, record
    assert (Path(record["workdir"]) / "run-0.txt").read_text() == "0"


def _processes_of(user: User) -> list[str]:
    return [line for line in as_root("ps", "-eo", "user:32,pid,ppid,comm").stdout.splitlines()[1:]
            if line.split()[0] == user.name]


def _processes_of_job(user: User, job: str) -> list[str]:
    """The user's processes that belong to Slurm job `job` (by SLURM_JOB_ID in their environment):
    a requeued job of an earlier test may start meanwhile, and is not this test's."""
    found = []
    for line in _processes_of(user):
        try:
            environment = Path(f"/proc/{line.split()[1]}/environ").read_bytes().split(b"\0")
        except OSError:
            continue   # gone meanwhile
        if f"SLURM_JOB_ID={job}".encode() in environment:
            found.append(line)
    return found


def _helpers_of(user: User) -> list[str]:
    return [line for line in _processes_of(user) if line.split()[3] in ("squashfuse_ll", "squashfuse", "fuse-overlayfs")]


def test_a_time_limit_leaves_no_helper_behind(nd_user, container):
    """The program ignores TERM, so it is killed at the limit; apptainer's helpers must go with it.

    A continuation, so that both kinds run: squashfuse_ll (the image) and fuse-overlayfs (the overlay)."""
    site = custom_site(nd_user, types_yaml="\nnd-short:\n  partition: cpu\n  cpus: 1\n  memory: 512M\n  time_limit: \"1\"\n")
    (site / "site.yaml").write_text((site / "site.yaml").read_text().replace("time_limit_warning: 120",
                                                                            "time_limit_warning: 30"))
    env = {"GEAR_SITE_CONFIG": str(site)}
    parent, _ = _submit(nd_user, container, "open('parent.txt', 'w').write('p')\n")
    assert nd_user.wait_for(parent, set(CLOSED))["status"] == "completed"
    code = nd_user.make_dir({"stubborn.py": "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                            "open('child.txt', 'w').write('c')\ntime.sleep(600)\n"})
    result = nd_user.gear("continue", parent, "-r", "nd-short", "--code", str(code), "--", "python3", "stubborn.py",
                          env=env, check=True)
    child = result.stdout.strip().splitlines()[-1]
    assert _wait(lambda: _status_record(nd_user, child).get("phase") == "running", 90)
    running = {line.split()[3] for line in _helpers_of(nd_user)}
    assert {"squashfuse_ll", "fuse-overlayfs"} <= running, running   # else this test proves nothing
    record = nd_user.wait_for(child, set(CLOSED), timeout=150)
    assert record["status"] == "timeout" and "SIGKILL" in record["note"], record
    assert (Path(record["workdir"]) / "child.txt").exists()
    assert _wait(lambda: not _helpers_of(nd_user), 10), _helpers_of(nd_user)


def test_a_sigkilled_batch_shell_leaves_nothing_running(nd_user, container):
    """Nothing of gear runs after a SIGKILL of the batch shell: only Slurm's process tracking ends the program."""
    if "proctrack/cgroup" not in as_root("scontrol", "show", "config").stdout:
        pytest.skip("the cluster tracks processes by /proc here: the program outlives its batch shell (docs/devcluster.md)")
    execution, job = _submit(nd_user, container, PROGRAM)
    assert _wait(lambda: _status_record(nd_user, execution).get("phase") == "running", 90)
    assert {line.split()[3] for line in _helpers_of(nd_user)} >= {"squashfuse_ll"}
    assert {line.split()[3] for line in _processes_of_job(nd_user, job)} >= {"slurm_script"}   # else it proves nothing
    nd_user.run("scancel", "--signal=KILL", "--batch", job, check=True)
    record = nd_user.wait_for(execution, set(CLOSED), timeout=120)
    assert record["status"] in ("failed", "terminated", "lost"), record
    # Slurm ends the job's cgroup as the job ends: give it the seconds that takes.
    assert _wait(lambda: not _processes_of_job(nd_user, job), 30), _processes_of_job(nd_user, job)
