"""Every fact the fast path of `gear ls`/`gear status` reads, in one leaf module the rest of gear imports from.

The status names, the names of a user's directories, the ledger's schema
version and the reading of the site record (site/memo.py) live here, once:
the ledger, the status folding, the mail program and `UserStorage` read them
from this module, as does cli/fastpath.py. Standard library only (os, pwd,
marshal, sys) and no pathlib or typing: each module the fast path imports
costs it about 0.1 ms inside the cluster, so this is one module, not four.
"""

from __future__ import annotations

import marshal
import os
import pwd
import sys

# Annotations only: importing typing would cost the fast path (cli/fastpath.py) 2 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# ---- The names of an execution's statuses and of a Slurm job's phases: one list for all of gear.

# An execution is open while gear may still change it.
SUBMITTING = "submitting"  # recorded, not yet (known to be) with Slurm
QUEUED = "queued"
SYNCING = "syncing"        # the job copies the code into the working directory
RUNNING = "running"
SAVING = "saving"
OPEN_STATUSES = (SUBMITTING, QUEUED, SYNCING, RUNNING, SAVING)

COMPLETED = "completed"
FAILED = "failed"
TERMINATED = "terminated"
TIMEOUT = "timeout"
LOST = "lost"              # gear's verdict on confirmed evidence (docs/design.md), never a job's
CLOSED_STATUSES = (COMPLETED, FAILED, TERMINATED, TIMEOUT, LOST)

# What a running job's status records name (its phases), and what its final record may say.
JOB_PHASES = (SYNCING, RUNNING, SAVING)
REPORTED_BY_JOB = tuple(status for status in CLOSED_STATUSES if status != LOST)

# A Slurm job's phase, as slurm.jobs.SlurmJob.phase gives it.
JOB_PENDING = "pending"
JOB_RUNNING = "running"
JOB_ENDED = "ended"


# ---- The names of a user's directories on the site's storage (the layout is drawn in storage/disk.py).
# `UserStorage` builds its paths from the same names as user_paths(), so the two cannot look in different places.

USERS = "users"
CONTAINERS = "containers"
DATASETS = "datasets"
NOTIFY = "notify"
LEDGER = "ledger.sqlite"


def current_user() -> str:
    """The login name of the real uid (not $USER, which anyone can set)."""
    return pwd.getpwuid(os.getuid()).pw_name


def user_paths(storage_root: str, user: str) -> dict[str, str]:
    """The paths of storage.disk.UserStorage(storage_root, user) that the fast path looks at."""
    users = os.path.join(storage_root, USERS)
    root = os.path.join(users, user)
    return {"users": users, "root": root, "containers": os.path.join(root, CONTAINERS),
            "datasets": os.path.join(root, DATASETS), "ledger": os.path.join(root, LEDGER)}


# ---- The ledger's schema: its steps, in order (ledger/migrations.py holds each step's SQL,
# as the function `_mNNN_<name>`); their number is the schema version, a ledger's `user_version`.

MIGRATION_NAMES = ("initial", "datasets", "container_totals", "ended_at_index", "disk_bytes", "sharing")
SCHEMA_VERSION = len(MIGRATION_NAMES)


# ---- The user's record of the site files (its format, writing and why it is safe: site/memo.py).

DEFAULT_CONFIG_DIR = "/etc/gear"
SITE_FILES = ("site.yaml", "compute-types.yaml", "images.yaml")
MEMO_FORMAT = "gear-site-2"
# The validation rules, under gear_hpc/: a change to any of them invalidates the record.
_RULES = ("site/loading.py", "site/checks.py", "site/model.py", "base/names.py")  # names.py checks addresses


def config_dir_name() -> str:
    """The site configuration directory, as site.config_dir() chooses it."""
    return os.environ.get("GEAR_SITE_CONFIG") or DEFAULT_CONFIG_DIR


def cache_dir() -> str | None:
    """The user's cache of site files, where the record is kept (None: no cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or (os.path.expanduser("~/.cache") if os.environ.get("HOME") else "")
    return os.path.join(base, "gear-hpc", "site") if base else None


def ledger_snapshot_path() -> str | None:
    """Where the fast path of `gear status`/`gear ls` keeps the rows it last read, while the ledger is
    unchanged (ledger/snapshot.py)."""
    directory = cache_dir()
    return os.path.join(os.path.dirname(directory), "ledger-snapshot.marshal") if directory else None


def open_hint_path() -> str | None:
    """Where the fast path of `gear status` notes that the user's executions were open when it last
    looked: a hint to ask Slurm first thing, never a fact (cli/fastpath.py)."""
    directory = cache_dir()
    return os.path.join(os.path.dirname(directory), "open-executions") if directory else None


def memo_path() -> str | None:
    """Where the record is kept (None when there is no cache directory: then nothing is remembered)."""
    directory = cache_dir()
    return os.path.join(directory, "last-valid.marshal") if directory else None


def memo_key(directory: str) -> tuple[str, str, str, tuple[str | int, ...]]:
    """The record's first four fields: what, beside the texts, decides what a load gives."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # gear_hpc/ (this is gear_hpc/base/facts.py)
    code: list[str | int] = [sys.version]
    for name in _RULES:
        info = os.stat(os.path.join(package, name))
        code += [info.st_mtime_ns, info.st_size]
    return (MEMO_FORMAT, os.path.abspath(directory), os.environ.get("GEAR_STORAGE_ROOT") or "", tuple(code))


def read_memo() -> tuple[Any, ...] | None:
    """The record as stored, if it has the record's shape; else None."""
    path = memo_path()
    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            stored = marshal.loads(handle.read())
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if (type(stored) is not tuple or len(stored) != 6 or stored[0] != MEMO_FORMAT or type(stored[4]) is not tuple
            or len(stored[4]) != len(SITE_FILES)
            or any(type(entry) is not tuple or len(entry) != 2 or type(entry[0]) is not str for entry in stored[4])):
        return None
    return stored


def valid_storage_root() -> str | None:
    """The storage root site.load() gives now, if it validated exactly these files before; else None."""
    directory = config_dir_name()
    stored = read_memo()
    if stored is None:
        return None
    try:
        for name, (recorded_text, _data) in zip(SITE_FILES, stored[4], strict=True):
            # Decoded as site.load() decodes them (Path.read_text: the locale's encoding).
            with open(os.path.join(directory, name)) as handle:
                if handle.read() != recorded_text:
                    return None
        key = memo_key(directory)
    except (OSError, ValueError):
        return None
    if stored[:4] != key or type(stored[5]) is not str:
        return None
    return stored[5]
