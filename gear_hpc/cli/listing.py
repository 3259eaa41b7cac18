"""What `gear ls` and `gear status` print, made from plain rows.

Shared by the click commands (inspect.py) and the fast path (fastpath.py),
which must print byte for byte the same; nothing here imports click.
"""

from __future__ import annotations

import time

from ..base.sizes import human_count, human_rate
from .output import human_size, json_text, table_lines

# Annotations only: importing typing would cost the fast path (fastpath.py) 2 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# `gear status` without an id shows open executions and those that ended this recently.
RECENT_SECONDS = 24 * 3600

EXECUTION_HEADERS = ["EXECUTION", "STATUS", "EXIT", "TYPE", "IMAGE", "JOB", "SUBMITTED", "ENDED", "SIZE", "MESSAGE"]
NO_CONTAINERS = "no containers yet; start one with `gear run`"
NO_RECENT = "no open or recent executions (see `gear ls` and `gear history CONTAINER`)"


def recent_since() -> str:
    """The ledger's time (UTC) RECENT_SECONDS ago: executions that ended since are recent."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - RECENT_SECONDS))


def execution_rows(items: list[dict[str, Any]]) -> list[list[Any]]:
    """Table rows of executions given as their JSON (ledger.Execution.to_json()).

    SIZE is what the disk holds for the execution (disk_bytes), blank until it closes.
    """
    return [[e["id"], e["status"], "" if e["exit_code"] is None else e["exit_code"], e["compute_type"], e["image"],
             e["slurm_job_id"], e["submitted_at"], e["ended_at"], human_size(e.get("disk_bytes")), e["message"] or ""]
            for e in items]


def status_text(items: list[dict[str, Any]], as_json: bool) -> str:
    """`gear status` of these executions: their JSON, each with its "progress" (None unless copying)."""
    if as_json:
        return json_text(items)
    if not items:
        return NO_RECENT
    lines = table_lines(EXECUTION_HEADERS, execution_rows(items))
    for e in items:
        progress = e["progress"]
        if progress:
            files = f", {progress['files']}/{progress['files_total']} files" if progress.get("files_total") else ""
            lines.append(f"{e['id']}: {progress['phase']} {progress.get('percent', 0)}%: "
                         f"{human_size(progress.get('bytes'))}{files}, "
                         f"{human_rate(progress['mb_per_s'] * 1e6)}, {human_count(progress['files_per_s'])} files/s")
        if e["note"]:
            lines.append(f"{e['id']}: {e['note']}")
    return "\n".join(lines)


def ls_text(summaries: list[dict[str, Any]], as_json: bool) -> str:
    """`gear ls` of these container summaries (ledger_rows.container_summaries())."""
    if as_json:
        return json_text(summaries)
    if not summaries:
        return NO_CONTAINERS
    # SIZE: what the disk holds (blocks, hard links once); APPARENT: the bytes of the files.
    return "\n".join(table_lines(
        ["CONTAINER", "EXECUTIONS", "LAST", "LAST STATUS", "SIZE", "APPARENT", "VISIBILITY", "GROUP", "CREATED"],
        [[s["name"], s["executions"], f"{s['name']}/{s['last_number']}" if s["last_number"] else "",
          s["last_status"] or "", human_size(s["disk_bytes"]), human_size(s["size_bytes"]), s["visibility"],
          s["group"] or "", s["created_at"]]
         for s in summaries]))


def history_text(items: list[dict[str, Any]], as_json: bool) -> str:
    """`gear history [USER/]C`: executions as JSON (Execution.to_json()), with the one each continued."""
    if as_json:
        return json_text(items)
    rows = execution_rows(items)
    return "\n".join(table_lines(EXECUTION_HEADERS[:1] + ["PARENT"] + EXECUTION_HEADERS[1:],
                                 [row[:1] + [item.get("parent") or ""] + row[1:]
                                  for row, item in zip(rows, items, strict=True)]))


def shared_history(owner: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A shared container's closed executions, named as the reader names them (USER/C/N)."""
    for item in items:
        item["id"] = f"{owner}/{item.get('container')}/{item.get('number')}"
    return items


def shared_ls_text(owner: str, found: dict[str, list[dict[str, Any]]], as_json: bool) -> str:
    """`gear ls USER/` [--json]."""
    if as_json:
        return json_text(found)
    if not found["containers"] and not found["datasets"]:
        return f"{owner} shares nothing with you"
    return shared_listing_text(owner, found)


def shared_listing_text(owner: str, found: dict[str, list[dict[str, Any]]]) -> str:
    """`gear ls USER/`: what USER shares with you (containers/shared_view.listing()); only closed executions count."""
    lines: list[str] = []
    if found["containers"]:
        lines += table_lines(
            ["CONTAINER", "EXECUTIONS", "LAST", "LAST STATUS", "SIZE", "VISIBILITY", "GROUP", "CREATED"],
            [[f"{owner}/{s['name']}", s.get("executions", 0),
              f"{owner}/{s['name']}/{s['last_number']}" if s.get("last_number") else "", s.get("last_status") or "",
              human_size(s.get("disk_bytes")), s.get("visibility", ""), s.get("group") or "", s.get("created_at", "")]
             for s in found["containers"]])
    if found["datasets"]:
        if lines:
            lines.append("")
        lines += table_lines(
            ["DATASET", "VERSIONS", "LATEST", "SIZE", "VISIBILITY", "GROUP", "CREATED"],
            [[f"{owner}/{d['name']}", d.get("versions", 0),
              f"{owner}/{d['name']}@{d['latest']}" if d.get("latest") else "", human_size(d.get("size_bytes")),
              d.get("visibility", ""), d.get("group") or "", d.get("created_at", "")]
             for d in found["datasets"]])
    return "\n".join(lines)
