"""Notifications that could not be delivered yet: kept, retried, given up on in the end.

"Email always" holds through a mail server that is down for a while: a mail
or text that fails for a reason that may pass (no connection, a timeout, a
4xx answer) is kept in `<state_dir>/spool/` (SlurmUser's, 0700; one 0600
JSON file per message) and retried with backoff by gear-mailprog: by the
child that failed to send it, for up to an hour, and by every later call
after that, until it is delivered or a day old. A refusal that will not pass
(a 5xx answer) is not retried. Every fate is a line in the mail log.

Only one process retries at a time (a lock file); each message is claimed
with its own lock, so two callers never send it twice.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

KEEP_SECONDS = 24 * 3600          # a message is given up on this long after its first try
RETRY_DELAYS = (5, 10, 20, 40, 60, 120, 300)  # seconds before the 2nd, 3rd … try; then every 300 s
RETRIER_SECONDS = 3600            # how long one gear-mailprog child stays to retry


def is_temporary(exc: BaseException) -> bool:
    """Whether a failed delivery may succeed later (then it is kept and retried)."""
    import smtplib
    import urllib.error

    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return any(code < 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code < 500
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code == 429
    return isinstance(exc, (OSError, TimeoutError, smtplib.SMTPException))


def next_delay(attempts: int) -> int:
    return RETRY_DELAYS[min(attempts - 1, len(RETRY_DELAYS) - 1)]


class Spool:
    def __init__(self, state_dir: str | Path):
        self.directory = Path(state_dir) / "spool"

    def keep(self, entry: dict[str, Any], now: float | None = None) -> Path:
        """Keep `entry` (kind, recipients, content, what, job) for a retry; raises OSError if it cannot."""
        now = time.time() if now is None else now
        entry = {**entry, "first": entry.get("first", now), "attempts": entry.get("attempts", 0) + 1}
        entry["next"] = now + next_delay(entry["attempts"])
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = entry.get("file") or f"{int(now)}-{secrets.token_hex(6)}.json"
        entry["file"] = name
        tmp = self.directory / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(entry, out)
        os.replace(tmp, self.directory / name)
        return self.directory / name

    def entries(self) -> list[Path]:
        try:
            return sorted(p for p in self.directory.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
        except FileNotFoundError:
            return []

    def flush(self, send: Callable[[dict[str, Any]], None], log: Callable[[str], None],
              now: float | None = None) -> float | None:
        """Try every message that is due; returns when the next one is due (None: spool empty)."""
        soonest: float | None = None
        for path in self.entries():
            now_ = time.time() if now is None else now
            with _claimed(path) as entry:
                if entry is None:
                    continue          # another process has it, or it is gone
                what = f"{entry.get('what', 'message')} to {', '.join(entry.get('to', []))}"
                if now_ - entry.get("first", now_) > KEEP_SECONDS:
                    path.unlink(missing_ok=True)
                    log(f"{what} given up: not delivered in {KEEP_SECONDS // 3600} h "
                        f"({entry.get('attempts')} tries; job {entry.get('job', '?')})")
                    continue
                if entry.get("next", 0) > now_:
                    soonest = min(soonest or entry["next"], entry["next"])
                    continue
                try:
                    send(entry)
                except Exception as exc:
                    if not is_temporary(exc):
                        path.unlink(missing_ok=True)
                        log(f"{what} NOT sent, given up: {type(exc).__name__}: {exc}")
                        continue
                    kept = self.keep(entry, now_)
                    retry = json.loads(kept.read_text())["next"]
                    soonest = min(soonest or retry, retry)
                    log(f"{what} NOT sent on try {entry.get('attempts', 0) + 1}: {type(exc).__name__}; "
                        f"kept to retry (job {entry.get('job', '?')})")
                else:
                    path.unlink(missing_ok=True)
                    log(f"{what} sent on try {entry.get('attempts', 0) + 1} (job {entry.get('job', '?')})")
        return soonest

    @contextmanager
    def retrier(self) -> Iterator[bool]:
        """True for the one process that may stay to retry; False for any other."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.directory / ".retrier.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def retry(self, send: Callable[[dict[str, Any]], None], log: Callable[[str], None],
              seconds: float = RETRIER_SECONDS, sleep: Callable[[float], None] = time.sleep) -> None:
        """Stay up to `seconds`, trying each message when it is due, while any is left."""
        deadline = time.monotonic() + seconds
        with self.retrier() as alone:
            if not alone:
                return
            while True:
                due = self.flush(send, log)
                if due is None or time.monotonic() >= deadline:
                    return
                sleep(max(1.0, min(due - time.time(), deadline - time.monotonic())))


@contextmanager
def _claimed(path: Path) -> Iterator[dict[str, Any] | None]:
    """The entry, locked for this process; None if another holds it or it is gone or unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        if not os.path.exists(path):   # sent and removed by the process that held it before us
            yield None
            return
        try:
            entry = json.loads(os.read(fd, 1 << 20))
        except ValueError:
            entry = None
        yield entry if isinstance(entry, dict) else None
    finally:
        os.close(fd)
