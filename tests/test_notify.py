"""Notifications without a cluster: settings, validation, the batch script's
mail lines, the site's `mail:` section, and gear-mailprog against a real SMTP
server (aiosmtpd) on 127.0.0.1, called the way slurmctld calls it (argv and
the SLURM_JOB_* environment seen on the local cluster's Slurm 24.11)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from email import message_from_bytes
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml

from gear_hpc.base import names
from gear_hpc.base.errors import GearError, SiteConfigError, UsageError
from gear_hpc.executions.lifecycle import job_script
from gear_hpc.notify import settings as notify
from gear_hpc.site import loading as site
from gear_hpc.storage.disk import UserStorage
from helpers import REPO, gear, write_executable

aiosmtpd = pytest.importorskip("aiosmtpd.controller")


# --- validation ---

@pytest.mark.parametrize("address", ["alice@example.org", "a.b+tag@lab.example.co.uk", "x_y-z@a1.io"])
def test_good_email_addresses(address):
    assert names.check_email(address) == address


@pytest.mark.parametrize("address", [
    "", "alice", "alice@", "@example.org", "a@b@example.org", "alice@example", "a b@example.org",
    "alice@example.org\nBcc: evil@example.org", "alice@example.org\r", "al\x00ice@example.org",
    "alice@example.org,evil@example.org", '"alice"@example.org', "alice'@example.org", ".alice@example.org",
    "al..ice@example.org", "alice@-example.org", "alice@example.123", "alïce@example.org", "alice@exa_mple.org",
    "a%b@example.org", "x" * 65 + "@example.org"])
def test_bad_email_addresses(address):
    with pytest.raises(UsageError):
        names.check_email(address)


@pytest.mark.parametrize("text,number", [("+15551234567", "+15551234567"), ("+1 (555) 123-4567", "+15551234567"),
                                         ("+44.20.7946.0958", "+442079460958")])
def test_good_phone_numbers(text, number):
    assert names.check_phone(text) == number


@pytest.mark.parametrize("text", ["", "5551234567", "+0123456789", "+1555", "+1234567890123456", "+1555x1234567",
                                  "+15551234567\n", "+1555;rm -rf", "++15551234567"])
def test_bad_phone_numbers(text):
    with pytest.raises(UsageError):
        names.check_phone(text)


def test_events_always_include_end_and_fail():
    assert notify.parse_events("begin") == ("begin", "end", "fail")
    assert notify.parse_events("end") == ("end", "fail")
    assert notify.parse_events("FAIL, begin ,end") == ("begin", "end", "fail")
    with pytest.raises(UsageError, match="unknown event"):
        notify.parse_events("begin,sometimes")


# --- settings file ---

def _storage(user: str = "alice") -> UserStorage:
    return UserStorage(site.load().storage_root, user)


def test_settings_are_saved_privately_and_atomically(gear_env):
    storage = _storage()
    path = notify.save_settings(storage, notify.Settings(email="a@example.org", sms="+15551234567",
                                                         events=("begin", "end", "fail")))
    assert path == storage.root / "notify" / "settings.json"
    # A user directory the admin did not make setgid: its group may be a shared one, so owner-only.
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".gear")] == []
    assert notify.load_settings(storage) == notify.Settings("a@example.org", "+15551234567", ("begin", "end", "fail"))


def test_under_a_setgid_user_directory_notify_opens_to_its_group_only(gear_env):
    """The admin's layout: users/<user> 2710 with SlurmUser's group; notify/ is what that group reads."""
    storage = _storage()
    storage.root.mkdir(mode=0o700)
    os.chmod(storage.root, 0o2710)
    path = notify.save_settings(storage, notify.Settings(sms="+15551234567"))
    proof = notify.register_execution(storage, "mnist", 3, "0123456789abcdef")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and stat.S_IMODE(proof.stat().st_mode) == 0o640
    assert stat.S_IMODE(storage.notify_dir.stat().st_mode) & 0o777 == 0o750
    # Nothing else of the user's storage opens to the group.
    for private in (storage.root / "containers", storage.root / "datasets"):
        assert stat.S_IMODE(private.stat().st_mode) & 0o077 == 0


def test_settings_of_the_old_place_are_read_then_moved(gear_env):
    storage = _storage()
    storage.ensure()
    (storage.root / "notify.json").write_text(json.dumps({"email": "old@example.org"}))
    assert notify.load_settings(storage).email == "old@example.org"
    notify.save_settings(storage, notify.Settings(email="new@example.org"))
    assert not (storage.root / "notify.json").exists()
    assert notify.load_settings(storage).email == "new@example.org"


def test_a_world_writable_users_directory_is_refused(gear_env):
    """The old 1777 layout lets anyone create another user's directory first (squatting)."""
    users = gear_env["storage"] / "users"
    os.chmod(users, 0o1777)
    with pytest.raises(GearError, match="writable by every user.*docs/admin.md"):
        _storage().ensure()
    assert not (users / "alice").exists()


def test_missing_settings_are_the_defaults(gear_env):
    assert notify.load_settings(_storage()) == notify.Settings(None, None, ("end", "fail"))


def test_a_hand_edited_file_is_validated_again(gear_env):
    storage = _storage()
    storage.ensure()
    (storage.root / "notify.json").write_text(json.dumps({"email": "a@example.org\n#SBATCH --uid=0"}))
    with pytest.raises(GearError, match="not valid"):
        notify.load_settings(storage)
    # …and a submission falls back to the site's defaults rather than failing or injecting.
    script = _script()
    assert "#SBATCH --mail-user=alice@example.org" in script
    assert "--uid" not in script


# --- the batch script ---

def _script(user: str = "alice") -> str:
    loaded = site.load()
    return job_script(loaded, Path(f"/srv/gear/users/{user}/containers/mnist/3"), "mnist", 3, "0123456789abcdef",
                      loaded.compute_type("cpu-small"), loaded.image("python"), ["python3", "train.py"], user)


def _sbatch_lines(script: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith("#SBATCH --mail") or line.startswith("#SBATCH --extra")]


def test_every_execution_mails_its_owner_on_end_and_fail(gear_env):
    script = _script()
    assert _sbatch_lines(script) == ["#SBATCH --mail-type=END,FAIL", "#SBATCH --mail-user=alice@example.org"]
    # The outcome reaches gear-mailprog through the job's Extra field.
    assert "scontrol update" in script and "\"Extra=\"gear\";status=$1;exit=$2;saved=$3" in script


def test_user_settings_reach_the_sbatch_lines_but_never_the_phone_number(gear_env):
    notify.save_settings(_storage(), notify.Settings(email="alice@lab.example.org", sms="+15551234567",
                                                     events=("begin", "end", "fail")))
    script = _script()
    assert _sbatch_lines(script) == ["#SBATCH --mail-type=BEGIN,END,FAIL",
                                     "#SBATCH --mail-user=alice@lab.example.org"]
    # Job records are shown to others where PrivateData=jobs is not set: no number travels in one.
    assert "15551234567" not in script


def _set_mail(site_dir: Path, **changes) -> None:
    # Never the real /var/spool/gear-mailprog: kept mail goes beside the test's site.
    changes.setdefault("state_dir", str(site_dir.parent / "mailprog-state"))
    path = site_dir / "site.yaml"
    data = yaml.safe_load(path.read_text())
    mail = dict(data.get("mail") or {})
    for key, value in changes.items():
        if value is None:
            mail.pop(key, None)
        else:
            mail[key] = value
    data["mail"] = mail
    path.write_text(yaml.safe_dump(data))


def test_a_site_with_mail_off_submits_without_mail(gear_env):
    _set_mail(gear_env["site"], enabled=False)
    script = _script()
    assert _sbatch_lines(script) == []
    assert "report() { :; }" in script and "scontrol" not in script
    subprocess.run(["bash", "-n", "-c", script], check=True)


def test_a_site_can_keep_gear_out_of_the_extra_field(gear_env):
    _set_mail(gear_env["site"], job_extra=False)
    notify.save_settings(_storage(), notify.Settings(sms="+15551234567"))
    script = _script()
    assert _sbatch_lines(script) == ["#SBATCH --mail-type=END,FAIL", "#SBATCH --mail-user=alice@example.org"]
    assert "scontrol" not in script


def test_the_report_function_runs_and_never_fails(gear_env, tmp_path):
    """The script's report (set_job_extra, templates/lib/report.sh) with a scontrol that fails: the job
    goes on, the size is measured."""
    from test_render import _source

    home = tmp_path / "home"
    home.mkdir()
    (home / "a.bin").write_bytes(b"x" * 1000)
    (home / "sub").mkdir()
    (home / "sub" / "b.txt").write_text("hello")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    write_executable(bin_dir / "scontrol", f"#!/bin/bash\nprintf '%s\\n' \"$@\" > {calls}\nexit 1\n")
    # What the rendered report() passes for `report completed 0 true`.
    assert 'set_job_extra "Extra="gear";status=$1;exit=$2;saved=$3"' in _script()
    result = subprocess.run(["bash", "-c", f"set -u\nhome={home}\n" + _source("report.sh")
                             + "set_job_extra 'Extra=gear;status=completed;exit=0;saved=true'\necho done"],
                            capture_output=True, text=True, env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                                                                 "SLURM_JOB_ID": "42"})
    assert result.returncode == 0 and result.stdout == "done\n"
    # The size is what the saved directory holds on disk, as `du` counts it.
    from gear_hpc.storage.disk import usage

    assert calls.read_text().splitlines() == ["update", "JobId=42",
                                              f"Extra=gear;status=completed;exit=0;saved=true;size={usage(home).disk}"]


# --- the site's mail section ---

@pytest.mark.parametrize("changes,key", [
    ({"address": "everyone@example.org"}, "mail.address"),
    ({"address": "{user}@example"}, "mail.address"),
    ({"address": "{name}@example.org"}, "mail.address"),
    ({"address": "{user}@example.org\nBcc: x@example.org"}, "mail.address"),
    ({"sender": "gear at example.org"}, "mail.sender"),
    ({"smtp_port": 70000}, "mail.smtp_port"),
    ({"timeout": 0}, "mail.timeout"),
    ({"sms_email": "sms@example.org"}, "mail.sms_email"),
    ({"sms_http": "http://127.0.0.1:9/sms"}, "mail.sms_http"),
    ({"log_file": "mail.log"}, "mail.log_file"),
    ({"enabled": "yes"}, "mail.enabled"),
    ({"colour": "blue"}, "mail.colour"),
])
def test_bad_mail_settings_name_file_and_key(gear_env, changes, key):
    _set_mail(gear_env["site"], **changes)
    with pytest.raises(SiteConfigError) as info:
        site.load()
    assert str(gear_env["site"] / "site.yaml") in str(info.value) and key in str(info.value)


def test_mail_section_is_optional_and_off_when_absent(gear_env):
    path = gear_env["site"] / "site.yaml"
    data = yaml.safe_load(path.read_text())
    del data["mail"]
    path.write_text(yaml.safe_dump(data))
    assert site.load().mail.enabled is False
    assert site.load_mail(gear_env["site"]).enabled is False


def test_example_site_mail_section():
    mail = site.load_mail(REPO / "site-config")
    assert mail.enabled and mail.address == "{user}@example.org" and mail.smtp_port == 2525
    assert mail.sms_email == "{number}@sms.example.org" and mail.log_file == "/var/log/gear/mail.log"


# --- gear notify ---

def test_gear_notify_shows_and_changes_settings(gear_env):
    result = gear("notify", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["email_is_default"] and shown["on"] == ["end", "fail"] and shown["sms"] is None
    result = gear("notify", "--email", "me@lab.example.org", "--sms", "+1 555 123 4567", "--on", "begin")
    assert result.returncode == 0, result.stderr
    assert "end and fail added" in result.stderr
    assert "me@lab.example.org" in result.stdout and "+15551234567" in result.stdout
    shown = json.loads(gear("notify", "--json").stdout)
    assert shown == {"email": "me@lab.example.org", "email_is_default": False, "sms": "+15551234567",
                     "on": ["begin", "end", "fail"], "mail_enabled": True, "sms_available": True}
    assert json.loads(gear("notify", "--no-sms", "--email", "default", "--json").stdout)["sms"] is None


@pytest.mark.parametrize("args,message", [
    (["--email", "alice@example.org\nBcc: evil@example.org"], "invalid email address"),
    (["--email", "not-an-address"], "invalid email address"),
    (["--sms", "5551234"], "invalid phone number"),
    (["--sms", "+15551234567", "--no-sms"], "cannot be used together"),
    (["--on", "never"], "unknown event"),
])
def test_gear_notify_refuses_bad_input(gear_env, args, message):
    before = gear("notify", "--json").stdout
    result = gear("notify", *args)
    assert result.returncode == 2 and message in result.stderr
    assert gear("notify", "--json").stdout == before


def test_gear_notify_says_when_the_site_has_no_sms(gear_env):
    _set_mail(gear_env["site"], sms_email=None)
    result = gear("notify", "--sms", "+15551234567")
    assert result.returncode == 1 and "sends no text messages" in result.stderr


def test_gear_notify_on_a_site_with_mail_off(gear_env):
    _set_mail(gear_env["site"], enabled=False)
    result = gear("notify")
    assert result.returncode == 0 and "switched mail off" in result.stderr


# --- gear-mailprog against a real SMTP server ---

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """aiosmtpd handler keeping (envelope recipients, parsed message); can refuse."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], object]] = []
        self.refuse = False

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse:
            return "550 5.7.1 relaying denied"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((list(envelope.rcpt_tos),
                              message_from_bytes(envelope.original_content, policy=default_policy)))
        return "250 OK"

    def wait(self, count: int, timeout: float = 10) -> list:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.messages


@pytest.fixture
def smtp(gear_env):
    inbox = Inbox()
    port = _free_port()
    controller = aiosmtpd.Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    _set_mail(gear_env["site"], smtp_host="127.0.0.1", smtp_port=port, log_file=str(gear_env["tmp"] / "mail.log"),
              timeout=3, state_dir=str(gear_env["tmp"] / "mailprog-state"))
    _gear_proof(gear_env)   # alice really submitted mnist/3 (the execution most tests mail about)
    yield inbox
    controller.stop()


TOKEN = "0123456789abcdef"


def _uid(user: str) -> int:
    """The uid the tests give `user` (the host's, where the user exists)."""
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return {"alice": 1001, "mallory": 1066}[user]


def _gear_proof(gear_env, user="alice", container="mnist", number=3, token=TOKEN, settings=None) -> Path:
    """What `gear run` leaves for gear-mailprog in the owner's notify/: the token (and settings)."""
    root = gear_env["storage"] / "users" / user
    notify_dir = root / "notify"
    path = notify_dir / "executions" / container / str(number)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")
    if settings is not None:
        (notify_dir / "settings.json").write_text(json.dumps(settings))
    for entry in [root, *root.rglob("*")]:
        os.chown(entry, _uid(user), -1)
    return path


def _slurm_env(job_id="1234", name="gear-mnist-3", state="COMPLETED", mail_type="Ended", exit_code="0",
               comment="gear:mnist/3:" + TOKEN, extra="gear;status=completed;exit=0;saved=true;size=4096",
               user="alice"):
    """What Slurm 24.11's slurmctld gave MailProg on the local cluster (no PATH, no HOME)."""
    env = {"SLURM_JOB_ID": job_id, "SLURM_JOBID": job_id, "SLURM_JOB_USER": user, "SLURM_JOB_UID": str(_uid(user)),
           "SLURM_JOB_NAME": name, "SLURM_JOB_STATE": state, "SLURM_JOB_MAIL_TYPE": mail_type,
           "SLURM_JOB_PARTITION": "gpu", "SLURM_CLUSTER_NAME": "gear-dev",
           "SLURM_JOB_WORK_DIR": "/srv/gear/users/alice/containers/mnist/3", "LC_CTYPE": "C.UTF-8"}
    if comment is not None:
        env["SLURM_JOB_COMMENT"] = comment
        env["SLURM_JOB_EXTRA"] = extra or ""
    if mail_type in ("Ended", "Failed"):
        env.update(SLURM_JOB_RUN_TIME="00:00:12", SLURM_JOB_EXIT_CODE_MAX=exit_code)
    if mail_type == "Began":
        env["SLURM_JOB_QUEUED_TIME"] = "00:00:01"
    return env


def _mailprog(subject: str, recipient: str, env: dict[str, str], foreground: bool = True,
              timeout: float = 30) -> subprocess.CompletedProcess[str]:
    full = {**env, "GEAR_SITE_CONFIG": os.environ["GEAR_SITE_CONFIG"], "PYTHONPATH": str(REPO),
            "GEAR_STORAGE_ROOT": os.environ["GEAR_STORAGE_ROOT"]}
    if foreground:
        full["GEAR_MAILPROG_FOREGROUND"] = "1"
    return subprocess.run([sys.executable, "-m", "gear_hpc.notify.mailprog", "-s", subject, recipient],
                          capture_output=True, text=True, env=full, timeout=timeout, cwd="/")


def _log(gear_env) -> str:
    path = gear_env["tmp"] / "mail.log"
    return path.read_text() if path.exists() else ""


ENDED = "Slurm Job_id=1234 Name=gear-mnist-3 Ended, Run time 00:00:12, COMPLETED, ExitCode 0"
FAILED = "Slurm Job_id=1234 Name=gear-mnist-3 Failed, Run time 00:00:12, FAILED, ExitCode 3"


def test_completed_execution_gets_a_useful_email(smtp, gear_env):
    result = _mailprog(ENDED, "alice@example.org", _slurm_env())
    assert result.returncode == 0, result.stderr
    [(to, msg)] = smtp.wait(1)
    assert to == ["alice@example.org"]
    assert msg["Subject"] == "gear: mnist/3 completed, exit 0"
    assert msg["From"] == "gear@example.org" and msg["X-Gear-Execution"] == "mnist/3"
    assert msg["Auto-Submitted"] == "auto-generated"
    body = msg.get_content()
    for text in ("Execution mnist/3 has ended: completed.", "container     mnist", "exit code     0",
                 "run time      00:00:12", "size saved    4.0 KiB", "1234, partition gpu, state COMPLETED",
                 "gear logs mnist/3", "gear show mnist/3", "gear continue mnist/3", ENDED):
        assert text in body, text
    assert "email (completed) to alice@example.org sent" in _log(gear_env)


def test_failed_execution_with_sms_by_email_gateway(smtp, gear_env):
    _gear_proof(gear_env, settings={"sms": "+15551234567"})
    env = _slurm_env(state="FAILED", mail_type="Failed", exit_code="3",
                     extra="gear;status=failed;exit=3;saved=true;size=10")
    assert _mailprog(FAILED, "alice@example.org", env).returncode == 0
    messages = smtp.wait(2)
    assert len(messages) == 2
    (to, mail), (sms_to, sms) = messages
    assert to == ["alice@example.org"] and mail["Subject"] == "gear: mnist/3 failed, exit 3"
    assert "exit code     3" in mail.get_content()
    assert sms_to == ["+15551234567@sms.example.org"]
    assert sms.get_content().strip() == "gear: mnist/3 failed, exit 3, run 00:00:12"
    assert "sms to +15551234567 sent" in _log(gear_env)


def test_no_sms_for_a_user_who_did_not_opt_in(smtp, gear_env):
    env = _slurm_env(state="FAILED", mail_type="Failed", exit_code="3", extra="gear;status=failed;exit=3;saved=true")
    _mailprog(FAILED, "alice@example.org", env)
    time.sleep(0.5)
    assert [to for to, _ in smtp.wait(1)] == [["alice@example.org"]]
    assert "sms" not in _log(gear_env)


def test_no_sms_when_the_execution_begins(smtp, gear_env):
    _gear_proof(gear_env, settings={"sms": "+15551234567", "on": ["begin", "end", "fail"]})
    env = _slurm_env(state="RUNNING", mail_type="Began", extra="gear")
    _mailprog("Slurm Job_id=1234 Name=gear-mnist-3 Began, Queued time 00:00:01", "alice@example.org", env)
    time.sleep(0.5)
    [(to, msg)] = smtp.wait(1)
    assert msg["Subject"] == "gear: mnist/3 started"
    assert "queued for    00:00:01" in msg.get_content() and "gear stop mnist/3" in msg.get_content()


def test_sms_through_an_http_gateway(smtp, gear_env):
    received = []

    class Gateway(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(202)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _set_mail(gear_env["site"], sms_email=None, sms_http=f"http://127.0.0.1:{server.server_port}/sms")
        _gear_proof(gear_env, settings={"sms": "+15551234567"})
        env = _slurm_env(extra="gear;status=completed;exit=0;saved=true;size=1")
        assert _mailprog(ENDED, "alice@example.org", env).returncode == 0
    finally:
        server.shutdown()
    assert received == [{"to": "+15551234567", "text": "gear: mnist/3 completed, exit 0, run 00:00:12"}]
    assert len(smtp.wait(1)) == 1


def test_a_stopped_execution_that_did_not_report(smtp, gear_env):
    env = _slurm_env(state="CANCELLED", exit_code="0", extra="gear")
    _mailprog("Slurm Job_id=1234 Name=gear-mnist-3 Ended, Run time 00:00:12, CANCELLED, ExitCode 0",
              "alice@example.org", env)
    [(_, msg)] = smtp.wait(1)
    assert msg["Subject"] == "gear: mnist/3 terminated"  # Slurm's "ExitCode 0" at a cancel means nothing
    body = msg.get_content()
    assert "exit code     unknown" in body and "size saved" not in body
    assert "It was stopped. It saves its working directory as it exits" in body
    assert "`gear show mnist/3` says whether the save completed" in body


def test_a_job_killed_before_it_reported(smtp, gear_env):
    env = _slurm_env(state="OUT_OF_MEMORY", mail_type="Failed", exit_code="0", extra="gear")
    _mailprog("Slurm Job_id=1234 Name=gear-mnist-3 Failed, Run time 00:00:12, OUT_OF_MEMORY, ExitCode 0",
              "alice@example.org", env)
    [(_, msg)] = smtp.wait(1)
    assert msg["Subject"] == "gear: mnist/3 failed, exit 0"
    assert "state OUT_OF_MEMORY" in msg.get_content()
    assert "ended without reporting what it saved: `gear show mnist/3` says what was kept" in msg.get_content()


def test_a_job_gear_did_not_submit_gets_slurms_message_unchanged(smtp, gear_env):
    subject = "Slurm Job_id=77 Name=wrap Ended, Run time 00:00:01, COMPLETED, ExitCode 0"
    _mailprog(subject, "bob", _slurm_env(job_id="77", name="wrap", comment=""))
    [(to, msg)] = smtp.wait(1)
    assert to == ["bob@example.org"]  # a bare user name goes through the site's rule
    assert msg["Subject"] == subject and msg.get_content().strip() == ""
    assert "X-Gear-Execution" not in msg


@pytest.mark.parametrize("subject", [
    "Slurm Array Summary Job_id=5_* (5) Name=gear-mnist-3 Ended, COMPLETED, ExitCode [0-0]",
    "Something new from a future Slurm",
])
def test_a_subject_of_unknown_form_is_passed_on_unchanged(smtp, gear_env, subject):
    _mailprog(subject, "alice@example.org", _slurm_env())
    [(_, msg)] = smtp.wait(1)
    assert msg["Subject"] == subject and msg.get_content().strip() == ""


def test_no_newline_can_reach_a_header(smtp, gear_env):
    subject = "Slurm Job_id=78 Name=x\nBcc: evil@example.org\r\nX-Evil: 1 Ended, Run time 00:00:01, COMPLETED, ExitCode 0"
    env = _slurm_env(job_id="78", name="x\nBcc: evil@example.org", comment="gear:mnist/3:0123\nBcc: evil@example.org")
    assert _mailprog(subject, "alice@example.org", env).returncode == 0
    assert _mailprog(ENDED, "alice@example.org\nBcc: evil@example.org", _slurm_env()).returncode == 0
    time.sleep(0.5)
    [(to, msg)] = smtp.wait(1)
    assert to == ["alice@example.org"]
    assert msg["Bcc"] is None and msg["X-Evil"] is None and "\n" not in msg["Subject"]
    assert "dropped recipient" in _log(gear_env)


def test_smtp_refusing(smtp, gear_env):
    smtp.refuse = True
    result = _mailprog(ENDED, "alice@example.org", _slurm_env())
    assert result.returncode == 0
    assert "NOT sent: SMTPRecipientsRefused" in _log(gear_env)


def test_smtp_down(gear_env):
    _set_mail(gear_env["site"], smtp_host="127.0.0.1", smtp_port=_free_port(),
              log_file=str(gear_env["tmp"] / "mail.log"))
    started = time.monotonic()
    assert _mailprog(ENDED, "alice@example.org", _slurm_env()).returncode == 0
    assert time.monotonic() - started < 10
    assert "NOT sent: ConnectionRefusedError" in _log(gear_env)


# --- mail that could not be delivered is kept and retried ---

def _spool(gear_env) -> list[Path]:
    directory = gear_env["tmp"] / "mailprog-state" / "spool"
    return sorted(directory.glob("*.json")) if directory.exists() else []


def test_mail_the_server_could_not_take_is_kept_and_sent_when_it_is_back(gear_env):
    """SMTP down: the email is kept (0600, SlurmUser's state_dir); the next call, once it is due, sends it."""
    from gear_hpc.notify import spool as mailspool
    from gear_hpc.notify.sending import send_entry
    from gear_hpc.site.loading import load_mail

    port = _free_port()
    _set_mail(gear_env["site"], smtp_host="127.0.0.1", smtp_port=port, log_file=str(gear_env["tmp"] / "mail.log"),
              state_dir=str(gear_env["tmp"] / "mailprog-state"), timeout=3)
    _gear_proof(gear_env)
    assert _mailprog(ENDED, "alice@example.org", _slurm_env()).returncode == 0
    assert "NOT sent: ConnectionRefusedError" in _log(gear_env) and "kept to retry for 24 h" in _log(gear_env)
    [kept] = _spool(gear_env)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600

    inbox = Inbox()
    controller = aiosmtpd.Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        lines: list[str] = []
        # Not due yet: nothing is tried.
        assert mailspool.Spool(gear_env["tmp"] / "mailprog-state").flush(
            lambda e: send_entry(load_mail(), e), lines.append) is not None
        assert inbox.messages == [] and _spool(gear_env) == [kept]
        # Due (the first retry comes 5 s later): sent whole, and gone from the spool.
        mailspool.Spool(gear_env["tmp"] / "mailprog-state").flush(
            lambda e: send_entry(load_mail(), e), lines.append, now=time.time() + 6)
        [(to, msg)] = inbox.wait(1)
    finally:
        controller.stop()
    assert to == ["alice@example.org"] and msg["Subject"] == "gear: mnist/3 completed, exit 0"
    assert "size saved    4.0 KiB" in msg.get_content()
    assert _spool(gear_env) == [] and "sent on try 2" in lines[-1]


def test_a_detached_mailprog_retries_until_the_server_is_back(gear_env):
    """As slurmctld runs it: the call returns at once, and its child sends once the server answers."""
    port = _free_port()
    _set_mail(gear_env["site"], smtp_host="127.0.0.1", smtp_port=port, log_file=str(gear_env["tmp"] / "mail.log"),
              state_dir=str(gear_env["tmp"] / "mailprog-state"), timeout=3)
    _gear_proof(gear_env)
    started = time.monotonic()
    assert _mailprog(ENDED, "alice@example.org", _slurm_env(), foreground=False).returncode == 0
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 15
    while "kept to retry" not in _log(gear_env) and time.monotonic() < deadline:
        time.sleep(0.1)
    inbox = Inbox()
    controller = aiosmtpd.Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        [(to, msg)] = inbox.wait(1, timeout=30)
    finally:
        controller.stop()
    assert msg["Subject"] == "gear: mnist/3 completed, exit 0"
    deadline = time.monotonic() + 5
    while _spool(gear_env) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _spool(gear_env) == []


def test_kept_mail_is_given_up_after_a_day_and_a_refusal_is_not_kept(gear_env):
    import smtplib

    from gear_hpc.notify import spool as mailspool

    spool = mailspool.Spool(gear_env["tmp"] / "state")
    spool.keep({"kind": "email", "what": "email (failed)", "to": ["alice@example.org"], "raw": ""}, now=1000.0)
    lines: list[str] = []
    spool.flush(lambda e: None, lines.append, now=1000.0 + mailspool.KEEP_SECONDS + 1)
    assert spool.entries() == [] and "given up: not delivered in 24 h" in lines[-1]

    spool.keep({"kind": "email", "what": "email (failed)", "to": ["alice@example.org"], "raw": ""}, now=1000.0)

    def refused(entry):
        raise smtplib.SMTPRecipientsRefused({"alice@example.org": (550, b"no such user")})
    spool.flush(refused, lines.append, now=1010.0)
    assert spool.entries() == [] and "NOT sent, given up" in lines[-1]
    assert not mailspool.is_temporary(smtplib.SMTPRecipientsRefused({"a@b.org": (550, b"x")}))
    assert mailspool.is_temporary(smtplib.SMTPRecipientsRefused({"a@b.org": (451, b"try later")}))
    assert mailspool.is_temporary(ConnectionRefusedError())


def test_a_hanging_smtp_server_never_holds_up_slurmctld(gear_env):
    """Detached (as slurmctld runs it): the call returns at once; the child gives up after the timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        _set_mail(gear_env["site"], smtp_host="127.0.0.1", smtp_port=listener.getsockname()[1], timeout=2,
                  log_file=str(gear_env["tmp"] / "mail.log"))
        started = time.monotonic()
        # stdout/stderr are pipes, as under slurmscriptd: returning means the child holds none of them.
        result = _mailprog(ENDED, "alice@example.org", _slurm_env(), foreground=False)
        assert result.returncode == 0 and time.monotonic() - started < 5
        deadline = time.monotonic() + 15
        while "NOT sent" not in _log(gear_env) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "NOT sent: " in _log(gear_env) and "timed out" in _log(gear_env)
    finally:
        listener.close()
        # The child stays to retry what it kept; with nothing kept it leaves at its next look.
        shutil.rmtree(gear_env["tmp"] / "mailprog-state" / "spool", ignore_errors=True)


def test_a_site_with_mail_switched_off(smtp, gear_env):
    _set_mail(gear_env["site"], enabled=False)
    assert _mailprog(ENDED, "alice@example.org", _slurm_env()).returncode == 0
    time.sleep(0.3)
    assert smtp.messages == []
    assert "mail is switched off" in _log(gear_env)


def test_a_broken_site_configuration_still_exits_0(gear_env):
    (gear_env["site"] / "site.yaml").write_text("mail: [not, a, mapping]\n")
    result = _mailprog(ENDED, "alice@example.org", _slurm_env())
    assert result.returncode == 0 and "mail: expected a mapping" in result.stderr


# --- a hostile neighbour: mallory's jobs must not make gear-mailprog speak for gear ---

FORGED_WORKDIR = "/home/mallory/ACTION REQUIRED: log in at https://evil.example.com/reset"


def _forged_env(**changes) -> dict[str, str]:
    """mallory's own job dressed as victim alice's execution: name, comment, Extra and work dir are hers to set."""
    env = _slurm_env(user="mallory", state="COMPLETED", extra="gear;sms=+15550001111;status=failed;exit=3;saved=false;size=123")
    env["SLURM_JOB_WORK_DIR"] = FORGED_WORKDIR
    env.update(changes)
    return env


def _assert_plain(msg, subject: str) -> None:
    assert msg["Subject"] == subject and msg.get_content().strip() == ""
    assert "X-Gear-Execution" not in msg


def test_a_job_claiming_another_users_execution_gets_slurms_message(smtp, gear_env):
    """The audit's forged mail: mallory's job names alice's real mnist/3 and its token (seen in squeue)."""
    assert _mailprog(ENDED, "alice@example.org", _forged_env()).returncode == 0
    [(to, msg)] = smtp.wait(1)
    assert to == ["alice@example.org"]
    _assert_plain(msg, ENDED)
    assert "evil.example.com" not in msg.as_string() and "15550001111" not in msg.as_string()
    assert "not gear's mail: mallory has no execution mnist/3" in _log(gear_env)


def test_a_claim_without_the_owners_token_gets_slurms_message(smtp, gear_env):
    """alice's own job (or anyone's with her uid) must carry the token her gear run left."""
    _mailprog(ENDED, "alice@example.org", _slurm_env(comment="gear:mnist/3:ffffffffffffffff"))
    [(_, msg)] = smtp.wait(1)
    _assert_plain(msg, ENDED)
    assert "the job's token is not alice's" in _log(gear_env)


def test_a_proof_planted_as_a_symlink_is_not_followed(smtp, gear_env):
    """mallory's own notify/ pointing at a file SlurmUser can read must not be read through."""
    secret = gear_env["tmp"] / "slurm-secret"
    secret.write_text(TOKEN + "\n")
    proof = _gear_proof(gear_env, user="mallory")
    proof.unlink()
    proof.symlink_to(secret)
    _mailprog(ENDED, "mallory@example.org", _slurm_env(user="mallory"))
    [(_, msg)] = smtp.wait(1)
    _assert_plain(msg, ENDED)
    assert "not gear's mail: mallory has no execution mnist/3" in _log(gear_env)


def test_gears_mail_goes_only_to_the_owners_own_address(smtp, gear_env):
    """mallory's real execution, with --mail-user=alice: alice gets Slurm's message, not gear's."""
    _gear_proof(gear_env, user="mallory")
    _mailprog(ENDED, "alice@example.org", _slurm_env(user="mallory"))
    [(to, msg)] = smtp.wait(1)
    assert to == ["alice@example.org"]
    _assert_plain(msg, ENDED)
    assert "alice@example.org is not mallory's address" in _log(gear_env)


def test_the_sms_goes_only_to_the_owners_registered_number(smtp, gear_env):
    """A number in the job's Extra is ignored; the owner's settings decide."""
    env = _slurm_env(state="FAILED", mail_type="Failed", exit_code="3",
                     extra="gear;sms=+15550001111;status=failed;exit=3;saved=true;size=10")
    _mailprog(FAILED, "alice@example.org", env)
    time.sleep(0.5)
    assert [to for to, _ in smtp.wait(1)] == [["alice@example.org"]]
    assert "15550001111" not in _log(gear_env)


def test_texts_are_capped_per_user_per_day(smtp, gear_env):
    _set_mail(gear_env["site"], sms_daily_limit=2)
    _gear_proof(gear_env, settings={"sms": "+15551234567"})
    for _ in range(3):
        _mailprog(FAILED, "alice@example.org", _slurm_env(state="FAILED", mail_type="Failed", exit_code="3"))
    smtp.wait(5)
    time.sleep(0.3)
    assert sum(1 for to, _ in smtp.messages if to == ["+15551234567@sms.example.org"]) == 2
    assert len(smtp.messages) == 5
    assert "alice has had 2 texts today, the site's limit" in _log(gear_env)


def test_the_work_dir_of_the_job_never_reaches_the_mail(smtp, gear_env):
    """Even for a proven execution the directory is computed, not taken from the job."""
    env = _slurm_env()
    env["SLURM_JOB_WORK_DIR"] = FORGED_WORKDIR
    _mailprog(ENDED, "alice@example.org", env)
    [(_, msg)] = smtp.wait(1)
    body = msg.get_content()
    assert "evil.example.com" not in body
    assert f"directory     {gear_env['storage']}/users/alice/containers/mnist/3/home" in body


@pytest.mark.parametrize("extra", ["gear;status=completed;exit=0;saved=true;size=\u00b2",
                                   "gear;status=completed;exit=\u00b3;saved=true;size=12",
                                   "gear;status=pwned;exit=0", "gear;status=completed;exit=99999999"])
def test_outcome_values_are_checked_before_they_are_printed(smtp, gear_env, extra):
    """`size=²` once crashed gear-mailprog (str.isdigit, then int) and the mail was lost."""
    assert _mailprog(ENDED, "alice@example.org", _slurm_env(extra=extra)).returncode == 0
    [(_, msg)] = smtp.wait(1)
    assert msg["X-Gear-Execution"] == "mnist/3"
    assert "pwned" not in msg["Subject"] and "\u00b2" not in msg.as_string() and "99999999" not in msg["Subject"]
    assert "error:" not in _log(gear_env)


def test_the_mail_log_is_private(smtp, gear_env):
    log = gear_env["tmp"] / "mail.log"
    _mailprog(ENDED, "alice@example.org", _slurm_env())
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    # One left world-readable (by an older gear) is closed on the next write.
    log.chmod(0o644)
    _mailprog(ENDED, "alice@example.org", _slurm_env())
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_older_slurm_without_comment_in_the_environment_asks_scontrol(smtp, gear_env, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_executable(bin_dir / "scontrol", "#!/bin/bash\n"
                     "echo 'JobId=1234 JobName=gear-mnist-3 Comment=gear:mnist/3:0123456789abcdef "
                     "Extra=gear;status=completed;exit=0;saved=true;size=2048 MailUser=alice@example.org'\n")
    env = {**_slurm_env(comment=None), "PATH": str(bin_dir)}
    _mailprog(ENDED, "alice@example.org", env)
    [(_, msg)] = smtp.wait(1)
    assert msg["Subject"] == "gear: mnist/3 completed, exit 0" and "size saved    2.0 KiB" in msg.get_content()


# --- the local cluster's mail catcher (a real aiosmtpd server) ---

def test_mail_catcher_keeps_and_shows_messages(tmp_path):
    import smtplib

    from gear_hpc.devcluster import mailcatcher

    port = _free_port()
    catcher = subprocess.Popen([sys.executable, str(REPO / "gear_hpc/devcluster/mailcatcher.py"), "serve",
                                "--dir", str(tmp_path / "mail"), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "listening" in catcher.stdout.readline()
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            client.sendmail("gear@example.org", ["alice@example.org"],
                            b"From: gear@example.org\r\nTo: alice@example.org\r\nSubject: hello\r\n\r\nbody\r\n")
        [message] = mailcatcher.read_messages(tmp_path / "mail")
        assert message["envelope_to"] == ["alice@example.org"] and message["subject"] == "hello"
        assert message["body"].strip() == "body"
        shown = subprocess.run([sys.executable, str(REPO / "gear_hpc/devcluster/mailcatcher.py"), "show",
                                "--dir", str(tmp_path / "mail"), "--last", "1"], capture_output=True, text=True)
        assert "Subject: hello" in shown.stdout and "1 message(s)" in shown.stdout
    finally:
        catcher.terminate()
        catcher.wait(10)


def test_a_node_failure_is_no_verdict(smtp, gear_env):
    """Slurm mails NODE_FAIL also for a job it requeues, with the dead batch shell's exit code."""
    env = _slurm_env(state="NODE_FAIL", mail_type="Failed", exit_code="0", extra="gear;status=running")
    subject = "Slurm Job_id=1234 Name=gear-mnist-3 Failed, Run time 00:00:12, NODE_FAIL, ExitCode 0"
    assert _mailprog(subject, "alice@example.org", env).returncode == 0
    [(to, msg)] = smtp.wait(1)
    assert msg["Subject"] == "gear: mnist/3 node failure"
    body = msg.get_content()
    assert "exit code     unknown" in body and "failed, exit 0" not in body
    assert "Slurm requeues a job that allows it" in body and "gear status mnist/3" in body
