"""Notifications: who is told, where, and what gear-mailprog may trust.

Delivery is Slurm's own mail: every execution is submitted with
`--mail-type` and `--mail-user`, and the site's MailProg (`gear-mailprog`,
see mailprog.py) turns Slurm's one-line subject into a useful email and, for
users who opted in, an SMS. gear-mailprog runs on the controller as
SlurmUser, and everything a job carries (name, comment, Extra, work dir) is
set by the job's owner, who may be hostile. So what makes a mail gear's is
what only the owner could have written, in the owner's own storage:

- `<user dir>/notify/settings.json`: the address, the SMS number and the
  events, written by `gear notify`;
- `<user dir>/notify/executions/<container>/<n>`: the execution's token,
  written before the job is submitted. The job's comment
  (`gear:<container>/<n>:<token>`) must name it, and the job's owner (as
  slurmctld reports it, not as the job says) must own the file;
- `<user dir>/notify/sweeps/<container>/<first>-<last>`: a sweep's token, the
  same way, for the one job array of trials <first> … <last> (comment
  `gear:<container>/<first>-<last>:<token>`), which Slurm mails about as a whole.

notify/ is readable by SlurmUser's group only where the admin made the user
directory setgid with that group (docs/admin.md); nothing else of the user's
storage is. No phone number ever travels in a job: `scontrol show job`
shows a job's fields to others on a site without `PrivateData=jobs`.

The job's Extra field carries only the outcome the batch script reports when
it ends (`gear;status=completed;exit=0;saved=1;size=4096`), since only the job
knows what it saved; gear-mailprog checks every value before it prints one.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.errors import GearError, UsageError
from ..base.facts import NOTIFY, USERS
from ..base.names import check_email, check_phone

if TYPE_CHECKING:
    from ..site.model import MailConfig, Site
    from ..storage.disk import UserStorage

EVENTS = ("begin", "end", "fail")
ALWAYS_ON = ("end", "fail")  # email cannot be turned off (docs/notifications.md)
SETTINGS_FILE = "settings.json"
OLD_SETTINGS_FILE = "notify.json"   # before settings moved into notify/ (read, then replaced)
MAX_FILE_BYTES = 4096               # anything gear-mailprog reads is at most this
EXTRA_TAG = "gear"  # first word of the job's Extra field when gear wrote it

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
    def from_json(cls, data: Any) -> Settings:
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


def settings_path(storage: UserStorage) -> Path:
    return storage.notify_dir / SETTINGS_FILE


def load_settings(storage: UserStorage) -> Settings:
    """The user's settings; defaults when none were saved. Raises GearError on a broken file."""
    for path in (settings_path(storage), storage.root / OLD_SETTINGS_FILE):
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise GearError(f"cannot read {path}: {exc.strerror}") from None
        return parse_settings(text, str(path))
    return Settings()


def parse_settings(text: str, where: str) -> Settings:
    try:
        return Settings.from_json(json.loads(text))
    except (ValueError, UsageError) as exc:
        raise GearError(f"{where} is not valid ({exc}); set it again with gear notify") from None


def save_settings(storage: UserStorage, settings: Settings) -> Path:
    """Write the settings atomically (temporary file, then rename), readable as notify/ is."""
    path = settings_path(storage)
    _write_private(storage, path, json.dumps(settings.to_json(), indent=2) + "\n")
    try:
        (storage.root / OLD_SETTINGS_FILE).unlink()
    except FileNotFoundError:
        pass
    return path


def execution_proof_path(storage: UserStorage, container: str, number: int) -> Path:
    return storage.notify_dir / "executions" / container / str(number)


def register_execution(storage: UserStorage, container: str, number: int, token: str) -> Path:
    """Leave the proof that the owner submitted container/number with this token (before sbatch)."""
    path = execution_proof_path(storage, container, number)
    for directory in (path.parent.parent, path.parent):
        _make_notify_subdir(storage, directory)
    _write_private(storage, path, token + "\n")
    return path


def forget_execution(storage: UserStorage, container: str, number: int) -> None:
    """Take back the proof of an execution that was never submitted."""
    try:
        execution_proof_path(storage, container, number).unlink()
    except FileNotFoundError:
        pass


def sweep_proof_path(storage: UserStorage, container: str, first: int, last: int) -> Path:
    return storage.notify_dir / "sweeps" / container / f"{first}-{last}"


def register_sweep(storage: UserStorage, container: str, first: int, last: int, token: str) -> Path:
    """Leave the proof that the owner submitted the sweep container/first-last with this token (before sbatch)."""
    path = sweep_proof_path(storage, container, first, last)
    for directory in (path.parent.parent, path.parent):
        _make_notify_subdir(storage, directory)
    _write_private(storage, path, token + "\n")
    return path


def forget_sweep(storage: UserStorage, container: str, first: int, last: int) -> None:
    """Take back the proof of a sweep that was never submitted (and its directories, if now empty)."""
    path = sweep_proof_path(storage, container, first, last)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    for directory in (path.parent, path.parent.parent):
        try:
            directory.rmdir()
        except OSError:
            return


def forget_container(storage: UserStorage, container: str) -> None:
    """Remove the proofs of a deleted container's executions and sweeps."""
    from ..storage.disk import remove_tree

    for kind in ("executions", "sweeps"):
        directory = storage.notify_dir / kind / container
        if directory.exists() or directory.is_symlink():
            remove_tree(directory)


def _make_notify_subdir(storage: UserStorage, directory: Path) -> None:
    mode = stat.S_IMODE(storage.ensure_notify_dir().stat().st_mode) & 0o777
    previous = os.umask(0o027)
    try:
        directory.mkdir(mode=mode, exist_ok=True)
    finally:
        os.umask(previous)


def _write_private(storage: UserStorage, path: Path, text: str) -> None:
    """Temporary file, then rename; group-readable exactly when notify/ is."""
    readable = stat.S_IMODE(storage.ensure_notify_dir().stat().st_mode) & 0o050 == 0o050
    fd, tmp = tempfile.mkstemp(prefix=".gear.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o640 if readable else 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# --- what gear-mailprog reads (as SlurmUser) ---

class NotReadable(Exception):
    """A file of the owner's notify/ that gear-mailprog cannot trust or read; the reason is the message."""


# O_PATH: SlurmUser may only pass through the user directory (0710), not list it,
# and a directory opened for reading would need the read bit.
_NOFOLLOW_DIR = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def read_owned(storage_root: Path, user: str, uid: int, parts: list[str]) -> str:
    """The text of users/<user>/notify/<parts…>, only if every step from the user directory
    down is owned by `uid`, no step is a symlink, and the file is a small regular file.

    The owner controls everything below their directory and SlurmUser can read
    things the owner cannot (Slurm's state, the mail log): a symlink or a
    FIFO planted there must not make gear-mailprog read or hang on anything else.
    """
    fds: list[int] = []
    try:
        fd = os.open(Path(storage_root) / USERS, _NOFOLLOW_DIR)
        fds.append(fd)
        for name in [user, NOTIFY, *parts[:-1]]:
            fd = os.open(name, _NOFOLLOW_DIR, dir_fd=fd)
            fds.append(fd)
            if os.fstat(fd).st_uid != uid:
                raise NotReadable(f"{name}/ is not owned by the job's owner")
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
        fds.append(fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != uid:
            raise NotReadable(f"{parts[-1]} is not a regular file owned by the job's owner")
        data = os.read(fd, MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise NotReadable("no such file") from None
    except OSError as exc:
        raise NotReadable(exc.strerror or type(exc).__name__) from None
    finally:
        for opened in reversed(fds):
            os.close(opened)
    if len(data) > MAX_FILE_BYTES:
        raise NotReadable(f"{parts[-1]} is larger than {MAX_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise NotReadable(f"{parts[-1]} is not UTF-8") from None


def site_address(mail: MailConfig, user: str) -> str:
    """The address the site's rule gives `user` (for example {user}@example.org)."""
    return check_email(mail.address.format(user=user), f"address from the site's rule for user {user!r}")


def sms_possible(mail: MailConfig) -> bool:
    """The site can send SMS: mail is on and it has a gateway."""
    return mail.enabled and bool(mail.sms_email or mail.sms_http)


@dataclass
class JobMail:
    """What one execution's batch script needs for notifications."""

    sbatch_options: list[tuple[str, str]] = field(default_factory=list)
    # Extra field value the script extends with the outcome; None: report nothing.
    report_extra: str | None = None


def for_job(site: Site, user: str) -> JobMail:
    """The mail options of a new execution of `user`.

    Never fails the submission: a broken settings file falls back to the
    site's defaults (email by the site's rule, end and fail). The SMS number
    is not among them: gear-mailprog reads it from the owner's settings.
    """
    mail = site.mail
    if not mail.enabled:
        return JobMail()  # a site with mail switched off loses only the message
    from ..storage.disk import UserStorage

    try:
        settings = load_settings(UserStorage(site.storage_root, user))
    except GearError:
        settings = Settings()
    try:
        address = settings.email or site_address(mail, user)
    except UsageError:
        return JobMail()  # the site's rule gives this user no valid address: no mail rather than no job
    options = [("mail-type", ",".join(e.upper() for e in settings.events)), ("mail-user", address)]
    return JobMail(options, report_extra=EXTRA_TAG if mail.job_extra else None)


def parse_extra(text: str | None) -> dict[str, str]:
    """`gear;status=completed;…` -> its fields; {} if gear did not write it."""
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
