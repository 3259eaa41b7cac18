"""gear-mailprog: what a site sets as Slurm's MailProg.

slurmctld runs it on the controller, as SlurmUser, as
`gear-mailprog -s SUBJECT RECIPIENT`, with the job described in the
environment (Slurm 24.11, seen on the local cluster: SLURM_JOB_ID, _USER,
_UID, _NAME, _STATE, _MAIL_TYPE, _COMMENT, _EXTRA, _WORK_DIR, _PARTITION,
_QUEUED_TIME (begin), _RUN_TIME and _EXIT_CODE_MAX (end, fail) …; no PATH).
Slurm's older releases lack SLURM_JOB_COMMENT/EXTRA: then one
`scontrol show job` fills them in.

It runs with more privilege than any user, and every field of a job is set
by the job's owner, who may be hostile to the recipient. So it sends gear's
email only for a real gear execution *of the job's owner*, proven by the
token the owner's `gear run` left in the owner's notify/ directory (see
notify.py), and only to the address the owner registered; the SMS goes only
to the number in the owner's settings, at most `sms_daily_limit` a day.
Anything else gets Slurm's own message, unchanged. No job field reaches the
mail unless it was checked: the outcome is validated against closed sets,
the directory is computed, not taken from the job.

It never holds up or crashes slurmctld: it returns at once and sends from a
detached child with bounded timeouts, always exits 0, and logs every outcome
to the site's log file (created 0600: it names users' addresses and numbers).
"""

from __future__ import annotations

import fcntl
import hmac
import json
import os
import pwd
import re
import signal
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Callable, Mapping

from ..base.errors import UsageError
from ..base.statuses import REPORTED_BY_JOB
from ..storage.layout import CONTAINERS, USERS
from ..base.names import check_email, check_phone
from .settings import NotReadable, Settings, parse_extra, parse_settings, read_owned
from ..storage.disk import human_size

DEADLINE_SECONDS = 90      # the whole child, whatever hangs; Slurm itself allows 120
FOREGROUND_ENV = "GEAR_MAILPROG_FOREGROUND"  # "1": do not detach (tests, debugging)
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"  # slurmctld gives MailProg no PATH

_MAIL_TYPES = (r"Began|Ended|Failed|Requeued|Invalid dependency|StageOut/Teardown|Reached time limit"
               r"|Reached [0-9]+% of time limit")
# Slurm's subject for a single job (agent.c, mail_job_info); array forms are passed on.
_SUBJECT = re.compile(rf"Slurm Job_id=(?P<job>[0-9]+) Name=(?P<name>.*) (?P<type>{_MAIL_TYPES})(?P<rest>,.*)?\Z")
_COMMENT = re.compile(r"gear:(?P<container>[a-z0-9][a-z0-9._-]{0,63})/(?P<number>[1-9][0-9]{0,8})"
                      r":(?P<token>[0-9a-f]{16,64})\Z")
_USER_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# No folding below RFC 5322's 998: Python's folder moves a 70-odd character
# subject to a continuation line, which some readers show with a leading space.
_POLICY = default_policy.clone(max_line_length=998)
_EXIT_CODE = re.compile(r"[0-9]{1,3}\Z")   # ASCII digits only: str.isdigit() takes '²', int() does not
_SIZE = re.compile(r"[0-9]{1,19}\Z")
_UID = re.compile(r"[0-9]{1,10}\Z")
# Slurm's final states, in gear's words, for a job that did not report its own.
_SLURM_STATES = {"COMPLETED": "completed", "CANCELLED": "terminated", "TIMEOUT": "timeout",
                 "DEADLINE": "timeout", "PREEMPTED": "terminated"}


def one_line(value: Any, limit: int = 300) -> str:
    """Text safe for a header or a one-line field: no control characters, bounded."""
    text = _CONTROL.sub(" ", str(value)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- what Slurm told us ---

@dataclass
class Call:
    """One call of MailProg: Slurm's subject, the recipients and the job's environment."""

    subject: str
    recipients: list[str]
    env: Mapping[str, str]

    @property
    def parsed(self) -> re.Match[str] | None:
        return _SUBJECT.match(self.subject)

    @property
    def job_id(self) -> str:
        job = self.env.get("SLURM_JOB_ID", "")
        if job.isdigit():
            return job
        match = self.parsed
        return match.group("job") if match else ""

    @property
    def mail_type(self) -> str:
        match = self.parsed
        return self.env.get("SLURM_JOB_MAIL_TYPE") or (match.group("type") if match else "")


def parse_argv(argv: list[str]) -> tuple[str | None, list[str]]:
    """`-s SUBJECT RECIPIENT…` (the form Slurm uses, after mail(1)) -> subject, recipients."""
    subject, recipients, i = None, [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-s" and i + 1 < len(argv):
            subject, i = argv[i + 1], i + 2
            continue
        if not arg.startswith("-"):
            recipients.extend(part.strip() for part in arg.split(",") if part.strip())
        i += 1
    return subject, recipients


def resolve_recipients(raw: list[str], address_rule: str, log: Callable[[str], None]) -> list[str]:
    """Valid addresses only; a bare user name (Slurm's default --mail-user) goes through the site's rule."""
    good = []
    for item in raw:
        candidate = item
        if "@" not in item and _USER_NAME.match(item):
            candidate = address_rule.format(user=item)
        try:
            good.append(check_email(candidate))
        except UsageError:
            log(f"dropped recipient {one_line(item, 80)!r}: not a valid address")
    return good


@dataclass
class Owner:
    """The job's owner as slurmctld reports it (SLURM_JOB_USER/UID), which the job cannot set."""

    name: str
    uid: int


def job_owner(env: Mapping[str, str]) -> Owner | None:
    name, uid_text = env.get("SLURM_JOB_USER", ""), env.get("SLURM_JOB_UID", "")
    if not _USER_NAME.match(name):
        return None
    try:
        known = pwd.getpwnam(name).pw_uid
    except KeyError:
        known = None
    if _UID.match(uid_text):
        uid = int(uid_text)
        if known is not None and known != uid:
            return None
        return Owner(name, uid)
    return Owner(name, known) if known is not None else None


@dataclass
class GearJob:
    """A job proven to be an execution of its owner's, with the owner's settings."""

    container: str
    number: int
    owner: Owner
    settings: Settings = field(default_factory=Settings)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.container}/{self.number}"


def job_fields(call: Call, scontrol: Callable[[str], dict[str, str]]) -> tuple[str, str]:
    """The job's comment and Extra, from the environment or, on older Slurm, from scontrol."""
    if "SLURM_JOB_COMMENT" in call.env:
        return call.env.get("SLURM_JOB_COMMENT", ""), call.env.get("SLURM_JOB_EXTRA", "")
    if not call.job_id:
        return "", ""
    fields = scontrol(call.job_id)
    return fields.get("Comment", ""), fields.get("Extra", "")


def identify(call: Call, scontrol: Callable[[str], dict[str, str]], storage_root: Path,
             log: Callable[[str], None]) -> GearJob | None:
    """The owner's execution behind the job, or None (then Slurm's message goes out).

    A comment in gear's form is only a claim: it counts when the owner's
    notify/executions/<container>/<n> holds the same token, which only the
    owner (or root) can have written there.
    """
    comment, extra = job_fields(call, scontrol)
    match = _COMMENT.match(comment.strip())
    if not match:
        return None
    container, number, token = match.group("container"), int(match.group("number")), match.group("token")
    owner = job_owner(call.env)
    if owner is None:
        log("not gear's mail: Slurm named no valid job owner")
        return None
    try:
        proof = read_owned(storage_root, owner.name, owner.uid, ["executions", container, str(number)])
    except NotReadable as exc:
        log(f"not gear's mail: {owner.name} has no execution {container}/{number} with this job's token ({exc})")
        return None
    if not hmac.compare_digest(proof.strip().encode(), token.encode()):
        log(f"not gear's mail: the job's token is not {owner.name}'s for {container}/{number}")
        return None
    settings = Settings()
    try:
        settings = parse_settings(read_owned(storage_root, owner.name, owner.uid, ["settings.json"]),
                                  "settings.json")
    except NotReadable as exc:
        if str(exc) != "no such file":
            log(f"{owner.name}'s notification settings not readable ({exc}): the site's defaults")
    except Exception as exc:  # a broken file: the defaults, as gear run itself does
        log(f"{owner.name}'s notification settings not valid ({one_line(exc, 200)}): the site's defaults")
    return GearJob(container, number, owner, settings, parse_extra(extra))


def scontrol_fields(job_id: str, timeout: float = 10.0) -> dict[str, str]:
    """Comment= and Extra= of one job from `scontrol show job -o` ({} on any failure)."""
    import shutil
    import subprocess

    binary = shutil.which("scontrol", path=os.environ.get("PATH") or DEFAULT_PATH)
    if not binary or not job_id.isdigit():
        return {}
    try:
        out = subprocess.run([binary, "show", "job", "-o", job_id], capture_output=True, text=True,
                             timeout=timeout).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    fields = {}
    for key in ("Comment", "Extra"):
        found = re.search(rf"(?:^| ){key}=(\S*)", out)
        if found and found.group(1) != "(null)":
            fields[key] = found.group(1)
    return fields


# --- what we say ---

@dataclass
class Outcome:
    status: str                 # completed, failed, terminated, timeout, running, or Slurm's word
    exit_code: str | None
    size: int | None
    reported: bool              # the batch script reported it (else: Slurm's view only)
    saved: bool | None


def outcome(call: Call, job: GearJob) -> Outcome:
    extra = job.extra
    if call.mail_type == "Began":
        return Outcome("running", None, None, False, None)
    status = extra.get("status", "")
    if status in REPORTED_BY_JOB:  # what a job's final record says: never lost
        code = extra.get("exit", "")
        size = extra.get("size", "")
        return Outcome(status, code if _EXIT_CODE.match(code) else None, int(size) if _SIZE.match(size) else None,
                       True, extra.get("saved") in ("1", "true"))
    state = call.env.get("SLURM_JOB_STATE", "")
    if call.mail_type in ("Ended", "Failed"):
        status = _SLURM_STATES.get(state, "failed")
    else:
        status = one_line(call.mail_type.lower(), 60) or "unknown"
    code = call.env.get("SLURM_JOB_EXIT_CODE_MAX", "")
    if status == "terminated":
        code = ""  # Slurm mails at the cancel, before the program's exit code exists: its 0 means nothing
    return Outcome(status, code if _EXIT_CODE.match(code) else None, None, False, None)


def email_subject(job: GearJob, result: Outcome) -> str:
    if result.status == "running":
        return f"gear: {job.id} started"
    exit_part = f", exit {result.exit_code}" if result.exit_code is not None else ""
    return f"gear: {job.id} {result.status}{exit_part}"


def email_body(call: Call, job: GearJob, result: Outcome, storage_root: Path) -> str:
    env = call.env
    rows: list[tuple[str, str]] = [("container", job.container), ("execution", job.id)]
    if result.status == "running":
        rows.append(("status", "running"))
        if env.get("SLURM_JOB_QUEUED_TIME"):
            rows.append(("queued for", one_line(env["SLURM_JOB_QUEUED_TIME"], 40)))
    else:
        rows.append(("status", result.status))
        rows.append(("exit code", result.exit_code if result.exit_code is not None else "unknown"))
        if env.get("SLURM_JOB_RUN_TIME"):
            rows.append(("run time", one_line(env["SLURM_JOB_RUN_TIME"], 40)))
        if result.size is not None:
            rows.append(("size saved", human_size(result.size) + ("" if result.saved else " (save incomplete)")))
    slurm = f"{call.job_id}"
    if env.get("SLURM_JOB_PARTITION"):
        slurm += f", partition {one_line(env['SLURM_JOB_PARTITION'], 40)}"
    if env.get("SLURM_JOB_STATE"):
        slurm += f", state {one_line(env['SLURM_JOB_STATE'], 40)}"
    rows.append(("Slurm job", slurm))
    # Computed from what was proven, never the job's own work dir (which its owner sets freely).
    rows.append(("directory", str(Path(storage_root) / USERS / job.owner.name / CONTAINERS / job.container
                                  / str(job.number) / "home")))

    if result.status == "running":
        head = f"Execution {job.id} has started."
        commands = [("Follow its log:", f"gear logs {job.id} -f"), ("Stop it:", f"gear stop {job.id}")]
    else:
        head = (f"Execution {job.id} has ended: {result.status}." if call.mail_type in ("Ended", "Failed")
                else f"Execution {job.id}: Slurm says {one_line(call.mail_type, 60)}.")
        commands = [("See its log:", f"gear logs {job.id}"), ("See its record:", f"gear show {job.id}"),
                    ("Continue from it:", f"gear continue {job.id}"),
                    ("Download its results:", f"gear download {job.id}")]
    lines = [head, ""]
    lines += [f"  {label:<12}  {value}" for label, value in rows]
    if not result.reported and call.mail_type in ("Ended", "Failed"):
        if result.status == "terminated":
            lines += ["", "It was stopped. It saves its working directory as it exits, which may be after",
                      f"this message: `gear show {job.id}` says whether the save completed."]
        else:
            lines += ["", "The job ended without reporting what it saved: "
                      f"`gear show {job.id}` says what was kept."]
    lines.append("")
    lines += [f"{label:<22} {command}" for label, command in commands]
    lines += ["", "-- ", f"Slurm's message: {one_line(call.subject)}"]
    return "\n".join(lines) + "\n"


def sms_text(job: GearJob, result: Outcome, env: Mapping[str, str]) -> str:
    text = email_subject(job, result)
    if env.get("SLURM_JOB_RUN_TIME"):
        text += f", run {one_line(env['SLURM_JOB_RUN_TIME'], 20)}"
    return text[:160]


def build_email(sender: str, recipients: list[str], subject: str, body: str,
                execution: str | None = None) -> EmailMessage:
    """Every header value goes through one_line: no newline can ever reach a header."""
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = one_line(subject)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a robot
    if execution:
        msg["X-Gear-Execution"] = one_line(execution)
    msg.set_content(body)
    return msg


# --- sending ---

def send_email(mail: Any, raw: bytes, recipients: list[str]) -> None:
    """One SMTP exchange, bounded by the site's timeout; raises on any refusal."""
    import smtplib

    with smtplib.SMTP(mail.smtp_host, mail.smtp_port, timeout=mail.timeout) as smtp:
        refused = smtp.sendmail(mail.sender, recipients, raw)
    if refused:
        raise smtplib.SMTPRecipientsRefused(refused)


def send_sms(mail: Any, number: str, text: str) -> str:
    """Through the site's gateway; returns where it went."""
    if mail.sms_email:
        to = check_email(mail.sms_email.format(number=number, digits=number.lstrip("+")))
        msg = build_email(mail.sender, [to], "gear", text + "\n")
        send_email(mail, msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")), [to])
        return to
    import urllib.request

    request = urllib.request.Request(mail.sms_http, data=json.dumps({"to": number, "text": text}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=mail.timeout) as response:  # raises on 4xx/5xx
        response.read(1024)
    return mail.sms_http


def email_entry(what: str, msg: EmailMessage, recipients: list[str]) -> dict[str, Any]:
    """One email as a delivery (and, if it must wait, a spool entry: mailspool.py)."""
    import base64

    # CRLF, as SMTP wants it (send_message converts; sendmail of bytes does not).
    raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    return {"kind": "email", "what": what, "to": recipients, "raw": base64.b64encode(raw).decode()}


def sms_entry(number: str, text: str) -> dict[str, Any]:
    return {"kind": "sms", "what": "sms", "to": [number], "number": number, "text": text}


def send_entry(mail: Any, entry: dict[str, Any]) -> None:
    import base64

    if entry.get("kind") == "sms":
        send_sms(mail, entry["number"], entry["text"])
    else:
        send_email(mail, base64.b64decode(entry["raw"]), list(entry["to"]))


# --- the log ---

class Log:
    """One line per outcome in the site's log file; syslog when that cannot be written."""

    def __init__(self, path: str | None, job: str = "", stderr: bool = True):
        self.path, self.job, self.stderr = path, job, stderr

    def __call__(self, message: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = f"{stamp} gear-mailprog[{os.getpid()}] job={self.job or '?'}: {one_line(message, 2000)}\n"
        if self.path:
            try:
                # 0600: the log names users' addresses, numbers and executions. A file
                # left world-readable by an older gear is closed on the next write.
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                with os.fdopen(fd, "a") as out:
                    if os.fstat(fd).st_mode & 0o077:
                        os.fchmod(fd, 0o600)
                    out.write(line)
                return
            except OSError as exc:
                line = line.rstrip("\n") + f" (cannot write {self.path}: {exc.strerror})\n"
        try:
            import syslog

            syslog.openlog("gear-mailprog", 0, syslog.LOG_MAIL)
            syslog.syslog(syslog.LOG_WARNING, line.strip())
        except Exception:
            pass
        if self.stderr:
            try:
                sys.stderr.write(line)
            except Exception:
                pass


# --- the whole call ---

def handle(call: Call, mail: Any, log: Log, storage_root: Path,
           scontrol: Callable[[str], dict[str, str]] = scontrol_fields) -> None:
    """Decide and send. Raises nothing that matters: every failure is logged."""
    recipients = resolve_recipients(call.recipients, mail.address, log)
    if not recipients:
        log(f"no valid recipient in {call.recipients!r}; nothing sent")
        return
    job = identify(call, scontrol, storage_root, log) if call.parsed else None
    if job is not None:
        expected = owner_address(mail, job)
        if recipients != [expected]:
            # Slurm's --mail-user is the owner's to set: gear's mail about the
            # owner's execution goes to the owner's own address only.
            log(f"not gear's mail: {', '.join(recipients)} is not {job.owner.name}'s address")
            job = None
    if job is None:
        # Not a proven gear execution, or a subject we do not know: Slurm's message, unchanged.
        msg = build_email(mail.sender, recipients, call.subject, "")
        _deliver(log, mail, email_entry("slurm's message", msg, recipients))
        return
    log.job = f"{call.job_id} execution={job.owner.name}:{job.id}"
    result = outcome(call, job)
    msg = build_email(mail.sender, recipients, email_subject(job, result),
                      email_body(call, job, result, storage_root), job.id)
    _deliver(log, mail, email_entry(f"email ({result.status})", msg, recipients))

    number = job.settings.sms
    if number and call.mail_type in ("Ended", "Failed"):
        if not (mail.sms_email or mail.sms_http):
            log("sms: the site has no SMS gateway (mail.sms_email or mail.sms_http); not sent")
            return
        try:
            number = check_phone(number)
        except UsageError:
            log("sms: the number in the owner's settings is not valid; not sent")
            return
        refusal = count_sms(mail, job.owner.name)
        if refusal:
            log(f"sms to {number} NOT sent: {refusal}")
            return
        _deliver(log, mail, sms_entry(number, sms_text(job, result, call.env)))


def owner_address(mail: Any, job: GearJob) -> str:
    """Where the owner asked gear to write: their setting, else the site's rule."""
    if job.settings.email:
        return job.settings.email
    try:
        return check_email(mail.address.format(user=job.owner.name))
    except UsageError:
        return ""


def count_sms(mail: Any, user: str, today: str | None = None) -> str | None:
    """Count one text for `user` today; the reason to refuse it, or None.

    The counts live in the site's state_dir (SlurmUser's, 0700), one small
    file per user and day under a lock, so two mails at once count twice.
    """
    limit = mail.sms_daily_limit
    day = today or datetime.now(timezone.utc).strftime("%Y-%m-%d")
    directory = Path(mail.state_dir) / "sms"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(directory / f"{user}.{day}", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        return f"cannot count texts in {directory} ({exc.strerror}); the admin must create it for SlurmUser"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        text = os.read(fd, 32).decode("ascii", "replace").strip()
        sent = int(text) if _SIZE.match(text) else 0
        if sent >= limit:
            return f"{user} has had {sent} texts today, the site's limit (mail.sms_daily_limit)"
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, f"{sent + 1}\n".encode())
    finally:
        os.close(fd)
    for old in directory.glob(f"{user}.*"):  # yesterday's counts are no longer needed
        if old.name != f"{user}.{day}":
            old.unlink(missing_ok=True)
    return None


def _deliver(log: Log, mail: Any, entry: dict[str, Any]) -> None:
    """Send now; what fails for a reason that may pass is kept and retried (mailspool.py)."""
    from .spool import Spool, is_temporary

    what = f"{entry['what']} to {', '.join(entry['to'])}"
    try:
        send_entry(mail, entry)
    except Exception as exc:  # SMTP down or refusing, gateway error, timeout: log, never raise
        failure = f"{what} NOT sent: {type(exc).__name__}: {one_line(exc, 300)}"
        if not is_temporary(exc):
            log(failure)
            return
        try:
            Spool(mail.state_dir).keep({**entry, "job": log.job})
        except OSError as kept:
            log(f"{failure}; and it cannot be kept to retry ({kept.strerror}: see mail.state_dir)")
        else:
            log(f"{failure}; kept to retry for 24 h")
    else:
        log(f"{what} sent")


def _detach() -> bool:
    """Fork; True in the parent. The child leaves Slurm's session and pipes,
    so slurmctld's mail thread is free the moment the parent exits."""
    try:
        pid = os.fork()
    except OSError:
        return False  # cannot fork: do the work here, still bounded
    if pid:
        return True
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if devnull > 2:
        os.close(devnull)
    return False


def _on_deadline(signum: int, frame: Any) -> None:
    raise TimeoutError(f"gave up after {DEADLINE_SECONDS} s")


def main(argv: list[str] | None = None) -> int:
    """Entry point of gear-mailprog. Always returns 0."""
    args = list(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ)
    log = Log(None, env.get("SLURM_JOB_ID", ""))
    try:
        from ..site.loading import load_for_mailprog

        mail, storage_root = load_for_mailprog()
        log.path = mail.log_file
        subject, recipients = parse_argv(args)
        if subject is None:
            log(f"called without -s SUBJECT ({one_line(args)!r}); nothing sent")
            return 0
        if not mail.enabled:
            log(f"mail is switched off in the site configuration; not sent: {one_line(subject)}")
            return 0
        call = Call(subject, recipients, env)
        if env.get(FOREGROUND_ENV) != "1" and _detach():
            return 0
        log.stderr = env.get(FOREGROUND_ENV) == "1"
        signal.signal(signal.SIGALRM, _on_deadline)
        signal.alarm(DEADLINE_SECONDS)
        try:
            handle(call, mail, log, storage_root)
        finally:
            signal.alarm(0)
        # Then what earlier calls could not deliver: once in the foreground,
        # and for up to an hour in a detached child, if no other child does it.
        from .spool import Spool

        spool = Spool(mail.state_dir)
        log.job = ""
        if env.get(FOREGROUND_ENV) == "1":
            spool.flush(lambda entry: send_entry(mail, entry), log)
        else:
            spool.retry(lambda entry: send_entry(mail, entry), log)
    except BaseException as exc:  # nothing may escape into slurmctld's mail thread
        try:
            log(f"error: {type(exc).__name__}: {one_line(exc)}")
        except BaseException:
            pass
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
