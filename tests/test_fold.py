"""How Slurm's view and the job's status record become an execution's status."""

from datetime import UTC, datetime, timedelta

from gear_hpc.executions.reconcile import LOST_CONFIRM_AFTER, fold, fold_lost
from gear_hpc.ledger.db import Execution
from gear_hpc.slurm.jobs import SlurmJob

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


def _execution(status="queued", **kw):
    values = dict(container="c", number=1, mode="script", status=status, compute_type="cpu-small",
                  image="python", command=["x"], params={}, bindings=[], workdir="/w/home", token="tok",
                  slurm_job_id="7", created_at="2026-11-29T11:00:00Z")
    values.update(kw)
    return Execution(**values)


def _job(state, end="N/A", comment="gear:c/1:tok", nodes="vm"):
    return SlurmJob("7", state, "None", comment, end, nodes)


def _local(dt):
    return dt.astimezone().strftime("%Y-%m-%dT%H:%M:%S")


def test_final_record_closes_with_its_status_and_exit_code():
    record = {"phase": "final", "status": "completed", "exit_code": 0, "saved": True,
              "at": "2026-11-29T11:59:00Z", "started_at": "2026-11-29T11:58:00Z"}
    changes = fold(_execution("running"), record, {}, NOW)
    assert changes == {"status": "completed", "exit_code": 0, "ended_at": "2026-11-29T11:59:00Z",
                       "started_at": "2026-11-29T11:58:00Z"}


def test_final_record_that_was_not_saved_says_so():
    record = {"phase": "final", "status": "failed", "exit_code": 1, "saved": False, "at": "x", "started_at": ""}
    assert "not saved" in fold(_execution("running"), record, {}, NOW)["note"]


def test_pending_and_running_follow_slurm_and_the_record():
    assert fold(_execution("queued"), None, {"7": _job("PENDING")}, NOW) is None
    assert fold(_execution("queued"), None, {"7": _job("RUNNING")}, NOW)["status"] == "syncing"
    record = {"phase": "running", "started_at": "2026-11-29T11:59:00Z"}
    assert fold(_execution("queued"), record, {"7": _job("R")}, NOW)["status"] == "running"


def _missing(seconds_ago):
    """An execution a look found unknown to Slurm `seconds_ago` (the note the first look leaves)."""
    first = fold(_execution("running"), None, {}, NOW - timedelta(seconds=seconds_ago), {"7"})
    return _execution("running", note=first["note"])


def test_squeue_alone_leaving_a_job_out_is_no_evidence():
    """squeue did not list it, and scontrol was not asked (or did not answer): nothing changes."""
    assert fold(_execution("running"), None, {}, NOW) is None
    record = {"phase": "running", "started_at": "2026-11-29T11:59:00Z"}
    assert fold(_execution("running"), record, {}, NOW) == {"started_at": "2026-11-29T11:59:00Z"}


def test_the_first_look_that_finds_a_job_unknown_only_notes_when():
    changes = fold(_execution("running"), None, {}, NOW, {"7"})
    assert set(changes) == {"note"} and changes["note"].startswith("missing since 2026-11-29T12:00:00Z: ")


def test_a_second_look_too_soon_decides_nothing():
    execution = _missing(LOST_CONFIRM_AFTER.total_seconds() - 1)
    assert fold(execution, None, {}, NOW, {"7"}) is None


def test_a_job_unknown_at_two_looks_apart_without_final_record_is_lost_never_completed():
    execution = _missing(LOST_CONFIRM_AFTER.total_seconds())
    record = {"phase": "running", "started_at": "2026-11-29T11:59:00Z"}
    changes = fold(execution, record, {}, NOW, {"7"})
    assert changes["status"] == "lost" and changes["ended_at"] == "2026-11-29T12:00:00Z"
    assert "no longer knows job 7" in changes["note"] and "'running'" in changes["note"]


def test_a_missing_job_slurm_lists_again_loses_its_mark():
    """Listed by squeue, or known to scontrol (refresh adds it to `jobs`): the first look's note goes."""
    execution = _missing(LOST_CONFIRM_AFTER.total_seconds() * 2)
    assert fold(execution, None, {"7": _job("RUNNING")}, NOW, set()) == {"note": None}
    # Unknown at one look, not asked at the next: the mark stays, no verdict.
    assert fold(execution, None, {}, NOW, set()) is None


def test_a_final_record_closes_a_missing_job_without_a_second_look():
    execution = _missing(1)
    record = {"phase": "final", "status": "completed", "exit_code": 0, "saved": True, "at": "2026-11-29T11:59:59Z"}
    changes = fold(execution, record, {}, NOW, {"7"})
    assert changes["status"] == "completed" and changes["note"] is None


def test_without_slurm_nothing_changes_not_even_from_a_final_record():
    record = {"phase": "running", "started_at": "2026-11-29T11:59:00Z"}
    assert fold(_execution("syncing"), record, None, NOW) is None
    assert fold(_execution("queued"), None, None, NOW) is None
    final = {"phase": "final", "status": "completed", "exit_code": 0, "saved": True, "at": "2026-11-29T11:59:00Z"}
    assert fold(_execution("running"), final, None, NOW) is None
    assert fold(_missing(3600), None, None, NOW, {"7"}) is None


def test_a_late_final_record_corrects_lost():
    lost = _execution("lost", ended_at="2026-11-29T11:00:01Z", note="Slurm no longer knows job 7 ...")
    record = {"phase": "final", "status": "timeout", "exit_code": 143, "saved": True, "slurm_job_id": "7",
              "at": "2026-11-29T11:00:24Z", "started_at": "2026-11-29T11:00:00Z"}
    changes = fold_lost(lost, record)
    assert changes["status"] == "timeout" and changes["exit_code"] == 143
    assert changes["ended_at"] == "2026-11-29T11:00:24Z"
    assert changes["note"] == ("was marked lost at 2026-11-29T11:00:01Z; its final record arrived later: "
                               "timeout, exit code 143; the working directory was saved")
    # No final record (yet), or another job's: it stays lost.
    assert fold_lost(lost, None) is None
    assert fold_lost(lost, {"phase": "running"}) is None
    assert fold_lost(lost, dict(record, slurm_job_id="8")) is None


def test_ended_job_without_record_waits_a_grace_then_closes_by_slurm_state():
    just_now = _local(NOW - timedelta(seconds=5))
    assert fold(_execution("running"), None, {"7": _job("COMPLETED", just_now)}, NOW) is None
    long_ago = _local(NOW - timedelta(minutes=5))
    for state, status in [("CANCELLED", "terminated"), ("TIMEOUT", "timeout"), ("COMPLETED", "failed"),
                          ("NODE_FAIL", "failed"), ("OUT_OF_MEMORY", "failed")]:
        changes = fold(_execution("running"), None, {"7": _job(state, long_ago)}, NOW)
        assert changes["status"] == status, state
        assert "save may be incomplete" in changes["note"]


def test_a_job_that_never_started_closes_at_once():
    """Cancelled while queued: no node, no record, and none will come: no grace to wait out."""
    just_now = _local(NOW - timedelta(seconds=2))
    changes = fold(_execution("queued"), None, {"7": _job("CANCELLED", just_now, nodes="")}, NOW)
    assert changes["status"] == "terminated" and "before it started" in changes["note"]
    # A job that ran somewhere still gets the grace for its record to show.
    assert fold(_execution("queued"), None, {"7": _job("CANCELLED", just_now, nodes="vm")}, NOW) is None
    # A record from an earlier run (a requeued job): the record decides, after the grace.
    record = {"phase": "running", "started_at": "2026-11-29T11:58:00Z"}
    changes = fold(_execution("queued"), record, {"7": _job("CANCELLED", just_now, nodes="")}, NOW)
    assert changes is None or changes.get("status") != "terminated"


def test_a_submitting_row_is_adopted_by_its_job_or_expires():
    row = _execution("submitting", slurm_job_id=None)
    assert fold(row, None, {"7": _job("PENDING")}, NOW)["slurm_job_id"] == "7"
    assert fold(row, None, {"7": _job("PENDING", comment="gear:c/1:other")}, NOW) == {"_discard": True}
    fresh = _execution("submitting", slurm_job_id=None, created_at="2026-11-29T11:59:30Z")
    assert fold(fresh, None, {}, NOW) is None


def test_a_final_record_of_an_earlier_run_does_not_close_a_requeued_job():
    record = {"phase": "final", "status": "terminated", "exit_code": 143, "saved": True,
              "at": "2026-11-29T11:59:00Z", "started_at": "2026-11-29T11:58:00Z"}
    changes = fold(_execution("running"), record, {"7": _job("PENDING")}, NOW)
    assert changes["status"] == "queued" and "ended_at" not in changes
    changes = fold(_execution("running"), record, {"7": _job("RUNNING")}, NOW)
    assert changes.get("status", "running") == "running" and "ended_at" not in changes
    # Once Slurm says it ended (or forgot it), the final record counts.
    assert fold(_execution("running"), record, {"7": _job("COMPLETED", "2026-11-29T11:59:00")}, NOW)["status"] == "terminated"


def test_a_stop_at_the_time_limit_is_a_timeout():
    record = {"phase": "final", "status": "terminated", "exit_code": 143, "saved": True,
              "at": "2026-11-29T11:59:00Z", "started_at": "2026-11-29T11:58:00Z"}
    changes = fold(_execution("running"), record, {"7": _job("TIMEOUT", "2026-11-29T11:59:00")}, NOW)
    assert changes["status"] == "timeout"
    assert fold(_execution("running"), record, {"7": _job("CANCELLED", "2026-11-29T11:59:00")}, NOW)["status"] == "terminated"
