"""Reading what another user shares: their index files, and nothing else of theirs.

A leaf (standard library only, no pathlib or re): `gear ls USER/` and `gear
history USER/C` read these on the fast path (cli/fastpath.py), as `gear ls`
reads the ledger there. The files, their modes and who writes them:
storage/sharing.py. What a reader may not read and what does not exist
give the same answer (None): a reader learns no more than the kernel lets
them.
"""

from __future__ import annotations

import grp
import os

from ..base.quick_json import loads as _loads

# Annotations only: importing typing would cost the fast path (cli/fastpath.py) 2 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SHARED = "shared"                 # users/<owner>/shared/
PUBLIC_INDEX = "public.json"
CLOSED_INDEX = "closed.json"      # containers/<C>/closed.json
VERSIONS_INDEX = "versions.json"  # datasets/<D>/versions.json
INDEX_FORMAT = 1

_GROUP_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_GROUP_REST = _GROUP_FIRST | frozenset("0123456789.-")


def is_group_name(name: str) -> bool:
    """A Unix group name that can be part of a file name: [A-Za-z_][A-Za-z0-9_.-]{0,31}."""
    return 0 < len(name) <= 32 and name[0] in _GROUP_FIRST and all(c in _GROUP_REST for c in name)


def group_index(group: str) -> str:
    return f"group-{group}.json"


def reader_groups() -> list[str]:
    """The names of the calling user's groups, whose indexes a reader looks for."""
    names = []
    for gid in dict.fromkeys([os.getgid(), *os.getgroups()]):
        try:
            names.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return [name for name in names if is_group_name(name)]


class BrokenIndex(ValueError):
    """An index that is not one (its owner's next `gear share` rewrites it)."""


def read_index(path: str) -> Any:
    """The index at `path`, or None where there is none for us (missing, not ours to read, a link)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError, NotADirectoryError)) or exc.errno == 40:  # ELOOP
            return None
        raise
    with os.fdopen(fd, "rb") as handle:
        text = handle.read()
    try:
        data = _loads(text.decode())
    except ValueError:
        raise BrokenIndex(f"{path} is not a valid index; its owner's next `gear share` rewrites it") from None
    if type(data) is not dict:
        raise BrokenIndex(f"{path} is not a valid index")
    if data.get("format") != INDEX_FORMAT:
        raise BrokenIndex(f"{path} is not an index this gear reads (format {data.get('format')!r})")
    return data


def listing(user_root: str) -> dict[str, list[dict[str, Any]]]:
    """What the user at `user_root` shares with the caller: the public index and the caller's groups' ones."""
    shared = os.path.join(user_root, SHARED)
    found: dict[str, dict[str, dict[str, Any]]] = {"containers": {}, "datasets": {}}
    for name in [PUBLIC_INDEX] + [group_index(group) for group in reader_groups()]:
        index = read_index(os.path.join(shared, name))
        if index is None:
            continue
        for kind in ("containers", "datasets"):
            for item in index.get(kind) or []:
                if type(item) is dict and type(item.get("name")) is str:
                    found[kind].setdefault(item["name"], item)
    return {kind: [found[kind][name] for name in sorted(found[kind])] for kind in found}


def closed_executions(container_dir: str) -> list[dict[str, Any]] | None:
    """The closed executions a shared container's index lists, oldest first; None if not shared with the caller."""
    index = read_index(os.path.join(container_dir, CLOSED_INDEX))
    if index is None:
        return None
    fields = index.get("fields")
    if type(fields) is not list or not all(type(name) is str for name in fields):
        raise BrokenIndex(f"{os.path.join(container_dir, CLOSED_INDEX)} is not a valid index")
    # One row per execution, its values in the order of `fields` (containers/sharing.py writes it so).
    return [dict(zip(fields, row, strict=True)) for row in index.get("executions") or []
            if type(row) is list and len(row) == len(fields)]
