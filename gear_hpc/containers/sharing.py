"""Sharing containers and datasets: `gear share`, `gear data share`, and keeping readers' indexes true.

The modes are storage/sharing.py's; this module decides the order of each
change so that **the storage is never more open than the ledger says**:

- opening (private → group or public): everything behind the gate is made
  readable and indexed, the ledger records the new visibility, and only then
  does the gate open. A crash before the last step leaves it closed to
  readers while `gear ls` already says shared: `gear share` again finishes.
- closing (→ private, or to another group): the gate closes first, then the
  ledger and the indexes follow. A crash in between leaves it closed.

Readers never open the owner's ledger (they cannot: it is 0600). They read
the indexes: `shared/public.json` and `shared/group-G.json` (what is shared,
with what readers see of it), `containers/C/closed.json` (C's closed
executions, written each time one closes) and `datasets/D/versions.json`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.errors import GearError, NotFound
from ..base.facts import CONTAINERS, DATASETS
from ..storage import sharing as modes

if TYPE_CHECKING:
    from ..ledger.db import Execution, Ledger

CONTAINER_TABLE, DATASET_TABLE = "containers", "datasets"


def owner_root(ledger: Ledger) -> Path:
    """users/<owner>/, the directory that holds this ledger."""
    return ledger.path.parent


def share(ledger: Ledger, kind: str, name: str, visibility: str, group: str | None = None) -> None:
    """Make container or dataset `name` private, shared with `group`, or public (`kind`: "container" or "dataset")."""
    assert visibility in modes.VISIBILITIES and kind in ("container", "dataset")
    table = CONTAINER_TABLE if kind == "container" else DATASET_TABLE
    current = ledger.visibility(table, name)
    if current is None:
        raise NotFound(f"you have no {kind} {name!r}")
    gid = None
    if visibility == modes.GROUP:
        if group is None:
            raise GearError("a group share needs the group's name")
        gid = modes.member_group(group)
    root = owner_root(ledger)
    gate = root / (CONTAINERS if kind == "container" else DATASETS) / name
    if not gate.is_dir() or gate.is_symlink():
        raise GearError(f"the {kind} {name!r} has no directory at {gate}")
    if visibility != modes.PRIVATE:
        modes.require_passable(root)
    if visibility == modes.PRIVATE or current[0] != modes.PRIVATE:
        # Closing, or moving between groups: close first.
        modes.set_gate(gate, modes.PRIVATE)
    if visibility != modes.PRIVATE:
        modes.make_passable(root / (CONTAINERS if kind == "container" else DATASETS))
        modes.make_passable(root / modes.SHARED)
        if kind == "container":
            publish_container(ledger, name)
        else:
            publish_dataset(ledger, name)
    ledger.set_visibility(table, name, visibility, group)   # one statement: committed as it runs
    write_shared_indexes(ledger)
    if visibility != modes.PRIVATE:
        modes.set_gate(gate, visibility, gid)   # last: open only what is ready


def publish_container(ledger: Ledger, container: str) -> None:
    """Every closed execution of `container` readable behind its gate, and its index written."""
    from ..executions import sealing

    closed = [e for e in ledger.executions(container=container) if not e.is_open]
    for execution in closed:
        # Each was sealed and opened when it closed; this repairs what failed then (or what an older gear
        # sealed without read bits), and leaves alone what is done: no walk of every tree on every share.
        home = Path(execution.workdir)
        if not sealing.finished(home):
            sealing.seal(home)
        if not modes.execution_opened(home.parent):
            modes.open_closed_execution(home.parent)
    write_container_index(ledger, container, closed)


def publish_dataset(ledger: Ledger, dataset: str) -> None:
    root = owner_root(ledger) / DATASETS / dataset
    versions = root / "versions"
    if versions.is_dir():
        os.chmod(versions, modes.PASS_ONLY)
        for version in ledger.versions(dataset):
            path = versions / str(version["version"])
            if path.is_dir() and not path.is_symlink():
                modes.make_tree_readable(path)
    write_dataset_index(ledger, dataset)


def write_container_index(ledger: Ledger, container: str, closed: list[Execution] | None = None) -> None:
    """containers/C/closed.json: what `gear history owner/C` and `gear show owner/C/N` read."""
    if closed is None:
        closed = [e for e in ledger.executions(container=container) if not e.is_open]
    directory = owner_root(ledger) / CONTAINERS / container
    if not directory.is_dir():
        return
    records = [_reader_record(e) for e in closed]
    fields = list(records[0]) if records else []
    # Columns: each field's name once, not once per execution (half the bytes for a reader to parse).
    modes.write_index(directory / modes.CLOSED_INDEX, {
        "format": modes.INDEX_FORMAT, "owner": directory.parent.parent.name, "container": container,
        "fields": fields, "executions": [[record[name] for name in fields] for record in records]})


def _reader_record(execution: Execution) -> dict[str, Any]:
    """An execution as a reader sees it: its record (never its token), and who stopped it."""
    from ..executions.reconcile import read_status_record

    data = execution.to_json()
    data.pop("workdir", None)   # the owner's path: a reader computes its own (containers/shared_view.py)
    stopped = None
    if execution.status in ("terminated", "timeout"):   # only these were stopped: one file read each, not all
        record = read_status_record(execution.workdir) or {}
        stopped = record.get("stopped_by") if record.get("phase") == "final" else None
    data["stopped_by"] = "time limit" if stopped and execution.status == "timeout" else stopped
    return data


def write_dataset_index(ledger: Ledger, dataset: str) -> None:
    directory = owner_root(ledger) / DATASETS / dataset
    if not directory.is_dir():
        return
    modes.write_index(directory / modes.VERSIONS_INDEX, {
        "format": modes.INDEX_FORMAT, "owner": directory.parent.parent.name, "dataset": dataset,
        "versions": ledger.versions(dataset)})


def write_shared_indexes(ledger: Ledger) -> None:
    """shared/public.json and one shared/group-G.json per group shared with; stale group files removed."""
    root = owner_root(ledger)
    shared = root / modes.SHARED
    containers = ledger.shared_container_summaries()
    datasets = [d for d in ledger.dataset_summaries() if d["visibility"] != modes.PRIVATE]
    owner = root.name
    if not containers and not datasets and not shared.is_dir():
        return   # never shared anything: nothing to write
    modes.make_passable(shared)
    groups = sorted({item["group"] for item in containers + datasets if item["visibility"] == modes.GROUP})

    def index(visibility: str, group: str | None) -> dict[str, Any]:
        def chosen(item: dict[str, Any]) -> bool:
            return bool(item["visibility"] == visibility and item["group"] == group)
        return {"format": modes.INDEX_FORMAT, "owner": owner,
                "containers": [item for item in containers if chosen(item)],
                "datasets": [item for item in datasets if chosen(item)]}

    modes.write_index(shared / modes.PUBLIC_INDEX, index(modes.PUBLIC, None))
    for group in groups:
        try:
            gid = modes.member_group(group)
        except GearError:
            continue   # no longer a member: its index cannot be given that group; the gate still says it
        modes.write_index(shared / modes.group_index(group), index(modes.GROUP, group), mode=0o640, gid=gid)
    for entry in os.listdir(shared):
        if entry.startswith("group-") and entry.endswith(".json") and entry[len("group-"):-len(".json")] not in groups:
            modes.remove_index(shared / entry)


def after_closing(ledger: Ledger, executions: list[Execution]) -> None:
    """Executions just closed (reconcile.refresh): open each behind its gate, then list them.

    The directory opens before the index names it, so a reader who finds it
    listed can read it. Any error is left for `gear share` to repair: the
    statuses are already recorded, and an unlisted execution is only unseen.
    """
    containers = sorted({e.container for e in executions})
    shared_changed = False
    for execution in executions:
        try:
            modes.open_closed_execution(Path(execution.workdir).parent)
        except OSError:
            continue
    for container in containers:
        visibility = ledger.visibility(CONTAINER_TABLE, container)
        if visibility is None or visibility[0] == modes.PRIVATE:
            continue   # nobody could read its index: `gear share` writes it when it opens the container
        try:
            write_container_index(ledger, container)
        except OSError:
            continue
        shared_changed = True
    if shared_changed:
        try:
            write_shared_indexes(ledger)
        except OSError:
            pass


def before_deleting(ledger: Ledger, kind: str, name: str) -> None:
    """`gear delete C`, `gear data rm D`: close it to readers before its files go, and drop it from the indexes."""
    table = CONTAINER_TABLE if kind == "container" else DATASET_TABLE
    gate = owner_root(ledger) / (CONTAINERS if kind == "container" else DATASETS) / name
    visibility = ledger.visibility(table, name)
    if visibility is None or visibility[0] == modes.PRIVATE:
        return
    if gate.is_dir() and not gate.is_symlink():
        modes.set_gate(gate, modes.PRIVATE)
    ledger.set_visibility(table, name, modes.PRIVATE, None)
    write_shared_indexes(ledger)


def after_dataset_change(ledger: Ledger, dataset: str) -> None:
    """A version added or removed, or the dataset deleted: readers' indexes follow."""
    visibility = ledger.visibility(DATASET_TABLE, dataset)
    if visibility is None or visibility[0] == modes.PRIVATE:
        return   # `gear data share` writes the index when it opens the dataset
    publish_dataset(ledger, dataset)
    write_shared_indexes(ledger)
