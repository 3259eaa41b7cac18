"""What gear reads from Slurm, read from what Slurm really printed: one directory a release in
tests/fixtures/slurm/ (24.11 from Debian 13, 26.05 from sid), recorded on the local cluster by
tests/fixtures/slurm/record.sh. Every release must give gear the same answers.

Jobs in the recordings, all of user slurmrec: comment gear:rec/1 ended (COMPLETED, with a mail),
gear:rec/2 running on node1 (or ended, in an earlier recording), gear:rec/3 held."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from gear_hpc.notify.slurm_mail import Call, job_fields, parse_argv
from gear_hpc.slurm import jobs
from helpers import write_executable

FIXTURES = Path(__file__).parent / "fixtures" / "slurm"
RELEASES = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
COMMENT = "gear:rec/{}:0123456789abcdef"


def test_both_releases_are_recorded():
    assert {"24.11", "26.05"} <= set(RELEASES)
    for release in RELEASES:
        assert (FIXTURES / release / "version.txt").read_text().split()[1].startswith(release + ".")


def _fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, recorded: Path, code: int = 0) -> None:
    """GEAR_SLURM_BIN with `name` printing what the real one printed (to stderr when it failed)."""
    where = ">&2" if code else ""
    write_executable(tmp_path / name, f"#!/bin/sh\ncat {shlex.quote(str(recorded))} {where}\nexit {code}\n")
    monkeypatch.setenv("GEAR_SLURM_BIN", str(tmp_path))


@pytest.mark.parametrize("release", RELEASES)
def test_squeue(release, tmp_path, monkeypatch):
    _fake(tmp_path, monkeypatch, "squeue", FIXTURES / release / "squeue.txt")
    found = jobs.query_jobs()
    assert found and all(job_id.isdigit() and job.job_id == job_id for job_id, job in found.items())
    by_phase: dict[str, list[jobs.SlurmJob]] = {}
    for job in found.values():
        by_phase.setdefault(job.phase, []).append(job)
    [running] = by_phase[jobs.RUNNING]
    assert (running.state, running.comment, running.nodes) == ("RUNNING", COMMENT.format(2), "node1")
    assert running.end_time[:4].isdigit()   # the limit it would end at
    held = [job for job in by_phase[jobs.PENDING] if job.comment == COMMENT.format(3)]
    assert held and held[-1].state == "PENDING" and held[-1].reason == "JobHeldUser"
    assert held[-1].nodes == "" and held[-1].end_time == "N/A"
    ended = [job for job in by_phase[jobs.ENDED] if job.comment == COMMENT.format(1)]
    assert ended and all(job.state == "COMPLETED" and job.nodes == "node1" for job in ended)


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("which,state,number", [("running", "RUNNING", 2), ("ended", "COMPLETED", 1)])
def test_scontrol_show_job(release, which, state, number, tmp_path, monkeypatch):
    recorded = FIXTURES / release / f"scontrol-show-job-{which}.txt"
    job_id = recorded.read_text().split()[0].removeprefix("JobId=")
    _fake(tmp_path, monkeypatch, "scontrol", recorded)
    job = jobs.show_job(job_id)
    assert job is not None
    assert (job.job_id, job.state, job.comment, job.nodes) == (job_id, state, COMMENT.format(number), "node1")
    assert job.end_time[:4].isdigit()


def test_a_submit_line_is_not_read_as_fields():
    """26.05 prints SubmitLine= (the sbatch command line, spaces and all) before Comment=. gear's own
    submit line is `sbatch --parsable PATH` with no `Key=` in it; the fields gear reads are found
    where Slurm put them."""
    recorded = (FIXTURES / "26.05" / "scontrol-show-job-running.txt").read_text()
    assert " SubmitLine=sbatch " in recorded and recorded.index("SubmitLine=") < recorded.index(" Comment=")


@pytest.mark.parametrize("release", RELEASES)
def test_scontrol_on_a_job_it_does_not_know(release, tmp_path, monkeypatch):
    _fake(tmp_path, monkeypatch, "scontrol", FIXTURES / release / "scontrol-show-job-unknown.txt", code=1)
    assert jobs.show_job("999999") is None


@pytest.mark.parametrize("release", RELEASES)
def test_sbatch_parsable(release, tmp_path, monkeypatch):
    recorded = FIXTURES / release / "sbatch-parsable.txt"
    _fake(tmp_path, monkeypatch, "sbatch", recorded)
    assert jobs.submit(tmp_path / "job.sh") == recorded.read_text().strip()


def _mailprog_call(release: str) -> tuple[list[str], dict[str, str]]:
    argv_line, *env_lines = (FIXTURES / release / "mailprog.txt").read_text().strip().splitlines()
    argv = argv_line.split("\t")
    assert argv[0] == "argv"
    return argv[1:], dict(line.split("=", 1) for line in env_lines if line)


@pytest.mark.parametrize("release", RELEASES)
def test_mailprog_call(release):
    argv, env = _mailprog_call(release)
    subject, recipients = parse_argv(argv)
    assert subject is not None and recipients == ["slurmrec"]
    call = Call(subject, recipients, env)
    parsed = call.parsed
    assert parsed is not None and parsed.group("name") == "wrap" and parsed.group("type") == "Ended"
    assert call.job_id == env["SLURM_JOB_ID"] == parsed.group("job")
    assert call.mail_type == "Ended" and parsed.group("rest").endswith(", COMPLETED, ExitCode 0")
    # The comment comes in the environment: no scontrol needed.
    assert job_fields(call, lambda job: pytest.fail("asked scontrol")) == (COMMENT.format(1), "")
    assert env["SLURM_JOB_USER"] == "slurmrec" and env["SLURM_JOB_STATE"] == "COMPLETED"


def test_mailprog_subjects_agree_across_releases():
    subjects = {release: parse_argv(_mailprog_call(release)[0])[0] for release in RELEASES}
    shapes = {release: Call(subject or "", [], {}).parsed for release, subject in subjects.items()}
    assert all(shapes.values())
    assert len({(m.group("name"), m.group("type"), m.group("rest")) for m in shapes.values() if m}) == 1


# 23.x was not recorded here (Debian carries no 23.x for trixie or sid). Its MailProg call, as
# that release's slurmctld builds it: argv `-s SUBJECT USER`, the subject "Slurm Job_id=ID
# Name=NAME TYPE" then the times and the end state; array jobs have their own forms.
SUBJECTS_23 = [
    ("Slurm Job_id=42 Name=gear-c-1 Began, Queued time 00:00:01", "Began"),
    ("Slurm Job_id=42 Name=gear-c-1 Ended, Run time 00:01:02, COMPLETED, ExitCode 0", "Ended"),
    ("Slurm Job_id=42 Name=gear-c-1 Failed, Run time 00:00:05, FAILED, ExitCode 1", "Failed"),
    ("Slurm Job_id=42 Name=gear-c-1 Requeued, Run time 00:00:05", "Requeued"),
    ("Slurm Job_id=42 Name=gear-c-1 Reached 90% of time limit, Run time 00:54:00", "Reached 90% of time limit"),
    ("Slurm Job_id=42 Name=a name with spaces Ended, Run time 00:00:01, CANCELLED, ExitCode 0", "Ended"),
]


@pytest.mark.parametrize("subject,mail_type", SUBJECTS_23)
def test_mailprog_call_of_23(subject, mail_type):
    subject_read, recipients = parse_argv(["-s", subject, "alice"])
    assert (subject_read, recipients) == (subject, ["alice"])
    call = Call(subject, recipients, {"SLURM_JOB_USER": "alice"})   # no SLURM_JOB_ID, no comment
    assert call.job_id == "42" and call.mail_type == mail_type
    # Without the comment in the environment, it is asked of scontrol, by the subject's job id.
    asked = []
    assert job_fields(call, lambda job: asked.append(job) or {"Comment": COMMENT.format(1)}) == (COMMENT.format(1), "")
    assert asked == ["42"]


def test_array_subjects_are_not_read_as_one_job():
    for subject in ("Slurm Array Summary Job_id=42_* (42) Name=x Ended, COMPLETED, ExitCode [0-0]",
                    "Slurm Array Task Job_id=42_3 (45) Name=x Ended, Run time 00:00:01, COMPLETED, ExitCode 0"):
        assert Call(subject, ["alice"], {}).parsed is None
