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
email only for a real gear execution *of the job's owner* (or a sweep of
theirs: one job array, which Slurm mails about as a whole), proven by the
token the owner's `gear run` left in the owner's notify/ directory (see
settings.py), and only to the address the owner registered; the SMS goes only
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
import os
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.errors import UsageError
from ..base.names import check_email, check_phone
from .message import (
    SIZE,
    build_email,
    email_body,
    email_subject,
    outcome,
    sms_text,
    sweep_body,
    sweep_outcome,
    sweep_sms,
    sweep_subject,
)
from .sending import Log, email_entry, send_entry, sms_entry
from .slurm_mail import Call, GearJob, GearSweep, identify, one_line, parse_argv, resolve_recipients, scontrol_fields

if TYPE_CHECKING:
    from ..site.model import MailConfig

DEADLINE_SECONDS = 90      # the whole child, whatever hangs; Slurm itself allows 120
FOREGROUND_ENV = "GEAR_MAILPROG_FOREGROUND"  # "1": do not detach (tests, debugging)




def handle(call: Call, mail: MailConfig, log: Log, storage_root: Path,
           scontrol: Callable[[str], dict[str, str]] = scontrol_fields) -> None:
    """Decide and send. Raises nothing that matters: every failure is logged."""
    recipients = resolve_recipients(call.recipients, mail.address, log)
    if not recipients:
        log(f"no valid recipient in {call.recipients!r}; nothing sent")
        return
    job = identify(call, scontrol, storage_root, log) if call.parsed or call.array else None
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
    if isinstance(job, GearSweep):
        log.job = f"{call.job_id} sweep={job.owner.name}:{job.id}"
        swept = sweep_outcome(call)
        msg = build_email(mail.sender, recipients, sweep_subject(job, swept),
                          sweep_body(call, job, swept, storage_root), sweep=job.id)
        _deliver(log, mail, email_entry(f"email ({swept.status})", msg, recipients))
        text = sweep_sms(job, swept)
    else:
        log.job = f"{call.job_id} execution={job.owner.name}:{job.id}"
        result = outcome(call, job)
        msg = build_email(mail.sender, recipients, email_subject(job, result),
                          email_body(call, job, result, storage_root), job.id)
        _deliver(log, mail, email_entry(f"email ({result.status})", msg, recipients))
        text = sms_text(job, result, call.env)

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
        _deliver(log, mail, sms_entry(number, text))


def owner_address(mail: MailConfig, job: GearJob | GearSweep) -> str:
    """Where the owner asked gear to write: their setting, else the site's rule."""
    if job.settings.email:
        return job.settings.email
    try:
        return check_email(mail.address.format(user=job.owner.name))
    except UsageError:
        return ""


def count_sms(mail: MailConfig, user: str, today: str | None = None) -> str | None:
    """Count one text for `user` today; the reason to refuse it, or None.

    The counts live in the site's state_dir (SlurmUser's, 0700), one small
    file per user and day under a lock, so two mails at once count twice.
    """
    limit = mail.sms_daily_limit
    day = today or datetime.now(UTC).strftime("%Y-%m-%d")
    directory = Path(mail.state_dir) / "sms"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(directory / f"{user}.{day}", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        return f"cannot count texts in {directory} ({exc.strerror}); the admin must create it for SlurmUser"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        text = os.read(fd, 32).decode("ascii", "replace").strip()
        sent = int(text) if SIZE.match(text) else 0
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


def _deliver(log: Log, mail: MailConfig, entry: dict[str, Any]) -> None:
    """Send now; what fails for a reason that may pass is kept and retried (spool.py)."""
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
