"""gear-mailprog, sending: SMTP, the SMS gateway (mail or HTTP), the spool entries and the log.

Every exchange has its own timeout; the log (created 0600) records each
outcome, since it names users' addresses and numbers.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from ..base.names import check_email
from .message import build_email
from .slurm_mail import one_line

if TYPE_CHECKING:
    from ..site.model import MailConfig


def send_email(mail: MailConfig, raw: bytes, recipients: list[str]) -> None:
    """One SMTP exchange, bounded by the site's timeout; raises on any refusal."""
    import smtplib

    with smtplib.SMTP(mail.smtp_host, mail.smtp_port, timeout=mail.timeout) as smtp:
        refused = smtp.sendmail(mail.sender, recipients, raw)
    if refused:
        raise smtplib.SMTPRecipientsRefused(refused)


def send_sms(mail: MailConfig, number: str, text: str) -> str:
    """Through the site's gateway; returns where it went."""
    if mail.sms_email:
        to = check_email(mail.sms_email.format(number=number, digits=number.lstrip("+")))
        msg = build_email(mail.sender, [to], "gear", text + "\n")
        send_email(mail, msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")), [to])
        return to
    import urllib.request

    gateway = mail.sms_http
    if gateway is None:  # mailprog texts only when the site has a gateway (settings.py)
        raise ValueError("this site has no SMS gateway (mail.sms_email or mail.sms_http)")
    request = urllib.request.Request(gateway, data=json.dumps({"to": number, "text": text}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=mail.timeout) as response:  # raises on 4xx/5xx
        response.read(1024)
    return gateway


def email_entry(what: str, msg: EmailMessage, recipients: list[str]) -> dict[str, Any]:
    """One email as a delivery (and, if it must wait, a spool entry: spool.py)."""
    import base64

    # CRLF, as SMTP wants it (send_message converts; sendmail of bytes does not).
    raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    return {"kind": "email", "what": what, "to": recipients, "raw": base64.b64encode(raw).decode()}


def sms_entry(number: str, text: str) -> dict[str, Any]:
    return {"kind": "sms", "what": "sms", "to": [number], "number": number, "text": text}


def send_entry(mail: MailConfig, entry: dict[str, Any]) -> None:
    import base64

    if entry.get("kind") == "sms":
        send_sms(mail, entry["number"], entry["text"])
    else:
        send_email(mail, base64.b64decode(entry["raw"]), list(entry["to"]))


class Log:
    """One line per outcome in the site's log file; syslog when that cannot be written."""

    def __init__(self, path: str | None, job: str = "", stderr: bool = True):
        self.path, self.job, self.stderr = path, job, stderr

    def __call__(self, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
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
