"""What another user has shared with you, read from their indexes, never from their ledger.

Each function reads one or two small files another user wrote
(containers/sharing.py says which). What you may not read and what does not
exist give the same answer, "not shared with you": a reader learns no more
than the kernel lets them. Paths are computed here from names checked
here, never taken from the files, which their owner could write anything into.
"""

from __future__ import annotations

import os
from typing import Any

from ..base.errors import GearError, NotFound
from ..base.facts import CONTAINERS, DATASETS, USERS
from ..base.names import check_name, check_user
from ..storage import shared_index


def user_root(storage_root: str, owner: str) -> str:
    return os.path.join(storage_root, USERS, check_user(owner))


def listing(storage_root: str, owner: str) -> dict[str, list[dict[str, Any]]]:
    """The containers and datasets `owner` shares with you: public ones and your groups' ones."""
    found: dict[str, list[dict[str, Any]]] = _told(shared_index.listing, user_root(storage_root, owner))
    return found


def _not_shared(what: str) -> NotFound:
    return NotFound(f"{what} is not shared with you (or does not exist)")


def _told(read: Any, *args: Any) -> Any:
    """A broken index is one GearError line."""
    try:
        return read(*args)
    except shared_index.BrokenIndex as exc:
        raise GearError(str(exc)) from None


def history(storage_root: str, owner: str, container: str) -> list[dict[str, Any]]:
    """The closed executions of `owner`'s container, oldest first."""
    path = os.path.join(user_root(storage_root, owner), CONTAINERS, check_name(container, "container name"))
    found = _told(shared_index.closed_executions, path)
    if found is None:
        raise _not_shared(f"{owner}/{container}")
    return list(found)


def execution(storage_root: str, owner: str, container: str, number: int) -> dict[str, Any]:
    """One closed execution of `owner`'s container, as its index records it, with its paths computed here."""
    for item in history(storage_root, owner, container):
        if item.get("number") == number:
            record = dict(item)
            record["id"] = f"{owner}/{container}/{number}"
            record["owner"] = owner
            record["workdir"] = execution_dir(storage_root, owner, container, number) + "/home"
            return record
    raise _not_shared(f"{owner}/{container}/{number}")


def execution_dir(storage_root: str, owner: str, container: str, number: int) -> str:
    return os.path.join(user_root(storage_root, owner), CONTAINERS, check_name(container, "container name"),
                        str(int(number)))


def dataset_versions(storage_root: str, owner: str, dataset: str) -> list[dict[str, Any]]:
    path = os.path.join(user_root(storage_root, owner), DATASETS, check_name(dataset, "dataset name"),
                        shared_index.VERSIONS_INDEX)
    index = _told(shared_index.read_index, path)
    if index is None:
        raise _not_shared(f"dataset {owner}/{dataset}")
    return [item for item in index.get("versions") or [] if type(item) is dict and type(item.get("version")) is int]


def dataset_version_dir(storage_root: str, owner: str, dataset: str, version: int | None) -> tuple[int, str]:
    """(version, its directory) of `owner`'s dataset; the latest when `version` is None."""
    versions = [item["version"] for item in dataset_versions(storage_root, owner, dataset)]
    if not versions:
        raise GearError(f"dataset {owner}/{dataset} has no version yet")
    chosen = max(versions) if version is None else version
    if chosen not in versions:
        raise NotFound(f"dataset {owner}/{dataset} has no version {chosen}")
    path = os.path.join(user_root(storage_root, owner), DATASETS, dataset, "versions", str(chosen))
    if not os.access(path, os.R_OK | os.X_OK):
        raise _not_shared(f"dataset {owner}/{dataset}@{chosen}")
    return chosen, path
