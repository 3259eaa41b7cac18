"""The rows `gear status`/`gear ls` last read from a ledger, kept while the ledger stays as it was.

Watching executions means running `gear status` again and again while
nothing in the ledger changes; its fast path (cli/fastpath.py) would load
SQLite (3-4 ms of a 20 ms command on a login node) to read the same rows
each time. SQLite itself says whether a database changed: its header holds a
change counter that every committed write transaction increments (the "file
change counter" at offset 24, kept in rollback-journal mode, which is the
ledger's), and the schema version gear migrates by (`user_version`, offset
60). So the fast path keeps what it read beside the header it read it
under, in the user's own cache, and reads the rows from there while the
header still reads the same:

- the header is read before and after the rows are read from SQLite, and
  the rows kept only if both reads agree (no write committed in between);
- a journal beside the ledger (a write under way, or one a crash left for
  SQLite to roll back) means SQLite must open it: no snapshot is used;
- the ledger's path, device and inode are part of the key (a ledger
  replaced, or another storage root, is another ledger).

The snapshot holds the rows open at the time, or ended since a point the
reader gives (the day `gear status` shows); `visible()` applies a later
point. Standard library only, for the fast path: os and marshal.
"""

from __future__ import annotations

import marshal
import os

# Annotations only: importing typing would cost the fast path (cli/fastpath.py) 2 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FORMAT = "gear-ledger-snapshot-1"
SQLITE_MAGIC = b"SQLite format 3\x00"


def header_key(ledger: str) -> tuple[Any, ...] | None:
    """What identifies this ledger's content now (None: only SQLite can say, see the module's text)."""
    if os.path.lexists(ledger + "-journal") or os.path.lexists(ledger + "-wal"):
        return None
    try:
        fd = os.open(ledger, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        header = os.read(fd, 100)
    finally:
        os.close(fd)
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        return None
    # Bytes 24-27: the change counter; 60-63: user_version; 92-95: the write that last made 24-27 valid.
    return (ledger, info.st_dev, info.st_ino, header[24:28], header[60:64], header[92:96])


def load(path: str, key: tuple[Any, ...]) -> dict[str, Any] | None:
    """The snapshot kept at `path` for this key, or None (none, another key, unreadable)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        # loads() of the whole: marshal.load() of a file reads it in a call per object (17 ms against 3 ms
        # for 1,000 rows).
        kept = marshal.loads(data)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if not isinstance(kept, dict) or kept.get("format") != FORMAT or kept.get("key") != key:
        return None
    return kept


def save(path: str, key: tuple[Any, ...], since: str, rows: list[dict[str, Any]],
         summaries: list[dict[str, Any]]) -> None:
    """Keep the rows read under `key` (best effort: it only saves time). Written beside and renamed, so a
    reader sees a whole snapshot or the last one."""
    data = {"format": FORMAT, "key": key, "since": since, "rows": rows, "summaries": summaries}
    part = f"{path}.{os.getpid()}.part"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, marshal.dumps(data))
        finally:
            os.close(fd)
        os.replace(part, path)
    except (OSError, ValueError):
        try:
            os.unlink(part)
        except OSError:
            pass


def visible(snapshot: dict[str, Any], open_statuses: tuple[str, ...], since: str) -> list[dict[str, Any]] | None:
    """The kept rows open or ended at `since` or later, in their order (what the same query gives now), or
    None if the snapshot does not reach back that far."""
    if since < snapshot["since"]:
        return None
    return [row for row in snapshot["rows"]
            if row["status"] in open_statuses or (row["ended_at"] is not None and row["ended_at"] >= since)]
