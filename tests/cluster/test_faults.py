"""Stop, time limits, requeue and SIGKILL on the real cluster: what was saved, and the final status."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from conftest import compute_nodes, custom_site
from gear_hpc.devcluster import SCRIPT

SLOW = ("import os, sys, time\n"
        "n = os.environ.get('SLURM_RESTART_COUNT', '0')\n"
        "open(f'run-{n}.txt', 'w').write(n)\n"
        "print('started run', n, flush=True)\n"
        "time.sleep(600 if n == '0' else 1)\n")


OPEN = ("queued", "syncing", "running", "saving")


def _last_id(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def _wait(predicate, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def _status_record(alice, execution: str) -> dict:
    container, number = execution.split("/")
    path = alice.storage / "containers" / container / number / "status.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _closed(alice, execution: str, timeout: float = 120) -> dict:
    """The execution's record once it has closed (or as it is when the time is up)."""
    deadline = time.monotonic() + timeout
    while True:
        record = alice.gear_json("status", execution)
        if record["status"] not in OPEN or time.monotonic() > deadline:
            return record
        time.sleep(2)


def test_time_limit_warns_the_job_which_saves_and_ends_as_timeout(alice, container):
    # A one-minute compute type; Slurm sends USR1 up to 60 s before the limit.
    site = custom_site(alice, site_yaml="", types_yaml=(
        "\nshort:\n  partition: cpu\n  cpus: 1\n  memory: 512M\n  time_limit: \"1\"\n"))
    site_yaml = site / "site.yaml"
    site_yaml.write_text(site_yaml.read_text().replace("time_limit_warning: 120", "time_limit_warning: 30"))
    code = alice.make_dir({"slow.py": SLOW})
    env = {"GEAR_SITE_CONFIG": str(site)}
    execution = _last_id(alice.gear("run", "-c", container, "-r", "short", "--code", str(code), "--",
                                    "python3", "slow.py", env=env))
    record = _closed(alice, execution, timeout=150)
    # Saved (no note of a failed save), and said how it stopped.
    assert record["status"] == "timeout" and record["note"].startswith("stopped at its time limit (SIGTERM)")
    assert (Path(record["workdir"]) / "run-0.txt").read_text() == "0"


def test_stop_now_does_not_wait_and_says_data_may_be_missing(alice, container):
    code = alice.make_dir({"slow.py": SLOW})
    execution = _last_id(alice.gear("run", "-c", container, "--code", str(code), "--", "python3", "slow.py"))
    _wait(lambda: _status_record(alice, execution).get("phase") == "running", 60)
    result = alice.gear("stop", execution, "--now", check=True)
    assert "may be missing" in result.stdout
    assert _closed(alice, execution)["status"] == "terminated"


def test_a_requeued_job_never_overwrites_what_its_earlier_run_saved(alice, container):
    code = alice.make_dir({"slow.py": SLOW})
    execution = _last_id(alice.gear("run", "-c", container, "--code", str(code), "--", "python3", "slow.py"))
    home = Path(alice.gear_json("show", execution)["workdir"])
    assert _wait(lambda: (home / "run-0.txt").exists(), 60)
    job = alice.gear_json("show", execution)["slurm_job_id"]
    alice.run("scontrol", "requeue", job, check=True)
    # Slurm holds a requeued job back for two minutes (Reason=BeginTime, set once
    # the first run has finished completing); the admin lets it start now.
    def as_root(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(SCRIPT), "exec", "--", *argv], capture_output=True, text=True)

    assert _wait(lambda: "Reason=BeginTime" in as_root("scontrol", "show", "job", job).stdout, 60, interval=0.5)
    assert as_root("scontrol", "update", f"JobId={job}", "StartTime=now").returncode == 0
    record = _closed(alice, execution, timeout=180)
    assert record["status"] == "completed", record
    earlier = home.parent / "runs" / "1"
    assert sorted(p.name for p in earlier.iterdir()) == ["gear_params.json", "run-0.txt", "slow.py"]
    assert (home / "run-0.txt").read_text() == "0" and (home / "run-1.txt").read_text() == "1"


def test_sigkill_mid_save_is_never_completed(alice, container):
    """Fault: the batch step is killed with SIGKILL while it saves from node-local scratch."""
    Path("/tmp/gear-scratch").mkdir(exist_ok=True)
    Path("/tmp/gear-scratch").chmod(0o1777)
    site = custom_site(alice, site_yaml="\nworkdir:\n  mode: scratch\n  scratch_dir: /tmp/gear-scratch\n"
                                        "  save_interval: 600\n")
    code = alice.make_dir({"big.py": "import os\nfor i in range(400):\n"
                                     "    open(f'part-{i}.bin', 'wb').write(os.urandom(1 << 20))\n"})
    execution = _last_id(alice.gear("run", "-c", container, "--code", str(code), "--", "python3", "big.py",
                                    env={"GEAR_SITE_CONFIG": str(site)}))
    job = alice.gear_json("show", execution)["slurm_job_id"]
    assert _wait(lambda: _status_record(alice, execution).get("phase") == "saving", 120, interval=0.05)
    alice.run("scancel", "--signal=KILL", "--full", job, check=True)
    record = _closed(alice, execution, timeout=120)
    assert record["status"] in ("failed", "terminated", "lost"), record
    if _status_record(alice, execution).get("saved") is True:
        # Slurm 24.11 makes this KILL a cancel; with proctrack/cgroup its TERM reached only the
        # batch shell, whose trap finished the save: all of it is there, and said who stopped it.
        assert len(list(Path(record["workdir"]).glob("part-*.bin"))) == 400
        assert record["note"].startswith("terminated by scancel or Slurm"), record
    else:
        # Either the batch shell died too (no final record) or it saw its save fail.
        assert any(words in record["note"] for words in ("save may be incomplete", "no final status record",
                                                         "final save from node-local scratch failed"))
    status = alice.gear("status", check=True).stdout
    assert f"{execution}: {record['note']}" in status  # the next command tells the user


@pytest.mark.parametrize("signal, expected", [("USR1", "timeout"), ("TERM", "terminated")])
def test_a_signal_while_copying_in_is_acted_on_once_the_program_starts(alice, container, signal, expected):
    """Slurm may send the time-limit warning right after the start, while the job still copies in."""
    # Fault injection: the job's copy-in (rsync, on the PATH sbatch exports) takes 4 s longer.
    shims = alice.make_dir({"rsync": '#!/bin/sh\n[ -n "$SLURM_JOB_ID" ] && sleep 4\nexec /usr/bin/rsync "$@"\n'})
    (shims / "rsync").chmod(0o755)
    code = alice.make_dir({"slow.py": SLOW})
    result = alice.run("bash", "-c", f'PATH={shims}:"$PATH" exec gear run -c {container} --code {code}'
                                     f' -- python3 slow.py')
    execution = _last_id(result)
    job = alice.gear_json("show", execution)["slurm_job_id"]
    assert _wait(lambda: _status_record(alice, execution).get("phase") == "syncing", 60, interval=0.05)
    alice.run("scancel", "--batch", f"--signal={signal}", job, check=True)
    record = _closed(alice, execution, timeout=120)
    assert record["status"] == expected, record
    assert _status_record(alice, execution)["saved"] is True
    # The copy-in finished and was saved; the program was stopped at once, not after its 600 s.
    assert (Path(record["workdir"]) / "slow.py").exists()


def test_stopping_a_queued_execution_closes_it_at_once(alice, container):
    """A job cancelled before it started has no node and writes no record: gear does not wait for one."""
    site = custom_site(alice, types_yaml=(
        "\nwhole-node:\n  partition: cpu\n  cpus: 8\n  memory: 512M\n  time_limit: \"10\"\n"))
    env = {"GEAR_SITE_CONFIG": str(site)}
    code = alice.make_dir({"x": ""})
    # One whole-node execution on each compute node (one on a cluster of one node): the next one waits.
    blockers = [_last_id(alice.gear("run", "-c", container, "-r", "whole-node", "--code", str(code),
                                    "--", "sleep", "300", env=env)) for _ in range(max(1, len(compute_nodes())))]
    try:
        queued = _last_id(alice.gear("run", "-c", container, "-r", "whole-node", "--code", str(code),
                                     "--", "true", env=env))
        assert json.loads(alice.gear("status", queued, "--json", env=env).stdout)["status"] == "queued"
        result = alice.gear("stop", queued, env=env)
        assert result.returncode == 0, result.stderr
        record = json.loads(alice.gear("status", queued, "--json", env=env).stdout)
        # Closed by Slurm's word alone (the grace for a late record would say "save may be incomplete").
        assert record["status"] == "terminated" and "before it started" in record["note"], record
        assert not (Path(record["workdir"]) / "x").exists()  # nothing ran, nothing was copied in
    finally:
        for blocker in blockers:
            alice.gear("stop", blocker, "--now", env=env)

