"""Notifications (SPEC §6): who is told, where, and what travels in the job.

Delivery is Slurm's own mail: every execution is submitted with
`--mail-type` and `--mail-user`, and the site's MailProg (`gear-mailprog`,
see mailprog.py) turns Slurm's one-line subject into a useful email and, for
users who opted in, an SMS. gear-mailprog runs on the controller as
SlurmUser, which cannot read the user's private storage, so everything it
needs travels in the job itself:

- the comment (`gear:<container>/<n>:<token>`) names the execution;
- the job's Extra field carries `gear;sms=<number>` from submission, and the
  batch script appends the outcome when it ends
  (`;status=completed;exit=0;saved=1;size=4096`), since only the job knows
  what it saved.

Slurm hands both to MailProg as SLURM_JOB_COMMENT and SLURM_JOB_EXTRA.
A user's settings live in `<user dir>/notify.json` (private, written
atomically), not in the ledger: they are read once per submission.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import GearError, UsageError

if TYPE_CHECKING:
    from .site import MailConfig, Site
    from .storage import UserStorage

EVENTS = ("begin", "end", "fail")
ALWAYS_ON = ("end", "fail")  # email cannot be turned off (SPEC §6)
SETTINGS_FILE = "notify.json"
EXTRA_TAG = "gear"  # first word of the job's Extra field when gear wrote it

# Deliberately narrower than RFC 5321: the address reaches an #SBATCH line and
# a mail header, so no quotes, spaces, commas (a second recipient) or '%'.
_LOCAL = re.compile(r"[A-Za-z0-9_+-]+(\.[A-Za-z0-9_+-]+)*\Z")
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_PHONE_SEPARATORS = re.compile(r"[ ().-]")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}\Z")


def check_email(value: str, what: str = "email address") -> str:
    """Return `value` if it is a plain, sane email address, else raise UsageError."""
    if not isinstance(value, str) or not value:
        raise UsageError(f"{what} must not be empty")
    if re.search(r"[\x00-\x20\x7f]", value) or not value.isascii():
        raise UsageError(f"invalid {what} {value!r}: no spaces, line breaks or non-ASCII characters")
    if len(value) > 254 or value.count("@") != 1:
        raise UsageError(f"invalid {what} {value!r}: expected exactly one '@', as in alice@example.org")
    local, domain = value.split("@")
    if not local or len(local) > 64 or not _LOCAL.match(local):
        raise UsageError(f"invalid {what} {value!r}: the part before '@' may use letters, digits and . _ + -")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels) or not labels[-1].isalpha():
        raise UsageError(f"invalid {what} {value!r}: {domain!r} is not a domain name such as example.org")
    return value


def check_phone(value: str) -> str:
    """A phone number in E.164 form (+ country code, then digits); spaces, dashes,
    dots and parentheses are dropped. Returns the normalised number."""
    if not isinstance(value, str) or re.search(r"[\x00-\x1f\x7f]", value):
        raise UsageError(f"invalid phone number {value!r}: it contains a control character")
    number = _PHONE_SEPARATORS.sub("", value)
    if not _E164.match(number):
        raise UsageError(f"invalid phone number {value!r}: use the international form, "
                         "+ then the country code and number, for example +15551234567")
    return number


def parse_events(text: str) -> tuple[str, ...]:
    """`begin,end,fail` -> the events, with end and fail always included."""
    chosen = {part.strip().lower() for part in text.split(",") if part.strip()}
    unknown = chosen - set(EVENTS)
    if unknown:
        raise UsageError(f"unknown event(s) {', '.join(sorted(unknown))} in --on; choose from {','.join(EVENTS)}")
    chosen.update(ALWAYS_ON)
    return tuple(e for e in EVENTS if e in chosen)


@dataclass
class Settings:
    """One user's choices; None means "the site's default"."""

    email: str | None = None
    sms: str | None = None
    events: tuple[str, ...] = ALWAYS_ON

    def to_json(self) -> dict[str, Any]:
        return {"email": self.email, "sms": self.sms, "on": list(self.events)}

    @classmethod
    def from_json(cls, data: Any) -> "Settings":
        """Validate again what was read: a hand-edited file must not reach an #SBATCH line."""
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        email = data.get("email")
        sms = data.get("sms")
        events = data.get("on", list(ALWAYS_ON))
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise ValueError("'on' must be a list of events")
        return cls(email=check_email(email) if email is not None else None,
                   sms=check_phone(sms) if sms is not None else None,
                   events=parse_events(",".join(events)))


def settings_path(storage: "UserStorage") -> Path:
    return storage.root / SETTINGS_FILE


def load_settings(storage: "UserStorage") -> Settings:
    """The user's settings; defaults when none were saved. Raises GearError on a broken file."""
    path = settings_path(storage)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Settings()
    except OSError as exc:
        raise GearError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return Settings.from_json(json.loads(text))
    except (ValueError, UsageError) as exc:
        raise GearError(f"{path} is not valid ({exc}); set it again with gear notify") from None


def save_settings(storage: "UserStorage", settings: Settings) -> Path:
    """Write the settings atomically (temporary file, then rename), owner-only."""
    storage.ensure()
    path = settings_path(storage)
    fd, tmp = tempfile.mkstemp(prefix=".notify.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(settings.to_json(), out, indent=2)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def site_address(mail: "MailConfig", user: str) -> str:
    """The address the site's rule gives `user` (for example {user}@example.org)."""
    return check_email(mail.address.format(user=user), f"address from the site's rule for user {user!r}")


def sms_possible(mail: "MailConfig") -> bool:
    """The site can send SMS: it has a gateway and lets gear carry the number in the job."""
    return mail.enabled and mail.job_extra and bool(mail.sms_email or mail.sms_http)


@dataclass
class JobMail:
    """What one execution's batch script needs for notifications."""

    sbatch_options: list[tuple[str, str]] = field(default_factory=list)
    # Extra field value the script extends with the outcome; None: report nothing.
    report_extra: str | None = None


def for_job(site: "Site", user: str) -> JobMail:
    """The mail options of a new execution of `user`.

    Never fails the submission: a broken settings file falls back to the
    site's defaults (email by the site's rule, no SMS, end and fail).
    """
    mail = site.mail
    if not mail.enabled:
        return JobMail()  # a site with mail switched off loses only the message
    from .storage import UserStorage

    try:
        settings = load_settings(UserStorage(site.storage_root, user))
    except GearError:
        settings = Settings()
    try:
        address = settings.email or site_address(mail, user)
    except UsageError:
        return JobMail()  # the site's rule gives this user no valid address: no mail rather than no job
    options = [("mail-type", ",".join(e.upper() for e in settings.events)), ("mail-user", address)]
    if not mail.job_extra:
        return JobMail(options)
    extra = EXTRA_TAG + (f";sms={settings.sms}" if settings.sms and sms_possible(mail) else "")
    if extra != EXTRA_TAG:
        options.append(("extra", extra))
    return JobMail(options, report_extra=extra)


def parse_extra(text: str | None) -> dict[str, str]:
    """`gear;sms=+1555…;status=completed;…` -> its fields; {} if gear did not write it."""
    if not text:
        return {}
    parts = text.strip().split(";")
    if parts[0] != EXTRA_TAG:
        return {}
    fields: dict[str, str] = {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if sep and key:
            fields[key] = value
    return fields
