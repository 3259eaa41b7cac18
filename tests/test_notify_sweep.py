"""A sweep's one mail, without a cluster: what Slurm 24.11 gave MailProg for job arrays mailed as a
whole (recorded by tests/fixtures/slurm/record-array.sh), identify() of a sweep against the owner's
proof, gear's message, gear-mailprog against a real SMTP server, and the proof a sweep's submission
leaves (or takes back)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gear_hpc.notify.message import sweep_body, sweep_outcome, sweep_subject
from gear_hpc.notify.slurm_mail import Call, GearSweep, Owner, identify, parse_argv
from test_notify import TOKEN, _log, _mailprog, _set_mail, _uid, smtp  # noqa: F401 (smtp: a fixture)

FIXTURES = Path(__file__).parent / "fixtures" / "slurm"


def _recorded_calls(release: str = "24.11") -> list[tuple[list[str], dict[str, str]]]:
    """Each recorded call: argv, and the SLURM_* environment."""
    calls = []
    for block in (FIXTURES / release / "mailprog-array.txt").read_text().strip().split("\n\n"):
        argv_line, *env_lines = block.splitlines()
        argv = argv_line.split("\t")
        assert argv[0] == "argv"
        calls.append((argv[1:], dict(line.split("=", 1) for line in env_lines)))
    return calls


def _call(end: str) -> Call:
    """The first recorded call whose subject ends with `end`."""
    for argv, env in _recorded_calls():
        subject = parse_argv(argv)[0] or ""
        if subject.endswith(f" {end}"):
            return Call(subject, ["slurmrec"], env)
    raise AssertionError(f"not recorded: {end}")


# --- what Slurm sends for an array (24.11) ---

def test_slurm_mails_an_array_once_when_it_starts_and_once_when_it_ends():
    """Without ARRAY_TASKS: one Began (the first task started) and one end per array, never per task."""
    by_array: dict[str, list[str]] = {}
    for argv, env in _recorded_calls():
        subject, recipients = parse_argv(argv)
        assert subject is not None and recipients == ["slurmrec"]
        call = Call(subject, recipients, env)
        assert call.parsed is None and call.array is not None, subject
        assert call.job_id == env["SLURM_JOB_ID"] == call.array.group("job")
        assert call.mail_type == env["SLURM_JOB_MAIL_TYPE"] == call.array.group("type")
        by_array.setdefault(env["SLURM_JOB_COMMENT"], []).append(call.mail_type)
    comment = "gear:rec/{}:0123456789abcdef"
    assert by_array == {comment.format("1-2"): ["Began", "Ended"], comment.format("3-4"): ["Began", "Failed"],
                        comment.format("5-6"): ["Began", "Failed"],
                        comment.format("7-8"): ["Ended"]}   # cancelled before any task started: no Began


@pytest.mark.parametrize("end,status,codes,signal", [
    ("Ended, COMPLETED, ExitCode [0-0]", "completed", "0", None),
    ("Failed, Mixed, ExitCode [0-1]", "mixed", "0-1", None),
    ("Failed, FAILED, ExitCode [2-2]", "failed", "2", None),
    ("Ended, Mixed, MaxSignal [9]", "mixed", None, "9"),
])
def test_the_recorded_ends_in_gears_words(end, status, codes, signal):
    call = _call(end)
    result = sweep_outcome(call)
    assert (result.status, result.exit_codes, result.signal) == (status, codes, signal)


@pytest.mark.parametrize("end,codes", [
    ("Ended, BOGUS, ExitCode [0-0]", "0"), ("Ended, <a href=x>, ExitCode [0-0]", None),
    ("Ended, COMPLETED, ExitCode [0-99999]", None), ("Ended, COMPLETED", None),
    ("Ended, Run time 00:00:01, COMPLETED, ExitCode 0", None), ("Ended, COMPLETED, ExitCode [²-0]", None)])
def test_a_summary_outside_the_closed_set_says_only_ended(end, codes):
    """An unknown state is "ended"; exit codes are printed only as the digits Slurm's form gives."""
    call = Call(f"Slurm Array Summary Job_id=7_* (7) Name=x {end}", [], {"SLURM_JOB_MAIL_TYPE": "Ended"})
    result = sweep_outcome(call)
    assert (result.status, result.exit_codes, result.signal) == ("ended", codes, None)


@pytest.mark.parametrize("subject", [
    "Slurm Array Summary Job_id=7_* (8) Name=x Ended, COMPLETED, ExitCode [0-0]",   # two job ids
    "Slurm Array Summary Job_id=7_3 (7) Name=x Ended, COMPLETED, ExitCode [0-0]",   # a task's
    "Slurm Array Task Job_id=7_3 (8) Name=x Ended, Run time 00:00:01, COMPLETED, ExitCode 0",
    "Slurm Array Summary Job_id=x_* (x) Name=x Ended"])
def test_other_array_forms_are_not_an_arrays_summary(subject):
    assert Call(subject, [], {}).array is None


# --- identify: the owner's proof ---

def _sweep_proof(storage: Path, user: str = "alice", name: str = "1-2", token: str = TOKEN, container: str = "rec"):
    """What a sweep's submission leaves for gear-mailprog: notify/sweeps/<container>/<first>-<last>."""
    root = storage / "users" / user
    path = root / "notify" / "sweeps" / container / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")
    for entry in [root, *root.rglob("*")]:
        os.chown(entry, _uid(user), -1)
    return path


def _array_call(end: str = "Ended, COMPLETED, ExitCode [0-0]", user: str = "alice",
                comment: str | None = "gear:rec/1-2:" + TOKEN) -> Call:
    """A recorded call, as if `user` owned the array."""
    call = _call(end)
    env = {**call.env, "SLURM_JOB_USER": user, "SLURM_JOB_UID": str(_uid(user))}
    if comment is None:
        env.pop("SLURM_JOB_COMMENT")
    else:
        env["SLURM_JOB_COMMENT"] = comment
    return Call(call.subject, ["alice"], env)


def _no_scontrol(job: str) -> dict[str, str]:
    raise AssertionError("asked scontrol")


def test_a_proven_sweep(tmp_path):
    _sweep_proof(tmp_path)
    logged: list[str] = []
    found = identify(_array_call(), _no_scontrol, tmp_path, logged.append)
    assert isinstance(found, GearSweep) and (found.id, found.count, found.owner.name) == ("rec/1-2", 2, "alice")
    assert logged == []


def test_an_older_slurm_without_the_comment_asks_scontrol(tmp_path):
    _sweep_proof(tmp_path)
    asked = []
    found = identify(_array_call(comment=None), lambda job: asked.append(job) or {"Comment": "gear:rec/1-2:" + TOKEN},
                     tmp_path, print)
    assert isinstance(found, GearSweep) and asked == [_call("Began").job_id]


@pytest.mark.parametrize("comment,why", [
    ("gear:rec/1-2:ffffffffffffffff", "the job's token is not alice's for sweep rec/1-2"),
    ("gear:rec/1-3:" + TOKEN, "alice has no sweep rec/1-3"),        # a range that is not the proof's
    ("gear:rec/2-2:" + TOKEN, "alice has no sweep rec/2-2"),
    ("gear:other/1-2:" + TOKEN, "alice has no sweep other/1-2"),
    ("gear:rec/2-1:" + TOKEN, "names trials 2-1, which is no sweep"),
])
def test_a_claim_the_owners_proof_does_not_hold(tmp_path, comment, why):
    _sweep_proof(tmp_path)
    logged: list[str] = []
    assert identify(_array_call(comment=comment), _no_scontrol, tmp_path, logged.append) is None
    assert any(why in line for line in logged), logged


@pytest.mark.parametrize("comment", [
    "gear:rec/01-2:" + TOKEN, "gear:rec/1-02:" + TOKEN, "gear:rec/1-2x:" + TOKEN, "gear:rec/1--2:" + TOKEN,
    "gear:rec/0-2:" + TOKEN, "gear:Rec/1-2:" + TOKEN, "gear:rec/1-2:" + TOKEN.upper(), "gear:../1-2:" + TOKEN,
    "gear:rec/1:" + TOKEN,            # an execution's comment on an array's mail
    "gear:rec/1-2:" + TOKEN + " x", "gear:rec/1-2", ""])
def test_a_comment_not_strictly_a_sweeps_is_not_read(tmp_path, comment):
    _sweep_proof(tmp_path, name="1-2")
    _sweep_proof(tmp_path, name="01-2")
    logged: list[str] = []
    assert identify(_array_call(comment=comment), _no_scontrol, tmp_path, logged.append) is None


def test_a_sweeps_comment_on_a_single_jobs_mail_is_not_a_sweep(tmp_path):
    _sweep_proof(tmp_path)
    env = {"SLURM_JOB_USER": "alice", "SLURM_JOB_UID": str(_uid("alice")), "SLURM_JOB_ID": "5",
           "SLURM_JOB_COMMENT": "gear:rec/1-2:" + TOKEN, "SLURM_JOB_MAIL_TYPE": "Ended"}
    call = Call("Slurm Job_id=5 Name=x Ended, Run time 00:00:01, COMPLETED, ExitCode 0", ["alice"], env)
    assert identify(call, _no_scontrol, tmp_path, print) is None


def test_mallory_cannot_claim_alices_sweep(tmp_path):
    """mallory's array names alice's real sweep and token: it is proven against mallory's notify/ only."""
    _sweep_proof(tmp_path)
    logged: list[str] = []
    assert identify(_array_call(user="mallory"), _no_scontrol, tmp_path, logged.append) is None
    assert any("mallory has no sweep rec/1-2" in line for line in logged), logged


def test_a_sweep_proof_planted_as_a_symlink_is_not_followed(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(TOKEN + "\n")
    proof = _sweep_proof(tmp_path, user="mallory")
    proof.unlink()
    proof.symlink_to(secret)
    logged: list[str] = []
    assert identify(_array_call(user="mallory"), _no_scontrol, tmp_path, logged.append) is None
    assert any("mallory has no sweep rec/1-2" in line for line in logged), logged


# --- the message ---

def test_the_message_says_which_sweep_how_it_ended_and_what_next(tmp_path):
    sweep = GearSweep("rec", 3, 4, Owner("alice", _uid("alice")))
    call = _array_call("Failed, Mixed, ExitCode [0-1]")
    result = sweep_outcome(call)
    assert sweep_subject(sweep, result) == "gear: sweep rec/3-4 mixed, exit 0-1"
    body = sweep_body(call, sweep, result, Path("/srv/gear"))
    for text in ("Sweep rec/3-4 has ended: its trials did not all end alike", "sweep         rec/3-4 (2 trials)",
                 "status        mixed", "exit codes    0-1", f"{call.job_id} (a job array), partition cpu",
                 "directory     /srv/gear/users/alice/containers/rec/3/sweep", "gear tune show rec/3", "gear status",
                 f"Slurm's message: Slurm Array Summary Job_id={call.job_id}_*"):
        assert text in body, text
    assert "/home/slurmrec" not in body   # the job's own work dir is the owner's to set


# --- gear-mailprog, end to end against a real SMTP server ---

def _run(call: Call) -> None:
    """gear-mailprog as slurmctld runs it for this call, to alice@example.org."""
    assert _mailprog(call.subject, "alice@example.org", {**call.env, "LC_CTYPE": "C.UTF-8"}).returncode == 0


def test_a_completed_sweep_gets_one_useful_email(smtp, gear_env):  # noqa: F811
    _sweep_proof(gear_env["storage"])
    _run(_array_call())
    [(to, msg)] = smtp.wait(1)
    assert to == ["alice@example.org"] and msg["From"] == "gear@example.org"
    assert msg["Subject"] == "gear: sweep rec/1-2 completed, exit 0" and msg["X-Gear-Sweep"] == "rec/1-2"
    assert "X-Gear-Execution" not in msg
    body = msg.get_content()
    assert "Sweep rec/1-2 has ended: every trial completed." in body and "gear tune show rec/1" in body
    assert "sweep=alice:rec/1-2" in _log(gear_env) and "email (completed) to alice@example.org sent" in _log(gear_env)


def test_a_sweep_with_failed_trials_texts_a_user_who_opted_in(smtp, gear_env):  # noqa: F811
    _sweep_proof(gear_env["storage"])
    settings = gear_env["storage"] / "users" / "alice" / "notify" / "settings.json"
    settings.write_text(json.dumps({"sms": "+15551234567"}))
    os.chown(settings, _uid("alice"), -1)
    _run(_array_call("Failed, Mixed, ExitCode [0-1]"))
    messages = smtp.wait(2)
    by_to = {tuple(to): msg for to, msg in messages}
    assert by_to[("alice@example.org",)]["Subject"] == "gear: sweep rec/1-2 mixed, exit 0-1"
    [sms] = [msg for to, msg in messages if to[0].startswith("+15551234567@")]
    assert sms.get_content().strip() == "gear: sweep rec/1-2 mixed, exit 0-1"


def test_a_sweep_that_started_says_so_once_and_sends_no_text(smtp, gear_env):  # noqa: F811
    _sweep_proof(gear_env["storage"])
    _run(_array_call("Began"))
    [(_, msg)] = smtp.wait(1)
    assert msg["Subject"] == "gear: sweep rec/1-2 started (2 trials)"
    assert "its first trial is running" in msg.get_content()


def test_a_forged_sweep_gets_slurms_message(smtp, gear_env):  # noqa: F811
    """mallory's array claiming alice's sweep, token and all: Slurm's plain message, and the log says why."""
    _sweep_proof(gear_env["storage"])
    forged = _array_call(user="mallory")
    _run(forged)
    [(to, msg)] = smtp.wait(1)
    assert to == ["alice@example.org"]
    assert msg["Subject"] == forged.subject and msg.get_content().strip() == ""
    assert "X-Gear-Sweep" not in msg
    assert "not gear's mail: mallory has no sweep rec/1-2" in _log(gear_env)


def test_gears_mail_about_a_sweep_goes_only_to_the_owners_address(smtp, gear_env):  # noqa: F811
    _sweep_proof(gear_env["storage"], user="mallory")
    call = _array_call(user="mallory", comment="gear:rec/1-2:" + TOKEN)
    _run(call)
    [(to, msg)] = smtp.wait(1)
    assert to == ["alice@example.org"] and msg["Subject"] == call.subject
    assert "alice@example.org is not mallory's address" in _log(gear_env)


# --- the submission's side: mail options on the array, the proof, all or nothing ---

def _submit_sweep(gear_env, count: int = 3):
    from gear_hpc.executions import lifecycle, sweep
    from gear_hpc.site import loading as site
    from gear_hpc.storage.disk import UserStorage

    loaded = site.load()
    storage = UserStorage(loaded.storage_root)
    request = sweep.SweepRequest(lifecycle.RunRequest(command=["x"], code=gear_env["code"], container="sw"),
                                 [{"a": i} for i in range(count)])
    return sweep.submit(loaded, storage, request), storage


def test_a_sweep_carries_its_owners_mail_options_and_leaves_its_proof(gear_env, fake_slurm):
    fake_slurm("sbatch", "echo 4545")
    from gear_hpc.notify import settings as notify

    storage = _submit_sweep(gear_env)[1]
    notify.save_settings(storage, notify.Settings(email="a@lab.example.org", events=("begin", "end", "fail")))
    result, storage = _submit_sweep(gear_env, 2)
    assert (result.first, result.count) == (4, 2)
    sweep_dir = storage.container_dir("sw") / "4" / "sweep"
    text = (sweep_dir / "job.sh").read_text()
    assert "#SBATCH --mail-type=BEGIN,END,FAIL\n#SBATCH --mail-user=a@lab.example.org\n" in text
    [comment] = [line for line in text.splitlines() if line.startswith("#SBATCH --comment=")]
    token = comment.rpartition(":")[2]
    assert notify.sweep_proof_path(storage, "sw", 4, 5).read_text() == token + "\n"
    assert notify.sweep_proof_path(storage, "sw", 1, 3).is_file()
    # The trials' own scripts carry no mail: Slurm would mail per task only with ARRAY_TASKS.
    assert "--mail-type" not in (sweep_dir / "task.sh").read_text()


def test_a_site_with_mail_off_submits_a_sweep_without_mail_or_proof(gear_env, fake_slurm):
    fake_slurm("sbatch", "echo 4646")
    _set_mail(gear_env["site"], enabled=False)
    result, storage = _submit_sweep(gear_env)
    assert "--mail" not in (storage.container_dir("sw") / "1" / "sweep" / "job.sh").read_text()
    assert not (storage.notify_dir / "sweeps").exists()


def test_a_sweep_slurm_refuses_leaves_no_proof(gear_env, fake_slurm):
    from gear_hpc.base.errors import SlurmError

    fake_slurm("sbatch", "echo 'sbatch: error: Batch job submission failed: Invalid job array specification' >&2; exit 1")
    with pytest.raises(SlurmError):
        _submit_sweep(gear_env)
    user_dir = next((gear_env["storage"] / "users").iterdir())
    assert not (user_dir / "notify" / "sweeps").exists()
    assert not (user_dir / "containers" / "sw").exists()


def test_deleting_a_container_takes_its_sweeps_proofs(gear_env, fake_slurm):
    fake_slurm("sbatch", "echo 4747")
    from gear_hpc.notify import settings as notify

    _, storage = _submit_sweep(gear_env)
    notify.forget_container(storage, "sw")
    assert not (storage.notify_dir / "sweeps" / "sw").exists()
