"""Errors that reach the user as one clear line and an exit code."""

from __future__ import annotations

# Exit codes shared by every command (documented in docs/cli.md).
EXIT_ERROR = 1
EXIT_USAGE = 2


class GearError(Exception):
    """An error the user can act on; the message names the problem."""

    exit_code = EXIT_ERROR


class UsageError(GearError):
    """Bad input on the command line (exit 2, like click's own usage errors)."""

    exit_code = EXIT_USAGE


class NotFound(GearError):
    """A container, execution, type or image that does not exist."""


class SiteConfigError(GearError):
    """The site configuration is missing or wrong; names the file and key."""


class SlurmError(GearError):
    """Slurm refused, failed or did not answer."""


# The ledger the command has open (set by ledger.Ledger and the fast path), so
# that an SQLite error, which does not carry its file, can name it.
ledger_in_use: str | None = None

STORAGE_FULL_HINT = "free space with `gear delete CONTAINER` or `gear data rm NAME@V` (see `gear du`)"


def is_disk_full(exc: BaseException) -> bool:
    """The storage (or the user's quota) is full: an OSError, or SQLite's word for it."""
    import errno
    import sqlite3

    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)


def describe(exc: BaseException) -> tuple[str, int] | None:
    """The one line a failure shows the user (without "gear: error: ") and its exit code.

    The one place where exceptions become messages: the click path
    (cli/group.py) and the fast path (cli/fastpath.py) both ask here. None:
    an exception gear has no words for (a bug), which the caller still shows
    as one line.
    """
    import errno
    import sqlite3

    if isinstance(exc, GearError):
        return str(exc), exc.exit_code
    ledger = ledger_in_use or "your ledger"
    if isinstance(exc, sqlite3.Error):
        text = str(exc)
        lowered = text.lower()
        if "locked" in lowered or "busy" in lowered:
            return (f"the ledger {ledger} is locked by another gear command (or a program holding it); "
                    "try again", EXIT_ERROR)
        if "disk is full" in lowered:
            return f"your gear storage is full (the ledger {ledger} cannot grow): {STORAGE_FULL_HINT}", EXIT_ERROR
        if "readonly" in lowered:
            return (f"the ledger {ledger} cannot be written (it, or its directory, is read-only); give them back "
                    f"your write permission (chmod u+w) or ask your admin", EXIT_ERROR)
        if "unable to open" in lowered:
            return (f"cannot open the ledger {ledger} (check that it and its directory are yours and "
                    "readable and writable)", EXIT_ERROR)
        if "disk i/o error" in lowered:
            return (f"could not read or write the ledger {ledger} (disk I/O error: is the storage full, a quota "
                    f"reached or a file size limit (`ulimit -f`) set?); nothing was changed", EXIT_ERROR)
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
            return (f"the ledger {ledger} is damaged ({text}); move it aside (mv {ledger} {ledger}.broken) and "
                    "gear starts a new, empty one, or restore it from a backup", EXIT_ERROR)
        return f"the ledger {ledger}: {text}", EXIT_ERROR
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else "a file"
        if exc.filename2 is not None:
            where = f"{exc.filename} -> {exc.filename2}"
        why = exc.strerror or str(exc)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            root = ledger_in_use.rsplit("/", 1)[0] + "/" if ledger_in_use else None
            if root is None or str(exc.filename or "").startswith(root):
                return f"your gear storage is full ({why}: {where}): {STORAGE_FULL_HINT}", EXIT_ERROR
            return f"no space left on the device of {where}; free space there and try again", EXIT_ERROR
        if exc.errno == errno.EFBIG:
            return f"{where}: file too large (is a file size limit, `ulimit -f`, set?)", EXIT_ERROR
        if exc.errno in (errno.EACCES, errno.EPERM):
            return (f"permission denied: {where}; gear acts as you and cannot use it (check its permissions, "
                    "or name a path of your own)", EXIT_ERROR)
        if exc.errno == errno.EROFS:
            return f"{where} is on a read-only file system", EXIT_ERROR
        return f"{where}: {why}", EXIT_ERROR
    if isinstance(exc, UnicodeError):
        return (f"a value is not valid UTF-8 text ({getattr(exc, 'reason', exc)}); give names, paths and messages as UTF-8",
                EXIT_USAGE)
    return None


def one_line(exc: BaseException) -> tuple[str, int]:
    """`describe`, with a line for what it does not know too: never a traceback."""
    described = describe(exc)
    if described is None:
        described = (f"unexpected {type(exc).__name__}: {exc} (a bug in gear; please report it with the command "
                     "you ran)", EXIT_ERROR)
    message, code = described
    if isinstance(exc, GearError):
        return message, code
    # One line, whatever a file name or SQLite's text held.
    return " ".join(message.splitlines()), code
