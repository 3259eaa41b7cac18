"""gear-mailprog, what Slurm told us: the call, the job's owner, and whether the job is a gear execution
(or a sweep) of theirs.

Every field of a job is set by its owner, who may be hostile to the
recipient: a job counts as gear's only when its comment names a token that
the owner (as slurmctld reports the owner) keeps in their own notify/
directory (settings.read_owned). See mailprog.py for the whole call.

A sweep is one job array, which Slurm (without ARRAY_TASKS) mails about as a
whole, with its own subject (Slurm 24.11, recorded in
tests/fixtures/slurm/24.11/mailprog-array.txt):
`Slurm Array Summary Job_id=123_* (123) Name=NAME Began` once, when its first
task starts, and `… Ended, COMPLETED, ExitCode [0-0]` or `… Failed, Mixed,
ExitCode [0-1]` (`… Ended, Mixed, MaxSignal [9]` when cancelled) once, when
its last task ended. Its comment is `gear:C/FIRST-LAST:TOKEN`.
"""

from __future__ import annotations

import hmac
import os
import pwd
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base.errors import UsageError
from ..base.names import check_email
from .settings import NotReadable, Settings, parse_extra, parse_settings, read_owned

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"  # slurmctld gives MailProg no PATH

_MAIL_TYPES = (r"Began|Ended|Failed|Requeued|Invalid dependency|StageOut/Teardown|Reached time limit"
               r"|Reached [0-9]+% of time limit")
# Slurm's subject for a single job (agent.c, mail_job_info); array forms are passed on.
_SUBJECT = re.compile(rf"Slurm Job_id=(?P<job>[0-9]+) Name=(?P<name>.*) (?P<type>{_MAIL_TYPES})(?P<rest>,.*)?\Z")
# Slurm's subject for a job array mailed as a whole (agent.c, "Array Summary"); the summary of its
# tasks' states and exit codes (or signals) follows the end's type.
_ARRAY_SUBJECT = re.compile(rf"Slurm Array Summary Job_id=(?P<job>[0-9]+)_\* \((?P=job)\) Name=(?P<name>.*) "
                            rf"(?P<type>{_MAIL_TYPES})(?P<rest>,.*)?\Z")
_COMMENT = re.compile(r"gear:(?P<container>[a-z0-9][a-z0-9._-]{0,63})/(?P<number>[1-9][0-9]{0,8})"
                      r":(?P<token>[0-9a-f]{16,64})\Z")
_SWEEP_COMMENT = re.compile(r"gear:(?P<container>[a-z0-9][a-z0-9._-]{0,63})/(?P<first>[1-9][0-9]{0,8})"
                            r"-(?P<last>[1-9][0-9]{0,8}):(?P<token>[0-9a-f]{16,64})\Z")
_USER_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_UID = re.compile(r"[0-9]{1,10}\Z")


def one_line(value: Any, limit: int = 300) -> str:
    """Text safe for a header or a one-line field: no control characters, bounded."""
    text = _CONTROL.sub(" ", str(value)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Call:
    """One call of MailProg: Slurm's subject, the recipients and the job's environment."""

    subject: str
    recipients: list[str]
    env: Mapping[str, str]

    @property
    def parsed(self) -> re.Match[str] | None:
        """The subject of a single job's mail."""
        return _SUBJECT.match(self.subject)

    @property
    def array(self) -> re.Match[str] | None:
        """The subject of a job array's mail, sent for the array as a whole."""
        return _ARRAY_SUBJECT.match(self.subject)

    @property
    def job_id(self) -> str:
        job = self.env.get("SLURM_JOB_ID", "")
        if job.isdigit():
            return job
        match = self.parsed or self.array
        return match.group("job") if match else ""

    @property
    def mail_type(self) -> str:
        match = self.parsed or self.array
        return self.env.get("SLURM_JOB_MAIL_TYPE") or (match.group("type") if match else "")


def parse_argv(argv: list[str]) -> tuple[str | None, list[str]]:
    """`-s SUBJECT RECIPIENT…` (the form Slurm uses, after mail(1)) -> subject, recipients."""
    subject: str | None = None
    recipients: list[str] = []
    i = 0
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


@dataclass
class GearSweep:
    """A job array proven to be a sweep of its owner's: executions first … last of one container."""

    container: str
    first: int
    last: int
    owner: Owner
    settings: Settings = field(default_factory=Settings)

    @property
    def id(self) -> str:
        return f"{self.container}/{self.first}-{self.last}"

    @property
    def count(self) -> int:
        return self.last - self.first + 1


def job_fields(call: Call, scontrol: Callable[[str], dict[str, str]]) -> tuple[str, str]:
    """The job's comment and Extra, from the environment or, on older Slurm, from scontrol."""
    if "SLURM_JOB_COMMENT" in call.env:
        return call.env.get("SLURM_JOB_COMMENT", ""), call.env.get("SLURM_JOB_EXTRA", "")
    if not call.job_id:
        return "", ""
    fields = scontrol(call.job_id)
    return fields.get("Comment", ""), fields.get("Extra", "")


def identify(call: Call, scontrol: Callable[[str], dict[str, str]], storage_root: Path,
             log: Callable[[str], None]) -> GearJob | GearSweep | None:
    """The owner's execution (a single job's mail) or sweep (a job array's) behind the job, or None
    (then Slurm's message goes out).

    A comment in gear's form is only a claim: it counts when the owner's
    notify/executions/<container>/<n> (notify/sweeps/<container>/<first>-<last>)
    holds the same token, which only the owner (or root) can have written there.
    """
    comment, extra = job_fields(call, scontrol)
    if call.array:
        sweep = _SWEEP_COMMENT.match(comment.strip())
        if not sweep:
            return None
        container, first, last = sweep.group("container"), int(sweep.group("first")), int(sweep.group("last"))
        if first > last:
            log(f"not gear's mail: the job's comment names trials {first}-{last}, which is no sweep")
            return None
        what, parts, token = "sweep", ["sweeps", container, f"{first}-{last}"], sweep.group("token")
        claimed = f"{container}/{first}-{last}"
    else:
        match = _COMMENT.match(comment.strip())
        if not match:
            return None
        container, number, token = match.group("container"), int(match.group("number")), match.group("token")
        what, parts, claimed = "execution", ["executions", container, str(number)], f"{container}/{number}"
    owner = job_owner(call.env)
    if owner is None:
        log("not gear's mail: Slurm named no valid job owner")
        return None
    if not _proven(storage_root, owner, parts, token, f"{what} {claimed}", log):
        return None
    settings = _owner_settings(storage_root, owner, log)
    if call.array:
        return GearSweep(container, first, last, owner, settings)
    return GearJob(container, number, owner, settings, parse_extra(extra))


def _proven(storage_root: Path, owner: Owner, parts: list[str], token: str, claimed: str,
            log: Callable[[str], None]) -> bool:
    """The owner's notify/<parts…> holds `token` (compared in constant time)."""
    try:
        proof = read_owned(storage_root, owner.name, owner.uid, parts)
    except NotReadable as exc:
        log(f"not gear's mail: {owner.name} has no {claimed} with this job's token ({exc})")
        return False
    if not hmac.compare_digest(proof.strip().encode(), token.encode()):
        log(f"not gear's mail: the job's token is not {owner.name}'s for {claimed}")
        return False
    return True


def _owner_settings(storage_root: Path, owner: Owner, log: Callable[[str], None]) -> Settings:
    settings = Settings()
    try:
        settings = parse_settings(read_owned(storage_root, owner.name, owner.uid, ["settings.json"]),
                                  "settings.json")
    except NotReadable as exc:
        if str(exc) != "no such file":
            log(f"{owner.name}'s notification settings not readable ({exc}): the site's defaults")
    except Exception as exc:  # a broken file: the defaults, as gear run itself does
        log(f"{owner.name}'s notification settings not valid ({one_line(exc, 200)}): the site's defaults")
    return settings


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
