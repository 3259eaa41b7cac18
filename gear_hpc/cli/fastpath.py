"""`gear ls` and `gear status` [--json] without click, when looking changes nothing in the ledger;
`gear ls USER/` and `gear history USER/C` [--json] too (another user's indexes, no ledger).

These two commands run on busy login nodes, often in loops, and must start
in about the time of the interpreter itself. Their click path costs click,
the site's validation (dataclasses, regular expressions), pathlib, the
ledger's Execution dataclass and reconcile.refresh(); but most of the time
refresh() changes nothing (nothing is open, or the open jobs are where they
were), and all that is left is reading the ledger and one squeue.

So `main()` first calls `run()` here. It prints only when that is certain to
print what the click path prints (through the same listing.py and output.py)
and to leave every file as the click path would:

- the arguments are exactly `ls`, `ls --json`, `status` or `status --json`;
- site.load() validated exactly the current site files before (the record of
  site/memo.py, read in base/facts.py);
- the user's directory, its containers/ and datasets/, and the ledger exist
  as UserStorage.ensure() and Ledger() would leave them (nothing to create);
- the ledger is at the current schema (nothing to migrate);
- refresh() would change nothing: every open execution is as one squeue
  answer and its status record leave it (executions/open_fold.py; none is
  "submitting", which refresh() may adopt or discard), and no execution
  called lost in the last day has a final record that came late (which
  would correct it). With open executions squeue is asked once, and a
  decline hands its answer to the click path (`squeue_answer`).

Otherwise, or on any error, it returns None and the click path runs as if
this module did not exist. The ledger is opened read-only (SQLite `mode=ro`,
so it cannot write, not even to roll back a crashed writer's journal: that
fails and falls back), with the same busy timeout as ledger.Ledger, and read
in one transaction. The rows read are kept in the user's cache for the next
look, which takes them instead of loading SQLite while the ledger's header
says no write was committed since (ledger/snapshot.py).
"""

from __future__ import annotations

import os
import stat

from . import LOOKS as ARGUMENTS, ask_squeue_on_hint  # the package gear_hpc.cli, loaded before this module

# Annotations only: importing typing would cost the fast path (fastpath.py) 2 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The ledger being read, for the "locked" message: base/errors.py is imported only to report.
_ledger_path: str | None = None

NOT_ASKED: Any = object()


def run(argv: list[str], early: Any = NOT_ASKED) -> int | None:
    """Print `gear ls`/`gear status` and return the exit code, or None: "not handled, use click".

    `early`: the squeue cli.main started on the hint before loading anything else (None: it did not);
    by default it is started here.
    """
    global squeue_answer
    squeue_answer = None
    shared = _shared_arguments(argv)
    if argv not in ARGUMENTS and shared is None:
        return None
    if early is NOT_ASKED:
        early = ask_squeue_on_hint() if shared is None else None
    try:
        text = render_shared(*shared) if shared is not None else render(argv[0], len(argv) == 2, early)
    except Exception as exc:
        if early is not None:
            early.abandon()
        if _locked(exc):
            # The click path would wait out the busy timeout a second time, then say the same.
            return _report(exc)
        return None  # the click path does it again, and reports any problem its own way
    if text is None:
        _keep_answer(early)
        return None
    from .output import echo

    try:
        echo(text)
    except BrokenPipeError:
        # As click does (`gear ls | head`): exit 1 quietly, and keep the final
        # flush at exit from complaining about the closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
        return 1
    except Exception as exc:
        return _report(exc)
    return 0


def _locked(exc: Exception) -> bool:
    import sqlite3

    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def _report(exc: BaseException) -> int:
    """One `gear: error: …` line, through the same translation as the click path (errors.one_line)."""
    from ..base import errors
    from .output import echo

    if _ledger_path is not None:
        errors.ledger_in_use = _ledger_path

    message, code = errors.one_line(exc)
    try:
        echo(f"gear: error: {message}", err=True)
    except Exception:
        pass  # stderr itself is gone: the exit code still tells
    return code


# ---- `gear ls USER/` and `gear history USER/C` [--json]: another user's indexes (storage/shared_index.py)

_USER_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz_")
_USER_REST = _USER_FIRST | frozenset("0123456789-")
_NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_NAME_REST = _NAME_FIRST | frozenset("._-")


def _shared_arguments(argv: list[str]) -> tuple[str, str, str | None, bool] | None:
    """(command, owner, container or None, as_json) for the shared listings the fast path prints, else None.

    Names are checked as base/names.py checks them, without its regular
    expressions (3 ms to import): anything they would refuse goes to the
    click path, which says why.
    """
    as_json = argv[-1:] == ["--json"]
    words = argv[:-1] if as_json else argv
    if len(words) != 2 or words[0] not in ("ls", "history"):
        return None
    owner, slash, rest = words[1].partition("/")
    if not slash or not (0 < len(owner) <= 32 and owner[0] in _USER_FIRST and all(c in _USER_REST for c in owner)):
        return None
    if words[0] == "ls":
        return ("ls", owner, None, as_json) if rest == "" else None
    if not (0 < len(rest) <= 64 and rest[0] in _NAME_FIRST and all(c in _NAME_REST for c in rest)):
        return None
    return "history", owner, rest, as_json


def render_shared(command: str, owner: str, container: str | None, as_json: bool) -> str | None:
    """What `gear ls OWNER/` or `gear history OWNER/C` prints, or None if the click path must run
    (OWNER is you, nothing is shared with you there, or anything unexpected: it says why)."""
    from ..base.facts import CONTAINERS, USERS, current_user, valid_storage_root

    storage_root = valid_storage_root()
    if storage_root is None or owner == current_user():
        return None
    from ..storage import shared_index
    from . import listing

    user_root = os.path.join(storage_root, USERS, owner)
    if command == "ls":
        return listing.shared_ls_text(owner, shared_index.listing(user_root), as_json)
    assert container is not None
    found = shared_index.closed_executions(os.path.join(user_root, CONTAINERS, container))
    if found is None:
        return None   # the click path says "not shared with you"
    return listing.history_text(listing.shared_history(owner, found), as_json)


def render(command: str, as_json: bool, early: Any = None) -> str | None:
    """What `gear <command> [--json]` prints, or None if the click path must run.

    `early`: a squeue already started (cli.ask_squeue_on_hint), finished or abandoned here unless None is returned.
    """
    from ..base.facts import current_user, user_paths, valid_storage_root

    storage_root = valid_storage_root()
    if storage_root is None:
        return None
    paths = user_paths(storage_root, current_user())
    # What UserStorage.ensure() checks, and nothing for it to create.
    info = os.lstat(paths["root"])
    if not (os.path.isdir(paths["users"]) and stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
            and os.path.isdir(paths["containers"]) and os.path.isdir(paths["datasets"])
            and os.path.isfile(paths["ledger"])):
        return None
    return _read_ledger(paths["ledger"], command, as_json, early)


def _note_open(is_open: bool) -> None:
    """Keep the hint of cli.ask_squeue_on_hint() true for the next look (best effort: it only saves time)."""
    from ..base.facts import open_hint_path

    hint = open_hint_path()
    if hint is None or os.path.exists(hint) == is_open:
        return
    try:
        if is_open:
            os.makedirs(os.path.dirname(hint), mode=0o700, exist_ok=True)
            os.close(os.open(hint, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        else:
            os.unlink(hint)
    except OSError:
        pass


def _read_ledger(path: str, command: str, as_json: bool, early: Any = None) -> str | None:
    from ..base.facts import OPEN_STATUSES, SUBMITTING
    from . import listing

    query: Any = early
    try:
        since = listing.recent_since()
        read = _ledger_rows(path, since)
        if read is None:
            return None   # the schema is not the current one: the click path migrates
        rows, summaries = read
        open_rows = [(row["container"], row["number"], row["status"], row["note"], row["started_at"],
                      row["slurm_job_id"], row["workdir"]) for row in rows if row["status"] in OPEN_STATUSES]
        if any(status == SUBMITTING for _, _, status, *_ in open_rows):
            # A command died mid-submission, or is still submitting: refresh() adopts or discards it.
            _keep_answer(query)
            return None
        from ..executions import open_fold

        # refresh() also reads the status record of each execution called lost in the last day
        # (reconcile.LOST_CORRECTION_WINDOW, a test checks): a final record that came late corrects it.
        for row in rows:
            if row["status"] == "lost" and open_fold.corrects_lost(open_fold.read_status_record(row["workdir"])):
                _keep_answer(query)
                return None
        _note_open(bool(open_rows))
        if open_rows and query is None:
            from ..slurm import queue

            query = queue.start_query()
        elif not open_rows and query is not None:
            query.abandon()   # asked on the hint: nothing is open now

        if command == "ls":
            if open_rows and _open_rows_changed(query, open_rows) is None:
                return None
            return listing.ls_text(summaries, as_json)
        from ..ledger import rows as ledger_rows

        items: list[dict[str, Any]] = []
        for row in rows:
            # A table shows no JSON column: decoded only for --json.
            item = ledger_rows.execution_json(ledger_rows.execution_values(row, decode=as_json))
            item["progress"] = None
            items.append(item)
        if open_rows:
            progress = _open_rows_changed(query, open_rows)
            if progress is None:
                return None
            for item in items:
                item["progress"] = progress.get(item["id"])
        return listing.status_text(items, as_json)
    finally:
        if query is not None:
            query.abandon()


def _ledger_rows(path: str, since: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """The ledger's executions open or ended since `since` (as ledger.executions(statuses=OPEN_STATUSES,
    ended_since=since) orders them) and its container summaries; None if its schema is not the current one.

    From the snapshot the last look kept (ledger/snapshot.py) while the ledger's header reads as it did
    then; else from SQLite, and kept for the next look.
    """
    from ..base.facts import OPEN_STATUSES, SCHEMA_VERSION, ledger_snapshot_path
    from ..ledger import snapshot

    key = snapshot.header_key(path)
    kept_at = ledger_snapshot_path()
    if key is not None and int.from_bytes(key[4], "big") != SCHEMA_VERSION:
        return None
    if key is not None and kept_at is not None:
        kept = snapshot.load(kept_at, key)
        rows = None if kept is None else snapshot.visible(kept, OPEN_STATUSES, since)
        if kept is not None and rows is not None:
            return rows, kept["summaries"]
    read = _read_sqlite(path, since)
    if read is not None and key is not None and kept_at is not None and snapshot.header_key(path) == key:
        snapshot.save(kept_at, key, since, *read)   # no write committed while it was read
    return read


def _read_sqlite(path: str, since: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """_ledger_rows from the ledger itself: read-only, in one transaction."""
    # The module sqlite3 is, without sqlite3.dbapi2's datetime adapters (1 ms inside the cluster).
    import _sqlite3 as sqlite3

    from ..base.facts import OPEN_STATUSES
    from ..ledger import rows as ledger_rows

    global _ledger_path
    _ledger_path = path  # named by a "locked" message (errors.describe)
    # A URI so that SQLite opens read-only; %, ? and # are the characters it would misread.
    uri = "file:" + path.replace("%", "%25").replace("?", "%3f").replace("#", "%23") + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=ledger_rows.BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {ledger_rows.BUSY_TIMEOUT_MS}")
        # One pass over the ledger: a small page cache spares SQLite allocating (and
        # freeing) pages for the whole file: 1.5 ms less with 10,000 executions.
        conn.execute("PRAGMA cache_size = -64")
        conn.execute("BEGIN")  # one snapshot for the check and the reads
        if conn.execute("PRAGMA user_version").fetchone()[0] != ledger_rows.SCHEMA_VERSION:
            return None
        sql, params = ledger_rows.executions_query(statuses=OPEN_STATUSES, ended_since=since)
        cursor = conn.execute(sql, params)
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor]
        cursor = conn.execute(ledger_rows.CONTAINER_SUMMARIES_SQL)
        summaries = [dict(zip(ledger_rows.CONTAINER_SUMMARY_FIELDS, row, strict=True)) for row in cursor]
        return rows, summaries
    finally:
        conn.close()


# squeue's answer (slurm/queue.parse), kept when the fast path declines after asking: the click
# path then folds the changes it saw from the same answer, and Slurm is asked once (cli/inspect.py).
squeue_answer: dict[str, tuple[str, ...]] | None = None


def _keep_answer(query: Any) -> None:
    """Decline, leaving the click path the answer of a squeue already asked (None: the click path's turn)."""
    global squeue_answer
    if query is not None and not query.finished:
        from ..slurm import queue

        code, stdout, _ = query.finish()
        if code == 0:
            squeue_answer = queue.parse(stdout)


def _open_rows_changed(query: Any, open_rows: list[tuple[Any, ...]]) -> dict[str, Any] | None:
    """The copy progress of each open execution (id -> progress or None), if one squeue answer and
    the status records leave every one as the ledger has it (executions/open_fold.py); else None."""
    global squeue_answer
    from ..executions import open_fold
    from ..slurm import queue

    # The records are read while squeue runs, not after its answer as refresh() reads them. What is printed
    # stays true: it is the ledger and the records as they were before Slurm answered, and an answer that
    # does not fit them (a job that ended, or started, since) is no `unchanged` and goes to the click path,
    # which reads the records again after the answer.
    records = [open_fold.read_status_record(row[-1]) for row in open_rows]
    code, stdout, _ = query.finish()
    if code != 0:
        return None   # the click path asks again, and says what Slurm answered
    jobs = squeue_answer = queue.parse(stdout)
    progress: dict[str, Any] = {}
    for (container, number, status, note, started_at, job_id, _), record in zip(open_rows, records, strict=True):
        job = jobs.get(job_id or "")
        if not open_fold.unchanged(status, note, started_at, None if job is None else queue.phase(job[1]), record):
            return None
        progress[f"{container}/{number}"] = open_fold.progress(record)
    return progress
