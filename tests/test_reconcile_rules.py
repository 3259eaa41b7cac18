"""Which wins, the job's own record or Slurm's view: the precedence table of `reconcile.fold`.

Slurm's side is squeue's real answers (gear's format: fields split by \\x1f,
jobs by \\x1e), recorded on the local cluster while its slurmd was killed and
its node marked DOWN (tests/cluster/test_node_death.py makes the same
faults), parsed by `slurm.jobs.query_jobs` as gear parses them.
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime

import pytest

from gear_hpc.executions.reconcile import completed_for_good, fold
from gear_hpc.ledger.db import Execution
from gear_hpc.slurm.jobs import query_jobs

NOW = datetime(2026, 12, 7, 7, 6, 0, tzinfo=UTC)
U, R = "\x1f", "\x1e"
COMMENT = "gear:ndb/1:bbc5ebbbc8042f79"
# Recorded on the local cluster (jobs 20 and 113), in the order they came:
SQUEUE = {
    # the program runs
    "RUNNING": f"20{U}RUNNING{U}None{U}{COMMENT}{U}2026-12-07T11:05:16{U}vm{R}\n",
    # slurmd killed, then the program ended: the batch script is done, Slurm cannot clean up on the node
    "COMPLETING": f"113{U}COMPLETING{U}None{U}gear:t-152e4f03b4-q/1:50b09587600edd9e{U}2026-12-07T07:13:10{U}vm{R}\n",
    # `scontrol update nodename=vm state=down`: requeued at once, no node
    "REQUEUED": f"20{U}PENDING{U}None{U}{COMMENT}{U}2026-12-07T11:07:23{U}{R}\n",
    # a few seconds later: held back for two minutes
    "HELD": f"20{U}PENDING{U}BeginTime{U}{COMMENT}{U}2026-12-07T11:07:23{U}{R}\n",
    # Made in the same form: a job Slurm may not requeue, on the node marked down,
    # and one that ended long ago (beyond the grace for a record to show).
    "NODE_FAIL": f"20{U}NODE_FAIL{U}NodeDown{U}{COMMENT}{U}2026-12-07T07:05:22{U}vm{R}\n",
    "COMPLETED": f"20{U}COMPLETED{U}None{U}{COMMENT}{U}2026-12-07T07:05:00{U}vm{R}\n",
}
BASE = {"started_at": "2026-12-07T07:05:17Z", "last_save": "", "slurm_job_id": "20", "node": "vm"}
RECORDS = {
    "none": None,
    "running": {"phase": "running", "status": "running", "exit_code": None, "saved": False,
                "at": "2026-12-07T07:05:17Z", **BASE},
    "completed": {"phase": "final", "status": "completed", "exit_code": 0, "saved": True,
                  "at": "2026-12-07T07:05:42Z", **BASE},
    "completed, not rerun": {"phase": "final", "status": "completed", "exit_code": 0, "saved": True,
                             "at": "2026-12-07T07:05:42Z", **BASE, "not_rerun": 2},
    "terminated": {"phase": "final", "status": "terminated", "exit_code": 143, "saved": True,
                   "at": "2026-12-07T07:05:30Z", **BASE, "signal": "TERM", "stopped_by": "scancel or Slurm"},
    "failed, not saved": {"phase": "final", "status": "failed", "exit_code": 0, "saved": False,
                          "at": "2026-12-07T07:05:30Z", **BASE, "note": "the final save failed"},
}
OPEN = object()   # the status stays what the execution had ("running" here): no verdict

# (record, Slurm's view) -> what gear shows; a closed status means the execution closes.
TABLE = [
    ("none", "RUNNING", OPEN),
    ("none", "HELD", "queued"),
    ("running", "RUNNING", OPEN),
    ("running", "COMPLETING", OPEN),
    ("running", "REQUEUED", "queued"),
    ("running", "HELD", "queued"),
    ("running", "NODE_FAIL", "failed"),
    ("running", "COMPLETED", "failed"),
    # The record is newer and final, and says completed and saved: it holds.
    ("completed", "RUNNING", "completed"),
    ("completed", "COMPLETING", "completed"),
    ("completed", "REQUEUED", "completed"),
    ("completed", "HELD", "completed"),
    ("completed", "NODE_FAIL", "completed"),
    ("completed", "COMPLETED", "completed"),
    ("completed, not rerun", "COMPLETED", "completed"),
    # Any other final record may be an earlier run's of a job that runs again: wait while Slurm has it.
    ("terminated", "RUNNING", OPEN),
    ("terminated", "COMPLETING", OPEN),
    ("terminated", "HELD", "queued"),
    ("terminated", "COMPLETED", "terminated"),
    ("failed, not saved", "COMPLETING", OPEN),
    ("failed, not saved", "HELD", "queued"),
    ("failed, not saved", "NODE_FAIL", "failed"),
]


@pytest.fixture
def squeue(fake_slurm):
    """Slurm's view as gear reads it: query_jobs over a recorded answer."""
    def view(name: str):
        fake_slurm("squeue", f"printf '%s' {shlex.quote(SQUEUE[name])}")
        return query_jobs()
    return view


def _execution(status: str = "running", job: str = "20") -> Execution:
    return Execution(container="ndb", number=1, mode="script", status=status, compute_type="cpu-small",
                     image="python", command=["python3", "slow.py"], params={}, bindings=[],
                     workdir="/w/ndb/1/home", token="bbc5ebbbc8042f79", slurm_job_id=job,
                     created_at="2026-12-07T07:05:14Z", started_at="2026-12-07T07:05:17Z")


@pytest.mark.parametrize("record, view, shown", TABLE, ids=[f"{r}|{v}" for r, v, _ in TABLE])
def test_precedence(squeue, record, view, shown):
    jobs = squeue(view)
    [job] = jobs
    changes = fold(_execution(job=job), RECORDS[record], jobs, NOW) or {}
    status = changes.get("status", "running")
    if shown is OPEN:
        assert status == "running" and "ended_at" not in changes, changes
    else:
        assert status == shown, changes
        assert ("ended_at" in changes) == (shown not in ("queued", "syncing")), changes


def test_completed_only_when_the_record_says_completed_and_saved():
    """Never `completed` for anything that did not complete: every other record waits or closes as it says."""
    assert completed_for_good(RECORDS["completed"])
    for name in ("none", "running", "terminated", "failed, not saved"):
        assert not completed_for_good(RECORDS[name]), name
    completed = RECORDS["completed"]
    assert completed is not None
    for forged in ({"saved": False}, {"exit_code": 1}, {"phase": "saving"}, {"saved": "true"}):
        assert not completed_for_good({**completed, **forged}), forged


def test_a_requeued_job_says_why_it_is_queued_and_what_its_earlier_run_left(squeue):
    note = fold(_execution(), RECORDS["running"], squeue("HELD"), NOW)["note"]
    assert note == ("Slurm requeued job 20 (PENDING, waiting: BeginTime); its earlier run's last status record "
                    "(2026-12-07T07:05:17Z) said 'running'; the next run starts from what that run saved (kept in runs/)")
    note = fold(_execution(), RECORDS["terminated"], squeue("REQUEUED"), NOW)["note"]
    assert "(PENDING)" in note and "said it ended terminated;" in note
    note = fold(_execution(), RECORDS["failed, not saved"], squeue("HELD"), NOW)["note"]
    assert "said it ended failed, not saved completely;" in note
    # Queued with no record: never ran, nothing to say.
    assert fold(_execution("queued"), None, squeue("HELD"), NOW) is None


def test_completed_while_requeued_says_it_is_not_run_again(squeue):
    for record, view in (("completed", "HELD"), ("completed, not rerun", "COMPLETED")):
        changes = fold(_execution(), RECORDS[record], squeue(view), NOW)
        assert changes["status"] == "completed" and changes["exit_code"] == 0, changes
        assert changes["note"] == ("Slurm requeued job 20 after its program had completed and its working directory "
                                   "was saved; that result stands and is not run again")
    # Slurm keeping it COMPLETING is no requeue: no note.
    assert "note" not in fold(_execution(job="113"), RECORDS["completed"], squeue("COMPLETING"), NOW)


def test_once_running_again_the_requeue_note_stays(squeue):
    first = fold(_execution(), RECORDS["running"], squeue("HELD"), NOW)
    execution = _execution("queued")
    execution.note = first["note"]
    again = fold(execution, {**RECORDS["running"], "at": "2026-12-07T07:08:00Z"}, squeue("RUNNING"), NOW)
    assert again == {"status": "running"}
