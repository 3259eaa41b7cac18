"""`gear status` and `gear ls` with open executions, on the real cluster: the click-free fast path folds
them from one squeue answer and their status records when nothing changes (cli/fastpath.py,
executions/open_fold.py), prints what the click path prints, and asks Slurm once either way."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from conftest import User, custom_site

# More than half a compute node (each advertises 8 CPUs): two never share one, so some wait.
WIDE = "\nsfp-wide:\n  partition: cpu\n  cpus: 5\n  memory: 1G\n  time_limit: \"00:10:00\"\n"
LIB = "/opt/gear-hpc/lib"
# The fast path alone (None: it declined), and the click path alone, as the launcher runs them.
FAST = (f"import sys; sys.path.insert(0, {LIB!r}); from gear_hpc.cli import fastpath; "
        "code = fastpath.run(sys.argv[1:]); sys.stderr.write('FAST' if code is not None else 'DECLINED'); "
        "sys.stderr.write(' click' * ('click' in sys.modules))")
CLICK = f"import sys; sys.path.insert(0, {LIB!r}); from gear_hpc.cli.group import run; sys.exit(run(sys.argv[1:]))"


@pytest.fixture(scope="module")
def sam() -> User:
    user = User("sfp_sam")
    yield user
    user.run("scancel", "--me")


@pytest.fixture(scope="module")
def site(sam: User) -> dict[str, str]:
    """The site with WIDE, and a storage root of this run's own: executions an earlier run left
    (closed or lost when the cluster restarted) would send every look down the click path."""
    root = sam.make_dir({"users/.keep": ""})
    return {"GEAR_SITE_CONFIG": str(custom_site(sam, types_yaml=WIDE)), "GEAR_STORAGE_ROOT": str(root)}


@pytest.fixture(scope="module")
def counting(sam: User) -> dict[str, str]:
    """GEAR_SLURM_BIN: the real Slurm commands, each call written to calls.log first."""
    directory = sam.make_dir({})
    for name in ("squeue", "scontrol", "sbatch", "scancel"):
        real = sam.run("bash", "-c", f"command -v {name}", check=True).stdout.strip()
        script = directory / name
        script.write_text(f"#!/bin/bash\necho {name} >> {directory}/calls.log\nexec {real} \"$@\"\n")
        script.chmod(0o755)
    return {"GEAR_SLURM_BIN": str(directory)}


def _calls(counting: dict[str, str]) -> list[str]:
    log = Path(counting["GEAR_SLURM_BIN"]) / "calls.log"
    calls = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return calls


@pytest.fixture(scope="module")
def busy(sam: User, site: dict[str, str]) -> list[str]:
    """Three long executions of a type two of which fill both compute nodes: two run, one waits."""
    code = str(sam.make_dir({"noop.txt": ""}))
    ids = []
    for k in range(3):
        ids.append(sam.gear("run", "-c", f"sfp-{k}", "-r", "sfp-wide", "--code", code, "--", "sleep", "600",
                            env=site, check=True).stdout.strip())   # stdout: the execution's id
    deadline = time.monotonic() + 120
    while True:
        shown = {item["id"]: item["status"] for item in _status_json(sam, site) if item["id"] in ids}
        assert len(shown) == len(ids) and set(shown.values()) <= {"queued", "syncing", "running"}, shown
        # Both kinds, unless other jobs hold the nodes for long (then all three wait, which also does).
        if {"running", "queued"} <= set(shown.values()) or time.monotonic() > deadline:
            return ids
        time.sleep(1)


def _status_json(sam: User, site: dict[str, str]) -> list[dict]:
    import json

    return json.loads(sam.gear("status", "--json", env=site, check=True).stdout)


def _both(sam: User, site: dict[str, str], args: list[str]) -> tuple[str, str, str]:
    """(fast path's stdout, what it said on stderr, the click path's stdout) run back to back."""
    fast = sam.run("python3", "-S", "-c", FAST, *args, env=site)
    click = sam.run("python3", "-c", CLICK, *args, env=site)
    assert click.returncode == 0, click.stderr
    return fast.stdout, fast.stderr, click.stdout


@pytest.mark.parametrize("args", [["status"], ["status", "--json"], ["ls"], ["ls", "--json"]], ids=" ".join)
def test_open_executions_print_what_the_click_path_prints(sam, site, busy, args):
    # A job may start (or move a phase) between the two runs: then they differ once, and the next try agrees.
    for _ in range(10):
        fast, said, click = _both(sam, site, args)
        if said == "FAST" and fast == click:
            break
        time.sleep(1)
    assert said == "FAST", said          # taken, without importing click
    assert fast == click
    if args == ["status"]:
        for execution in busy:
            assert re.search(rf"^{re.escape(execution)}\s+(running|queued)\s", fast, re.MULTILINE), fast


def test_one_squeue_whether_the_fast_path_prints_or_declines(sam, site, busy, counting):
    env = {**site, **counting}
    _calls(counting)
    shown = sam.gear("status", env=env, check=True).stdout
    assert _calls(counting) == ["squeue"], shown
    # A running execution's job (or a queued one's) ends behind gear's back: the fast path sees it and
    # declines, the click path records it from the same answer.
    running = sorted((item for item in _status_json(sam, site) if item["id"] in busy),
                     key=lambda item: item["status"] != "running")[0]
    _calls(counting)
    sam.run("scancel", running["slurm_job_id"], check=True)
    deadline = time.monotonic() + 90
    while True:
        fast = sam.run("python3", "-S", "-c", FAST, "status", env=env)
        if fast.stderr == "DECLINED":
            break
        assert time.monotonic() < deadline, fast.stdout
        time.sleep(0.5)
    _calls(counting)
    sam.gear("status", env=env, check=True)
    assert _calls(counting) == ["squeue"]
    record = sam.wait_for(running["id"], {"terminated", "failed"}, timeout=90)
    assert record["status"] == "terminated", record


def test_the_fast_path_does_not_change_the_ledger(sam, site, busy):
    user_root = Path(site["GEAR_STORAGE_ROOT"]) / "users" / sam.name

    def ledger() -> dict[str, tuple[int, int]]:
        return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in user_root.glob("ledger.sqlite*")}

    before = ledger()
    for _ in range(10):
        fast = sam.run("python3", "-S", "-c", FAST, "status", env=site)
        if fast.stderr == "FAST":
            break
        sam.gear("status", env=site)
        before = ledger()
        time.sleep(1)
    assert fast.stderr == "FAST"
    assert ledger() == before


def test_squeue_failing_leaves_it_to_the_click_path_which_says_so(sam, site, busy):
    broken = sam.make_dir({})
    (broken / "squeue").write_text("#!/bin/bash\necho 'slurm_load_jobs error: Unable to contact slurm controller' >&2\n"
                                   "exit 1\n")
    (broken / "squeue").chmod(0o755)
    env = {**site, "GEAR_SLURM_BIN": str(broken)}
    fast = sam.run("python3", "-S", "-c", FAST, "status", env=env)
    assert (fast.stdout, fast.stderr) == ("", "DECLINED")
    result = sam.gear("status", env=env)
    assert result.returncode != 0
    assert "Unable to contact slurm controller" in result.stderr
    assert "Traceback" not in result.stderr
