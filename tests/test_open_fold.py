"""executions/open_fold.py: the fast path says "unchanged" only where reconcile.fold changes nothing.

Every combination of an open execution's ledger status, note and start
time, Slurm's view of its job (every state class, or not listed) and its
status record (none, each phase, final ones, another start time) is folded
both ways: `unchanged` may be cautious (False where fold changes nothing),
never wrong (True where fold would change something).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from gear_hpc.base.facts import OPEN_STATUSES
from gear_hpc.executions import open_fold
from gear_hpc.executions.reconcile import fold, fold_lost
from gear_hpc.ledger.db import Execution
from gear_hpc.slurm import queue
from gear_hpc.slurm.jobs import SlurmJob

NOW = datetime(2026, 12, 7, 9, 0, 0, tzinfo=UTC)
STARTED = "2026-12-07T08:00:00Z"
NOTES = [None, "the job runs", "missing since 2026-12-07T08:59:50Z: squeue no longer lists job 20 …"]
# (state, end time, nodes): pending, running and ended jobs, one that ended just now (within the grace).
JOBS = [None, ("PENDING", "Unknown", ""), ("REQUEUE_HOLD", "Unknown", ""), ("RUNNING", "Unknown", "node1"),
        ("COMPLETING", "2026-12-07T08:59:59", "node1"), ("COMPLETED", "2026-12-07T08:00:00", "node1"),
        ("CANCELLED", "2026-12-07T08:59:59", "node1"), ("CANCELLED", "2026-12-07T08:00:00", ""),
        ("TIMEOUT", "2026-12-07T08:00:00", "node1")]
FINAL = {"phase": "final", "status": "completed", "exit_code": 0, "saved": True, "at": "2026-12-07T08:30:00Z"}
RECORDS = [None, {}, {"phase": "syncing"}, {"phase": "running"}, {"phase": "saving"},
           {"phase": "syncing", "progress": {"bytes": 10, "seconds": 2}}, FINAL, {**FINAL, "saved": False},
           {**FINAL, "status": "terminated", "exit_code": 143}, {"phase": "weird"}]


def _execution(status: str, note: str | None, started_at: str | None) -> Execution:
    return Execution(container="c", number=1, mode="script", status=status, compute_type="cpu-small", image="python",
                     command=["true"], params={}, bindings=[], workdir="/w/c/1/home", token="t0", slurm_job_id="20",
                     created_at="2026-12-07T07:59:00Z", started_at=started_at, note=note)


def _records():
    for record in RECORDS:
        for started in (None, STARTED, "2026-12-07T08:40:00Z"):
            if record is None:
                if started is None:
                    yield None
                continue
            yield {**record, "started_at": started} if started else dict(record)


def test_unchanged_never_hides_a_change():
    certain = 0
    for status, note, started, job, record in itertools.product(OPEN_STATUSES, NOTES, (None, STARTED), JOBS,
                                                                list(_records())):
        jobs = {} if job is None else {"20": SlurmJob("20", job[0], "None", "gear:c/1:t0", job[1], job[2])}
        said = open_fold.unchanged(status, note, started, None if job is None else queue.phase(job[0]), record)
        if said:
            certain += 1
            changes = fold(_execution(status, note, started), record, jobs, NOW, unknown=set())
            assert changes is None, (status, note, started, job, record, changes)
    # Not a predicate that is never sure: the everyday states are answered here.
    assert certain >= 20


def test_the_everyday_states_are_certain():
    assert open_fold.unchanged("queued", None, None, queue.PENDING, None)
    assert open_fold.unchanged("running", None, STARTED, queue.RUNNING, {"phase": "running", "started_at": STARTED})
    assert open_fold.unchanged("syncing", None, STARTED, queue.RUNNING, {"phase": "syncing", "started_at": STARTED})
    assert open_fold.unchanged("saving", None, STARTED, queue.RUNNING, {"phase": "saving", "started_at": STARTED})
    # ... and what must be recorded is not.
    assert not open_fold.unchanged("queued", None, None, queue.RUNNING, None)           # it started
    assert not open_fold.unchanged("running", None, STARTED, queue.ENDED, None)         # it ended
    assert not open_fold.unchanged("running", None, None, queue.RUNNING, {"phase": "running", "started_at": STARTED})
    assert not open_fold.unchanged("queued", None, None, None, None)                    # squeue left it out


def test_status_records_are_read_as_json_objects_only(tmp_path):
    home = tmp_path / "c" / "1" / "home"
    home.mkdir(parents=True)
    record = home.parent / "status.json"
    assert open_fold.read_status_record(str(home)) is None
    for text, expected in (('{"phase": "running", "at": 1.5}', {"phase": "running", "at": 1.5}),
                           ("[1, 2]", None), ("{not json", None), ("", None), ('{"a": 1} trailing', None),
                           ('\n {"a": "\\u00e9"}\n', {"a": "é"})):
        record.write_text(text)
        assert open_fold.read_status_record(str(home)) == expected, text
    record.write_bytes(b'{"a": "\xff"}')
    assert open_fold.read_status_record(str(home)) is None


def test_a_lost_execution_is_left_alone_unless_a_final_record_came():
    lost = _execution("running", None, STARTED)
    lost.status, lost.ended_at = "lost", "2026-12-07T08:50:00Z"
    for record in _records():
        if not open_fold.corrects_lost(record):
            assert fold_lost(lost, record) is None, record
    assert fold_lost(lost, FINAL) is not None and open_fold.corrects_lost(FINAL)
